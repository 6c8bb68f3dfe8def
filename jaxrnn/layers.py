"""Layers around the recurrent core: the dense output head, bidirectional RNNs and deep RNNs.

    dense          ŷ⟨t⟩ = W_ya a⟨t⟩ + b_y over all steps at once (the head, before its activation)
    bidirectional  a→⟨t⟩ reads x⟨1⟩ … x⟨t⟩, a←⟨t⟩ reads x⟨T⟩ … x⟨t⟩; the outputs are combined
    stacked        a^[l]⟨t⟩ = g(W_a^[l] [a^[l]⟨t−1⟩, a^[l−1]⟨t⟩] + b_a^[l]), layer on layer
    deep           the same stack as one `Cell` (its step runs every layer once; its unroll is
                   `stacked`)

Each is a pure function of NamedTuple params, batched like `jaxrnn.unroll` (any number of leading
batch dimensions, batch- or time-major) and with the same per-example ``lengths`` for right-padded
batches: padded steps give zero outputs and do not change the carry.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn import kernels
from jaxrnn._checks import (
    check_flag,
    check_float_dtype,
    check_floating,
    check_lengths,
    check_positive_int,
    check_rank_at_least,
    check_shape,
    fail,
)
from jaxrnn.cells import Array, Carry, Cell, Params, cell_name, hidden_size, input_size
from jaxrnn.errors import InputError
from jaxrnn.scan import (
    check_carry,
    check_reset_carry,
    check_resets,
    check_xs,
    checked_carry,
    unroll,
    unroll_both_ways,
)

Merge = Literal["concat", "sum", "mean", "product"] | None
_MERGES = ("concat", "sum", "mean", "product", None)


# ------------------------------------------------------------------------------------ dense head


class DenseParams(NamedTuple):
    """An affine map y = x @ w + b."""

    w: Array  # (in_features, out_features)  W_yaᵀ
    b: Array  # (out_features,)              b_y


def dense_init(key: Array, in_features: int, out_features: int, dtype=jnp.float32) -> DenseParams:
    """Glorot-uniform weights and zero bias for `dense`."""
    check_float_dtype("dense_init", dtype)
    w = jax.nn.initializers.glorot_uniform()(key, (in_features, out_features), dtype)
    return DenseParams(w, jnp.zeros((out_features,), dtype))


def dense(params: DenseParams, x: Array) -> Array:
    """The output head before its activation: z = x @ w + b, over any leading axes.

    The course's ŷ⟨t⟩ = softmax(W_ya a⟨t⟩ + b_y) is ``jax.nn.softmax(dense(params, a))``; the losses
    take the logits z directly, which is more stable.

    Args:
      params: `DenseParams` with w (in_features, out_features).
      x: (..., in_features), e.g. all hidden states (batch, T, H).

    Returns:
      (..., out_features).
    """
    shape = check_rank_at_least("dense", "x", x, 1, "(..., in_features)")
    check_shape("dense", "x", x, (*shape[:-1], params.w.shape[0]))
    check_floating("dense", "x", x, params.w)
    return jnp.tensordot(x, params.w, axes=1) + jnp.broadcast_to(
        params.b, (*shape[:-1], params.w.shape[1])
    )


# ---------------------------------------------------------------------------------- bidirectional


class BidirectionalParams(NamedTuple):
    """The two directions of a bidirectional RNN: params of the same cell, of the same shapes."""

    forward: Params  # a→⟨t⟩, reads x⟨1⟩ … x⟨T⟩
    backward: Params  # a←⟨t⟩, reads x⟨T⟩ … x⟨1⟩ (each example from its own last valid step)


class BidirectionalCarry(NamedTuple):
    """The carries of the two directions, each of the cell's carry type, arrays (*batch, H)."""

    forward: Carry  # a→ after the last valid step x⟨L⟩
    backward: Carry  # a← after the first step x⟨1⟩ (its last in reading order)


