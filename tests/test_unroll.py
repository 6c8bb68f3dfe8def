"""jaxrnn.unroll: against a loop of cell.step and against the numpy reference_unroll."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cells_under_test import CELLS, NAMES
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import reference_unroll

import jaxrnn
from jaxrnn import LSTMState

# Properties of the scan plumbing rather than of a cell's equations run on fewer cells, one per
# kind of step: a single gate that can output exact zeros, two recurrent matmuls, an (h, c) carry.
PLUMBING = ["rnn_relu", "gru_before", "lstm_peephole"]
N_X, N_A, T = 3, 4, 5

# float64 against float64: rounding of a few ops per step over at most T steps. float32 against
# the float64 reference: float32 rounding (eps ≈ 1.2e-7) accumulated over the steps.
TOL64 = {"rtol": 1e-12, "atol": 1e-12}
TOL32 = {"rtol": 1e-5, "atol": 1e-5}


def random_params(name, n_x=N_X, n_a=N_A, dtype=jnp.float64, seed=0):
    # init leaves biases and peepholes zero or constant; random values make every term count.
    # eval_shape gives init's structure (peephole or None) without compiling it.
    init = functools.partial(CELLS[name].init, jax.random.key(seed), n_x, n_a, dtype)
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda p: jnp.asarray(rng.normal(0.0, 0.5, p.shape), dtype), jax.eval_shape(init)
    )


def random_carry(name, batch_shape, n_a=N_A, dtype=jnp.float64, seed=1):
    rng = np.random.default_rng(seed)
    h = jnp.asarray(rng.normal(0.0, 1.0, (*batch_shape, n_a)), dtype)
    if name.startswith("lstm"):
        return LSTMState(h, jnp.asarray(rng.normal(0.0, 1.0, h.shape), dtype))
    return h


def random_xs(shape, dtype=jnp.float64, seed=2):
    return jnp.asarray(np.random.default_rng(seed).normal(0.0, 1.0, shape), dtype)


def to_numpy(carry):
    """The library's carry as one array: (*batch, H), or (2, *batch, H) stacking (h, c)."""
    if isinstance(carry, LSTMState):
        return np.stack([np.asarray(carry.h), np.asarray(carry.c)])
    return np.asarray(carry)


def index(tree, idx):
    return jax.tree.map(lambda leaf: leaf[idx], tree)


def reference_batch(name, params, xs, carry0, lengths=None, reverse=False):
    """reference_unroll on each example of xs (*batch, T, n_x), one at a time, in float64."""
    xs = np.asarray(xs, np.float64)
    carry0 = np.asarray(to_numpy(carry0), np.float64)
    lead = (slice(None),) if name.startswith("lstm") else ()  # the (h, c) axis
    carry = np.empty_like(carry0)
    ys = np.zeros((*xs.shape[:-1], carry0.shape[-1]))
    for idx in np.ndindex(*xs.shape[:-2]):
        h0 = carry0[(*lead, *idx)]
        length = None if lengths is None else int(np.asarray(lengths)[idx])
        carry[(*lead, *idx)], ys[idx] = reference_unroll(
            name, params, xs[idx], tuple(h0) if lead else h0, length, reverse
        )
    return carry, ys


def assert_close(got, want, tol):
    got_carry, got_ys = got
    want_carry, want_ys = want
    np.testing.assert_allclose(got_ys, want_ys, **tol)
    np.testing.assert_allclose(to_numpy(got_carry), to_numpy(want_carry), **tol)


# ------------------------------------------------------------------------------- loop, reference


@pytest.mark.parametrize("name", NAMES)
def test_unroll_equals_python_loop_of_step(name):
    cell, params = CELLS[name], random_params(name)
    xs, carry0 = random_xs((2, T, N_X)), random_carry(name, (2,))

    carry, ys = carry0, []
    for t in range(T):
        carry, y = cell.step(params, carry, xs[:, t])
        ys.append(y)

    assert_close(jaxrnn.unroll(cell, params, xs, carry0), (carry, np.stack(ys, axis=1)), TOL64)


@pytest.mark.parametrize("batch_shape", [(), (2, 3)])
@pytest.mark.parametrize("name", NAMES)
def test_unroll_matches_reference(name, batch_shape):
    params = random_params(name)
    xs, carry0 = random_xs((*batch_shape, T, N_X)), random_carry(name, batch_shape)
    got = jaxrnn.unroll(CELLS[name], params, xs, carry0)
    assert_close(got, reference_batch(name, params, xs, carry0), TOL64)


