"""Bidirectional and deep (stacked) RNNs against numpy loops, per-example runs, and PyTorch."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from cells_under_test import CELLS
from jax.test_util import check_grads
from reference import STEPS
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import jaxrnn
from jaxrnn.layers import (
    BidirectionalCarry,
    BidirectionalParams,
    StackedParams,
    bidirectional,
    bidirectional_init,
    stacked,
    stacked_init,
)

torch.set_num_threads(1)

KINDS = ["rnn_tanh", "gru_before", "lstm"]  # the course's three cells
LENGTHS = np.array([7, 3, 0, 1])  # full, partial, empty and one step, over T = 7

# Compiled once per cell, shape and option; an eager unroll compiles its scan on every call.
BIDIRECTIONAL = jax.jit(
    bidirectional, static_argnums=0, static_argnames=("merge", "time_major", "batch_directions")
)
STACKED = jax.jit(
    stacked,
    static_argnums=0,
    static_argnames=("merge", "time_major", "batch_directions", "dropout_rate"),
)
UNROLL = jax.jit(jaxrnn.unroll, static_argnums=0, static_argnames="reverse")


def _perturbed(params, seed):
    """Params with every entry moved by N(0, 0.3²), so that biases are not zero."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda p: p + 0.3 * rng.standard_normal(p.shape).astype(p.dtype), params)


def _bidirectional_setup(cell, n_x=3, n_a=4, batch=4, steps=7, dtype=jnp.float64, seed=0):
    params = bidirectional_init(cell, jax.random.key(seed), n_x, n_a, dtype)
    xs = np.random.default_rng(seed + 1).standard_normal((batch, steps, n_x))
    return _perturbed(params, seed), jnp.asarray(xs, dtype)


def _zeros_carry(cell_name, n_a):
    zeros = np.zeros(n_a)
    return (zeros, zeros) if cell_name == "lstm" else zeros


def _numpy_bidirectional(cell_name, params, xs, lengths):
    """Per example: a forward loop over x⟨1⟩ … x⟨L⟩ and a backward loop over x⟨L⟩ … x⟨1⟩."""
    step, n_a = STEPS[cell_name], params.forward.w_h.shape[0]
    ys_f, ys_b = np.zeros((*xs.shape[:2], n_a)), np.zeros((*xs.shape[:2], n_a))
    last_f, last_b = [], []
    for b, length in enumerate(lengths):
        carry = _zeros_carry(cell_name, n_a)
        for t in range(length):
            carry, ys_f[b, t] = step(params.forward, carry, np.asarray(xs[b, t]))
        last_f.append(carry)
        carry = _zeros_carry(cell_name, n_a)
        for t in reversed(range(length)):
            carry, ys_b[b, t] = step(params.backward, carry, np.asarray(xs[b, t]))
        last_b.append(carry)
    return (last_f, last_b), (ys_f, ys_b)


def _assert_trees_close(got, want, atol):
    """Leaf by leaf, so that an LSTMState may be compared with a plain (h, c) tuple."""
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=0, atol=atol)


# ---------------------------------------------------------------------------------- bidirectional


@pytest.mark.parametrize("kind", KINDS)
def test_bidirectional_matches_numpy_reference(kind):
    cell = CELLS[kind]
    params, xs = _bidirectional_setup(cell)
    last, (ys_f, ys_b) = BIDIRECTIONAL(cell, params, xs, lengths=jnp.asarray(LENGTHS), merge=None)
    (want_f, want_b), (want_ys_f, want_ys_b) = _numpy_bidirectional(kind, params, xs, LENGTHS)

    np.testing.assert_allclose(ys_f, want_ys_f, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ys_b, want_ys_b, rtol=0, atol=1e-12)
    for b in range(len(LENGTHS)):
        _assert_trees_close(jax.tree.map(lambda leaf, b=b: leaf[b], last.forward), want_f[b], 1e-12)
        _assert_trees_close(
            jax.tree.map(lambda leaf, b=b: leaf[b], last.backward), want_b[b], 1e-12
        )


