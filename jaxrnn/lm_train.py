"""Training a language model on a text: corpus, training loop, evaluation, checkpoints, plots.

`train_lm` is what ``jaxrnn train`` and the demo run. Everything a run depends on is a pure
function of ``(seed, step)`` — the batch, the dropout key — and the checkpoint holds the params,
optimizer state, carry and loss history, so a run resumed from a checkpoint continues exactly as if
it had never stopped (bit for bit on CPU). Ctrl-C or SIGTERM saves a checkpoint before exiting.

Validation loss is the mean negative log-likelihood per predicted token, in nats; perplexity is
its exponential, exp(−(1/N) Σ log P(y⟨t⟩ | y⟨<t⟩)).

With several local devices (GPUs, or simulated CPU devices) each step is data-parallel
(`jaxrnn.parallel`): the batch and the carry are split by rows over the devices, params and
optimizer state are replicated, and XLA sums the gradients. Checkpoints hold whole arrays, so a run
saved on n devices resumes on any other count; the losses then agree with an uninterrupted run to
float rounding, since n devices add the gradient's terms in another order.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrnn import ngram, parallel, runs
from jaxrnn import progress as progress_lib
from jaxrnn import text as text_lib
from jaxrnn._checks import fail
from jaxrnn.checkpoint import (
    CheckpointError,
    atomic_output,
    config_from_json,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)
from jaxrnn.lm import (
    LMConfig,
    LMParams,
    init_lm,
    init_lm_carry,
    lm_apply,
    lm_loss,
    sample,
    teacher_forcing_inputs,
)
from jaxrnn.losses import sequence_mask
from jaxrnn.train import make_optimizer, make_train_step

CHECKPOINT_NAME = runs.CHECKPOINT_NAME


class Corpus(NamedTuple):
    """A text prepared for a language model.

    ``mode="lines"``: each line is a sentence (a name, a sentence); ``train`` and ``valid`` are
    ``(targets (N, T) int32, lengths (N,) int32)``, each line followed by ⟨EOS⟩ and right-padded.
    ``mode="stream"``: the text is one long sequence; ``train`` and ``valid`` are ``(ids (n,),)``.
    """

    vocab: text_lib.Vocab
    mode: Literal["lines", "stream"]
    train: tuple
    valid: tuple


def make_corpus(
    text: str,
    *,
    level: text_lib.Level = "char",
    mode: Literal["lines", "stream"] = "lines",
    valid_fraction: float = 0.1,
    max_vocab: int | None = None,
    min_count: int = 1,
    lowercase: bool = False,
    max_len: int | None = None,
    seed: int = 0,
) -> Corpus:
    """Splits ``text`` into training and validation parts and encodes both with a vocabulary built
    on the training part (so validation may hold ⟨UNK⟩).

    Lines mode shuffles the non-empty lines with ``seed`` before the split; stream mode takes the
    first ``1 − valid_fraction`` of the characters for training and the rest for validation.
    ``max_len`` truncates long lines (lines mode; ⟨EOS⟩ included).
    """
    fn = "make_corpus"
    if mode not in ("lines", "stream"):
        fail(fn, f"expected mode 'lines' or 'stream', got {mode!r}")
    if not _is_number(valid_fraction) or not 0 < valid_fraction < 1:
        fail(fn, f"expected valid_fraction strictly between 0 and 1, got {valid_fraction!r}")
    if max_len is not None and (not _is_int(max_len) or max_len < 1):
        fail(fn, f"expected max_len None or an int >= 1, got {max_len!r}")
    if mode == "lines":
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) < 2:
            fail(fn, f"expected a text with at least 2 non-empty lines, got {len(lines)}")
        train_lines, valid_lines = text_lib.split_lines(lines, 1 - valid_fraction, seed)
        vocab = text_lib.build_vocab(
            train_lines, level=level, max_size=max_vocab, min_count=min_count, lowercase=lowercase
        )
        encoded = [vocab.encode_lines(part) for part in (train_lines, valid_lines)]
        longest = max(len(ids) for part in encoded for ids in part)
        width = longest if max_len is None else min(longest, max_len)
        padded_bytes = 2 * 4 * width * sum(len(part) for part in encoded)  # targets and inputs
        if padded_bytes > MEMORY_LIMIT_BYTES / 4:
            fail(
                fn,
                f"padding {len(lines):,} lines to the longest one ({longest:,} tokens) would take "
                f"about {_gib(padded_bytes)}",
                "pass max_len (jaxrnn train --max-len) to truncate long lines, or use mode "
                "'stream' (--mode stream)",
            )
        train, valid = (
            text_lib.pad_batch(part, pad_id=vocab.eos_id, max_len=width) for part in encoded
        )
        return Corpus(vocab, mode, train, valid)
    train_text, valid_text = text_lib.split_text(text, 1 - valid_fraction)
    vocab = text_lib.build_vocab(
        [train_text], level=level, max_size=max_vocab, min_count=min_count, lowercase=lowercase
    )
    return Corpus(vocab, mode, (vocab.encode(train_text),), (vocab.encode(valid_text),))


class TrainConfig(NamedTuple):
    """How to train; saved in the checkpoint with the model's `LMConfig`."""

    steps: int = 2000
    batch_size: int = 32
    seq_len: int = 128  # stream mode: tokens per example and step
    stateful: bool = False  # stream mode: consecutive chunks, carry passed on (truncated BPTT)
    learning_rate: float = 2e-3
    final_learning_rate: float | None = None  # cosine decay to it at `steps`; None: constant
    warmup_steps: int = 0
    optimizer: str = "adam"
    clip_value: float | None = 5.0  # the course clips every gradient entry to [−5, 5]
    clip_norm: float | None = None
    reduce_time: Literal["mean", "sum"] = "mean"
    seed: int = 0
    minutes: float | None = None  # also stop after this much training time (evaluation excluded)
    eval_every: int = 250
    eval_every_seconds: float | None = None  # also evaluate after each such stretch of training
    sample_every: int = 500
    checkpoint_every: int = 500
    eval_rows: int = 32  # stream mode: validation read as this many contiguous rows
    max_nonfinite_steps: int = 20  # consecutive skipped updates before the run stops
    # Data parallelism over this many local devices, batch_size a multiple of it. None: as many
    # of the local devices as divide batch_size evenly (all of them when batch_size allows).
    devices: int | None = None