def bidirectional_init(
    cell: Cell, key: Array, input_size: int, hidden_size: int, dtype=jnp.float32
) -> BidirectionalParams:
    """Independent initial params for the two directions, from the cell's own initialiser."""
    key_forward, key_backward = jax.random.split(key)
    return BidirectionalParams(
        cell.init(key_forward, input_size, hidden_size, dtype),
        cell.init(key_backward, input_size, hidden_size, dtype),
    )


def bidirectional(
    cell: Cell,
    params: BidirectionalParams,
    xs: Array,
    *,
    lengths: Array | None = None,
    resets: Array | None = None,
    merge: Merge = "concat",
    carry: tuple[Carry | None, Carry | None] | None = None,
    reset_carry: tuple[Carry | None, Carry | None] | None = None,
    time_major: bool = False,
    batch_directions: bool = True,
    **unroll_options: Any,
) -> tuple[BidirectionalCarry, Array | tuple[Array, Array]]:
    """A bidirectional RNN (BRNN): one cell reads the sequence forwards, another backwards.

        a→⟨t⟩ = cell(a→⟨t−1⟩, x⟨t⟩),   t = 1 … T        (params.forward)
        a←⟨t⟩ = cell(a←⟨t+1⟩, x⟨t⟩),   t = T … 1        (params.backward)
        ŷ⟨t⟩ = g(W_y [a→⟨t⟩, a←⟨t⟩] + b_y)

    so the prediction at t sees the whole sequence, past and future. This function returns the
    combined activations (``merge="concat"`` gives [a→⟨t⟩, a←⟨t⟩]); the head ŷ is
    ``dense(head, ys)`` followed by its activation g. With ``lengths`` the backward direction
    starts at each example's own last valid step x⟨L⟩ (``unroll(..., reverse=True)``), never at
    the padding, and padded steps give zero outputs in both directions, as with PyTorch's packed
    sequences.

    Args:
      cell: a `Cell`, e.g. ``jaxrnn.lstm()``.
      params: `BidirectionalParams`, from `bidirectional_init`.
      xs: inputs (*batch, T, input_size), or (T, *batch, input_size) with ``time_major``.
      lengths: optional int array of shape ``batch``: example i has valid steps 0 … lengths[i] − 1.
      resets: optional bool array (*batch, T) (or (T, *batch) with ``time_major``) of the steps
        that start a new segment, as in `jaxrnn.unroll`. Each segment is read forwards and
        backwards within itself: neither direction carries anything across a reset.
      merge: how a→⟨t⟩ and a←⟨t⟩ (each (…, H)) are combined: ``"concat"`` [a→, a←] (…, 2H),
        ``"sum"`` a→ + a←, ``"mean"`` (a→ + a←) / 2, ``"product"`` a→ * a←, or None for the pair
        (a→, a←) of arrays.
      carry: optional initial carries ``(forward, backward)``; zeros if None (either may be None).
      reset_carry: with ``resets``, optional ``(forward, backward)`` carries each direction starts
        again from at a reset, as in `jaxrnn.unroll`; ``carry`` where None.
      time_major: whether time is the first axis of ``xs`` and of the outputs.
      batch_directions: run both directions in one ``lax.scan``: the params are stacked along a
        new leading axis and the step is ``vmap``-ed over it, with the backward direction reading
        each example reversed within its length. Same result as two scans; on by default because
        it measured faster on XLA:CPU (``python -m benchmarks.bidirectional_fused``).
      **unroll_options: passed to `jaxrnn.unroll` (``remat``, ``implementation``).

    Returns:
      ``(carry, ys)``: a `BidirectionalCarry` of the last carries, and the merged outputs
      (*batch, T, 2H) for ``"concat"``, (*batch, T, H) otherwise, or a pair of (*batch, T, H).

    Raises:
      InputError: for an unknown ``merge``, or a shape or dtype that does not fit the params.

    Example:
      >>> cell = jaxrnn.gru()
      >>> params = jaxrnn.bidirectional_init(cell, jax.random.key(0), input_size=3, hidden_size=8)
      >>> xs = jnp.ones((4, 10, 3))
      >>> last, ys = jaxrnn.bidirectional(cell, params, xs, lengths=jnp.array([10, 7, 1, 0]))
      >>> ys.shape, last.forward.shape
      ((4, 10, 16), (4, 8))
    """
    fn = "bidirectional"
    _check_merge(fn, merge)
    if not isinstance(params, BidirectionalParams):
        fail(
            fn,
            f"expected params to be BidirectionalParams, got {type(params).__name__}",
            "create them with jaxrnn.bidirectional_init",
        )
    if "reverse" in unroll_options:
        fail(fn, "expected no reverse option; the backward direction is reversed already")
    batch_shape = _check_sequence(fn, params.forward, xs, lengths, time_major)
    if resets is not None:
        n_steps = jnp.shape(xs)[0 if time_major else -2]
        resets = check_resets(fn, resets, n_steps, batch_shape, time_major)
    _check_same_shapes(fn, params)
    carry, reset_carry = (
        _direction_pair(fn, name, value)
        for name, value in (("carry", carry), ("reset_carry", reset_carry))
    )
    check_reset_carry(fn, resets, reset_carry)

    options = dict(lengths=lengths, resets=resets, time_major=time_major, **unroll_options)
    kernel = _whole_sequence_kernel(cell, params.forward, xs, carry[0], options)
    if (
        kernels.runs_both_ways(cell, kernel)
        and _whole_sequence_kernel(cell, params.backward, xs, carry[1], options) == kernel
    ):  # both directions in one call, as PyTorch's bidirectional nn.LSTM runs them
        last, ys = unroll_both_ways(
            cell,
            params.forward,
            params.backward,
            xs,
            carry,
            lengths=lengths,
            time_major=time_major,
            implementation=kernel,
        )
        return BidirectionalCarry(*last), _merge(merge, *ys)
    if batch_directions and kernel is not None:
        batch_directions = False  # one kernel call per direction beats a vmap of the two
    if batch_directions:
        last, ys = _batched_directions(cell, params, xs, carry, reset_carry, batch_shape, options)
    else:
        last_f, ys_f = unroll(
            cell, params.forward, xs, carry[0], reset_carry=reset_carry[0], **options
        )
        last_b, ys_b = unroll(
            cell, params.backward, xs, carry[1], reset_carry=reset_carry[1], reverse=True, **options
        )
        last, ys = BidirectionalCarry(last_f, last_b), (ys_f, ys_b)
    return last, _merge(merge, *ys)