@pytest.mark.parametrize(
    ("kind", "fused"), [("rnn_tanh", False), ("gru_before", False), ("lstm", False), ("lstm", True)]
)
def test_bidirectional_padded_batch_equals_each_example_alone(kind, fused):
    cell = CELLS[kind]
    params, xs = _bidirectional_setup(cell)
    padding = jnp.asarray(np.arange(xs.shape[1]) >= LENGTHS[:, None])[..., None]
    xs = jnp.where(padding, 1e3, xs)  # garbage past each length must not leak into any output
    last, ys = BIDIRECTIONAL(cell, params, xs, lengths=jnp.asarray(LENGTHS), batch_directions=fused)

    for b, length in enumerate(LENGTHS):
        alone_last, alone_ys = BIDIRECTIONAL(
            cell, params, xs[b, :length], batch_directions=fused
        )  # no batch
        example_last = jax.tree.map(lambda leaf, b=b: leaf[b], last)
        _assert_trees_close(example_last, alone_last, 1e-12)
        np.testing.assert_allclose(ys[b, :length], alone_ys, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(ys[b, length:], 0.0)
    zeros = cell.init_carry(params.forward)
    _assert_trees_close(jax.tree.map(lambda leaf: leaf[2], last), (zeros, zeros), 0.0)  # L = 0


def test_bidirectional_merge_modes_match_formulas():
    cell = CELLS["gru_before"]
    params, xs = _bidirectional_setup(cell)
    lengths = jnp.asarray(LENGTHS)
    _, (f, b) = BIDIRECTIONAL(cell, params, xs, lengths=lengths, merge=None)
    f, b = np.asarray(f), np.asarray(b)
    formulas = {
        "concat": np.concatenate([f, b], axis=-1),  # [a→⟨t⟩, a←⟨t⟩]
        "sum": f + b,
        "mean": (f + b) / 2,
        "product": f * b,
    }
    for merge, want in formulas.items():
        last, ys = BIDIRECTIONAL(cell, params, xs, lengths=lengths, merge=merge)
        np.testing.assert_allclose(ys, want, rtol=0, atol=1e-14, err_msg=merge)
        assert isinstance(last, BidirectionalCarry)
    assert formulas["concat"].shape == (4, 7, 8)


@pytest.mark.parametrize(
    ("lengths", "time_major"), [(LENGTHS, False), (None, True)], ids=["lengths", "full-time-major"]
)
def test_bidirectional_fused_matches_two_scans_values_and_grads(lengths, time_major):
    cell = CELLS["lstm"]
    params, xs = _bidirectional_setup(cell)
    carry = _perturbed(
        (cell.init_carry(params.forward, (4,)), cell.init_carry(params.backward, (4,))), seed=5
    )
    if time_major:
        xs = jnp.swapaxes(xs, 0, 1)
    lengths = None if lengths is None else jnp.asarray(lengths)

    def run(params, xs, fused):
        options = dict(lengths=lengths, carry=carry, time_major=time_major)
        return BIDIRECTIONAL(cell, params, xs, batch_directions=fused, **options)

    def loss(params, xs, fused):
        last, ys = run(params, xs, fused)
        weights = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
        return jnp.sum(weights * ys) + sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree.leaves(last))

    outputs = {fused: run(params, xs, fused) for fused in (False, True)}
    _assert_trees_close(outputs[True], outputs[False], 1e-13)
    grad = jax.jit(jax.grad(loss, argnums=(0, 1)), static_argnums=2)
    _assert_trees_close(grad(params, xs, True), grad(params, xs, False), 1e-12)


def test_bidirectional_time_major_matches_batch_major():
    cell = CELLS["rnn_tanh"]
    params, xs = _bidirectional_setup(cell)
    lengths = jnp.asarray(LENGTHS)
    last, ys = BIDIRECTIONAL(cell, params, xs, lengths=lengths)
    last_tm, ys_tm = BIDIRECTIONAL(
        cell, params, jnp.swapaxes(xs, 0, 1), lengths=lengths, time_major=True
    )
    _assert_trees_close(last_tm, last, 1e-14)
    np.testing.assert_allclose(jnp.swapaxes(ys_tm, 0, 1), ys, rtol=0, atol=1e-14)


