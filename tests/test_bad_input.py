"""Bad input, generated: every call either gives the right answer or a clear `jaxrnn.InputError`.

Each property draws a call to the public API that is sometimes valid and often not: wrong ranks,
sizes and dtypes (ints, float16, complex, bool), empty sequences and batches, lengths and labels
out of range, NaN/Inf values, random text and bytes, random checkpoint files. An independent
oracle, written from the documented contract, says whether the call is valid. Valid calls must
succeed with the documented shapes and values; invalid ones must raise the documented exception,
whose message names the function and the argument and says what was expected. Any other exception
(a TypeError from deep inside jax, an XLA error) fails the test. Examples are derandomised, so CI
runs the same cases every time.
"""

from __future__ import annotations

import json
import re
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jaxrnn
from jaxrnn import checkpoint, cli, lm, text
from jaxrnn.lm_train import make_corpus

PROPERTY = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
N_X, HIDDEN = 3, 4
CELLS = {
    "rnn": jaxrnn.rnn(),
    "gru": jaxrnn.gru(),
    "lstm": jaxrnn.lstm(),
    "lstm_peephole": jaxrnn.lstm(peephole=True),
    "min_gru": jaxrnn.min_gru(),
}
PARAMS = {name: cell.init(jax.random.key(0), N_X, HIDDEN) for name, cell in CELLS.items()}
DTYPES = ["float32", "float32", "float32", "float64", "float16", "bfloat16", "int32", "complex64"]
VALUES = ["normal", "normal", "nan", "inf"]


def make_array(shape, dtype: str, values: str = "normal", seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=shape)
    if values != "normal" and x.size:
        x.flat[rng.integers(x.size)] = np.nan if values == "nan" else np.inf
    if dtype == "bfloat16":
        return jnp.asarray(x, jnp.bfloat16)
    if dtype.startswith("int"):
        return np.zeros(shape, dtype)
    return x.astype(dtype)


def make_lengths(kind: str, batch: tuple, n_steps: int) -> np.ndarray | None:
    """Per-example lengths for a batch: valid ones, or one of the ways of getting them wrong."""
    if kind == "none":
        return None
    if kind == "valid":
        return np.random.default_rng(1).integers(0, n_steps + 1, size=batch).astype(np.int32)
    return {
        "over": np.full(batch, n_steps + 1, np.int32),
        "negative": np.full(batch, -1, np.int32),
        "float": np.ones(batch, np.float32),
        "shape": np.zeros((*batch, 2), np.int32),
    }[kind]


def outcome(call):
    """("ok", result) or ("error", message); any exception but InputError propagates."""
    try:
        return "ok", call()
    except jaxrnn.InputError as error:
        return "error", str(error)


def assert_names(message: str, fn: str, names: list[str]):
    assert message.startswith(fn), message
    assert "expected" in message, message
    assert any(re.search(rf"\b{re.escape(n)}\b", message) for n in names), (names, message)


shapes = st.lists(st.integers(0, 3), min_size=0, max_size=2).map(tuple)


@st.composite
def cell_calls(draw):
    name = draw(st.sampled_from(sorted(CELLS)))
    batch = draw(shapes)
    n_x = draw(st.sampled_from([N_X, N_X, N_X, 1, 5, 0]))
    dtype = draw(st.sampled_from(DTYPES))
    scalar = draw(st.integers(0, 9)) == 0  # a rank-0 x now and then
    carry_batch = draw(st.sampled_from([batch, batch, batch, (*batch, 2), batch[1:]]))
    carry_h = draw(st.sampled_from([HIDDEN, HIDDEN, HIDDEN, HIDDEN + 1]))
    values = draw(st.sampled_from(VALUES))
    return name, batch, n_x, dtype, scalar, carry_batch, carry_h, values


