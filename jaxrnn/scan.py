"""Lifting a cell over time: the one place that calls ``jax.lax.scan``.

An unroll *is* this loop, which `unroll` compiles into a single ``lax.scan``::

    carry = a0
    for t in range(T):
        carry, ys[t] = cell.step(params, carry, xs[t])
    return carry, ys

It plays the part of the slides' ``tf.scan(fn, elems, initializer)``: ``fn`` is the cell's step
with its params bound, ``elems`` the inputs x⟨1⟩…x⟨T⟩, ``initializer`` a⟨0⟩. ``tf.scan`` returns
only the stacked states; `unroll` returns ``(last carry, stacked outputs)`` in ``lax.scan``'s order.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn._checks import (
    check_floating,
    check_lengths,
    check_rank_at_least,
    check_shape,
    concrete_or_none,
    fail,
)
from jaxrnn.cells import Array, Carry, Cell, Params, input_size


def unroll(
    cell: Cell,
    params: Params,
    xs: Array,
    carry: Carry | None = None,
    *,
    lengths: Array | None = None,
    time_major: bool = False,
    reverse: bool = False,
    unroll: int = 1,
    remat: bool | int = False,
    hoist_input_projection: bool = False,
) -> tuple[Carry, Array]:
    """Runs ``cell`` over the time axis of ``xs`` with ``lax.scan``; returns (last carry, outputs).

    Args:
      cell: a `Cell`, e.g. ``jaxrnn.lstm()``.
      params: the cell's params, from ``cell.init``.
      xs: inputs, (*batch, T, input_size), or (T, *batch, input_size) with ``time_major``. Any
        number of batch dimensions, including none. Floating point, of the params' dtype.
      carry: the initial carry a⟨0⟩, each array (*batch, H); zeros if None.
      lengths: optional int array of shape ``batch`` for right-padded batches: example i has valid
        steps 0 … lengths[i] − 1. Its carry stops changing after its last valid step (the returned
        carry is the last valid one), its outputs at padded steps are zero, length 0 returns the
        initial carry, and ``reverse`` runs each example backwards within its own length. Lengths
        outside [0, T] raise `jaxrnn.InputError` when they are known at trace time; inside ``jit``
        they turn that example's outputs and carry to NaN rather than give a silent wrong answer.
      time_major: whether time is the first axis of ``xs`` (and of the outputs).
      reverse: process the sequence from the last step to the first. Outputs stay aligned with
        their inputs: ys[t] is the output after reading xs[t].
      unroll: ``lax.scan``'s ``unroll``: steps per loop iteration (a speed knob, same result).
      remat: gradient checkpointing (``jax.checkpoint``). ``True`` rematerialises each step in
        the backward pass: the scan keeps only the carry of every step instead of all gate values,
        and recomputes the step. An int k ≥ 2 keeps only the carry at every k-th step and
        recomputes blocks of k steps: memory O(T/k + k) carries instead of O(T).
      hoist_input_projection: compute the input side x @ w_x + b_x of every time step as one
        matmul before the scan, leaving only the recurrent matmul inside. Same result; whether it is
        faster depends on the backend (see ``benchmarks/``).

    Returns:
      ``(carry, ys)``: the last carry (each array (*batch, H)) and the outputs a⟨1⟩…a⟨T⟩,
      (*batch, T, H), or (T, *batch, H) with ``time_major``.

    Raises:
      InputError: if a shape, dtype or length does not fit the params (checked while tracing).

    Example:
      >>> cell = jaxrnn.gru()
      >>> params = cell.init(jax.random.key(0), input_size=3, hidden_size=8)
      >>> xs = jnp.ones((4, 10, 3))                             # (batch, time, features)
      >>> last, ys = jaxrnn.unroll(cell, params, xs, lengths=jnp.array([10, 7, 1, 0]))
      >>> ys.shape, last.shape
      ((4, 10, 8), (4, 8))
    """
    fn = "unroll"
    if not isinstance(remat, bool) and not (isinstance(remat, int) and remat >= 1):
        fail(fn, f"expected remat to be a bool or an int >= 1 (steps per block), got {remat!r}")
    shape = check_xs(fn, params, xs, time_major)
    if time_major:
        n_steps, batch_shape = shape[0], shape[1:-1]
        xs = jnp.moveaxis(xs, 0, -2)
    else:
        n_steps, batch_shape = shape[-2], shape[:-2]

    if carry is None:
        carry = cell.init_carry(params, batch_shape)
    else:
        check_carry(fn, cell, params, carry, batch_shape)

    poison = False
    if lengths is not None:
        check_lengths(fn, lengths, batch_shape)
        known = concrete_or_none(lengths)
        if known is None:
            poison = True
        elif known.size and (known.min() < 0 or known.max() > n_steps):
            bad = known[(known < 0) | (known > n_steps)]
            fail(fn, f"expected lengths in [0, {n_steps}] (the time steps of xs), got {bad[:5]}")

    def run(xs, carry, length):
        return _unroll_one(
            cell,
            params,
            xs,
            carry,
            length,
            reverse=reverse,
            unroll=unroll,
            remat=remat,
            hoist=hoist_input_projection,
            poison=poison,
        )

    for _ in batch_shape:
        run = jax.vmap(run, in_axes=(0, 0, None if lengths is None else 0))
    carry, ys = run(xs, carry, lengths)
    return carry, (jnp.moveaxis(ys, -2, 0) if time_major else ys)


def check_xs(fn: str, params: Params, xs, time_major: bool) -> tuple[int, ...]:
    """Checks the rank, input size and dtype of a sequence xs for the params; returns its shape."""
    shape = check_rank_at_least(fn, "xs", xs, 2, "(*batch, time, input_size)")
    n_x = input_size(params)
    layout = "(time, *batch, input_size)" if time_major else "(*batch, time, input_size)"
    check_shape(
        fn, "xs", xs, (*shape[:-1], n_x), f"xs is {layout} and the params expect input_size={n_x}"
    )
    check_floating(fn, "xs", xs, params.w_x)
    return shape


def check_carry(fn: str, cell: Cell, params: Params, carry: Carry, batch_shape) -> None:
    expected = jax.eval_shape(functools.partial(cell.init_carry, params, batch_shape))
    if jax.tree.structure(carry) != jax.tree.structure(expected):
        fail(
            fn,
            f"expected carry with the structure of {cell.name}'s init_carry, "
            f"{jax.tree.structure(expected)}, got {jax.tree.structure(carry)}",
        )
    for got, want in zip(jax.tree.leaves(carry), jax.tree.leaves(expected), strict=True):
        check_shape(
            fn,
            "carry",
            got,
            want.shape,
            "the carry needs the batch dimensions of xs and the hidden size",
        )
        check_floating(fn, "carry", got, params.w_h)


def _unroll_one(cell: Cell, params, xs, carry, length, *, reverse, unroll, remat, hoist, poison):
    """One example: xs (T, input_size), carry leaves (H,), length a scalar or None."""
    if hoist:
        inputs, step = cell.project_input(params, xs), cell.step_projected
    else:
        inputs, step = xs, cell.step

    n_steps = xs.shape[0]
    block = 0 if remat is False else int(remat)
    padded = -n_steps % block if block > 1 else 0
    if length is None and not padded:

        def body(carry, x):
            return step(params, carry, x)

        scanned = inputs
    else:

        def body(carry, x_and_valid):
            x, valid = x_and_valid
            new_carry, y = step(params, carry, x)
            # Past the example's end the carry is frozen and the output is zero. With reverse=True
            # the padded steps come first, so the carry stays a⟨0⟩ until the last valid step.
            carry = jax.tree.map(lambda new, old: jnp.where(valid, new, old), new_carry, carry)
            return carry, jnp.where(valid, y, jnp.zeros_like(y))

        valid = jnp.arange(n_steps + padded) < (n_steps if length is None else length)
        inputs = jnp.pad(inputs, [(0, padded)] + [(0, 0)] * (inputs.ndim - 1))
        scanned = (inputs, valid)

    if block <= 1:
        if block == 1:
            body = jax.checkpoint(body)
        carry, ys = jax.lax.scan(body, carry, scanned, reverse=reverse, unroll=unroll)
    else:
        # Blocks of `block` steps: the outer scan stores one carry per block and the backward pass
        # recomputes each block's steps from it. Padding steps at the end are masked out above.
        def run_block(carry, block_inputs):
            return jax.lax.scan(body, carry, block_inputs, reverse=reverse, unroll=unroll)

        blocks = jax.tree.map(lambda a: a.reshape(-1, block, *a.shape[1:]), scanned)
        carry, ys = jax.lax.scan(jax.checkpoint(run_block), carry, blocks, reverse=reverse)
        ys = ys.reshape(-1, *ys.shape[2:])[:n_steps]

    if poison:
        invalid = (length < 0) | (length > xs.shape[0])
        carry = jax.tree.map(lambda leaf: jnp.where(invalid, np.nan, leaf), carry)
        ys = jnp.where(invalid, np.nan, ys)
    return carry, ys
