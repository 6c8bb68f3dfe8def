"""The native LSTM and GRU kernels (`jaxrnn._native`) against the plain scan, the definition.

Values and gradients to 1e-5 in float32 for every option the kernel runs (reverse, batch layouts,
jit, vmap over the batch and over params, the carry given or not), the automatic choice that
takes it or leaves it, and the clear errors when it is forced where it cannot run."""

import ctypes
import functools
import importlib.machinery
import os
import platform
import sys
import time
from pathlib import Path

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from kernel_checks import KEPT_JITTED, assert_trees_close, loss_of, value_and_grads

import jaxrnn
from jaxrnn import _native, kernels

ON_LINUX_X86 = sys.platform == "linux" and platform.machine() == "x86_64"
needs_kernel = pytest.mark.skipif(
    not ON_LINUX_X86, reason="the native kernel is built for Linux x86-64 only"
)


@pytest.fixture(autouse=True)
def calls_on_the_worker_thread(monkeypatch):
    """Every kernel call of these tests runs on the worker thread and its team, as a call above
    the size that runs alone on the calling thread does, so that their small problems test the
    teams' splits; the tests of the small calls' own path take the variable away."""
    monkeypatch.setenv("JAXRNN_SMALL_CALLS", "team")


def test_the_kernel_is_built_and_loads_on_linux_x86_64():
    if not ON_LINUX_X86:
        assert not _native.available()
        return
    assert _native.available(), _native.unavailable_reason()
    assert "native" in kernels.available(jaxrnn.lstm())
    assert "native" in kernels.available(jaxrnn.lstm(peephole=True))
    assert "native" in kernels.available(jaxrnn.gru(reset="after"))
    assert "native" in kernels.available(jaxrnn.gru())
    assert "native" in kernels.available(jaxrnn.simplified_gru())
    assert "native" not in kernels.available(jaxrnn.min_gru())


# The GRU with the reset after the recurrent product (PyTorch's) and the course's, before.
CELLS = {
    "rnn": jaxrnn.rnn(),
    "rnn_relu": jaxrnn.rnn("relu"),
    "lstm": jaxrnn.lstm(),
    "lstm_peephole": jaxrnn.lstm(peephole=True),
    "gru": jaxrnn.gru(reset="after"),
    "gru_before": jaxrnn.gru(),
    "simplified_gru": jaxrnn.simplified_gru(),
}


def problem(batch_shape=(5,), n_steps=7, n_x=3, n_a=6, seed=0, time_major=False, kind="lstm"):
    cell = CELLS[kind]
    rng = np.random.default_rng(seed)
    # Only the layout of the cell's parameters: drawing them would compile programs for nothing.
    params = jax.eval_shape(lambda key: cell.init(key, n_x, n_a), jax.random.key(seed))
    # Biases and weights away from their initial values, so that every gate matters; weights
    # scaled by their fan-in, so that float32 rounding is not amplified by a chaotic recurrence
    # (a ReLU's, unbounded, grew 1e3-fold over 40 steps at the others' scale).
    scale = 0.8 if kind == "rnn_relu" else 1.5
    params = jax.tree.map(
        lambda a: jnp.asarray(
            rng.normal(0.0, 0.6 if a.ndim == 1 else scale / np.sqrt(a.shape[0]), a.shape),
            jnp.float32,
        ),
        params,
    )
    if getattr(params, "peephole", None) is not None:
        # Each peephole weight reads one memory cell: at the weights' scale for a fan-in of 3,
        # the float32 scan itself strayed 5e-5 from the float64 one, as far as the kernel did.
        params = params._replace(peephole=jnp.asarray(np.asarray(params.peephole) / 3))
    shape = (n_steps, *batch_shape, n_x) if time_major else (*batch_shape, n_steps, n_x)
    xs = jnp.asarray(rng.normal(size=shape), jnp.float32)
    carry = jax.tree.map(
        lambda a: jnp.asarray(rng.normal(0.0, 0.5, a.shape), jnp.float32),
        jax.eval_shape(lambda params: cell.init_carry(params, batch_shape), params),
    )
    weights = jnp.asarray(rng.normal(size=(*shape[:-1], n_a)), jnp.float32)
    return cell, params, xs, carry, weights


def assert_native_equals_scan(cell, params, xs, carry, weights, options, wrt=(0, 1, 2)):
    """The value of a loss over the outputs and the last carry, and its gradients with respect to
    the arguments `wrt` of (params, xs, carry), native against the scan, `unroll` given
    ``options``."""
    got, want = (
        value_and_grads(implementation, cell, params, xs, carry, weights, wrt=wrt, **options)
        for implementation in ("native", "scan")
    )
    assert_trees_close(got, want)


@needs_kernel
@pytest.mark.parametrize("kind", sorted(CELLS))
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize(
    "batch_shape, n_steps, n_x, n_a",
    [
        ((5,), 7, 3, 6),
        ((1,), 1, 1, 1),
        ((), 9, 4, 5),
        ((2, 3), 4, 2, 8),
        ((32,), 40, 16, 64),
        ((16,), 5, 8, 128),  # a step's gates split across threads (LSTM), or the examples
        ((3,), 6, 5, 136),  # a few sequences, their units split across threads unevenly
        ((1,), 4, 3, 272),  # one sequence: blocks of 8 vectors and a remainder on each thread
        # inputs wider than the gates: the weight gradient's product as it lies (OneWeightGradient)
        ((6,), 5, 40, 4),
    ],
    ids=[
        "small",
        "one-of-everything",
        "unbatched",
        "two-batch-dims",
        "wider",
        "threaded-gates",
        "few-rows-threaded",
        "one-row-wide",
        "inputs-wider-than-the-gates",
    ],
)
def test_values_and_gradients_equal_the_scan(kind, reverse, batch_shape, n_steps, n_x, n_a):
    args = problem(batch_shape, n_steps, n_x, n_a, kind=kind)
    got = value_and_grads("native", *args, reverse=reverse)
    want = value_and_grads("scan", *args, reverse=reverse)
    assert_trees_close(got, want)
    cell, params, xs, carry, _ = args
    outputs = [
        jaxrnn.unroll(cell, params, xs, carry, implementation=name, reverse=reverse)
        for name in ("native", "scan")
    ]
    assert_trees_close(*outputs)


def native_call_equations(fn, *args):
    """The native FFI calls in ``fn``'s jaxpr, nested jaxprs included, in program order."""
    found = []

    def visit(jaxpr):
        for eqn in jaxpr.eqns:
            if str(eqn.params.get("target_name", "")).startswith("jaxrnn_"):
                found.append(eqn)
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                visit(sub)

    visit(jax.make_jaxpr(fn)(*args).jaxpr)
    return found


def backward_calls(fn, *args):
    """The native backward calls in ``fn``'s jaxpr, each as the shapes of its results (dL/dxs
    first)."""
    return [
        tuple(var.aval.shape for var in eqn.outvars)
        for eqn in native_call_equations(fn, *args)
        if "backward" in str(eqn.params["target_name"])
    ]


SOME_GRADIENTS_PROBLEM = ((5,), 7, 3, 24)


def term_losses(implementation, cell, weights, reverse, params, xs, carry):
    """The loss's two terms: from the outputs, and from the last carry."""
    last, ys = jaxrnn.unroll(
        cell, params, xs, carry, implementation=implementation, reverse=reverse
    )
    return {
        "ys": jnp.sum(ys * weights),
        "last": sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree.leaves(last)),
    }


