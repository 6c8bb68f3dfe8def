"""Flax's recurrent cells (linen and NNX), given the same weights, compute what jaxrnn computes."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxrnn

ATOL = 1e-5  # float32 throughout
B, T, D, H = 3, 6, 4, 5

# name -> (jaxrnn cell name, jaxrnn cell, linen cell class, nnx cell class)
CELLS = {
    "lstm": ("lstm", jaxrnn.lstm(), nn.LSTMCell, nnx.LSTMCell),
    "optimized_lstm": ("lstm", jaxrnn.lstm(), nn.OptimizedLSTMCell, nnx.OptimizedLSTMCell),
    "gru": ("gru", jaxrnn.gru(reset="after"), nn.GRUCell, nnx.GRUCell),
    "simple": ("rnn", jaxrnn.rnn("tanh"), nn.SimpleCell, nnx.SimpleCell),
}


def _uniform(shape, seed):
    return np.random.default_rng(seed).uniform(-0.5, 0.5, shape).astype(np.float32)


def _xs(seed=1):
    return jnp.asarray(np.random.default_rng(seed).standard_normal((B, T, D)), jnp.float32)


def _randomized(tree, seed):
    """Every leaf replaced by uniform(−0.5, 0.5) values: non-zero biases everywhere."""
    leaves, treedef = jax.tree.flatten(tree)
    return jax.tree.unflatten(
        treedef, [jnp.asarray(_uniform(leaf.shape, seed + k)) for k, leaf in enumerate(leaves)]
    )


def _flax_carry(cell_name, seed=7):
    h = jnp.asarray(_uniform((B, H), seed))
    return (jnp.asarray(_uniform((B, H), seed + 1)), h) if cell_name == "lstm" else h


def _to_jaxrnn_carry(cell_name, carry):
    return jaxrnn.interop.lstm_state_from_flax(carry) if cell_name == "lstm" else carry


def _run_flax(step, carry, xs):
    """The plain loop over time: carry, y = step(carry, x⟨t⟩)."""
    ys = []
    for t in range(xs.shape[1]):
        carry, y = step(carry, xs[:, t])
        ys.append(y)
    return carry, jnp.stack(ys, axis=1)


def _assert_close(got, want):
    jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=0, atol=ATOL), got, want)


def _linen_variables(name, seed=0):
    cell_name, _, linen_cls, _ = CELLS[name]
    flax_cell = linen_cls(features=H)
    variables = flax_cell.init(jax.random.key(0), _flax_carry(cell_name), _xs()[:, 0])
    return flax_cell, _randomized(variables, seed)


def _nnx_cell(name, seed=0):
    cell_name, _, _, nnx_cls = CELLS[name]
    flax_cell = nnx_cls(D, H, rngs=nnx.Rngs(0))
    nnx.update(flax_cell, _randomized(nnx.state(flax_cell, nnx.Param), seed))
    return flax_cell


# ------------------------------------------------------------------------------------------ linen


@pytest.mark.parametrize("name", CELLS)
def test_linen_outputs_and_final_carry_match(name):
    cell_name, cell, _, _ = CELLS[name]
    flax_cell, variables = _linen_variables(name)
    xs, carry0 = _xs(), _flax_carry(cell_name)
    want_carry, want_ys = _run_flax(lambda c, x: flax_cell.apply(variables, c, x), carry0, xs)

    params = jaxrnn.interop.params_from_linen(variables, cell_name)
    last, ys = jaxrnn.unroll(cell, params, xs, _to_jaxrnn_carry(cell_name, carry0))
    np.testing.assert_allclose(ys, want_ys, rtol=0, atol=ATOL)
    _assert_close(last, _to_jaxrnn_carry(cell_name, want_carry))


@pytest.mark.parametrize("name", CELLS)
def test_linen_params_round_trip_exactly(name):
    cell_name = CELLS[name][0]
    _, variables = _linen_variables(name)
    back = jaxrnn.interop.params_to_linen(
        jaxrnn.interop.params_from_linen(variables["params"], cell_name)
    )
    assert jax.tree.structure(back) == jax.tree.structure(variables)
    jax.tree.map(np.testing.assert_array_equal, back, variables)


@pytest.mark.parametrize("name", CELLS)
def test_linen_from_jaxrnn_params_with_both_biases_match(name):
    """jaxrnn params with b_x ≠ 0 and b_h ≠ 0 (as from PyTorch) folded into Flax's one bias."""
    cell_name, cell, linen_cls, _ = CELLS[name]
    params = _randomized(cell.init(jax.random.key(2), D, H), seed=20)
    xs, carry0 = _xs(), _flax_carry(cell_name)
    want_last, want_ys = jaxrnn.unroll(cell, params, xs, _to_jaxrnn_carry(cell_name, carry0))

    variables = jaxrnn.interop.params_to_linen(params)
    flax_cell = linen_cls(features=H)
    last, ys = _run_flax(lambda c, x: flax_cell.apply(variables, c, x), carry0, xs)
    np.testing.assert_allclose(ys, want_ys, rtol=0, atol=ATOL)
    _assert_close(_to_jaxrnn_carry(cell_name, last), want_last)


