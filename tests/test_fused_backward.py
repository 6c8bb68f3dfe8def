"""unroll's own backward pass (``fused_backward``) against autodiff of the plain scan."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cells_under_test import CELLS

import jaxrnn

FUSED = [name for name, cell in CELLS.items() if cell.pointwise is not None]
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
        last, ys = jaxrnn.unroll(cell, params, xs, carry, fused_backward=fused, **options)
        # Both outputs and the last carry feed the loss, so both cotangents are exercised.
        return jnp.sum(ys * weights) + sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(last))

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(params, xs, carry)


def test_the_cells_with_a_pointwise_part():
    assert set(FUSED) >= {"rnn_tanh", "rnn_relu", "simplified_gru", "lstm", "lstm_peephole"}
    assert CELLS["gru_before"].pointwise is None and CELLS["gru_after"].pointwise is None


@pytest.mark.parametrize("name", FUSED)
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"reverse": True},
        {"lengths": np.array([6, 2, 0])},
        {"lengths": np.array([6, 2, 0]), "reverse": True},
        {"unroll": 3},
    ],
    ids=["plain", "reverse", "lengths", "reverse-lengths", "unroll3"],
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
    fused = jax.vmap(lambda x, c: jaxrnn.unroll(cell, params, x, c, fused_backward=True))
    plain = jax.vmap(lambda x, c: jaxrnn.unroll(cell, params, x, c, fused_backward=False))
    for got, want in zip(
        jax.tree.leaves(fused(xs, carry)), jax.tree.leaves(plain(xs, carry)), strict=True
    ):
        np.testing.assert_allclose(got, want, **TOL64)

    def per_example_grad(fused_backward):
        def loss(params, x):
            return jnp.sum(jaxrnn.unroll(cell, params, x, fused_backward=fused_backward)[1] ** 2)

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
        return jnp.sum(jnp.sin(jaxrnn.unroll(cell, params, xs, fused_backward=fused)[1]))

    hessian_vector = jax.grad(lambda xs, fused: jnp.sum(jax.grad(loss)(xs, fused) ** 2))
    np.testing.assert_allclose(hessian_vector(xs, True), hessian_vector(xs, False), **TOL64)
    _, tangent = jax.jvp(lambda xs: loss(xs, False), (xs,), (jnp.ones_like(xs),))
    np.testing.assert_allclose(tangent, jnp.sum(jax.grad(loss)(xs, False)), **TOL64)


@pytest.mark.parametrize(
    "name, options, message",
    [
        (
            "gru_after",
            {"fused_backward": True},
            "fused_backward=True needs a cell with a pointwise",
        ),
        ("lstm", {"fused_backward": True, "remat": True}, "cannot be combined with remat"),
        (
            "lstm",
            {"fused_backward": True, "hoist_input_projection": True},
            "cannot be combined with hoist_input_projection",
        ),
        ("lstm", {"fused_backward": "yes"}, "expected fused_backward to be None, True or False"),
    ],
)
def test_bad_options(name, options, message):
    cell, params, xs, _, _ = problem(name, (2,))
    with pytest.raises(jaxrnn.InputError, match=message):
        jaxrnn.unroll(cell, params, xs, **options)
