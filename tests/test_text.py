"""Vocabularies, encoding and batchers: exact values on small corpora, round trips by hypothesis."""

import json
import re
from importlib import resources

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxrnn._checks import InputError
from jaxrnn.text import (
    Vocab,
    batch_indices,
    build_vocab,
    n_stream_chunks,
    pad_batch,
    split_lines,
    split_text,
    stream_chunks,
    stream_windows,
)

ALPHABET = "abcdefghijklmnopqrstuvwxyz"
# counts: the 3, cat 2, dog 1, ran 1, sat 1, "." 1
WORDS = ["the cat sat", "the cat ran.", "the dog"]


@settings(max_examples=50, deadline=None)
@given(st.text())
def test_vocab_char_round_trip(text):
    vocab = build_vocab([text, "x"])  # "x": the corpus is never empty
    assert vocab.decode(vocab.encode(text)) == text
    assert vocab.decode(vocab.encode(text, add_eos=True)) == text + "\n"


@settings(max_examples=50, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab CD'.,!\n\t-é1_")))
def test_vocab_word_round_trip(text):
    vocab = build_vocab([text, "x"], level="word")
    lines = text.split("\n")
    expected = "\n".join(" ".join(re.findall(r"[\w']+|[^\w\s]", line)) for line in lines)
    assert vocab.decode(vocab.encode(text)) == expected
    assert vocab.tokenize(vocab.decode(vocab.encode(text))) == vocab.tokenize(text)


def test_vocab_word_tokenize_and_decode_values():
    vocab = build_vocab(["Don't stop, Bob!\nyes"], level="word", lowercase=True)
    tokens = ["don't", "stop", ",", "bob", "!", "<eos>", "yes"]
    assert vocab.tokenize("Don't stop, Bob!\nYES") == tokens
    assert vocab.decode(vocab.encode("Don't stop, Bob!\nYES")) == "don't stop , bob !\nyes"
    assert vocab.decode(vocab.encode("yes\n\nbob", add_eos=True)) == "yes\n\nbob\n"
    assert vocab.decode(vocab.encode("yes\nbob"), stop_at_eos=True) == "yes"


def test_vocab_char_specials_and_indices():
    vocab = build_vocab(["ba\nab", "c"], order="alphabetical")
    assert vocab.tokens == ("\n", "a", "b", "c", "<unk>")
    assert (vocab.eos_id, vocab.unk_id, vocab.size, len(vocab)) == (0, 4, 5, 5)
    assert vocab.encode("cab\nz").tolist() == [3, 1, 2, 0, 4]
    assert vocab.encode("").dtype == np.int32
    assert vocab.index("<unk>") == vocab.index("q") == 4
    assert vocab.decode([3, 0, 1], stop_at_eos=True) == "c"
    assert vocab.decode(np.array([4, 1])) == "<unk>a"


def test_vocab_frequency_order_ties_alphabetical():
    # counts: a 3, b 2, space 1, c 1, d 1; ties at 1 in code-point order: " " < "c" < "d"
    vocab = build_vocab(["aaab bc", "d\n"])
    assert vocab.tokens == ("\n", "a", "b", " ", "c", "d", "<unk>")


def test_vocab_max_size_counts_specials():
    vocab = build_vocab(["aaab bc", "d"], max_size=5)
    assert vocab.tokens == ("\n", "a", "b", " ", "<unk>")
    assert vocab.encode("abcd").tolist() == [1, 2, 4, 4]


@pytest.mark.parametrize(
    ("options", "kept"),
    [
        ({}, ["the", "cat", ".", "dog", "ran", "sat"]),
        ({"min_count": 2}, ["the", "cat"]),
        ({"max_size": 5}, ["the", "cat", "."]),
        ({"max_size": 4, "min_count": 3}, ["the"]),
        ({"order": "alphabetical"}, [".", "cat", "dog", "ran", "sat", "the"]),
    ],
)
def test_build_vocab_word_kept_tokens(options, kept):
    vocab = build_vocab(WORDS, level="word", **options)
    assert vocab.tokens == ("<eos>", *kept, "<unk>")
    words = ["the", "cat", "sat", "zebra"]
    ids = vocab.encode(" ".join(words))
    assert [vocab.tokens[i] for i in ids] == [w if w in kept else "<unk>" for w in words]
    assert vocab.decode(ids).split() == [w if w in kept else "<unk>" for w in words]


def test_vocab_encode_lines_appends_eos():
    vocab = build_vocab(WORDS, level="word")
    encoded = vocab.encode_lines(["the cat", "dog ."])
    assert [e.tolist() for e in encoded] == [[1, 2, 0], [4, 3, 0]]
    chars = build_vocab(["ab"], order="alphabetical")
    assert [e.tolist() for e in chars.encode_lines(["ab", "", "b"])] == [[1, 2, 0], [0], [2, 0]]


def test_build_vocab_course_indices_on_names():
    text = resources.files("jaxrnn").joinpath("data/names.txt").read_text()
    vocab = build_vocab(text.splitlines(), order="alphabetical")
    assert vocab.tokens == ("\n", *ALPHABET, "<unk>")
    assert [vocab.index(c) for c in "\n" + ALPHABET] == list(range(27))
    assert vocab.unk_id == 27
    assert build_vocab([text], order="alphabetical") == vocab  # lines or one document alike


def test_vocab_dict_round_trip_through_json():
    for vocab in [build_vocab(["hi\nyo"], lowercase=True), build_vocab(WORDS, level="word")]:
        restored = Vocab.from_dict(json.loads(json.dumps(vocab.to_dict())))
        assert restored == vocab
        assert restored.encode("the cat\nhi").tolist() == vocab.encode("the cat\nhi").tolist()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"tokens": ["a"], "level": "char"}, r"Vocab.from_dict: expected a dict with keys"),
        ({"tokens": "ab", "level": "char", "lowercase": False}, r"expected tokens to be a list"),
        ({"tokens": ["\n", "<unk>"], "level": "byte", "lowercase": False}, r"got 'byte'"),
        ({"tokens": ["\n", "a", "a", "<unk>"], "level": "char", "lowercase": False}, r"\['a'\]"),
        ({"tokens": ["\n", "a"], "level": "char", "lowercase": False}, r"tokens \['<unk>'\]"),
        ({"tokens": ["\n", "<unk>"], "level": "word", "lowercase": False}, r"\['<eos>'\] in a"),
        ({"tokens": ["\n", "ab", "<unk>"], "level": "char", "lowercase": 0}, r"lowercase to be a"),
        ({"tokens": ["\n", "ab", "<unk>"], "level": "char", "lowercase": False}, r"got \['ab'\]"),
        ({"tokens": ["<eos>", "a b", "<unk>"], "level": "word", "lowercase": False}, "whitespace"),
    ],
)
def test_vocab_from_dict_rejects_bad_data(data, message):
    with pytest.raises(InputError, match=message):
        Vocab.from_dict(data)


