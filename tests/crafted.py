"""Crafted checkpoint files — damaged, hostile or inconsistent — built deterministically.

`build(folder)` writes a small valid language-model checkpoint, ``valid.npz``, and one file per
entry of `ENTRIES`: a copy of it changed in one way, written byte for byte by the small zip writer
below (fixed time stamps), so the same code always builds the same files. Each entry says which
readers must refuse it (`Entry.level`).
"""

from __future__ import annotations

import copy
import io
import json
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxrnn.checkpoint import MAX_HEADER_BYTES, save_checkpoint
from jaxrnn.lm import LMConfig, init_lm
from jaxrnn.lm_train import TrainConfig, make_corpus, make_lm_optimizer

TEXT = "anna\nbob\ncarl\ndora\nemil\n"
MODEL = LMConfig(vocab_size=0, cell_name="gru", hidden_size=4)  # vocab_size set from the corpus
TRAIN = TrainConfig(steps=4, batch_size=2, eval_every=2, sample_every=0, checkpoint_every=2)
STEP = 2
HISTORY = {"loss": [2.5, float("nan")], "valid": [[2, 0.25, 2.4]], "seconds": 0.25}


def valid_state_and_metadata() -> tuple[dict, dict]:
    """The state and metadata `train_lm` would save for a tiny GRU model after two steps."""
    corpus = make_corpus(TEXT, valid_fraction=0.2)
    model = MODEL._replace(vocab_size=corpus.vocab.size)
    params = init_lm(jax.random.key(TRAIN.seed), model)
    state = {"params": params, "opt_state": make_lm_optimizer(TRAIN).init(params), "carry": None}
    metadata = {
        "kind": "jaxrnn.lm",
        "step": STEP,
        "model": model._asdict(),
        "train": TRAIN._asdict(),
        "mode": corpus.mode,
        "vocab": corpus.vocab.to_dict(),
        "history": HISTORY,
    }
    return state, metadata


# ------------------------------------------------------------------------------------ zip writer


class Member(NamedTuple):
    name: str
    data: bytes  # the bytes as they lie in the file (compressed when method is 8)
    method: int = zipfile.ZIP_STORED
    size: int | None = None  # the uncompressed size the directory states; None: the true one
    crc: int | None = None  # None: the CRC of the uncompressed bytes
    flags: int = 0


_DATE = (0, 33)  # 00:00, 1 January 1980: fixed, so the bytes do not depend on the clock


def _local(m: Member, size: int, crc: int) -> bytes:
    name = m.name.encode()
    fixed = struct.pack(
        "<IHHHHHIIIHH", 0x04034B50, 20, m.flags, m.method, *_DATE, crc, len(m.data), size,
        len(name), 0,
    )  # fmt: skip
    return fixed + name


def _central(m: Member, size: int, crc: int, offset: int) -> bytes:
    name = m.name.encode()
    fixed = struct.pack(
        "<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, m.flags, m.method, *_DATE, crc, len(m.data),
        size, len(name), 0, 0, 0, 0, 0, offset,
    )  # fmt: skip
    return fixed + name


def zip_bytes(members: list[Member]) -> bytes:
    """A zip file of ``members``, each local header followed by its data, then the directory."""
    body, directory = b"", b""
    for m in members:
        size = len(_inflate(m)) if m.size is None else m.size
        crc = zlib.crc32(_inflate(m)) if m.crc is None else m.crc
        directory += _central(m, size, crc, len(body))
        body += _local(m, size, crc) + m.data
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members),
                      len(directory), len(body), 0)  # fmt: skip
    return body + directory + end


def _inflate(m: Member) -> bytes:
    return zlib.decompress(m.data, -15) if m.method == zipfile.ZIP_DEFLATED else m.data


def deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def npy(array: np.ndarray, allow_pickle: bool = False) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def npy_with_header(header: str, data: bytes) -> bytes:
    """A .npy (format 1.0) with ``header`` as its dict text, whatever it says, then ``data``."""
    text = header.encode("latin1")
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data


# -------------------------------------------------------------------------------------- the parts


