"""Checkpoints: bit-exact round trips, atomic writes, and CheckpointError for every bad file.

tests/test_crafted_checkpoints.py reads a corpus of crafted files with every reader.
"""

import functools
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrnn import checkpoint
from jaxrnn.checkpoint import (
    FORMAT_VERSION,
    MAX_DEPTH,
    CheckpointError,
    atomic_output,
    config_from_json,
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
    assert_unreadable(tmp_path / "bad.npz", tree, match="no member metadata.json")


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
    message = "header keys ['format_version', 'metadata'], expected ['format_version', 'leaves'"
    assert_unreadable(tmp_path / "bad.npz", tree, match=re.escape(message))


def test_load_checkpoint_missing_leaf_file(saved, tmp_path):
    path, tree = saved
    rewrite(path, tmp_path / "bad.npz", drop=["1.npy"])
    assert_unreadable(tmp_path / "bad.npz", tree, match=re.escape("missing members ['1.npy'])"))


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
    message = {
        "object": "leaf ['x'] has dtype 'object', expected one of ['bool'",
        "float64": "leaf ['x'] holds Python objects, which are never unpickled",
    }[declared]
    with pytest.raises(CheckpointError, match=re.escape(message)):
        load_checkpoint(path, template)
    assert UNPICKLED == []


def test_save_checkpoint_refuses_object_arrays(tmp_path):
    with pytest.raises(CheckpointError, match=r"leaf \['x'\] has dtype object; .*never objects"):
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


# ---------------------------------------------------------------------------- dtypes and layouts


def test_checkpoint_round_trip_bfloat16_and_fortran_order(tmp_path):
    tree = {
        "bf16": jnp.asarray([1.5, -2.0, 3.25], jnp.bfloat16),
        "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
        "big_endian": np.arange(3, dtype=">i4"),  # written in native byte order
    }
    save_checkpoint(tmp_path / "ckpt.npz", tree, {})
    template = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype.newbyteorder("=")), tree)
    loaded, _ = load_checkpoint(tmp_path / "ckpt.npz", template)
    assert loaded["bf16"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(loaded["bf16"].astype(np.float32), [1.5, -2.0, 3.25])
    np.testing.assert_array_equal(loaded["fortran"], tree["fortran"])
    np.testing.assert_array_equal(loaded["big_endian"], [0, 1, 2])
    assert loaded["fortran"].flags.writeable


@pytest.mark.parametrize(
    "metadata, message",
    [
        (
            {"loss": [0.5] * (checkpoint.MAX_HEADER_BYTES // 4)},
            "a checkpoint's header may have at most",
        ),
        (
            {"deep": functools.reduce(lambda x, _: [x], range(70), 0)},
            "the metadata nests deeper than a checkpoint's header may",
        ),
    ],
    ids=["too-large", "too-deep"],
)
def test_save_checkpoint_refuses_headers_it_could_not_read(tmp_path, metadata, message):
    with pytest.raises(CheckpointError, match=message):
        save_checkpoint(tmp_path / "ckpt.npz", {"w": np.ones(2)}, metadata)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "text, depth",
    [
        ("{}", 1),
        ('{"a": [1, {"b": []}]}', 4),
        ('["[[[", "\\"[[", "\\\\", []]', 2),
        ("[" * 100, MAX_DEPTH + 1),  # counted only up to the limit and one more
        ('["unclosed [[[[', 1),
    ],
)
def test_nesting_depth_skips_strings(text, depth):
    assert checkpoint._nesting_depth(text) == depth


# ------------------------------------------------------------------------------- atomic_output


def test_atomic_output_replaces_a_symlink_not_its_target(tmp_path):
    target = tmp_path / "elsewhere.png"
    target.write_bytes(b"the target")
    link = tmp_path / "loss.png"
    link.symlink_to(target)
    with atomic_output(link) as tmp:
        assert Path(tmp).parent == tmp_path and Path(tmp).name.startswith(".loss.png.")
        Path(tmp).write_bytes(b"new plot")
    assert not link.is_symlink() and link.read_bytes() == b"new plot"
    assert target.read_bytes() == b"the target"
    assert sorted(os.listdir(tmp_path)) == ["elsewhere.png", "loss.png"]


def test_atomic_output_exception_keeps_the_old_file(tmp_path):
    path = tmp_path / "loss.png"
    path.write_bytes(b"old plot")
    with pytest.raises(RuntimeError, match="savefig failed"):
        with atomic_output(path) as tmp:
            Path(tmp).write_bytes(b"half a pl")
            raise RuntimeError("savefig failed")
    assert path.read_bytes() == b"old plot"
    assert os.listdir(tmp_path) == ["loss.png"]


def test_atomic_output_with_savefig(tmp_path):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])
    with atomic_output(tmp_path / "loss.png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "loss.png").stat().st_mode & 0o777 == 0o666 & ~mask


# ------------------------------------------------------------------- temporaries of other writers


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_save_checkpoint_removes_only_provably_stale_temporaries(tmp_path):
    """A killed writer's temporary file goes; a live writer's, another host's and files of other
    names stay."""
    host = checkpoint._host()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        names = {
            "dead": f".ckpt.npz.{_dead_pid()}-{host}.0a1b2c3d.tmp",
            "live": f".ckpt.npz.{live.pid}-{host}.0a1b2c3d.tmp",
            "parent": f".ckpt.npz.{os.getppid()}-{host}.0a1b2c3d.tmp",
            "this-process": f".ckpt.npz.{os.getpid()}-{host}.0a1b2c3d.tmp",
            "other-host": f".ckpt.npz.{_dead_pid()}-{host}x.0a1b2c3d.tmp",
            "older-format": ".ckpt.npz.k2j3_x9a.tmp",
            "other-file": f".other.npz.{_dead_pid()}-{host}.0a1b2c3d.tmp",
        }
        for name in names.values():
            (tmp_path / name).write_bytes(b"partial")
        save_checkpoint(tmp_path / "ckpt.npz", {"w": np.ones(2)}, {})
        kept = set(os.listdir(tmp_path))
    finally:
        live.kill()
        live.wait()
    assert kept == {"ckpt.npz"} | {n for k, n in names.items() if k != "dead"}


def test_save_checkpoint_leaves_a_concurrent_writers_file_alone(tmp_path, monkeypatch):
    """Two writers of one path: the first to finish must not delete the other's file in flight."""
    path = tmp_path / "ckpt.npz"
    with atomic_output(path) as other:
        Path(other).write_bytes(b"in flight")
        monkeypatch.setattr(checkpoint.os, "getpid", lambda: os.getppid())  # another live writer
        save_checkpoint(path, {"w": np.ones(2)}, {"step": 1})
        monkeypatch.undo()
        assert Path(other).read_bytes() == b"in flight"
    assert path.read_bytes() == b"in flight"  # the later rename wins, as os.replace does


# ------------------------------------------------------------------------ configurations in JSON


class Config(NamedTuple):
    size: int
    rate: float = 0.5
    name: str = "x"
    flag: bool = False
    limit: float | None = None
    how: Literal["mean", "sum"] = "mean"


def test_config_from_json_round_trip():
    config = Config(3, 0.25, "y", True, 2.0, "sum")
    assert config_from_json(Config, json.loads(json.dumps(config._asdict())), "f", "c") == config
    got = config_from_json(Config, {"size": 3, "rate": 1}, "f", "c")
    assert got == Config(3, 1.0) and type(got.rate) is float


@pytest.mark.parametrize(
    "data, message",
    [
        ([3], "f: the c is an array, expected an object of Config fields ['size', "),
        ({"size": 3, "speed": 1}, "f: the c has unknown fields ['speed']; Config has the fields"),
        ({"rate": 0.5}, "f: the c lacks the fields ['size']"),
        ({"size": True}, "f: the c's size is a boolean True, expected int"),
        ({"size": 3.0}, "f: the c's size is a number 3.0, expected int"),
        ({"size": 3, "rate": float("nan")}, "f: the c's rate is a number nan, expected float"),
        ({"size": 3, "rate": 2**60}, "f: the c's rate is an integer 1152921504606846976"),
        ({"size": 3, "name": None}, "f: the c's name is null, expected str"),
        ({"size": 3, "flag": 1}, "f: the c's flag is an integer 1, expected bool"),
        ({"size": 3, "limit": "1"}, "f: the c's limit is a string '1', expected float or null"),
        ({"size": 3, "how": "max"}, "f: the c's how is a string 'max', expected one of 'mean', "),
        ({"size": 3, "how": ["mean"]}, "f: the c's how is an array, expected one of 'mean', "),
    ],
)
def test_config_from_json_refuses_with_the_field(data, message):
    with pytest.raises(CheckpointError, match=re.escape(message)):
        config_from_json(Config, data, "f", "c")
