"""Checkpoints: a pytree of arrays plus JSON metadata in one ``.npz`` file, written atomically.

The file is a zip of ``.npy`` arrays (leaf 0 … n−1 of the tree) and a UTF-8 JSON document with the
format version, each leaf's path, shape and dtype, and the caller's metadata (step, configuration,
vocabulary, ...).

Writes go to a temporary file in the same directory (`atomic_output`), are flushed to disk, and
then renamed over the target with ``os.replace``, so a crash mid-write leaves the previous
checkpoint intact.

Reading trusts nothing in the file, so a damaged or hostile file costs little and raises
`CheckpointError`, never another exception:

- every member must be stored uncompressed (no zip bombs), lie inside the file, overlap no other,
  and appear once; the members are exactly the header and one ``.npy`` per leaf;
- the header is at most `MAX_HEADER_BYTES` and nested at most `MAX_DEPTH` deep (checked on the raw
  text, before it is parsed), and is checked against its schema before anything is built from it;
- each leaf's dtype comes from an allow-list of numeric dtypes, and its size (shape × itemsize) must
  match its member's size in the file before any memory is allocated for it;
- nothing is ever unpickled, so an untrusted file cannot run code.
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import re
import secrets
import socket
import types
import typing
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

FORMAT_VERSION = 1
MAX_HEADER_BYTES = 16 * 2**20  # the JSON header (metadata included) of a checkpoint, in bytes
MAX_DEPTH = 64  # how deeply the header's arrays and objects may nest
_METADATA = "metadata.json"
_MAX_NDIM = 32
_NPY_HEADER_MAX = 10_000  # numpy's own bound on a .npy header
_HEADER_KEYS = ("format_version", "leaves", "metadata")
_LEAF_KEYS = ("path", "shape", "dtype")
# The dtypes a leaf may have: numbers and bools, never objects, strings or records.
_DTYPES = {
    np.dtype(t).name: np.dtype(t)
    for t in (
        np.bool_,
        np.int8,
        np.int16,
        np.int32,
        np.int64,
        np.uint8,
        np.uint16,
        np.uint32,
        np.uint64,
        np.float16,
        np.float32,
        np.float64,
        np.complex64,
        np.complex128,
        jnp.bfloat16,
    )
}


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, of another format version, or does not fit the model;
    or, when saving, the tree or metadata cannot be written in this format."""


def _leaf_paths(tree: Any) -> tuple[list[str], list[Any]]:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [jax.tree_util.keystr(path) for path, _ in flat], [leaf for _, leaf in flat]


# ---------------------------------------------------------------------------------- atomic writes


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "", socket.gethostname())[:32]


def _temporary_pattern(path: Path) -> re.Pattern:
    """Temporary files of ``path``: ``.{name}.{pid}-{host}.{random hex}.tmp``."""
    return re.compile(rf"\.{re.escape(path.name)}\.(\d{{1,9}})-([A-Za-z0-9-]*)\.[0-9a-f]+\.tmp")