# ------------------------------------------------------------------------------------------ stacked


@pytest.mark.parametrize("is_bidirectional", [False, True], ids=["uni", "bi"])
def test_stacked_matches_layer_by_layer_unroll(is_bidirectional):
    cell = jaxrnn.gru()
    params = stacked_init(
        cell, jax.random.key(0), 3, 4, 2, bidirectional=is_bidirectional, dtype=jnp.float64
    )
    params = _perturbed(params, seed=1)
    xs = jnp.asarray(np.random.default_rng(2).standard_normal((4, 7, 3)))
    lengths = jnp.asarray(LENGTHS)

    want_last, layer_input = [], xs
    for layer in params.layers:
        if is_bidirectional:
            last_f, ys_f = UNROLL(cell, layer.forward, layer_input, lengths=lengths)
            last_b, ys_b = UNROLL(cell, layer.backward, layer_input, lengths=lengths, reverse=True)
            want_last.append((last_f, last_b))
            layer_input = jnp.concatenate([ys_f, ys_b], axis=-1)
        else:
            last, layer_input = UNROLL(cell, layer, layer_input, lengths=lengths)
            want_last.append(last)

    got_last, ys = STACKED(cell, params, xs, lengths=lengths)
    assert len(got_last) == 2
    _assert_trees_close(tuple(got_last), tuple(want_last), 1e-13)
    np.testing.assert_allclose(ys, layer_input, rtol=0, atol=1e-13)
    assert ys.shape == (4, 7, 8 if is_bidirectional else 4)


@pytest.mark.parametrize("fused", [False, True])
def test_stacked_bidirectional_lstm_matches_torch_packed(fused):
    torch.manual_seed(0)
    module = torch.nn.LSTM(4, 5, num_layers=2, bidirectional=True, batch_first=True)
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-0.5, 0.5)
    x = np.random.default_rng(1).standard_normal((3, 8, 4)).astype(np.float32)
    lengths = np.array([5, 8, 1])  # unsorted: PyTorch sorts and restores the order itself
    h0, c0 = np.random.default_rng(2).standard_normal((2, 4, 3, 5)).astype(np.float32)
    packed = pack_padded_sequence(
        torch.from_numpy(x), torch.from_numpy(lengths), batch_first=True, enforce_sorted=False
    )
    with torch.no_grad():
        out, (h_n, c_n) = module(packed, (torch.from_numpy(h0), torch.from_numpy(c0)))
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=8)

    state_dict = module.state_dict()
    params = StackedParams(
        tuple(
            BidirectionalParams(
                jaxrnn.interop.lstm_params_from_torch(state_dict, layer=layer),
                jaxrnn.interop.lstm_params_from_torch(state_dict, layer=layer, reverse=True),
            )
            for layer in range(2)
        )
    )
    carry = tuple(  # PyTorch's h0[2 l + d] is layer l, direction d (0 forward, 1 backward)
        BidirectionalCarry(
            *(jaxrnn.LSTMState(h0[2 * layer + d], c0[2 * layer + d]) for d in (0, 1))
        )
        for layer in range(2)
    )
    last, ys = STACKED(
        jaxrnn.lstm(), params, jnp.asarray(x), lengths=lengths, carry=carry, batch_directions=fused
    )

    np.testing.assert_allclose(ys, out.numpy(), rtol=0, atol=1e-5)
    for layer in range(2):
        for direction in range(2):
            got = last[layer][direction]
            np.testing.assert_allclose(got.h, h_n[2 * layer + direction], rtol=0, atol=1e-5)
            np.testing.assert_allclose(got.c, c_n[2 * layer + direction], rtol=0, atol=1e-5)


