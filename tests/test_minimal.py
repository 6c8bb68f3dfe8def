"""minGRU and minLSTM: steps against numpy, the parallel scan against the sequential one, and an LM.

The parallel mode (``jaxrnn.unroll`` with the cell's associative scan) is checked against the
sequential mode (``implementation="scan"``, a ``lax.scan`` of ``cell.step``), itself checked
against a plain numpy transcription of the paper's equations, written below.
"""

import functools
import re
from importlib import resources

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxrnn
from jaxrnn import lm, lm_train
from jaxrnn.minimal import MinGRUParams, MinLSTMParams, linear_recurrence

CELLS = {"min_gru": jaxrnn.min_gru(), "min_lstm": jaxrnn.min_lstm()}
NAMES = list(CELLS)
DTYPES = [jnp.float64, jnp.float32]
N_X, N_A, T = 4, 5, 37  # T odd and not a power of two: the scan's uneven splits are exercised

# A step against numpy: rounding of a few ops. float32 inputs are exact in float64, so float32
# differs from the float64 reference by float32 rounding (eps ≈ 1.2e-7) over a few ops.
STEP_TOL = {jnp.float64: 1e-12, jnp.float32: 1e-5}
# Parallel against sequential: the same sums in another order and in log space, over T steps; the
# tolerance is relative to the largest output (log-space rounding is relative to each term).
SCAN_TOL = {jnp.float64: 1e-10, jnp.float32: 1e-5}
GRAD_TOL = {jnp.float64: 1e-9, jnp.float32: 1e-4}


# ------------------------------------------------------------------------------ numpy reference


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def g(v):
    return np.where(v >= 0, v + 0.5, sigmoid(v))


def min_gru_step(params, h_prev, x):
    w_x, b_x, h_prev, x = (np.asarray(a, np.float64) for a in (*params, h_prev, x))
    n_a = w_x.shape[1] // 2
    pre = x @ w_x + b_x
    z = sigmoid(pre[:n_a])  # z⟨t⟩ = σ(x W_z + b_z)
    h_tilde = g(pre[n_a:])  # h̃⟨t⟩ = g(x W_h + b_h)
    h = (1 - z) * h_prev + z * h_tilde  # h⟨t⟩ = (1 − z) ⊙ h⟨t−1⟩ + z ⊙ h̃
    return h, h


def min_lstm_step(params, h_prev, x):
    w_x, b_x, h_prev, x = (np.asarray(a, np.float64) for a in (*params, h_prev, x))
    n_a = w_x.shape[1] // 3
    pre = x @ w_x + b_x
    f = sigmoid(pre[:n_a])  # f⟨t⟩ = σ(x W_f + b_f)
    i = sigmoid(pre[n_a : 2 * n_a])  # i⟨t⟩ = σ(x W_i + b_i)
    f_norm, i_norm = f / (f + i), i / (f + i)  # f′, i′
    h_tilde = g(pre[2 * n_a :])  # h̃⟨t⟩ = g(x W_h + b_h)
    h = f_norm * h_prev + i_norm * h_tilde  # h⟨t⟩ = f′ ⊙ h⟨t−1⟩ + i′ ⊙ h̃
    return h, h


STEPS = {"min_gru": min_gru_step, "min_lstm": min_lstm_step}


def reference_unroll(name, params, xs, h0, length=None, reverse=False):
    """One example xs (T, n_x): run the valid prefix (backwards if reverse); zeros after it."""
    xs = np.asarray(xs, np.float64)
    length = len(xs) if length is None else int(length)
    order = range(length - 1, -1, -1) if reverse else range(length)
    h, ys = np.asarray(h0, np.float64), np.zeros((len(xs), np.shape(h0)[-1]))
    for t in order:
        h, ys[t] = STEPS[name](params, h, xs[t])
    return h, ys


# ---------------------------------------------------------------------------------------- setup


def random_params(name, dtype, scale=0.5, seed=0, n_x=N_X, n_a=N_A):
    # init leaves b_x zero; random values make every term count.
    init = functools.partial(CELLS[name].init, jax.random.key(seed), n_x, n_a, dtype)
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda p: jnp.asarray(rng.normal(0.0, scale, p.shape), dtype), jax.eval_shape(init)
    )


def random_array(shape, dtype, seed, scale=1.0):
    return jnp.asarray(np.random.default_rng(seed).normal(0.0, scale, shape), dtype)