@pytest.mark.parametrize("name", NAMES)
def test_unroll_float32_matches_reference(name):
    params = random_params(name, dtype=jnp.float32)
    xs, carry0 = random_xs((2, T, N_X), jnp.float32), random_carry(name, (2,), dtype=jnp.float32)
    carry, ys = jaxrnn.unroll(CELLS[name], params, xs, carry0, lengths=jnp.array([T, 2]))
    assert ys.dtype == jnp.float32
    assert_close((carry, ys), reference_batch(name, params, xs, carry0, [T, 2]), TOL32)


@pytest.mark.parametrize("name", PLUMBING)
def test_unroll_default_carry_is_zero_carry(name):
    cell, params = CELLS[name], random_params(name)
    xs = random_xs((2, T, N_X))
    zeros = cell.init_carry(params, (2,))
    got = jaxrnn.unroll(cell, params, xs)
    assert_close(got, reference_batch(name, params, xs, zeros), TOL64)


@pytest.mark.parametrize("batch_shape", [(), (2, 3)])
@pytest.mark.parametrize("name", PLUMBING)
def test_unroll_time_major_equals_batch_major(name, batch_shape):
    cell, params = CELLS[name], random_params(name)
    xs, carry0 = random_xs((*batch_shape, T, N_X)), random_carry(name, batch_shape)
    n_examples = int(np.prod(batch_shape, dtype=int))
    lengths = jnp.asarray((T - np.arange(n_examples)) % (T + 1)).reshape(batch_shape)  # T, T−1, …

    carry_bm, ys_bm = jaxrnn.unroll(cell, params, xs, carry0, lengths=lengths)
    xs_tm = jnp.moveaxis(xs, -2, 0)  # (T, *batch, n_x)
    carry_tm, ys_tm = jaxrnn.unroll(cell, params, xs_tm, carry0, lengths=lengths, time_major=True)

    assert ys_tm.shape == (T, *batch_shape, N_A)
    np.testing.assert_array_equal(np.moveaxis(np.asarray(ys_tm), 0, -2), ys_bm)
    np.testing.assert_array_equal(to_numpy(carry_tm), to_numpy(carry_bm))
    assert_close((carry_bm, ys_bm), reference_batch(name, params, xs, carry0, lengths), TOL64)


# --------------------------------------------------------------------------- reverse and lengths


@pytest.mark.parametrize("name", NAMES)
def test_unroll_reverse_matches_reference(name):
    params = random_params(name)
    xs, carry0 = random_xs((3, T, N_X)), random_carry(name, (3,))
    got = jaxrnn.unroll(CELLS[name], params, xs, carry0, reverse=True)
    assert_close(got, reference_batch(name, params, xs, carry0, reverse=True), TOL64)


@pytest.mark.parametrize("name", PLUMBING)
def test_unroll_reverse_equals_forward_over_flipped_time(name):
    cell, params = CELLS[name], random_params(name)
    xs, carry0 = random_xs((3, T, N_X)), random_carry(name, (3,))
    carry_rev, ys_rev = jaxrnn.unroll(cell, params, xs, carry0, reverse=True)
    carry_fwd, ys_fwd = jaxrnn.unroll(cell, params, xs[:, ::-1], carry0)
    assert_close((carry_rev, ys_rev), (carry_fwd, ys_fwd[:, ::-1]), TOL64)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("name", NAMES)
def test_unroll_lengths_match_reference_with_exact_zero_padding(name, reverse):
    params = random_params(name)
    xs, carry0 = random_xs((2, 3, T, N_X)), random_carry(name, (2, 3))
    lengths = jnp.array([[0, T, 3], [1, 2, T - 1]])  # empty, full and mixed
    carry, ys = jaxrnn.unroll(CELLS[name], params, xs, carry0, lengths=lengths, reverse=reverse)
    assert_close((carry, ys), reference_batch(name, params, xs, carry0, lengths, reverse), TOL64)

    padded = np.arange(T) >= np.asarray(lengths)[..., None]  # (*batch, T)
    np.testing.assert_array_equal(np.asarray(ys)[padded], 0.0)  # exactly, not approximately
    # length 0 returns the initial carry itself
    np.testing.assert_array_equal(to_numpy(index(carry, (0, 0))), to_numpy(index(carry0, (0, 0))))


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("name", PLUMBING)
def test_unroll_padded_batch_equals_each_example_alone(name, reverse):
    cell, params = CELLS[name], random_params(name)
    lengths = [T, 2, 0]
    xs, carry0 = random_xs((3, T, N_X)), random_carry(name, (3,))
    # padding holds large garbage: it must not reach any output or carry
    valid = np.arange(T) < np.array(lengths)[:, None]
    xs = jnp.where(valid[..., None], xs, 1e3)

    carry, ys = jaxrnn.unroll(cell, params, xs, carry0, lengths=jnp.array(lengths), reverse=reverse)
    for i, length in enumerate(lengths):
        alone_carry, alone_ys = jaxrnn.unroll(
            cell, params, xs[i, :length], index(carry0, i), reverse=reverse
        )
        np.testing.assert_allclose(ys[i, :length], alone_ys, **TOL64)
        np.testing.assert_allclose(to_numpy(index(carry, i)), to_numpy(alone_carry), **TOL64)
        np.testing.assert_array_equal(ys[i, length:], 0.0)


