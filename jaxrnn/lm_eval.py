"""How good a language model is on a corpus's validation part, and the baselines it must beat.

Validation loss is the mean negative log-likelihood per predicted token, in nats; perplexity is
its exponential, exp(−(1/N) Σ log P(y⟨t⟩ | y⟨<t⟩)). The baselines are the token frequencies alone
(`unigram_nats`) and an interpolated Kneser–Ney n-gram model on the same split (`ngram_baseline`).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import ngram
from jaxrnn.lm import LMConfig, Mixture, init_lm_carry, lm_log_probs, token_log_probs
from jaxrnn.losses import sequence_mask
from jaxrnn.models import GeneratorParams
from jaxrnn.text import Corpus, stream_rows

__all__ = ["evaluate_lm", "ngram_baseline", "perplexity", "unigram_nats"]


def evaluate_lm(
    params: GeneratorParams | Mixture,
    model: LMConfig,
    corpus: Corpus,
    *,
    rows: int = 32,
    seq_len: int = 256,
) -> float:
    """Validation loss in nats per predicted token (every token of the validation part counted),
    of one model or of a `jaxrnn.lm.Mixture` of models.

    Lines mode: each line on its own from a⟨0⟩ = 0, x⟨1⟩ = 0, ⟨EOS⟩ predicted too. Stream mode: the
    validation text is cut into ``rows`` contiguous rows read left to right in chunks of
    ``seq_len`` with the carry passed on, so each token is predicted from everything before it in
    its row; all n − 1 next-token predictions are counted.
    """
    if corpus.mode == "lines":
        targets, lengths = corpus.valid
        pad = -len(targets) % rows
        targets = np.concatenate([targets, np.zeros((pad, targets.shape[1]), targets.dtype)])
        lengths = np.concatenate([lengths, np.zeros(pad, lengths.dtype)])
        total = 0.0
        for start in range(0, len(targets), rows):
            chunk = slice(start, start + rows)
            total += float(_lines_nll(params, model, targets[chunk], lengths[chunk]))
        return total / float(corpus.valid[1].sum())
    (ids,) = corpus.valid
    n_targets = len(ids) - 1
    inputs, targets, row_lengths = stream_rows(ids, rows, seq_len)
    width = inputs.shape[1]
    carry = init_lm_carry(params, model, (rows,))
    total = 0.0
    for start in range(0, width, seq_len):
        chunk_lengths = np.clip(row_lengths - start, 0, seq_len).astype(np.int32)
        cols = slice(start, start + seq_len)
        carry, nll = _stream_nll(
            params, model, carry, inputs[:, cols], targets[:, cols], chunk_lengths
        )
        total += float(nll)
    return total / n_targets


def ngram_baseline(corpus: Corpus, order: int) -> ngram.Evaluation:
    """An order-n interpolated Kneser–Ney model fit on the corpus's training part, evaluated on
    its validation part: the traditional baseline on the same split, in the same units."""
    if corpus.mode == "lines":
        train, valid = (
            [ids[:n] for ids, n in zip(*part, strict=True)] for part in (corpus.train, corpus.valid)
        )
    else:
        train, valid = corpus.train[0], corpus.valid[0]
    return ngram.evaluate(ngram.fit_ngram(train, corpus.vocab.size, order), valid)


def unigram_nats(corpus: Corpus) -> float:
    """Cross-entropy of the training part's token frequencies on itself, in nats per token: what a
    model that ignores all context reaches, and what any trained model should beat."""
    ids = (
        corpus.train[0]
        if corpus.mode == "stream"
        else corpus.train[0][np.arange(corpus.train[0].shape[1]) < corpus.train[1][:, None]]
    )
    counts = np.bincount(np.asarray(ids).ravel(), minlength=corpus.vocab.size).astype(float)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def perplexity(nats: float) -> float:
    """exp(nats); inf where that overflows (a diverged run), rather than an OverflowError."""
    return math.inf if nats > 709.0 else math.exp(nats)


@functools.partial(jax.jit, static_argnames="model")
def _lines_nll(params, model, targets, lengths):
    return -token_log_probs(params, model, targets, lengths).sum()


@functools.partial(jax.jit, static_argnames="model")
def _stream_nll(params, model, carry, inputs, targets, lengths):
    carry, log_probs = lm_log_probs(params, model, inputs, carry, lengths=lengths)
    picked = jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    valid = sequence_mask(lengths, inputs.shape[1])
    return carry, -jnp.where(valid, picked, 0.0).sum()