def _create_temporary(path: Path) -> str:
    """A new empty file beside ``path`` whose name says which process on which host wrote it.
    Created with mode 0o666 less the umask (``mkstemp`` would make it 0o600)."""
    for _ in range(100):
        name = f".{path.name}.{os.getpid()}-{_host()}.{secrets.token_hex(4)}.tmp"
        tmp = path.parent / name
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return str(tmp)
    raise FileExistsError(f"no free temporary file name beside {path}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:  # it exists but belongs to someone else
        return True
    return True


def _remove_stale_temporaries(path: Path) -> None:
    """Removes the temporary files of ``path`` left by killed writers: those whose name holds this
    host and the id of a process that no longer runs. A live writer's file, one from another host
    (a shared folder) or one of another name is never touched."""
    if os.name != "posix":  # os.kill(pid, 0) would not merely ask elsewhere
        return
    pattern, host = _temporary_pattern(path), _host()
    for candidate in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        match = pattern.fullmatch(candidate.name)
        if match is None or match[2] != host:
            continue
        pid = int(match[1])
        if pid != os.getpid() and not _alive(pid):
            candidate.unlink(missing_ok=True)


def _fsync(path: str | Path, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[str]:
    """Yields the name of a new temporary file beside ``path``; when the block ends, the file is
    flushed to disk and renamed over ``path``, so readers see the old file or the new one, never
    half of one.

    If the block raises, the temporary file is removed and ``path`` is left as it was. If ``path``
    is a symbolic link, the link itself is replaced by the new file: its target is never written.
    Temporary files of ``path`` left by killed processes on this host are removed afterwards.

    Example:
      >>> import matplotlib.pyplot as plt  # doctest: +SKIP
      >>> with atomic_output(out_dir / "loss.png") as tmp:  # doctest: +SKIP
      ...     fig.savefig(tmp, format="png")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temporary(path)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # The rename itself must reach the disk for the new file to survive a power cut.
    _fsync(path.parent)
    _remove_stale_temporaries(path)


# ---------------------------------------------------------------------------------------- writing


def save_checkpoint(path: str | os.PathLike, tree: Any, metadata: dict) -> None:
    """Writes ``tree`` (any pytree of arrays) and JSON-able ``metadata`` to ``path`` atomically.

    Raises:
      CheckpointError: if a leaf is not numeric (objects, strings), or the header would be larger
        than `MAX_HEADER_BYTES` or nested deeper than `MAX_DEPTH`: a file that could not be read.
    """
    path = Path(path)
    names, leaves = _leaf_paths(tree)
    arrays = []
    for name, leaf in zip(names, leaves, strict=True):
        array = np.asarray(leaf)
        if array.dtype.name not in _DTYPES:
            raise CheckpointError(
                f"{path}: leaf {name} has dtype {array.dtype}; checkpoints hold only "
                f"{', '.join(_DTYPES)} (never objects, which would need pickling)"
            )
        arrays.append(array.astype(_DTYPES[array.dtype.name], copy=False))  # native byte order
    header = {
        "format_version": FORMAT_VERSION,
        "leaves": [
            {"path": n, "shape": list(a.shape), "dtype": a.dtype.name}
            for n, a in zip(names, arrays, strict=True)
        ],
        "metadata": metadata,
    }
    text = json.dumps(header, indent=1)
    if len(text) > MAX_HEADER_BYTES:  # ASCII: as many bytes as characters
        raise CheckpointError(
            f"{path}: the metadata makes a header of {len(text):,} bytes; a checkpoint's header "
            f"may have at most {MAX_HEADER_BYTES:,}"
        )
    if _nesting_depth(text) > MAX_DEPTH:
        raise CheckpointError(
            f"{path}: the metadata nests deeper than a checkpoint's header may ({MAX_DEPTH} levels)"
        )
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as archive:
            archive.writestr(_METADATA, text)
            for i, array in enumerate(arrays):
                with archive.open(f"{i}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, array, allow_pickle=False)


# ---------------------------------------------------------------------------------------- reading

# Reading a damaged zip can raise any of these; each means the file is corrupt. (CheckpointError is
# a ValueError, so it is let through first.)
_DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, ValueError)


def _corrupt(path: Path, what: str) -> CheckpointError:
    return CheckpointError(f"{path}: not a jaxrnn checkpoint or corrupt ({what})")


@contextlib.contextmanager
def _reading(path: Path):
    """Raises `CheckpointError`, never another exception type, when the zip cannot be read."""
    try:
        yield
    except CheckpointError:
        raise
    except _DAMAGED as error:
        raise _corrupt(path, f"{type(error).__name__}: {error}") from None


# A JSON string, a bracket, or a quote that opens a string never closed (the text is not JSON).
_JSON_TOKENS = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"|[\[\]{}]|"', re.DOTALL)


def _nesting_depth(text: str, limit: int = MAX_DEPTH) -> int:
    """How deeply the arrays and objects of JSON ``text`` nest, counted up to ``limit`` + 1, in
    one pass without recursion (so that a hostile document cannot exhaust the stack of the
    parser). Where the text stops being JSON the count stops too: the parser refuses it there."""
    depth = deepest = 0
    for match in _JSON_TOKENS.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > limit:
                break
        elif token in ("]", "}"):
            depth -= 1
        elif token == '"':
            break
    return deepest


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError(f"duplicate keys {sorted({k for k, _ in pairs if k in result})[:6]}")
    return result


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    names.update({int: "an integer", float: "a number", type(None): "null"})
    return names.get(type(value), type(value).__name__)


def _check_members(archive: zipfile.ZipFile, path: Path) -> None:
    """Every member appears once, is stored (uncompressed, unencrypted) and lies inside the file
    without overlapping another, so reading all members costs at most the file's size."""
    infos = archive.infolist()
    names = [info.filename for info in infos]
    if len(set(names)) != len(names):
        repeated = sorted({n for n in names if names.count(n) > 1})
        raise _corrupt(path, f"members {repeated[:6]} appear more than once")
    size = os.fstat(archive.fp.fileno()).st_size
    extents = []
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED:
            raise _corrupt(
                path,
                f"member {info.filename} is compressed (method {info.compress_type}); checkpoints "
                "hold stored members only",
            )
        if info.flag_bits & 0x1:
            raise _corrupt(path, f"member {info.filename} is encrypted")
        if info.file_size != info.compress_size:
            raise _corrupt(
                path,
                f"member {info.filename} is stored but says {info.compress_size} bytes in the "
                f"file hold {info.file_size}",
            )
        # local header (30 bytes and the name), then the data
        start = info.header_offset
        extents.append((start, start + 30 + len(info.filename.encode()) + info.file_size, info))
    extents.sort(key=lambda e: e[0])
    for (_, end, info), (next_start, *_) in zip(extents, [*extents[1:], (size,)], strict=True):
        if end > next_start:
            where = "the end of the file" if next_start == size else "the next member"
            raise _corrupt(
                path, f"member {info.filename} of {info.file_size:,} bytes runs past {where}"
            )


def _open(path: str | os.PathLike) -> tuple[zipfile.ZipFile, Path]:
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"no checkpoint file at {path}: it is a folder")
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    with _reading(path):
        archive = zipfile.ZipFile(path)
    try:
        with _reading(path):
            _check_members(archive, path)
    except BaseException:
        archive.close()
        raise
    return archive, path


def _check_leaf_spec(spec: Any, i: int, path: Path) -> None:
    if not isinstance(spec, dict) or sorted(spec) != sorted(_LEAF_KEYS):
        got = sorted(spec) if isinstance(spec, dict) else _json_type(spec)
        raise _corrupt(path, f"leaf {i} of the header has keys {got}, expected {list(_LEAF_KEYS)}")
    shape, dtype = spec["shape"], spec["dtype"]
    if not isinstance(spec["path"], str):
        raise _corrupt(path, f"leaf {i} has a path that is {_json_type(spec['path'])}")
    if (
        not isinstance(shape, list)
        or len(shape) > _MAX_NDIM
        or not all(type(d) is int and 0 <= d < 2**62 for d in shape)
    ):
        raise _corrupt(
            path,
            f"leaf {spec['path']} has shape {shape!r:.80}, expected at most {_MAX_NDIM} "
            "non-negative integers",
        )
    if not isinstance(dtype, str) or dtype not in _DTYPES:
        raise _corrupt(
            path, f"leaf {spec['path']} has dtype {dtype!r:.40}, expected one of {list(_DTYPES)}"
        )


def _read_header(archive: zipfile.ZipFile, path: Path) -> dict:
    """The header, parsed only once its size and depth are known to be small, then checked
    against the schema and against the members' sizes."""
    names = archive.namelist()
    if _METADATA not in names:
        raise _corrupt(path, f"no member {_METADATA}")
    info = archive.getinfo(_METADATA)
    if info.file_size > MAX_HEADER_BYTES:
        raise _corrupt(
            path, f"{_METADATA} has {info.file_size:,} bytes, more than {MAX_HEADER_BYTES:,}"
        )
    with _reading(path):
        raw = archive.read(_METADATA)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _corrupt(path, f"{_METADATA} is not UTF-8: {error}") from None
    if _nesting_depth(text) > MAX_DEPTH:
        raise _corrupt(path, f"{_METADATA} nests deeper than {MAX_DEPTH} levels")
    try:
        header = json.loads(text, object_pairs_hook=_unique_keys)
    except ValueError as error:
        raise _corrupt(path, f"{_METADATA} is not valid JSON: {error}") from None
    if not isinstance(header, dict):
        raise _corrupt(path, f"{_METADATA} holds {_json_type(header)}, not an object")
    version = header.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r:.40}, this jaxrnn reads {FORMAT_VERSION}"
        )
    if sorted(header) != sorted(_HEADER_KEYS):
        raise _corrupt(path, f"header keys {sorted(header)}, expected {list(_HEADER_KEYS)}")
    leaves, metadata = header["leaves"], header["metadata"]
    if not isinstance(leaves, list):
        raise _corrupt(path, f"the header's leaves are {_json_type(leaves)}, not an array")
    if not isinstance(metadata, dict):
        raise _corrupt(path, f"the header's metadata is {_json_type(metadata)}, not an object")
    for i, spec in enumerate(leaves):
        _check_leaf_spec(spec, i, path)
    paths = [spec["path"] for spec in leaves]
    if len(set(paths)) != len(paths):
        raise _corrupt(path, "two leaves have the same path")
    expected = {_METADATA, *(f"{i}.npy" for i in range(len(leaves)))}
    if set(names) != expected:
        missing, extra = sorted(expected - set(names)), sorted(set(names) - expected)
        what = [f"missing members {missing[:6]}"] if missing else []
        what += [f"unexpected members {extra[:6]}"] if extra else []
        raise _corrupt(path, " and ".join(what))
    for i, spec in enumerate(leaves):
        nbytes = math.prod(spec["shape"]) * _DTYPES[spec["dtype"]].itemsize
        size = archive.getinfo(f"{i}.npy").file_size
        if not nbytes < size <= nbytes + _NPY_HEADER_MAX:
            raise _corrupt(
                path,
                f"leaf {spec['path']} is declared as shape {tuple(spec['shape'])} and dtype "
                f"{spec['dtype']} ({nbytes:,} bytes), but its member {i}.npy holds {size:,} bytes",
            )
    return header