@PROPERTY
@given(cell_calls())
def test_cell_step_right_answer_or_clear_error(call):
    name, batch, n_x, dtype, scalar, carry_batch, carry_h, values = call
    cell, params = CELLS[name], PARAMS[name]
    x = make_array(() if scalar else (*batch, n_x), dtype, values)
    zeros = jnp.zeros((*carry_batch, carry_h), jnp.float32)
    carry = jaxrnn.LSTMState(zeros, zeros) if name.startswith("lstm") else zeros

    bad = []
    if scalar:
        bad.append("x")
    else:
        if n_x != N_X or dtype != "float32":
            bad.append("x")
        if carry_batch != batch or carry_h != HIDDEN:
            bad.append("carry")
    kind, result = outcome(lambda: cell.step(params, carry, x))
    if bad:
        assert kind == "error", f"accepted bad {bad}"
        assert_names(result, f"{jaxrnn.cells.cell_name(cell)}.step", bad)
        # shapes and dtypes are static: the same error comes at trace time under jit
        with pytest.raises(jaxrnn.InputError, match=re.escape(result)):
            jax.jit(cell.step)(params, carry, x)
        return
    assert kind == "ok", result
    new_carry, y = result
    assert y.shape == (*batch, HIDDEN) and y.dtype == jnp.float32
    assert jax.tree.structure(new_carry) == jax.tree.structure(carry)
    if values == "normal":
        assert bool(jnp.all(jnp.isfinite(y)))


@st.composite
def unroll_calls(draw):
    name = draw(st.sampled_from(sorted(CELLS)))
    batch = draw(shapes)
    n_steps = draw(st.sampled_from([0, 1, 4, 4]))
    n_x = draw(st.sampled_from([N_X, N_X, N_X, 2]))
    rank_cut = draw(st.integers(0, 9)) == 0  # drop the time axis now and then
    dtype = draw(st.sampled_from(DTYPES))
    lengths_kind = draw(
        st.sampled_from(["none", "none", "valid", "valid", "over", "negative", "float", "shape"])
    )
    options = draw(
        st.sampled_from(
            [
                {},
                {"reverse": True},
                {"remat": True},
                {"time_major": True},
                {"implementation": "scan"},
            ]
        )
    )
    values = draw(st.sampled_from(VALUES))
    return name, batch, n_steps, n_x, rank_cut, dtype, lengths_kind, options, values


@PROPERTY
@given(unroll_calls())
def test_unroll_right_answer_or_clear_error(call):
    name, batch, n_steps, n_x, rank_cut, dtype, lengths_kind, options, values = call
    cell, params = CELLS[name], PARAMS[name]
    batch_size = int(np.prod(batch))
    time_major = options.get("time_major", False)
    shape = (
        (n_x,) if rank_cut else ((n_steps, *batch, n_x) if time_major else (*batch, n_steps, n_x))
    )
    xs = make_array(shape, dtype, values)
    lengths = make_lengths(lengths_kind, batch, n_steps)

    bad = []
    if rank_cut:
        bad.append("xs")
    elif n_x != N_X or dtype != "float32":
        bad.append("xs")
    elif lengths_kind in ("float", "shape") or (
        lengths_kind in ("over", "negative") and batch_size
    ):
        bad.append("lengths")
    kind, result = outcome(lambda: jaxrnn.unroll(cell, params, xs, lengths=lengths, **options))
    if bad:
        assert kind == "error", f"accepted bad {bad}"
        assert_names(result, "unroll", bad)
        return
    assert kind == "ok", result
    _, ys = result
    expected = (n_steps, *batch, HIDDEN) if time_major else (*batch, n_steps, HIDDEN)
    assert ys.shape == expected and ys.dtype == jnp.float32
    if lengths is not None:  # padded steps are zero
        steps = np.arange(n_steps).reshape((n_steps,) + (1,) * len(batch))
        padded = steps >= lengths[None] if time_major else None
        if not time_major:
            padded = np.arange(n_steps) >= lengths[..., None]
        assert not np.asarray(ys)[padded].any()
    if values == "normal":
        assert bool(jnp.all(jnp.isfinite(ys)))