def _whole_sequence_kernel(cell, params, xs, carry, options) -> str | None:
    """The whole-sequence kernel `unroll` would run one direction on (``"native"``,
    `jaxrnn._native`, or ``"cudnn"``, `jaxrnn._cudnn`), or None."""
    if options.get("resets") is not None:
        return None
    try:
        chosen = kernels.choose(
            cell,
            options.get("implementation"),
            remat=options.get("remat", False),
            traced_args=(params, xs, carry, None, None, None),
        )
    except InputError:  # unroll says what is wrong, with the arguments as given
        return None
    return chosen if chosen in ("native", "cudnn") else None


def _direction_pair(fn: str, name: str, value) -> tuple:
    if value is None:
        return (None, None)
    if not (isinstance(value, tuple) and len(value) == 2):
        fail(fn, f"expected {name} to be a pair (forward, backward), got {type(value).__name__}")
    return value


def _batched_directions(cell, params, xs, carry, reset_carry, batch_shape, options):
    """Both directions in one scan: vmap over a leading direction axis of params, xs and carry."""
    time_axis = 0 if options["time_major"] else xs.ndim - 2
    carries, restarts = [], []
    for direction, given, restart in zip(params, carry, reset_carry, strict=True):
        given = checked_carry("bidirectional", cell, direction, given, batch_shape)
        if restart is not None:
            check_carry("bidirectional", cell, direction, restart, batch_shape, "reset_carry")
        carries.append(given)
        restarts.append(given if restart is None else restart)
    if not jax.tree.leaves(reset_carry):
        restarts = None

    def stack(forward, backward):
        return jnp.stack([forward, backward])

    options = dict(options)
    lengths, resets = options.pop("lengths"), options.pop("resets")
    xs_backward = _reverse_within_lengths(xs, lengths, time_axis)
    if resets is None:
        resets_both = None
    else:
        # Read backwards, a segment starts at its own last step: where the next step resets.
        resets = jnp.moveaxis(jnp.asarray(resets), time_axis, -1)
        if lengths is not None:
            # A reset past the end is dropped (as unroll drops it) before the backward reading
            # is worked out: the last valid step starts that reading from ``carry``, never anew.
            lengths = jnp.asarray(lengths)
            t = jax.lax.broadcasted_iota(lengths.dtype, resets.shape, resets.ndim - 1)
            resets = resets & (t < lengths[..., None])
        ends = kernels.reading_starts(resets, reverse=True)
        ends = _reverse_within_lengths(ends[..., None], lengths, ends.ndim - 1)[..., 0]
        resets_both = jnp.moveaxis(jnp.stack([resets, ends]), -1, time_axis + 1)

    def run(params, xs, carry, resets, restart):
        return unroll(
            cell, params, xs, carry, lengths=lengths, resets=resets, reset_carry=restart, **options
        )

    in_axes = (0, 0, 0, None if resets is None else 0, None if restarts is None else 0)
    last, ys = jax.vmap(run, in_axes=in_axes)(
        jax.tree.map(stack, *params),
        stack(xs, xs_backward),
        jax.tree.map(stack, *carries),
        resets_both,
        None if restarts is None else jax.tree.map(stack, *restarts),
    )
    last = BidirectionalCarry(*(jax.tree.map(lambda leaf, d=d: leaf[d], last) for d in (0, 1)))
    return last, (ys[0], _reverse_within_lengths(ys[1], lengths, time_axis))