@pytest.mark.parametrize("batch_shape", [(), (2,)])
@pytest.mark.parametrize("name", NAMES)
def test_unroll_empty_sequence_returns_initial_carry(name, batch_shape):
    cell, params = CELLS[name], random_params(name)
    xs, carry0 = jnp.zeros((*batch_shape, 0, N_X)), random_carry(name, batch_shape)
    carry, ys = jaxrnn.unroll(cell, params, xs, carry0)
    assert ys.shape == (*batch_shape, 0, N_A)
    np.testing.assert_array_equal(to_numpy(carry), to_numpy(carry0))
    lengths = jnp.zeros(batch_shape, int)
    carry, _ = jaxrnn.unroll(cell, params, xs, carry0, lengths=lengths, reverse=True)
    np.testing.assert_array_equal(to_numpy(carry), to_numpy(carry0))


@pytest.mark.parametrize("bad", [-1, T + 1])
def test_unroll_lengths_out_of_range_raise_when_known(bad):
    params, xs = random_params("gru_before"), random_xs((2, T, N_X))
    with pytest.raises(jaxrnn.InputError, match="lengths"):
        jaxrnn.unroll(CELLS["gru_before"], params, xs, lengths=jnp.array([T, bad]))


def test_unroll_lengths_out_of_range_give_nan_under_jit():
    # traced lengths cannot raise; the bad example becomes NaN, the good one is untouched
    name = "lstm_peephole"
    params, xs = random_params(name), random_xs((3, T, N_X))
    carry0 = random_carry(name, (3,))
    run = jax.jit(functools.partial(jaxrnn.unroll, CELLS[name]))
    carry, ys = run(params, xs, carry0, lengths=jnp.array([-1, 2, T + 1]))
    assert np.all(np.isnan(to_numpy(carry)[:, [0, 2]]))
    assert np.all(np.isnan(np.asarray(ys)[[0, 2]]))
    want = reference_batch(name, params, xs[1:2], index(carry0, slice(1, 2)), [2])
    assert_close((index(carry, slice(1, 2)), ys[1:2]), want, TOL64)


# ---------------------------------------------------------------------------------------- options

OPTIONS = {
    "scan": {"implementation": "scan"},
    "remat": {"remat": True},
    "remat_blocks_2": {"remat": 2},  # T = 5: one step left over after two blocks
    "remat_block_7": {"remat": 7},  # one block longer than the sequence
    "hoist": {"implementation": "hoisted"},
}
OPTION_LENGTHS = jnp.array([T, 2, 0])


@functools.cache
def default_unroll(name):
    """The default unroll of a fixed reversed, padded batch; cached, each call compiles a scan."""
    params = random_params(name)
    xs, carry0 = random_xs((3, T, N_X)), random_carry(name, (3,))
    got = jaxrnn.unroll(CELLS[name], params, xs, carry0, lengths=OPTION_LENGTHS, reverse=True)
    return (params, xs, carry0), got


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("name", NAMES)
def test_unroll_options_equal_default(name, option):
    # reversed with lengths: the path with the most places for an option to go wrong
    (params, xs, carry0), want = default_unroll(name)
    got = jaxrnn.unroll(
        CELLS[name], params, xs, carry0, lengths=OPTION_LENGTHS, reverse=True, **OPTIONS[option]
    )
    assert_close(got, want, TOL64)


