"""The kernel layer: every implementation against the plain scan, and how `unroll` chooses.

The fused backward pass against autodiff of the plain scan (values and gradients to 1e-12 in
float64), forward mode through the automatic choice, a replaced step never running a kernel, and
the options that cannot be combined."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cells_under_test import CELLS

import jaxrnn

FUSED = [name for name, cell in CELLS.items() if "fused" in jaxrnn.kernels.available(cell)]
IMPLEMENTATION = {True: "fused", False: "scan"}
N_X, N_A, T = 3, 4, 6
TOL64 = {"rtol": 1e-12, "atol": 1e-12}


def random_tree(tree, seed):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda a: jnp.asarray(rng.normal(0.0, 0.5, a.shape), a.dtype), tree)


def problem(name, batch_shape, time_major=False, seed=0):
    cell = CELLS[name]
    params = random_tree(cell.init(jax.random.key(seed), N_X, N_A, jnp.float64), seed)
    shape = (T, *batch_shape, N_X) if time_major else (*batch_shape, T, N_X)
    rng = np.random.default_rng(seed + 1)
    xs = jnp.asarray(rng.normal(size=shape))
    carry = random_tree(cell.init_carry(params, batch_shape), seed + 2)
    weights = jnp.asarray(rng.normal(size=(*shape[:-1], N_A)))
    return cell, params, xs, carry, weights


def loss_and_grads(cell, params, xs, carry, weights, fused, **options):
    def loss(params, xs, carry):
        last, ys = jaxrnn.unroll(
            cell, params, xs, carry, implementation=IMPLEMENTATION[fused], **options
        )
        # Both outputs and the last carry feed the loss, so both cotangents are exercised.
        return jnp.sum(ys * weights) + sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(last))

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(params, xs, carry)


def test_the_cells_with_a_pointwise_part():
    assert set(FUSED) >= {"rnn_tanh", "rnn_relu", "simplified_gru", "lstm", "lstm_peephole"}
    assert "fused" not in jaxrnn.kernels.available(CELLS["gru_before"])
    assert "fused" not in jaxrnn.kernels.available(CELLS["gru_after"])


@pytest.mark.parametrize("name", FUSED)
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"reverse": True},
        {"lengths": np.array([6, 2, 0])},
        {"lengths": np.array([6, 2, 0]), "reverse": True},
    ],
    ids=["plain", "reverse", "lengths", "reverse-lengths"],
)
def test_gradients_equal_autodiff(name, options):
    cell, params, xs, carry, weights = problem(name, (3,))
    value, grads = loss_and_grads(cell, params, xs, carry, weights, True, **options)
    value_ref, grads_ref = loss_and_grads(cell, params, xs, carry, weights, False, **options)
    np.testing.assert_allclose(value, value_ref, **TOL64)
    for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_ref), strict=True):
        np.testing.assert_allclose(got, want, **TOL64)


@pytest.mark.parametrize("batch_shape", [(), (2, 3)], ids=["unbatched", "two-batch-dims"])
@pytest.mark.parametrize("time_major", [False, True])
def test_batch_layouts(batch_shape, time_major):
    cell, params, xs, carry, weights = problem("lstm_peephole", batch_shape, time_major)
    fused = loss_and_grads(cell, params, xs, carry, weights, True, time_major=time_major)
    plain = loss_and_grads(cell, params, xs, carry, weights, False, time_major=time_major)
    for got, want in zip(jax.tree.leaves(fused), jax.tree.leaves(plain), strict=True):
        np.testing.assert_allclose(got, want, **TOL64)


def test_outputs_equal_the_plain_scan_and_work_under_vmap():
    cell, params, xs, carry, _ = problem("lstm", (4,))
    fused = jax.vmap(lambda x, c: jaxrnn.unroll(cell, params, x, c, implementation="fused"))
    plain = jax.vmap(lambda x, c: jaxrnn.unroll(cell, params, x, c, implementation="scan"))
    for got, want in zip(
        jax.tree.leaves(fused(xs, carry)), jax.tree.leaves(plain(xs, carry)), strict=True
    ):
        np.testing.assert_allclose(got, want, **TOL64)

    def per_example_grad(fused):
        def loss(params, x):
            ys = jaxrnn.unroll(cell, params, x, implementation=IMPLEMENTATION[fused])[1]
            return jnp.sum(ys**2)

        return jax.vmap(jax.grad(loss), in_axes=(None, 0))(params, xs)

    for got, want in zip(
        jax.tree.leaves(per_example_grad(True)),
        jax.tree.leaves(per_example_grad(False)),
        strict=True,
    ):
        np.testing.assert_allclose(got, want, **TOL64)


def test_traced_lengths_out_of_range_give_nan_not_a_wrong_answer():
    cell, params, xs, _, _ = problem("lstm", (3,))
    run = jax.jit(lambda lengths: jaxrnn.unroll(cell, params, xs, lengths=lengths)[1])
    ys = run(jnp.array([6, 9, 2]))
    assert np.isnan(ys[1]).all() and np.isfinite(ys[0]).all() and np.isfinite(ys[2]).all()


def test_second_order_reverse_mode_and_forward_mode_without_it():
    cell, params, xs, _, _ = problem("rnn_tanh", (2,))

    def loss(xs, fused):
        ys = jaxrnn.unroll(cell, params, xs, implementation=IMPLEMENTATION[fused])[1]
        return jnp.sum(jnp.sin(ys))

    hessian_vector = jax.grad(lambda xs, fused: jnp.sum(jax.grad(loss)(xs, fused) ** 2))
    np.testing.assert_allclose(hessian_vector(xs, True), hessian_vector(xs, False), **TOL64)
    _, tangent = jax.jvp(lambda xs: loss(xs, False), (xs,), (jnp.ones_like(xs),))
    np.testing.assert_allclose(tangent, jnp.sum(jax.grad(loss)(xs, False)), **TOL64)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_forward_mode_through_the_automatic_choice_equals_reverse_mode(name):
    cell, params, xs, _, _ = problem(name, (2,))

    def loss(xs):
        return jnp.sum(jnp.sin(jaxrnn.unroll(cell, params, xs)[1]))

    direction = jnp.asarray(np.random.default_rng(3).normal(size=xs.shape))
    _, tangent = jax.jvp(loss, (xs,), (direction,))
    np.testing.assert_allclose(tangent, jnp.vdot(jax.grad(loss)(xs), direction), **TOL64)
    forward_jacobian = jax.jacfwd(loss)(xs)
    np.testing.assert_allclose(forward_jacobian, jax.grad(loss)(xs), **TOL64)


def test_a_replaced_step_is_what_runs():
    cell, params, xs, _, _ = problem("lstm", (2,))

    def doubled(params, carry, x):
        carry, y = cell.step(params, carry, x)
        return carry, 2 * y

    replaced = cell._replace(step=doubled)
    assert jaxrnn.kernels.available(replaced) == ("scan",)
    _, want = jaxrnn.unroll(cell, params, xs, implementation="scan")
    _, got = jaxrnn.unroll(replaced, params, xs)
    np.testing.assert_allclose(got, 2 * want, **TOL64)
    _, got_jit = jax.jit(lambda xs: jaxrnn.unroll(replaced, params, xs))(xs)
    np.testing.assert_allclose(got_jit, 2 * want, **TOL64)
    with pytest.raises(jaxrnn.InputError, match=r"implementation='fused' does not compute"):
        jaxrnn.unroll(replaced, params, xs, implementation="fused")


@pytest.mark.parametrize("name", ["lstm", "gru_before"])
@pytest.mark.parametrize("unroll", [1, 3])
@pytest.mark.parametrize("hoist", [False, True])
def test_the_scan_kernel_knobs_keep_the_result(name, unroll, hoist):
    cell, params, xs, carry, _ = problem(name, ())
    _, want = jaxrnn.unroll(cell, params, xs, carry, implementation="scan")
    _, got = jaxrnn.kernels.sequential_one(
        cell,
        params,
        xs,
        carry,
        None,
        reverse=False,
        remat=False,
        hoist=hoist,
        poison=False,
        unroll=unroll,
    )
    np.testing.assert_allclose(got, want, **TOL64)


def test_eager_calls_reuse_their_compiled_program():
    cell, params, xs, carry, _ = problem("gru_after", (3,))
    jaxrnn.unroll(cell, params, xs, carry)
    traces = []
    original = jaxrnn.kernels.run

    def counting(*args, **kwargs):
        traces.append(1)
        return original(*args, **kwargs)

    jaxrnn.kernels.run = counting
    try:
        for _ in range(3):
            _, ys = jaxrnn.unroll(cell, params, xs, carry)
    finally:
        jaxrnn.kernels.run = original
    assert traces == []  # no new trace: the first call's program ran
    _, want = jax.jit(lambda: jaxrnn.unroll(cell, params, xs, carry, implementation="scan"))()
    np.testing.assert_allclose(ys, want, **TOL64)


@pytest.mark.parametrize(
    "name, options, message",
    [
        (
            "gru_after",
            {"implementation": "fused"},
            r"implementation='fused' does not compute gru\(reset=after\)'s step; it has "
            r"\('scan', 'hoisted'(, 'native')?\)",
        ),
        ("lstm", {"implementation": "fused", "remat": True}, "cannot be combined with remat"),
        ("lstm", {"implementation": "time_parallel"}, "does not compute lstm's step"),
        ("lstm", {"implementation": "yes"}, "expected implementation None or one of"),
    ],
)
def test_bad_options(name, options, message):
    cell, params, xs, _, _ = problem(name, (2,))
    with pytest.raises(jaxrnn.InputError, match=message):
        jaxrnn.unroll(cell, params, xs, **options)


def test_forcing_the_fused_kernel_under_forward_mode_is_a_clear_error():
    cell, params, xs, _, _ = problem("lstm", (2,))
    with pytest.raises(jaxrnn.InputError, match="has no forward-mode derivative"):
        jax.jvp(
            lambda xs: jaxrnn.unroll(cell, params, xs, implementation="fused")[1],
            (xs,),
            (xs,),
        )


def test_any_three_functions_are_a_cell_with_every_feature():
    """A leaky integrator with params in a dict: no w_x, no structure, only the contract."""

    def init(key, input_size, hidden_size, dtype=jnp.float32):
        return {"w": jax.random.normal(key, (input_size, hidden_size), dtype), "leak": 0.5}

    def init_carry(params, batch_shape=()):
        return jnp.zeros((*batch_shape, params["w"].shape[1]), params["w"].dtype)

    def step(params, carry, x):
        carry = params["leak"] * carry + jnp.tanh(x @ params["w"])
        return carry, carry

    cell = jaxrnn.Cell(init, init_carry, step)
    params = jax.tree.map(jnp.asarray, init(jax.random.key(0), 3, 4, jnp.float64))
    xs = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 3)))
    lengths = jnp.array([5, 2])
    last, ys = jaxrnn.unroll(cell, params, xs, lengths=lengths, reverse=True, remat=2)
    for b, n in enumerate([5, 2]):
        carry = jnp.zeros(4)
        for t in reversed(range(n)):
            carry, _ = step(params, carry, xs[b, t])
            np.testing.assert_allclose(ys[b, t], carry, **TOL64)
        np.testing.assert_allclose(last[b], carry, **TOL64)
        assert not np.asarray(ys[b, n:]).any()
    second = {"w": jnp.eye(4, dtype=jnp.float64), "leak": jnp.asarray(0.5, jnp.float64)}
    deep = jaxrnn.layers.deep(cell, 2)
    deep_last, deep_ys = jaxrnn.unroll(deep, jaxrnn.StackedParams((params, second)), xs)
    assert deep_ys.shape == (2, 5, 4) and len(deep_last) == 2
    jax.jvp(lambda xs: jaxrnn.unroll(cell, params, xs)[1], (xs,), (xs,))


def test_on_a_gpu_the_per_step_loop_is_hoisted_and_unrolled(monkeypatch):
    """On a GPU backend (jax.default_backend() == "gpu") the automatic choice hoists the scan
    where no other kernel runs, and every scan loop runs 4 steps an iteration: the same values
    and gradients as the CPU's plain loop."""
    cell, params, xs, carry, _ = problem("gru_after", (3,))
    lengths = jnp.array([5, 2, 0])

    def new_loss():  # traced afresh: JAX keeps a function's trace for the same arguments
        def loss(params, xs):
            _, ys = jaxrnn.unroll(cell, params, xs, carry, lengths=lengths, reverse=True)
            return jnp.sum(jnp.sin(ys))

        return loss

    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")  # on any machine
    want = jax.value_and_grad(new_loss(), (0, 1))(params, xs)
    assert "unroll=1" in str(jax.make_jaxpr(new_loss())(params, xs))
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    args = (params, xs, carry, None, None, None)
    assert jaxrnn.kernels.choose(cell, None, remat=False, traced_args=args) == "hoisted"
    # remat keeps the plain scan: hoisted, the input side of every step would be kept
    assert jaxrnn.kernels.choose(cell, None, remat=True, traced_args=args) == "scan"
    peephole, *peephole_args, _ = problem("lstm_peephole", (3,))
    peephole_args = (*peephole_args, None, None, None)
    assert jaxrnn.kernels.choose(peephole, None, remat=False, traced_args=peephole_args) == "fused"
    assert jaxrnn.kernels.choose(cell, "scan", remat=False, traced_args=args) == "scan"
    assert jaxrnn.kernels.scan_unroll() == 4
    jaxpr = str(jax.make_jaxpr(new_loss())(params, xs))
    assert "unroll=4" in jaxpr and "unroll=1" not in jaxpr
    got = jax.value_and_grad(new_loss(), (0, 1))(params, xs)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(a, b, **TOL64)
    empty = jaxrnn.unroll(cell, params, xs[:, :0], carry)  # no steps: the scan's edge case
    np.testing.assert_array_equal(empty[0], carry)