@functools.cache
def scan_value_and_grads_of_each_term(kind, reverse):
    """By the scan, each term's value and gradients with respect to all of (params, xs, carry):
    every choice of arguments and terms of the test below reads its reference from these."""
    cell, params, xs, carry, weights = problem(*SOME_GRADIENTS_PROBLEM, kind=kind)

    def term_loss(term, params, xs, carry):
        return term_losses("scan", cell, weights, reverse, params, xs, carry)[term]

    return {
        term: jax.jit(jax.value_and_grad(functools.partial(term_loss, term), argnums=(0, 1, 2)))(
            params, xs, carry
        )
        for term in ("ys", "last")
    }


@needs_kernel
@pytest.mark.parametrize("kind", sorted(CELLS))
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize(
    "argnums",
    [(0,), (1,), (2,), (0, 2), (1, 2)],
    ids=["params", "xs", "carry", "no-xs", "no-params"],
)
@pytest.mark.parametrize("used", [("ys",), ("last",), ("ys", "last")], ids=["ys", "last", "both"])
def test_gradients_of_some_arguments_and_some_outputs_equal_the_scan(kind, reverse, argnums, used):
    # What is not differentiated reaches the backward rule as unperturbed (xs, the weights: their
    # products are left out) and what does not feed the loss as a symbolic zero cotangent.
    cell, params, xs, carry, weights = problem(*SOME_GRADIENTS_PROBLEM, kind=kind)

    def loss(params, xs, carry):
        terms = term_losses("native", cell, weights, reverse, params, xs, carry)
        return sum(terms[term] for term in used)

    got = jax.jit(jax.value_and_grad(loss, argnums=argnums))(params, xs, carry)
    # The scan's value and gradients, as the sum of its terms' (the same for every argnums)
    terms = [scan_value_and_grads_of_each_term(kind, reverse)[term] for term in used]
    value = sum(value for value, _ in terms)
    grads = tuple(
        jax.tree.map(lambda *parts: sum(parts), *(g[i] for _, g in terms)) for i in argnums
    )
    assert_trees_close(got, (value, grads))
    (results,) = backward_calls(jax.grad(loss, argnums=argnums), params, xs, carry)
    assert results[0] == (xs.shape if 1 in argnums else (0,))
    weight_shapes = [leaf.shape for leaf in jax.tree.leaves(params)]
    weight_results = [shape for shape in results[1:] if shape in weight_shapes]
    # The RNN's and the LSTM's two biases reach the kernel as one sum: 3 weight results, with
    # peepholes 4, the GRU's 4. An LSTM without peepholes passes an empty array for them, whose
    # gradient is empty.
    n_weights = {"lstm": 3, "lstm_peephole": 4, "gru": 4, "gru_before": 4}.get(kind, 3)
    empty_peephole = kind == "lstm"
    assert len(weight_results) == (n_weights if 0 in argnums else 0)
    assert results.count((0,)) == (
        (1 - (1 in argnums)) + (n_weights if 0 not in argnums else 0) + empty_peephole
    )


@needs_kernel
@pytest.mark.parametrize("kind", sorted(CELLS))
def test_a_stack_skips_the_input_gradient_of_its_first_layer_alone(kind):
    cell = CELLS[kind]
    xs = jnp.asarray(np.random.default_rng(7).normal(size=(3, 6, 4)), jnp.float32)
    params = jaxrnn.stacked_init(cell, jax.random.key(1), 4, 5, 2, bidirectional=True)

    def loss(params):
        return jnp.sum(jaxrnn.stacked(cell, params, xs, implementation="native")[1] ** 2)

    # Backward in reverse order of layers: the second layer's two directions read both of the
    # first's (2 × 5 inputs), whose gradients need dL/dxs; the first layer's read data. The
    # LSTM's two directions are one call, which gives dL/dxs for each direction apart.
    d_xs = [results[0] for results in backward_calls(jax.grad(loss), params)]
    if kind.startswith("lstm"):
        assert d_xs == [(2, 3, 6, 10), (0,)]
    else:
        assert d_xs == [(3, 6, 10), (3, 6, 10), (0,), (0,)]
    got = jax.value_and_grad(loss)(params)
    want = jax.value_and_grad(
        lambda p: jnp.sum(jaxrnn.stacked(cell, p, xs, implementation="scan")[1] ** 2)
    )(params)
    assert_trees_close(got, want)


@needs_kernel
@pytest.mark.parametrize("kind", sorted(CELLS))
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize(
    "lengths, n_a",
    [
        ([7, 3, 1, 0, 2], 24),
        ([2, 0], 136),
        ([7, 7, 6, 1], 136),
        ([5, 7, 7, 0, 3, 7, 1, 4, 2, 6, 7, 7, 0, 3, 5, 6], 24),
        ([6, 0, 7, 2, 7, 1], 136),
    ],
    ids=["five", "two-with-an-empty-one", "four-long", "sixteen", "six-wide"],
)
def test_lengths_freeze_the_carry_and_zero_the_outputs_as_the_scan_does(
    kind, reverse, lengths, n_a
):
    # Up to four examples run the few-rows path, more the team; H = 136 splits the units across
    # threads unevenly.
    args = problem((len(lengths),), 7, 5, n_a, kind=kind, seed=len(lengths))
    lengths = jnp.asarray(lengths)
    got = value_and_grads("native", *args, reverse=reverse, lengths=lengths)
    want = value_and_grads("scan", *args, reverse=reverse, lengths=lengths)
    assert_trees_close(got, want)
    ys = jaxrnn.unroll(*args[:4], implementation="native", reverse=reverse, lengths=lengths)[1]
    past_the_end = np.arange(7)[None, :] >= np.asarray(lengths)[:, None]
    assert np.all(np.asarray(ys)[past_the_end] == 0.0)


@needs_kernel
@pytest.mark.parametrize("products", ["own", "onednn"])
@pytest.mark.parametrize("kind", sorted(CELLS))
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize(
    "n_examples, n_a",
    [(5, 6), (7, 130), (13, 64)],
    ids=["one-thread-part-block", "threads-uneven-part-block", "rows-past-six"],
)
def test_either_product_of_the_teams_steps_equals_the_scan(
    monkeypatch, products, kind, reverse, n_examples, n_a
):
    # JAXRNN_STEP_PRODUCTS chooses, at each call, the kernel's own products over weights packed
    # in blocks of 16 columns or oneDNN's, whichever this CPU would take. The sizes leave a block
    # part-filled (a thread's gates 24 or 264 columns wide in the LSTM, 18 or 198 in the GRU),
    # split the units unevenly and leave rows over after groups of six.
    monkeypatch.setenv("JAXRNN_STEP_PRODUCTS", products)
    args = problem((n_examples,), 6, 5, n_a, kind=kind, seed=n_examples)
    lengths = jnp.asarray((np.arange(n_examples) * 5) % 7)  # 0 to 6, the full length among them
    for options in ({}, {"lengths": lengths}):
        got = value_and_grads("native", *args, reverse=reverse, **options)
        want = value_and_grads("scan", *args, reverse=reverse, **options)
        assert_trees_close(got, want)