def _dtype_text(dtype: np.dtype) -> str:
    return dtype.name if dtype.isnative else dtype.str


def _read_leaf(
    archive: zipfile.ZipFile, i: int, spec: dict, path: Path, chunk: int = 2**24
) -> np.ndarray:
    """Leaf ``i``, whose header entry ``spec`` was checked: its ``.npy`` header must agree with
    ``spec`` and the member hold exactly that many bytes before the array is allocated."""
    shape, dtype = tuple(spec["shape"]), _DTYPES[spec["dtype"]]
    nbytes = math.prod(shape) * dtype.itemsize
    with archive.open(f"{i}.npy") as member:
        version = np.lib.format.read_magic(member)
        if version not in ((1, 0), (2, 0)):
            raise _corrupt(path, f"leaf {spec['path']} is in .npy format {version}")
        read_header = getattr(np.lib.format, f"read_array_header_{version[0]}_0")
        found_shape, fortran_order, found = read_header(member, max_header_size=_NPY_HEADER_MAX)
        if found.hasobject:
            raise _corrupt(
                path, f"leaf {spec['path']} holds Python objects, which are never unpickled"
            )
        # ml_dtypes (bfloat16) are written to .npy as raw bytes of their size
        raw = np.dtype(f"V{dtype.itemsize}") if dtype.kind == "V" else dtype
        if (found_shape, found) != (shape, raw):
            raise CheckpointError(
                f"{path}: leaf {spec['path']} holds shape {found_shape} and dtype "
                f"{_dtype_text(found)}, its header says {shape} and {dtype.name}"
            )
        if member.tell() + nbytes != archive.getinfo(f"{i}.npy").file_size:
            raise _corrupt(path, f"leaf {spec['path']}: {i}.npy does not hold {nbytes:,} bytes")
        buffer = bytearray(nbytes)
        view = memoryview(buffer)
        for start in range(0, nbytes, chunk):
            data = member.read(min(chunk, nbytes - start))
            if len(data) != min(chunk, nbytes - start):
                raise _corrupt(path, f"leaf {spec['path']} is cut short")
            view[start : start + len(data)] = data
        member.read()  # the end of the member, where its checksum is compared
    return np.frombuffer(buffer, dtype).reshape(shape, order="F" if fortran_order else "C")


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata dict saved with the checkpoint at ``path``, without reading the arrays.

    The whole header is checked against its schema, and the members' sizes against the header.

    Raises:
      CheckpointError: if the file is missing, corrupt, or of another format version.
    """
    archive, path = _open(path)
    with archive, _reading(path):
        return _read_header(archive, path)["metadata"]


def load_checkpoint(path: str | os.PathLike, template: Any) -> tuple[Any, dict]:
    """Reads a checkpoint into the structure of ``template``; returns (tree, metadata).

    ``template`` is a pytree of the expected structure, shapes and dtypes (e.g. freshly initialised
    params); its values are not used. Every leaf's path, shape and dtype must match.

    Raises:
      CheckpointError: if the file is missing, corrupt, of another format version, or was saved
        for a differently shaped model (the message names the first leaf that differs).
    """
    archive, path = _open(path)
    names, leaves = _leaf_paths(template)
    treedef = jax.tree_util.tree_structure(template)
    with archive, _reading(path):
        header = _read_header(archive, path)
        saved = header["leaves"]
        if [s["path"] for s in saved] != names:
            raise CheckpointError(
                f"{path}: saved for a model with parameters {[s['path'] for s in saved][:6]}…, "
                f"expected {names[:6]}…; was it written with a different configuration?"
            )
        arrays = []
        for i, (spec, leaf) in enumerate(zip(saved, leaves, strict=True)):
            dtype = leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype
            expected = (tuple(np.shape(leaf)), np.dtype(dtype).name)
            if (tuple(spec["shape"]), spec["dtype"]) != expected:
                raise CheckpointError(
                    f"{path}: {spec['path']} has shape {tuple(spec['shape'])} and dtype "
                    f"{spec['dtype']}, the model expects shape {expected[0]} and dtype "
                    f"{expected[1]}; was it written with a different configuration?"
                )
            arrays.append(_read_leaf(archive, i, spec, path))
    return jax.tree_util.tree_unflatten(treedef, arrays), header["metadata"]


# ------------------------------------------------------------------------- configurations in JSON

T = TypeVar("T")


def _fits(value: Any, kind: Any) -> bool:
    """Whether the JSON ``value`` is of the annotated ``kind``: int, float (finite), bool, str,
    a Literal of those, or a union with None. An int stands for a float; a bool for neither."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return any(_fits(value, k) for k in typing.get_args(kind))
    if typing.get_origin(kind) is Literal:
        return any(type(value) is type(v) and value == v for v in typing.get_args(kind))
    if kind is type(None):
        return value is None
    if kind is float:
        return (type(value) is float and math.isfinite(value)) or (
            type(value) is int and abs(value) <= 2**53
        )
    return kind in (int, bool, str) and type(value) is kind