# How the command line names each setting, for messages that tell the user what to change.
CLI_NAMES = {
    "steps": "--steps",
    "batch_size": "--batch",
    "seq_len": "--seq-len",
    "learning_rate": "--lr",
    "final_learning_rate": "--final-lr",
    "warmup_steps": "--warmup",
    "optimizer": "--optimizer",
    "clip_value": "--clip-value",
    "clip_norm": "--clip-norm",
    "reduce_time": "--reduce-time",
    "seed": "--seed",
    "minutes": "--minutes",
    "eval_every": "--eval-every",
    "sample_every": "--sample-every",
    "checkpoint_every": "--checkpoint-every",
    "devices": "--devices",
    "vocab_size": "the vocabulary size",
    "hidden_size": "--hidden",
    "num_layers": "--layers",
    "embedding_size": "--embedding",
    "dropout": "--dropout",
    "cell": "--cell",
}
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
# Memory a run may plan for; more is refused before anything is allocated.
MEMORY_LIMIT_BYTES = int(
    0.8 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if hasattr(os, "sysconf")
    else 16 * 2**30
)


def _is_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _rules(train: TrainConfig) -> list[tuple[str, object, bool, str]]:
    """(setting, value, valid?, what a valid value is) for every setting of ``train``."""

    def positive(v):
        return _is_number(v) and math.isfinite(v) and v > 0

    def count(v, least):
        return _is_int(v) and v >= least

    return [
        ("steps", train.steps, count(train.steps, 1), "an int >= 1"),
        ("batch_size", train.batch_size, count(train.batch_size, 1), "an int >= 1"),
        ("seq_len", train.seq_len, count(train.seq_len, 1), "an int >= 1"),
        (
            "learning_rate",
            train.learning_rate,
            positive(train.learning_rate),
            "a finite number > 0",
        ),
        (
            "final_learning_rate",
            train.final_learning_rate,
            train.final_learning_rate is None
            or (
                _is_number(train.final_learning_rate)
                and math.isfinite(train.final_learning_rate)
                and train.final_learning_rate >= 0
            ),
            "None or a finite number >= 0",
        ),
        ("warmup_steps", train.warmup_steps, count(train.warmup_steps, 0), "an int >= 0"),
        ("optimizer", train.optimizer, train.optimizer in OPTIMIZERS, f"one of {OPTIMIZERS}"),
        (
            "clip_value",
            train.clip_value,
            train.clip_value is None or positive(train.clip_value),
            "None or a finite number > 0",
        ),
        (
            "clip_norm",
            train.clip_norm,
            train.clip_norm is None or positive(train.clip_norm),
            "None or a finite number > 0",
        ),
        ("reduce_time", train.reduce_time, train.reduce_time in ("mean", "sum"), "mean or sum"),
        ("seed", train.seed, count(train.seed, 0), "an int >= 0"),
        (
            "minutes",
            train.minutes,
            train.minutes is None or positive(train.minutes),
            "None or a finite number > 0",
        ),
        ("eval_every", train.eval_every, count(train.eval_every, 1), "an int >= 1"),
        (
            "eval_every_seconds",
            train.eval_every_seconds,
            train.eval_every_seconds is None or positive(train.eval_every_seconds),
            "None or a finite number > 0",
        ),
        ("sample_every", train.sample_every, count(train.sample_every, 0), "an int >= 0"),
        (
            "checkpoint_every",
            train.checkpoint_every,
            count(train.checkpoint_every, 1),
            "an int >= 1",
        ),
        ("eval_rows", train.eval_rows, count(train.eval_rows, 1), "an int >= 1"),
        (
            "max_nonfinite_steps",
            train.max_nonfinite_steps,
            count(train.max_nonfinite_steps, 1),
            "an int >= 1",
        ),
        (
            "devices",
            train.devices,
            train.devices is None or count(train.devices, 1),
            "None or an int >= 1",
        ),
    ]


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:,.1f} GiB"


