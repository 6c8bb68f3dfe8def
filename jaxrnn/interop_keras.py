"""Weights of Keras 3's ``LSTM``, ``GRU``, ``SimpleRNN`` and ``Bidirectional`` layers, both ways.

The functions take and return the list ``layer.get_weights()`` / ``layer.set_weights(...)`` use,
numpy arrays in this order, and never import keras:

    kernel            (D, G·H)   input weights, row vectors like jaxrnn's w_x (x @ kernel)
    recurrent_kernel  (H, G·H)   like jaxrnn's w_h
    bias              (G·H,)     one bias per gate, on the input side; absent with use_bias=False;
                      (2, 3H)    for GRU(reset_after=True): [input-side bias, recurrent-side bias]

and for ``Bidirectional`` the forward layer's list followed by the backward layer's.

Keras's equations (``activation="tanh"``, ``recurrent_activation="sigmoid"``, the defaults):

    LSTM       gates (i, f, c, o) = jaxrnn's (u, f, c̃, o): no reordering
               c = f ⊙ c_prev + i ⊙ tanh(x W_c + h_prev U_c + b_c),  h = o ⊙ tanh(c)
    GRU        gates (z, r, h);  h = z ⊙ h_prev + (1 − z) ⊙ h̃, so z weights the old state and
               jaxrnn's Γ_u = 1 − z: the blocks become (r, u, c̃) = (r, −z, h), negated z rows
      reset_after=True   h̃ = tanh(x W_h + b_ih + r ⊙ (h_prev U_h + b_hh))  ->  gru(reset="after")
      reset_after=False  h̃ = tanh(x W_h + b_h + (r ⊙ h_prev) U_h)          ->  gru(reset="before")
    SimpleRNN  h = tanh(x W + b + h_prev U)                                  ->  rnn("tanh")

Keras returns the LSTM's states as [h, c], the field order of `jaxrnn.LSTMState`:
``LSTMState(*states)``; a ``Bidirectional`` layer returns the forward states, then the backward.

What is lost going to Keras: jaxrnn keeps an input-side and a recurrent-side bias per gate
(b_x, b_h); Keras's LSTM, SimpleRNN and GRU(reset_after=False) have one, so ``params_to_keras``
adds them (b_x + b_h). The outputs are the same (up to float rounding), but coming back the sum is
in b_x and b_h is zero. GRU(reset_after=True) keeps both, so its round trip is exact either way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jaxrnn._checks import fail
from jaxrnn._convert import as_numpy, check_cell, export_arrays, reorder_gates, to_jax
from jaxrnn.cells import GRUParams, LSTMParams, ResetAfterGRUParams, RNNParams
from jaxrnn.layers import BidirectionalParams

__all__ = ["params_from_keras", "params_to_keras"]

_KERAS_TO_JAXRNN_GRU = ((1, 0, 2), (1, -1, 1))  # (z, r, h) -> (r, u = −z, c̃)
_JAXRNN_TO_KERAS_GRU = ((1, 0, 2), (-1, 1, 1))  # (r, u, c̃) -> (z = −u, r, h)
_NAMES = ("kernel", "recurrent_kernel", "bias")


def params_from_keras(
    weights: Sequence,
    cell: str,
    *,
    reset_after: bool = True,
    bidirectional: bool = False,
) -> RNNParams | GRUParams | LSTMParams | BidirectionalParams:
    """jaxrnn params from a Keras recurrent layer's ``get_weights()``.

    Args:
      weights: ``layer.get_weights()``: [kernel (D, G·H), recurrent_kernel (H, G·H), bias], bias
        (G·H,), or (2, 3H) for a GRU with reset_after=True; two arrays without bias
        (``use_bias=False``, zero biases here). For a ``Bidirectional`` layer, the forward list
        followed by the backward one (6 or 4 arrays).
      cell: ``"lstm"`` (``keras.layers.LSTM`` -> ``jaxrnn.lstm()``), ``"gru"`` (``GRU`` ->
        ``jaxrnn.gru(reset="after" if reset_after else "before")``) or ``"rnn"`` (``SimpleRNN`` ->
        ``jaxrnn.rnn()`` with the layer's activation).
      reset_after: the GRU layer's ``reset_after`` (Keras's default True); ignored otherwise.
      bidirectional: whether ``weights`` come from a ``keras.layers.Bidirectional`` wrapper.

    Returns:
      `LSTMParams`, `GRUParams` or `RNNParams` (w_x (D, G·H), w_h (H, G·H), b_x, b_h (G·H,)), or
      `BidirectionalParams` of two of them for `jaxrnn.bidirectional` (``merge="concat"`` is
      Keras's default ``merge_mode``). Only GRU(reset_after=True) has a recurrent-side bias; for
      the other layers b_h is zero and the Keras bias is b_x.

    Raises:
      InputError: for an unknown ``cell``, a list of the wrong length, or arrays whose shapes do
        not fit ``cell`` (e.g. LSTM weights read as a GRU's).

    Example (with keras installed; jaxrnn does not need it)::

        layer = keras.layers.GRU(16, return_sequences=True)  # reset_after=True
        layer.build((None, None, 3))
        params = jaxrnn.interop.params_from_keras(layer.get_weights(), "gru")
        _, ys = jaxrnn.unroll(jaxrnn.gru(reset="after"), params, xs)  # layer(xs), within 1e-5
    """
    fn = "params_from_keras"
    check_cell(fn, cell)
    if reset_after not in (True, False):
        fail(fn, f"expected reset_after True or False, got {reset_after!r}")
    if not isinstance(weights, Sequence) or isinstance(weights, str):
        fail(fn, f"expected weights to be a list of arrays, got {type(weights).__name__}")
    directions = 2 if bidirectional else 1
    if len(weights) not in (2 * directions, 3 * directions):
        per_layer = " per direction (forward, then backward)" if bidirectional else ""
        fail(
            fn,
            f"expected weights to be a list of {3 * directions} arrays [kernel, recurrent_kernel, "
            f"bias]{per_layer}, or {2 * directions} with use_bias=False, got {len(weights)}",
        )
    if bidirectional:
        half = len(weights) // 2
        return BidirectionalParams(
            _one_from_keras(fn, weights[:half], cell, reset_after, 0),
            _one_from_keras(fn, weights[half:], cell, reset_after, half),
        )
    return _one_from_keras(fn, weights, cell, reset_after, 0)


def _one_from_keras(fn: str, weights: Sequence, cell: str, reset_after: bool, first: int):
    params_type, gates = check_cell(fn, cell)
    kernel, recurrent = as_numpy(weights[0]), as_numpy(weights[1])
    name = [f"weights[{first + k}] ({_NAMES[k]})" for k in range(3)]
    n_a = recurrent.shape[0] if recurrent.ndim == 2 else -1
    if recurrent.shape != (n_a, gates * n_a):
        fail(
            fn,
            f"expected {name[1]} of shape (H, {gates}·H) for cell={cell!r}, got {recurrent.shape}",
            "is this the right kind of layer?",
        )
    if kernel.ndim != 2 or kernel.shape[1] != gates * n_a:
        fail(fn, f"expected {name[0]} of shape (D, {gates * n_a}), got {kernel.shape}")
    two_biases = cell == "gru" and reset_after
    bias_shape = (2, gates * n_a) if two_biases else (gates * n_a,)
    if len(weights) == 3:
        bias = as_numpy(weights[2])
        if bias.shape != bias_shape:
            hint = "GRU(reset_after=True) has a (2, 3H) bias" if cell == "gru" else ""
            fail(fn, f"expected {name[2]} of shape {bias_shape}, got {bias.shape}", hint)
    else:
        bias = np.zeros(bias_shape, recurrent.dtype)
    b_x, b_h = (bias[0], bias[1]) if two_biases else (bias, np.zeros_like(bias))
    arrays = [kernel, recurrent, b_x, b_h]
    if cell == "gru":
        arrays = [reorder_gates(a, *_KERAS_TO_JAXRNN_GRU) for a in arrays]
        params_type = ResetAfterGRUParams if reset_after else GRUParams
    return to_jax(params_type, *arrays)


def params_to_keras(
    params: RNNParams | GRUParams | LSTMParams | BidirectionalParams,
    *,
    reset_after: bool | None = None,
) -> list[np.ndarray]:
    """A Keras layer's weights list from jaxrnn params: ``layer.set_weights(params_to_keras(p))``.

    The inverse of `params_from_keras`. For a jaxrnn params pair with two biases per gate
    (b_x, b_h) going to a layer with one (LSTM, SimpleRNN, GRU with reset_after=False), the bias is
    b_x + b_h: exact for the outputs, but which part was which is lost.

    Args:
      params: `LSTMParams` (no peepholes), `GRUParams` of the full GRU, `RNNParams`, or
        `BidirectionalParams` of one of them (for ``keras.layers.Bidirectional``).
      reset_after: for GRU params, the Keras layer's ``reset_after``; None takes it from the
        params' type (`ResetAfterGRUParams`: True, `GRUParams`: False), and a value that
        contradicts the type is an error. Ignored for the other cells.

    Returns:
      [kernel (D, G·H), recurrent_kernel (H, G·H), bias (G·H,) or (2, 3H)], numpy arrays; for
      `BidirectionalParams` the forward list followed by the backward one.

    Raises:
      InputError: for params Keras has no layer for (peephole LSTM, simplified GRU), GRU params
        without ``reset_after``, or shapes that do not fit together.
    """
    fn = "params_to_keras"
    if isinstance(params, BidirectionalParams):
        return _one_to_keras(fn, params.forward, reset_after, "params.forward") + _one_to_keras(
            fn, params.backward, reset_after, "params.backward"
        )
    return _one_to_keras(fn, params, reset_after, "params")


def _one_to_keras(fn: str, params, reset_after: bool | None, name: str) -> list[np.ndarray]:
    w_x, w_h, b_x, b_h = export_arrays(fn, params, "Keras", name)
    if not isinstance(params, GRUParams):
        return [np.array(w_x), np.array(w_h), b_x + b_h]
    variant = isinstance(params, ResetAfterGRUParams)  # the params say which GRU they are for
    if reset_after is None:
        reset_after = variant
    if reset_after not in (True, False):
        fail(
            fn,
            f"expected reset_after=True (params of jaxrnn.gru(reset='after')) or False "
            f"(gru(reset='before')) for GRU params, got {reset_after!r}",
        )
    if reset_after != variant:
        fail(
            fn,
            f"expected reset_after={variant} for {type(params).__name__}, got {reset_after}",
            "a Keras GRU with the other reset_after computes another function",
        )
    w_x, w_h, b_x, b_h = (reorder_gates(a, *_JAXRNN_TO_KERAS_GRU) for a in (w_x, w_h, b_x, b_h))
    return [w_x, w_h, np.stack([b_x, b_h]) if reset_after else b_x + b_h]
