"""Lifting a cell over time: `unroll`, the loop's semantics.

An unroll *is* this loop, which `unroll` compiles into a single ``lax.scan``::

    carry = a0
    for t in range(T):
        carry, ys[t] = cell.step(params, carry, xs[t])
    return carry, ys

It plays the part of the slides' ``tf.scan(fn, elems, initializer)``: ``fn`` is the cell's step
with its params bound, ``elems`` the inputs x⟨1⟩…x⟨T⟩, ``initializer`` a⟨0⟩. ``tf.scan`` returns
only the stacked states; `unroll` returns ``(last carry, stacked outputs)`` in ``lax.scan``'s order.

What the loop means (carry, lengths, reverse, time-major inputs, remat) is decided here; how fast
it runs is `jaxrnn.kernels`' business, which holds the other implementations of the same function.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import kernels
from jaxrnn._checks import (
    check_flag,
    check_floating,
    check_lengths,
    check_rank_at_least,
    check_shape,
    concrete_or_none,
    dtype_of,
    fail,
)
from jaxrnn.cells import Array, Carry, Cell, Params, cell_name, input_size, params_dtype


def unroll(
    cell: Cell,
    params: Params,
    xs: Array,
    carry: Carry | None = None,
    *,
    lengths: Array | None = None,
    resets: Array | None = None,
    reset_carry: Carry | None = None,
    time_major: bool = False,
    reverse: bool = False,
    remat: bool | int = False,
    implementation: str | None = None,
) -> tuple[Carry, Array]:
    """Runs ``cell`` over the time axis of ``xs``; returns (last carry, outputs).

    Args:
      cell: a `Cell`, e.g. ``jaxrnn.lstm()``, or any three functions of the `Cell` contract.
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
      resets: optional bool array (*batch, T), or (T, *batch) with ``time_major``: where it is
        true, that step starts a new segment, whose carry begins again at the initial carry
        ``carry`` (an episode that ends inside a rollout). Each segment computes what it would
        alone, values and gradients: nothing flows across a reset. A reset past an example's
        length is ignored (it never wakes a finished example); with ``reverse`` each segment is
        read backwards within itself, from its own last step.
      reset_carry: with ``resets``, the carry each segment after a reset begins at, if not
        ``carry``: a rollout that goes on from the last one's carry while each new episode starts
        from zeros passes ``carry=last`` and ``reset_carry=cell.init_carry(params, batch)``.
      time_major: whether time is the first axis of ``xs`` (and of the outputs).
      reverse: process the sequence from the last step to the first. Outputs stay aligned with
        their inputs: ys[t] is the output after reading xs[t].
      remat: gradient checkpointing (``jax.checkpoint``). ``True`` rematerialises each step in
        the backward pass: the scan keeps only the carry of every step instead of all gate values,
        and recomputes the step. An int k ≥ 2 keeps only the carry at every k-th step and
        recomputes blocks of k steps: memory O(T/k + k) carries instead of O(T).
      implementation: None (automatic), or one of ``"scan"`` (``lax.scan`` of ``cell.step``, the
        definition), ``"hoisted"``, ``"fused"``, ``"time_parallel"``, ``"layerwise"``,
        ``"native"`` (CPU), ``"cudnn"`` (an LSTM on a CUDA GPU): see `jaxrnn.kernels`. Every
        one computes the same function up to rounding; None takes the fastest that the cell
        has and that supports what is asked (remat, forward mode). Under
        ``jax.default_matmul_precision("bfloat16")`` the native kernels' matrix products run in
        bfloat16 with float32 sums on CPUs with AMX or AVX512_BF16, as a TPU's do; everything
        else stays float32, and so do the products on other CPUs. On bfloat16 arrays the native
        kernels run whatever the precision, multiply in bfloat16 where the CPU can, and keep the
        gates and the carry between steps in float32 inside the call.

    Returns:
      ``(carry, ys)``: the last carry (each array (*batch, H)) and the outputs a⟨1⟩…a⟨T⟩,
      (*batch, T, H), or (T, *batch, H) with ``time_major``.

    Raises:
      InputError: if a shape, dtype or length does not fit the params (checked while tracing), or
        the implementation asked for does not compute this cell or cannot do what is asked.

    Called outside ``jit`` with arrays, ``unroll`` runs a compiled program that it keeps for the
    next call with the same cell, shapes and options.

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
    if not isinstance(cell, Cell):
        fail(fn, f"expected cell to be a jaxrnn.Cell, got {type(cell).__name__}")
    check_reset_carry(fn, resets, reset_carry)
    chosen = kernels.choose(
        cell,
        implementation,
        remat=remat,
        traced_args=(params, xs, carry, lengths, resets, reset_carry),
    )
    options = dict(
        time_major=check_flag(fn, "time_major", time_major),
        reverse=check_flag(fn, "reverse", reverse),
        remat=remat,
    )
    if _concrete_arrays(params, xs, carry, lengths, resets, reset_carry):
        n_steps = np.shape(xs)[0 if time_major else -2] if np.ndim(xs) >= 2 else 0
        if lengths is not None:
            _check_known_lengths(fn, np.asarray(lengths), n_steps)
        try:
            compiled = _compiled(cell, chosen, **options)
        except TypeError:  # a cell of unhashable functions: traced afresh at each call
            compiled = None
        if compiled is not None:
            return compiled(params, xs, carry, lengths, resets, reset_carry)
    return _unroll(cell, chosen, params, xs, carry, lengths, resets, reset_carry, **options)


