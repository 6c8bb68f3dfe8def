"""Weights from PyTorch's ``nn.RNN``, ``nn.GRU`` and ``nn.LSTM`` into jaxrnn params, and back.

PyTorch stores W_ih (G·H, D) and W_hh (G·H, H) with gates stacked along the rows, computes
x W_ihᵀ + b_ih + h W_hhᵀ + b_hh, and keeps both biases; jaxrnn stores the transposes with gates
along the columns and also keeps both biases, so conversion is transposition, with one exception:
PyTorch's GRU gate z weights the old state (h' = (1 − z) n + z h) where the course's Γ_u weights
the new candidate, so Γ_u = 1 − z = σ(−(…)) and the z rows are negated.

The functions take a ``state_dict()`` (or any mapping of names to arrays or tensors) and never
import torch.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np

from jaxrnn._checks import fail
from jaxrnn.cells import GRUParams, LSTMParams, RNNParams

_GATES = {RNNParams: 1, GRUParams: 3, LSTMParams: 4}


def _as_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def _read(fn: str, state_dict: Mapping, layer: int, reverse: bool, gates: int):
    suffix = f"_l{layer}" + ("_reverse" if reverse else "")
    key_w_ih, key_w_hh = f"weight_ih{suffix}", f"weight_hh{suffix}"
    if key_w_ih not in state_dict or key_w_hh not in state_dict:
        fail(
            fn,
            f"expected keys {key_w_ih!r} and {key_w_hh!r} in state_dict, got {sorted(state_dict)}",
        )
    if f"weight_hr{suffix}" in state_dict:
        fail(fn, "LSTMs with proj_size > 0 are not supported")
    w_ih, w_hh = _as_numpy(state_dict[key_w_ih]), _as_numpy(state_dict[key_w_hh])
    n_a = w_hh.shape[1]
    if w_hh.shape != (gates * n_a, n_a) or w_ih.ndim != 2 or w_ih.shape[0] != gates * n_a:
        fail(
            fn,
            f"expected {key_w_hh} of shape ({gates}·H, H) and {key_w_ih} ({gates}·H, D), "
            f"got {w_hh.shape} and {w_ih.shape}; is this the right kind of cell?",
        )
    zeros = np.zeros(gates * n_a, w_hh.dtype)
    b_ih = _as_numpy(state_dict.get(f"bias_ih{suffix}", zeros))
    b_hh = _as_numpy(state_dict.get(f"bias_hh{suffix}", zeros))
    return w_ih.T, w_hh.T, b_ih, b_hh


def _negate_update_gate(arrays, n_a: int):
    """z ↔ Γ_u for the GRU: negate the second gate block (an involution)."""
    flip = np.ones(3 * n_a)
    flip[n_a : 2 * n_a] = -1
    return [a * flip.astype(a.dtype) for a in arrays]


def rnn_params_from_torch(state_dict: Mapping, layer: int = 0, reverse: bool = False) -> RNNParams:
    """`RNNParams` for ``jaxrnn.rnn(nonlinearity)`` from a ``torch.nn.RNN`` state dict.

    Args:
      state_dict: ``module.state_dict()``; arrays or tensors.
      layer: which layer of a stacked module (``_l{layer}``).
      reverse: the backward direction of a bidirectional module (``_reverse``).
    """
    w_x, w_h, b_x, b_h = _read("rnn_params_from_torch", state_dict, layer, reverse, 1)
    return RNNParams(*(jnp.asarray(a) for a in (w_x, w_h, b_x, b_h)))


def gru_params_from_torch(state_dict: Mapping, layer: int = 0, reverse: bool = False) -> GRUParams:
    """`GRUParams` for ``jaxrnn.gru(reset="after")`` from a ``torch.nn.GRU`` state dict.

    Gate order (r, z, n) is kept; the z rows are negated so that Γ_u = σ(−z-preactivation) = 1 − z.
    """
    w_x, w_h, b_x, b_h = _read("gru_params_from_torch", state_dict, layer, reverse, 3)
    arrays = _negate_update_gate([w_x, w_h, b_x, b_h], w_h.shape[0])
    return GRUParams(*(jnp.asarray(a) for a in arrays))


def lstm_params_from_torch(
    state_dict: Mapping, layer: int = 0, reverse: bool = False
) -> LSTMParams:
    """`LSTMParams` for ``jaxrnn.lstm()`` from a ``torch.nn.LSTM`` state dict (gates i, f, g, o)."""
    w_x, w_h, b_x, b_h = _read("lstm_params_from_torch", state_dict, layer, reverse, 4)
    return LSTMParams(*(jnp.asarray(a) for a in (w_x, w_h, b_x, b_h)))


def params_to_torch(
    params: RNNParams | GRUParams | LSTMParams, layer: int = 0, reverse: bool = False
) -> dict[str, np.ndarray]:
    """A PyTorch-style state dict (numpy arrays) for one layer, the inverse of ``*_from_torch``.

    Load it with ``module.load_state_dict({k: torch.from_numpy(v) for k, v in d.items()})``
    (``strict=False`` for one layer of a deeper module). GRU params must be for
    ``gru(reset="after")``, the only GRU PyTorch has.

    Returns:
      dict with weight_ih_l{layer}, weight_hh_l{layer}, bias_ih_l{layer}, bias_hh_l{layer}.
    """
    if type(params) not in _GATES:
        fail("params_to_torch", f"expected RNNParams, GRUParams or LSTMParams, got {type(params)}")
    if getattr(params, "peephole", None) is not None:
        fail("params_to_torch", "PyTorch's LSTM has no peephole connections")
    arrays = [np.array(a) for a in (params.w_x, params.w_h, params.b_x, params.b_h)]
    if isinstance(params, GRUParams):
        n_a = arrays[1].shape[0]
        if arrays[1].shape[1] != 3 * n_a:
            fail("params_to_torch", "the simplified GRU has no PyTorch counterpart")
        arrays = _negate_update_gate(arrays, n_a)
    w_x, w_h, b_x, b_h = arrays
    suffix = f"_l{layer}" + ("_reverse" if reverse else "")
    return {
        f"weight_ih{suffix}": np.ascontiguousarray(w_x.T),
        f"weight_hh{suffix}": np.ascontiguousarray(w_h.T),
        f"bias_ih{suffix}": b_x,
        f"bias_hh{suffix}": b_h,
    }