def _kind_text(kind: Any) -> str:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return " or ".join(_kind_text(k) for k in typing.get_args(kind))
    if typing.get_origin(kind) is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(kind))
    return "null" if kind is type(None) else getattr(kind, "__name__", str(kind))


def _value_text(value: Any) -> str:
    if isinstance(value, dict | list) or value is None:
        return _json_type(value)
    return f"{_json_type(value)} {value!r:.40}"


def config_from_json(cls: type[T], data: Any, path: str | os.PathLike, name: str) -> T:
    """``cls(**data)`` for a NamedTuple ``cls`` of JSON scalars, once ``data`` is known to be an
    object of ``cls``'s fields (those without a default present) whose values have the annotated
    types (`_fits`); ``name`` says what ``data`` is in the checkpoint at ``path``.

    Raises:
      CheckpointError: naming the file and the first field that is wrong.
    """
    if not isinstance(data, dict):
        raise CheckpointError(
            f"{path}: the {name} is {_value_text(data)}, expected an object of {cls.__name__} "
            f"fields {list(cls._fields)}"
        )
    fields = cls._fields
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise CheckpointError(
            f"{path}: the {name} has unknown fields {unknown[:6]}; {cls.__name__} has the "
            f"fields {list(fields)}"
        )
    missing = [f for f in fields if f not in data and f not in cls._field_defaults]
    if missing:
        raise CheckpointError(f"{path}: the {name} lacks the fields {missing}")
    kinds = typing.get_type_hints(cls)
    for field, value in data.items():
        if not _fits(value, kinds[field]):
            raise CheckpointError(
                f"{path}: the {name}'s {field} is {_value_text(value)}, expected "
                f"{_kind_text(kinds[field])}"
            )
    values = {f: float(v) if kinds[f] is float else v for f, v in data.items()}
    return cls(**values)