def assert_close(got, want, tol):
    """|got − want| ≤ tol · max(1, max |want|) elementwise."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * max(1.0, np.abs(want).max(initial=0)))


def assert_trees_close(got, want, tol):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        assert_close(a, b, tol)


# ------------------------------------------------------------------------------- step and init


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_step_matches_reference(name, dtype):
    cell = CELLS[name]
    params = random_params(name, dtype, scale=1.0)  # pre-activations on both sides of g's kink
    h_prev = random_array((N_A,), dtype, seed=1)  # negative entries included
    x = random_array((N_X,), dtype, seed=2)

    got_h, got_y = cell.step(params, h_prev, x)
    want_h, want_y = STEPS[name](params, h_prev, x)

    assert got_y.dtype == dtype and got_h.dtype == dtype
    np.testing.assert_allclose(got_h, want_h, rtol=STEP_TOL[dtype], atol=STEP_TOL[dtype])
    np.testing.assert_allclose(got_y, want_y, rtol=STEP_TOL[dtype], atol=STEP_TOL[dtype])


def test_reference_candidate_activation_is_continuous_and_positive():
    v = np.array([-50.0, -1.0, -1e-9, 0.0, 1e-9, 1.0, 50.0])
    np.testing.assert_allclose(g(v), [sigmoid(-50.0), sigmoid(-1.0), 0.5, 0.5, 0.5, 1.5, 50.5])
    assert (g(v) > 0).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_unroll_sequential_matches_reference(name, dtype):
    cell, batch = CELLS[name], 4
    params = random_params(name, dtype)
    xs = random_array((batch, T, N_X), dtype, seed=3)
    h0 = random_array((batch, N_A), dtype, seed=4)
    lengths = np.array([T, 7, 0, 1], np.int32)
    for reverse in (False, True):
        last, ys = unroll_jit(
            cell, params, xs, h0, lengths=lengths, reverse=reverse, implementation="scan"
        )
        for b in range(batch):
            want_last, want_ys = reference_unroll(name, params, xs[b], h0[b], lengths[b], reverse)
            assert_close(last[b], want_last, STEP_TOL[dtype] * 10)
            assert_close(ys[b], want_ys, STEP_TOL[dtype] * 10)


@pytest.mark.parametrize("name", NAMES)
def test_init_shapes_dtype_and_hidden_size(name):
    gates = {"min_gru": 2, "min_lstm": 3}[name]
    params = CELLS[name].init(jax.random.key(0), 3, 7, jnp.float64)
    assert isinstance(params, {"min_gru": MinGRUParams, "min_lstm": MinLSTMParams}[name])
    assert params.w_x.shape == (3, gates * 7) and params.b_x.shape == (gates * 7,)
    assert params.w_x.dtype == params.b_x.dtype == jnp.float64
    assert jaxrnn.hidden_size(params) == 7 and jaxrnn.input_size(params) == 3
    np.testing.assert_array_equal(params.b_x, 0.0)
    # Glorot-uniform per gate: limit sqrt(6 / (fan_in + fan_out)) = sqrt(6 / 10)
    assert 0 < np.abs(params.w_x).max() <= np.sqrt(0.6)
    np.testing.assert_array_equal(CELLS[name].init_carry(params, (2,)), np.zeros((2, 7)))


# ------------------------------------------------------------------- parallel against sequential

CASES = {
    # name: (batch shape, lengths or None, reverse, time_major, initial carry, weight scale)
    "plain": ((3,), None, False, False, "zeros", 0.5),
    "no_batch": ((), None, False, False, "zeros", 0.5),
    "two_batch_dims": ((2, 3), None, False, False, "random", 0.5),
    "negative_carry": ((3,), None, False, False, "negative", 0.5),
    "lengths": ((4,), [T, 9, 0, 1], False, False, "random", 0.5),
    "reverse": ((3,), None, True, False, "random", 0.5),
    "reverse_lengths": ((4,), [T, 9, 0, 1], True, False, "negative", 0.5),
    "time_major": ((2, 3), [[T, 1, 0], [5, T, 2]], True, True, "random", 0.5),
    # pre-activations of ±50 and more: saturated gates, candidates up to ~100
    "large_preactivations": ((3,), [T, 20, 1], False, False, "random", 20.0),
    "large_preactivations_reverse": ((3,), [T, 20, 1], True, False, "negative", 20.0),
}


def case_inputs(name, dtype, case):
    batch_shape, lengths, _, time_major, carry, scale = CASES[case]
    params = random_params(name, dtype, scale=scale, seed=5)
    shape = (T, *batch_shape, N_X) if time_major else (*batch_shape, T, N_X)
    xs = random_array(shape, dtype, seed=6)
    h0 = random_array((*batch_shape, N_A), dtype, seed=7)
    if carry == "zeros":
        h0 = jnp.zeros_like(h0)
    elif carry == "negative":
        h0 = -3.0 * jnp.abs(h0)
    return params, xs, h0, None if lengths is None else np.asarray(lengths, np.int32)


# Compiled once per cell and set of options: eager unrolls would dispatch op by op.
unroll_jit = jax.jit(
    jaxrnn.unroll, static_argnums=0, static_argnames=("reverse", "time_major", "implementation")
)


def run_both(cell, params, xs, h0, **options):
    parallel = unroll_jit(cell, params, xs, h0, implementation="time_parallel", **options)
    sequential = unroll_jit(cell, params, xs, h0, implementation="scan", **options)
    return parallel, sequential


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
def test_parallel_matches_sequential(name, dtype, case):
    cell = CELLS[name]
    params, xs, h0, lengths = case_inputs(name, dtype, case)
    _, _, reverse, time_major, _, _ = CASES[case]
    options = dict(lengths=lengths, reverse=reverse, time_major=time_major)
    (last_p, ys_p), (last_s, ys_s) = run_both(cell, params, xs, h0, **options)

    assert ys_p.dtype == dtype and ys_p.shape == ys_s.shape
    assert np.isfinite(ys_p).all()
    assert_close(ys_p, ys_s, SCAN_TOL[dtype])
    assert_close(last_p, last_s, SCAN_TOL[dtype])
    if lengths is not None:  # padded outputs are exactly zero, length 0 keeps h0 exactly
        valid = np.arange(T) < lengths[..., None]  # (*batch, T)
        ys_bt = np.moveaxis(np.asarray(ys_p), 0, -2) if time_major else np.asarray(ys_p)
        assert (ys_bt[~valid] == 0).all()
        np.testing.assert_array_equal(np.asarray(last_p)[lengths == 0], h0[lengths == 0])


@pytest.mark.parametrize("name", NAMES)
def test_parallel_matches_reference_float64(name):
    # Not only equal to the sequential mode: equal to the equations.
    params, xs, h0, lengths = case_inputs(name, jnp.float64, "reverse_lengths")
    for reverse in (False, True):
        last, ys = unroll_jit(CELLS[name], params, xs, h0, lengths=lengths, reverse=reverse)
        for b in range(len(lengths)):
            want_last, want_ys = reference_unroll(name, params, xs[b], h0[b], lengths[b], reverse)
            assert_close(last[b], want_last, 1e-10)
            assert_close(ys[b], want_ys, 1e-10)


@pytest.mark.parametrize("n_steps", [1, 2, 1000])
def test_parallel_matches_sequential_lengths_of_time(n_steps):
    cell, dtype = CELLS["min_gru"], jnp.float32
    params = random_params("min_gru", dtype)
    xs = random_array((2, n_steps, N_X), dtype, seed=8)
    h0 = random_array((2, N_A), dtype, seed=9)
    (last_p, ys_p), (last_s, ys_s) = run_both(cell, params, xs, h0)
    assert_close(ys_p, ys_s, SCAN_TOL[dtype])
    assert_close(last_p, last_s, SCAN_TOL[dtype])


def test_parallel_empty_sequence_returns_initial_carry():
    params = random_params("min_lstm", jnp.float32)
    h0 = random_array((2, N_A), jnp.float32, seed=1)
    last, ys = jaxrnn.unroll(CELLS["min_lstm"], params, jnp.zeros((2, 0, N_X), jnp.float32), h0)
    assert ys.shape == (2, 0, N_A)
    np.testing.assert_array_equal(last, h0)


def test_linear_recurrence_matches_loop_for_any_sign_of_h0():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.01, 1.0, (50, 3))
    b = rng.uniform(0.01, 2.0, (50, 3))
    h0 = np.array([-4.0, 0.0, 2.5])
    h, want = h0, []
    for t in range(50):
        h = a[t] * h + b[t]
        want.append(h)
    got = linear_recurrence(jnp.asarray(a), jnp.asarray(b), jnp.asarray(h0))
    assert_close(got, np.array(want), 1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_parallel_is_the_default_and_sequential_options_fall_back(name):
    cell = CELLS[name]
    params, xs, h0, lengths = case_inputs(name, jnp.float64, "lengths")

    def jaxpr(**options):
        return str(
            jax.make_jaxpr(lambda p, x: jaxrnn.unroll(cell, p, x, h0, **options))(params, xs)
        )

    # The parallel scan runs block by block (see jaxrnn.minimal._blocked_recurrence): a lax.scan
    # over blocks whose body holds a nested scan over the block's steps; cell.step's scan is one.
    assert jaxpr() == jaxpr(implementation="time_parallel")
    assert len(re.findall(r"\bscan\[", jaxpr())) == 2
    assert len(re.findall(r"\bscan\[", jaxpr(implementation="scan"))) == 1
    want = unroll_jit(cell, params, xs, h0, lengths=lengths)
    for options in ({"remat": True}, {"remat": 4}, {"implementation": "hoisted"}):
        assert jaxpr(**options) != jaxpr()
        run = jax.jit(functools.partial(jaxrnn.unroll, cell, **options))
        got = run(params, xs, h0, lengths=lengths)
        assert_trees_close(got, want, 1e-10)


# ------------------------------------------------------------------------------------- gradients


def loss_fn(cell, parallel, lengths, reverse):
    """A scalar that weighs every output and the last carry differently."""

    def loss(params, xs, h0):
        last, ys = jaxrnn.unroll(
            cell,
            params,
            xs,
            h0,
            lengths=lengths,
            reverse=reverse,
            implementation="time_parallel" if parallel else "scan",
        )
        w_ys = jnp.sin(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
        w_last = jnp.cos(jnp.arange(last.size, dtype=last.dtype)).reshape(last.shape)
        return (w_ys * ys).sum() + (w_last * last).sum()

    return loss


@pytest.mark.parametrize(
    "dtype, reverse", [(jnp.float64, False), (jnp.float64, True), (jnp.float32, True)]
)
@pytest.mark.parametrize("name", NAMES)
def test_parallel_gradients_match_sequential(name, dtype, reverse):
    cell = CELLS[name]
    params, xs, h0, lengths = case_inputs(name, dtype, "lengths")
    args = (params, xs, h0)
    got = jax.jit(jax.grad(loss_fn(cell, True, lengths, reverse), argnums=(0, 1, 2)))(*args)
    want = jax.jit(jax.grad(loss_fn(cell, False, lengths, reverse), argnums=(0, 1, 2)))(*args)
    for leaf in jax.tree.leaves(got):
        assert np.isfinite(leaf).all()
    assert_trees_close(got, want, GRAD_TOL[dtype])
    # padded inputs get no gradient
    valid = np.arange(T) < lengths[:, None]
    assert (np.asarray(got[1])[~valid] == 0).all()


@pytest.mark.parametrize("name", NAMES)
def test_parallel_gradients_large_preactivations_are_finite_and_match(name):
    cell = CELLS[name]
    params, xs, h0, lengths = case_inputs(name, jnp.float32, "large_preactivations")
    args = (params, xs, h0)
    got = jax.jit(jax.grad(loss_fn(cell, True, lengths, False), argnums=(0, 1, 2)))(*args)
    want = jax.jit(jax.grad(loss_fn(cell, False, lengths, False), argnums=(0, 1, 2)))(*args)
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(got))
    assert_trees_close(got, want, 1e-4)


# check_grads compares central differences (eps 1e-5, truncation error ~eps²) with the JVP and
# the VJP in a random direction; 1e-6 leaves margin. Reverse with lengths and a negative h0: the
# case with the most plumbing around the scan.
@pytest.mark.parametrize("name", NAMES)
def test_parallel_gradients_match_finite_differences(name):
    params, xs, h0, lengths = case_inputs(name, jnp.float64, "reverse_lengths")
    f = jax.jit(loss_fn(CELLS[name], True, lengths, reverse=True))
    check_grads(f, (params, xs, h0), order=1, modes=["fwd", "rev"], atol=1e-6, rtol=1e-6, eps=1e-5)


# ------------------------------------------------------------------------------------ jit, vmap


@pytest.mark.parametrize("name", NAMES)
def test_parallel_under_jit_equals_eager(name):
    cell = CELLS[name]
    params, xs, h0, lengths = case_inputs(name, jnp.float32, "reverse_lengths")
    run = functools.partial(jaxrnn.unroll, cell, reverse=True)
    eager = run(params, xs, h0, lengths=lengths)
    jitted = jax.jit(run)(params, xs, h0, lengths=jnp.asarray(lengths))
    assert_trees_close(jitted, eager, 1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_parallel_under_vmap_over_params_and_examples(name):
    # An ensemble: each example has its own params; vmap over everything against a loop.
    cell = CELLS[name]
    stacked = jax.tree.map(
        lambda *leaves: jnp.stack(leaves),
        *(random_params(name, jnp.float64, seed=s) for s in range(3)),
    )
    xs = random_array((3, T, N_X), jnp.float64, seed=1)
    h0 = random_array((3, N_A), jnp.float64, seed=2)
    lengths = jnp.array([T, 4, 0])

    def one(params, xs, h0, length):
        return jaxrnn.unroll(cell, params, xs, h0, lengths=length, reverse=True)

    got = jax.jit(jax.vmap(one))(stacked, xs, h0, lengths)
    for i in range(3):
        params = jax.tree.map(lambda leaf, i=i: leaf[i], stacked)
        want = reference_unroll(name, params, xs[i], h0[i], lengths[i], reverse=True)
        assert_close(got[0][i], want[0], 1e-10)
        assert_close(got[1][i], want[1], 1e-10)


def test_parallel_lengths_out_of_range_inside_jit_give_nan():
    cell = CELLS["min_gru"]
    params, xs, h0, _ = case_inputs("min_gru", jnp.float32, "lengths")
    last, ys = jax.jit(lambda p, x, h, n: jaxrnn.unroll(cell, p, x, h, lengths=n))(
        params, xs, h0, jnp.array([T, T + 1, -1, 3])
    )
    assert np.isfinite(last[0]).all() and np.isfinite(last[3]).all()
    assert np.isnan(last[1]).all() and np.isnan(last[2]).all()
    assert np.isnan(ys[1]).all() and np.isnan(ys[2]).all()


# ---------------------------------------------------------------------------------------- errors


def zeros32(*shape):
    return jnp.zeros(shape, jnp.float32)


def test_parallel_true_without_parallel_scan_is_input_error():
    cell = jaxrnn.gru()
    params = cell.init(jax.random.key(0), N_X, N_A)
    with pytest.raises(
        jaxrnn.InputError, match=r"unroll: implementation='time_parallel' does not compute gru"
    ):
        jaxrnn.unroll(cell, params, zeros32(2, T, N_X), implementation="time_parallel")
    last, _ = jaxrnn.unroll(cell, params, zeros32(2, 3, N_X), implementation="scan")
    assert last.shape == (2, N_A)


@pytest.mark.parametrize(
    "options, match",
    [
        (
            {"implementation": "time_parallel", "remat": True},
            r"implementation='time_parallel' cannot be combined with remat",
        ),
        ({"implementation": "yes"}, r"expected implementation None or one of .*, got 'yes'"),
    ],
)
def test_unroll_parallel_bad_options_are_input_errors(options, match):
    params = CELLS["min_gru"].init(jax.random.key(0), N_X, N_A)
    with pytest.raises(jaxrnn.InputError, match=match):
        jaxrnn.unroll(CELLS["min_gru"], params, zeros32(2, T, N_X), **options)


@pytest.mark.parametrize("name", NAMES)
def test_bad_shapes_are_input_errors(name):
    cell = CELLS[name]
    params = cell.init(jax.random.key(0), N_X, N_A)
    with pytest.raises(jaxrnn.InputError, match=rf"{name}.parallel_scan: expected xs of shape"):
        jaxrnn.cells.structure(cell).parallel_scan(params, zeros32(2, T, N_X), zeros32(N_A))
    with pytest.raises(jaxrnn.InputError, match=r"unroll: expected xs of shape \(2, 37, 4\)"):
        jaxrnn.unroll(cell, params, zeros32(2, T, N_X + 1))
    with pytest.raises(jaxrnn.InputError, match=r"unroll: expected carry of shape \(2, 5\)"):
        jaxrnn.unroll(cell, params, zeros32(2, T, N_X), zeros32(3, N_A))
    with pytest.raises(jaxrnn.InputError, match=r"unroll: expected xs of dtype float32"):
        jaxrnn.unroll(cell, params, jnp.zeros((2, T, N_X), jnp.float64))
    with pytest.raises(jaxrnn.InputError, match=rf"{name}.step: expected params.b_x of shape"):
        cell.step(params._replace(b_x=params.b_x[:-1]), zeros32(N_A), zeros32(N_X))
    with pytest.raises(jaxrnn.InputError, match=r"init: expected hidden_size to be a positive"):
        cell.init(jax.random.key(0), N_X, 0)


def test_params_of_the_other_cell_are_input_error():
    lstm_params = CELLS["min_lstm"].init(jax.random.key(0), N_X, N_A)
    with pytest.raises(
        jaxrnn.InputError, match=r"min_gru.step: expected MinGRUParams, .* got MinLSTMParams"
    ):
        CELLS["min_gru"].step(lstm_params, zeros32(N_A), zeros32(N_X))


# ------------------------------------------------------------------------------ language model


def test_cells_are_registered_and_exported():
    assert lm.cell_from_name("min_gru") is jaxrnn.min_gru()
    assert lm.cell_from_name("min_lstm") is jaxrnn.min_lstm()
    assert {"min_gru", "min_lstm"} <= set(jaxrnn.__all__)
    assert jaxrnn.minimal.MinGRUParams and jaxrnn.minimal.MinLSTMParams  # in their namespace


def test_min_gru_lm_learns_names_nearly_as_well_as_gru():
    # Same budget for both: 300 steps of 32 names, H = 64, 16-d embeddings, seed 0. A one-layer
    # minGRU's gates cannot see its past, so it trails the GRU a little (~7% here); both must
    # clearly beat the unigram model (~2.81 nats) and approach the trigram (~2.09).
    names = resources.files("jaxrnn").joinpath("data/names.txt").read_text()
    corpus = lm_train.make_corpus(names, mode="lines")
    train = lm_train.TrainConfig(
        steps=300, batch_size=32, learning_rate=1e-2, eval_every=10**9, sample_every=0, seed=0
    )
    unigram = lm_train.ngram_baseline(corpus, 1).nats_per_token
    valid = {}
    for cell in ("gru", "min_gru"):
        model = lm.LMConfig(corpus.vocab.size, cell_name=cell, hidden_size=64, embedding_size=16)
        result = lm_train.train_lm(corpus, model, train, progress=False, log=lambda _: None)
        valid[cell] = result.history.valid[-1].nats
    assert valid["gru"] < 0.8 * unigram and valid["min_gru"] < 0.8 * unigram
    assert valid["min_gru"] < 1.10 * valid["gru"], valid


# ------------------------------------------------------------------------ the associative scan


ASSOCIATIVE = {
    "min_gru": jaxrnn.min_gru(scan="associative"),
    "min_lstm": jaxrnn.min_lstm(scan="associative"),
}


@pytest.mark.parametrize("case", ["lengths", "large_preactivations_reverse", "time_major"])
@pytest.mark.parametrize("name", NAMES)
def test_associative_scan_matches_sequential_values_and_gradients(name, case):
    dtype = jnp.float64
    params, xs, h0, lengths = case_inputs(name, dtype, case)
    _, _, reverse, time_major, _, _ = CASES[case]

    def loss(cell, parallel):
        def f(params, xs, h0):
            last, ys = jaxrnn.unroll(
                cell,
                params,
                xs,
                h0,
                lengths=lengths,
                reverse=reverse,
                time_major=time_major,
                implementation="time_parallel" if parallel else "scan",
            )
            return (jnp.sin(ys) * ys).sum() + (last**2).sum(), (last, ys)

        return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))(params, xs, h0)

    (_, got_outputs), got_grads = loss(ASSOCIATIVE[name], True)
    (_, want_outputs), want_grads = loss(CELLS[name], False)
    assert_trees_close(got_outputs, want_outputs, SCAN_TOL[dtype])
    assert_trees_close(got_grads, want_grads, GRAD_TOL[dtype])


def test_unknown_scan_is_rejected():
    with pytest.raises(jaxrnn.InputError, match="expected scan 'blocked' or 'associative'"):
        jaxrnn.min_gru(scan="cumsum")
