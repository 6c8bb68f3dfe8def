"""One step of every cell: against the numpy reference, the stacked form, init, batching, jit."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cells_under_test import CELLS, NAMES
from reference import STEPS, relu

import jaxrnn
from jaxrnn import LSTMState

GATES = {
    "rnn_tanh": 1,
    "rnn_relu": 1,
    "simplified_gru": 2,
    "gru_before": 3,
    "gru_after": 3,
    "lstm": 4,
    "lstm_peephole": 4,
}

# float64 agrees with the float64 reference up to rounding of a few ops; float32 inputs and params
# are exact in float64, so float32 differs from the reference by float32 rounding (eps ≈ 1.2e-7)
# accumulated over a few matmul terms and transcendental functions.
TOL = {
    jnp.float64: {"rtol": 1e-12, "atol": 1e-12},
    jnp.float32: {"rtol": 1e-5, "atol": 1e-5},
}
DTYPES = [jnp.float64, jnp.float32]


def random_params(name, n_x, n_a, dtype=jnp.float64, seed=0):
    # init leaves biases and peepholes zero or constant; random values make every term count.
    # eval_shape gives init's structure (peephole or None) without compiling it.
    init = functools.partial(CELLS[name].init, jax.random.key(seed), n_x, n_a, dtype)
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda p: jnp.asarray(rng.normal(0.0, 0.5, p.shape), dtype), jax.eval_shape(init)
    )


def random_carry(name, batch_shape, n_a, dtype, rng):
    h = jnp.asarray(rng.normal(0.0, 1.0, (*batch_shape, n_a)), dtype)
    if name.startswith("lstm"):
        return LSTMState(h, jnp.asarray(rng.normal(0.0, 1.0, h.shape), dtype))
    return h


def to_numpy(carry):
    """The library's carry in the reference's form: an array, or (h, c) for the LSTM."""
    if isinstance(carry, LSTMState):
        return (np.asarray(carry.h), np.asarray(carry.c))
    return np.asarray(carry)


def index(tree, idx):
    return jax.tree.map(lambda leaf: leaf[idx], tree)


# ------------------------------------------------------------------------------ against reference


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_step_matches_reference(name, dtype):
    cell, rng = CELLS[name], np.random.default_rng(1)
    params = random_params(name, 4, 5, dtype)
    carry = random_carry(name, (), 5, dtype, rng)
    x = jnp.asarray(rng.normal(0.0, 1.0, 4), dtype)

    got_carry, got_y = cell.step(params, carry, x)
    want_carry, want_y = STEPS[name](params, to_numpy(carry), x)

    assert got_y.dtype == dtype
    assert jax.tree.structure(got_carry) == jax.tree.structure(carry)
    np.testing.assert_allclose(to_numpy(got_carry), want_carry, **TOL[dtype])
    np.testing.assert_allclose(got_y, want_y, **TOL[dtype])


@pytest.mark.parametrize(
    "one, other",
    [("rnn_tanh", "rnn_relu"), ("gru_before", "gru_after"), ("lstm", "lstm_peephole")],
)
def test_reference_variants_differ(one, other):
    # Otherwise test_step_matches_reference could not tell a cell from its sibling variant.
    params = random_params("lstm_peephole" if one == "lstm" else one, 4, 5)
    rng = np.random.default_rng(2)
    carry = to_numpy(random_carry(one, (), 5, jnp.float64, rng))
    x = rng.normal(0.0, 1.0, 4)
    _, y_one = STEPS[one](params, carry, x)
    _, y_other = STEPS[other](params, carry, x)
    assert np.max(np.abs(y_one - y_other)) > 1e-3


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_rnn_step_equals_stacked_form(activation):
    n_x, n_a, m = 4, 5, 3
    params = random_params(f"rnn_{activation}", n_x, n_a)
    rng = np.random.default_rng(3)
    a_prev, x = rng.normal(0.0, 1.0, (m, n_a)), rng.normal(0.0, 1.0, (m, n_x))

    # the course's matrices act on column vectors; examples are the m columns
    W_aa, W_ax = np.asarray(params.w_h).T, np.asarray(params.w_x).T  # (n_a, n_a), (n_a, n_x)
    W_a = np.concatenate([W_aa, W_ax], axis=1)  # [W_aa | W_ax], (n_a, n_a + n_x)
    b_a = np.asarray(params.b_x) + np.asarray(params.b_h)
    g = np.tanh if activation == "tanh" else relu
    want = g(W_a @ np.concatenate([a_prev.T, x.T], axis=0) + b_a[:, None])  # (n_a, m)

    carry, y = jaxrnn.rnn(activation).step(params, jnp.asarray(a_prev), jnp.asarray(x))
    np.testing.assert_allclose(y, want.T, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(carry, y)


@pytest.mark.parametrize("name", ["lstm", "lstm_peephole"])
def test_lstm_step_uses_peephole_of_params(name):
    # The step follows params.peephole whichever lstm() built it; zero peepholes are no peepholes.
    params = random_params("lstm_peephole", 4, 5)
    rng = np.random.default_rng(4)
    carry, x = random_carry("lstm", (), 5, jnp.float64, rng), jnp.asarray(rng.normal(0, 1, 4))

    _, y_with = CELLS[name].step(params, carry, x)
    _, want_with = STEPS["lstm_peephole"](params, to_numpy(carry), x)
    np.testing.assert_allclose(y_with, want_with, rtol=1e-12, atol=1e-12)

    _, y_zero = CELLS[name].step(params._replace(peephole=jnp.zeros((3, 5))), carry, x)
    _, y_none = CELLS[name].step(params._replace(peephole=None), carry, x)
    _, want_none = STEPS["lstm"](params, to_numpy(carry), x)
    np.testing.assert_allclose(y_none, want_none, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y_zero, y_none, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------- init


@pytest.mark.parametrize("name", NAMES)
def test_init_recurrent_blocks_orthogonal(name):
    n_a = 4
    w_h = np.asarray(CELLS[name].init(jax.random.key(0), 3, n_a, jnp.float64).w_h)
    blocks = [w_h[:, g * n_a : (g + 1) * n_a] for g in range(GATES[name])]
    for q in blocks:
        np.testing.assert_allclose(q.T @ q, np.eye(n_a), rtol=0, atol=1e-12)
    # one orthogonal matrix drawn per gate, not one matrix repeated
    for q1, q2 in itertools.combinations(blocks, 2):
        assert np.max(np.abs(q1 - q2)) > 0.1


@pytest.mark.parametrize("name", NAMES)
def test_init_biases_zero_except_lstm_forget(name):
    n_a, gates = 4, GATES[name]
    params = CELLS[name].init(jax.random.key(0), 3, n_a)
    want_b_x = np.zeros(gates * n_a)
    if name.startswith("lstm"):
        want_b_x[n_a : 2 * n_a] = 1.0  # gates (u, f, c̃, o): f is the second block
    np.testing.assert_array_equal(params.b_x, want_b_x)
    np.testing.assert_array_equal(params.b_h, np.zeros(gates * n_a))


@pytest.mark.parametrize("peephole", [False, True])
@pytest.mark.parametrize("forget_bias", [0.0, 2.5])
def test_init_lstm_forget_bias_in_b_x(forget_bias, peephole):
    n_a = 4
    params = jaxrnn.lstm(peephole=peephole, forget_bias=forget_bias).init(jax.random.key(0), 3, n_a)
    want = np.zeros(4 * n_a)
    want[n_a : 2 * n_a] = forget_bias
    np.testing.assert_array_equal(params.b_x, want)
    np.testing.assert_array_equal(params.b_h, np.zeros(4 * n_a))


@pytest.mark.parametrize("dtype", DTYPES)
def test_init_peephole_present_only_when_asked(dtype):
    assert jaxrnn.lstm().init(jax.random.key(0), 3, 4, dtype).peephole is None
    peephole = jaxrnn.lstm(peephole=True).init(jax.random.key(0), 3, 4, dtype).peephole
    assert peephole.dtype == dtype
    np.testing.assert_array_equal(peephole, np.zeros((3, 4)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_init_dtype_honoured(name, dtype):
    cell = CELLS[name]
    params = cell.init(jax.random.key(0), 3, 4, dtype)
    assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {jnp.dtype(dtype)}
    carry = cell.init_carry(params, (2,))
    for leaf in jax.tree.leaves(carry):
        assert leaf.dtype == dtype
        np.testing.assert_array_equal(leaf, np.zeros((2, 4)))
    carry, y = cell.step(params, carry, jnp.ones((2, 3), dtype))
    assert y.dtype == dtype
    assert {leaf.dtype for leaf in jax.tree.leaves(carry)} == {jnp.dtype(dtype)}


@pytest.mark.parametrize("name", NAMES)
def test_init_default_dtype_is_float32(name):
    # float64 is enabled in these tests (conftest), so this checks an explicit default
    params = CELLS[name].init(jax.random.key(0), 3, 4)
    assert {leaf.dtype for leaf in jax.tree.leaves(params)} == {jnp.dtype(jnp.float32)}


@pytest.mark.parametrize("name", NAMES)
def test_init_input_weights_scale(name):
    # Glorot-uniform per gate (fan_out H, not G·H): U(−l, l), l = √(6 / (n_x + H)), std l/√3.
    # He-normal for the ReLU RNN: std √(2 / n_x), a normal truncated at 2σ and rescaled.
    n_x = n_a = 48
    keys = jax.random.split(jax.random.key(0), 4)
    w_x = np.stack([CELLS[name].init(k, n_x, n_a, jnp.float64).w_x for k in keys])
    glorot_limit = np.sqrt(6 / (n_x + n_a))
    want_std = np.sqrt(2 / n_x) if name == "rnn_relu" else glorot_limit / np.sqrt(3)
    for g in range(GATES[name]):
        block = w_x[..., g * n_a : (g + 1) * n_a]  # 9216 draws: std known to about 1 %
        assert abs(block.std() / want_std - 1) < 0.05
        assert abs(block.mean()) < 0.05 * want_std
        if name == "rnn_relu":
            assert np.abs(block).max() > 1.2 * glorot_limit  # a normal's tail, not U(−l, l)
        else:
            assert glorot_limit * 0.95 < np.abs(block).max() <= glorot_limit


def test_init_relu_rnn_scale_is_he_not_glorot():
    n_x = n_a = 48
    keys = jax.random.split(jax.random.key(1), 4)
    std_relu = np.std([jaxrnn.rnn("relu").init(k, n_x, n_a, jnp.float64).w_x for k in keys])
    std_tanh = np.std([jaxrnn.rnn("tanh").init(k, n_x, n_a, jnp.float64).w_x for k in keys])
    # variance ratio He / Glorot = (2 / n_x) / (2 / (n_x + n_a)) = 2, so the std ratio is √2
    assert abs(std_relu / std_tanh - np.sqrt(2)) < 0.05


# --------------------------------------------------------------------------- batching, jit, split


@pytest.mark.parametrize("batch_shape", [(3,), (2, 3)])
@pytest.mark.parametrize("name", NAMES)
def test_step_batched_equals_per_example_loop(name, batch_shape):
    cell, rng = CELLS[name], np.random.default_rng(5)
    params = random_params(name, 4, 5)
    carry = random_carry(name, batch_shape, 5, jnp.float64, rng)
    x = jnp.asarray(rng.normal(0.0, 1.0, (*batch_shape, 4)))

    got_carry, got_y = cell.step(params, carry, x)
    assert got_y.shape == (*batch_shape, 5)
    for idx in np.ndindex(*batch_shape):
        want_carry, want_y = cell.step(params, index(carry, idx), x[idx])
        np.testing.assert_allclose(got_y[idx], want_y, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(
            to_numpy(index(got_carry, idx)), to_numpy(want_carry), rtol=1e-12, atol=1e-12
        )


@pytest.mark.parametrize("name", NAMES)
def test_step_jit_equals_eager(name):
    cell, rng = CELLS[name], np.random.default_rng(6)
    params = random_params(name, 4, 5)
    carry = random_carry(name, (3,), 5, jnp.float64, rng)
    x = jnp.asarray(rng.normal(0.0, 1.0, (3, 4)))

    eager_carry, eager_y = cell.step(params, carry, x)
    jit_carry, jit_y = jax.jit(cell.step)(params, carry, x)
    np.testing.assert_allclose(jit_y, eager_y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(to_numpy(jit_carry), to_numpy(eager_carry), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("batch_shape", [(), (3,), (2, 3)])
@pytest.mark.parametrize("name", NAMES)
def test_step_projected_after_project_input_equals_step(name, batch_shape):
    cell, rng = CELLS[name], np.random.default_rng(7)
    params = random_params(name, 4, 5)
    carry = random_carry(name, batch_shape, 5, jnp.float64, rng)
    x = jnp.asarray(rng.normal(0.0, 1.0, (*batch_shape, 4)))

    structure = jaxrnn.cells.structure(cell)
    z = structure.project_input(params, x)
    got_carry, got_y = structure.step_projected(params, carry, z)
    want_carry, want_y = cell.step(params, carry, x)
    np.testing.assert_allclose(got_y, want_y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(to_numpy(got_carry), to_numpy(want_carry), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_project_input_is_input_affine_over_leading_axes(name):
    params = random_params(name, 4, 5)
    xs = np.random.default_rng(8).normal(0.0, 1.0, (2, 6, 4))  # e.g. (batch, time, n_x)
    z = jaxrnn.cells.structure(CELLS[name]).project_input(params, jnp.asarray(xs))
    want = xs @ np.asarray(params.w_x) + np.asarray(params.b_x)
    assert z.shape == (2, 6, GATES[name] * 5)
    np.testing.assert_allclose(z, want, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------ gate initialisation


def _gates_at_rest(cell, params):
    """The sigmoid of each gate's pre-activation for x = 0 and a zero carry, (G, H)."""
    hidden = params.w_h.shape[0]
    z = params.b_x + params.b_h
    return jax.nn.sigmoid(z.reshape(-1, hidden))