@needs_kernel
@pytest.mark.parametrize("products", ["own", "onednn"])
@pytest.mark.parametrize("kind", sorted(CELLS))
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize(
    "lengths",
    [
        [1, 2, 3, 4, 5, 6, 6, 0],
        [6, 6, 5, 5, 2, 2, 1, 1],
        [0, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 6],
        [3, 3, 3, 3, 3, 3, 3, 3],
    ],
    ids=["ascending", "descending-with-ties", "all-empty", "one-long-last", "all-half"],
)
def test_a_padded_team_in_any_order_equals_the_scan(monkeypatch, products, kind, reverse, lengths):
    # A team runs its longest examples first and multiplies, at each step, only the rows of the
    # examples that run it; the weight gradients and dL/dxs are products over the steps run alone.
    # Every arrangement of the lengths must give what the scan gives, in the caller's order.
    monkeypatch.setenv("JAXRNN_STEP_PRODUCTS", products)
    args = problem((len(lengths),), 6, 5, 40, kind=kind, seed=sum(lengths))
    lengths = jnp.asarray(lengths)
    got = value_and_grads("native", *args, reverse=reverse, lengths=lengths)
    want = value_and_grads("scan", *args, reverse=reverse, lengths=lengths)
    assert_trees_close(got, want)
    (_, (d_params, d_xs, _)) = got
    past_the_end = np.arange(6)[None, :] >= np.asarray(lengths)[:, None]
    assert np.all(np.asarray(d_xs)[past_the_end] == 0.0)
    if not np.any(np.asarray(lengths)):  # nothing runs: no weight gradient at all
        assert all(np.all(np.asarray(leaf) == 0.0) for leaf in jax.tree.leaves(d_params))


RESETS = np.array(  # segments start where 1; the first row's reset at step 0 reads the restart
    [
        [1, 0, 1, 0, 0, 1, 1],
        [0, 0, 0, 1, 0, 0, 0],
        [0, 1, 0, 1, 0, 1, 0],
        [0, 0, 0, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0, 1],
        [1, 1, 1, 1, 1, 1, 1],
        [0, 0, 0, 0, 0, 1, 0],
        [0, 1, 1, 0, 0, 0, 0],
    ],
    dtype=bool,
)


@needs_kernel
@pytest.mark.parametrize("products", ["own", "onednn"])
@pytest.mark.parametrize("kind", sorted(CELLS))
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("n_examples", [3, 8], ids=["few", "team"])
@pytest.mark.parametrize("lengths", [None, [7, 4, 0, 6, 2, 7, 5, 3]], ids=["full", "lengths"])
@pytest.mark.parametrize("restart", [False, True], ids=["from-carry", "reset-carry"])
def test_resets_restart_the_carry_as_the_scan_does(
    monkeypatch, products, kind, reverse, n_examples, lengths, restart
):
    # Packed rows of a language model: each segment from the initial carry (or reset_carry),
    # with the gradients of both carries, lengths cutting segments short.
    monkeypatch.setenv("JAXRNN_STEP_PRODUCTS", products)
    cell, params, xs, carry, weights = problem((n_examples,), 7, 5, 40, kind=kind, seed=n_examples)
    arrays = {"resets": jnp.asarray(RESETS[:n_examples])}
    if lengths is not None:
        arrays["lengths"] = jnp.asarray(lengths[:n_examples])
    again = jax.tree.map(lambda a: jnp.cos(3.0 * a), carry)
    got, want = (
        value_and_grads_from_two_carries(implementation, cell, reverse, restart)(
            params, xs, carry, again, weights, arrays
        )
        for implementation in ("native", "scan")
    )
    assert_trees_close(got, want)


@functools.lru_cache(maxsize=KEPT_JITTED)
def value_and_grads_from_two_carries(implementation, cell, reverse, restart):
    """The jitted loss of `test_resets_restart_the_carry_as_the_scan_does` and its gradients
    with respect to (params, xs, carry, reset carry), compiled once for the choices of products
    that the kernel reads at each call."""

    def loss(params, xs, carry, again, weights, arrays):
        last, ys = jaxrnn.unroll(
            cell,
            params,
            xs,
            carry,
            implementation=implementation,
            reverse=reverse,
            reset_carry=again if restart else None,
            **arrays,
        )
        return loss_of(last, ys, weights)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3)))


THREAD_SHARING_CASES = {
    # two parts of a few sequences each (kFewRows), one of four and one of three
    "few-in-each-part": (7, None, None),
    # parts balanced by the steps run, not by the count: the long examples in a part of their own
    "balanced-by-steps": (13, [6, 6, 6, 0, 0, 1, 0, 2, 0, 0, 0, 0, 1], None),
    # team-sized parts, padded, with segments restarting from the carry
    "teams-with-resets": (18, [(5 * i) % 7 for i in range(18)], RESETS),
}


@needs_kernel
@pytest.mark.parametrize("kind", sorted(CELLS))
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("case", sorted(THREAD_SHARING_CASES))
def test_threads_that_each_run_a_block_of_the_examples_equal_the_scan(
    monkeypatch, kind, reverse, case
):
    # JAXRNN_THREADS_SHARE=examples: each thread runs a block of the examples as a call of its
    # own, the blocks adding their weight and bias gradients at the end, for every cell, whatever
    # the default would choose. (The other tests run the team that splits each step's units: the
    # LSTM's always, the other cells' below 16 examples. With one core there is one block.)
    monkeypatch.setenv("JAXRNN_THREADS_SHARE", "examples")
    n_examples, lengths, resets = THREAD_SHARING_CASES[case]
    cell, params, xs, carry, weights = problem((n_examples,), 6, 5, 40, kind=kind, seed=n_examples)
    options = {"reverse": reverse}
    if lengths is not None:
        options["lengths"] = jnp.asarray(lengths)
    if resets is not None:
        options["resets"] = jnp.asarray(np.resize(resets[:, :6], (n_examples, 6)))
    assert_native_equals_scan(cell, params, xs, carry, weights, options)