@settings(PROPERTY, max_examples=20)
@given(
    name=st.sampled_from(sorted(CELLS)),
    batch=st.sampled_from([(1,), (3,), (2, 2)]),
    n_steps=st.sampled_from([1, 4, 5]),
    option=st.sampled_from(
        [
            {},
            {"reverse": True},
            {"remat": 2},
            {"time_major": True},
            {"implementation": "hoisted"},
        ]
    ),
    fill=st.sampled_from([np.nan, np.inf, -np.inf, 1e30]),
    seed=st.integers(0, 2**16),
)
def test_unroll_padding_never_reaches_values_or_gradients(name, batch, n_steps, option, fill, seed):
    # Whatever the padding holds, the outputs, the last carry and the gradients (w.r.t. the params
    # and xs) are those of zeros there: finite, with a zero gradient on the padding.
    cell, params = CELLS[name], PARAMS[name]
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, n_steps + 1, size=batch).astype(np.int32)
    xs = rng.normal(size=(*batch, n_steps, N_X)).astype(np.float32)
    padded = np.arange(n_steps) >= lengths[..., None]  # (*batch, T)
    if option.get("time_major"):
        xs, padded = np.moveaxis(xs, -2, 0), np.moveaxis(padded, -1, 0)

    def loss(params, xs):
        carry, ys = jaxrnn.unroll(cell, params, xs, lengths=lengths, **option)
        total = jnp.sum(ys * ys) + sum(jnp.sum(leaf) for leaf in jax.tree.leaves(carry))
        return total, (carry, ys)

    run = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))

    want = run(params, np.where(padded[..., None], 0.0, xs).astype(np.float32))
    got = run(params, np.where(padded[..., None], fill, xs).astype(np.float32))
    for leaf, want_leaf in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert bool(jnp.all(jnp.isfinite(leaf)))
        np.testing.assert_array_equal(leaf, want_leaf)
    np.testing.assert_array_equal(np.asarray(got[1][1])[padded], 0.0)


@st.composite
def layer_calls(draw):
    layer = draw(st.sampled_from(["bidirectional", "stacked", "dense"]))
    batch = draw(shapes)
    n_steps = draw(st.sampled_from([0, 3]))
    n_x = draw(st.sampled_from([N_X, N_X, 2]))
    dtype = draw(st.sampled_from(DTYPES))
    merge = draw(st.sampled_from(["concat", "concat", "sum", "mean", "product", None, "stack"]))
    return layer, batch, n_steps, n_x, dtype, merge


LAYER_PARAMS = {
    "bidirectional": jaxrnn.bidirectional_init(jaxrnn.gru(), jax.random.key(1), N_X, HIDDEN),
    "stacked": jaxrnn.stacked_init(jaxrnn.gru(), jax.random.key(2), N_X, HIDDEN, num_layers=2),
    "dense": jaxrnn.dense_init(jax.random.key(3), N_X, HIDDEN),
}


@PROPERTY
@given(layer_calls())
def test_layers_right_answer_or_clear_error(call):
    layer, batch, n_steps, n_x, dtype, merge = call
    params = LAYER_PARAMS[layer]
    xs = make_array((*batch, n_steps, n_x), dtype)
    bad = ["xs", "x"] if n_x != N_X or dtype != "float32" else []
    if layer == "dense":
        run = lambda: jaxrnn.dense(params, xs)  # noqa: E731
        width = HIDDEN
    elif layer == "stacked":
        run = lambda: jaxrnn.stacked(jaxrnn.gru(), params, xs)[1]  # noqa: E731
        width = HIDDEN
    else:
        run = lambda: jaxrnn.bidirectional(jaxrnn.gru(), params, xs, merge=merge)[1]  # noqa: E731
        if merge not in ("concat", "sum", "mean", "product", None):
            bad = [*bad, "merge"]  # either may be reported first
        width = 2 * HIDDEN if merge == "concat" else HIDDEN  # None: a (forward, backward) pair
    kind, result = outcome(run)
    if bad:
        assert kind == "error", f"accepted bad {bad}"
        assert_names(result, layer, bad)
        return
    assert kind == "ok", result
    ys = result[0] if isinstance(result, tuple) else result
    assert ys.shape[: len(batch) + 1] == (*batch, n_steps) and ys.shape[-1] == width
    assert bool(jnp.all(jnp.isfinite(ys)))


@st.composite
def loss_calls(draw):
    loss = draw(st.sampled_from(["softmax", "sigmoid"]))
    batch = draw(st.lists(st.integers(0, 3), min_size=0, max_size=2).map(tuple))
    n_steps = draw(st.sampled_from([0, 1, 5]))
    n_classes = draw(st.sampled_from([1, 4]))
    logits_dtype = draw(st.sampled_from(DTYPES))
    labels_kind = draw(
        st.sampled_from(["valid", "valid", "valid", "high", "negative", "float", "shape"])
    )
    lengths_kind = draw(st.sampled_from(["none", "valid", "over", "negative", "float"]))
    reduce_time = draw(st.sampled_from(["mean", "sum", "median"]))
    return loss, batch, n_steps, n_classes, logits_dtype, labels_kind, lengths_kind, reduce_time