# -------------------------------------------------------------------------------------------- nnx


@pytest.mark.parametrize("name", CELLS)
def test_nnx_outputs_and_final_carry_match(name):
    cell_name, cell, _, _ = CELLS[name]
    flax_cell = _nnx_cell(name)
    xs, carry0 = _xs(), _flax_carry(cell_name)
    want_carry, want_ys = _run_flax(flax_cell, carry0, xs)

    params = jaxrnn.interop.params_from_nnx(flax_cell)
    last, ys = jaxrnn.unroll(cell, params, xs, _to_jaxrnn_carry(cell_name, carry0))
    np.testing.assert_allclose(ys, want_ys, rtol=0, atol=ATOL)
    _assert_close(last, _to_jaxrnn_carry(cell_name, want_carry))


@pytest.mark.parametrize("name", CELLS)
def test_nnx_params_round_trip_exactly(name):
    flax_cell = _nnx_cell(name)
    fresh = CELLS[name][3](D, H, rngs=nnx.Rngs(5))
    back = jaxrnn.interop.params_to_nnx(jaxrnn.interop.params_from_nnx(flax_cell), fresh)
    assert back is fresh
    want, got = nnx.state(flax_cell, nnx.Param), nnx.state(fresh, nnx.Param)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    jax.tree.map(np.testing.assert_array_equal, got, want)


@pytest.mark.parametrize("name", CELLS)
def test_nnx_from_jaxrnn_params_match(name):
    cell_name, cell, _, nnx_cls = CELLS[name]
    params = _randomized(cell.init(jax.random.key(3), D, H), seed=30)
    if cell_name == "gru":  # nnx.GRUCell has no recurrent-side bias for the candidate
        params = params._replace(b_h=params.b_h.at[2 * H :].set(0.0))
    xs, carry0 = _xs(), _flax_carry(cell_name)
    want_last, want_ys = jaxrnn.unroll(cell, params, xs, _to_jaxrnn_carry(cell_name, carry0))

    flax_cell = jaxrnn.interop.params_to_nnx(params, nnx_cls(D, H, rngs=nnx.Rngs(0)))
    last, ys = _run_flax(flax_cell, carry0, xs)
    np.testing.assert_allclose(ys, want_ys, rtol=0, atol=ATOL)
    _assert_close(_to_jaxrnn_carry(cell_name, last), want_last)


def test_nnx_and_linen_lstm_share_their_params():
    """nnx.LSTMCell -> jaxrnn -> linen LSTMCell: the same cell in both Flax APIs."""
    flax_cell = _nnx_cell("lstm")
    variables = jaxrnn.interop.params_to_linen(jaxrnn.interop.params_from_nnx(flax_cell))
    xs, carry0 = _xs(), _flax_carry("lstm")
    _, want = _run_flax(flax_cell, carry0, xs)
    _, got = _run_flax(lambda c, x: nn.LSTMCell(H).apply(variables, c, x), carry0, xs)
    np.testing.assert_allclose(got, want, rtol=0, atol=ATOL)


