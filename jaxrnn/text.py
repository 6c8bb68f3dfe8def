"""Vocabularies, encoding and batching of text for character- and word-level models (numpy only).

Two special tokens are always in a vocabulary. ⟨EOS⟩ ends a sentence: at character level it *is*
the newline ``"\\n"`` (as in the course's character model, a line is a sentence, and in a continuous
text the newline is simply the EOS token); at word level it is ``"<eos>"``, produced by each
newline. ⟨UNK⟩ (``"<unk>"``) stands for every token the vocabulary does not hold; it is one token,
never produced by splitting text.

A `Corpus` is a text made ready for a language model: split into training and validation parts
and encoded. The batchers are pure functions of ``(seed, step)``, so a resumed training run sees
exactly the batches it would have seen without the interruption.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache, cached_property, lru_cache
from typing import Literal, NamedTuple

import numpy as np

from jaxrnn import _checks
from jaxrnn._checks import fail, gib, is_int, is_number

Level = Literal["char", "word"]
UNK = "<unk>"
EOS = {"char": "\n", "word": "<eos>"}
START = -1  # the input id that means x = 0: a language model's first input, before any token
WORD_PATTERN = re.compile(r"[\w']+|[^\w\s]")  # words (with apostrophes) and single punctuation


def _tokenize(text: str, level: str, lowercase: bool) -> list[str]:
    text = text.lower() if lowercase else text
    if level == "char":
        return list(text)
    tokens = []
    for i, line in enumerate(text.split("\n")):
        tokens += ([EOS["word"]] if i else []) + WORD_PATTERN.findall(line)
    return tokens


def _check_int(fn: str, name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        fail(fn, f"expected {name} to be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_ids(fn: str, name: str, ids) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.size == 0:  # np.asarray([]) is float64; an empty sequence is still valid ids
        ids = ids.astype(np.int32)
    if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
        fail(fn, f"expected {name} to be a 1-D integer array, got shape {ids.shape}, {ids.dtype}")
    return ids


def _check_fraction(fn: str, fraction) -> None:
    if not 0 < fraction < 1:
        fail(fn, f"expected fraction strictly between 0 and 1, got {fraction!r}")


def _n_train(fn: str, n: int, fraction: float, what: str) -> int:
    if n < 2:
        fail(fn, f"expected at least 2 {what} to split, got {n}")
    return min(max(round(n * fraction), 1), n - 1)  # never leave either side empty


@dataclass(frozen=True)
class Vocab:
    """A token vocabulary: ``tokens[i]`` is the token with id ``i``.

    Attributes:
      tokens: tuple of the tokens, index -> token; holds ⟨EOS⟩ and ⟨UNK⟩ exactly once.
      level: ``"char"`` (each character a token; ⟨EOS⟩ is ``"\\n"``) or ``"word"`` (words and
        punctuation marks, ⟨EOS⟩ is ``"<eos>"``).
      lowercase: lower-case text before splitting it into tokens.

    Round trip: at char level ``decode(encode(t)) == t`` when every character of ``t`` is in the
    vocabulary (newlines included); at word level it gives the tokens of each line of ``t`` joined
    by single spaces, lines joined by ``"\\n"``.

    Example:
      >>> v = build_vocab(["ab\\nba"], order="alphabetical")
      >>> v.tokens, v.encode("abc").tolist(), v.decode([1, 2, 0])
      (('\\n', 'a', 'b', '<unk>'), [1, 2, 3], 'ab\\n')
    """

    tokens: tuple[str, ...]
    level: Level = "char"
    lowercase: bool = False

    def __post_init__(self):
        if self.level not in EOS:
            fail("Vocab", f"expected level 'char' or 'word', got {self.level!r}")
        if not isinstance(self.lowercase, bool):
            fail("Vocab", f"expected lowercase to be a bool, got {self.lowercase!r}")
        if isinstance(self.tokens, str) or not all(isinstance(t, str) for t in self.tokens):
            fail("Vocab", f"expected tokens to be a sequence of strings, got {self.tokens!r:.80}")
        object.__setattr__(self, "tokens", tuple(self.tokens))  # a list would not be hashable
        duplicates = sorted(t for t, n in Counter(self.tokens).items() if n > 1)
        if duplicates:
            fail("Vocab", f"expected unique tokens, got duplicates {duplicates[:10]}")
        missing = [t for t in (EOS[self.level], UNK) if t not in self.tokens]
        if missing:
            fail("Vocab", f"expected the special tokens {missing} in a {self.level}-level vocab")
        if self.level == "char":  # a longer token could never come out of tokenize
            bad = [t for t in self.tokens if len(t) != 1 and t != UNK]
            reason = "single characters (or '<unk>')"
        else:
            bad = [t for t in self.tokens if not t or any(c.isspace() for c in t)]
            reason = "non-empty and without whitespace"
        if bad:
            fail("Vocab", f"expected {self.level}-level tokens {reason}, got {bad[:10]}")

    @cached_property
    def _ids(self) -> dict[str, int]:
        return {token: i for i, token in enumerate(self.tokens)}

    @property
    def size(self) -> int:
        """Number of tokens, specials included."""
        return len(self.tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def eos_id(self) -> int:
        return self._ids[EOS[self.level]]

    @property
    def unk_id(self) -> int:
        return self._ids[UNK]

    def index(self, token: str) -> int:
        """The id of ``token``; ``unk_id`` if the vocabulary does not hold it."""
        return self._ids.get(token, self.unk_id)

    def tokenize(self, text: str) -> list[str]:
        """Split ``text`` into tokens (lower-cased first if ``lowercase``).

        Char level: the list of characters, newlines included. Word level: words and punctuation
        marks as separate tokens (regex ``[\\w']+|[^\\w\\s]``), each newline an ``"<eos>"``.
        """
        if not isinstance(text, str):
            fail("Vocab.tokenize", f"expected text to be a str, got {type(text).__name__}")
        return _tokenize(text, self.level, self.lowercase)

    def encode(self, text: str, *, add_eos: bool = False) -> np.ndarray:
        """Token ids of ``text``: int32 array (n_tokens,), plus ⟨EOS⟩ at the end if ``add_eos``."""
        ids = [self.index(t) for t in self.tokenize(text)] + ([self.eos_id] if add_eos else [])
        return np.asarray(ids, np.int32)

    def encode_lines(self, lines: Iterable[str]) -> list[np.ndarray]:
        """One int32 array (len(line) tokens + 1,) per line, each ending in ⟨EOS⟩."""
        if isinstance(lines, str):
            fail("Vocab.encode_lines", "expected an iterable of lines, got a str", "use .split")
        out = []
        for i, line in enumerate(lines):
            if "\n" in line:
                fail("Vocab.encode_lines", f"expected lines without '\\n', got {line!r} at {i}")
            out.append(self.encode(line, add_eos=True))
        return out

    def decode(self, ids: Sequence[int] | np.ndarray, *, stop_at_eos: bool = False) -> str:
        """The text of ``ids`` (1-D ints): tokens concatenated (char level) or joined by spaces,
        each ⟨EOS⟩ rendered as a newline (word level). ``stop_at_eos`` drops the first ⟨EOS⟩ and
        everything after it."""
        ids = _check_ids("Vocab.decode", "ids", ids)
        if ids.size and (ids.min() < 0 or ids.max() >= self.size):
            fail("Vocab.decode", f"expected ids in [0, {self.size}), got {ids.min()}..{ids.max()}")
        ids = ids.tolist()
        if stop_at_eos and self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        if self.level == "char":
            return "".join(self.tokens[i] for i in ids)
        words = ["\n" if i == self.eos_id else self.tokens[i] for i in ids]
        # tokens hold no whitespace, so every space beside a newline is a separator to drop
        return " ".join(words).replace(" \n", "\n").replace("\n ", "\n")

    def to_dict(self) -> dict:
        """A JSON-safe dict (for checkpoints); ``Vocab.from_dict`` inverts it."""
        return {"tokens": list(self.tokens), "level": self.level, "lowercase": self.lowercase}

    @classmethod
    def from_dict(cls, data: dict) -> Vocab:
        """The `Vocab` saved by ``to_dict``; raises `InputError` if ``data`` is not one."""
        keys = {"tokens", "level", "lowercase"}
        if not isinstance(data, dict) or set(data) != keys:
            got = sorted(data) if isinstance(data, dict) else type(data).__name__
            fail("Vocab.from_dict", f"expected a dict with keys {sorted(keys)}, got {got}")
        if not isinstance(data["tokens"], list | tuple):
            fail("Vocab.from_dict", f"expected tokens to be a list, got {data['tokens']!r:.80}")
        return cls(tuple(data["tokens"]), data["level"], data["lowercase"])


def build_vocab(
    texts: Iterable[str],
    *,
    level: Level = "char",
    max_size: int | None = None,
    min_count: int = 1,
    lowercase: bool = False,
    order: Literal["frequency", "alphabetical"] = "frequency",
) -> Vocab:
    """The vocabulary of a corpus: ⟨EOS⟩ with id 0, then the kept tokens, then ⟨UNK⟩ last.

    Keeps the tokens occurring at least ``min_count`` times, at most the ``max_size`` most frequent
    (ties broken alphabetically, so the result is deterministic); the rest map to ⟨UNK⟩. With
    ``order="alphabetical"`` the kept tokens are sorted by code point, which on a corpus of the 26
    lower-case letters gives the course's indices: ``"\\n"`` = 0, ``"a"`` = 1 … ``"z"`` = 26 (and
    ⟨UNK⟩ = 27).

    Args:
      texts: iterable of strings (lines or whole documents).
      level: ``"char"`` or ``"word"`` (see `Vocab`).
      max_size: the most tokens in the vocabulary, *counting ⟨EOS⟩ and ⟨UNK⟩* (at least 3).
      min_count: the fewest occurrences for a token to be kept.
      lowercase: lower-case text before counting (and later encoding).
      order: ``"frequency"`` (most frequent first) or ``"alphabetical"``.

    Returns:
      A `Vocab` of size ≤ ``max_size``.
    """
    fn = "build_vocab"
    if level not in EOS:
        fail(fn, f"expected level 'char' or 'word', got {level!r}")
    if order not in ("frequency", "alphabetical"):
        fail(fn, f"expected order 'frequency' or 'alphabetical', got {order!r}")
    if max_size is not None:
        _check_int(fn, "max_size", max_size, 3)
    _check_int(fn, "min_count", min_count, 1)
    if isinstance(texts, str):
        fail(fn, "expected an iterable of strings, got a str", "wrap a single text in a list")
    counts = Counter()
    for text in texts:
        if not isinstance(text, str):
            fail(fn, f"expected texts to hold strings, got {type(text).__name__}")
        counts.update(_tokenize(text, level, lowercase))
    counts.pop(EOS[level], None)  # the specials are always in, whatever their counts
    if not counts:
        fail(fn, "expected texts with at least one token besides newlines, got an empty corpus")
    ranked = sorted(counts, key=lambda t: (-counts[t], t))
    kept = [t for t in ranked if counts[t] >= min_count]
    kept = kept if max_size is None else kept[: max_size - 2]
    if not kept:
        top = ranked[0]
        most = f"the most frequent, {top!r}, occurs {counts[top]} times"
        fail(fn, f"expected a token occurring at least min_count={min_count} times; {most}")
    if order == "alphabetical":
        kept.sort()
    return Vocab((EOS[level], *kept, UNK), level, lowercase)


def pad_batch(
    sequences: Sequence[Sequence[int] | np.ndarray], *, pad_id: int, max_len: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad id sequences into one array, truncating those longer than ``max_len``.

    jaxrnn's losses and unroll never read the padded positions when given ``lengths``, so
    ``pad_id`` only needs to be a valid id (``vocab.eos_id``, say).

    Args:
      sequences: N 1-D integer sequences.
      pad_id: the id written past each sequence's end.
      max_len: T; the longest sequence's length if None. A fixed value gives every batch the
        same shape, so a jitted step is traced once.

    Returns:
      ``(ids, lengths)``: int32 (N, T) and the int32 (N,) lengths after truncation.
    """
    fn = "pad_batch"
    if len(sequences) == 0:
        fail(fn, "expected at least one sequence, got none")
    _check_int(fn, "pad_id", pad_id, 0)
    seqs = [_check_ids(fn, f"sequences[{i}]", s) for i, s in enumerate(sequences)]
    n_steps = max(map(len, seqs)) if max_len is None else _check_int(fn, "max_len", max_len, 1)
    ids = np.full((len(seqs), n_steps), pad_id, np.int32)
    lengths = np.array([min(len(s), n_steps) for s in seqs], np.int32)
    for row, (seq, n) in enumerate(zip(seqs, lengths, strict=True)):
        ids[row, :n] = seq[:n]
    return ids, lengths


def batch_indices(n_examples: int, batch_size: int, *, seed: int, step: int) -> np.ndarray:
    """Example indices for training step ``step`` (0-based): int64 (batch_size,).

    Epoch e is a permutation from ``np.random.default_rng([seed, e])`` cut into
    ``n_examples // batch_size`` batches (the incomplete last one dropped); step k takes batch
    ``k mod batches_per_epoch`` of epoch ``k // batches_per_epoch``.
    """
    fn = "batch_indices"
    _check_int(fn, "batch_size", batch_size, 1)
    _check_int(fn, "n_examples", n_examples, batch_size)
    _check_int(fn, "seed", seed, 0)
    epoch, k = divmod(_check_int(fn, "step", step, 0), n_examples // batch_size)
    order = np.random.default_rng([seed, epoch]).permutation(n_examples)
    return order[k * batch_size : (k + 1) * batch_size]


def stream_windows(
    ids: np.ndarray, *, batch_size: int, seq_len: int, seed: int, step: int
) -> tuple[np.ndarray, np.ndarray]:
    """Random contiguous windows of a long id stream, starts drawn by ``default_rng([seed, step])``.

    Args:
      ids: 1-D integer stream of at least ``seq_len + 1`` ids.

    Returns:
      ``(inputs, targets)``: int32 (batch_size, seq_len) each, ``targets[b, t] = ids[s_b + t + 1]``
      where ``inputs[b, t] = ids[s_b + t]``.
    """
    fn = "stream_windows"
    ids = _check_ids(fn, "ids", ids)
    _check_int(fn, "batch_size", batch_size, 1)
    _check_int(fn, "seq_len", seq_len, 1)
    _check_int(fn, "seed", seed, 0)
    _check_int(fn, "step", step, 0)
    if len(ids) < seq_len + 1:
        fail(fn, f"expected at least seq_len + 1 = {seq_len + 1} ids, got {len(ids)}")
    starts = np.random.default_rng([seed, step]).integers(0, len(ids) - seq_len, batch_size)
    positions = starts[:, None] + np.arange(seq_len)
    return ids[positions].astype(np.int32), ids[positions + 1].astype(np.int32)


def _n_chunks(fn: str, n_ids: int, batch_size: int, seq_len: int) -> int:
    _check_int(fn, "batch_size", batch_size, 1)
    _check_int(fn, "seq_len", seq_len, 1)
    n_chunks = (n_ids - 1) // batch_size // seq_len  # one id kept back: the last target
    if n_chunks < 1:
        need = batch_size * seq_len + 1
        fail(fn, f"expected at least batch_size * seq_len + 1 = {need} ids, got {n_ids}")
    return n_chunks


def n_stream_chunks(n_ids: int, batch_size: int, seq_len: int) -> int:
    """How many chunks `stream_chunks` cuts a stream of ``n_ids`` ids into (at least 1)."""
    return _n_chunks("n_stream_chunks", n_ids, batch_size, seq_len)


def stream_chunks(
    ids: np.ndarray, *, batch_size: int, seq_len: int, step: int
) -> tuple[np.ndarray, np.ndarray, bool]:
    """Consecutive chunks of a stream cut into parallel rows, for truncated backprop through time.

    The stream is cut into ``batch_size`` equal rows (the tail that does not fit is dropped); chunk
    k = ``step mod n_chunks`` holds columns ``[k * seq_len, (k + 1) * seq_len)``, so row r of
    chunk k + 1 continues row r of chunk k and the carry can be passed on between them.

    Args:
      ids: 1-D integer stream of at least ``batch_size * seq_len + 1`` ids.

    Returns:
      ``(inputs, targets, is_first)``: int32 (batch_size, seq_len) each, targets the next ids in
      the stream; ``is_first`` is True for chunk 0, where the carry must be reset.
    """
    fn = "stream_chunks"
    ids = _check_ids(fn, "ids", ids)
    n_chunks = _n_chunks(fn, len(ids), batch_size, seq_len)
    k = _check_int(fn, "step", step, 0) % n_chunks
    row_len = (len(ids) - 1) // batch_size
    rows = ids[: batch_size * row_len].reshape(batch_size, row_len)
    next_rows = ids[1 : batch_size * row_len + 1].reshape(batch_size, row_len)
    cols = slice(k * seq_len, (k + 1) * seq_len)
    return rows[:, cols].astype(np.int32), next_rows[:, cols].astype(np.int32), k == 0


def split_text(text: str, fraction: float = 0.9) -> tuple[str, str]:
    """``(train, valid)``: the first ``fraction`` of the characters of ``text`` (rounded, at least
    one character on each side) and the rest; the cut may fall inside a line."""
    if not isinstance(text, str):
        fail("split_text", f"expected text to be a str, got {type(text).__name__}")
    _check_fraction("split_text", fraction)
    n_train = _n_train("split_text", len(text), fraction, "characters")
    return text[:n_train], text[n_train:]


def split_lines(
    lines: Sequence[str], fraction: float = 0.9, seed: int = 0
) -> tuple[list[str], list[str]]:
    """``(train, valid)`` lists: ``lines`` shuffled by ``default_rng(seed)``, then cut at
    ``fraction`` (rounded, at least one line on each side)."""
    if isinstance(lines, str):
        fail("split_lines", "expected a sequence of lines, got a str", "use .splitlines()")
    _check_fraction("split_lines", fraction)
    _check_int("split_lines", "seed", seed, 0)
    n_train = _n_train("split_lines", len(lines), fraction, "lines")
    shuffled = [lines[i] for i in np.random.default_rng(seed).permutation(len(lines))]
    return shuffled[:n_train], shuffled[n_train:]


class Corpus(NamedTuple):
    """A text prepared for a language model.

    ``mode="lines"``: each line is a sentence (a name, a sentence); ``train`` and ``valid`` are
    ``(targets (N, T) int32, lengths (N,) int32)``, each line followed by ⟨EOS⟩ and right-padded.
    ``mode="stream"``: the text is one long sequence; ``train`` and ``valid`` are ``(ids (n,),)``.
    """

    vocab: Vocab
    mode: Literal["lines", "stream"]
    train: tuple
    valid: tuple


def make_corpus(
    text: str,
    *,
    level: Level = "char",
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
    if not is_number(valid_fraction) or not 0 < valid_fraction < 1:
        fail(fn, f"expected valid_fraction strictly between 0 and 1, got {valid_fraction!r}")
    if max_len is not None and (not is_int(max_len) or max_len < 1):
        fail(fn, f"expected max_len None or an int >= 1, got {max_len!r}")
    if mode == "lines":
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) < 2:
            fail(fn, f"expected a text with at least 2 non-empty lines, got {len(lines)}")
        train_lines, valid_lines = split_lines(lines, 1 - valid_fraction, seed)
        vocab = build_vocab(
            train_lines, level=level, max_size=max_vocab, min_count=min_count, lowercase=lowercase
        )
        encoded = [vocab.encode_lines(part) for part in (train_lines, valid_lines)]
        longest = max(len(ids) for part in encoded for ids in part)
        width = longest if max_len is None else min(longest, max_len)
        padded_bytes = 2 * 4 * width * sum(len(part) for part in encoded)  # targets and inputs
        if padded_bytes > _checks.MEMORY_LIMIT_BYTES / 4:
            fail(
                fn,
                f"padding {len(lines):,} lines to the longest one ({longest:,} tokens) would take "
                f"about {gib(padded_bytes)}",
                "pass max_len (jaxrnn train --max-len) to truncate long lines, or use mode "
                "'stream' (--mode stream)",
            )
        train, valid = (pad_batch(part, pad_id=vocab.eos_id, max_len=width) for part in encoded)
        return Corpus(vocab, mode, train, valid)
    train_text, valid_text = split_text(text, 1 - valid_fraction)
    vocab = build_vocab(
        [train_text], level=level, max_size=max_vocab, min_count=min_count, lowercase=lowercase
    )
    return Corpus(vocab, mode, (vocab.encode(train_text),), (vocab.encode(valid_text),))


class Batch(NamedTuple):
    """The examples of one training step."""

    inputs: np.ndarray  # int32 (B, T); lines start with START, the id that means x⟨1⟩ = 0
    targets: np.ndarray  # int32 (B, T): the id after each input
    lengths: np.ndarray | None  # int32 (B,) in lines mode; None in stream mode (no padding)
    fresh_carry: bool  # start from a zero carry: always, except a stateful stream's later chunks
    resets: np.ndarray | None = None  # bool (B, T), packed lines: True where each line starts


def pack_lines(lengths: np.ndarray, *, rows: int, width: int) -> list[np.ndarray]:
    """Packs lines, in the order given, into batches of ``rows`` rows of ``width`` tokens.

    First fit: each line goes to the end of the first row of the open batch with room for it; a
    line that fits in no row closes the batch and opens the next. The last batch, which the lines
    ran out in, is dropped as incomplete.

    Args:
      lengths: int (N,) line lengths, each in [1, width].

    Returns:
      one int64 array (n, 3) per batch: for each of its lines, the line's position in
      ``lengths``, its row and the column it starts at.
    """
    fn = "pack_lines"
    _check_int(fn, "rows", rows, 1)
    _check_int(fn, "width", width, 1)
    lengths = _check_ids(fn, "lengths", lengths)
    if lengths.size and not 1 <= lengths.min() <= lengths.max() <= width:
        fail(fn, f"expected lengths in [1, width={width}], got {lengths.min()}…{lengths.max()}")
    batches, placed, ends = [], [], [0] * rows
    for position, n in enumerate(lengths.tolist()):
        row = next((r for r, end in enumerate(ends) if end + n <= width), None)
        if row is None:
            batches.append(np.array(placed, np.int64).reshape(-1, 3))
            placed, ends, row = [], [0] * rows, 0
        placed.append((position, row, ends[row]))
        ends[row] += n
    return batches


@lru_cache(maxsize=2)
def _packed_epoch(lengths: bytes, rows: int, width: int, seed: int, epoch: int):
    """(order, batches): epoch ``epoch``'s permutation of the lines and its packing."""
    line_lengths = np.frombuffer(lengths, np.int32)
    order = _epoch_order(len(line_lengths), seed, epoch)
    return order, pack_lines(line_lengths[order], rows=rows, width=width)


def _epoch_order(n_lines: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n_lines)


def _packing_key(lengths: np.ndarray, rows: int, width: int, seed: int) -> tuple:
    """`_packed_epoch`'s arguments but the epoch, hashable: the lengths as bytes."""
    return (np.ascontiguousarray(lengths, np.int32).tobytes(), rows, width, seed)


@cache
def _packed_epoch_size(lengths: bytes, rows: int, width: int, seed: int, epoch: int) -> int:
    return len(_packed_epoch(lengths, rows, width, seed, epoch)[1])


def packed_batches_in_first_epoch(
    lengths: np.ndarray, *, batch_size: int, width: int, seed: int
) -> int:
    """How many batches `packed_batch` packs in its first epoch from lines of ``lengths`` (int
    (N,)) into ``batch_size`` rows of ``width``: 0 where the lines fit in ``batch_size`` rows,
    whose batch is dropped as incomplete. Kept, as `packed_batch` keeps it for its steps."""
    return _packed_epoch_size(*_packing_key(lengths, batch_size, width, seed), 0)


def rows_packed_lines_fill(lengths: np.ndarray, *, width: int, seed: int) -> int:
    """How many rows of ``width`` the lines of ``lengths`` (int (N,), each in [1, width]) fill,
    packed by `pack_lines` in the order of `packed_batch`'s first epoch with rows to spare: its
    batches need fewer rows than this, so that a line is left over to close each."""
    lengths = np.asarray(lengths)
    n = len(lengths)
    if n == 0:
        return 0
    # n rows hold every line; n full-width lines after them take the rows they leave empty, and
    # the first that finds none closes the batch, which so holds n - (rows filled) of them.
    lines = np.append(lengths[_epoch_order(n, seed, 0)], np.full(n, width))
    batch = pack_lines(lines, rows=n, width=width)[0]
    return n - int((batch[:, 0] >= n).sum())


def packed_batch(
    targets: np.ndarray, lengths: np.ndarray, step: int, *, batch_size: int, seed: int
) -> Batch:
    """Training step ``step``'s lines packed several to a row, a pure function of ``(seed, step)``.

    Each epoch takes the lines in the order of ``default_rng([seed, epoch]).permutation`` and packs
    them with `pack_lines` into batches of ``batch_size`` rows as wide as ``targets``; step k takes
    the epoch's batches one after another. Every line begins with `START` and a reset, so a model
    reads each line from its initial carry exactly as if it were alone in its row, while the row
    holds several lines instead of one line and its padding.

    Args:
      targets: int32 (N, T) right-padded lines, each ending in ⟨EOS⟩, with ``lengths`` int32 (N,).

    Returns:
      a `Batch` with ``lengths`` the filled part of each row and ``resets`` bool (B, T).
    """
    fn = "packed_batch"
    _check_int(fn, "batch_size", batch_size, 1)
    _check_int(fn, "seed", seed, 0)
    _check_int(fn, "step", step, 0)
    key = _packing_key(lengths, batch_size, targets.shape[1], seed)
    if _packed_epoch_size(*key, 0) == 0:
        fail(fn, f"expected lines for at least one full batch of {batch_size} rows")
    epoch = 0
    while step >= (size := _packed_epoch_size(*key, epoch)):
        step, epoch = step - size, epoch + 1
    order, batches = _packed_epoch(*key, epoch)
    inputs = np.zeros((batch_size, targets.shape[1]), np.int32)
    packed = np.zeros_like(inputs)
    resets = np.zeros(inputs.shape, bool)
    filled = np.zeros(batch_size, np.int32)
    for position, row, column in batches[step].tolist():
        line = order[position]
        n = lengths[line]
        packed[row, column : column + n] = targets[line, :n]
        inputs[row, column] = START
        inputs[row, column + 1 : column + n] = targets[line, : n - 1]
        resets[row, column] = True
        filled[row] = column + n
    return Batch(inputs, packed, filled, True, resets)


def training_batch(
    corpus: Corpus,
    step: int,
    *,
    batch_size: int,
    seq_len: int,
    seed: int,
    stateful: bool = False,
    pack: bool = False,
) -> Batch:
    """The batch of training step ``step``, a pure function of ``(seed, step)``.

    Lines mode: ``batch_size`` lines by `batch_indices`, teacher-forced, or with ``pack`` rows of
    several whole lines each (`packed_batch`). Stream mode: random windows of ``seq_len`` tokens
    (`stream_windows`), or with ``stateful`` the consecutive chunks of `stream_chunks`, whose
    carry passes on from one step to the next.
    """
    if corpus.mode == "lines":
        targets, lengths = corpus.train
        if pack:
            return packed_batch(targets, lengths, step, batch_size=batch_size, seed=seed)
        rows = batch_indices(len(targets), batch_size, seed=seed, step=step)
        targets = targets[rows]
        start = np.full((len(rows), 1), START, targets.dtype)
        inputs = np.concatenate([start, targets[:, :-1]], axis=1)
        return Batch(inputs, targets, lengths[rows], True)
    (ids,) = corpus.train
    if stateful:
        inputs, targets, first = stream_chunks(
            ids, batch_size=batch_size, seq_len=seq_len, step=step
        )
        return Batch(inputs, targets, None, first)
    inputs, targets = stream_windows(
        ids, batch_size=batch_size, seq_len=seq_len, seed=seed, step=step
    )
    return Batch(inputs, targets, None, True)


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