def check_settings(
    model: LMConfig,
    train: TrainConfig,
    *,
    fn: str = "train_lm",
    names: dict | None = None,
    time_steps: int | None = None,
) -> None:
    """Raises `InputError` for a setting no run can use — a learning rate that is NaN, zero steps,
    evaluation every 0 steps — or for a model and batch whose training step would need more memory
    than this machine has, with an estimate, before anything is allocated.

    ``names`` maps setting names to what the message calls them (the CLI passes `CLI_NAMES`);
    ``time_steps`` is the length of a training example (default: ``train.seq_len``).
    """
    names = names or {}
    if not isinstance(train, TrainConfig):
        fail(fn, f"expected train to be a TrainConfig, got {type(train).__name__}")
    if not isinstance(model, LMConfig):
        fail(fn, f"expected model to be an LMConfig, got {type(model).__name__}")
    for setting, value, valid, expected in _rules(train):
        if not valid:
            fail(fn, f"expected {names.get(setting, setting)} to be {expected}, got {value!r}")
    for setting in ("vocab_size", "hidden_size", "num_layers"):
        value = getattr(model, setting)
        if not _is_int(value) or value < 1:
            fail(fn, f"expected {names.get(setting, setting)} to be an int >= 1, got {value!r}")
    embedding = model.embedding_size
    if embedding is not None and (not _is_int(embedding) or embedding < 1):
        fail(
            fn,
            f"expected {names.get('embedding_size', 'embedding_size')} to be None or an int >= 1"
            f", got {embedding!r}",
        )
    if not _is_number(model.dropout) or not 0.0 <= model.dropout < 1.0:
        fail(fn, f"expected {names.get('dropout', 'dropout')} in [0, 1), got {model.dropout!r}")
    n_params, step_bytes = estimate_memory(model, train, time_steps)
    if step_bytes > MEMORY_LIMIT_BYTES:
        hidden, batch = (
            names.get("hidden_size", "hidden_size"),
            names.get("batch_size", "batch_size"),
        )
        fail(
            fn,
            f"a training step would need about {_gib(step_bytes)} ({n_params:,} parameters, "
            f"batch {train.batch_size} of {time_steps or train.seq_len} steps), more than the "
            f"{_gib(MEMORY_LIMIT_BYTES)} this machine can "
            "give",
            f"use a smaller {hidden} or {batch}",
        )


def estimate_memory(model: LMConfig, train: TrainConfig, seq_len: int | None = None) -> tuple:
    """(parameter count, bytes) of a training step, roughly: parameters, gradients and two
    optimizer moments, plus the activations BPTT keeps for every step (float32)."""
    gates = {"lstm": 4, "lstm_peephole": 4, "gru": 3, "gru_reset_after": 3, "min_lstm": 3}
    g = gates.get(model.cell, 2)
    inputs = model.embedding_size or model.vocab_size
    hidden, vocab, layers = model.hidden_size, model.vocab_size, model.num_layers
    n_params = (
        (model.embedding_size or 0) * vocab
        + g * hidden * (inputs + hidden + 2)
        + (layers - 1) * g * hidden * (2 * hidden + 2)
        + (hidden + 1) * vocab
    )
    time_steps = train.seq_len if seq_len is None else seq_len
    per_step = train.batch_size * ((g + 2) * hidden * layers + inputs + 2 * vocab)
    return n_params, 4 * (4 * n_params + time_steps * per_step)


class TrainResult(NamedTuple):
    params: LMParams
    step: int
    # "loss": per-step training losses; "valid": [step, train seconds, nats] rows;
    # "skipped_steps": updates refused for a non-finite loss or gradient (absent if none)
    history: dict
    checkpoint: Path | None
    stopped_early: str | None  # why the run stopped before `steps`, if it did
    failed: bool = False  # stopped because training went wrong (diverged, non-finite steps)


def _learning_rate(config: TrainConfig) -> float | optax.Schedule:
    if config.final_learning_rate is None and config.warmup_steps == 0:
        return config.learning_rate
    final = (
        config.learning_rate if config.final_learning_rate is None else config.final_learning_rate
    )
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0 if config.warmup_steps else config.learning_rate,
        peak_value=config.learning_rate,
        warmup_steps=config.warmup_steps,
        decay_steps=max(config.steps, config.warmup_steps + 1),
        end_value=final,
    )


def make_lm_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """The optax optimizer a `TrainConfig` describes (clipping first, then the update rule)."""
    return make_optimizer(
        _learning_rate(config),
        name=config.optimizer,
        clip_value=config.clip_value,
        clip_norm=config.clip_norm,
    )


def _initial_state(model: LMConfig, train: TrainConfig, mode: str) -> dict:
    params = init_lm(jax.random.key(train.seed), model)
    stateful = mode == "stream" and train.stateful
    return {
        "params": params,
        "opt_state": make_lm_optimizer(train).init(params),
        "carry": init_lm_carry(params, model, (train.batch_size,)) if stateful else None,
    }


