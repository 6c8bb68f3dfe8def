"""Training with optax: gradient clipping and a jitted train step that never applies a bad update.

This is the one module that imports optax. Gradients come from ``jax.value_and_grad`` through the
scan, which is backpropagation through time.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrnn._checks import fail, first_shape_difference, is_number, tree_layout
from jaxrnn.cells import Array

Params = Any


def clip_elementwise(max_value: float) -> optax.GradientTransformation:
    """Clips every gradient entry to [−max_value, max_value], the course's ``clip(gradients, N)``.

    Example:
      >>> optimizer = optax.chain(jaxrnn.train.clip_elementwise(5.0), optax.sgd(0.01))
    """
    if not (is_number(max_value) and max_value > 0):
        fail("clip_elementwise", f"expected max_value > 0, got {max_value!r}")
    return optax.clip(max_value)


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
    """Rescales the gradients g to g · min(1, max_norm / ‖g‖₂), ‖g‖₂ over all parameters at once.

    Unlike element-wise clipping this keeps the gradient's direction.
    """
    if not (is_number(max_norm) and max_norm > 0):
        fail("clip_by_global_norm", f"expected max_norm > 0, got {max_norm!r}")
    return optax.clip_by_global_norm(max_norm)


def learning_rate_schedule(
    peak: float, *, steps: int, warmup_steps: int = 0, final: float | None = None
) -> float | optax.Schedule:
    """The learning rate of a run of ``steps`` steps: ``peak`` throughout, or a linear warm-up
    from 0 over ``warmup_steps`` and then a cosine decay from ``peak`` to ``final`` at ``steps``
    (``final`` None: no decay). A plain float when it is constant, so optax sees a number."""
    if final is None and warmup_steps == 0:
        return peak
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0 if warmup_steps else peak,
        peak_value=peak,
        warmup_steps=warmup_steps,
        decay_steps=max(steps, warmup_steps + 1),
        end_value=peak if final is None else final,
    )


def make_optimizer(
    learning_rate: float | optax.Schedule,
    *,
    name: str = "adam",
    clip_value: float | None = None,
    clip_norm: float | None = None,
) -> optax.GradientTransformation:
    """An optax optimizer with optional clipping applied first (element-wise, then global norm).

    Args:
      learning_rate: the step size, a finite number > 0; or an optax schedule (a function of the
        step count); or a scalar array, as ``optax.inject_hyperparams`` passes it.
      name: ``"sgd"``, ``"adam"``, ``"adamw"`` or ``"rmsprop"``.
      clip_value: clip each gradient entry to [−clip_value, clip_value]; a number > 0 or None.
      clip_norm: clip the global gradient norm to clip_norm; a number > 0 or None.

    Raises:
      jaxrnn.InputError: any other argument (e.g. a learning rate given as a string).
    """
    fn = "make_optimizer"
    optimizers = {
        "sgd": optax.sgd,
        "adam": optax.adam,
        "adamw": optax.adamw,
        "rmsprop": optax.rmsprop,
    }
    if not isinstance(name, str) or name not in optimizers:
        fail(fn, f"expected name in {sorted(optimizers)}, got {name!r}")
    rate = learning_rate
    # optax.inject_hyperparams passes the rate as a scalar array, traced or 0 during a warm-up, so
    # an array's value is not checked; a number's is: a rate no step can use is refused here.
    real_array = isinstance(rate, jax.Array | np.ndarray) and (
        jnp.issubdtype(rate.dtype, jnp.floating) or jnp.issubdtype(rate.dtype, jnp.integer)
    )
    usable_number = is_number(rate) and 0 < rate < math.inf
    if not ((real_array and rate.ndim == 0) or usable_number or callable(rate)):
        fail(
            fn,
            f"expected learning_rate a finite number > 0 or an optax schedule, got {rate!r}",
        )
    for arg, value in (("clip_value", clip_value), ("clip_norm", clip_norm)):
        if value is not None and not (is_number(value) and value > 0):
            fail(fn, f"expected {arg} a number > 0 or None, got {value!r}")
    chain = []
    if clip_value is not None:
        chain.append(clip_elementwise(clip_value))
    if clip_norm is not None:
        chain.append(clip_by_global_norm(clip_norm))
    chain.append(optimizers[name](learning_rate))
    return optax.chain(*chain)


def _check_opt_state(optimizer: optax.GradientTransformation, params, opt_state) -> None:
    """Raise `jaxrnn.InputError` unless ``opt_state`` has the structure and shapes that
    ``optimizer.init(params)`` gives, which optax's update needs (else it fails with a long pytree
    mismatch). Shapes only: under ``jit`` it runs once, while tracing."""
    spec = jax.tree.map(lambda x: jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)), params)
    try:
        expected = jax.eval_shape(optimizer.init, spec)
    except jax.errors.JAXTypeError:  # an init that reads the params' values: nothing to compare
        return
    want_def, want = tree_layout(expected)
    got_def, got = tree_layout(opt_state)
    hint = "make it with optimizer.init(params) of the params passed to the step"
    path = first_shape_difference(want, got)
    if path is not None:
        fail(
            "train_step",
            "expected opt_state made by optimizer.init for these params, got one made for "
            f"other params (or by another optimizer): at {path or 'its root'} it has "
            f"{_described(got.get(path))}, where optimizer.init(params) has "
            f"{_described(want.get(path))}",
            hint,
        )
    if got_def != want_def:
        fail(
            "train_step",
            "expected opt_state made by optimizer.init for these params, got one of another "
            f"structure: {got_def}, where optimizer.init(params) gives {want_def}",
            hint,
        )


def _described(shape: tuple | None) -> str:
    return "no array" if shape is None else f"an array of shape {shape}"


class StepMetrics(NamedTuple):
    """What one training step reports."""

    loss: Array  # () the loss before the update
    grad_norm: Array  # () global L2 norm of the gradients, before clipping
    finite: Array  # () bool: False if the loss, gradients or update were not finite (step skipped)


def make_train_step(
    loss_fn: Callable[..., Array],
    optimizer: optax.GradientTransformation,
    *,
    jit: bool = True,
    has_aux: bool = False,
) -> Callable[..., tuple]:
    """Builds ``train_step(params, opt_state, *batch) -> (params, opt_state, StepMetrics)``.

    The step computes ``loss_fn(params, *batch)`` and its gradients (BPTT through the scan), then
    applies the optimizer's update. If the loss, any gradient, or any of the updated parameters or
    optimizer state is NaN or ±Inf, the update is not applied: params and optimizer state come back
    unchanged and ``metrics.finite`` is False, so a caller can count such steps and stop (this
    function does not stop by itself).

    The same step runs data-parallel on several devices: place params and optimizer state with
    `jaxrnn.parallel.replicate` and each batch with `jaxrnn.parallel.shard_batch`, and ``jax.jit``
    splits the computation by rows, with XLA adding the per-device gradients (one all-reduce per
    step).

    Args:
      loss_fn: ``(params, *batch) -> scalar loss``.
      optimizer: any optax ``GradientTransformation``, e.g. from `make_optimizer`.
      jit: compile the step with ``jax.jit``.
      has_aux: ``loss_fn`` returns ``(loss, aux)`` (e.g. the last carry, for truncated BPTT); the
        step then returns ``(params, opt_state, metrics, aux)``.

    Returns:
      The train step.

    Example:
      >>> cell = jaxrnn.gru()
      >>> params = cell.init(jax.random.key(0), input_size=3, hidden_size=4)
      >>> xs, ys = jnp.ones((8, 5, 3)), jnp.zeros((8, 5, 4))
      >>> def loss_fn(params, xs, ys):
      ...     return jnp.mean((jaxrnn.unroll(cell, params, xs)[1] - ys) ** 2)
      >>> optimizer = jaxrnn.make_optimizer(1e-2, clip_value=5.0)
      >>> step = jaxrnn.make_train_step(loss_fn, optimizer)
      >>> params, opt_state, metrics = step(params, optimizer.init(params), xs, ys)
      >>> bool(metrics.finite)
      True
    """

    def train_step(params, opt_state, *batch):
        _check_opt_state(optimizer, params, opt_state)
        value, grads = jax.value_and_grad(loss_fn, has_aux=has_aux)(params, *batch)
        loss, aux = value if has_aux else (value, None)
        if jnp.ndim(loss) != 0:
            fail("train_step", f"expected loss_fn to return a scalar, got shape {jnp.shape(loss)}")
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        # The update is checked as well as the gradients: a NaN learning rate, or an optimizer
        # whose moments overflow, turns finite gradients into non-finite parameters.
        finite = jnp.isfinite(loss)
        for leaf in jax.tree.leaves((grads, new_params, new_opt_state)):
            if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
                finite &= jnp.all(jnp.isfinite(leaf))

        def keep_if_finite(new, old):
            return jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)

        metrics = StepMetrics(loss, optax.tree.norm(grads), finite)
        new_params = keep_if_finite(new_params, params)
        new_opt_state = keep_if_finite(new_opt_state, opt_state)
        if has_aux:
            return new_params, new_opt_state, metrics, aux
        return new_params, new_opt_state, metrics

    return jax.jit(train_step) if jit else train_step