def _concrete_arrays(*trees) -> bool:
    """Whether every leaf is an array with a value (not a tracer, not a Python list or scalar)."""
    leaves = jax.tree.leaves(trees)
    return bool(leaves) and all(
        isinstance(leaf, np.ndarray | jax.Array) and not isinstance(leaf, jax.core.Tracer)
        for leaf in leaves
    )


@functools.lru_cache(maxsize=256)
def _compiled(cell: Cell, implementation: str, **options):
    """`_unroll` for eager calls, jitted once per cell, implementation and options.

    Lengths were checked against T before the call, so the program does not poison them.
    """

    def run(*arrays):  # params, xs, carry, lengths, resets, reset_carry
        return _unroll(cell, implementation, *arrays, **options, poison=False)

    return jax.jit(run)


def _check_known_lengths(fn: str, known: np.ndarray, n_steps: int) -> None:
    if known.size and np.issubdtype(known.dtype, np.integer):
        if known.min() < 0 or known.max() > n_steps:
            bad = known[(known < 0) | (known > n_steps)]
            fail(fn, f"expected lengths in [0, {n_steps}] (the time steps of xs), got {bad[:5]}")


def _unroll(
    cell,
    implementation,
    params,
    xs,
    carry,
    lengths,
    resets,
    reset_carry=None,
    *,
    time_major,
    reverse,
    remat,
    poison=None,
):
    """`unroll` with checked options: checks the arrays, then runs the chosen kernel."""
    fn = "unroll"
    xs, carry, n_steps, batch_shape, unknown_lengths = _prepared(
        fn, cell, params, xs, carry, lengths, time_major
    )
    if reset_carry is not None:
        check_carry(fn, cell, params, reset_carry, batch_shape, name="reset_carry")
    poison = unknown_lengths if poison is None else poison
    if resets is not None:
        resets = check_resets(fn, resets, n_steps, batch_shape, time_major)
        if time_major:
            resets = jnp.moveaxis(resets, 0, -1)
        if lengths is not None:  # a reset past the end would wake a finished example
            resets = resets & _before_lengths(resets.shape, jnp.asarray(lengths))

    carry, ys = kernels.run(
        implementation,
        cell,
        params,
        xs,
        carry,
        lengths,
        resets=resets,
        reset_carry=reset_carry,
        reverse=reverse,
        remat=remat,
        poison=poison,
    )
    return carry, (jnp.moveaxis(ys, -2, 0) if time_major else ys)


def _prepared(fn: str, cell, params, xs, carry, lengths, time_major: bool):
    """The arrays of an unroll checked and laid out for the kernels: (xs batch-major with its
    padded steps zeroed, the carry (zeros where None), T, the batch shape, whether the lengths
    are known only at run time)."""
    shape = check_xs(fn, params, xs, time_major)
    if time_major:
        n_steps, batch_shape = shape[0], shape[1:-1]
        xs = jnp.moveaxis(xs, 0, -2)
    else:
        n_steps, batch_shape = shape[-2], shape[:-2]
    carry = checked_carry(fn, cell, params, carry, batch_shape)
    unknown_lengths = False
    if lengths is not None:
        check_lengths(fn, lengths, batch_shape)
        known = concrete_or_none(lengths)
        if known is None:
            unknown_lengths = True
        else:
            _check_known_lengths(fn, known, n_steps)
        xs = _zero_padding(xs, jnp.asarray(lengths))
    return xs, carry, n_steps, batch_shape, unknown_lengths