def test_gru_update_bias_sets_the_update_gate_only_and_keeps_the_weights():
    key = jax.random.key(0)
    default = jaxrnn.gru("after").init(key, 3, 5)
    biased = jaxrnn.gru("after", update_bias=-2.0).init(key, 3, 5)
    np.testing.assert_array_equal(biased.w_x, default.w_x)
    np.testing.assert_array_equal(biased.w_h, default.w_h)
    np.testing.assert_array_equal(biased.b_x, np.r_[np.zeros(5), np.full(5, -2.0), np.zeros(5)])
    np.testing.assert_array_equal(biased.b_h, np.zeros(15))


@pytest.mark.parametrize("reset", ["before", "after"])
def test_gru_chrono_spreads_the_memory_time_scales_up_to_t_max(reset):
    t_max, hidden = 100, 64
    cell = jaxrnn.gru(reset, chrono=t_max)
    params = cell.init(jax.random.key(1), 3, hidden)
    update = _gates_at_rest(cell, params)[1]  # Γ_u, the share of the new candidate
    time_scale = 1.0 / update  # steps until the old state has decayed by about e
    assert np.all(time_scale >= 2.0 - 1e-5) and np.all(time_scale <= t_max + 1e-3)
    assert time_scale.max() > t_max / 2 and time_scale.min() < 10
    default = _gates_at_rest(jaxrnn.gru(reset), jaxrnn.gru(reset).init(jax.random.key(1), 3, 64))
    np.testing.assert_allclose(1.0 / default[1], 2.0)  # σ(0) = 1/2: a time scale of 2 steps