@needs_kernel
@pytest.mark.parametrize("products", ["own", "onednn"])
@pytest.mark.parametrize("kind", ["gru", "lstm", "lstm_peephole", "rnn", "simplified_gru"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_a_team_that_runs_its_rows_in_two_groups_equals_the_scan(
    monkeypatch, products, kind, reverse
):
    # 37 examples of 128 units: with two or more cores a team splits each step's units and runs
    # its rows in two groups (RowGroups in common.h: 19, and 18 padded to 19), each member
    # waiting only for the others' units of the group it multiplies next: the forward steps of
    # the LSTM's kernel (which runs the basic RNN and the simplified GRU too) and the backward
    # steps of every kernel but the course's GRU's. The lengths leave the second group without a
    # slot at the last steps (read backwards, at the first ones), and segments restart from the
    # carry.
    monkeypatch.setenv("JAXRNN_THREADS_SHARE", "units")
    monkeypatch.setenv("JAXRNN_STEP_PRODUCTS", products)
    assert_native_equals_scan(*team_of_37(kind, reverse, n_x=5, seed=3, spread=5))


def team_of_37(kind: str, reverse: bool, *, n_x: int, seed: int, spread: int) -> tuple:
    """37 examples of 128 units over 6 steps, the lengths (spread * i) % 7 and segments that
    restart from the carry: the arguments of `assert_native_equals_scan`."""
    n_examples, n_steps = 37, 6
    cell, params, xs, carry, weights = problem(
        (n_examples,), n_steps, n_x, 128, kind=kind, seed=seed
    )
    options = {
        "reverse": reverse,
        "lengths": jnp.asarray([(spread * i) % 7 for i in range(n_examples)]),
        "resets": jnp.asarray(np.resize(RESETS[:, :n_steps], (n_examples, n_steps))),
    }
    return cell, params, xs, carry, weights, options


@needs_kernel
@pytest.mark.parametrize("input_side", ["steps", "before"])
@pytest.mark.parametrize("share", ["units", "examples"])
@pytest.mark.parametrize("kind", ["lstm", "lstm_peephole", "rnn", "simplified_gru"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_a_teams_input_side_before_its_steps_equals_the_scan(
    monkeypatch, input_side, share, kind, reverse
):
    # JAXRNN_INPUT_SIDE=before: the forward steps of the LSTM's kernel (which runs the basic RNN
    # and the simplified GRU too) take x_t w_x + b of every step run from one product before the
    # loop, and multiply only h_{t-1} at each step (InputSideBefore in common.h; by default where
    # the inputs are twice as wide as the carry). 37 examples of 128 units: a team of two cores,
    # or each core a block of the examples; the lengths leave slots without a step at the end
    # (read backwards, at the start), and segments restart from the carry.
    monkeypatch.setenv("JAXRNN_THREADS_SHARE", share)
    monkeypatch.setenv("JAXRNN_INPUT_SIDE", input_side)
    assert_native_equals_scan(*team_of_37(kind, reverse, n_x=9, seed=5, spread=3))


# Sequences long enough that the backward pass adds its weight gradients in several chunks of
# about 512 rows of dL/dz each (DzBySteps in common.h): a padded team of 6 in chunks of 86 steps,
# the last of 2, the lengths leaving chunks of every size; 3 whole sequences in chunks of 171.
CHUNK_CASES = {
    "padded-team": (6, 260, [260, 0, 173, 259, 1, 87]),
    "few": (3, 400, None),
}


@needs_kernel
@pytest.mark.parametrize("kind", ["gru", "gru_before", "lstm_peephole", "rnn", "simplified_gru"])
@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("case", sorted(CHUNK_CASES))
@pytest.mark.parametrize("wrt", [(0, 2), (0, 1, 2)], ids=["params-carry", "and-xs"])
def test_weight_gradients_added_chunk_by_chunk_equal_the_scan(kind, reverse, case, wrt):
    # Without dL/dxs the steps keep two chunks of dL/dz in turn (the GRU's dL/dz_h always);
    # with it, all of them. The course's GRU adds blocks of dL/dz's columns (r and u, c~) to
    # blocks of dL/dw_h's. The outputs' weights are scaled by the steps, so that the loss, a sum
    # over 10⁵ outputs, is not dominated by float32's rounding of that sum.
    n_examples, n_steps, lengths = CHUNK_CASES[case]
    cell, params, xs, carry, weights = problem((n_examples,), n_steps, 3, 128, kind=kind, seed=7)
    weights = weights / n_steps
    options = {"reverse": reverse}
    if lengths is not None:
        options["lengths"] = jnp.asarray(lengths)
    assert_native_equals_scan(cell, params, xs, carry, weights, options, wrt)


@needs_kernel
@pytest.mark.parametrize("kind", sorted(CELLS))
def test_an_unknown_way_for_threads_to_share_a_call_is_a_clear_error(monkeypatch, kind):
    cell, params, xs, carry, _ = problem((20,), 4, 3, 8, kind=kind)
    monkeypatch.setenv("JAXRNN_THREADS_SHARE", "rows")
    with pytest.raises(
        jaxrnn.InputError, match=r"JAXRNN_THREADS_SHARE 'units', 'examples' or unset, got 'rows'"
    ):
        jaxrnn.unroll(cell, params, xs, carry, implementation="native")


@needs_kernel
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_an_unknown_number_of_row_groups_is_a_clear_error(monkeypatch, kind):
    monkeypatch.setenv("JAXRNN_THREADS_SHARE", "units")
    monkeypatch.setenv("JAXRNN_ROW_GROUPS", "3")
    cell, params, xs, carry, _ = problem((37,), 4, 3, 128, kind=kind)
    message = r"expected the environment variable JAXRNN_ROW_GROUPS '1', '2' or unset, got '3'"
    with pytest.raises(jaxrnn.InputError, match=message):
        jaxrnn.unroll(cell, params, xs, carry, implementation="native")
    # Set after compiling: the kernels read it again where a team runs its steps, the LSTM's
    # forward steps and every kernel's backward ones.
    monkeypatch.setenv("JAXRNN_ROW_GROUPS", "2")
    loss = jax.jit(
        jax.grad(
            lambda params: jnp.sum(
                jaxrnn.unroll(cell, params, xs, carry, implementation="native")[1]
            )
        )
    )
    want = loss(params)
    monkeypatch.setenv("JAXRNN_ROW_GROUPS", "3")
    with pytest.raises(ValueError, match=r"(lstm|gru) kernel: " + message):
        jax.block_until_ready(loss(params))
    monkeypatch.setenv("JAXRNN_ROW_GROUPS", "1")
    assert_trees_close(loss(params), want)


@needs_kernel
def test_an_unknown_choice_of_input_side_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("JAXRNN_THREADS_SHARE", "units")
    monkeypatch.setenv("JAXRNN_INPUT_SIDE", "hoisted")
    cell, params, xs, carry, _ = problem((37,), 4, 3, 128, kind="lstm")
    message = r"expected the environment variable JAXRNN_INPUT_SIDE 'steps', 'before' or unset"
    with pytest.raises(jaxrnn.InputError, match=message + r", got 'hoisted'"):
        jaxrnn.unroll(cell, params, xs, carry, implementation="native")


@functools.lru_cache(maxsize=KEPT_JITTED)
def bidirectional_value_and_grads(implementation, cell, with_lengths, wrt):
    """The jitted loss of a bidirectional layer by ``implementation`` (its outputs weighted, and
    both last carries) and its gradients with respect to the arguments ``wrt`` of (params, xs,
    carries), compiled once for what the kernel reads at each call."""

    def loss(params, xs, carries, weights, lengths):
        last, ys = jaxrnn.bidirectional(
            cell,
            params,
            xs,
            carry=carries,
            lengths=lengths if with_lengths else None,
            implementation=implementation,
        )
        return loss_of(last, ys, weights)

    return jax.jit(jax.value_and_grad(loss, argnums=wrt))


@needs_kernel
@pytest.mark.parametrize("kind", ["lstm", "lstm_peephole"])
@pytest.mark.parametrize(
    "batch, n_steps, n_x, n_a, with_lengths, wrt",
    [
        (3, 6, 5, 24, True, (0, 1, 2)),  # a few rows, each direction with one thread
        (37, 5, 7, 128, True, (0, 1, 2)),  # a team's rows in each direction, in turn
        (6, 4, 520, 260, False, (0, 1)),  # the input side before the steps (InputSideBefore)
        (9, 7, 4, 16, False, (0,)),  # no dL/dxs wanted
    ],
    ids=["few", "team", "input-side-before", "weights-only"],
)
def test_both_directions_in_one_call_equal_the_scan_in_turn_and_at_once(
    monkeypatch, kind, batch, n_steps, n_x, n_a, with_lengths, wrt
):
    # A bidirectional LSTM layer's two directions are one native call, which runs them one
    # after the other or at once, a thread each (BothWaysAtOnce): both are the two scans.
    cell = CELLS[kind]
    rng = np.random.default_rng(batch)
    (_, forward, xs, carry_f, _), (_, backward, _, carry_b, _) = (
        problem((batch,), n_steps, n_x, n_a, kind=kind, seed=seed) for seed in (batch, batch + 1)
    )
    params = jaxrnn.BidirectionalParams(forward, backward)
    weights = jnp.asarray(rng.normal(size=(batch, n_steps, 2 * n_a)), jnp.float32)
    lengths = jnp.asarray(rng.integers(0, n_steps + 1, batch))
    args = (params, xs, (carry_f, carry_b), weights, lengths)
    want = bidirectional_value_and_grads("scan", cell, with_lengths, wrt)(*args)
    native = bidirectional_value_and_grads("native", cell, with_lengths, wrt)
    for way in ("in_turn", "at_once"):
        monkeypatch.setenv("JAXRNN_BOTH_WAYS", way)
        assert_trees_close(native(*args), want)
    calls = [str(eqn.params["target_name"]) for eqn in native_call_equations(native, *args)]
    assert calls == ["jaxrnn_lstm_both_ways_forward", "jaxrnn_lstm_both_ways_backward"]


@needs_kernel
def test_a_bidirectional_lstm_under_vmap_runs_both_ways_and_equals_the_scan():
    cell = CELLS["lstm"]
    (_, forward, xs, _, _), (_, backward, _, _, _) = (
        problem((4, 3), 5, 3, 8, kind="lstm", seed=seed) for seed in (0, 1)
    )
    params = jaxrnn.BidirectionalParams(forward, backward)

    def outputs(xs, implementation):
        return jaxrnn.bidirectional(cell, params, xs, implementation=implementation)[1]

    got, want = (jax.vmap(outputs, in_axes=(0, None))(xs, name) for name in ("native", "scan"))
    assert_trees_close(got, want)


@needs_kernel
def test_an_unknown_choice_of_both_ways_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("JAXRNN_BOTH_WAYS", "together")
    cell = CELLS["lstm"]
    params = jaxrnn.bidirectional_init(cell, jax.random.key(0), 3, 8)
    message = r"expected the environment variable JAXRNN_BOTH_WAYS 'in_turn', 'at_once' or unset"
    with pytest.raises(jaxrnn.InputError, match=message + r", got 'together'"):
        xs = jnp.ones((2, 4, 3), jnp.float32)
        jaxrnn.bidirectional(cell, params, xs, implementation="native")


@needs_kernel
@pytest.mark.parametrize("kind", sorted(CELLS))
def test_an_unknown_choice_of_step_products_is_a_clear_error(monkeypatch, kind):
    cell, params, xs, carry, _ = problem((6,), 4, 3, 8, kind=kind)
    monkeypatch.setenv("JAXRNN_STEP_PRODUCTS", "mkl")
    with pytest.raises(jaxrnn.InputError, match=r"JAXRNN_STEP_PRODUCTS 'own', 'onednn'.*'mkl'"):
        jaxrnn.unroll(cell, params, xs, carry, implementation="native")
    # Set after compiling: the kernel checks it again at the call.
    monkeypatch.setenv("JAXRNN_STEP_PRODUCTS", "own")
    run = jax.jit(lambda xs: jaxrnn.unroll(cell, params, xs, carry, implementation="native")[1])
    want = run(xs)
    monkeypatch.setenv("JAXRNN_STEP_PRODUCTS", "mkl")
    with pytest.raises(
        ValueError,
        match=r"(rnn|lstm|gru|simplified_gru) kernel: expected .*JAXRNN_STEP_PRODUCTS.*'mkl'",
    ):
        jax.block_until_ready(run(xs))
    monkeypatch.setenv("JAXRNN_STEP_PRODUCTS", "onednn")
    assert_trees_close(run(xs), want)


@needs_kernel
@pytest.mark.parametrize("kind", sorted(CELLS))
def test_a_length_outside_the_sequence_poisons_its_example_as_the_scan_does(kind):
    cell, params, xs, carry, _ = problem((3,), 4, 2, 5, kind=kind)

    @jax.jit
    def run(lengths):  # lengths traced: only known when the call runs
        return jaxrnn.unroll(cell, params, xs, carry, lengths=lengths, implementation="native")

    last, ys = run(jnp.array([2, 9, -1]))
    assert np.all(np.isnan(np.asarray(ys)[1:])) and np.all(np.isfinite(np.asarray(ys)[0]))
    for leaf in jax.tree.leaves(last):
        assert np.all(np.isnan(np.asarray(leaf)[1:])) and np.all(np.isfinite(np.asarray(leaf)[0]))


@needs_kernel
@pytest.mark.parametrize("kind", sorted(CELLS))
def test_calls_of_growing_and_shrinking_sizes_in_turn_each_equal_the_scan(kind):
    # The kernels keep their temporaries between calls: a call after a larger or a smaller one
    # must not read what the other left.
    for batch_shape, n_steps, n_x, n_a in [
        ((3,), 4, 2, 5),
        ((48,), 30, 12, 40),
        ((2,), 3, 5, 7),
        ((16,), 50, 3, 33),
    ]:
        args = problem(batch_shape, n_steps, n_x, n_a, kind=kind, seed=n_a)
        assert_trees_close(value_and_grads("native", *args), value_and_grads("scan", *args))


@needs_kernel
@pytest.mark.parametrize("kind", sorted(CELLS))
def test_time_major_and_the_default_carry(kind):
    cell, params, xs, _, _ = problem(time_major=True, kind=kind)
    got = jaxrnn.unroll(cell, params, xs, time_major=True, implementation="native")
    want = jaxrnn.unroll(cell, params, xs, time_major=True, implementation="scan")
    assert_trees_close(got, want)


@needs_kernel
@pytest.mark.parametrize("kind", sorted(CELLS))
def test_vmap_over_the_batch_and_over_params(kind):
    cell, params, xs, carry, _ = problem((4,), kind=kind)

    def run(implementation):
        def one(params, x):
            return jaxrnn.unroll(cell, params, x, implementation=implementation)[1]

        per_example = jax.vmap(one, in_axes=(None, 0))(params, xs)
        ensemble = jax.tree.map(lambda a: jnp.stack([a, 0.5 * a, -a]), params)
        per_member = jax.vmap(one, in_axes=(0, None))(ensemble, xs)
        grads = jax.vmap(jax.grad(lambda p, x: jnp.sum(one(p, x) ** 2)), in_axes=(0, None))(
            ensemble, xs
        )
        # Shared params: the mapped axis joins the kernel's batch (one call for all examples).
        per_example_grads = jax.vmap(
            jax.grad(lambda p, x: jnp.sum(one(p, x) ** 2)), in_axes=(None, 0)
        )(params, xs)
        batch_grad = jax.grad(lambda p: jnp.sum(jnp.sin(jax.vmap(one, in_axes=(None, 0))(p, xs))))(
            params
        )
        nested = jax.vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(None, 0))(
            params, xs.reshape(2, 2, *xs.shape[1:])
        )
        return per_example, per_member, grads, per_example_grads, batch_grad, nested

    # Under one jit, compiled once, rather than op by op
    run = jax.jit(run, static_argnums=0)
    assert_trees_close(run("native"), run("scan"))


@needs_kernel
def test_the_automatic_choice_takes_it_for_a_float32_lstm_and_leaves_it_otherwise():
    cell, params, xs, carry, _ = problem()

    def chosen(params=params, xs=xs, carry=carry, remat=False, **kwargs):
        args = (params, xs, carry, kwargs.get("lengths"), kwargs.get("resets"), None)
        return kernels.choose(cell, None, remat=remat, traced_args=args)

    assert chosen() == chosen(xs=xs[:1], carry=jax.tree.map(lambda a: a[:1], carry)) == "native"
    assert chosen(lengths=jnp.array([7, 3, 1, 0, 2])) == "native"
    assert chosen(resets=jnp.zeros((5, 7), bool)) == "native"
    assert chosen(remat=True) == "scan"
    with_peepholes = params._replace(peephole=jnp.zeros((3, 6), jnp.float32))
    assert chosen(params=with_peepholes) == "native"
    as_bfloat16 = jax.tree.map(lambda a: a.astype(jnp.bfloat16), (params, xs, carry))
    assert chosen(*as_bfloat16) == "native"
    as_float16 = jax.tree.map(lambda a: a.astype(jnp.float16), (params, xs, carry))
    assert chosen(*as_float16) == "fused"

    for kind in ("gru", "gru_before"):
        gru, gru_params, gru_xs, gru_carry, _ = problem(kind=kind)
        args = (gru_params, gru_xs, gru_carry, None, None, None)
        assert kernels.choose(gru, None, remat=False, traced_args=args) == "native"
        args = (gru_params, gru_xs, gru_carry, jnp.array([7, 3, 1, 0, 2]), None, None)
        assert kernels.choose(gru, None, remat=False, traced_args=args) == "native"
        args = (gru_params, gru_xs, gru_carry, None, jnp.zeros((5, 7), bool), None)
        assert kernels.choose(gru, None, remat=False, traced_args=args) == "native"


@needs_kernel
def test_forward_mode_falls_back_to_the_scan():
    cell, params, xs, _, _ = problem()

    def loss(xs):
        return jnp.sum(jnp.sin(jaxrnn.unroll(cell, params, xs)[1]))

    direction = jnp.asarray(np.random.default_rng(3).normal(size=xs.shape), jnp.float32)
    _, tangent = jax.jvp(loss, (xs,), (direction,))
    np.testing.assert_allclose(tangent, jnp.vdot(jax.grad(loss)(xs), direction), rtol=1e-4)


@needs_kernel
@pytest.mark.parametrize("kind", sorted(CELLS))
@pytest.mark.parametrize("outer", ["params", "xs"])
def test_a_gradient_of_a_gradient_falls_back_to_the_xla_kernels(kind, outer):
    cell, params, xs, _, _ = problem(kind=kind)

    def loss(params, xs, implementation):
        return jnp.sum(jnp.sin(jaxrnn.unroll(cell, params, xs, implementation=implementation)[1]))

    def curvature(implementation):
        # The outer gradient differentiates the inner one with respect to the same or another
        # argument: either way the inner call sees two differentiations.
        def inner(params, xs):
            return jnp.sum(jax.grad(loss)(params, xs, implementation).w_h ** 2)

        return jax.jit(jax.grad(inner, argnums=0 if outer == "params" else 1))(params, xs)

    assert_trees_close(curvature(None), curvature("scan"))
    with pytest.raises(jaxrnn.InputError, match="'native' has no derivative of its backward"):
        curvature("native")


@needs_kernel
@pytest.mark.parametrize("kind", sorted(CELLS))
def test_a_gradient_of_a_gradient_hidden_by_jit_is_a_clear_error(kind):
    cell, params, xs, _, _ = problem(kind=kind)
    inner = jax.jit(jax.grad(lambda p: jnp.sum(jnp.sin(jaxrnn.unroll(cell, p, xs)[1]))))
    with pytest.raises(jaxrnn.InputError, match="unroll sits inside a jax.jit"):
        jax.grad(lambda p: jnp.sum(inner(p).w_h ** 2))(params)


@needs_kernel
def test_forward_mode_hidden_by_jit_is_jaxs_error_and_the_scan_runs_it():
    """As docs/reliability.md says: unroll cannot see a jvp outside the jit it sits in, and JAX
    refuses the kernel's custom_vjp there in one line; implementation="scan" gives the jvp."""
    cell, params, xs, _, _ = problem(kind="lstm")

    def loss(xs, implementation=None):
        ys = jaxrnn.unroll(cell, params, xs, implementation=implementation)[1]
        return jnp.sum(jnp.sin(ys))

    tangent = jnp.ones_like(xs)
    with pytest.raises(TypeError, match="can't apply forward-mode autodiff"):
        jax.jvp(jax.jit(loss), (xs,), (tangent,))
    got = jax.jvp(jax.jit(functools.partial(loss, implementation="scan")), (xs,), (tangent,))
    assert_trees_close(got, jax.jvp(loss, (xs,), (tangent,)))


@needs_kernel
@pytest.mark.parametrize("kind", sorted(CELLS))
def test_inputs_of_no_feature_run_the_xla_kernels(kind):
    # A carry-driven recurrence, xs (B, T, 0): params made by hand, since init wants an input.
    cell, params, _, carry, _ = problem((4,), 5, 1, 6, kind=kind)
    params = params._replace(w_x=params.w_x[:0])
    xs = jnp.zeros((4, 5, 0), jnp.float32)

    def loss(params, implementation=None):
        ys = jaxrnn.unroll(cell, params, xs, carry, implementation=implementation)[1]
        return jnp.sum(jnp.sin(ys))

    assert_trees_close(jax.value_and_grad(loss)(params), jax.value_and_grad(loss)(params, "scan"))
    with pytest.raises(jaxrnn.InputError, match="inputs of one feature or more"):
        loss(params, "native")


@needs_kernel
def test_forcing_it_where_it_cannot_run_is_a_clear_error():
    cell, params, xs, _, _ = problem()
    with pytest.raises(
        jaxrnn.InputError, match="runs float32 and bfloat16, and params has float16"
    ):
        as_float16 = jax.tree.map(lambda a: a.astype(jnp.float16), (params, xs))
        jaxrnn.unroll(cell, *as_float16, implementation="native")
    with pytest.raises(jaxrnn.InputError, match="cannot be combined with remat"):
        jaxrnn.unroll(cell, params, xs, implementation="native", remat=True)
    with pytest.raises(jaxrnn.InputError, match=r"does not compute min_gru"):
        gru = jaxrnn.min_gru()
        jaxrnn.unroll(gru, gru.init(jax.random.key(0), 3, 6), xs, implementation="native")


@needs_kernel
@pytest.mark.parametrize("kind", sorted(CELLS))
@pytest.mark.parametrize("lengths", [None, [6, 2, 0, 5, 6, 1, 3, 6]], ids=["full", "lengths"])
def test_the_default_bidirectional_stack_equals_the_scan(kind, lengths):
    """With a native kernel the two directions run as two calls rather than one vmapped scan."""
    rng = np.random.default_rng(6)
    cell = CELLS[kind]
    xs = jnp.asarray(rng.normal(size=(8, 6, 4)), jnp.float32)
    params = jaxrnn.stacked_init(cell, jax.random.key(2), 4, 5, 2, bidirectional=True)
    lengths = None if lengths is None else jnp.asarray(lengths)

    def loss(params, **options):
        return jnp.sum(jnp.sin(jaxrnn.stacked(cell, params, xs, lengths=lengths, **options)[1]))

    got = jax.value_and_grad(loss)(params)
    want = jax.value_and_grad(functools.partial(loss, implementation="scan"))(params)
    assert_trees_close(got, want)


@needs_kernel
@pytest.mark.parametrize("kind", sorted(CELLS))
@pytest.mark.parametrize("shape", [(0, 5, 3), (8, 0, 3)], ids=["no-examples", "no-steps"])
def test_an_empty_batch_or_sequence_runs_as_the_scan(kind, shape):
    cell = CELLS[kind]
    params = cell.init(jax.random.key(0), 3, 4)
    xs = jnp.ones(shape, jnp.float32)
    got = jaxrnn.unroll(cell, params, xs, implementation="native")
    want = jaxrnn.unroll(cell, params, xs, implementation="scan")
    assert got[1].shape == (*shape[:2], 4)
    assert_trees_close(got, want)


def native_calls(fn, *args):
    """(target, bf16_products) of every native call in ``fn``'s jaxpr."""
    return [
        (str(eqn.params["target_name"]), dict(eqn.params["attributes"])["bf16_products"])
        for eqn in native_call_equations(fn, *args)
    ]


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@needs_kernel
@pytest.mark.parametrize("kind", sorted(CELLS))
@pytest.mark.parametrize(
    "precision", [None, "float32", "tensorfloat32", "highest", "bfloat16", "BF16_BF16_F32"]
)
def test_the_matmul_precision_reaches_the_forward_and_the_backward_call(kind, precision):
    cell, params, xs, carry, _ = problem(kind=kind)

    def loss(params):
        return jnp.sum(jaxrnn.unroll(cell, params, xs, carry, implementation="native")[1])

    bf16 = precision in ("bfloat16", "BF16_BF16_F32")
    with jax.default_matmul_precision(precision):
        calls = native_calls(jax.grad(loss), params)
        _, pullback = jax.vjp(loss, params)
    assert [target.rsplit("_", 1)[1] for target, _ in calls] == ["forward", "backward"]
    assert all(flag == bf16 for _, flag in calls)
    # The backward call multiplies as the forward one did, wherever the pullback is traced.
    assert native_calls(pullback, jnp.float32(1.0)) == [(calls[1][0], bf16)]


def bfloat16_problem(kind, n_examples, lengths):
    """`problem` of 128 units, whose 40 sequences two threads share, each step's units (the LSTM's)
    or the examples (the other cells'), and whose team steps' backward products read each step's
    rows of dL/dz (with AMX from a copy, two copies in turn; with AVX512_BF16 alone converted by
    each thread), and its unroll options."""
    cell, params, xs, carry, weights = problem((n_examples,), 9, 16, 128, kind=kind)
    options = {}
    if lengths:
        options["lengths"] = jnp.asarray(np.random.default_rng(1).integers(0, 10, n_examples))
    return cell, params, xs, carry, weights, options


def assert_within_bfloat16_rounding(got, want, kind, weights):
    """(value, gradients) within bfloat16 rounding of the float32 ones; a ReLU RNN's value alone:
    its derivative is a step, so a unit near zero that rounding moves across it changes the
    gradients' path outright (up to 2x on one entry over 9 steps), where the value moves by the
    rounding."""
    (value, grads), (want_value, want_grads) = got, want
    # The value sums every output times its weight: outputs that each move by bfloat16's
    # rounding, independently, move it by about that rounding times the weights' norm.
    weights_norm = float(np.linalg.norm(np.asarray(weights, np.float32)))
    np.testing.assert_allclose(float(value), float(want_value), rtol=0, atol=3e-2 * weights_norm)
    if kind == "rnn_relu":
        return
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads), strict=True):
        scale = max(1.0, float(np.max(np.abs(b), initial=0.0)))
        # bfloat16 keeps 8 bits of each factor: about 0.4% a product, summed over 144 terms
        np.testing.assert_allclose(np.asarray(a, np.float32), b, rtol=0, atol=3e-2 * scale)


BFLOAT16_CASES = pytest.mark.parametrize(
    "kind, n_examples, lengths",
    [(k, n, ln) for k in sorted(CELLS) for n in (3, 40) for ln in (False, True)],
)


@needs_kernel
@BFLOAT16_CASES
def test_bfloat16_products_stay_within_bfloat16_rounding_of_the_scan(kind, n_examples, lengths):
    # Up to four sequences the steps' products are the kernels' own, in float32, whatever the CPU.
    cell, params, xs, carry, weights, options = bfloat16_problem(kind, n_examples, lengths)
    want = value_and_grads("scan", cell, params, xs, carry, weights, **options)
    exact = value_and_grads("native", cell, params, xs, carry, weights, **options)
    with jax.default_matmul_precision("bfloat16"):
        got = value_and_grads("native", cell, params, xs, carry, weights, **options)
        outputs = jax.jit(
            lambda: jaxrnn.unroll(cell, params, xs, carry, implementation="native", **options)
        )()
    assert_within_bfloat16_rounding(got, want, kind, weights)
    want_outputs = jaxrnn.unroll(cell, params, xs, carry, implementation="scan", **options)
    for a, b in zip(jax.tree.leaves(outputs), jax.tree.leaves(want_outputs), strict=True):
        scale = max(1.0, float(np.max(np.abs(b), initial=0.0)))
        np.testing.assert_allclose(a, b, rtol=0, atol=3e-2 * scale)
    largest_difference = max(
        float(np.max(np.abs(a - c))) / max(1.0, float(np.max(np.abs(b), initial=0.0)))
        for a, b, c in zip(*map(jax.tree.leaves, (got, want, exact)), strict=True)
    )
    if not {"amx_bf16", "avx512_bf16"} & cpu_flags():
        # A CPU that cannot multiply bfloat16 leaves every product float32, as the docs say.
        assert largest_difference < 1e-5
    elif n_examples > 4:  # the team's steps multiply in bfloat16 (AMX, or AVX512_BF16)
        assert largest_difference > 1e-4


@needs_kernel
@BFLOAT16_CASES
def test_bfloat16_arrays_run_natively_within_bfloat16_rounding(kind, n_examples, lengths):
    cell, params, xs, carry, weights, options = bfloat16_problem(kind, n_examples, lengths)
    params, xs, carry, weights = jax.tree.map(
        lambda a: a.astype(jnp.bfloat16), (params, xs, carry, weights)
    )
    # The definition on the same bfloat16 values, computed in float32 throughout.
    want = value_and_grads(
        "scan",
        cell,
        *jax.tree.map(lambda a: a.astype(jnp.float32), (params, xs, carry, weights)),
        **options,
    )
    got = value_and_grads(None, cell, params, xs, carry, weights, **options)
    assert {leaf.dtype for leaf in jax.tree.leaves(got)} == {jnp.dtype(jnp.bfloat16)}
    assert_within_bfloat16_rounding(got, want, kind, weights)

    def loss(params):
        return jnp.sum(jaxrnn.unroll(cell, params, xs, carry, **options)[1])

    # Whatever the precision, products of bfloat16 arrays are products of bfloat16 values.
    with jax.default_matmul_precision("highest"):
        calls = native_calls(jax.grad(loss), params)
    assert [flag for _, flag in calls] == [True, True]


@needs_kernel
@pytest.mark.parametrize("kind", sorted(CELLS))
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["float32", "bfloat16"])
def test_the_layers_and_the_stacks_run_it(kind, dtype):
    rng = np.random.default_rng(6)
    cell = CELLS[kind]
    xs = jnp.asarray(rng.normal(size=(12, 9, 5)), dtype)
    lengths = jnp.asarray(rng.integers(0, 10, 12))
    params = jaxrnn.stacked_init(cell, jax.random.key(1), 5, 16, 2, bidirectional=True, dtype=dtype)

    def loss(params, xs, implementation):
        ys = jaxrnn.stacked(cell, params, xs, lengths=lengths, implementation=implementation)[1]
        return jnp.sum(jnp.sin(ys.astype(jnp.float32)))

    run = jax.jit(jax.value_and_grad(loss), static_argnums=2)
    got = run(params, xs, "native")
    # The definition on the same values, in float32 throughout.
    want = run(*jax.tree.map(lambda a: a.astype(jnp.float32), (params, xs)), "scan")
    # A call for each direction of each layer, as the automatic choice makes them too; the
    # LSTM's two directions in one.
    calls = native_call_equations(lambda p: loss(p, xs, None), params)
    assert len(calls) == (2 if kind.startswith("lstm") else 4)
    assert {leaf.dtype for leaf in jax.tree.leaves(got[1])} == {jnp.dtype(dtype)}
    if dtype == jnp.float32:
        assert_trees_close(got, want)
    else:  # the value sums the sines of 12 x 9 x 32 outputs, each term moving by at most its own
        assert_within_bfloat16_rounding(got, want, kind, np.ones((12, 9, 32)))


