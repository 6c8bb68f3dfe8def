"""Layers around the recurrent core. For now the dense output head ŷ⟨t⟩ = W_ya a⟨t⟩ + b_y."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn._checks import check_floating, check_rank_at_least, check_shape
from jaxrnn.cells import Array


class DenseParams(NamedTuple):
    """An affine map y = x @ w + b."""

    w: Array  # (in_features, out_features)  W_yaᵀ
    b: Array  # (out_features,)              b_y


def dense_init(key: Array, in_features: int, out_features: int, dtype=jnp.float32) -> DenseParams:
    """Glorot-uniform weights and zero bias for `dense`."""
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
