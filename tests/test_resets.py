"""Resets inside a sequence: every cell, implementation and combination against running each
segment alone.

The reference cuts every example at its resets and its length into segments and runs each one
from the initial carry with a Python loop over ``cell.step``, read forwards or backwards; the
outputs of padded steps are zero. Values and gradients (params, inputs, initial carry) must agree
to 1e-10 in float64.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cells_under_test import CELLS

import jaxrnn
from jaxrnn import InputError

ALL_CELLS = {**CELLS, "min_gru": jaxrnn.min_gru(), "min_lstm": jaxrnn.min_lstm()}
N_X, N_A, T, B = 3, 4, 9, 3
TOL = {"rtol": 1e-10, "atol": 1e-10}
RESETS = np.array(
    [
        [0, 0, 1, 0, 0, 0, 1, 1, 0],  # segments 0-1, 2-5, 6, 7-8
        [1, 0, 0, 0, 1, 0, 0, 0, 0],  # a reset at step 0 changes nothing; one past length 4
        [0, 0, 0, 0, 0, 0, 0, 0, 0],  # no reset: the whole sequence
    ],
    dtype=bool,
)
LENGTHS = np.array([9, 4, 6])


def random_tree(tree, seed):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda a: jnp.asarray(rng.normal(0.0, 0.5, a.shape), a.dtype), tree)


def problem(cell, seed=0, n_x=N_X):
    params = random_tree(cell.init(jax.random.key(seed), n_x, N_A, jnp.float64), seed)
    rng = np.random.default_rng(seed + 1)
    xs = jnp.asarray(rng.normal(size=(B, T, n_x)))
    carry = random_tree(cell.init_carry(params, (B,)), seed + 2)
    return params, xs, carry


def segments(resets_row, length):
    """[(first, end)] of one example: each reset inside its length starts a segment."""
    starts = [0] + [t for t in range(1, length) if resets_row[t]]
    return list(zip(starts, starts[1:] + [length], strict=True))


def reference(cell, params, xs, carry, resets, lengths, reverse, restart=None):
    """Each segment alone, a ``lax.scan`` of cell.step, on one example; (last carries, ys (B, T,
    H)), zeros at padded steps. The segment read first starts from ``carry`` (unless a reset
    starts it), every other one from ``restart`` (``carry`` if None)."""

    def step(state, x):
        return cell.step(params, state, x)

    restart = carry if restart is None else restart
    lasts, ys_all = [], []
    for b in range(xs.shape[0]):
        first = jax.tree.map(lambda leaf, b=b: leaf[b], carry)
        again = jax.tree.map(lambda leaf, b=b: leaf[b], restart)
        length = xs.shape[1] if lengths is None else int(lengths[b])
        pieces, last = [], first
        for begin, end in segments(resets[b], length):
            # a reset at step 0 starts the first segment anew: it reads the restart carry
            read_first = end == length if reverse else begin == 0 and not resets[b][0]
            start = first if read_first else again
            state, ys = jax.lax.scan(step, start, xs[b, begin:end], reverse=reverse)
            pieces.append(ys)
            if not reverse or begin == 0:  # read backwards, the first segment is read last
                last = state
        n_out = jax.eval_shape(step, first, xs[b, 0])[1].shape[-1]
        pieces.append(jnp.zeros((xs.shape[1] - length, n_out), xs.dtype))
        ys_all.append(jnp.concatenate(pieces))
        lasts.append(last)
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *lasts), jnp.stack(ys_all)


def assert_same_function(runs, expected_run, arguments, weights):
    """Each of ``runs`` (one, or a list) gives ``expected_run``'s last carry, outputs and
    gradients with respect to every argument. The reference is compiled and run once."""

    def compiled(run):
        def loss(*args):
            last, ys = run(*args)
            leaves = jax.tree.leaves(last)
            return jnp.sum(ys * weights) + sum(jnp.sum(leaf**2) for leaf in leaves), (last, ys)

        # values and gradients in one compiled program
        argnums = tuple(range(len(arguments)))
        return jax.jit(jax.value_and_grad(loss, argnums=argnums, has_aux=True))

    (_, want), expected = compiled(expected_run)(*arguments)
    for run in runs if isinstance(runs, list) else [runs]:
        (_, got), grads = compiled(run)(*arguments)
        pairs = zip(jax.tree.leaves((got, grads)), jax.tree.leaves((want, expected)), strict=True)
        for a, b in pairs:
            np.testing.assert_allclose(a, b, **TOL)


OPTIONS = {
    "forwards": {},
    "reverse_lengths": {"reverse": True, "lengths": LENGTHS},
    "remat_lengths": {"remat": 2, "lengths": LENGTHS},
}
# Every cell with reverse and lengths together (the case with the most to get wrong); the other
# combinations on one cell of each kind of kernel (fused, hoisted only, time-parallel).
CASES = [(name, "reverse_lengths") for name in ALL_CELLS] + [
    ("lstm", "forwards"),
    ("min_lstm", "forwards"),
    ("rnn_tanh", "remat_lengths"),
]


def with_resets(cell):
    """The implementations that take resets here: all but the native kernels, which run float32
    alone (tests/test_native.py checks them with resets against the scan)."""
    return [name for name in jaxrnn.kernels.available(cell) if name != "native"]


@pytest.mark.parametrize(("name", "option_name"), CASES)
def test_unroll_with_resets_is_each_segment_alone_for_every_implementation(name, option_name):
    cell, options = ALL_CELLS[name], OPTIONS[option_name]
    params, xs, carry = problem(cell)
    weights = jnp.asarray(np.random.default_rng(7).normal(size=(B, T, N_A)))
    lengths, reverse = options.get("lengths"), options.get("reverse", False)

    def expected(params, xs, carry):
        return reference(cell, params, xs, carry, RESETS, lengths, reverse)

    implementations = with_resets(cell)
    if "remat" in options:
        implementations = ["scan", "hoisted"]
    runs = []
    for implementation in implementations:

        def run(params, xs, carry, implementation=implementation):
            return jaxrnn.unroll(
                cell, params, xs, carry, resets=RESETS, implementation=implementation, **options
            )

        runs.append(run)
    assert_same_function(runs, expected, (params, xs, carry), weights)


def test_resets_time_major_and_extra_batch_dimensions_are_the_same_function():
    cell = CELLS["lstm"]
    params, xs, carry = problem(cell)
    _, ys = jaxrnn.unroll(cell, params, xs, carry, resets=RESETS, lengths=LENGTHS)
    _, ys_time_major = jaxrnn.unroll(
        cell,
        params,
        jnp.moveaxis(xs, 1, 0),
        carry,
        resets=RESETS.T,
        lengths=LENGTHS,
        time_major=True,
    )
    np.testing.assert_allclose(jnp.moveaxis(ys_time_major, 0, 1), ys, **TOL)
    # (1, B) batches: the same numbers with one more batch dimension
    carry_2d = jax.tree.map(lambda leaf: leaf[None], carry)
    _, ys_2d = jaxrnn.unroll(
        cell, params, xs[None], carry_2d, resets=RESETS[None], lengths=LENGTHS[None]
    )
    np.testing.assert_allclose(ys_2d[0], ys, **TOL)


def test_resets_under_vmap_over_params_match_each_params_alone():
    cell = CELLS["gru_after"]
    ensemble = jax.vmap(lambda key: cell.init(key, N_X, N_A, jnp.float64))(
        jax.random.split(jax.random.key(0), 2)
    )
    _, xs, _ = problem(cell)

    def run(params):
        return jaxrnn.unroll(cell, params, xs, resets=jnp.asarray(RESETS))[1]

    together = jax.jit(jax.vmap(run))(ensemble)
    for i in range(2):
        alone = run(jax.tree.map(lambda leaf, i=i: leaf[i], ensemble))
        np.testing.assert_allclose(together[i], alone, **TOL)


@pytest.mark.parametrize(
    ("name", "batch_directions"), [("lstm", True), ("lstm", False), ("min_gru", True)]
)
def test_bidirectional_with_resets_reads_each_segment_both_ways_within_itself(
    name, batch_directions
):
    cell = ALL_CELLS[name]
    params = random_tree(
        jaxrnn.bidirectional_init(cell, jax.random.key(3), N_X, N_A, jnp.float64), 3
    )
    _, xs, _ = problem(cell)
    carry = tuple(random_tree(cell.init_carry(params.forward, (B,)), s) for s in (4, 5))
    weights = jnp.asarray(np.random.default_rng(8).normal(size=(B, T, 2 * N_A)))

    def run(params, xs, carry):
        last, ys = jaxrnn.bidirectional(
            cell,
            params,
            xs,
            carry=carry,
            lengths=LENGTHS,
            resets=RESETS,
            batch_directions=batch_directions,
        )
        return tuple(last), ys

    def expected(params, xs, carry):
        last_f, ys_f = reference(cell, params.forward, xs, carry[0], RESETS, LENGTHS, False)
        last_b, ys_b = reference(cell, params.backward, xs, carry[1], RESETS, LENGTHS, True)
        return (last_f, last_b), jnp.concatenate([ys_f, ys_b], -1)

    assert_same_function(run, expected, (params, xs, carry), weights)


@pytest.mark.parametrize("implementation", ["layerwise", "scan"])
def test_a_deep_cell_with_resets_resets_every_layer(implementation):
    layer = CELLS["lstm"]
    cell = jaxrnn.deep(layer, 2)
    params, xs, carry = problem(cell)
    weights = jnp.asarray(np.random.default_rng(9).normal(size=(B, T, N_A)))

    def run(params, xs, carry):
        return jaxrnn.unroll(
            cell,
            params,
            xs,
            carry,
            resets=RESETS,
            lengths=LENGTHS,
            reverse=True,
            implementation=implementation,
        )

    def expected(params, xs, carry):
        # The deep cell is a cell: its own step, segment by segment.
        return reference(cell, params, xs, carry, RESETS, LENGTHS, True)

    assert_same_function(run, expected, (params, xs, carry), weights)


def test_stacked_with_a_bidirectional_layer_passes_the_resets_to_every_layer():
    cell = CELLS["gru_after"]
    key_bottom, key_top = jax.random.split(jax.random.key(4))
    bottom = random_tree(jaxrnn.bidirectional_init(cell, key_bottom, N_X, N_A, jnp.float64), 4)
    top = random_tree(cell.init(key_top, 2 * N_A, N_A, jnp.float64), 5)
    params = jaxrnn.StackedParams((bottom, top))
    _, xs, _ = problem(cell)
    _, ys = jaxrnn.stacked(cell, params, xs, lengths=LENGTHS, resets=RESETS)
    _, below = jaxrnn.bidirectional(cell, bottom, xs, lengths=LENGTHS, resets=RESETS)
    zeros = cell.init_carry(top, (B,))
    _, expected = reference(cell, top, below, zeros, RESETS, LENGTHS, False)
    np.testing.assert_allclose(ys, expected, **TOL)


def test_no_reset_is_the_unroll_without_resets_and_all_resets_make_steps_independent():
    cell = CELLS["rnn_tanh"]
    params, xs, carry = problem(cell)
    plain = jaxrnn.unroll(cell, params, xs, carry)
    none_set = jaxrnn.unroll(cell, params, xs, carry, resets=np.zeros((B, T), bool))
    for a, b in zip(jax.tree.leaves(plain), jax.tree.leaves(none_set), strict=True):
        np.testing.assert_array_equal(a, b)
    _, every = jaxrnn.unroll(cell, params, xs, carry, resets=np.ones((B, T), bool))
    one_step = jax.vmap(lambda x: cell.step(params, carry, x)[1], in_axes=1, out_axes=1)(xs)
    np.testing.assert_allclose(every, one_step, **TOL)


def test_resets_of_the_wrong_shape_or_dtype_are_refused_by_name():
    cell = CELLS["gru_after"]
    params, xs, _ = problem(cell)
    with pytest.raises(InputError, match=r"resets of shape \(3, 9\), got \(9, 3\)"):
        jaxrnn.unroll(cell, params, xs, resets=RESETS.T)
    with pytest.raises(InputError, match="resets to have dtype bool, got int"):
        jaxrnn.unroll(cell, params, xs, resets=RESETS.astype(np.int32))
    with pytest.raises(InputError, match=r"resets of shape \(9, 3\), got \(3, 9\)"):
        jaxrnn.unroll(cell, params, jnp.moveaxis(xs, 1, 0), resets=RESETS, time_major=True)
    bi = jaxrnn.bidirectional_init(cell, jax.random.key(0), N_X, N_A, jnp.float64)
    with pytest.raises(InputError, match=r"bidirectional: expected resets of shape \(3, 9\)"):
        jaxrnn.bidirectional(cell, bi, xs, resets=RESETS[:, :4])


def _restart_case(cell, seed=11):
    params, xs, carry = problem(cell, seed)
    restart = random_tree(cell.init_carry(params, (B,)), seed + 5)
    weights = jnp.asarray(np.random.default_rng(seed).normal(size=(B, T, N_A)))
    return params, xs, carry, restart, weights


@pytest.mark.parametrize(
    ("name", "option_name"),
    [("lstm", "reverse_lengths"), ("lstm", "forwards"), ("min_lstm", "reverse_lengths")],
)
def test_reset_carry_starts_every_later_segment_there_in_every_implementation(name, option_name):
    """An episode ends inside a rollout that went on from the last one: the first segment reads
    ``carry``, each segment after a reset reads ``reset_carry``."""
    cell, options = ALL_CELLS[name], OPTIONS[option_name]
    params, xs, carry, restart, weights = _restart_case(cell)
    lengths, reverse = options.get("lengths"), options.get("reverse", False)

    def expected(params, xs, carry, restart):
        return reference(cell, params, xs, carry, RESETS, lengths, reverse, restart)

    runs = []
    for implementation in with_resets(cell):

        def run(params, xs, carry, restart, implementation=implementation):
            return jaxrnn.unroll(
                cell,
                params,
                xs,
                carry,
                resets=RESETS,
                reset_carry=restart,
                implementation=implementation,
                **options,
            )

        runs.append(run)
    assert_same_function(runs, expected, (params, xs, carry, restart), weights)


@pytest.mark.parametrize("implementation", ["layerwise", "scan"])
def test_reset_carry_of_a_deep_cell_restarts_every_layer_there(implementation):
    cell = jaxrnn.deep(CELLS["gru_after"], 2)
    params, xs, carry, restart, weights = _restart_case(cell)

    def run(params, xs, carry, restart):
        return jaxrnn.unroll(
            cell,
            params,
            xs,
            carry,
            resets=RESETS,
            reset_carry=restart,
            lengths=LENGTHS,
            implementation=implementation,
        )

    def expected(params, xs, carry, restart):
        return reference(cell, params, xs, carry, RESETS, LENGTHS, False, restart)

    assert_same_function(run, expected, (params, xs, carry, restart), weights)


@pytest.mark.parametrize("batch_directions", [True, False])
def test_reset_carry_of_a_bidirectional_layer_is_one_per_direction(batch_directions):
    cell = CELLS["lstm"]
    params = random_tree(
        jaxrnn.bidirectional_init(cell, jax.random.key(3), N_X, N_A, jnp.float64), 3
    )
    _, xs, _ = problem(cell)
    carry = tuple(random_tree(cell.init_carry(params.forward, (B,)), s) for s in (4, 5))
    restart = tuple(random_tree(cell.init_carry(params.forward, (B,)), s) for s in (6, 7))
    weights = jnp.asarray(np.random.default_rng(8).normal(size=(B, T, 2 * N_A)))

    def run(params, xs, carry, restart):
        last, ys = jaxrnn.bidirectional(
            cell,
            params,
            xs,
            carry=carry,
            reset_carry=restart,
            lengths=LENGTHS,
            resets=RESETS,
            batch_directions=batch_directions,
        )
        return tuple(last), ys

    def expected(params, xs, carry, restart):
        directions = ((params.forward, False), (params.backward, True))
        (last_f, ys_f), (last_b, ys_b) = (
            reference(cell, p, xs, c, RESETS, LENGTHS, reverse, r)
            for (p, reverse), c, r in zip(directions, carry, restart, strict=True)
        )
        return (last_f, last_b), jnp.concatenate([ys_f, ys_b], -1)

    assert_same_function(run, expected, (params, xs, carry, restart), weights)


def test_a_numpy_reset_carry_for_one_direction_is_the_same_in_both_forms():
    cell = CELLS["gru_after"]
    params = jaxrnn.bidirectional_init(cell, jax.random.key(6), N_X, N_A, jnp.float64)
    _, xs, carry = problem(cell)
    restart = (np.zeros((B, N_A)), None)  # the backward direction restarts at its carry
    one_scan, two_scans = (
        jaxrnn.bidirectional(
            cell, params, xs, carry=(carry, carry), reset_carry=restart, resets=RESETS, **options
        )
        for options in ({}, {"batch_directions": False})
    )
    for a, b in zip(jax.tree.leaves(one_scan), jax.tree.leaves(two_scans), strict=True):
        np.testing.assert_allclose(a, b, **TOL)


def test_stacked_passes_each_layer_its_reset_carry():
    cell = CELLS["gru_after"]
    params = random_tree(
        jaxrnn.stacked_init(cell, jax.random.key(5), N_X, N_A, 2, dtype=jnp.float64), 5
    )
    _, xs, _ = problem(cell)
    restart = tuple(
        random_tree(cell.init_carry(layer, (B,)), 9 + i) for i, layer in enumerate(params.layers)
    )
    _, ys = jaxrnn.stacked(cell, params, xs, resets=RESETS, reset_carry=(None, restart[1]))
    _, below = jaxrnn.unroll(cell, params.layers[0], xs, resets=RESETS)
    zeros = cell.init_carry(params.layers[1], (B,))
    _, expected = reference(cell, params.layers[1], below, zeros, RESETS, None, False, restart[1])
    np.testing.assert_allclose(ys, expected, **TOL)


def test_reset_carry_without_resets_or_of_the_wrong_shape_is_refused_by_name():
    cell = CELLS["gru_after"]
    params, xs, carry = problem(cell)
    with pytest.raises(
        InputError, match="unroll: expected resets with reset_carry, got resets=None"
    ):
        jaxrnn.unroll(cell, params, xs, reset_carry=carry)
    with pytest.raises(InputError, match=r"unroll: expected reset_carry of shape \(3, 4\)"):
        jaxrnn.unroll(cell, params, xs, resets=RESETS, reset_carry=carry[:2])
    bi = jaxrnn.bidirectional_init(cell, jax.random.key(0), N_X, N_A, jnp.float64)
    with pytest.raises(InputError, match="bidirectional: expected resets with reset_carry"):
        jaxrnn.bidirectional(cell, bi, xs, reset_carry=(None, carry))
    stacked_params = jaxrnn.StackedParams((params,))
    with pytest.raises(InputError, match="stacked: expected resets with reset_carry"):
        jaxrnn.stacked(cell, stacked_params, xs, reset_carry=(carry,))
    with pytest.raises(InputError, match="stacked: expected reset_carry to be a tuple of 1"):
        jaxrnn.stacked(
            cell, jaxrnn.StackedParams((params,)), xs, resets=RESETS, reset_carry=(carry, carry)
        )