def _device_count(train: TrainConfig) -> int:
    """How many local devices each step is split over: ``train.devices``, or for None the most
    local devices that divide ``train.batch_size`` evenly."""
    available = jax.local_device_count()
    devices = train.devices
    if devices is None:
        return max(n for n in range(1, available + 1) if train.batch_size % n == 0)
    if not isinstance(devices, int) or isinstance(devices, bool) or not 1 <= devices <= available:
        fail(
            "train_lm",
            f"expected devices between 1 and {available} (the local device count), got {devices!r}",
            "None uses as many as divide batch_size; on CPU, "
            "XLA_FLAGS=--xla_force_host_platform_device_count=N simulates N devices",
        )
    if train.batch_size % devices:
        fail(
            "train_lm",
            f"expected batch_size divisible by the {devices} devices, got {train.batch_size}",
            "choose a batch size that is a multiple of the device count",
        )
    return devices


def _placed(state: dict, mesh) -> dict:
    """The training state on ``mesh``: params and optimizer state replicated, carry split by rows
    like the batches it continues."""
    return {
        "params": parallel.replicate(state["params"], mesh),
        "opt_state": parallel.replicate(state["opt_state"], mesh),
        "carry": parallel.shard_batch(state["carry"], mesh),
    }


def _batch(corpus: Corpus, train: TrainConfig, step: int):
    """The batch of training step ``step``: (inputs, targets, lengths or None, reset carry?)."""
    if corpus.mode == "lines":
        targets, lengths = corpus.train
        rows = text_lib.batch_indices(len(targets), train.batch_size, seed=train.seed, step=step)
        return teacher_forcing_inputs(targets[rows]), targets[rows], lengths[rows], True
    (ids,) = corpus.train
    if train.stateful:
        inputs, targets, first = text_lib.stream_chunks(
            ids, batch_size=train.batch_size, seq_len=train.seq_len, step=step
        )
        return inputs, targets, None, first
    inputs, targets = text_lib.stream_windows(
        ids, batch_size=train.batch_size, seq_len=train.seq_len, seed=train.seed, step=step
    )
    return inputs, targets, None, True


