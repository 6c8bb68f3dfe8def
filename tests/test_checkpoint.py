"""Checkpoints: bit-exact round trips, atomic writes, and CheckpointError for every bad file."""

import io
import json
import os
import re
import zipfile
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrnn import checkpoint
from jaxrnn.checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)


class Pair(NamedTuple):
    first: Any
    second: Any


def nested_tree():
    rng = np.random.default_rng(0)
    nan_with_payload = np.array([0x7FC00123], np.uint32).view(np.float32)[0]
    return {
        "params": Pair(np.arange(6, dtype=np.int32).reshape(2, 3) - 3, None),
        "floats": {
            "f32": np.array([1.5, -0.0, np.inf, -np.inf, nan_with_payload, 1e-45], np.float32),
            "f64": rng.normal(size=(3, 2)),
            "empty": np.zeros((0, 4), np.float32),
        },
        "scalar": np.float64(np.pi),
        "python_float": 2.5,
        "from_jax": jnp.asarray([7, -8], jnp.int32),
        "list": [np.int64(2**40 + 1), Pair(None, np.array([True, False]))],
    }


METADATA = {
    "step": 12,
    "name": "ünïcode ⟨EOS⟩",
    "learning_rate": 1e-3,
    "nested": {"list": [1, 2.5, None, True, "x"], "empty": {}},
}


def assert_bit_exact(got, expected):
    assert jax.tree.structure(got) == jax.tree.structure(expected)
    for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(expected), strict=True):
        e = np.asarray(e)
        assert isinstance(g, np.ndarray)
        assert (g.shape, g.dtype) == (e.shape, e.dtype)
        assert g.tobytes() == e.tobytes()  # bit for bit: NaN payloads and −0.0 included


def rewrite(src, dst, replace=None, drop=(), add=None):
    """Copies the zip at ``src`` to ``dst`` with members replaced, dropped or added (raw bytes)."""
    replace, add = replace or {}, add or {}
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w") as new:
        for name in old.namelist():
            if name not in drop:
                new.writestr(name, replace.get(name, old.read(name)))
        for name, data in add.items():
            new.writestr(name, data)


def header_of(path):
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("metadata.json"))


def npy_bytes(array, allow_pickle=False):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


# -------------------------------------------------------------------------------------- round trip


def test_checkpoint_round_trip_is_bit_exact(tmp_path):
    tree = nested_tree()
    save_checkpoint(tmp_path / "ckpt.npz", tree, METADATA)
    # the template's values are not used: zeros and abstract shapes read the same file
    for template in (
        jax.tree.map(np.zeros_like, tree),
        jax.eval_shape(lambda: jax.tree.map(jnp.asarray, tree)),
    ):
        loaded, metadata = load_checkpoint(tmp_path / "ckpt.npz", template)
        assert_bit_exact(loaded, tree)
        assert metadata == METADATA
    assert loaded["params"].second is None and isinstance(loaded["list"][1], Pair)
    assert read_metadata(tmp_path / "ckpt.npz") == METADATA


def test_checkpoint_header_lists_leaves(tmp_path):
    save_checkpoint(tmp_path / "ckpt.npz", {"w": np.zeros((2, 3), np.float32), "n": 4}, {})
    header = header_of(tmp_path / "ckpt.npz")
    assert header == {
        "format_version": FORMAT_VERSION,
        "leaves": [
            {"path": "['n']", "shape": [], "dtype": "int64"},
            {"path": "['w']", "shape": [2, 3], "dtype": "float32"},
        ],
        "metadata": {},
    }


def test_save_checkpoint_overwrites_and_creates_folders(tmp_path):
    path = tmp_path / "a" / "b" / "ckpt.npz"
    save_checkpoint(path, {"w": np.ones(3)}, {"step": 1})
    save_checkpoint(path, {"w": np.full(3, 2.0)}, {"step": 2})
    loaded, metadata = load_checkpoint(path, {"w": np.ones(3)})
    np.testing.assert_array_equal(loaded["w"], [2.0, 2.0, 2.0])
    assert metadata == {"step": 2}
    assert os.listdir(path.parent) == ["ckpt.npz"]


# -------------------------------------------------------------------------------------- atomicity


