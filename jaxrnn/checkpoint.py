"""Checkpoints: a pytree of arrays plus JSON metadata in one ``.npz`` file, written atomically.

The file is a zip of ``.npy`` arrays (leaf 0 … n−1 of the tree) and a UTF-8 JSON document with the
format version, each leaf's path, shape and dtype, and the caller's metadata (step, configuration,
vocabulary, ...). Loading never unpickles anything, so an untrusted file cannot run code.

Writes go to a temporary file in the same directory, are flushed to disk, and then renamed over
the target with ``os.replace``, so a crash mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

import jax
import numpy as np

FORMAT_VERSION = 1
_METADATA = "metadata.json"


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, of another format version, or does not fit the model."""


def _leaf_paths(tree: Any) -> tuple[list[str], list[Any]]:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [jax.tree_util.keystr(path) for path, _ in flat], [leaf for _, leaf in flat]


def save_checkpoint(path: str | os.PathLike, tree: Any, metadata: dict) -> None:
    """Writes ``tree`` (any pytree of arrays) and JSON-able ``metadata`` to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names, leaves = _leaf_paths(tree)
    arrays = [np.asarray(leaf) for leaf in leaves]
    header = {
        "format_version": FORMAT_VERSION,
        "leaves": [
            {"path": n, "shape": list(a.shape), "dtype": a.dtype.name}
            for n, a in zip(names, arrays, strict=True)
        ],
        "metadata": metadata,
    }
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as archive:
                archive.writestr(_METADATA, json.dumps(header, indent=1))
                for i, array in enumerate(arrays):
                    with archive.open(f"{i}.npy", "w", force_zip64=True) as member:
                        np.lib.format.write_array(member, array, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # The rename itself must reach the disk for the new file to survive a power cut.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    # A process killed mid-write (SIGKILL, power cut) leaves its temporary file behind; the
    # checkpoint itself is intact, and the next successful save clears the leftovers.
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)


# Reading a damaged zip, or a header not written by `save_checkpoint`, can raise any of these;
# each means the file is corrupt. (CheckpointError is a ValueError, so it is let through first.)
_DAMAGED = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    NotImplementedError,
    LookupError,
    TypeError,
    ValueError,
    AttributeError,
)


@contextlib.contextmanager
def _reading(path: Path):
    """Raises `CheckpointError`, never another exception type, when the file cannot be read."""
    try:
        yield
    except CheckpointError:
        raise
    except _DAMAGED as error:
        raise CheckpointError(
            f"{path}: not a jaxrnn checkpoint or corrupt ({type(error).__name__}: {error})"
        ) from None


def _read_header(archive: zipfile.ZipFile, path: Path) -> dict:
    with _reading(path):
        header = json.loads(archive.read(_METADATA).decode("utf-8"))
        version = header.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version!r}, this jaxrnn reads {FORMAT_VERSION}"
        )
    return header


def _open(path: str | os.PathLike) -> tuple[zipfile.ZipFile, Path]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file at {path}")
    with _reading(path):
        return zipfile.ZipFile(path), path


def read_metadata(path: str | os.PathLike) -> dict:
    """The metadata dict saved with the checkpoint at ``path``, without reading the arrays."""
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
            try:
                with archive.open(f"{i}.npy") as member:
                    array = np.lib.format.read_array(member, allow_pickle=False)
            except _DAMAGED as error:
                raise CheckpointError(f"{path}: leaf {spec['path']} unreadable ({error})") from None
            if (array.shape, array.dtype.name) != expected:
                raise CheckpointError(
                    f"{path}: leaf {spec['path']} holds shape {array.shape} and dtype "
                    f"{array.dtype.name}, its header says {expected[0]} and {expected[1]}"
                )
            arrays.append(array)
    return jax.tree_util.tree_unflatten(treedef, arrays), header["metadata"]