@pytest.mark.parametrize(
    ("args", "options", "message"),
    [
        ([[]], {}, r"build_vocab: expected texts with at least one token.*empty corpus"),
        ([["\n\n"]], {}, r"empty corpus"),
        (["abc"], {}, r"expected an iterable of strings, got a str; wrap a single text"),
        ([["ab"]], {"max_size": 2}, r"expected max_size to be an integer >= 3, got 2"),
        ([["ab"]], {"level": "byte"}, r"expected level 'char' or 'word', got 'byte'"),
        ([["ab"]], {"order": "random"}, r"expected order 'frequency' or 'alphabetical'"),
        ([["aab"]], {"min_count": 3}, r"min_count=3 times; the most frequent, 'a', occurs 2"),
    ],
)
def test_build_vocab_errors(args, options, message):
    with pytest.raises(InputError, match=message):
        build_vocab(*args, **options)


def test_vocab_errors_on_bad_calls():
    vocab = build_vocab(["ab"])
    with pytest.raises(InputError, match=r"Vocab.decode: expected ids in \[0, 4\), got 0..4"):
        vocab.decode([0, 4])
    with pytest.raises(InputError, match=r"Vocab.decode: expected ids to be a 1-D integer array"):
        vocab.decode(np.array([[1]]))
    with pytest.raises(InputError, match=r"Vocab.encode_lines: expected lines without"):
        vocab.encode_lines(["a\nb"])
    with pytest.raises(InputError, match=r"Vocab.tokenize: expected text to be a str, got list"):
        vocab.encode(["a"])