# ------------------------------------------------------------------------------ carries, errors


def test_lstm_state_converters_swap_h_and_c():
    c, h = jnp.zeros((2, 3)), jnp.ones((2, 3))
    state = jaxrnn.interop.lstm_state_from_flax((c, h))
    assert isinstance(state, jaxrnn.LSTMState)
    np.testing.assert_array_equal(state.h, h)
    np.testing.assert_array_equal(state.c, c)
    back = jaxrnn.interop.lstm_state_to_flax(state)
    np.testing.assert_array_equal(back[0], c)
    np.testing.assert_array_equal(back[1], h)


def test_flax_converters_reject_bad_input():
    _, lstm_variables = _linen_variables("lstm")
    with pytest.raises(jaxrnn.InputError, match=r"flax.linen GRUCell \(cell='gru'\), with"):
        jaxrnn.interop.params_from_linen(lstm_variables, "gru")
    with pytest.raises(jaxrnn.InputError, match="expected cell 'lstm', 'gru' or 'rnn'"):
        jaxrnn.interop.params_from_linen(lstm_variables, "lstm_cell")
    bad = jax.tree.map(lambda a: a, lstm_variables)
    bad["params"]["hf"]["kernel"] = jnp.zeros((H, H + 1))
    with pytest.raises(jaxrnn.InputError, match=r"params\['hf'\].kernel of shape \(5, 5\)"):
        jaxrnn.interop.params_from_linen(bad, "lstm")

    gru_params = jaxrnn.interop.params_from_linen(_linen_variables("gru")[1], "gru")  # b_hn ≠ 0
    with pytest.raises(jaxrnn.InputError, match=r"params.b_h\[10:15\] .* to be zero"):
        jaxrnn.interop.params_to_nnx(gru_params, nnx.GRUCell(D, H, rngs=nnx.Rngs(0)))
    with pytest.raises(
        jaxrnn.InputError, match="expected a flax.nnx GRUCell for ResetAfterGRUParams, got"
    ):
        jaxrnn.interop.params_to_nnx(gru_params, nnx.LSTMCell(D, H, rngs=nnx.Rngs(0)))
    lstm_params = jaxrnn.lstm().init(jax.random.key(0), D, H)
    with pytest.raises(jaxrnn.InputError, match=r"module.dense_i.kernel of shape \(4, 20\) .* got"):
        jaxrnn.interop.params_to_nnx(lstm_params, nnx.OptimizedLSTMCell(D + 1, H, rngs=nnx.Rngs(0)))
    with pytest.raises(jaxrnn.InputError, match="residual=False"):
        jaxrnn.interop.params_from_nnx(nnx.SimpleCell(D, H, residual=True, rngs=nnx.Rngs(0)))
    with pytest.raises(jaxrnn.InputError, match="flax.nnx LSTMCell, .* got Linear"):
        jaxrnn.interop.params_from_nnx(nnx.Linear(D, H, rngs=nnx.Rngs(0)))
    with pytest.raises(jaxrnn.InputError, match="simplified GRU has no Flax cell"):
        jaxrnn.interop.params_to_linen(jaxrnn.simplified_gru().init(jax.random.key(0), D, H))
    with pytest.raises(jaxrnn.InputError, match="got an LSTMState"):
        jaxrnn.interop.lstm_state_from_flax(jaxrnn.LSTMState(jnp.zeros(3), jnp.ones(3)))
    with pytest.raises(jaxrnn.InputError, match=r"expected state to be an LSTMState\(h, c\)"):
        jaxrnn.interop.lstm_state_to_flax((jnp.zeros(3), jnp.ones(3)))