def _dropout_setup():
    cell = jaxrnn.lstm()
    params = stacked_init(cell, jax.random.key(0), 3, 6, 2, bidirectional=True)
    xs = jnp.asarray(np.random.default_rng(1).standard_normal((2, 5, 3)), jnp.float32)
    return cell, params, xs, jnp.array([5, 3])


def test_stacked_dropout_same_key_gives_same_outputs():
    cell, params, xs, lengths = _dropout_setup()
    run = functools.partial(STACKED, cell, lengths=lengths, dropout_rate=0.5)
    first = run(params, xs, dropout_key=jax.random.key(7))
    _assert_trees_close(run(params, xs, dropout_key=jax.random.key(7)), first, 0.0)
    _, other = run(params, xs, dropout_key=jax.random.key(8))
    assert not np.allclose(other, first[1])


def test_stacked_dropout_without_key_equals_rate_zero():
    cell, params, xs, lengths = _dropout_setup()
    off = STACKED(cell, params, xs, lengths=lengths, dropout_rate=0.5, dropout_key=None)
    zero = STACKED(cell, params, xs, lengths=lengths, dropout_key=jax.random.key(3))
    plain = STACKED(cell, params, xs, lengths=lengths)
    _assert_trees_close(off, plain, 0.0)
    _assert_trees_close(zero, plain, 0.0)


def _numpy_mix32(x):
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x21F0AAAD)
    x = x ^ (x >> np.uint32(15))
    x = x * np.uint32(0x735A2D97)
    return x ^ (x >> np.uint32(15))


def _numpy_dropout_mask(key, rate, shape):
    """dropout_mask's documented rule, in numpy's wrapping uint32 arithmetic."""
    s0, s1 = np.asarray(jax.random.bits(key, (2,), jnp.uint32))
    index = np.arange(int(np.prod(shape)), dtype=np.uint32).reshape(shape)
    with np.errstate(over="ignore"):
        hashed = _numpy_mix32(_numpy_mix32(index ^ s0) ^ s1)
    return hashed >= np.uint32(round(rate * 2**32))


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_dropout_mask_follows_its_rule_and_keeps_one_minus_rate(rate):
    key = jax.random.key(3)
    mask = np.asarray(jaxrnn.layers.dropout_mask(key, rate, (200, 500)))
    np.testing.assert_array_equal(mask, _numpy_dropout_mask(key, rate, (200, 500)))
    assert abs(mask.mean() - (1 - rate)) < 4 * np.sqrt(rate * (1 - rate) / mask.size)


def test_dropout_masks_of_different_keys_are_uncorrelated():
    """Steps' keys from fold_in, as training makes them: no two masks of 4096 agree more than
    chance allows (a correlation of 5 standard errors)."""
    masks = np.stack(
        [
            np.asarray(
                jaxrnn.layers.dropout_mask(jax.random.fold_in(jax.random.key(1), s), 0.5, (4096,))
            )
            for s in range(64)
        ]
    ).astype(float)
    corr = np.corrcoef(masks)
    np.fill_diagonal(corr, 0.0)
    assert np.abs(corr).max() < 5 / np.sqrt(4096)
    assert 0.24 < (masks[:, :-1] * masks[:, 1:]).mean() < 0.26  # neighbours independent


def test_dropout_scales_the_kept_and_zeroes_the_rest():
    key, x = jax.random.key(4), jax.random.normal(jax.random.key(5), (8, 50), jnp.float32)
    keep = _numpy_dropout_mask(key, 0.3, x.shape)
    want = np.where(keep, np.asarray(x) / 0.7, 0.0)
    np.testing.assert_allclose(jaxrnn.layers.dropout(key, 0.3, x), want, rtol=1e-6, atol=0)
    assert jaxrnn.layers.dropout(None, 0.3, x) is x