@functools.cache
def kernels_library() -> ctypes.CDLL:
    """The built kernels, for the entry points the tests call directly (loaded once already)."""
    assert _native.available(), _native.unavailable_reason()  # oneDNN's library loaded first
    here = Path(_native.__file__).parent
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    return ctypes.CDLL(
        str(next(here / f"_kernels{s}" for s in suffixes if (here / f"_kernels{s}").exists()))
    )


@needs_kernel
@pytest.mark.parametrize(
    "where, cores, moves",
    [
        ([0, 0], [0, 1], [-1, 1]),  # the second member queued on the first's core moves
        ([1, 0], [0, 1], [-1, -1]),
        ([0, 0], [0], [-1, -1]),  # no free core: it stays
        ([0, 0, 0, 2], [0, 1, 2, 3], [-1, 1, 3, -1]),
        ([3, 3, 3], [0, 1, 2, 3], [-1, 0, 1]),
        ([-1, 0, 0], [0, 1], [-1, -1, 1]),  # a core not known stays
        ([5, 5], [2, 5, 7], [-1, 2]),
    ],
)
def test_a_team_member_on_the_core_of_an_earlier_one_moves_to_a_free_core(where, cores, moves):
    # SpreadTargets in common.h: after a pause, a woken thread can be queued on the core of the
    # thread that woke it while another core idles; the first call after a pause moves it.
    out = (ctypes.c_int * len(where))()
    kernels_library().JaxrnnSpreadTargets(
        (ctypes.c_int * len(where))(*where), len(where), (ctypes.c_int * len(cores))(*cores),
        len(cores), out,
    )  # fmt: skip
    assert list(out) == moves