def test_unroll_options_gradient_equals_default():
    # remat only changes the backward pass, so the forward comparison above cannot see it
    name = "lstm_peephole"
    cell, params = CELLS[name], random_params(name)
    xs, carry0 = random_xs((3, T, N_X)), random_carry(name, (3,))

    def loss(params, **kwargs):
        carry, ys = jaxrnn.unroll(cell, params, xs, carry0, lengths=OPTION_LENGTHS, **kwargs)
        return jnp.sum(ys**2) + sum(jnp.sum(leaf) for leaf in jax.tree.leaves(carry))

    want = jax.jit(jax.grad(loss))(params)
    for option in [OPTIONS["remat"], OPTIONS["remat_blocks_2"], OPTIONS["hoist"]]:
        got = jax.jit(jax.grad(functools.partial(loss, **option)))(params)
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(g, w, **TOL64)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("block", [2, 3, 5])
def test_unroll_remat_blocks_without_lengths_equal_default(block, reverse):
    name = "gru_before"
    cell, params = CELLS[name], random_params(name)
    xs = random_xs((2, T, N_X))

    def loss(params, **kwargs):
        carry, ys = jaxrnn.unroll(cell, params, xs, reverse=reverse, **kwargs)
        return jnp.sum(ys**2) + jnp.sum(carry), (carry, ys)

    value_and_grad = jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnames="remat")
    (_, want), want_grad = value_and_grad(params)
    (_, got), got_grad = value_and_grad(params, remat=block)
    assert_close(got, want, TOL64)
    for g, w in zip(jax.tree.leaves(got_grad), jax.tree.leaves(want_grad), strict=True):
        np.testing.assert_allclose(g, w, **TOL64)


@pytest.mark.parametrize("block", [40, 41])  # 2000 steps: 50 whole blocks, or 48 and 32 left over
def test_unroll_remat_blocks_memory_does_not_depend_on_divisibility(block):
    """XLA's own buffer plan for the compiled training step, not a timing: blocks keep one carry
    per block whether or not they divide T, far below one carry per step."""
    cell = jaxrnn.lstm()
    params = cell.init(jax.random.key(0), 8, 32)
    xs = jax.ShapeDtypeStruct((4, 2000, 8), jnp.float32)

    def temp_bytes(remat):
        def loss(params, xs):
            return jaxrnn.unroll(cell, params, xs, remat=remat)[1].sum()

        compiled = jax.jit(jax.grad(loss)).lower(params, xs).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    assert temp_bytes(block) < 0.35 * temp_bytes(True) < 0.35 * temp_bytes(False)


@pytest.mark.parametrize("remat", [0, -2, 2.5, "yes"])
def test_unroll_rejects_bad_remat(remat):
    cell = CELLS["rnn_tanh"]
    with pytest.raises(jaxrnn.InputError, match="unroll: expected remat to be a bool or an int"):
        jaxrnn.unroll(cell, random_params("rnn_tanh"), random_xs((T, N_X)), remat=remat)


# ------------------------------------------------------------------ non-finite values in padding

PADDING_LENGTHS = jnp.array([[T, 2], [0, 1]])  # full, mixed and empty, two batch dimensions
PADDING_PATHS = {
    "default": {},  # the fused backward pass for rnn, simplified_gru and lstm
    "autodiff": {"implementation": "scan"},
    "remat": {"remat": True},
    "remat_blocks_2": {"remat": 2},
    "hoist": {"implementation": "hoisted"},
    "reverse": {"reverse": True},
    "reverse_autodiff": {"reverse": True, "implementation": "scan"},
    "time_major": {"time_major": True},
}
MIN_CELLS = {
    "min_gru_blocked": jaxrnn.min_gru("blocked"),
    "min_gru_associative": jaxrnn.min_gru("associative"),
    "min_lstm_blocked": jaxrnn.min_lstm("blocked"),
    "min_lstm_associative": jaxrnn.min_lstm("associative"),
}
MIN_PATHS = {
    "parallel": {},
    "parallel_reverse": {"reverse": True},
    "parallel_time_major": {"time_major": True},
    "sequential": {"implementation": "scan"},
}


