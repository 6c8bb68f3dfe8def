"""What the tests of a whole-sequence kernel (`jaxrnn._native`, `jaxrnn._cudnn`) compare it with
the scan by: a loss that every output and every leaf of the last carry feed, its value and
gradients, and closeness to 1e-5 of each array's largest entry in float32."""

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn

TOL32 = 1e-5  # relative to the largest entry of each array: sums over B·T rows round so


def value_and_grads(implementation, cell, params, xs, carry, weights, **options):
    """Under jit: the loss sum(ys · weights) + sum(sin(last carry)) of ``unroll`` by
    ``implementation``, and its gradients with respect to params, xs and carry."""

    def loss(params, xs, carry):
        last, ys = jaxrnn.unroll(cell, params, xs, carry, implementation=implementation, **options)
        return jnp.sum(ys * weights) + sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree.leaves(last))

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(params, xs, carry)


def assert_trees_close(got, want):
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        scale = max(1.0, float(np.max(np.abs(b), initial=0.0)))
        np.testing.assert_allclose(a, b, rtol=0, atol=TOL32 * scale)