def stream_rows(ids: np.ndarray, rows: int, seq_len: int) -> tuple[np.ndarray, ...]:
    """A stream cut into ``rows`` contiguous rows for evaluation with the carry passed on.

    Returns ``(inputs, targets, lengths)``: int32 (rows, W) each, W a multiple of ``seq_len``,
    right-padded, targets[r, t] the id after inputs[r, t]; lengths (rows,) the valid part of each
    row. Together the rows hold every one of the stream's n − 1 next-token predictions once.
    """
    n_targets = len(ids) - 1
    row_len = -(-n_targets // rows)
    width = -(-row_len // seq_len) * seq_len
    inputs = np.zeros((rows, width), np.int32)
    targets = np.zeros((rows, width), np.int32)
    lengths = np.zeros(rows, np.int32)
    for r in range(rows):
        begin, end = r * row_len, min((r + 1) * row_len, n_targets)
        lengths[r] = max(end - begin, 0)
        inputs[r, : lengths[r]] = ids[begin:end]
        targets[r, : lengths[r]] = ids[begin + 1 : end + 1]
    return inputs, targets, lengths


def evaluate_lm(
    params: LMParams, model: LMConfig, corpus: Corpus, *, rows: int = 32, seq_len: int = 256
) -> float:
    """Validation loss in nats per predicted token (every token of the validation part counted).

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


def perplexity(nats: float) -> float:
    """exp(nats); inf where that overflows (a diverged run), rather than an OverflowError."""
    return math.inf if nats > 709.0 else math.exp(nats)


@functools.partial(jax.jit, static_argnames="model")
def _lines_nll(params, model, targets, lengths):
    sums = lm_loss(
        params, model, teacher_forcing_inputs(targets), targets, lengths=lengths, reduce_time="sum"
    )[0]
    return sums * targets.shape[0]


@functools.partial(jax.jit, static_argnames="model")
def _stream_nll(params, model, carry, inputs, targets, lengths):
    carry, logits = lm_apply(params, model, inputs, carry, lengths=lengths)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    valid = sequence_mask(lengths, inputs.shape[1])
    return carry, -jnp.where(valid, picked, 0.0).sum()


def _make_step(model: LMConfig, train: TrainConfig):
    def loss_fn(params, inputs, targets, lengths, carry, step):
        dropout_key = jax.random.fold_in(jax.random.key(train.seed + 1), step)
        return lm_loss(
            params,
            model,
            inputs,
            targets,
            lengths=lengths,
            carry=carry,
            reduce_time=train.reduce_time,
            dropout_key=dropout_key if model.dropout > 0 else None,
        )

    return make_train_step(loss_fn, make_lm_optimizer(train), has_aux=True)


def _metadata(model, train, corpus, step, history) -> dict:
    return {
        "kind": "jaxrnn.lm",
        "step": step,
        "model": model._asdict(),
        "train": train._asdict(),
        "mode": corpus.mode,
        "vocab": corpus.vocab.to_dict(),
        "history": history,
    }


def _checked_lm_metadata(
    path: str | Path, metadata: dict
) -> tuple[LMConfig, TrainConfig, text_lib.Vocab]:
    """The model, training settings and vocabulary in a language-model checkpoint's metadata,
    each checked before anything is built from it: the configurations hold only their known
    fields, with values of the right types in ranges a model in memory can have, ``step`` and
    ``history`` are what `train_lm` writes, and the vocabulary is as large as the model's.

    Raises:
      CheckpointError: naming the file and the first entry that is wrong.
    """
    if metadata.get("kind") != "jaxrnn.lm":
        raise CheckpointError(f"{path}: not a jaxrnn language-model checkpoint")
    model = config_from_json(LMConfig, metadata.get("model"), path, "model config")
    train = config_from_json(TrainConfig, metadata.get("train"), path, "training config")
    max_params, max_layers, max_int = 2**31, 256, 2**62

    def refuse(message: str) -> CheckpointError:
        return CheckpointError(f"{path}: {message}")

    for field in ("vocab_size", "hidden_size", "num_layers", "embedding_size"):
        value = getattr(model, field)
        if value is not None and not 1 <= value <= max_params:
            raise refuse(f"the model's {field} {value!r:.40} is not in [1, {max_params:,}]")
    if model.num_layers > max_layers:
        raise refuse(f"the model has {model.num_layers} layers, more than {max_layers}")
    inputs, hidden = model.embedding_size or model.vocab_size, model.hidden_size
    # at most four gates of (inputs + hidden + bias + peephole) × hidden in every layer
    n_params = (
        (model.embedding_size or 0) * model.vocab_size
        + model.num_layers * 4 * hidden * (max(inputs, hidden) + hidden + 2)
        + (hidden + 1) * model.vocab_size
    )
    if n_params > max_params:
        raise refuse(
            f"the model would have about {n_params:.3g} parameters, more than the "
            f"{max_params:,} a checkpoint may hold"
        )
    if not 0 <= model.dropout < 1:
        raise refuse(f"the model's dropout {model.dropout} is not in [0, 1)")
    for setting, value in train._asdict().items():
        if type(value) in (int, float) and not 0 <= value <= max_int:
            raise refuse(f"the training setting {setting} {value} is not in [0, {max_int}]")
    if train.batch_size < 1:
        raise refuse(f"the training setting batch_size {train.batch_size} is not >= 1")
    mode = metadata.get("mode")
    if mode not in ("lines", "stream"):
        raise refuse(f"mode {mode!r:.40}, expected 'lines' or 'stream'")
    step = metadata.get("step")
    if type(step) is not int or not 0 <= step <= max_int:
        raise refuse(f"step {step!r:.40}, expected an int in [0, {max_int}]")

    def numbers(xs, width=None) -> bool:
        return (
            isinstance(xs, list)
            and (width is None or len(xs) == width)
            and all(type(x) in (int, float) for x in xs)
        )

    history = metadata.get("history")
    if not isinstance(history, dict):
        raise refuse(f"the history is {history!r:.40}, expected an object")
    loss, valid, seconds = history.get("loss"), history.get("valid"), history.get("seconds")
    if not numbers(loss) or len(loss) > step:
        raise refuse(f"the history's loss must be a list of at most step = {step} numbers")
    if not isinstance(valid, list) or not all(numbers(row, 3) for row in valid):
        raise refuse("the history's valid must be a list of [step, seconds, nats] rows")
    if type(seconds) not in (int, float) or not 0 <= seconds < math.inf:
        raise refuse(f"the history's seconds {seconds!r:.40} is not a number >= 0")
    for name, value in history.items():
        if not (
            type(value) in (int, float)
            or numbers(value)
            or (isinstance(value, list) and all(map(numbers, value)))
        ):
            raise refuse(f"the history's {name} is not a number or a list of numbers or rows")
    data = metadata.get("vocab")
    if not (
        isinstance(data, dict)
        and isinstance(data.get("tokens"), list)
        and all(isinstance(t, str) for t in data["tokens"])
        and isinstance(data.get("level"), str)
        and isinstance(data.get("lowercase"), bool)
    ):
        raise refuse("the vocabulary must be an object of tokens (strings), level and lowercase")
    try:
        vocab = text_lib.Vocab.from_dict(data)
    except ValueError as error:  # InputError
        raise refuse(f"the vocabulary is not valid ({error})") from None
    if vocab.size != model.vocab_size:
        raise refuse(
            f"the vocabulary has {vocab.size} tokens, the model expects vocab_size "
            f"{model.vocab_size}"
        )
    return model, train, vocab


def load_lm(path: str | Path) -> tuple[LMParams, LMConfig, text_lib.Vocab, dict]:
    """Reads a language-model checkpoint; returns (params, model config, vocabulary, metadata).

    Raises:
      CheckpointError: if the file is missing, corrupt, not a language model's, or its metadata
        is not what `train_lm` writes; everything is checked before it is built or allocated.
    """
    metadata = read_metadata(path)
    model, train, vocab = _checked_lm_metadata(path, metadata)
    try:
        template = jax.eval_shape(lambda: _initial_state(model, train, metadata["mode"]))
    except ValueError as error:  # InputError: a cell or optimizer this jaxrnn does not know
        raise CheckpointError(f"{path}: the saved model cannot be built ({error})") from None
    state, saved = load_checkpoint(path, template)
    # A run writing the file meanwhile is fine as long as the arrays fit what was checked.
    again = _checked_lm_metadata(path, saved)
    if (again[0], again[2], saved["mode"]) != (model, vocab, metadata["mode"]):
        raise CheckpointError(f"{path}: the file was replaced by another model while being read")
    params = jax.tree.map(jnp.asarray, state["params"])
    return params, model, vocab, saved


def _resume(path: Path, model: LMConfig, train: TrainConfig, corpus: Corpus):
    metadata = read_metadata(path)
    saved_model, _, saved_vocab = _checked_lm_metadata(path, metadata)
    for name, saved, asked in (
        ("model", saved_model._asdict(), model._asdict()),
        ("vocabulary", saved_vocab.to_dict(), corpus.vocab.to_dict()),
    ):
        if saved != asked:
            diff = {k: (saved.get(k), v) for k, v in asked.items() if saved.get(k) != v}
            raise CheckpointError(
                f"{path}: the checkpoint's {name} differs from this run's ({diff if diff else ''}: "
                "saved, asked); resume with the same settings and text, or use a new output folder"
            )
    template = jax.eval_shape(lambda: _initial_state(model, train, corpus.mode))
    state, metadata = load_checkpoint(path, template)
    again = _checked_lm_metadata(path, metadata)
    if (again[0], again[2]) != (saved_model, saved_vocab):
        raise CheckpointError(f"{path}: the file was replaced by another model while being read")
    return jax.tree.map(jnp.asarray, state), metadata["step"], metadata["history"]


def _all_finite(tree) -> bool:
    return all(bool(np.isfinite(np.asarray(leaf)).all()) for leaf in jax.tree.leaves(tree))


def _unigram_nats(corpus: Corpus) -> float:
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


def divergence(valid: list, baseline_nats: float, patience: int = 3) -> str | None:
    """Why the validation losses ``valid`` ([step, seconds, nats] rows) show a diverging run, or
    None: the last loss is not finite or far above the unigram ``baseline_nats`` (more than
    ``2 × baseline + 1``), or it rose at each of the last ``patience`` evaluations to above the
    baseline."""
    if not valid:
        return None
    nats = [row[2] for row in valid]
    last = nats[-1]
    if not math.isfinite(last) or last > 2 * baseline_nats + 1:
        return (
            f"validation loss {last:.4g} nats/token, far above the {baseline_nats:.3f} of "
            "token frequencies alone"
        )
    recent = nats[-(patience + 1) :]
    rising = len(recent) == patience + 1 and all(
        b > a for a, b in zip(recent[:-1], recent[1:], strict=True)
    )
    if rising and last > baseline_nats:
        return (
            f"validation loss rose at each of the last {patience} evaluations, to {last:.4f} "
            f"nats/token, above the {baseline_nats:.3f} of token frequencies alone"
        )
    return None


def _changed_settings(saved: dict, asked: dict) -> list[str]:
    return [
        f"{name} {saved.get(name)!r} -> {value!r}"
        for name, value in asked.items()
        if saved.get(name) != value
    ]


def train_lm(
    corpus: Corpus,
    model: LMConfig,
    train: TrainConfig,
    out_dir: str | Path | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | progress_lib.Style = True,
    log: Callable[[str], None] | None = None,
    num_samples: int = 5,
    stop_after: int | None = None,
    option_names: runs.OptionNames = runs.API,
) -> TrainResult:
    """Trains ``model`` on ``corpus``; returns the final params and the loss history.

    Shows progress (a bar in a terminal, a plain line every 30 s in a log file; loss, tokens/s,
    ETA), prints samples every ``train.sample_every`` steps, evaluates every ``train.eval_every``
    steps, and, when ``out_dir`` is given, writes ``checkpoint.npz`` there every
    ``train.checkpoint_every`` steps, on Ctrl-C/SIGTERM and at the end, and ``loss.png`` at the
    end. With several local devices each batch is split over ``train.devices`` of them (see
    `TrainConfig`); the run stays on this machine (one process).

    Nothing is lost: the settings are checked and ``out_dir`` is proved writable before the first
    step; ``out_dir`` is locked against a second trainer for the whole run; a checkpoint with
    non-finite parameters is never written; a run whose validation loss diverges stops and keeps
    its last checkpoint; Ctrl-C or SIGTERM stops after the current step, saves, then raises
    `jaxrnn.runs.Interrupted` (a ``KeyboardInterrupt``).

    Args:
      corpus: from `make_corpus`.
      model: the `LMConfig`; its ``vocab_size`` must equal the corpus vocabulary's size.
      train: the `TrainConfig`.
      out_dir: where checkpoint and plot go; None keeps nothing on disk.
      resume: continue from ``out_dir/checkpoint.npz`` (same model and vocabulary); without a
        checkpoint there this is an error.
      overwrite: replace the run ``out_dir`` holds; without it (or ``resume``) an ``out_dir`` that
        holds a checkpoint is refused and left untouched.
      progress: show progress; or ``"bar"``, ``"lines"`` to choose how.
      log: where messages and samples go (default: printed beside the progress).
      num_samples: samples shown at each sampling point.
      stop_after: stop (and checkpoint) after this global step, as an interruption would; for
        tests and for training in slices.
      option_names: how messages name ``resume``, ``overwrite`` and ``out_dir`` (the command line
        passes its flags).

    Raises:
      InputError: a setting no run can use, a folder that cannot take the run, a resume past
        ``train.steps``.
      CheckpointError: ``resume`` from a checkpoint that is corrupt or of another model.
      Interrupted: after saving, when SIGINT or SIGTERM stopped the run.
    """
    fn = "train_lm"
    if model.vocab_size != corpus.vocab.size:
        fail(
            fn,
            f"expected model.vocab_size == corpus vocabulary size {corpus.vocab.size}, "
            f"got {model.vocab_size}",
        )
    time_steps = corpus.train[0].shape[1] if corpus.mode == "lines" else train.seq_len
    check_settings(model, train, fn=fn, time_steps=time_steps)
    if stop_after is not None and (not _is_int(stop_after) or stop_after < 0):
        fail(fn, f"expected stop_after None or an int >= 0, got {stop_after!r}")
    n_devices = _device_count(train)
    if resume and out_dir is not None and (Path(out_dir) / CHECKPOINT_NAME).is_file():
        # Checked before the folder is claimed, so that a refused resume changes nothing there.
        done = read_metadata(Path(out_dir) / CHECKPOINT_NAME).get("step")
        if isinstance(done, int) and done > train.steps:
            names = option_names
            fail(
                names.fn,
                f"the checkpoint in {out_dir} is at step {done}, past the {train.steps} steps "
                "asked for; nothing was trained",
                f"set {names.steps} above {done} to train further",
            )
    if out_dir is None:
        if resume:
            fail(fn, "expected an out_dir to resume from, got None")
        claim = contextlib.nullcontext()
    else:
        out_dir = Path(out_dir)
        claim = runs.claim_run_folder(out_dir, resume=resume, overwrite=overwrite, how=option_names)
    with claim:
        return _train_in_folder(
            corpus,
            model,
            train,
            out_dir,
            resume,
            progress,
            log,
            num_samples,
            stop_after,
            n_devices,
        )


def _train_in_folder(
    corpus, model, train, out_dir, resume, progress, log, num_samples, stop_after, n_devices
) -> TrainResult:
    mesh = parallel.data_mesh(jax.local_devices()[:n_devices])
    checkpoint = None if out_dir is None else out_dir / CHECKPOINT_NAME
    style = progress if isinstance(progress, str) else (None if progress else "off")
    state = _initial_state(model, train, corpus.mode)
    step, history = 0, {"loss": [], "valid": [], "seconds": 0.0}
    resumed_from = None
    if resume:
        saved_train = read_metadata(checkpoint).get("train")
        state, step, history = _resume(checkpoint, model, train, corpus)
        resumed_from = step
    bar = progress_lib.Progress(train.steps, initial=step, style=style)
    write = log or bar.write
    if resumed_from is not None:
        last_valid = history["valid"][-1][2] if history["valid"] else None
        write(
            f"resuming from step {step} of {train.steps} in {checkpoint}"
            + (f" (validation {last_valid:.4f} nats/token)" if last_valid is not None else "")
        )
        if isinstance(saved_train, dict):
            changed = _changed_settings(saved_train, train._asdict())
            if changed:
                write("training settings changed since the checkpoint: " + ", ".join(changed))
        if step == train.steps:
            write(f"the run is already at step {step} of {train.steps}: nothing to train")
    state = _placed(state, mesh)
    if jax.local_device_count() > 1:
        write(
            f"data-parallel training on {n_devices} of {jax.local_device_count()} local devices, "
            f"{train.batch_size // n_devices} rows of each batch on each"
        )
    train_step = _make_step(model, train)
    last = min(train.steps, stop_after) if stop_after is not None else train.steps
    baseline_nats = _unigram_nats(corpus)

    def save() -> None:
        if checkpoint is None:
            return
        if not _all_finite(state["params"]):
            write(f"parameters are not finite at step {step}: the checkpoint was not overwritten")
            return
        history["loss"] = history["loss"][:step]
        save_checkpoint(checkpoint, state, _metadata(model, train, corpus, step, history))

    def evaluate():
        nats = evaluate_lm(state["params"], model, corpus, rows=train.eval_rows)
        history["valid"].append([step, history["seconds"], nats])
        return nats

    def show_samples():
        eos = corpus.vocab.eos_id if corpus.mode == "lines" else None
        drawn = sample(
            state["params"],
            model,
            jax.random.fold_in(jax.random.key(train.seed + 2), step),
            num_samples=num_samples,
            max_len=40 if corpus.mode == "lines" else 160,
            eos_id=eos,
            exclude_ids=[corpus.vocab.unk_id],
        )
        write(f"samples after step {step}:")
        for ids in np.asarray(drawn.ids):
            write("  " + corpus.vocab.decode(ids, stop_at_eos=eos is not None).replace("\n", "⏎"))

    stopped_early, failed, diverged, bad_in_a_row = None, False, None, 0
    with runs.StopOnSignal(write) as signals:
        try:
            while step < last and signals.requested is None:
                if train.minutes is not None and history["seconds"] >= 60 * train.minutes:
                    stopped_early = f"time budget of {train.minutes} min reached"
                    break
                inputs, targets, lengths, reset = _batch(corpus, train, step)
                carry = state["carry"]
                if reset and carry is not None:
                    carry = jax.tree.map(jnp.zeros_like, carry)
                n_tokens = targets.size if lengths is None else int(lengths.sum())
                start = time.perf_counter()
                batch = parallel.shard_batch((inputs, targets, lengths, carry), mesh)
                params, opt_state, metrics, new_carry = train_step(
                    state["params"], state["opt_state"], *batch, step
                )
                loss = float(metrics.loss)  # waits for the step: the timing below is honest
                seconds = time.perf_counter() - start
                new_carry = new_carry if state["carry"] is not None else None
                state, step = (
                    {"params": params, "opt_state": opt_state, "carry": new_carry},
                    step + 1,
                )
                history["loss"].append(loss)
                history["seconds"] += seconds
                bad_in_a_row = 0 if bool(metrics.finite) else bad_in_a_row + 1
                if bad_in_a_row:
                    history["skipped_steps"] = history.get("skipped_steps", 0) + 1
                    write(
                        f"step {step}: non-finite loss, gradient or update, update skipped "
                        f"({bad_in_a_row} in a row, {history['skipped_steps']} in this run)"
                    )
                if bad_in_a_row >= train.max_nonfinite_steps:
                    stopped_early = (
                        f"{bad_in_a_row} steps in a row had a non-finite loss, gradient or update "
                        "and were skipped; try clipping (clip_value, clip_norm) or a smaller "
                        "learning rate"
                    )
                    failed = True
                    write(stopped_early)
                    break
                recent = history["loss"][-50:]
                figures = {
                    "loss": f"{sum(recent) / len(recent):.3f}",
                    "tok/s": f"{n_tokens / max(seconds, 1e-9):,.0f}",
                }
                if history.get("skipped_steps"):
                    figures["skipped"] = history["skipped_steps"]
                bar.update(1, **figures)
                every = train.eval_every_seconds
                crossed = every and (
                    history["seconds"] // every > (history["seconds"] - seconds) // every
                )
                if step % train.eval_every == 0 or step == train.steps or crossed:
                    nats = evaluate()
                    ppl = perplexity(nats)
                    write(f"step {step}: valid {nats:.4f} nats/token, perplexity {ppl:.2f}")
                    diverged = divergence(history["valid"], baseline_nats)
                    if diverged:
                        kept = checkpoint is not None and checkpoint.exists()
                        stopped_early = (
                            f"the run diverged at step {step}: {diverged}; try a smaller learning "
                            f"rate (now {train.learning_rate:g})"
                            + (f"; the last checkpoint in {checkpoint} was kept" if kept else "")
                        )
                        failed = True
                        write(stopped_early)
                        break
                if train.sample_every and step % train.sample_every == 0:
                    show_samples()
                if step % train.checkpoint_every == 0:
                    save()
        except KeyboardInterrupt:  # raised where no handler could be installed (another thread)
            signals.requested = signals.requested or signal.SIGINT
        bar.close()
        if signals.requested is not None:
            signals.saving = True
            save()
            write(
                f"interrupted at step {step}"
                + (f"; checkpoint saved to {checkpoint}" if checkpoint else "")
            )
            raise runs.Interrupted(signals.requested)
        if stopped_early and step > 0 and (not history["valid"] or history["valid"][-1][0] != step):
            evaluate()  # the run ended between evaluations
        signals.saving = True
        if not diverged:  # a diverged run keeps the checkpoint from before it went wrong
            save()
        if out_dir is not None:
            plot_history(history, out_dir / "loss.png")
    return TrainResult(state["params"], step, history, checkpoint, stopped_early, failed)


def plot_history(history: dict, path: str | Path, *, title: str = "language model") -> None:
    """Training loss (per step, and its moving average) and validation loss against step, to PNG.

    The file is replaced atomically; a symbolic link at ``path`` is replaced, its target untouched.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = np.asarray(history["loss"], float)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    if len(losses):
        steps = np.arange(1, len(losses) + 1)
        ax.plot(steps, losses, color="tab:blue", alpha=0.25, lw=0.8, label="train (per step)")
        window = max(1, min(100, len(losses) // 20))
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(
            steps[window - 1 :],
            smooth,
            color="tab:blue",
            lw=1.6,
            label=f"train ({window}-step mean)",
        )
    if history["valid"]:
        valid = np.asarray(history["valid"], float)
        ax.plot(valid[:, 0], valid[:, 2], "o-", color="tab:orange", lw=1.6, label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats per token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        # Written like a checkpoint: a temporary file renamed into place, never through a link.
        with atomic_output(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