@PROPERTY
@given(loss_calls())
def test_losses_right_answer_or_clear_error(call):
    loss, batch, n_steps, n_classes, dtype, labels_kind, lengths_kind, reduce_time = call
    logits = make_array((*batch, n_steps, n_classes), dtype)
    rng = np.random.default_rng(2)
    if loss == "softmax":
        label_shape = (*batch, n_steps)
        labels = {
            "valid": rng.integers(0, n_classes, size=label_shape),
            "high": np.full(label_shape, n_classes),
            "negative": np.full(label_shape, -1),
            "float": np.zeros(label_shape, np.float32),
            "shape": np.zeros((*label_shape, 1), np.int64),
        }[labels_kind]
        fn = jaxrnn.softmax_cross_entropy
        wrong_labels = labels_kind != "valid" and (labels_kind != "high" or labels.size > 0)
        wrong_labels = wrong_labels and (labels_kind not in ("high", "negative") or labels.size)
    else:
        label_shape = (*batch, n_steps, n_classes)
        labels = {
            "valid": rng.integers(0, 2, size=label_shape).astype(np.float32),
            "high": np.full(label_shape, 2.0, np.float32),
            "negative": np.full(label_shape, -0.5, np.float32),
            "float": rng.uniform(size=label_shape).astype(np.float32),  # soft targets: valid
            "shape": np.zeros((*label_shape, 1), np.float32),
        }[labels_kind]
        fn = jaxrnn.sigmoid_cross_entropy
        wrong_labels = labels_kind == "shape" or (
            labels_kind in ("high", "negative") and labels.size > 0
        )
    lengths = make_lengths(lengths_kind, batch, n_steps)

    bad = []
    if dtype not in ("float32", "float64", "float16", "bfloat16"):
        bad.append("logits")
    elif wrong_labels:
        bad.append("labels")
    elif reduce_time not in ("mean", "sum"):
        bad.append("reduce_time")
    elif lengths_kind in ("float",) or (lengths_kind in ("over", "negative") and lengths.size):
        bad.append("lengths")
    kind, result = outcome(lambda: fn(logits, labels, lengths, reduce_time=reduce_time))
    if bad:
        assert kind == "error", f"accepted bad {bad}"
        assert_names(result, fn.__name__, bad)
        return
    assert kind == "ok", result
    assert result.shape == batch
    assert result.dtype == jnp.promote_types(dtype, jnp.float32)
    assert bool(jnp.all(jnp.isfinite(result))) and bool(jnp.all(result >= 0))


@PROPERTY
@given(
    lines=st.lists(st.text(max_size=12), max_size=6),
    level=st.sampled_from(["char", "word", "byte"]),
    probe=st.text(max_size=20),
)
def test_vocabularies_round_trip_or_clear_error(lines, level, probe):
    kind, vocab = outcome(lambda: text.build_vocab(lines, level=level))
    has_tokens = any(t for line in lines for t in (line.split() if level == "word" else line) if t)
    if level == "byte":
        assert kind == "error"
        assert_names(vocab, "build_vocab", ["level"])
        return
    if not has_tokens or all(
        not t.strip() and level == "char" and t == "\n" for t in "".join(lines)
    ):
        if kind == "error":
            assert_names(vocab, "build_vocab", ["texts"])
            return
    assert kind == "ok", vocab
    ids = vocab.encode(probe)
    assert ids.dtype == np.int32 and ((ids >= 0) & (ids < vocab.size)).all()
    known = [t for t in vocab.tokenize(probe)]
    expected = [t if t in vocab.tokens else text.UNK for t in known]
    assert [vocab.tokens[i] for i in ids] == expected  # unknown tokens become ⟨UNK⟩
    assert vocab.decode(vocab.encode(probe)) == vocab.decode(ids)
    kind, message = outcome(lambda: vocab.decode([vocab.size]))
    assert kind == "error"
    assert_names(message, "Vocab.decode", ["ids"])
    again = text.Vocab.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert again.tokens == vocab.tokens