def _fail_in_second_leaf(monkeypatch, exception):
    """write_array writes the first leaf whole, then half of the second one's bytes, then fails."""
    real_write = np.lib.format.write_array
    calls = []

    def write_array(fp, array, *args, **kwargs):
        calls.append(array.shape)
        if len(calls) == 1:
            return real_write(fp, array, *args, **kwargs)
        buffer = io.BytesIO()
        real_write(buffer, array, *args, **kwargs)
        fp.write(buffer.getvalue()[: buffer.tell() // 2])
        raise exception

    monkeypatch.setattr(checkpoint.np.lib.format, "write_array", write_array)
    return calls


def _fail_at_rename(monkeypatch, exception):
    calls = []

    def replace(src, dst):
        calls.append((src, dst))
        assert os.path.getsize(src) > 8000  # the whole new file was written
        raise exception

    monkeypatch.setattr(checkpoint.os, "replace", replace)
    return calls


@pytest.mark.parametrize(
    "fail, exception",
    [
        (_fail_in_second_leaf, OSError(28, "No space left on device")),
        (_fail_in_second_leaf, KeyboardInterrupt()),
        (_fail_at_rename, OSError(18, "Invalid cross-device link")),
        (_fail_at_rename, KeyboardInterrupt()),
    ],
    ids=["write-oserror", "write-interrupt", "rename-oserror", "rename-interrupt"],
)
def test_save_checkpoint_failure_keeps_previous_file(tmp_path, monkeypatch, fail, exception):
    path = tmp_path / "ckpt.npz"
    first = {"a": np.arange(1000, dtype=np.float64), "b": np.ones(500, np.float32)}
    save_checkpoint(path, first, {"step": 1})
    before = path.read_bytes()
    calls = fail(monkeypatch, exception)
    second = jax.tree.map(lambda x: x * 2, first)
    with pytest.raises(type(exception)):
        save_checkpoint(path, second, {"step": 2})
    monkeypatch.undo()
    assert calls  # the failure did happen where it was planted
    assert path.read_bytes() == before
    loaded, metadata = load_checkpoint(path, first)
    assert_bit_exact(loaded, first)
    assert metadata == {"step": 1}
    assert os.listdir(tmp_path) == ["ckpt.npz"]  # no temporary file left behind


def test_save_checkpoint_failure_on_first_save_leaves_nothing(tmp_path, monkeypatch):
    _fail_in_second_leaf(monkeypatch, OSError("disk full"))
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "ckpt.npz", {"a": np.ones(3), "b": np.ones(3)}, {})
    assert os.listdir(tmp_path) == []


# -------------------------------------------------------------------------------- corrupt files


@pytest.fixture
def saved(tmp_path):
    tree = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.array([1, -2], np.int32)}
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, tree, {"step": 3})
    return path, tree


def assert_unreadable(path, template, match="not a jaxrnn checkpoint or corrupt"):
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path, template)


def test_load_checkpoint_missing_file(tmp_path):
    for path in (tmp_path / "nothing.npz", tmp_path):  # a folder is not a checkpoint file either
        with pytest.raises(CheckpointError, match=re.escape(f"no checkpoint file at {path}")):
            load_checkpoint(path, {})
        with pytest.raises(CheckpointError, match="no checkpoint file at"):
            read_metadata(path)


@pytest.mark.parametrize(
    "content",
    [b"", b"garbage" * 300, bytes(range(256)) * 8, b"PK\x05\x06" + b"\x00" * 18],
    ids=["empty", "text", "bytes", "empty-zip"],
)
def test_load_checkpoint_garbage_file(saved, content):
    path, tree = saved
    path.write_bytes(content)
    assert_unreadable(path, tree)
    with pytest.raises(CheckpointError, match="not a jaxrnn checkpoint or corrupt"):
        read_metadata(path)


def test_load_checkpoint_truncated_to_half(saved):
    path, tree = saved
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert_unreadable(path, tree)


def test_load_checkpoint_every_truncation_and_byte_flip_is_checkpoint_error(saved):
    """Cut at every length, or one byte inverted at every offset: the file either raises
    CheckpointError or (a byte the reader ignores, e.g. a time stamp) loads the saved values."""
    path, tree = saved
    data = path.read_bytes()
    damaged = path.with_name("damaged.npz")
    outcomes = {"error": 0, "same": 0}
    variants = [data[:n] for n in range(len(data))]
    variants += [data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :] for i in range(len(data))]
    for variant in variants:
        damaged.write_bytes(variant)
        try:
            loaded, metadata = load_checkpoint(damaged, tree)
        except CheckpointError:
            outcomes["error"] += 1
            continue
        assert_bit_exact(loaded, tree)
        assert metadata == {"step": 3}
        outcomes["same"] += 1
    assert outcomes["error"] > len(data)  # every truncation, and most flips, detected


def test_load_checkpoint_without_header(saved, tmp_path):
    path, tree = saved
    rewrite(path, tmp_path / "bad.npz", drop=["metadata.json"])
    assert_unreadable(tmp_path / "bad.npz", tree, match="no item named 'metadata.json'")


@pytest.mark.parametrize(
    "header",
    [b"[1, 2]", b'{"format_version": 1', "\udcff".encode("utf-8", "surrogatepass")],
    ids=["not-an-object", "bad-json", "not-utf8"],
)
def test_load_checkpoint_bad_header(saved, tmp_path, header):
    path, tree = saved
    rewrite(path, tmp_path / "bad.npz", replace={"metadata.json": header})
    assert_unreadable(tmp_path / "bad.npz", tree)
    with pytest.raises(CheckpointError, match="not a jaxrnn checkpoint or corrupt"):
        read_metadata(tmp_path / "bad.npz")