def assert_padding_never_read(run, args, xs, lengths, *, time_major=False):
    """NaN, Inf or −Inf written into the padded steps of xs (*batch, T, D) give exactly the outputs,
    last carry and gradients (w.r.t. args and xs) of zeros there, all finite, and a gradient of
    exactly zero on the padding. ``run(args, xs) -> (carry, ys)``, with xs time-major if asked."""
    padded = np.arange(xs.shape[-2]) >= np.asarray(lengths)[..., None]  # (*batch, T)
    if time_major:
        xs, padded = jnp.moveaxis(xs, -2, 0), np.moveaxis(padded, -1, 0)

    def loss(args, xs):
        outputs = run(args, xs)
        # fixed random cotangents, so that every output and carry entry reaches the gradient
        total = sum(
            jnp.sum(leaf * np.random.default_rng(i).normal(size=leaf.shape))
            for i, leaf in enumerate(jax.tree.leaves(outputs))
        )
        return total, outputs

    value_and_grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))
    want = value_and_grad(args, jnp.where(padded[..., None], 0.0, xs))
    for leaf in jax.tree.leaves(want):
        assert np.all(np.isfinite(leaf))
    np.testing.assert_array_equal(np.asarray(want[1][1])[padded], 0.0)
    for fill in (np.nan, np.inf, -np.inf):
        got = value_and_grad(args, jnp.where(padded[..., None], fill, xs))
        chex.assert_trees_all_equal(got, want)


@pytest.mark.parametrize("path", list(PADDING_PATHS))
@pytest.mark.parametrize("name", NAMES)
def test_unroll_nonfinite_padding_changes_no_value_or_gradient(name, path):
    options = PADDING_PATHS[path]

    def run(args, xs):
        params, carry0 = args
        return jaxrnn.unroll(CELLS[name], params, xs, carry0, lengths=PADDING_LENGTHS, **options)

    args = (random_params(name), random_carry(name, (2, 2)))
    assert_padding_never_read(
        run, args, random_xs((2, 2, T, N_X)), PADDING_LENGTHS, time_major="time_major" in options
    )


@pytest.mark.parametrize("path", list(MIN_PATHS))
@pytest.mark.parametrize("name", list(MIN_CELLS))
def test_unroll_minimal_nonfinite_padding_changes_no_value_or_gradient(name, path):
    cell, options = MIN_CELLS[name], MIN_PATHS[path]

    def run(args, xs):
        params, carry0 = args
        return jaxrnn.unroll(cell, params, xs, carry0, lengths=PADDING_LENGTHS, **options)

    params = cell.init(jax.random.key(0), N_X, N_A, jnp.float64)
    params = params._replace(b_x=random_xs(params.b_x.shape, seed=3))  # init's bias is zero
    carry0 = random_xs((2, 2, N_A), seed=4)
    assert_padding_never_read(
        run,
        (params, carry0),
        random_xs((2, 2, T, N_X)),
        PADDING_LENGTHS,
        time_major="time_major" in options,
    )


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("name", NAMES)
def test_bidirectional_nonfinite_padding_changes_no_value_or_gradient(name, fused):
    cell = CELLS[name]

    def run(params, xs):
        return jaxrnn.bidirectional(
            cell, params, xs, lengths=PADDING_LENGTHS, batch_directions=fused
        )

    params = jaxrnn.BidirectionalParams(random_params(name, seed=5), random_params(name, seed=6))
    assert_padding_never_read(run, params, random_xs((2, 2, T, N_X)), PADDING_LENGTHS)


@pytest.mark.parametrize("name", NAMES)
def test_stacked_nonfinite_padding_changes_no_value_or_gradient(name):
    # a unidirectional layer under a bidirectional one, with dropout between them
    cell = CELLS[name]

    def run(params, xs):
        return jaxrnn.stacked(
            cell,
            params,
            xs,
            lengths=PADDING_LENGTHS,
            dropout_rate=0.5,
            dropout_key=jax.random.key(7),
        )

    top = jaxrnn.BidirectionalParams(
        random_params(name, N_A, N_A, seed=8), random_params(name, N_A, N_A, seed=9)
    )
    params = jaxrnn.StackedParams((random_params(name), top))
    assert_padding_never_read(run, params, random_xs((2, 2, T, N_X)), PADDING_LENGTHS)


def test_unroll_length_zero_reads_no_input_and_passes_the_carry_through():
    # every example empty: the carry comes back as given, and no input gets any gradient
    name = "lstm"
    cell, params = CELLS[name], random_params(name)
    carry0, lengths = random_carry(name, (2,)), jnp.zeros(2, int)
    xs = jnp.full((2, T, N_X), np.nan)

    def loss(params, xs, carry0):
        carry, ys = jaxrnn.unroll(cell, params, xs, carry0, lengths=lengths)
        return jnp.sum(ys) + jnp.sum(carry.h) + 2 * jnp.sum(carry.c), (carry, ys)

    (_, (carry, ys)), grads = jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True)(
        params, xs, carry0
    )
    chex.assert_trees_all_equal(carry, carry0)
    np.testing.assert_array_equal(ys, 0.0)
    for leaf in jax.tree.leaves(grads[0]) + [grads[1]]:
        np.testing.assert_array_equal(leaf, 0.0)
    np.testing.assert_array_equal(grads[2].h, 1.0)
    np.testing.assert_array_equal(grads[2].c, 2.0)