class Parts(NamedTuple):
    header: dict  # the valid checkpoint's JSON header
    leaves: list[bytes]  # its .npy members, in order

    def members(self, header: Any = None, text: str | bytes | None = None) -> list[Member]:
        if text is None:
            text = json.dumps(self.header if header is None else header, indent=1)
        text = text.encode() if isinstance(text, str) else text
        leaves = [Member(f"{i}.npy", data) for i, data in enumerate(self.leaves)]
        return [Member("metadata.json", text), *leaves]


class Raw(str):
    """A value written into the header as this JSON text (NaN, 1e400, deep nesting, ...)."""


def _dumps(header: dict) -> str:
    raws: list[Raw] = []

    def mark(value):
        if isinstance(value, Raw):
            raws.append(value)
            return f"@raw{len(raws) - 1}@"
        if isinstance(value, dict):
            return {k: mark(v) for k, v in value.items()}
        if isinstance(value, list):
            return [mark(v) for v in value]
        return value

    text = json.dumps(mark(header), indent=1)
    for i, raw in enumerate(raws):
        text = text.replace(f'"@raw{i}@"', raw)
    return text


_DELETE = object()


def _set(target: Any, dotted: str, value: Any) -> None:
    *route, last = dotted.split(".")
    for key in route:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if isinstance(target, list):
        target[int(last)] = value
    elif value is _DELETE:
        del target[last]
    else:
        target[last] = value


def header(dotted: str, value: Any = _DELETE) -> Callable[[Parts], bytes]:
    """The valid file with header entry ``dotted`` (e.g. ``metadata.model.hidden_size`` or
    ``leaves.0.shape``) set to ``value``, or deleted."""

    def make(parts: Parts) -> bytes:
        edited = copy.deepcopy(parts.header)
        if dotted:
            _set(edited, dotted, value)
        else:
            edited = value
        return zip_bytes(parts.members(text=_dumps(edited)))

    return make


def meta(dotted: str, value: Any = _DELETE) -> Callable[[Parts], bytes]:
    return header(f"metadata.{dotted}", value)


def members(edit: Callable[[Parts, list[Member]], list[Member]]):
    """The valid file with its list of members changed by ``edit``."""
    return lambda parts: zip_bytes(edit(parts, parts.members()))


def leaf(i: int, data: bytes | Callable[[bytes], bytes]):
    """The valid file with the bytes of member ``i``.npy replaced (or changed by ``data``)."""

    def edit(parts, ms):
        ms[i + 1] = ms[i + 1]._replace(data=data(ms[i + 1].data) if callable(data) else data)
        return ms

    return members(edit)


def metadata_text(text: str | bytes):
    return lambda parts: zip_bytes(parts.members(text=text))


def _overlapping(parts: Parts) -> bytes:
    """Member 0.npy's data holds all of member 1.npy (local header and data): read one after the
    other they would be more bytes than the file has."""
    ms = parts.members()
    inner = ms[2]
    outer = ms[1]._replace(data=ms[1].data + _local(inner, len(inner.data), zlib.crc32(inner.data))
                           + inner.data)  # fmt: skip
    body = b""
    directory = b""
    for m in [ms[0], outer, *ms[3:]]:
        directory += _central(m, len(m.data), zlib.crc32(m.data), len(body))
        body += _local(m, len(m.data), zlib.crc32(m.data)) + m.data
    # 1.npy points into 0.npy's data
    inner_offset = len(_local(ms[0], 0, 0)) + len(ms[0].data) + len(_local(outer, 0, 0))
    inner_offset += len(ms[1].data)
    directory += _central(inner, len(inner.data), zlib.crc32(inner.data), inner_offset)
    count = len(ms)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, len(directory), len(body), 0)
    return body + directory + end


def _big_endian(data: bytes) -> bytes:
    array = np.lib.format.read_array(io.BytesIO(data))
    return npy(array.astype(array.dtype.newbyteorder(">")))


def _transposed(data: bytes) -> bytes:
    array = np.lib.format.read_array(io.BytesIO(data))
    return npy(np.ascontiguousarray(array.reshape(array.shape[::-1])))