def unroll_both_ways(
    cell: Cell, forward, backward, xs, carries, *, lengths, time_major: bool, implementation: str
):
    """A bidirectional layer's two unrolls as one call (where `jaxrnn.kernels.choose` takes
    ``implementation`` for both directions and `jaxrnn.kernels.runs_both_ways`): ``forward`` and
    ``backward`` the two directions' params, ``carries`` their initial carries (each None for
    zeros). Returns ((last forward, last backward), (ys forward, ys backward)), as two `unroll`
    calls, the second with ``reverse=True``, would."""
    fn = "bidirectional"
    xs, carry_f, _, batch_shape, poison = _prepared(
        fn, cell, forward, xs, carries[0], lengths, time_major
    )
    carry_b = checked_carry(fn, cell, backward, carries[1], batch_shape)
    lasts, ys = kernels.run_both_ways(
        cell,
        forward,
        backward,
        xs,
        (carry_f, carry_b),
        lengths,
        implementation=implementation,
        poison=poison,
    )
    if time_major:
        ys = tuple(jnp.moveaxis(y, -2, 0) for y in ys)
    return lasts, ys


def check_reset_carry(fn: str, resets, reset_carry) -> None:
    """Raise `InputError` for a ``reset_carry`` (of any layout: a carry, a pair, one per layer)
    that holds a carry while ``resets``, the only thing that reads it, is None."""
    if resets is None and jax.tree.leaves(reset_carry):
        fail(
            fn,
            "expected resets with reset_carry, got resets=None",
            "reset_carry is where the carry starts again at each reset; without resets it is idle",
        )


def check_resets(fn: str, resets, n_steps: int, batch_shape, time_major: bool) -> Array:
    """Raise `InputError` unless ``resets`` is a bool array with one entry per example and step;
    returns it as a jax array."""
    layout = (n_steps, *batch_shape) if time_major else (*batch_shape, n_steps)
    meaning = "(time, *batch)" if time_major else "(*batch, time)"
    check_shape(fn, "resets", resets, layout, f"resets is {meaning}, one flag per step of xs")
    if dtype_of(fn, "resets", resets) != jnp.bool_:
        fail(
            fn,
            f"expected resets to have dtype bool, got {jnp.result_type(resets)}",
            "true where a step starts a new segment, e.g. resets = done_before.astype(bool)",
        )
    return jnp.asarray(resets)


def check_xs(fn: str, params: Params, xs, time_major: bool) -> tuple[int, ...]:
    """Checks the rank, input size and dtype of a sequence xs for the params; returns its shape."""
    shape = check_rank_at_least(fn, "xs", xs, 2, "(*batch, time, input_size)")
    n_x = input_size(params)  # None for a user's params: the cell's own step checks them
    layout = "(time, *batch, input_size)" if time_major else "(*batch, time, input_size)"
    check_shape(
        fn, "xs", xs, (*shape[:-1], n_x), f"xs is {layout} and the params expect input_size={n_x}"
    )
    check_floating(fn, "xs", xs, params_dtype(params))
    return shape


def checked_carry(fn: str, cell: Cell, params: Params, carry: Carry | None, batch_shape) -> Carry:
    """``carry`` after `check_carry`, or ``cell.init_carry(params, batch_shape)`` (zeros) where it
    is None."""
    if carry is None:
        return cell.init_carry(params, batch_shape)
    check_carry(fn, cell, params, carry, batch_shape)
    return carry


def check_carry(
    fn: str, cell: Cell, params: Params, carry: Carry, batch_shape, name: str = "carry"
) -> None:
    """Raises `InputError` from ``fn`` unless ``carry`` has the structure, shapes and dtypes of
    ``cell.init_carry(params, batch_shape)``; ``name`` is the argument the message names."""
    expected = jax.eval_shape(functools.partial(cell.init_carry, params, batch_shape))
    if jax.tree.structure(carry) != jax.tree.structure(expected):
        fail(
            fn,
            f"expected {name} with the structure of {cell_name(cell)}'s init_carry, "
            f"{jax.tree.structure(expected)}, got {jax.tree.structure(carry)}",
        )
    for got, want in zip(jax.tree.leaves(carry), jax.tree.leaves(expected), strict=True):
        check_shape(
            fn,
            name,
            got,
            want.shape,
            f"the {name} needs the batch dimensions of xs and the hidden size",
        )
        check_floating(fn, name, got, params_dtype(params))


def _before_lengths(shape, lengths: Array) -> Array:
    """A bool mask of ``shape`` (*batch, T): step t < lengths (*batch,)."""
    return jax.lax.broadcasted_iota(lengths.dtype, shape, len(shape) - 1) < lengths[..., None]


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