@needs_kernel
def test_spreading_the_team_leaves_no_thread_bound_to_a_core():
    capacity = 64
    before, after, allowed = ((ctypes.c_int * capacity)() for _ in range(3))
    team = kernels_library().JaxrnnSpreadTeam(before, after, allowed, capacity)
    cores = os.sched_getaffinity(0)
    if len(cores) < 2 or team < 2:
        assert team == 0  # one thread: nothing to spread
        return
    assert all(cpu in cores for cpu in list(before)[:team] + list(after)[:team])
    # each member may run on every core of the process again once it has moved
    assert list(allowed)[:team] == [len(cores)] * team


@needs_kernel
@pytest.mark.parametrize("team", [1, 2])
def test_a_product_inside_a_team_runs_on_the_member_that_asks_for_it(team):
    # InTeam in common.h: OpenMP counts a team of one inactive, and a product inside it opened a
    # nested team with a new thread each call (a training step of 8·32·16·64 took 4 ms, not 0.5)
    assert kernels_library().JaxrnnNestedTeamSize(team) == 1


@needs_kernel
@pytest.mark.parametrize("kind", ["lstm", "gru", "gru_before"])
def test_a_team_of_one_with_products_of_two_threads_equals_the_scan(kind):
    cell, params, xs, carry, weights = problem((6,), 5, 3, 64, kind=kind, seed=12)
    assert_native_equals_scan(cell, params, xs, carry, weights, {})


