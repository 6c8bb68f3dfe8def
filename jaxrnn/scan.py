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
from jaxrnn.cells import Array, Carry, Cell, LSTMState, Params, input_size, recurrent_state


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
    parallel: bool | None = None,
    fused_backward: bool | None = None,
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
        Padded steps of ``xs`` are never read: whatever they hold, NaN and Inf included, changes
        neither the results nor their gradients, and the gradient with respect to them is zero.
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
      parallel: run every step at once with the cell's ``parallel_scan`` (`jaxrnn.min_gru`,
        `jaxrnn.min_lstm`: O(log T) depth instead of T sequential steps; same result up to
        rounding). None uses it when the cell has one and none of ``remat``, ``unroll`` > 1 or
        ``hoist_input_projection`` (options of the sequential scan) is asked for; True requires it;
        False runs the sequential scan.
      fused_backward: differentiate with the scan's own backward pass instead of autodiff of
        ``lax.scan``: the backward loop only carries ∂L/∂carry, and each weight gradient is one
        large matmul over all steps after it (faster training: ``benchmarks/NOTES.md``). Same
        gradients up to rounding. It exists for cells with a ``pointwise`` part (`rnn`,
        `simplified_gru`, `lstm`). None uses it for those unless ``remat``,
        ``hoist_input_projection`` or ``parallel`` is asked for; True requires it; False uses
        autodiff, which forward-mode differentiation (``jax.jvp``, ``jax.jacfwd``) needs.

    Returns:
      ``(carry, ys)``: the last carry (each array (*batch, H)) and the outputs a⟨1⟩…a⟨T⟩,
      (*batch, T, H), or (T, *batch, H) with ``time_major``.

    Raises:
      InputError: if a shape, dtype or length does not fit the params (checked while tracing), or
        ``parallel=True`` is asked of a cell without a parallel scan or with a sequential option.

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
    remat_asked, hoist_asked = remat is not False, bool(hoist_input_projection)
    use_parallel = _choose(
        fn,
        "parallel",
        parallel,
        available=cell.parallel_scan is not None,
        needs=f"a cell with a parallel_scan (jaxrnn.min_gru(), jaxrnn.min_lstm()); {cell.name} "
        "has none",
        # `unroll is True` (unroll fully) equals 1 in Python, hence the identity test.
        conflicts={
            "remat": remat_asked,
            "unroll": unroll is True or unroll != 1,
            "hoist_input_projection": hoist_asked,
        },
    )
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
        xs = _zero_padding(xs, jnp.asarray(lengths))

    fused = _choose(
        fn,
        "fused_backward",
        fused_backward,
        available=cell.pointwise is not None,
        needs=f"a cell with a pointwise part (jaxrnn.rnn(), simplified_gru(), lstm()); {cell.name} "
        "has none",
        conflicts={"remat": remat_asked, "hoist_input_projection": hoist_asked},
    )
    if fused and not use_parallel and n_steps:
        carry, ys = _unroll_fused_backward(
            cell, params, xs, carry, lengths, reverse=reverse, unroll=unroll, poison=poison
        )
        return carry, (jnp.moveaxis(ys, -2, 0) if time_major else ys)

    def run(xs, carry, length):
        if use_parallel and xs.shape[0]:  # an empty sequence has nothing to scan in parallel
            return _unroll_parallel(cell, params, xs, carry, length, reverse=reverse, poison=poison)
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
        check_floating(fn, "carry", got, params.w_x)


def _zero_padding(xs: Array, lengths: Array) -> Array:
    """xs (*batch, T, D) with the padded steps t ≥ lengths (*batch,) replaced by zeros.

    Every path masks the carry and the outputs of padded steps with ``jnp.where``, which drops a
    step's result but not its backward pass: the zero cotangent of the dropped result meets the
    step's derivatives at its input, and 0 · NaN = 0 · Inf = NaN. A NaN or Inf left in the
    padding would turn every gradient NaN. With the inputs zeroed first, padded steps compute
    finite values, and the gradient with respect to the padding is exactly zero.
    """
    t = jax.lax.broadcasted_iota(lengths.dtype, xs.shape[:-1], xs.ndim - 2)
    return jnp.where((t < lengths[..., None])[..., None], xs, jnp.zeros((), xs.dtype))


