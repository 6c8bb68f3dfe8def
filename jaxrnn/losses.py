"""Per-step losses over sequences, masked by lengths and reduced over time by sum or mean.

The course writes the sequence loss as the sum of per-step losses,
L(ŷ, y) = Σ_t L⟨t⟩(ŷ⟨t⟩, y⟨t⟩); averaging over time instead makes the scale independent of T.
Both are offered through ``reduce_time``. Every function returns one loss per example, shape
``batch``; average over the batch yourself (``.mean()``), so that the batch reduction stays visible.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from jaxrnn._checks import (
    check_floating,
    check_integer,
    check_rank_at_least,
    check_shape,
    check_values_in,
    dtype_of,
    fail,
)
from jaxrnn.cells import Array

Reduction = Literal["sum", "mean"]


def sequence_mask(lengths: Array, n_steps: int) -> Array:
    """Boolean mask of valid steps: mask[..., t] = t < lengths[...].

    Args:
      lengths: int array of shape ``batch``.
      n_steps: T.

    Returns:
      bool array (*batch, T).
    """
    check_integer("sequence_mask", "lengths", lengths)
    lengths = jnp.asarray(lengths)
    steps = jnp.arange(n_steps).reshape((1,) * lengths.ndim + (n_steps,))
    return steps < lengths[..., None]


def _accumulating(logits: Array) -> Array:
    """bfloat16/float16 logits are upcast to float32: log-softmax and the sums over classes and
    time lose too much in 8 or 11 mantissa bits. Other dtypes are kept."""
    return logits.astype(jnp.promote_types(logits.dtype, jnp.float32))


def _reduce_over_time(fn: str, per_step: Array, lengths: Array | None, reduce_time: str) -> Array:
    """per_step (*batch, T) -> (*batch,), summing or averaging over the valid steps."""
    if reduce_time not in ("sum", "mean"):
        fail(fn, f"expected reduce_time 'sum' or 'mean', got {reduce_time!r}")
    n_steps = per_step.shape[-1]
    if lengths is None:
        total = per_step.sum(-1)
        count = jnp.full(per_step.shape[:-1], n_steps, per_step.dtype)
    else:
        check_integer(fn, "lengths", lengths)
        check_shape(
            fn,
            "lengths",
            lengths,
            per_step.shape[:-1],
            "lengths has one entry per example: the batch dimensions of the logits",
        )
        check_values_in(fn, "lengths", lengths, 0, n_steps, closed=True, hint="one per example")
        total = jnp.where(sequence_mask(lengths, n_steps), per_step, 0).sum(-1)
        # Under jit, as in unroll: a length outside [0, T] gives that example a NaN loss.
        total = jnp.where((lengths >= 0) & (lengths <= n_steps), total, jnp.nan)
        count = lengths.astype(per_step.dtype)
    if reduce_time == "sum":
        return total
    # An empty sequence has mean loss 0, not 0/0.
    return total / jnp.maximum(count, 1)


def _add_time_axis(fn: str, logits: Array, labels: Array, lengths: Array | None, per_class: bool):
    """Arguments without a time axis (``time_axis=False``) as sequences of one step each.

    logits (*batch, K) -> (*batch, 1, K); labels (*batch,) -> (*batch, 1), or with ``per_class``
    (*batch, K) -> (*batch, 1, K).
    """
    dtype_of(fn, "logits", logits)  # a list is refused, as with a time axis, not converted
    dtype_of(fn, "labels", labels)
    shape = check_rank_at_least(fn, "logits", logits, 1, "(*batch, classes) with time_axis=False")
    check_shape(fn, "labels", labels, shape if per_class else shape[:-1], "time_axis=False")
    if lengths is not None:
        fail(fn, "expected lengths=None with time_axis=False: there are no steps to leave out")
    return jnp.expand_dims(logits, -2), jnp.expand_dims(labels, -2 if per_class else -1)


def softmax_cross_entropy(
    logits: Array,
    labels: Array,
    lengths: Array | None = None,
    *,
    reduce_time: Reduction = "mean",
    time_axis: bool = True,
) -> Array:
    """Per-step softmax cross-entropy, L⟨t⟩ = −log softmax(logits⟨t⟩)[y⟨t⟩], reduced over time.

    The axis before the classes is time: (B, T, V) is a batch of sequences, and (T, V) one
    sequence, whose loss is a scalar. Classifier logits (B, K) with labels (B,) have no time
    axis; pass ``time_axis=False`` for one loss per example, shape (B,) (the same as
    ``logits[:, None]`` with ``labels[:, None]``, a sequence of one step each).

    Args:
      logits: (*batch, T, V) unnormalised log-probabilities, floating point; (*batch, V) with
        ``time_axis=False``.
      labels: (*batch, T) integer targets in [0, V); out of range, an error, or under ``jit``
        (values unknown) a NaN loss for that example. (*batch,) with ``time_axis=False``.
      lengths: optional (*batch,) ints in [0, T]; steps t ≥ lengths are left out of the loss.
        None with ``time_axis=False``.
      reduce_time: ``"sum"`` (the course) or ``"mean"`` over each example's valid steps.
      time_axis: False for arguments without a time axis, such as a classifier's.

    Returns:
      (*batch,) loss per example, in nats; float32 for bfloat16 or float16 logits.

    Raises:
      InputError: for shapes that do not fit together, labels that are not integers or are out of
        range, lengths out of [0, T], or an unknown ``reduce_time``.
    """
    fn = "softmax_cross_entropy"
    if not time_axis:
        logits, labels = _add_time_axis(fn, logits, labels, lengths, per_class=False)
    shape = check_rank_at_least(fn, "logits", logits, 2, "(*batch, time, classes)")
    check_floating(fn, "logits", logits)
    check_integer(fn, "labels", labels)
    check_shape(fn, "labels", labels, shape[:-1], "labels are class indices, one per step")
    n_classes = shape[-1]
    check_values_in(fn, "labels", labels, 0, n_classes, hint="one class index per step")
    log_probs = jax.nn.log_softmax(_accumulating(logits), axis=-1)
    per_step = -jnp.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
    # Under jit the labels' values are unknown: an out-of-range label makes its loss NaN (which
    # make_train_step refuses to apply) instead of silently indexing another class.
    in_range = (labels >= 0) & (labels < n_classes)
    per_step = jnp.where(in_range, per_step, jnp.nan)
    return _reduce_over_time(fn, per_step, lengths, reduce_time)


def sigmoid_cross_entropy(
    logits: Array,
    labels: Array,
    lengths: Array | None = None,
    *,
    reduce_time: Reduction = "mean",
    time_axis: bool = True,
) -> Array:
    """Per-step sigmoid (binary) cross-entropy, summed over output units, reduced over time.

        L⟨t⟩ = −Σ_k [y_k log σ(z_k) + (1 − y_k) log(1 − σ(z_k))]

    computed stably as Σ_k max(z_k, 0) − z_k y_k + log(1 + exp(−|z_k|)).

    The axis before the outputs is time, as in `softmax_cross_entropy`: (T, K) is one sequence.
    For a classifier's (B, K) logits and labels pass ``time_axis=False``: one loss per example,
    (B,).

    Args:
      logits: (*batch, T, K) floating point, one logit per binary output (e.g. "is a name");
        (*batch, K) with ``time_axis=False``.
      labels: (*batch, T, K) targets in [0, 1], same shape as logits; out of range, as above.
      lengths: optional (*batch,) ints; steps t ≥ lengths are left out of the loss. None with
        ``time_axis=False``.
      reduce_time: ``"sum"`` or ``"mean"`` over each example's valid steps.
      time_axis: False for arguments without a time axis, such as a classifier's.

    Returns:
      (*batch,) loss per example, in nats; float32 for bfloat16 or float16 logits.

    Raises:
      InputError: for shapes that do not fit together, labels out of [0, 1], lengths out of
        [0, T], or an unknown ``reduce_time``.
    """
    fn = "sigmoid_cross_entropy"
    if not time_axis:
        logits, labels = _add_time_axis(fn, logits, labels, lengths, per_class=True)
    shape = check_rank_at_least(fn, "logits", logits, 2, "(*batch, time, outputs)")
    check_floating(fn, "logits", logits)
    check_shape(fn, "labels", labels, shape)
    check_values_in(fn, "labels", labels, 0, 1, closed=True, hint="targets are probabilities")
    logits = _accumulating(logits)
    labels = jnp.asarray(labels).astype(logits.dtype)
    per_unit = jnp.maximum(logits, 0) - logits * labels + jnp.log1p(jnp.exp(-jnp.abs(logits)))
    per_unit = jnp.where((labels >= 0) & (labels <= 1), per_unit, jnp.nan)  # as above, under jit
    return _reduce_over_time(fn, per_unit.sum(-1), lengths, reduce_time)