@PROPERTY
@given(
    data=st.one_of(
        st.binary(max_size=64),
        st.text(max_size=64).map(lambda s: s.encode("utf-8")),
        st.text(alphabet="abc\n ", max_size=40).map(str.encode),
    )
)
def test_text_files_read_or_clear_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    path.write_bytes(data)
    kind, result = outcome(lambda: cli.read_corpus_text(str(path), None))
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError:
        decoded = None
    if decoded is None or "\x00" in decoded or not decoded.strip():
        assert kind == "error"
        assert str(path) in result and "expected" in result or "empty" in result, result
        return
    assert kind == "ok" and result == (decoded, "lines")
    kind, corpus = outcome(lambda: make_corpus(decoded))
    if kind == "error":
        assert_names(corpus, "make_corpus", ["text", "texts"])
        n_lines = len([line for line in decoded.splitlines() if line.strip()])
        assert n_lines < 2 or "token" in corpus
        return
    targets, lengths = corpus.train
    assert targets.dtype == np.int32 and (targets < corpus.vocab.size).all()


SAMPLER = lm.LMConfig(vocab_size=6, cell_name="gru", hidden_size=8, embedding_size=4)
SAMPLER_PARAMS = lm.init_lm(jax.random.key(0), SAMPLER)


@PROPERTY
@given(
    num_samples=st.sampled_from([1, 3, 0, -1, 2.5, True]),
    max_len=st.sampled_from([1, 5, 0, -2]),
    temperature=st.sampled_from([0.0, 0.7, 1.0, float("inf"), -1.0, float("nan"), "hot"]),
    top_k=st.sampled_from([None, None, 1, 6, 0, 7, 2.5]),
    eos_id=st.sampled_from([None, 0, 5, 6, -1, 1.5]),
    exclude_ids=st.sampled_from([(), (1,), (0, 1, 2, 3, 4, 5), (9,), (1.5,)]),
    prompt=st.sampled_from([(), (2, 3), (6,), (-1,)]),
)
def test_sampling_right_answer_or_clear_error(
    num_samples, max_len, temperature, top_k, eos_id, exclude_ids, prompt
):
    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    bad = []
    if not is_int(num_samples) or num_samples < 1:
        bad.append("num_samples")
    if not is_int(max_len) or max_len < 1:
        bad.append("max_len")
    if not isinstance(temperature, float) or not temperature >= 0:
        bad.append("temperature")
    if top_k is not None and (not is_int(top_k) or not 1 <= top_k <= 6):
        bad.append("top_k")
    if eos_id is not None and (not is_int(eos_id) or not 0 <= eos_id < 6):
        bad.append("eos_id")
    if any(not is_int(i) or not 0 <= i < 6 for i in exclude_ids) or len(exclude_ids) == 6:
        bad.append("exclude_ids")
    if any(not 0 <= i < 6 for i in prompt):
        bad.append("prompt")
    options = dict(
        num_samples=num_samples,
        max_len=max_len,
        temperature=temperature,
        top_k=top_k,
        eos_id=eos_id,
        exclude_ids=exclude_ids,
        prompt=prompt,
    )
    kind, result = outcome(lambda: lm.sample(SAMPLER_PARAMS, SAMPLER, jax.random.key(0), **options))
    if bad:
        assert kind == "error", f"accepted bad {bad}"
        assert_names(result, "sample", bad)
        return
    assert kind == "ok", result
    ids, lengths = np.asarray(result.ids), np.asarray(result.lengths)
    assert ids.shape == (num_samples, max_len) and lengths.shape == (num_samples,)
    assert ((ids >= 0) & (ids < 6)).all() and ((lengths >= 0) & (lengths <= max_len)).all()
    assert not np.isin(ids[np.arange(max_len) < lengths[:, None]], exclude_ids).any()


@pytest.fixture(scope="module")
def saved_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "good.npz"
    tree = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.ones(4, np.float64)}
    checkpoint.save_checkpoint(path, tree, {"step": 7})
    return path, tree


@PROPERTY
@given(
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4),
    cut=st.one_of(st.none(), st.integers(0, 10**6)),
)
def test_damaged_checkpoints_load_exactly_or_raise_checkpoint_error(
    saved_checkpoint, tmp_path_factory, edits, cut
):
    path, tree = saved_checkpoint
    data = bytearray(path.read_bytes())
    for where, byte in edits:
        data[where % len(data)] = byte
    if cut is not None:
        data = data[: cut % len(data)]
    damaged = tmp_path_factory.mktemp("damaged") / "ckpt.npz"
    damaged.write_bytes(bytes(data))
    try:
        loaded, metadata = checkpoint.load_checkpoint(damaged, tree)
    except checkpoint.CheckpointError as error:
        assert str(damaged) in str(error)
        return
    # a change that zip's CRCs and the header checks let through must not have changed anything
    assert metadata == {"step": 7}
    for key in tree:
        assert loaded[key].dtype == tree[key].dtype
        np.testing.assert_array_equal(loaded[key], tree[key])