# ---------------------------------------------------------------------------- jit, vmap, tracing


@pytest.mark.parametrize("name", PLUMBING)
def test_unroll_jit_equals_eager(name):
    cell, params = CELLS[name], random_params(name)
    xs, carry0 = random_xs((3, T, N_X)), random_carry(name, (3,))
    lengths = jnp.array([T, 2, 0])
    run = functools.partial(jaxrnn.unroll, cell, reverse=True)
    assert_close(
        jax.jit(run)(params, xs, carry0, lengths=lengths),
        run(params, xs, carry0, lengths=lengths),
        TOL64,
    )


@pytest.mark.parametrize("name", PLUMBING)
def test_unroll_vmap_over_examples_equals_batch(name):
    cell, params = CELLS[name], random_params(name)
    xs, carry0 = random_xs((3, T, N_X)), random_carry(name, (3,))
    lengths = jnp.array([T, 2, 0])

    def one(x, carry, length):  # x (T, n_x): no batch dimension
        return jaxrnn.unroll(cell, params, x, carry, lengths=length)

    got = jax.vmap(one)(xs, carry0, lengths)
    assert_close(got, jaxrnn.unroll(cell, params, xs, carry0, lengths=lengths), TOL64)


@pytest.mark.parametrize("name", NAMES)
def test_unroll_jit_does_not_retrace_on_new_values(name):
    cell = CELLS[name]
    chex.clear_trace_counter()  # the parametrised copies of `run` share one trace counter

    @jax.jit
    @chex.assert_max_traces(n=1)
    def run(params, xs, carry, lengths):
        return jaxrnn.unroll(cell, params, xs, carry, lengths=lengths)

    for seed, lengths in [(0, [T, 2, 0]), (1, [1, T, 3])]:
        params = random_params(name, seed=seed)
        xs, carry0 = random_xs((3, T, N_X), seed=seed), random_carry(name, (3,), seed=seed)
        got = run(params, xs, carry0, jnp.array(lengths))  # a second trace would raise
        assert_close(got, reference_batch(name, params, xs, carry0, lengths), TOL64)


# ------------------------------------------------------------------------------------- hypothesis


@st.composite
def unroll_cases(draw):
    batch_shape = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    n_steps = draw(st.integers(0, 6))
    n_examples = int(np.prod(batch_shape, dtype=int))
    lengths = draw(
        st.none()
        | st.lists(st.integers(0, n_steps), min_size=n_examples, max_size=n_examples).map(
            lambda ls: np.array(ls).reshape(batch_shape)
        )
    )
    return {
        "name": draw(st.sampled_from(NAMES)),
        "batch_shape": batch_shape,
        "n_steps": n_steps,
        "n_x": draw(st.integers(1, 4)),
        "n_a": draw(st.integers(1, 5)),
        "lengths": lengths,
        "reverse": draw(st.booleans()),
        "time_major": draw(st.booleans()),
        # options that must not change the result ride along
        "options": {
            "remat": draw(st.booleans()),
            "implementation": draw(st.sampled_from([None, "scan", "hoisted"])),
        },
        "seed": draw(st.integers(0, 2**16)),
    }


@settings(max_examples=25, deadline=None)
@given(case=unroll_cases())
def test_unroll_any_shape_matches_reference(case):
    name, batch_shape, seed = case["name"], case["batch_shape"], case["seed"]
    params = random_params(name, case["n_x"], case["n_a"], seed=seed)
    xs = random_xs((*batch_shape, case["n_steps"], case["n_x"]), seed=seed)
    carry0 = random_carry(name, batch_shape, case["n_a"], seed=seed)
    lengths = None if case["lengths"] is None else jnp.asarray(case["lengths"])

    xs_in = jnp.moveaxis(xs, -2, 0) if case["time_major"] else xs
    carry, ys = jaxrnn.unroll(
        CELLS[name],
        params,
        xs_in,
        carry0,
        lengths=lengths,
        reverse=case["reverse"],
        time_major=case["time_major"],
        **case["options"],
    )
    if case["time_major"]:
        ys = jnp.moveaxis(ys, 0, -2)
    want = reference_batch(name, params, xs, carry0, case["lengths"], case["reverse"])
    assert_close((carry, ys), want, TOL64)