def test_pad_batch_values_and_truncation():
    ids, lengths = pad_batch([[5, 6, 7], [8], np.array([], np.int32)], pad_id=0)
    np.testing.assert_array_equal(ids, [[5, 6, 7], [8, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(lengths, [3, 1, 0])
    assert ids.dtype == lengths.dtype == np.int32
    ids, lengths = pad_batch([np.array([5, 6, 7]), [8]], pad_id=9, max_len=2)
    np.testing.assert_array_equal(ids, [[5, 6], [8, 9]])
    np.testing.assert_array_equal(lengths, [2, 1])
    ids, lengths = pad_batch([[1]], pad_id=2, max_len=4)  # a fixed max_len pads past the longest
    np.testing.assert_array_equal(ids, [[1, 2, 2, 2]])


def test_pad_batch_errors():
    with pytest.raises(InputError, match=r"pad_batch: expected at least one sequence, got none"):
        pad_batch([], pad_id=0)
    with pytest.raises(InputError, match=r"expected max_len to be an integer >= 1, got 0"):
        pad_batch([[1]], pad_id=0, max_len=0)
    with pytest.raises(InputError, match=r"expected sequences\[1\] to be a 1-D integer array"):
        pad_batch([[1], [0.5]], pad_id=0)


def test_batch_indices_cover_each_epoch_once():
    for epoch in range(3):
        steps = range(3 * epoch, 3 * epoch + 3)  # 12 // 4 = 3 batches per epoch
        batches = np.concatenate([batch_indices(12, 4, seed=7, step=s) for s in steps])
        np.testing.assert_array_equal(np.sort(batches), np.arange(12))
    first = [batch_indices(12, 4, seed=7, step=s) for s in range(3)]
    again = [batch_indices(12, 4, seed=7, step=s) for s in range(3)]
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first[0], batch_indices(12, 4, seed=7, step=3))  # a new permutation
    assert not np.array_equal(first[0], batch_indices(12, 4, seed=8, step=0))


def test_batch_indices_drops_incomplete_batch():
    batches = np.concatenate([batch_indices(10, 3, seed=0, step=s) for s in range(3)])
    assert len(set(batches.tolist())) == 9 and batches.min() >= 0 and batches.max() < 10
    with pytest.raises(
        InputError, match=r"batch_indices: expected n_examples to be an integer >= 4"
    ):
        batch_indices(3, 4, seed=0, step=0)


def test_stream_windows_targets_are_the_next_ids():
    stream = np.random.default_rng(0).permutation(200)  # distinct ids: each value is a position
    inputs, targets = stream_windows(stream, batch_size=8, seq_len=10, seed=3, step=5)
    assert inputs.shape == targets.shape == (8, 10) and inputs.dtype == np.int32
    starts = np.argsort(stream)[inputs[:, 0]]
    positions = starts[:, None] + np.arange(10)
    np.testing.assert_array_equal(inputs, stream[positions])
    np.testing.assert_array_equal(targets, stream[positions + 1])
    again = stream_windows(stream, batch_size=8, seq_len=10, seed=3, step=5)
    np.testing.assert_array_equal(again[0], inputs)
    other = stream_windows(stream, batch_size=8, seq_len=10, seed=3, step=6)
    assert not np.array_equal(other[0], inputs)
    with pytest.raises(InputError, match=r"stream_windows: expected at least seq_len \+ 1 = 11"):
        stream_windows(stream[:10], batch_size=1, seq_len=10, seed=0, step=0)


def test_stream_chunks_rows_continue_across_chunks():
    stream = np.arange(103) * 3  # 102 usable ids: 4 rows of 25, the 103rd id only a target
    assert n_stream_chunks(103, 4, 5) == 5
    chunks = [stream_chunks(stream, batch_size=4, seq_len=5, step=s) for s in range(6)]
    for k, (inputs, targets, is_first) in enumerate(chunks[:5]):
        assert is_first == (k == 0)
        expected = (np.arange(4)[:, None] * 25 + k * 5 + np.arange(5)) * 3
        np.testing.assert_array_equal(inputs, expected)
        np.testing.assert_array_equal(targets, expected + 3)
    for (a, _, _), (b, _, _) in zip(chunks[:4], chunks[1:5], strict=True):
        np.testing.assert_array_equal(b[:, 0], a[:, -1] + 3)  # row r of chunk k + 1 continues r
    inputs, _, is_first = chunks[5]  # step 5 wraps round to chunk 0
    assert is_first
    np.testing.assert_array_equal(inputs, chunks[0][0])


def test_stream_chunks_too_short():
    with pytest.raises(InputError, match=r"stream_chunks: expected at least .* = 21 ids, got 20"):
        stream_chunks(np.arange(20), batch_size=4, seq_len=5, step=0)
    with pytest.raises(InputError, match=r"n_stream_chunks: expected at least .* = 21 ids"):
        n_stream_chunks(20, 4, 5)
    assert n_stream_chunks(21, 4, 5) == 1


def test_split_text_first_and_last_fraction():
    text = "abcdefghij" * 10
    train, valid = split_text(text)
    assert (train, valid) == (text[:90], text[90:])
    assert split_text("abc", 0.9) == ("ab", "c")  # at least one character on each side
    with pytest.raises(InputError, match=r"split_text: expected fraction strictly between 0 and 1"):
        split_text(text, 1.0)


def test_split_lines_deterministic_shuffle():
    lines = [f"line {i}" for i in range(20)]
    train, valid = split_lines(lines, 0.75, seed=1)
    assert (len(train), len(valid)) == (15, 5)
    assert sorted(train + valid) == sorted(lines)
    assert split_lines(lines, 0.75, seed=1) == (train, valid)
    assert split_lines(lines, 0.75, seed=2) != (train, valid)
    assert train + valid != lines  # shuffled
    with pytest.raises(InputError, match=r"split_lines: expected at least 2 lines to split, got 1"):
        split_lines(["only"])


def test_training_batch_is_the_same_batch_for_the_same_seed_and_step_in_every_mode():
    from jaxrnn.text import START, make_corpus, training_batch

    names = "\n".join(["anna", "bob", "carl", "dora", "emil", "frida", "gus", "hana"] * 4)
    lines = make_corpus(names, mode="lines", valid_fraction=0.25)
    batch = training_batch(lines, 3, batch_size=4, seq_len=0, seed=7)
    again = training_batch(lines, 3, batch_size=4, seq_len=0, seed=7)
    other = training_batch(lines, 4, batch_size=4, seq_len=0, seed=7)
    assert all(np.array_equal(a, b) for a, b in zip(batch[:3], again[:3], strict=True))
    assert not np.array_equal(batch.targets, other.targets)
    assert (batch.inputs[:, 0] == START).all() and batch.fresh_carry
    assert np.array_equal(batch.inputs[:, 1:], batch.targets[:, :-1])
    rows = {tuple(row) for row in lines.train[0]}
    assert all(tuple(row) in rows for row in batch.targets)
    assert np.array_equal(batch.lengths, [lines.train[1][i] for i in _rows_of(lines, batch)])

    stream = make_corpus(names, mode="stream", valid_fraction=0.25)
    (ids,) = stream.train
    windows = training_batch(stream, 2, batch_size=3, seq_len=5, seed=1)
    assert windows.lengths is None and windows.fresh_carry
    for inputs, targets in zip(windows.inputs, windows.targets, strict=True):
        start = next(s for s in range(len(ids) - 5) if np.array_equal(ids[s : s + 5], inputs))
        assert np.array_equal(ids[start + 1 : start + 6], targets)
    chunks = [
        training_batch(stream, step, batch_size=3, seq_len=5, seed=1, stateful=True)
        for step in range(3)
    ]
    assert [chunk.fresh_carry for chunk in chunks] == [True, False, False]
    assert np.array_equal(chunks[1].inputs[:, 0], chunks[0].targets[:, -1])  # rows continue


def _rows_of(corpus, batch):
    targets = [tuple(row) for row in corpus.train[0]]
    return [targets.index(tuple(row)) for row in batch.targets]


def _segments(batch):
    """Each packed line as (row, start, end): cut at the resets, within the row's filled part."""
    out = []
    for row, (resets, filled) in enumerate(zip(batch.resets, batch.lengths, strict=True)):
        starts = [int(t) for t in np.flatnonzero(resets[:filled])]
        out += [(row, s, e) for s, e in zip(starts, [*starts[1:], int(filled)], strict=True)]
    return out


def test_packed_batches_hold_every_line_whole_once_per_epoch_each_after_a_reset():
    from jaxrnn.text import START, make_corpus, pack_lines, training_batch

    text = resources.files("jaxrnn").joinpath("data/names.txt").read_text()
    corpus = make_corpus("\n".join(text.splitlines()[:400]), mode="lines")
    targets, lengths = corpus.train
    width, rows, seed = targets.shape[1], 8, 3

    def lines_of(positions, order):
        return sorted(tuple(targets[i, : lengths[i]]) for i in order[positions])

    def packed(step):
        return training_batch(corpus, step, batch_size=rows, seq_len=0, seed=seed, pack=True)

    # the documented order: epoch e's permutation, packed first fit
    orders = [np.random.default_rng([seed, e]).permutation(len(lengths)) for e in (0, 1)]
    epoch_0 = pack_lines(lengths[orders[0]], rows=rows, width=width)
    seen, filled = [], 0
    for step in range(len(epoch_0)):
        batch = packed(step)
        again = packed(step)
        assert all(np.array_equal(a, b) for a, b in zip(batch, again, strict=True))
        assert batch.inputs.shape == batch.targets.shape == batch.resets.shape == (rows, width)
        assert batch.fresh_carry and batch.lengths.min() >= 1
        assert not batch.resets[np.arange(width) >= batch.lengths[:, None]].any()
        for row, start, end in _segments(batch):
            line = tuple(batch.targets[row, start:end])
            assert line[-1] == corpus.vocab.eos_id  # whole: ⟨EOS⟩ last
            assert batch.inputs[row, start] == START
            assert np.array_equal(batch.inputs[row, start + 1 : end], line[:-1])
            seen.append(line)
        filled += batch.lengths.sum()
    # every line of the epoch once, in the epoch's order; only the last, incomplete batch dropped
    n_packed = sum(map(len, epoch_0))
    assert sorted(seen) == lines_of(slice(0, n_packed), orders[0])
    assert len(lengths) - n_packed <= width * rows  # what one more batch could hold
    # several lines to a row: more of the rows' positions are real tokens than with padding
    assert filled / (len(epoch_0) * rows * width) > lengths.mean() / width + 0.1
    # the next step opens epoch 1, in its own order
    first_of_epoch_1 = pack_lines(lengths[orders[1]], rows=rows, width=width)[0]
    next_lines = sorted(
        tuple(packed(len(epoch_0)).targets[row, start:end])
        for row, start, end in _segments(packed(len(epoch_0)))
    )
    assert next_lines == lines_of(slice(0, len(first_of_epoch_1)), orders[1])


def test_pack_lines_is_first_fit_and_refuses_lines_wider_than_a_row():
    from jaxrnn.text import pack_lines

    batches = pack_lines(np.array([4, 3, 2, 5, 1, 6, 6, 6]), rows=2, width=6)
    # 4 → row 0; 3 → row 1; 2 → row 0 (4 + 2 fits); 5 fits nowhere: the next batch
    assert [b.tolist() for b in batches] == [
        [[0, 0, 0], [1, 1, 0], [2, 0, 4]],
        [[3, 0, 0], [4, 0, 5], [5, 1, 0]],
    ]  # the last batch, [6] and [6], ran out of lines: dropped
    with pytest.raises(
        InputError, match=r"pack_lines: expected lengths in \[1, width=6\], got 1…7"
    ):
        pack_lines(np.array([1, 7]), rows=2, width=6)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_rows_the_packed_lines_fill_bound_the_packed_batch(seed):
    from jaxrnn.text import packed_batches_in_first_epoch, rows_packed_lines_fill

    lengths = np.random.default_rng(seed).integers(1, 9, size=23)
    # first fit into as many rows as it takes, in the first epoch's order of the lines
    ends = []
    for n in lengths[np.random.default_rng([seed, 0]).permutation(len(lengths))].tolist():
        row = next((r for r, end in enumerate(ends) if end + n <= 8), None)
        if row is None:
            ends.append(n)
        else:
            ends[row] += n
    rows = rows_packed_lines_fill(lengths, width=8, seed=seed)
    assert rows == len(ends)
    packing = dict(width=8, seed=seed)
    assert packed_batches_in_first_epoch(lengths, batch_size=rows - 1, **packing) >= 1
    assert packed_batches_in_first_epoch(lengths, batch_size=rows, **packing) == 0
    assert rows_packed_lines_fill(np.zeros(0, np.int32), width=8, seed=seed) == 0