def _reverse_within_lengths(a: Array, lengths: Array | None, time_axis: int) -> Array:
    """Step t < L of each example goes to L − 1 − t, padded steps stay (an involution).

    ``a`` is (…, T, features) with time at ``time_axis`` and the batch axes around it, and
    ``lengths`` has the batch shape; without lengths every example is reversed over all T steps.
    """
    if lengths is None:
        return jnp.flip(a, axis=time_axis)
    lengths = jnp.asarray(lengths)
    t = jax.lax.broadcasted_iota(lengths.dtype, a.shape[:-1], time_axis)
    length = jnp.expand_dims(lengths, time_axis)
    index = jnp.where(t < length, length - 1 - t, t)
    return jnp.take_along_axis(a, index[..., None], axis=time_axis)


def _merge(merge: Merge, ys_f: Array, ys_b: Array) -> Array | tuple[Array, Array]:
    if merge is None:
        return ys_f, ys_b
    if merge == "concat":
        return jnp.concatenate([ys_f, ys_b], axis=-1)  # [a→⟨t⟩, a←⟨t⟩]
    if merge == "sum":
        return ys_f + ys_b
    if merge == "mean":
        return (ys_f + ys_b) / 2
    return ys_f * ys_b  # "product"


def _check_merge(fn: str, merge) -> None:
    if not (merge is None or (isinstance(merge, str) and merge in _MERGES)):
        fail(fn, f"expected merge 'concat', 'sum', 'mean', 'product' or None, got {merge!r}")


def _check_sequence(fn: str, params: Params, xs, lengths, time_major: bool) -> tuple[int, ...]:
    """Checks xs against the params and lengths against xs; returns the batch shape."""
    check_flag(fn, "time_major", time_major)
    shape = check_xs(fn, params, xs, time_major)
    batch_shape = shape[1:-1] if time_major else shape[:-2]
    check_lengths(fn, lengths, batch_shape)
    return batch_shape