def _unroll_one(cell: Cell, params, xs, carry, length, *, reverse, unroll, remat, hoist, poison):
    """One example: xs (T, input_size), carry leaves (H,), length a scalar or None."""
    if hoist:
        inputs, step = cell.project_input(params, xs), cell.step_projected
    else:
        inputs, step = xs, cell.step

    n_steps = xs.shape[0]
    block = 0 if remat is False else int(remat)
    if length is None:

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

        scanned = (inputs, jnp.arange(n_steps) < length)

    if block <= 1:
        if block == 1:
            body = jax.checkpoint(body)
        carry, ys = jax.lax.scan(body, carry, scanned, reverse=reverse, unroll=unroll)
    else:
        # Blocks of `block` steps: the outer scan stores one carry per block and the backward pass
        # recomputes each block's steps from it. The T mod block steps left over run as a scan of
        # their own (checkpointed per step) rather than as a padded block: padding the sequence
        # would make the backward pass build a padded copy of the whole output cotangent.
        n_main = n_steps - n_steps % block

        def run_block(carry, block_inputs):
            return jax.lax.scan(body, carry, block_inputs, reverse=reverse, unroll=unroll)

        def run_blocks(carry):
            blocks = jax.tree.map(lambda a: a[:n_main].reshape(-1, block, *a.shape[1:]), scanned)
            carry, ys = jax.lax.scan(jax.checkpoint(run_block), carry, blocks, reverse=reverse)
            return carry, ys.reshape(n_main, *ys.shape[2:])

        def run_rest(carry):
            rest = jax.tree.map(lambda a: a[n_main:], scanned)
            return jax.lax.scan(jax.checkpoint(body), carry, rest, reverse=reverse, unroll=unroll)

        if reverse:  # the leftover steps are the last in time, so a reverse pass meets them first
            carry, ys_rest = run_rest(carry)
            carry, ys_main = run_blocks(carry)
        else:
            carry, ys_main = run_blocks(carry)
            carry, ys_rest = run_rest(carry)
        ys = jnp.concatenate([ys_main, ys_rest])

    if poison:
        carry, ys = _poisoned(carry, ys, length, n_steps)
    return carry, ys


def _poisoned(carry, ys, length, n_steps):
    """NaN carry and outputs where a length only known at run time is outside [0, T].

    ``length`` has the batch shape (a scalar for one example), carry leaves (*batch, H) and
    ys (*batch, T, H).
    """
    invalid = (length < 0) | (length > n_steps)
    carry = jax.tree.map(lambda leaf: jnp.where(invalid[..., None], np.nan, leaf), carry)
    return carry, jnp.where(invalid[..., None, None], np.nan, ys)


def _choose(fn: str, option: str, value, *, available: bool, needs: str, conflicts) -> bool:
    """Resolves an optional path of `unroll` (``parallel``, ``fused_backward``): None, True, False.

    None takes the path when the cell has what it ``needs`` and no option in ``conflicts`` (a dict
    of option name -> whether it was asked for) is set; True requires both; False never takes it.
    """
    if value is not None and not isinstance(value, bool):
        fail(fn, f"expected {option} to be None, True or False, got {value!r}")
    asked = [name for name, is_asked in conflicts.items() if is_asked]
    if value is None:
        return available and not asked
    if value and not available:
        fail(fn, f"{option}=True needs {needs}", f"or leave {option}=None")
    if value and asked:
        fail(
            fn,
            f"{option}=True cannot be combined with {', '.join(asked)}",
            f"leave them at their defaults, or pass {option}=False",
        )
    return value


def _unroll_parallel(cell: Cell, params, xs, carry, length, *, reverse, poison):
    """One example with ``cell.parallel_scan``: xs (T, input_size), carry leaves (H,).

    Padded steps come after the valid ones and each step depends only on earlier ones, so the
    scan runs over all T steps and the carry is read at step L − 1. Reverse reads xs through the
    permutation t -> L − 1 − t on the valid steps (padded ones stay), which is its own inverse.
    """
    n_steps = xs.shape[0]
    last = n_steps - 1 if length is None else length - 1
    if reverse:
        t = jnp.arange(n_steps)
        order = jnp.where(t <= last, last - t, t)
        xs = xs[order]
    carries, ys = cell.parallel_scan(params, xs, carry)
    if reverse:
        ys = ys[order]
    if length is None:
        return jax.tree.map(lambda leaf: leaf[-1], carries), ys
    index = jnp.clip(last, 0, n_steps - 1)
    carry = jax.tree.map(
        lambda leaf, first: jnp.where(length > 0, leaf[index], first), carries, carry
    )
    ys = jnp.where((jnp.arange(n_steps) < length)[:, None], ys, jnp.zeros_like(ys))
    if poison:
        carry, ys = _poisoned(carry, ys, length, n_steps)
    return carry, ys


def _unroll_fused_backward(cell: Cell, params, xs, carry, lengths, *, reverse, unroll, poison):
    """`unroll` for a cell with ``pointwise``: xs (*batch, T, D), carry leaves (*batch, H).

    The batch dimensions are flattened into one, N, and the whole batch goes through one
    time-major scan, so that the weight gradients are matmuls over all T·N rows at once.
    """
    batch_shape, n_steps = xs.shape[:-2], xs.shape[-2]
    # The cell's own argument checks (params of the right kind and shape), at no run-time cost.
    jax.eval_shape(cell.step, params, carry, xs[..., 0, :])
    flat_xs = jnp.moveaxis(xs.reshape(-1, n_steps, xs.shape[-1]), 1, 0)  # (T, N, D)
    flat_carry = jax.tree.map(lambda leaf: leaf.reshape(-1, leaf.shape[-1]), carry)
    valid = None
    if lengths is not None:
        flat_lengths = jnp.reshape(lengths, -1)
        valid = jnp.arange(n_steps)[:, None] < flat_lengths[None, :]  # (T, N)
    last, ys = _scan_fused_backward(
        cell, params, flat_xs, flat_carry, valid, reverse=reverse, unroll=unroll
    )
    last = jax.tree.map(lambda leaf: leaf.reshape(*batch_shape, leaf.shape[-1]), last)
    ys = jnp.moveaxis(ys, 0, 1).reshape(*batch_shape, n_steps, ys.shape[-1])
    if poison:
        last, ys = _poisoned(last, ys, jnp.asarray(lengths), n_steps)
    return last, ys