@pytest.mark.parametrize("rate", [1.0, -0.1, 1.5, "0.1", True])
def test_dropout_and_its_mask_name_a_rate_outside_zero_to_one(rate):
    key, x = jax.random.key(6), jnp.ones((3, 4), jnp.float32)
    expected = r"expected rate a number in \[0, 1\)"
    with pytest.raises(jaxrnn.InputError, match="dropout_mask: " + expected):
        jaxrnn.layers.dropout_mask(key, rate, x.shape)
    with pytest.raises(jaxrnn.InputError, match="dropout: " + expected):
        jaxrnn.layers.dropout(key, rate, x)


def test_stacked_dropout_zeroes_and_scales_the_layer_inputs():
    """Layer 1 reads where(keep, a^[0] / (1 − rate), 0), keep ~ Bernoulli(1 − rate), per unit."""
    cell, params, xs, lengths = _dropout_setup()
    rate, key = 0.25, jax.random.key(11)
    last, ys = STACKED(cell, params, xs, lengths=lengths, dropout_rate=rate, dropout_key=key)

    (layer_key,) = jax.random.split(key, 1)  # the documented key of layer 1's input
    _, below = BIDIRECTIONAL(cell, params.layers[0], xs, lengths=lengths)
    keep = _numpy_dropout_mask(layer_key, rate, below.shape)
    assert 0.6 < keep.mean() < 0.9  # about 1 − rate of 60 units kept
    dropped = np.where(keep, np.asarray(below) / (1 - rate), 0.0).astype(np.float32)
    want_last, want_ys = BIDIRECTIONAL(
        cell, params.layers[1], jnp.asarray(dropped), lengths=lengths
    )

    np.testing.assert_allclose(ys, want_ys, rtol=0, atol=1e-6)
    _assert_trees_close(last[1], want_last, 1e-6)
    _, undropped = STACKED(cell, params, xs, lengths=lengths)
    assert np.abs(ys - undropped).max() > 1e-2
    np.testing.assert_array_equal(ys[1, 3:], 0.0)  # padded steps stay zero


def test_stacked_grads_finite_and_match_finite_differences():
    cell = jaxrnn.lstm()
    params = _perturbed(
        stacked_init(cell, jax.random.key(0), 2, 2, 2, bidirectional=True, dtype=jnp.float64), 1
    )
    xs = jnp.asarray(np.random.default_rng(2).standard_normal((2, 3, 2)))
    lengths = jnp.array([3, 2])

    def loss(params, xs):
        last, ys = STACKED(cell, params, xs, lengths=lengths, merge="sum")
        return jnp.sum(jnp.sin(ys)) + jnp.sum(last[-1].backward.c ** 2)

    grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, xs)
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(grads))
    assert any(np.abs(leaf).max() > 0 for leaf in jax.tree.leaves(grads[0]))
    check_grads(jax.jit(loss), (params, xs), order=1, modes=["rev"])


# ----------------------------------------------------------------------------------------- errors


def test_errors_bidirectional_unknown_merge():
    cell = CELLS["rnn_tanh"]
    params, xs = _bidirectional_setup(cell)
    message = r"bidirectional: expected merge 'concat', 'sum', 'mean', 'product' or None, got 'max'"
    with pytest.raises(jaxrnn.InputError, match=message):
        bidirectional(cell, params, xs, merge="max")
    with pytest.raises(jaxrnn.InputError, match=r"stacked: expected merge .* got 'ave'"):
        stacked(cell, StackedParams((params,)), xs, merge="ave")


def test_errors_wrong_input_size():
    cell = CELLS["gru_before"]
    params, _ = _bidirectional_setup(cell)
    xs = jnp.ones((4, 7, 5))
    message = r"expected xs of shape \(4, 7, 3\), got \(4, 7, 5\).*params expect input_size=3"
    with pytest.raises(jaxrnn.InputError, match="bidirectional: " + message):
        bidirectional(cell, params, xs)
    with pytest.raises(jaxrnn.InputError, match="stacked: " + message):
        stacked(cell, StackedParams((params,)), xs)