def _check_same_shapes(fn: str, params: BidirectionalParams) -> None:
    forward = jax.tree.map(lambda p: (jnp.shape(p), jnp.result_type(p)), params.forward)
    backward = jax.tree.map(lambda p: (jnp.shape(p), jnp.result_type(p)), params.backward)
    if forward != backward:
        fail(
            fn,
            "expected params.forward and params.backward of the same shapes and dtypes, "
            f"got {forward} and {backward}",
        )


# ------------------------------------------------------------------------------------- deep RNN


class StackedParams(NamedTuple):
    """A deep RNN: one entry per layer, bottom first, each cell params or `BidirectionalParams`."""

    layers: tuple


def stacked_init(
    cell: Cell,
    key: Array,
    input_size: int,
    hidden_size: int,
    num_layers: int,
    *,
    bidirectional: bool = False,
    dtype=jnp.float32,
) -> StackedParams:
    """Initial params of a deep RNN of ``num_layers`` layers of ``hidden_size`` units.

    Layer 0 reads ``input_size`` features; layer l > 0 reads the outputs of layer l − 1: H of them,
    or 2H = [a→, a←] when ``bidirectional``.

    Raises:
      InputError: if ``num_layers`` is not a positive int.
    """
    check_positive_int("stacked_init", "num_layers", num_layers)
    layers, n_in = [], input_size
    for key_layer in jax.random.split(key, num_layers):
        if bidirectional:
            layers.append(bidirectional_init(cell, key_layer, n_in, hidden_size, dtype))
            n_in = 2 * hidden_size
        else:
            layers.append(cell.init(key_layer, n_in, hidden_size, dtype))
            n_in = hidden_size
    return StackedParams(tuple(layers))