def _npy_data(data: bytes) -> bytes:
    """The array bytes of a format 1.0 .npy, without its header."""
    return data[10 + struct.unpack("<H", data[8:10])[0] :]


def _flipped_byte_same_crc(parts: Parts) -> bytes:
    """A byte of a leaf's data inverted, its CRC left as it was: damage only the CRC reveals."""
    ms = parts.members()
    m = ms[WIDE + 1]
    flipped = m.data[:-1] + bytes([m.data[-1] ^ 0xFF])
    ms[WIDE + 1] = m._replace(data=flipped, crc=zlib.crc32(m.data))
    return zip_bytes(ms)


def _bomb(parts: Parts) -> bytes:
    """metadata.json deflated: 40 kB in the file, 64 MiB once inflated."""
    text = json.dumps(parts.header).encode() + b" " * (64 * 2**20)
    ms = parts.members()
    ms[0] = Member("metadata.json", deflate(text), zipfile.ZIP_DEFLATED)
    return zip_bytes(ms)


def _oversized(parts: Parts) -> bytes:
    text = json.dumps(parts.header).encode()
    return zip_bytes(parts.members(text=text + b" " * (MAX_HEADER_BYTES + 1 - len(text))))


def _small_vocab(parts: Parts) -> bytes:
    vocab = {"tokens": ["\n", "a", "b", "c", "d", "<unk>"], "level": "char", "lowercase": False}
    return meta("vocab", vocab)(parts)


def _replace_member(i: int, **changes):
    def edit(parts, ms):
        ms[i] = ms[i]._replace(**changes)
        return ms

    return members(edit)


def _deflated(i: int):
    def edit(parts, ms):
        ms[i] = Member(ms[i].name, deflate(ms[i].data), zipfile.ZIP_DEFLATED)
        return ms

    return members(edit)


def _deep_npy_header(parts: Parts) -> bytes:
    return leaf(0, npy_with_header("{'descr': " + "(" * 3000 + ")" * 3000 + "}", b""))(parts)


# --------------------------------------------------------------------------------------- entries


class Entry(NamedTuple):
    name: str
    # "file": every reader refuses it; "arrays": its header is sound (read_metadata returns it)
    # but a leaf is not, so every reader of arrays refuses it; "lm": a sound checkpoint whose
    # metadata is not a language model load_lm can use, which only load_lm and the CLI refuse
    level: str
    make: Callable[[Parts], bytes]


WIDE = 2  # a (4, 12) leaf: its transpose has another shape
_NPY_PICKLE = npy(np.array([None, "x"], dtype=object), allow_pickle=True)


def _without(name: str):
    return members(lambda parts, ms: [m for m in ms if m.name != name])


def _with(*extra: Member):
    return members(lambda parts, ms: [*ms, *extra])