def _add_to_state(carry: Carry, d_h: Array) -> Carry:
    """carry + d_h on the part the recurrent matmul reads (see `jaxrnn.cells.recurrent_state`)."""
    if isinstance(carry, LSTMState):
        return carry._replace(h=carry.h + d_h)
    return carry + d_h


def _scan_fused_backward(cell: Cell, params, xs, carry, valid, *, reverse: bool, unroll: int):
    """A time-major scan of a cell with a ``pointwise`` part, and its own backward pass.

    xs (T, N, input_size), carry leaves (N, H), valid None or a (T, N) bool mask of real steps.
    Returns (last carry, ys (T, N, H)), the same function as `_unroll_one` over the batch.

    Autodiff of ``lax.scan`` forms the weight gradients inside the backward loop, one small matmul
    per step and weight. Here the backward loop carries only ∂L/∂carry and emits ∂L/∂z of every
    step; each weight gradient is then one large matmul over all T·N rows, after the loop. Saved
    for the backward pass: z and the carry after every step (the carry before a step is the one
    after the previous step).
    """
    pointwise = jax.vmap(cell.pointwise, in_axes=(None, 0, 0))

    def gate_params(params):
        # What the pointwise part may read (LSTM peepholes): the affine weights are not its own.
        return params._replace(w_x=None, w_h=None, b_x=None, b_h=None)

    def masked_pointwise(gates, carry_prev, z, valid_t):
        new, _ = pointwise(gates, carry_prev, z)
        if valid_t is None:
            return new
        # Past an example's end its carry is frozen, as in `_unroll_one`.
        return jax.tree.map(lambda n, o: jnp.where(valid_t[:, None], n, o), new, carry_prev)

    def forward(params, xs, carry, valid):
        def step(carry, x_and_valid):
            x, valid_t = x_and_valid
            bias = (params.b_x + params.b_h)[None, :]
            z = x @ params.w_x + recurrent_state(carry) @ params.w_h + bias
            new = masked_pointwise(gate_params(params), carry, z, valid_t)
            return new, (z, new)

        last, (zs, carries) = jax.lax.scan(step, carry, (xs, valid), reverse=reverse, unroll=unroll)
        ys = recurrent_state(carries)  # every cell with a pointwise part outputs y⟨t⟩ = h⟨t⟩
        ys = ys if valid is None else jnp.where(valid[..., None], ys, 0)
        return (last, ys), (zs, carries)

    @jax.custom_vjp
    def run(params, xs, carry, valid):
        return forward(params, xs, carry, valid)[0]

    def run_forward(params, xs, carry, valid):
        outputs, (zs, carries) = forward(params, xs, carry, valid)
        return outputs, (params, xs, carry, valid, zs, carries)

    def run_backward(residuals, cotangents):
        params, xs, carry0, valid, zs, carries = residuals
        d_last, d_ys = cotangents
        if valid is not None:
            d_ys = jnp.where(valid[..., None], d_ys, 0)

        def before(first, after):  # the carry before each step: `after` shifted by one step
            if reverse:
                return jnp.concatenate([after[1:], first[None]], 0)
            return jnp.concatenate([first[None], after[:-1]], 0)

        previous = jax.tree.map(before, carry0, carries)
        w_h_transposed = params.w_h.T

        def step(acc, inputs):
            d_carry, d_gates = acc
            z, carry_prev, d_y, valid_t = inputs
            _, pullback = jax.vjp(
                lambda g, c, zz: masked_pointwise(g, c, zz, valid_t),
                gate_params(params),
                carry_prev,
                z,
            )
            d_g, d_prev, d_z = pullback(_add_to_state(d_carry, d_y))
            d_prev = _add_to_state(d_prev, d_z @ w_h_transposed)
            return (d_prev, jax.tree.map(jnp.add, d_gates, d_g)), d_z

        zero = jax.tree.map(jnp.zeros_like, gate_params(params))
        (d_carry0, d_gates), d_zs = jax.lax.scan(
            step, (d_last, zero), (zs, previous, d_ys, valid), reverse=not reverse, unroll=unroll
        )
        d_b = d_zs.sum((0, 1))
        d_params = d_gates._replace(
            w_x=jnp.einsum("tnd,tng->dg", xs, d_zs),
            w_h=jnp.einsum("tnh,tng->hg", recurrent_state(previous), d_zs),
            b_x=d_b,
            b_h=d_b,
        )
        return d_params, d_zs @ params.w_x.T, d_carry0, None

    run.defvjp(run_forward, run_backward)
    return run(params, xs, carry, valid)