@needs_kernel
@pytest.mark.parametrize("spread", ["on", "off"])
@pytest.mark.parametrize("kind", ["lstm", "gru", "gru_before"])
def test_a_call_after_a_pause_equals_the_scan_with_the_team_spread_or_not(
    monkeypatch, spread, kind
):
    monkeypatch.setenv("JAXRNN_SPREAD_TEAM", spread)
    monkeypatch.setenv("JAXRNN_THREADS_SHARE", "units")
    cell, params, xs, carry, weights = problem((37,), 5, 3, 128, kind=kind, seed=11)
    time.sleep(0.005)  # a pause longer than kTeamRested before the call
    assert_native_equals_scan(cell, params, xs, carry, weights, {})


@needs_kernel
def test_an_unknown_choice_of_spreading_the_team_is_a_clear_error(monkeypatch):
    cell, params, xs, carry, _ = problem((20,), 4, 3, 8)
    monkeypatch.setenv("JAXRNN_SPREAD_TEAM", "sometimes")
    with pytest.raises(
        jaxrnn.InputError, match=r"JAXRNN_SPREAD_TEAM 'off', 'on' or unset, got 'sometimes'"
    ):
        jaxrnn.unroll(cell, params, xs, carry, implementation="native")


def last_call_on_worker() -> bool:
    return bool(kernels_library().JaxrnnLastCallOnWorker())