def test_errors_lengths_wrong_shape():
    cell = CELLS["lstm"]
    params, xs = _bidirectional_setup(cell)
    message = r"expected lengths of shape \(4,\), got \(3,\); lengths has one entry per example"
    for fused in (False, True):
        with pytest.raises(jaxrnn.InputError, match="bidirectional: " + message):
            bidirectional(cell, params, xs, lengths=jnp.array([1, 2, 3]), batch_directions=fused)
    with pytest.raises(jaxrnn.InputError, match="stacked: " + message):
        stacked(cell, StackedParams((params,)), xs, lengths=jnp.array([1, 2, 3]))


@pytest.mark.parametrize("num_layers", [0, -1, 1.5])
def test_errors_stacked_init_num_layers(num_layers):
    with pytest.raises(
        jaxrnn.InputError,
        match=f"stacked_init: expected num_layers to be a positive int, got {num_layers}",
    ):
        stacked_init(jaxrnn.rnn(), jax.random.key(0), 3, 4, num_layers)


def test_errors_stacked_layers_do_not_fit():
    cell = jaxrnn.rnn()
    bottom = bidirectional_init(cell, jax.random.key(0), 3, 4)  # passes up 2H = 8 features
    top = cell.init(jax.random.key(1), 4, 4)
    with pytest.raises(
        jaxrnn.InputError,
        match=r"stacked: expected params.layers\[1\] with input_size=8 \(the outputs of layer 0\)"
        r", got input_size=4",
    ):
        stacked(cell, StackedParams((bottom, top)), jnp.ones((2, 5, 3), jnp.float32))
    with pytest.raises(jaxrnn.InputError, match=r"stacked: expected dropout_rate .* got 1.0"):
        stacked(cell, StackedParams((bottom,)), jnp.ones((2, 5, 3), jnp.float32), dropout_rate=1.0)


# ------------------------------------------------------------------------------ the deep cell


@pytest.mark.parametrize("options", [{}, {"reverse": True}, {"lengths": jnp.array([7, 3, 0])}])
def test_deep_cell_unroll_is_the_scan_of_its_step_and_stacked(options):
    cell = jaxrnn.layers.deep(jaxrnn.gru(), 3)
    params = cell.init(jax.random.key(0), 3, 5, jnp.float64)
    xs = jnp.asarray(np.random.default_rng(0).normal(size=(3, 7, 3)))

    def loss(params, implementation):
        last, ys = jaxrnn.unroll(cell, params, xs, implementation=implementation, **options)
        return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(last))

    assert jaxrnn.kernels.available(cell) == ("scan", "layerwise")
    value_and_grad = jax.jit(jax.value_and_grad(loss), static_argnums=1)
    want = value_and_grad(params, "scan")
    for implementation in (None, "layerwise"):
        _assert_trees_close(value_and_grad(params, implementation), want, 1e-12)
    by_layers = jaxrnn.stacked(jaxrnn.gru(), params, xs, **options)
    _assert_trees_close(by_layers, jaxrnn.unroll(cell, params, xs, **options), 1e-12)


def test_deep_cell_step_runs_every_layer_once():
    inner = jaxrnn.lstm()
    cell = jaxrnn.layers.deep(inner, 2)
    params = cell.init(jax.random.key(1), 3, 4)
    x = jnp.ones(3, jnp.float32)
    carry, y = cell.step(params, cell.init_carry(params), x)
    bottom, h = inner.step(params.layers[0], inner.init_carry(params.layers[0]), x)
    top, want = inner.step(params.layers[1], inner.init_carry(params.layers[1]), h)
    _assert_trees_close((carry, y), ((bottom, top), want), 0.0)


def test_deep_cell_refuses_a_bidirectional_layer():
    cell = jaxrnn.layers.deep(jaxrnn.gru(), 1)
    params = jaxrnn.stacked_init(jaxrnn.gru(), jax.random.key(0), 3, 4, 1, bidirectional=True)
    with pytest.raises(jaxrnn.InputError, match=r"expected unidirectional layers, got Bidir"):
        cell.step(params, None, jnp.ones(3, jnp.float32))
