"""What the tests of a whole-sequence kernel (`jaxrnn._native`, `jaxrnn._cudnn`) compare it with
the scan by: a loss that every output and every leaf of the last carry feed, its value and
gradients, and closeness to 1e-5 of each array's largest entry in float32."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn

TOL32 = 1e-5  # relative to the largest entry of each array: sums over B·T rows round so


def loss_of(last, ys, weights):
    """sum(ys · weights) + sum(sin(last carry)): every output and carry leaf feeds it."""
    return jnp.sum(ys * weights) + sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree.leaves(last))


# The options of `unroll` that hold arrays (or a carry of them): traced arguments of the compiled
# program; the others (reverse, time_major, ...) are part of what is compiled.
ARRAY_OPTIONS = ("lengths", "resets", "reset_carry")


def value_and_grads(implementation, cell, params, xs, carry, weights, *, wrt=(0, 1, 2), **options):
    """Under jit: the loss sum(ys · weights) + sum(sin(last carry)) of ``unroll`` by
    ``implementation``, and its gradients with respect to the arguments ``wrt`` of (params, xs,
    carry)."""
    arrays = {name: options.pop(name) for name in ARRAY_OPTIONS if options.get(name) is not None}
    run = compiled_value_and_grads(implementation, cell, tuple(sorted(options.items())), wrt)
    return run(params, xs, carry, weights, arrays)


# Jitted functions kept, each with its programs for every shape it was called with: a program
# maps about 60 regions of memory, and a process may map 65,530 (jax keeps others besides).
KEPT_JITTED = 16


@functools.lru_cache(maxsize=KEPT_JITTED)
def compiled_value_and_grads(implementation, cell, static_options, wrt):
    """One jitted program per implementation, cell and static options, so that the tests that
    differ only in what a kernel reads at each call (an environment variable) or in the values of
    their arrays compile it once: compiling is most of a kernel test's time."""

    def loss(params, xs, carry, weights, arrays):
        last, ys = jaxrnn.unroll(
            cell, params, xs, carry, implementation=implementation, **dict(static_options), **arrays
        )
        return loss_of(last, ys, weights)

    return jax.jit(jax.value_and_grad(loss, argnums=wrt))


def assert_trees_close(got, want):
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        scale = max(1.0, float(np.max(np.abs(b), initial=0.0)))
        np.testing.assert_allclose(a, b, rtol=0, atol=TOL32 * scale)