# (batch_shape, n_steps, n_x, n_a) below and above the 4 MFLOP of forward products under which a
# call runs alone on the calling thread, for each cell: 2·B·T·(D+H)·gates·H.
SMALL, LARGE = ((5,), 7, 3, 6), ((16,), 5, 8, 128)


@needs_kernel
@pytest.mark.parametrize("kind", sorted(CELLS))
@pytest.mark.parametrize(
    "options",
    [{}, {"reverse": True}, {"lengths": np.array([7, 3, 0, 5, 1])}],
    ids=["forward", "reverse", "lengths"],
)
def test_a_small_call_runs_alone_on_the_calling_thread_and_equals_the_scan(
    monkeypatch, kind, options
):
    monkeypatch.delenv("JAXRNN_SMALL_CALLS")
    cell, params, xs, carry, weights = problem(*SMALL, kind=kind, seed=21)
    assert_native_equals_scan(cell, params, xs, carry, weights, options)
    assert not last_call_on_worker()


@needs_kernel
@pytest.mark.parametrize("kind", ["lstm", "gru", "gru_before", "simplified_gru"])
def test_a_larger_call_and_a_small_one_asked_to_run_on_the_worker_thread(monkeypatch, kind):
    monkeypatch.delenv("JAXRNN_SMALL_CALLS")
    cell, params, xs, carry, weights = problem(*LARGE, kind=kind, seed=22)
    assert_native_equals_scan(cell, params, xs, carry, weights, {})
    assert last_call_on_worker()
    monkeypatch.setenv("JAXRNN_SMALL_CALLS", "caller")  # the rule, as unset: by size
    jax.block_until_ready(jaxrnn.unroll(cell, params, xs, carry, implementation="native"))
    assert last_call_on_worker()
    cell, params, xs, carry, _ = problem(*SMALL, kind=kind, seed=22)
    jax.block_until_ready(jaxrnn.unroll(cell, params, xs, carry, implementation="native"))
    assert not last_call_on_worker()
    monkeypatch.setenv("JAXRNN_SMALL_CALLS", "team")
    jax.block_until_ready(jaxrnn.unroll(cell, params, xs, carry, implementation="native"))
    assert last_call_on_worker()


@needs_kernel
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16], ids=["float32", "bfloat16"])
def test_small_calls_from_many_threads_at_once_give_each_its_own_result(monkeypatch, dtype):
    import concurrent.futures

    monkeypatch.delenv("JAXRNN_SMALL_CALLS")
    cell, params, _, _, _ = problem(*SMALL, kind="lstm", seed=23)
    params = jax.tree.map(lambda a: a.astype(dtype), params)
    rng = np.random.default_rng(23)
    inputs = [jnp.asarray(rng.normal(size=(5, 7, 3)), dtype) for _ in range(16)]
    run = jax.jit(
        jax.value_and_grad(
            lambda p, xs: jnp.sum(jaxrnn.unroll(cell, p, xs, implementation="native")[1]),
            argnums=(0, 1),
        )
    )
    alone = [jax.block_until_ready(run(params, xs)) for xs in inputs]
    assert not last_call_on_worker()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for _ in range(3):
            together = list(pool.map(lambda xs: jax.block_until_ready(run(params, xs)), inputs))
            for got, want in zip(together, alone, strict=True):
                # The same program on the same numbers: the same bits, whichever thread ran it.
                jax.tree.map(np.testing.assert_array_equal, got, want)


@needs_kernel
def test_an_unknown_choice_for_small_calls_is_a_clear_error(monkeypatch):
    cell, params, xs, carry, _ = problem((4,), 3, 2, 5)  # a shape no other test traces
    monkeypatch.setenv("JAXRNN_SMALL_CALLS", "sometimes")
    with pytest.raises(
        jaxrnn.InputError, match=r"JAXRNN_SMALL_CALLS 'caller', 'team' or unset, got 'sometimes'"
    ):
        jaxrnn.unroll(cell, params, xs, carry, implementation="native")