def stacked(
    cell: Cell,
    params: StackedParams,
    xs: Array,
    *,
    lengths: Array | None = None,
    resets: Array | None = None,
    carry: tuple | None = None,
    reset_carry: tuple | None = None,
    dropout_rate: float = 0.0,
    dropout_key: Array | None = None,
    merge: Merge = "concat",
    time_major: bool = False,
    batch_directions: bool = True,
    **unroll_options: Any,
) -> tuple[tuple, Array | tuple[Array, Array]]:
    """A deep RNN: each layer reads the outputs of the layer below, step by step.

        a^[0]⟨t⟩ = x⟨t⟩
        a^[l]⟨t⟩ = g(W_a^[l] [a^[l]⟨t−1⟩, a^[l−1]⟨t⟩] + b_a^[l]),   l = 1 … L

    (g and the gates as in the cell). A bidirectional layer passes [a→^[l]⟨t⟩, a←^[l]⟨t⟩] up, as in
    ``torch.nn.LSTM(bidirectional=True)``; ``merge`` combines only the top layer's two directions.
    With ``dropout_key``, inverted dropout acts between layers, on the outputs of every layer but
    the last (as in PyTorch): each unit is zeroed with probability ``dropout_rate`` and the kept
    ones are scaled by 1 / (1 − ``dropout_rate``); the carries are never dropped. The input of
    layer l ≥ 1 (counting from 0) uses the key ``jax.random.split(dropout_key, L − 1)[l − 1]``.

    Args:
      cell: a `Cell`, the same for every layer.
      params: `StackedParams`, from `stacked_init` or built by hand (layers may mix unidirectional
        and bidirectional ones).
      xs: inputs (*batch, T, input_size), or (T, *batch, input_size) with ``time_major``.
      lengths: optional int array of shape ``batch`` of valid lengths, used by every layer.
      resets: optional bool array (*batch, T) (or (T, *batch) with ``time_major``) of the steps
        that start a new segment, used by every layer (see `jaxrnn.unroll`).
      carry: optional tuple of initial carries, one per layer (a `BidirectionalCarry` or pair for a
        bidirectional layer); zeros if None, or for a layer whose entry is None.
      reset_carry: with ``resets``, an optional tuple of the carries each layer starts again from
        at a reset, one per layer as ``carry`` (see `jaxrnn.unroll`); that layer's ``carry`` where
        None.
      dropout_rate: in [0, 1); a Python number.
      dropout_key: a PRNG key turns dropout on (training); None (inference) turns it off.
      merge: as in `bidirectional`, for the top layer if it is bidirectional.
      time_major: whether time is the first axis of ``xs`` and of the outputs.
      batch_directions: as in `bidirectional`, for each bidirectional layer.
      **unroll_options: passed to `jaxrnn.unroll` (``remat``, ``implementation``).

    Returns:
      ``(carries, ys)``: a tuple of every layer's last carry, bottom first, and the top layer's
      outputs (*batch, T, H) (or as `bidirectional` returns them).

    Raises:
      InputError: if the layers do not fit together or ``xs``, ``lengths``, ``carry`` or
        ``dropout_rate`` do not fit the params.

    Example: a 2-layer bidirectional LSTM tagger, then a dense layer, per step
      >>> cell = jaxrnn.lstm()
      >>> key_rnn, key_head, key_drop = jax.random.split(jax.random.key(0), 3)
      >>> params = jaxrnn.stacked_init(cell, key_rnn, 3, 16, num_layers=2, bidirectional=True)
      >>> head = jaxrnn.dense_init(key_head, 2 * 16, 5)
      >>> xs, lengths = jnp.ones((4, 10, 3)), jnp.array([10, 7, 1, 0])
      >>> carries, hs = jaxrnn.stacked(
      ...     cell, params, xs, lengths=lengths, dropout_rate=0.2, dropout_key=key_drop
      ... )
      >>> logits = jaxrnn.dense(head, hs)       # ŷ⟨t⟩ = softmax(logits[:, t])
      >>> hs.shape, logits.shape, len(carries)
      ((4, 10, 32), (4, 10, 5), 2)
    """
    fn = "stacked"
    _check_merge(fn, merge)
    if not isinstance(params, StackedParams):
        fail(
            fn,
            f"expected params to be StackedParams, got {type(params).__name__}",
            "create them with jaxrnn.stacked_init",
        )
    if not params.layers:
        fail(fn, "expected params.layers to hold at least one layer, got none")
    if not isinstance(dropout_rate, int | float) or not 0.0 <= dropout_rate < 1.0:
        fail(fn, f"expected dropout_rate a number in [0, 1), got {dropout_rate!r}")
    layers = params.layers
    _check_sequence(fn, _unidirectional(layers[0]), xs, lengths, time_major)
    for depth in range(1, len(layers)):
        below, layer = layers[depth - 1], layers[depth]
        n_in = input_size(_unidirectional(layer))
        if n_in is None or input_size(_unidirectional(below)) is None:
            continue  # a user's cell: its own step checks what it reads
        n_out = hidden_size(_unidirectional(below)) * (
            2 if isinstance(below, BidirectionalParams) else 1
        )
        if n_in != n_out:
            fail(
                fn,
                f"expected params.layers[{depth}] with input_size={n_out} (the outputs of layer "
                f"{depth - 1}), got input_size={n_in}",
            )
    if carry is None:
        carry = (None,) * len(layers)
    elif not isinstance(carry, tuple) or len(carry) != len(layers):
        expected = f"expected carry to be a tuple of {len(layers)} carries, one per layer, or None"
        if not isinstance(carry, tuple):
            fail(fn, f"{expected}, got {type(carry).__name__}")
        hint = ""
        if len(carry) == 2 * len(layers) and isinstance(layers[0], BidirectionalParams):
            hint = (
                "a bidirectional PyTorch h0 needs stacked_carry_from_torch(..., bidirectional=True)"
            )
        fail(fn, f"{expected}, got {len(carry)} carries for {len(layers)} layers", hint)
    if reset_carry is None:
        reset_carry = (None,) * len(layers)
    elif not isinstance(reset_carry, tuple) or len(reset_carry) != len(layers):
        got = len(reset_carry) if isinstance(reset_carry, tuple) else type(reset_carry).__name__
        fail(fn, f"expected reset_carry to be a tuple of {len(layers)} carries or None, got {got}")
    check_reset_carry(fn, resets, reset_carry)

    keys = [None] * len(layers)
    if dropout_key is not None and dropout_rate > 0 and len(layers) > 1:
        keys[1:] = list(jax.random.split(dropout_key, len(layers) - 1))

    last = []
    for depth, (layer, layer_carry, layer_restart, key) in enumerate(
        zip(layers, carry, reset_carry, keys, strict=True)
    ):
        xs = dropout(key, dropout_rate, xs)
        if isinstance(layer, BidirectionalParams):
            layer_last, xs = bidirectional(
                cell,
                layer,
                xs,
                lengths=lengths,
                resets=resets,
                merge=merge if depth == len(layers) - 1 else "concat",
                carry=layer_carry,
                reset_carry=layer_restart,
                time_major=time_major,
                batch_directions=batch_directions,
                **unroll_options,
            )
        else:
            layer_last, xs = unroll(
                cell,
                layer,
                xs,
                layer_carry,
                lengths=lengths,
                resets=resets,
                reset_carry=layer_restart,
                time_major=time_major,
                **unroll_options,
            )
        last.append(layer_last)
    return tuple(last), xs