@PROPERTY
@given(
    header=st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=8,
    ),
    version=st.sampled_from([None, 1, 2, "1"]),
)
def test_checkpoint_with_any_header_and_bad_leaves_raises_checkpoint_error(
    tmp_path_factory, header, version
):
    path = tmp_path_factory.mktemp("header") / "ckpt.npz"
    if isinstance(header, dict) and version is not None:
        header = {**header, "format_version": version}
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("metadata.json", json.dumps(header))
        archive.writestr("0.npy", b"\x93NUMPY garbage")
    with pytest.raises(checkpoint.CheckpointError, match=re.escape(str(path))):
        checkpoint.load_checkpoint(path, {"w": np.zeros(2, np.float32)})


@PROPERTY
@given(
    shape=st.lists(st.integers(0, 3), max_size=3).map(tuple),
    dtype=st.sampled_from(["float32", "float64", "int32", "float16"]),
    key=st.sampled_from(["w", "v"]),
)
def test_checkpoint_for_another_model_names_the_leaf(saved_checkpoint, shape, dtype, key):
    path, tree = saved_checkpoint
    template = {**tree, key: np.zeros(shape, dtype)}
    if key == "w" and shape == (3, 4) and dtype == "float32":
        loaded, _ = checkpoint.load_checkpoint(path, template)
        np.testing.assert_array_equal(loaded["w"], tree["w"])
        return
    with pytest.raises(checkpoint.CheckpointError, match="different configuration"):
        checkpoint.load_checkpoint(path, template)


LOSS_PARAMS = jaxrnn.rnn().init(jax.random.key(4), N_X, HIDDEN)
OPTIMIZER = jaxrnn.make_optimizer(0.1)


def _mse_loss(params, xs, ys):
    _, hs = jaxrnn.unroll(jaxrnn.rnn(), params, xs)
    return jnp.mean((hs[..., -1, 0] - ys) ** 2)


TRAIN_STEP = jaxrnn.make_train_step(_mse_loss, OPTIMIZER)


@PROPERTY
@given(
    where=st.sampled_from(["xs", "ys", "none"]),
    value=st.sampled_from([np.nan, np.inf, -np.inf]),
    position=st.integers(0, 10**4),
)
def test_train_step_never_applies_non_finite_updates(where, value, position):
    rng = np.random.default_rng(5)
    xs, ys = (
        rng.normal(size=(2, 5, N_X)).astype(np.float32),
        rng.normal(size=(2,)).astype(np.float32),
    )
    if where == "xs":
        xs.flat[position % xs.size] = value
    elif where == "ys":
        ys.flat[position % ys.size] = value
    opt_state = OPTIMIZER.init(LOSS_PARAMS)
    params, _, metrics = TRAIN_STEP(LOSS_PARAMS, opt_state, xs, ys)
    assert bool(metrics.finite) == (where == "none")
    changed = any(
        not np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(LOSS_PARAMS), strict=True)
    )
    assert changed == (where == "none")
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(params))


@settings(PROPERTY, max_examples=12)
@given(
    data=st.one_of(
        st.binary(max_size=40),
        st.text(alphabet="ab\n", min_size=0, max_size=30).map(str.encode),
    )
)
def test_cli_train_on_any_file_trains_or_exits_2_with_one_line(tmp_path_factory, capsys, data):
    folder = tmp_path_factory.mktemp("cli_any")
    (folder / "in.txt").write_bytes(data)
    argv = ["train", str(folder / "in.txt"), "--out", str(folder / "run"), "--hidden", "4"]
    argv += ["--steps", "2", "--batch", "2", "--eval-every", "2", "--sample-every", "0"]
    argv += ["--no-progress", "--ngram", "2"]
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    if code == 0:
        assert (folder / "run" / "checkpoint.npz").is_file()
    else:
        assert code == 2
        assert err.startswith("jaxrnn train: error: ") and err.count("\n") == 1, err