ENTRIES = [
    # ------------------------------------------------------------------ the zip around the members
    Entry("empty-file", "file", lambda parts: b""),
    Entry("not-a-zip", "file", lambda parts: b"checkpoint\n" * 100),
    Entry("truncated", "file", lambda parts: zip_bytes(parts.members())[:-3000]),
    Entry("truncated-end", "file", lambda parts: zip_bytes(parts.members())[:-10]),
    Entry("metadata-deflated", "file", _deflated(0)),
    Entry("leaf-deflated", "file", _deflated(1)),
    Entry("zip-bomb-metadata", "file", _bomb),
    Entry("metadata-oversized-stored", "file", _oversized),
    Entry("metadata-size-1gib-claimed", "file", _replace_member(0, size=2**30)),
    Entry("leaf-size-4gb-claimed", "file", _replace_member(1, size=4_000_000_000)),
    Entry("overlapping-members", "file", _overlapping),
    Entry("encrypted-member", "file", _replace_member(1, flags=1)),
    Entry("duplicate-metadata", "file", members(lambda parts, ms: [ms[0], *ms])),
    Entry("duplicate-leaf", "file", members(lambda parts, ms: [*ms, ms[1]])),
    Entry("missing-metadata", "file", _without("metadata.json")),
    Entry("missing-leaf", "file", _without("1.npy")),
    Entry("extra-member", "file", _with(Member("payload.pkl", b"\x80\x04N."))),
    Entry("extra-leaf-member", "file", _with(Member("99.npy", npy(np.zeros(2))))),
    Entry("member-crc-wrong", "file", _replace_member(0, crc=12345)),
    # ------------------------------------------------------------------------- the header's text
    Entry("metadata-not-utf8", "file", metadata_text(b'{"format_version": 1, "x": "\xff\xfe"}')),
    Entry("metadata-not-json", "file", metadata_text('{"format_version": 1, "leaves": [')),
    Entry("metadata-empty", "file", metadata_text("")),
    Entry("header-deep-60000", "file", meta("deep", Raw("[" * 60000 + "]" * 60000))),
    Entry("header-deep-65", "file", meta("deep", Raw("[" * 65 + "]" * 65))),
    Entry("header-deep-objects", "file", meta("deep", Raw('{"a": ' * 200 + "1" + "}" * 200))),
    Entry("header-deep-unclosed", "file", metadata_text("[" * 100_000)),
    Entry(
        "header-deep-after-string",
        "file",
        meta("deep", Raw('["\\"[{", ' + "[" * 9000 + "]" * 9001)),
    ),
    Entry("header-duplicate-keys", "file", meta("dup", Raw('{"a": 1, "a": 2}'))),
    Entry("header-int-5000-digits", "file", meta("step", Raw("9" * 5000))),
    Entry("header-array", "file", header("", [1, 2])),
    Entry("header-string", "file", header("", "checkpoint")),
    Entry("header-null", "file", header("", None)),
    Entry("format-version-string", "file", header("format_version", "1")),
    Entry("format-version-true", "file", header("format_version", True)),
    Entry("format-version-float", "file", header("format_version", 1.0)),
    Entry("format-version-2", "file", header("format_version", 2)),
    Entry("format-version-missing", "file", header("format_version")),
    Entry("header-extra-key", "file", header("pickle", "cos\nsystem\n")),
    Entry("leaves-object", "file", header("leaves", {"0": {"path": "x"}})),
    Entry("leaves-missing", "file", header("leaves")),
    Entry("leaves-empty", "file", header("leaves", [])),
    Entry("leaf-not-object", "file", header("leaves.0", "['params']")),
    Entry("leaf-extra-key", "file", header("leaves.0.pickle", True)),
    Entry("leaf-missing-dtype", "file", header("leaves.0.dtype")),
    Entry("leaf-path-number", "file", header("leaves.0.path", 5)),
    Entry(
        "leaf-paths-duplicate",
        "file",
        lambda p: header("leaves.1.path", p.header["leaves"][0]["path"])(p),
    ),
    Entry("leaf-shape-negative", "file", header("leaves.1.shape", [-1, 4])),
    Entry("leaf-shape-bool", "file", header("leaves.1.shape", [True])),
    Entry("leaf-shape-float", "file", header("leaves.1.shape", [2.0, 2.0])),
    Entry("leaf-shape-string", "file", header("leaves.1.shape", "3x4")),
    Entry("leaf-shape-40-dims", "file", header("leaves.1.shape", [1] * 40)),
    Entry("leaf-shape-256gib", "file", header("leaves.1.shape", [2**18, 2**18])),
    Entry("leaf-shape-2e70", "file", header("leaves.1.shape", [2**70])),
    Entry("leaf-shape-1e400", "file", header("leaves.1.shape", [Raw("1e400")])),
    Entry("leaf-dtype-object", "file", header("leaves.1.dtype", "object")),
    Entry("leaf-dtype-unicode", "file", header("leaves.1.dtype", "<U4")),
    Entry("leaf-dtype-record", "file", header("leaves.1.dtype", "[('a', '<f4')]")),
    Entry("leaf-dtype-unknown", "file", header("leaves.1.dtype", "float128")),
    Entry("leaf-dtype-number", "file", header("leaves.1.dtype", 7)),
    Entry("metadata-array", "file", header("metadata", [1, 2])),
    Entry("metadata-missing", "file", header("metadata")),
    Entry("leaf-member-smaller", "file", leaf(1, npy(np.zeros(1, np.float32)))),
    Entry("leaf-member-larger", "file", leaf(1, npy(np.zeros(10**5, np.float32)))),
    # ------------------------------------------------------------------- the .npy inside a member
    Entry("npy-pickled-objects", "arrays", leaf(0, _NPY_PICKLE)),
    Entry("npy-transposed", "arrays", leaf(WIDE, _transposed)),
    Entry(
        "npy-shape-2e40",
        "arrays",
        leaf(
            1,
            lambda d: npy_with_header(
                "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776,), }",
                _npy_data(d),
            ),
        ),
    ),
    Entry("npy-bad-magic", "arrays", leaf(1, lambda d: b"\x93NUMPX" + d[6:])),
    Entry("npy-version-3", "arrays", leaf(1, lambda d: d[:6] + b"\x03\x00" + d[8:])),
    Entry(
        "npy-header-not-a-dict",
        "arrays",
        leaf(1, lambda d: npy_with_header("[1, 2]", _npy_data(d))),
    ),
    Entry("npy-header-deep", "arrays", _deep_npy_header),
    Entry("npy-big-endian", "arrays", leaf(WIDE, _big_endian)),
    Entry("npy-data-byte-flipped", "arrays", _flipped_byte_same_crc),
    # ----------------------------------------------------- a language model's metadata (load_lm)
    Entry("lm-kind-missing", "lm", meta("kind")),
    Entry("lm-kind-other", "lm", meta("kind", "jaxrnn.seq2seq")),
    Entry("lm-model-array", "lm", meta("model", [28, "lstm", 256])),
    Entry("lm-model-string", "lm", meta("model", "lstm")),
    Entry("lm-model-missing", "lm", meta("model")),
    Entry("lm-model-unknown-key", "lm", meta("model.bidirectional", True)),
    Entry("lm-model-lacks-vocab-size", "lm", meta("model.vocab_size")),
    Entry("lm-hidden-size-1e12", "lm", meta("model.hidden_size", 10**12)),
    Entry("lm-hidden-size-400-digits", "lm", meta("model.hidden_size", Raw("9" * 400))),
    Entry("lm-hidden-size-zero", "lm", meta("model.hidden_size", 0)),
    Entry("lm-hidden-size-negative", "lm", meta("model.hidden_size", -4)),
    Entry("lm-hidden-size-true", "lm", meta("model.hidden_size", True)),
    Entry("lm-hidden-size-float", "lm", meta("model.hidden_size", 4.0)),
    Entry("lm-hidden-size-string", "lm", meta("model.hidden_size", "4")),
    Entry("lm-hidden-size-null", "lm", meta("model.hidden_size", None)),
    Entry("lm-hidden-size-other", "lm", meta("model.hidden_size", 8)),
    Entry("lm-num-layers-1e6", "lm", meta("model.num_layers", 10**6)),
    Entry("lm-num-layers-300", "lm", meta("model.num_layers", 300)),
    Entry("lm-vocab-size-2e40", "lm", meta("model.vocab_size", 2**40)),
    Entry("lm-embedding-size-negative", "lm", meta("model.embedding_size", -1)),
    Entry("lm-embedding-size-huge", "lm", meta("model.embedding_size", 2**30)),
    Entry("lm-cell-unknown", "lm", meta("model.cell_name", "transformer")),
    Entry("lm-cell-number", "lm", meta("model.cell_name", 3)),
    Entry("lm-dropout-nan", "lm", meta("model.dropout_rate", Raw("NaN"))),
    Entry("lm-dropout-infinity", "lm", meta("model.dropout_rate", Raw("Infinity"))),
    Entry("lm-dropout-1.5", "lm", meta("model.dropout_rate", 1.5)),
    Entry("lm-train-array", "lm", meta("train", [])),
    Entry("lm-train-unknown-key", "lm", meta("train.momentum", 0.9)),
    Entry("lm-train-batch-size-zero", "lm", meta("train.batch_size", 0)),
    Entry("lm-train-learning-rate-infinity", "lm", meta("train.learning_rate", Raw("Infinity"))),
    Entry("lm-train-learning-rate-negative", "lm", meta("train.learning_rate", -1.0)),
    Entry("lm-train-optimizer-unknown", "lm", meta("train.optimizer", "lbfgs")),
    Entry("lm-train-seed-2e70", "lm", meta("train.seed", 2**70)),
    Entry("lm-train-reduce-time-max", "lm", meta("train.reduce_time", "max")),
    Entry("lm-train-steps-negative", "lm", meta("train.steps", -1)),
    Entry("lm-train-stateful-string", "lm", meta("train.stateful", "yes")),
    Entry("lm-step-1e400", "lm", meta("step", Raw("1e400"))),
    Entry("lm-step-negative", "lm", meta("step", -1)),
    Entry("lm-step-string", "lm", meta("step", "2")),
    Entry("lm-step-float", "lm", meta("step", 2.0)),
    Entry("lm-step-nan", "lm", meta("step", Raw("NaN"))),
    Entry("lm-step-missing", "lm", meta("step")),
    Entry("lm-history-array", "lm", meta("history", [[2.5]])),
    Entry("lm-history-loss-strings", "lm", meta("history.loss", ["2.5", "2.4"])),
    Entry("lm-history-loss-longer-than-step", "lm", meta("history.loss", [1.0] * 3)),
    Entry("lm-history-valid-short-rows", "lm", meta("history.valid", [[2, 0.25]])),
    Entry("lm-history-valid-not-rows", "lm", meta("history.valid", [2, 0.25, 2.4])),
    Entry("lm-history-missing-loss", "lm", meta("history.loss")),
    Entry("lm-history-seconds-nan", "lm", meta("history.seconds", Raw("NaN"))),
    Entry("lm-history-other-entry-object", "lm", meta("history.extra", {"a": 1})),
    Entry("lm-mode-words", "lm", meta("mode", "words")),
    Entry("lm-mode-array", "lm", meta("mode", ["lines"])),
    Entry("lm-mode-missing", "lm", meta("mode")),
    Entry("lm-vocab-6-tokens", "lm", _small_vocab),
    Entry("lm-vocab-array", "lm", meta("vocab", ["a", "b"])),
    Entry("lm-vocab-missing", "lm", meta("vocab")),
    Entry("lm-vocab-tokens-string", "lm", meta("vocab.tokens", "\nabcdeklmnor<unk>")),
    Entry("lm-vocab-token-number", "lm", meta("vocab.tokens.1", 7)),
    Entry(
        "lm-vocab-token-duplicate",
        "lm",
        lambda p: meta("vocab.tokens.2", p.header["metadata"]["vocab"]["tokens"][1])(p),
    ),
    Entry("lm-vocab-without-eos", "lm", meta("vocab.tokens.0", "z")),
    Entry("lm-vocab-level-array", "lm", meta("vocab.level", ["char"])),
    Entry("lm-vocab-level-other", "lm", meta("vocab.level", "byte")),
    Entry("lm-vocab-lowercase-string", "lm", meta("vocab.lowercase", "false")),
    Entry("lm-vocab-extra-key", "lm", meta("vocab.order", "frequency")),
]


def build(folder: Path) -> dict[str, Path]:
    """Writes ``valid.npz`` and every entry of `ENTRIES` into ``folder``; returns their paths."""
    state, metadata = valid_state_and_metadata()
    save_checkpoint(folder / "saved.npz", state, metadata)
    with zipfile.ZipFile(folder / "saved.npz") as archive:
        parsed = json.loads(archive.read("metadata.json"))
        leaves = [archive.read(f"{i}.npy") for i in range(len(parsed["leaves"]))]
    (folder / "saved.npz").unlink()
    parts = Parts(parsed, leaves)
    assert parsed["leaves"][WIDE]["shape"] == [4, 12], parsed["leaves"][WIDE]
    paths = {"valid": folder / "valid.npz"}
    paths["valid"].write_bytes(zip_bytes(parts.members()))
    for entry in ENTRIES:
        path = folder / f"{entry.name}.npz"
        path.write_bytes(entry.make(parts))
        paths[entry.name] = path
    return paths