@functools.cache
def deep(cell: Cell, num_layers: int) -> Cell:
    """``num_layers`` copies of ``cell`` stacked into one cell (haiku's ``DeepRNN``).

        a^[0]⟨t⟩ = x⟨t⟩
        carry^[l]⟨t⟩, a^[l]⟨t⟩ = cell.step(params.layers[l − 1], carry^[l]⟨t−1⟩, a^[l−1]⟨t⟩)
        y⟨t⟩ = a^[L]⟨t⟩

    The params are `StackedParams` of unidirectional layers (``init`` is `stacked_init`), the carry
    a tuple of the layers' carries, bottom first. It is a `Cell` like any other: one ``step`` for
    sampling, and `jaxrnn.unroll` of it runs `stacked` (layer after layer, each over the whole
    sequence with its own fastest kernel), the same function as a scan of its step. Dropout
    between layers is `stacked`'s.

    Example:
      >>> cell = jaxrnn.layers.deep(jaxrnn.lstm(), 2)
      >>> params = cell.init(jax.random.key(0), input_size=3, hidden_size=8)
      >>> carries, ys = jaxrnn.unroll(cell, params, jnp.ones((4, 10, 3)))
      >>> len(carries), ys.shape
      (2, (4, 10, 8))
    """
    check_positive_int("deep", "num_layers", num_layers)

    def init(key, input_size: int, hidden_size: int, dtype=jnp.float32) -> StackedParams:
        return stacked_init(cell, key, input_size, hidden_size, num_layers=num_layers, dtype=dtype)

    def init_carry(params: StackedParams, batch_shape: tuple[int, ...] = ()) -> tuple:
        return tuple(cell.init_carry(layer, batch_shape) for layer in _layers("deep", params))

    name = f"deep({cell_name(cell)}, {num_layers})"

    def step(params: StackedParams, carry: tuple, x: Array) -> tuple[tuple, Array]:
        layers = _layers(f"{name}.step", params)
        new_carry = []
        for layer, layer_carry in zip(layers, carry, strict=True):
            layer_carry, x = cell.step(layer, layer_carry, x)
            new_carry.append(layer_carry)
        return tuple(new_carry), x

    step.__qualname__ = f"{name}.step"
    stacked_cell = Cell(init, init_carry, step)
    kernels.describe_layers(stacked_cell, cell, stacked)
    return stacked_cell


