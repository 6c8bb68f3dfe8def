"""Crafted checkpoint files (tests/crafted.py) against every way a checkpoint is read.

Each reader either refuses a file with `CheckpointError` (the CLI: exit code 2 and ``error:``),
or, where the file is sound for it, reads it; no other exception ever escapes, and no reader
allocates more than a little memory, whatever sizes the file claims.
"""

import contextlib
import tracemalloc

import jax
import pytest
from crafted import ENTRIES, build, valid_state_and_metadata

from jaxrnn.checkpoint import CheckpointError, load_checkpoint, read_metadata
from jaxrnn.cli import main
from jaxrnn.lm_train import load_lm

MAX_PEAK_BYTES = 32 * 2**20  # the files are at most 17 MB and never read whole


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build(tmp_path_factory.mktemp("crafted"))


@pytest.fixture(scope="module")
def template():
    state, _ = valid_state_and_metadata()
    return jax.eval_shape(lambda: state)


def _read_metadata(path, template, capsys):
    return read_metadata(path)


def _load_checkpoint(path, template, capsys):
    return load_checkpoint(path, template)


def _load_lm(path, template, capsys):
    return load_lm(path)


def _cli(*args):
    def run(path, template, capsys):
        code = main([args[0], str(path), *args[1:]])
        err = capsys.readouterr().err
        if code == 2:
            assert f"jaxrnn {args[0]}: error: {path}" in err or "error: no checkpoint" in err, err
            raise CheckpointError(err)
        assert code == 0, (code, err)

    return run


READERS = {
    "read_metadata": (_read_metadata, {"file"}),
    "load_checkpoint": (_load_checkpoint, {"file", "arrays"}),
    "load_lm": (_load_lm, {"file", "arrays", "lm"}),
    "cli-sample": (_cli("sample", "--num", "1", "--max-len", "3"), {"file", "arrays", "lm"}),
    "cli-score": (_cli("score", "anna"), {"file", "arrays", "lm"}),
}


@contextlib.contextmanager
def bounded_memory():
    tracemalloc.start()
    try:
        yield
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < MAX_PEAK_BYTES, f"peak {peak:,} bytes"


def test_crafted_corpus_is_reproducible(corpus, tmp_path):
    again = build(tmp_path)
    assert again.keys() == corpus.keys()
    for name, path in corpus.items():
        assert again[name].read_bytes() == path.read_bytes(), name


def test_crafted_corpus_has_unique_names():
    names = [entry.name for entry in ENTRIES]
    assert len(set(names)) == len(names) > 100


@pytest.mark.parametrize("reader", READERS)
def test_crafted_valid_file_is_read_by_every_reader(corpus, template, reader, capsys):
    read, _ = READERS[reader]
    read(corpus["valid"], template, capsys)


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("entry", ENTRIES, ids=[entry.name for entry in ENTRIES])
def test_crafted_file_is_checkpoint_error_for_every_reader(corpus, template, entry, reader, capsys):
    read, refusing = READERS[reader]
    path = corpus[entry.name]
    with bounded_memory():
        if entry.level in refusing:
            with pytest.raises(CheckpointError, match=f"{path}|no checkpoint"):
                read(path, template, capsys)
        else:  # sound for this reader, which does not know a language model's metadata
            read(path, template, capsys)


@pytest.mark.parametrize(
    "name, message",
    [
        ("header-deep-60000", "metadata.json nests deeper than 64 levels"),
        ("zip-bomb-metadata", "member metadata.json is compressed (method 8)"),
        ("metadata-oversized-stored", "metadata.json has 16,777,217 bytes, more than 16,777,216"),
        ("overlapping-members", "member 0.npy of 871 bytes runs past the next member"),
        ("leaf-shape-256gib", "(274,877,906,944 bytes), but its member 1.npy holds 704 bytes"),
        ("leaf-dtype-object", "has dtype 'object', expected one of ['bool'"),
        ("npy-shape-2e40", "holds shape (1099511627776,) and dtype float32, its header says"),
        ("npy-pickled-objects", "holds Python objects, which are never unpickled"),
        ("lm-model-array", "the model config is an array, expected an object of LMConfig"),
        ("lm-model-unknown-key", "the model config has unknown fields ['bidirectional']"),
        ("lm-hidden-size-1e12", "the model's hidden_size 1000000000000 is not in [1, 2,147,"),
        ("lm-hidden-size-true", "the model config's hidden_size is a boolean True, expected int"),
        ("lm-embedding-size-huge", "the model would have about 3.01e+10 parameters, more than"),
        (
            "lm-train-reduce-time-max",
            "reduce_time is a string 'max', expected one of 'mean', 'sum'",
        ),
        ("lm-step-1e400", "step inf, expected an int in [0, "),
        ("lm-vocab-6-tokens", "the vocabulary has 6 tokens, the model expects vocab_size 12"),
        ("lm-history-loss-longer-than-step", "loss must be a list of at most step = 2 numbers"),
    ],
)
def test_crafted_file_message_names_file_and_fault(corpus, name, message):
    with pytest.raises(CheckpointError) as error:
        load_lm(corpus[name])
    assert str(error.value).startswith(f"{corpus[name]}: ")
    assert message in str(error.value)