def test_load_checkpoint_header_without_leaves(saved, tmp_path):
    path, tree = saved
    header = {"format_version": FORMAT_VERSION, "metadata": {"step": 3}}
    rewrite(path, tmp_path / "bad.npz", replace={"metadata.json": json.dumps(header)})
    assert_unreadable(tmp_path / "bad.npz", tree, match="KeyError: 'leaves'")


def test_load_checkpoint_missing_leaf_file(saved, tmp_path):
    path, tree = saved
    rewrite(path, tmp_path / "bad.npz", drop=["1.npy"])
    assert_unreadable(tmp_path / "bad.npz", tree, match=re.escape("leaf ['w'] unreadable"))


def test_load_checkpoint_leaf_file_disagrees_with_header(saved, tmp_path):
    path, tree = saved
    other = np.arange(5, dtype=np.float32)
    rewrite(path, tmp_path / "bad.npz", replace={"1.npy": npy_bytes(other)})
    message = "leaf ['w'] holds shape (5,) and dtype float32, its header says (3, 4) and float32"
    assert_unreadable(tmp_path / "bad.npz", tree, match=re.escape(message))


@pytest.mark.parametrize("version", [2, 0, "1", None])
def test_load_checkpoint_other_format_version(saved, tmp_path, version):
    path, tree = saved
    header = header_of(path)
    header["format_version"] = version
    rewrite(path, tmp_path / "v.npz", replace={"metadata.json": json.dumps(header)})
    message = f"checkpoint format version {version!r}, this jaxrnn reads {FORMAT_VERSION}"
    assert_unreadable(tmp_path / "v.npz", tree, match=re.escape(message))
    with pytest.raises(CheckpointError, match=re.escape(message)):
        read_metadata(tmp_path / "v.npz")


# ------------------------------------------------------------------------------------ no pickles

UNPICKLED = []


class Trap:
    """Unpickling this runs code: it must never happen when a checkpoint is read."""

    def __reduce__(self):
        return (UNPICKLED.append, ("code ran",))


@pytest.mark.parametrize("declared", ["object", "float64"])
def test_load_checkpoint_never_unpickles(tmp_path, declared):
    objects = np.array([Trap(), "text"], dtype=object)
    header = {
        "format_version": FORMAT_VERSION,
        "leaves": [{"path": "['x']", "shape": [2], "dtype": declared}],
        "metadata": {},
    }
    path = tmp_path / "pickle.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps(header))
        archive.writestr("0.npy", npy_bytes(objects, allow_pickle=True))
    template = {"x": np.empty(2, dtype=declared)}
    with pytest.raises(CheckpointError, match=re.escape("leaf ['x'] unreadable (Object arrays")):
        load_checkpoint(path, template)
    assert UNPICKLED == []


def test_save_checkpoint_refuses_object_arrays(tmp_path):
    with pytest.raises(ValueError, match="allow_pickle"):
        save_checkpoint(tmp_path / "ckpt.npz", {"x": np.array([None, 1], dtype=object)}, {})
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------ template mismatch


@pytest.mark.parametrize(
    "template, message",
    [
        (
            {"w": np.zeros((3, 5), np.float32), "b": np.zeros(2, np.int32)},
            "['w'] has shape (3, 4) and dtype float32, the model expects shape (3, 5) and dtype "
            "float32",
        ),
        (
            {"w": np.zeros((3, 4), np.float64), "b": np.zeros(2, np.int32)},
            "['w'] has shape (3, 4) and dtype float32, the model expects shape (3, 4) and dtype "
            "float64",
        ),
        (
            {"w": np.zeros((3, 4), np.float32), "b": np.zeros(2, np.int64)},
            "['b'] has shape (2,) and dtype int32, the model expects shape (2,) and dtype int64",
        ),
        (
            {"w": np.zeros((3, 4), np.float32), "b": np.zeros(2, np.int32), "c": np.zeros(1)},
            "expected [\"['b']\", \"['c']\", \"['w']\"]",
        ),
        ({"w": np.zeros((3, 4), np.float32)}, "expected [\"['w']\"]"),
        (Pair(np.zeros((3, 4), np.float32), np.zeros(2, np.int32)), "expected ['.first', "),
    ],
    ids=["shape", "dtype", "int-dtype", "extra-leaf", "missing-leaf", "namedtuple"],
)
def test_load_checkpoint_template_mismatch_names_the_leaf(saved, template, message):
    path, _ = saved
    with pytest.raises(CheckpointError, match=re.escape(message)):
        load_checkpoint(path, template)