def _layers(fn: str, params) -> tuple:
    if not isinstance(params, StackedParams):
        fail(fn, f"expected params to be StackedParams, got {type(params).__name__}")
    for depth, layer in enumerate(params.layers):
        if isinstance(layer, BidirectionalParams):
            fail(
                fn,
                f"expected unidirectional layers, got BidirectionalParams at layer {depth}",
                "a bidirectional layer reads the future: run it with jaxrnn.stacked",
            )
    return params.layers


def _unidirectional(layer: Params) -> Params:
    """The params of one direction of a layer, which carry its input and hidden sizes."""
    return layer.forward if isinstance(layer, BidirectionalParams) else layer


def embed_ids(
    table: Array | None, ids: Array, vocab_size: int, dtype, *, start: bool = True
) -> Array:
    """Input vectors for token ids: ids (*shape) int -> (*shape, E) rows of ``table`` (V, E), or,
    with ``table`` None, one-hot vectors (*shape, vocab_size) of ``dtype``, as in the course.

    With ``start``, the id −1 gives the zero vector either way: the course's x⟨1⟩ = 0. Any other id
    outside [0, vocab_size), which ``jit`` cannot check, gives a vector of NaN, so that every
    output computed from it is NaN rather than a silent wrong number (a one-hot vector of an
    unknown id would be all zeros, and a table lookup would clamp it to the first or last row).
    """
    ids = jnp.asarray(ids)
    if table is None:
        vectors = jax.nn.one_hot(ids, vocab_size, dtype=dtype)  # −1 is all zeros
    else:
        rows = table[jnp.clip(ids, 0, vocab_size - 1)]
        vectors = jnp.where((ids >= 0)[..., None], rows, jnp.zeros((), table.dtype))
    in_range = (ids >= (-1 if start else 0)) & (ids < vocab_size)
    return jnp.where(in_range[..., None], vectors, jnp.full((), jnp.nan, vectors.dtype))


def _mix32(x: Array) -> Array:
    # A bijective uint32 mixer, two multiply-xorshift rounds (constants from C. Wellons' hash
    # prospector): each output bit depends on every input bit.
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x21F0AAAD)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x735A2D97)
    return x ^ (x >> 15)


def _check_rate(fn: str, rate: Any) -> None:
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 <= rate < 1.0:
        fail(fn, f"expected rate a number in [0, 1), got {rate!r}")


def dropout_mask(key: Array, rate: float, shape: tuple[int, ...]) -> Array:
    """The elements `dropout` keeps: bool (*shape), each True with probability 1 − ``rate``.

    Counter-based: with (s0, s1) = ``jax.random.bits(key, (2,), uint32)``, element number i (in
    row-major order) is kept when mix(mix(i ^ s0) ^ s1) ≥ round(rate · 2³²), mix a bijective
    32-bit integer hash. That is a dozen integer operations an element, where
    ``jax.random.bernoulli``'s threefry takes about a hundred (on CPU it was 15% of a character
    model's training step). Shapes of 2³² elements or more use ``jax.random.bernoulli``.

    Raises:
      InputError: ``rate`` not a number in [0, 1).
    """
    _check_rate("dropout_mask", rate)
    size = math.prod(shape)
    if size >= 2**32:
        return jax.random.bernoulli(key, 1.0 - rate, shape)
    s0, s1 = jax.random.bits(key, (2,), jnp.uint32)
    index = jax.lax.iota(jnp.uint32, size).reshape(shape)
    return _mix32(_mix32(index ^ s0) ^ s1) >= jnp.uint32(min(round(rate * 2**32), 2**32 - 1))


def dropout(key: Array | None, rate: float, x: Array) -> Array:
    """Inverted dropout: zero with probability ``rate``, scale the kept by 1 / (1 − rate).

    x (*shape) any float dtype -> the same. Off (returns x) when ``key`` is None, as at
    inference. The kept elements are `dropout_mask`'s.

    Raises:
      InputError: ``rate`` not a number in [0, 1).
    """
    _check_rate("dropout", rate)
    if key is None or rate == 0.0:
        return x
    keep = dropout_mask(key, rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros((), x.dtype))