def test_lstm_chrono_ties_the_input_gate_to_the_forget_gate():
    t_max = 40
    params = jaxrnn.lstm(chrono=t_max).init(jax.random.key(2), 3, 32)
    update, forget = _gates_at_rest(None, params)[:2]
    np.testing.assert_allclose(update + forget, 1.0, rtol=1e-6)
    time_scale = 1.0 / (1.0 - forget)
    assert np.all(time_scale >= 2.0 - 1e-5) and np.all(time_scale <= t_max + 1e-3)
    assert len(np.unique(np.asarray(forget))) == 32
    np.testing.assert_array_equal(params.b_x[64:], 0.0)  # candidate and output gates untouched
    same_weights = jaxrnn.lstm().init(jax.random.key(2), 3, 32)
    np.testing.assert_array_equal(params.w_x, same_weights.w_x)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: jaxrnn.lstm(chrono=1), "chrono to be None or an int T_max >= 2, got 1"),
        (lambda: jaxrnn.gru(chrono=2.5), "chrono to be None or an int T_max >= 2, got 2.5"),
        (lambda: jaxrnn.gru(update_bias=float("nan")), "update_bias to be a finite number"),
        (lambda: jaxrnn.lstm(forget_bias="1"), "forget_bias to be a finite number"),
        (
            lambda: jaxrnn.gru(update_bias=-3.0, chrono=80),
            r"expected update_bias or chrono, got both \(update_bias=-3.0, chrono=80\)",
        ),
        (
            lambda: jaxrnn.lstm(forget_bias=3.0, chrono=80),
            r"expected forget_bias or chrono, got both \(forget_bias=3.0, chrono=80\)",
        ),
    ],
)
def test_gate_initialisation_options_refuse_what_they_cannot_use(make, message):
    with pytest.raises(jaxrnn.InputError, match=message):
        make()
