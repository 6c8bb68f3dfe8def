"""The traditional n-gram language model: smoothed counts, the baseline for the recurrent models.

The chain rule writes a sequence's probability as a product of next-token probabilities, and the
n-gram model keeps only the last n−1 tokens of the history (the Markov assumption):

    P(y⟨1⟩, …, y⟨T⟩) = Π_t P(y⟨t⟩ | y⟨1⟩, …, y⟨t−1⟩) ≈ Π_t P(y⟨t⟩ | y⟨t−n+1⟩, …, y⟨t−1⟩)

Tokens are integer ids 0..V−1 (one of them is usually ⟨EOS⟩; the model does not need to know which).
Id V is the start symbol ⟨s⟩: with ``pad_start`` each sentence is preceded by n−1 of them, so that
its first tokens have a full context. ⟨s⟩ is context only and is never predicted.

Counts live in numpy arrays, not dicts: a j-gram (u_1, …, u_j) over the V+1 symbols is the integer
code Σ_i u_i (V+1)^(j−i), and each order keeps its codes sorted, so looking up a million n-grams is
one ``np.searchsorted``.

Example:
    >>> import numpy as np
    >>> sentences = [np.array([1, 2, 0]), np.array([1, 1, 0]), np.array([2, 0])]  # 0 is ⟨EOS⟩
    >>> model = fit_ngram(sentences, vocab_size=3, order=2, smoothing="add_k", k=1.0)
    >>> round(float(np.exp(sequence_log_prob(model, [1, 2, 0]))), 6)  # 3/6 · 2/6 · 3/5
    0.1
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np

from jaxrnn._checks import fail

Smoothing = Literal["add_k", "interpolated"]


class NGramTable(NamedTuple):
    """The counts of one order j, as sorted codes (a j-gram (h, w) has code code(h)·(V+1) + w)."""

    codes: np.ndarray  # (m,) int64, sorted, distinct: the j-grams seen
    counts: np.ndarray  # (m,) int64 counts the smoothing uses (raw, or Kneser–Ney adjusted)
    context_codes: np.ndarray  # (c,) int64, sorted: the contexts h (j−1 symbols) of those j-grams
    context_totals: np.ndarray  # (c,) int64 Σ_w counts(h, w)
    context_types: np.ndarray  # (c,) int64 N1+(h •) = |{w : counts(h, w) > 0}|


class NGramLM(NamedTuple):
    """A fitted n-gram language model; ``tables[j − 1]`` holds the counts of order j = 1..n."""

    order: int  # n: each token is predicted from the n−1 before it
    vocab_size: int  # V: token ids 0..V−1; id V is the start symbol ⟨s⟩
    smoothing: Smoothing
    k: float  # add-k pseudo-count
    discount: float  # absolute discount d of interpolated Kneser–Ney
    pad_start: (
        bool  # whether sequences start with n−1 ⟨s⟩ (else the first tokens use shorter contexts)
    )
    tables: tuple[NGramTable, ...]


class Evaluation(NamedTuple):
    """Held-out cross-entropy per token and perplexity, as returned by `evaluate`."""

    nats_per_token: float  # mean of −log P(y⟨t⟩ | context) over every predicted token, natural log
    perplexity: float  # exp(nats_per_token)
    n_tokens: int  # tokens predicted (every token of every sequence; ⟨s⟩ is never predicted)


def fit_ngram(
    sequences: Sequence[np.ndarray] | np.ndarray,
    vocab_size: int,
    order: int,
    *,
    smoothing: Smoothing = "interpolated",
    k: float = 1.0,
    discount: float = 0.75,
    pad_start: bool | None = None,
) -> NGramLM:
    """Count the n-grams of a corpus for an order-n language model.

    Smoothing ``"add_k"`` (Laplace smoothing for k = 1; maximum likelihood is the limit k → 0):

        P(w | h) = (c(h, w) + k) / (c(h) + k·V),    c(h) = Σ_w c(h, w)

    Smoothing ``"interpolated"``, interpolated Kneser–Ney (Chen & Goodman 1998; Jurafsky & Martin,
    *Speech and Language Processing*, ch. 3), the standard strong baseline:

        P_j(w | h) = (max(c_j(h, w) − d, 0) + d·N1+(h •)·P_{j−1}(w | h′)) / Σ_v c_j(h, v)
        P_0(w) = 1/V

    where h′ is h without its oldest token, c_n is the raw count and, for j < n, c_j is the
    continuation count N1+(• h, w): the number of distinct symbols seen before (h, w). A context h
    never seen at order j backs off entirely: P_j(w | h) = P_{j−1}(w | h′). The uniform P_0 gives
    every token, seen or not, a nonzero probability. As in KenLM, a j-gram that begins with ⟨s⟩
    keeps its raw count, since nothing can precede ⟨s⟩; the start of an unpadded sequence counts as
    one distinct preceding symbol.

    Args:
      sequences: a list of 1-D integer arrays, one sentence each, each ending with its ⟨EOS⟩ id;
        or a single 1-D integer array, read as one continuous stream of text.
      vocab_size: V; ids must lie in [0, V).
      order: n ≥ 1 (1: unigram, 2: bigram, …).
      smoothing: ``"add_k"`` or ``"interpolated"``.
      k: add-k pseudo-count, > 0.
      discount: absolute discount d of Kneser–Ney, in (0, 1].
      pad_start: precede each sequence with n−1 start symbols (context only, never predicted).
        Default: True for a list of sentences, False for a single stream. Without padding, the
        first n−1 tokens of each sequence are predicted from the shorter context they have.

    Returns:
      an `NGramLM`; every token of every sequence is a predicted event.

    Raises:
      InputError: order < 1, an unknown smoothing, k ≤ 0, d outside (0, 1], ids outside [0, V),
        an empty corpus, or codes that would overflow int64 ((V+1)^n ≥ 2^63).
    """
    fn = "fit_ngram"
    _check_model_args(fn, vocab_size, order, smoothing, k, discount)
    seqs, is_stream = _as_sequences(fn, sequences, vocab_size)
    if sum(len(s) for s in seqs) == 0:
        fail(fn, "expected at least one token in sequences, got an empty corpus")
    pad_start = (not is_stream) if pad_start is None else bool(pad_start)

    n, start, base = order, vocab_size, vocab_size + 1
    contexts, targets = _windows(seqs, n, start)
    ngram_codes = [code * base + targets for code in _context_codes(contexts, base)]
    # Column n−j of the window is the oldest symbol of the j-gram ending at each target.
    begins_with_start = [np.zeros(len(targets), bool)] + [
        contexts[:, n - j] == start for j in range(2, n + 1)
    ]

    tables = []
    for j in range(1, n + 1):
        # Without padding, a j-gram reaching back before the sequence start does not exist.
        seen = ngram_codes[j - 1] if pad_start else ngram_codes[j - 1][~begins_with_start[j - 1]]
        codes, counts = np.unique(seen, return_counts=True)
        if smoothing == "interpolated" and j < n:
            counts = _continuation_counts(codes, counts, ngram_codes[j], j, start, base)
        tables.append(_table(codes, counts.astype(np.int64), base))
    return NGramLM(n, vocab_size, smoothing, float(k), float(discount), pad_start, tuple(tables))


def log_probs(model: NGramLM, context_ids: Sequence[int] | np.ndarray) -> np.ndarray:
    """log P(w | last n−1 ids of ``context_ids``) for every token w, natural log.

    A context shorter than n−1 ids is the start of a sequence: padded with ⟨s⟩ if the model was
    fitted with ``pad_start``, else predicted from the lower order it has.

    Args:
      model: a fitted `NGramLM`.
      context_ids: 1-D integer ids in [0, V), oldest first; any length (only the last n−1 are used).

    Returns:
      float64 array (V,) whose exponentials sum to 1.
    """
    context = _as_ids("log_probs", "context_ids", context_ids, model.vocab_size)
    window = _last_window(context, model)
    contexts = np.broadcast_to(window, (model.vocab_size, len(window)))
    return np.log(_probs(model, contexts, np.arange(model.vocab_size)))


def per_token_log_probs(model: NGramLM, ids: Sequence[int] | np.ndarray) -> np.ndarray:
    """log P(y⟨t⟩ | y⟨t−n+1⟩, …, y⟨t−1⟩) for each token of one sequence, read from its start.

    Args:
      model: a fitted `NGramLM`.
      ids: 1-D integer ids (T,) in [0, V), e.g. a sentence ending with ⟨EOS⟩.

    Returns:
      float64 array (T,).
    """
    seq = _as_ids("per_token_log_probs", "ids", ids, model.vocab_size)
    contexts, targets = _windows([seq], model.order, model.vocab_size)
    return np.log(_probs(model, contexts, targets))


def sequence_log_prob(model: NGramLM, ids: Sequence[int] | np.ndarray) -> float:
    """log P(y⟨1⟩, …, y⟨T⟩) = Σ_t log P(y⟨t⟩ | previous), natural log (0 for an empty sequence)."""
    return float(per_token_log_probs(model, ids).sum())


def evaluate(model: NGramLM, sequences: Sequence[np.ndarray] | np.ndarray) -> Evaluation:
    """Cross-entropy and perplexity on held-out sequences, every token predicted.

        nats_per_token = −(1/N) Σ_sequences Σ_t log P(y⟨t⟩ | previous)
        perplexity = exp(nats_per_token)

    N counts every token of every sequence (⟨EOS⟩ included, ⟨s⟩ never). Each sequence is read
    from its own start, with the model's ``pad_start`` convention, so a stream's first tokens are
    predicted without the text that preceded it. The perplexity of the uniform model is V.

    Args:
      model: a fitted `NGramLM`.
      sequences: a list of 1-D integer arrays, or a single 1-D array (one sequence).

    Returns:
      an `Evaluation`.
    """
    fn = "evaluate"
    seqs, _ = _as_sequences(fn, sequences, model.vocab_size)
    contexts, targets = _windows(seqs, model.order, model.vocab_size)
    if len(targets) == 0:
        fail(fn, "expected at least one token in sequences, got none")
    nats = float(-np.log(_probs(model, contexts, targets)).mean())
    return Evaluation(nats, float(np.exp(nats)), len(targets))


def sample(
    model: NGramLM,
    rng: np.random.Generator,
    *,
    eos_id: int | None,
    max_len: int,
    prompt: Sequence[int] | np.ndarray = (),
) -> np.ndarray:
    """Draw tokens one at a time from P(w | the last n−1 tokens), after an optional prompt.

    Args:
      model: a fitted `NGramLM`.
      rng: numpy random generator; the same seed gives the same sample.
      eos_id: stop right after drawing this id (``None``: stop only at ``max_len``).
      max_len: the most tokens drawn.
      prompt: ids the sample continues (not part of the result).

    Returns:
      int64 array (≤ max_len,) of drawn ids, ending with ``eos_id`` if it was drawn.
    """
    fn, V = "sample", model.vocab_size
    history = list(_as_ids(fn, "prompt", prompt, V))
    if eos_id is not None and not 0 <= eos_id < V:
        fail(fn, f"expected eos_id in [0, {V}) (vocab_size={V}), got {eos_id}")
    if max_len < 0:
        fail(fn, f"expected max_len ≥ 0, got {max_len}")
    drawn = []
    for _ in range(max_len):
        window = _last_window(np.asarray(history, np.int64), model)
        p = _probs(model, np.broadcast_to(window, (V, len(window))), np.arange(V))
        token = int(rng.choice(V, p=p / p.sum()))  # renormalise away float rounding
        drawn.append(token)
        history.append(token)
        if token == eos_id:
            break
    return np.asarray(drawn, np.int64)


def _probs(model: NGramLM, contexts: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """P(target | context) for a batch: contexts (N, n−1) over 0..V (⟨s⟩ = V), targets (N,)."""
    n, start, base = model.order, model.vocab_size, model.vocab_size + 1
    V, d = model.vocab_size, model.discount
    p = np.full(len(targets), 1.0 / V)  # P_0: uniform
    for j, (table, context_code) in enumerate(
        zip(model.tables, _context_codes(contexts, base), strict=True), start=1
    ):
        total = _lookup(table.context_codes, table.context_totals, context_code)
        count = _lookup(table.codes, table.counts, context_code * base + targets)
        if model.smoothing == "add_k":
            p_j = (count + model.k) / (total + model.k * V)
            usable = np.ones(len(targets), bool)
        else:
            types = _lookup(table.context_codes, table.context_types, context_code)
            safe_total = np.maximum(total, 1)  # unseen contexts are replaced below
            p_j = (np.maximum(count - d, 0.0) + d * types * p) / safe_total
            usable = total > 0  # an unseen context backs off to the order below
        if not model.pad_start and j >= 2:
            usable &= contexts[:, n - j] != start  # the context reaches back before the sequence
        p = np.where(usable, p_j, p)
    return p


def _continuation_counts(codes, raw_counts, longer_codes, j, start, base) -> np.ndarray:
    """Kneser–Ney counts of the j-grams ``codes``: N1+(• g), or the raw count if g begins with ⟨s⟩.

    ``longer_codes`` are the (j+1)-grams ending at every token, ⟨s⟩ included as the oldest symbol.
    """
    suffix = np.unique(longer_codes) % base**j  # each distinct (j+1)-gram minus its oldest symbol
    extended, n_preceding = np.unique(suffix, return_counts=True)
    preceded = _lookup(extended, n_preceding, codes)
    begins_with_start = codes // base ** (j - 1) == start
    return np.where(begins_with_start, raw_counts, preceded)


def _table(codes: np.ndarray, counts: np.ndarray, base: int) -> NGramTable:
    context_of = codes // base  # sorted, since codes are
    context_codes, first, types = np.unique(context_of, return_index=True, return_counts=True)
    totals = np.add.reduceat(counts, first) if len(codes) else np.zeros(0, np.int64)
    return NGramTable(codes, counts, context_codes, totals.astype(np.int64), types.astype(np.int64))


def _lookup(sorted_codes: np.ndarray, values: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """values[i] where sorted_codes[i] == query, 0 where the query is absent."""
    if len(sorted_codes) == 0:
        return np.zeros(len(queries), values.dtype)
    i = np.minimum(np.searchsorted(sorted_codes, queries), len(sorted_codes) - 1)
    return np.where(sorted_codes[i] == queries, values[i], 0)


def _context_codes(contexts: np.ndarray, base: int) -> list[np.ndarray]:
    """Codes of the last j−1 context symbols, for j = 1..n; contexts (N, n−1), oldest first."""
    codes = [np.zeros(len(contexts), np.int64)]
    width = contexts.shape[1]
    for j in range(2, width + 2):
        # Prepend the next older symbol as the most significant digit.
        codes.append(codes[-1] + contexts[:, width - j + 1] * base ** (j - 2))
    return codes


def _windows(seqs: list[np.ndarray], order: int, start: int) -> tuple[np.ndarray, np.ndarray]:
    """The n−1 symbols before each token (⟨s⟩ before a sequence starts): (N, n−1), targets (N,)."""
    pad = np.full(order - 1, start, np.int64)
    stream = np.concatenate([np.zeros(0, np.int64)] + [part for s in seqs for part in (pad, s)])
    positions = np.flatnonzero(stream != start)
    contexts = stream[positions[:, None] + np.arange(1 - order, 0)]
    return contexts, stream[positions]


def _last_window(context: np.ndarray, model: NGramLM) -> np.ndarray:
    width = model.order - 1
    padded = np.concatenate([np.full(width, model.vocab_size, np.int64), context])
    return padded[len(padded) - width :]


def _as_ids(fn: str, name: str, ids, vocab_size: int) -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim != 1:
        fail(fn, f"expected {name} to be a 1-D array of token ids, got shape {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        fail(fn, f"expected {name} to have an integer dtype, got {arr.dtype}")
    low, high = int(arr.min()), int(arr.max())
    if low < 0 or high >= vocab_size:
        fail(
            fn,
            f"expected {name} ids in [0, {vocab_size}) (vocab_size={vocab_size}), "
            f"got values from {low} to {high}",
        )
    return arr.astype(np.int64)


def _as_sequences(fn: str, sequences, vocab_size: int) -> tuple[list[np.ndarray], bool]:
    """(list of validated int64 sequences, whether a single stream was given)."""
    if isinstance(sequences, np.ndarray):
        if sequences.ndim != 1:
            fail(
                fn,
                f"expected sequences to be a list of 1-D arrays or one 1-D array, "
                f"got an array of shape {sequences.shape}",
                "pass list(array) for a batch of equal-length sentences",
            )
        return [_as_ids(fn, "sequences", sequences, vocab_size)], True
    if not isinstance(sequences, list | tuple):
        fail(fn, f"expected sequences to be a list of 1-D arrays, got {type(sequences).__name__}")
    return [_as_ids(fn, f"sequences[{i}]", s, vocab_size) for i, s in enumerate(sequences)], False


def _check_model_args(fn, vocab_size, order, smoothing, k, discount) -> None:
    if not isinstance(order, int | np.integer) or order < 1:
        fail(fn, f"expected order ≥ 1 (1: unigram, 2: bigram, …), got {order!r}")
    if not isinstance(vocab_size, int | np.integer) or vocab_size < 1:
        fail(fn, f"expected vocab_size ≥ 1, got {vocab_size!r}")
    if smoothing not in ("add_k", "interpolated"):
        fail(fn, f"expected smoothing 'add_k' or 'interpolated', got {smoothing!r}")
    if not k > 0:
        fail(fn, f"expected k > 0, got {k}", "maximum likelihood is the limit k → 0; use a small k")
    if not 0 < discount <= 1:
        fail(fn, f"expected discount in (0, 1], got {discount}")
    if (vocab_size + 1) ** order > np.iinfo(np.int64).max:
        fail(
            fn,
            f"expected (vocab_size + 1)^order < 2^63 so that n-gram codes fit in int64, "
            f"got ({vocab_size} + 1)^{order}",
            "use a lower order or a smaller vocabulary",
        )
