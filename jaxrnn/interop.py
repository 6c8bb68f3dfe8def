"""Weights between jaxrnn and PyTorch, Keras and Flax, in both directions; one import path for all.

Every framework computes the same gates with the same weights, stored differently: which matrix is
transposed, the order of the gate blocks, whether the GRU's update gate weights the old state or
the new candidate, which side has a bias, and the order of the LSTM's (h, c). The converters
rearrange the arrays and never import the other framework (Flax NNX modules are the exception:
they are the argument). The README's "Weights from other frameworks" table sets the conventions
side by side.

    PyTorch   rnn_params_from_torch, gru_params_from_torch, lstm_params_from_torch (one layer and
              direction), stacked_params_from_torch (a whole module), params_to_torch,
              stacked_carry_from_torch, stacked_carry_to_torch
    Keras     params_from_keras, params_to_keras                          (`jaxrnn.interop_keras`)
    Flax      params_from_linen, params_to_linen, params_from_nnx, params_to_nnx,
              lstm_state_from_flax, lstm_state_to_flax                     (`jaxrnn.interop_flax`)

PyTorch stores W_ih (G·H, D) and W_hh (G·H, H) with gates stacked along the rows, computes
x W_ihᵀ + b_ih + h W_hhᵀ + b_hh, and keeps both biases; jaxrnn stores the transposes with gates
along the columns and also keeps both biases, so conversion is transposition, with one exception:
PyTorch's GRU gate z weights the old state (h' = (1 − z) n + z h) where the course's Γ_u weights
the new candidate, so Γ_u = 1 − z = σ(−(…)) and the z rows are negated. Nothing is lost either way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax.numpy as jnp
import numpy as np

from jaxrnn._checks import check_positive_int, fail
from jaxrnn._convert import (
    as_numpy,
    check_cell,
    check_reset_after,
    export_arrays,
    reorder_gates,
    to_jax,
)
from jaxrnn.cells import (
    GRUParams,
    LSTMParams,
    LSTMState,
    ReLURNNParams,
    ResetAfterGRUParams,
    RNNParams,
)
from jaxrnn.interop_flax import (
    lstm_state_from_flax,
    lstm_state_to_flax,
    params_from_linen,
    params_from_nnx,
    params_to_linen,
    params_to_nnx,
)
from jaxrnn.interop_keras import params_from_keras, params_to_keras
from jaxrnn.layers import BidirectionalCarry, BidirectionalParams, StackedParams

__all__ = [
    "gru_params_from_torch",
    "lstm_params_from_torch",
    "lstm_state_from_flax",
    "lstm_state_to_flax",
    "params_from_keras",
    "params_from_linen",
    "params_from_nnx",
    "params_to_keras",
    "params_to_linen",
    "params_to_nnx",
    "params_to_torch",
    "rnn_params_from_torch",
    "stacked_carry_from_torch",
    "stacked_carry_to_torch",
    "stacked_params_from_torch",
]

_Z_NEGATED = (
    (0, 1, 2),
    (1, -1, 1),
)  # torch (r, z, n) <-> jaxrnn (r, u, c̃): negate z, an involution


def _suffix(layer: int, reverse: bool) -> str:
    return f"_l{layer}" + ("_reverse" if reverse else "")


def _read(fn: str, state_dict: Mapping, layer: int, reverse: bool, gates: int):
    suffix = _suffix(layer, reverse)
    key_w_ih, key_w_hh = f"weight_ih{suffix}", f"weight_hh{suffix}"
    if key_w_ih not in state_dict or key_w_hh not in state_dict:
        fail(
            fn,
            f"expected keys {key_w_ih!r} and {key_w_hh!r} in state_dict, got {sorted(state_dict)}",
        )
    if f"weight_hr{suffix}" in state_dict:
        fail(fn, "LSTMs with proj_size > 0 are not supported")
    w_ih, w_hh = as_numpy(state_dict[key_w_ih]), as_numpy(state_dict[key_w_hh])
    n_a = w_hh.shape[1] if w_hh.ndim == 2 else -1
    if w_hh.shape != (gates * n_a, n_a) or w_ih.ndim != 2 or w_ih.shape[0] != gates * n_a:
        fail(
            fn,
            f"expected {key_w_hh} of shape ({gates}·H, H) and {key_w_ih} ({gates}·H, D), "
            f"got {w_hh.shape} and {w_ih.shape}; is this the right kind of cell?",
        )
    zeros = np.zeros(gates * n_a, w_hh.dtype)
    b_ih = as_numpy(state_dict.get(f"bias_ih{suffix}", zeros))
    b_hh = as_numpy(state_dict.get(f"bias_hh{suffix}", zeros))
    return w_ih.T, w_hh.T, b_ih, b_hh


def _state_dict(fn: str, name: str, module_or_state_dict) -> Mapping:
    """The state dict itself, or a torch module's ``state_dict()``; `InputError` for the rest."""
    if isinstance(module_or_state_dict, Mapping):
        return module_or_state_dict
    if callable(getattr(module_or_state_dict, "state_dict", None)):  # a torch module
        return module_or_state_dict.state_dict()
    fail(
        fn,
        f"expected {name} to be a torch module or its state_dict() (a mapping of names to "
        f"arrays or tensors), got {type(module_or_state_dict).__name__}",
    )


def _relu(module_or_state_dict) -> bool:
    """Whether a torch RNN module uses ReLU; a state dict cannot say, and is taken as tanh."""
    return getattr(module_or_state_dict, "nonlinearity", "tanh") == "relu"


def _from_torch(fn: str, cell: str, state_dict, layer: int, reverse: bool, relu: bool = False):
    params_type, gates = check_cell(fn, cell)
    if cell == "rnn" and relu:
        params_type = ReLURNNParams
    arrays = _read(fn, _state_dict(fn, "state_dict", state_dict), layer, reverse, gates)
    if cell == "gru":
        arrays = [reorder_gates(a, *_Z_NEGATED) for a in arrays]
    return to_jax(params_type, *arrays)


def rnn_params_from_torch(
    state_dict, layer: int = 0, reverse: bool = False, nonlinearity: str | None = None
) -> RNNParams:
    """`RNNParams` for ``jaxrnn.rnn()``, or `ReLURNNParams` for ``jaxrnn.rnn("relu")``, from a
    ``torch.nn.RNN`` or its state dict.

    Args:
      state_dict: the module, or ``module.state_dict()`` (arrays or tensors). A module made with
        ``bias=False`` has no bias entries; its biases come in as zeros.
      layer: which layer of a stacked module (``_l{layer}``).
      reverse: the backward direction of a bidirectional module (``_reverse``).
      nonlinearity: ``"tanh"`` or ``"relu"``; None takes the module's (a state dict does not say
        which, and is taken as ``"tanh"``).

    Raises:
      InputError: for anything but a module or a mapping, missing keys, or weights of another
        kind of cell.
    """
    fn = "rnn_params_from_torch"
    if nonlinearity is None:
        relu = _relu(state_dict)
    elif nonlinearity in ("tanh", "relu"):
        relu = nonlinearity == "relu"
    else:
        fail(fn, f"expected nonlinearity None, 'tanh' or 'relu', got {nonlinearity!r}")
    return _from_torch(fn, "rnn", state_dict, layer, reverse, relu=relu)


def gru_params_from_torch(state_dict, layer: int = 0, reverse: bool = False) -> ResetAfterGRUParams:
    """`ResetAfterGRUParams` for ``jaxrnn.gru(reset="after")`` from a ``torch.nn.GRU`` or its
    state dict.

    Arguments as `rnn_params_from_torch`.
    Gate order (r, z, n) is kept; the z rows are negated so that Γ_u = σ(−z-preactivation) = 1 − z.
    """
    return _from_torch("gru_params_from_torch", "gru", state_dict, layer, reverse)


def lstm_params_from_torch(state_dict, layer: int = 0, reverse: bool = False) -> LSTMParams:
    """`LSTMParams` for ``jaxrnn.lstm()`` from a ``torch.nn.LSTM`` or its state dict.

    Gates i, f, g, o, in that order. Arguments as `rnn_params_from_torch`.
    """
    return _from_torch("lstm_params_from_torch", "lstm", state_dict, layer, reverse)


def stacked_params_from_torch(
    module_or_state_dict,
    cell: str,
    *,
    num_layers: int | None = None,
    bidirectional: bool | None = None,
) -> StackedParams:
    """Every layer and direction of a ``torch.nn.RNN``/``GRU``/``LSTM`` as `StackedParams`.

    The result is what `jaxrnn.stacked` takes: layer l is cell params, or `BidirectionalParams`
    (forward = ``_l{l}``, backward = ``_l{l}_reverse``) for a bidirectional module, so

        jaxrnn.stacked(jaxrnn.lstm(), stacked_params_from_torch(module, "lstm"), xs,
                       lengths=lengths)

    computes what ``module(pack_padded_sequence(xs, lengths, batch_first=True))`` computes
    (``batch_first=True``; inter-layer dropout off, as in ``module.eval()``). A one-layer module
    gives a one-layer `StackedParams`; ``params.layers[0]`` is what `jaxrnn.unroll` (or
    `jaxrnn.bidirectional`) takes.

    Args:
      module_or_state_dict: the torch module, or its ``state_dict()`` (arrays or tensors).
      cell: ``"lstm"`` (for ``jaxrnn.lstm()``), ``"gru"`` (``jaxrnn.gru(reset="after")``) or
        ``"rnn"`` (``jaxrnn.rnn(nonlinearity)``, with the module's nonlinearity).
      num_layers: read from the keys if None; if given, it is checked against them.
      bidirectional: read from the keys if None; if given, it is checked against them.

    Returns:
      `StackedParams` with ``num_layers`` layers: w_x (D, G·H) for layer 0, (H·dirs, G·H) above.

    Raises:
      InputError: for an unknown ``cell``, weights of another kind of cell, a missing layer, or
        ``num_layers``/``bidirectional`` that the keys contradict.
    """
    fn = "stacked_params_from_torch"
    check_cell(fn, cell)
    state_dict = _state_dict(fn, "module_or_state_dict", module_or_state_dict)
    found_layers = 0
    while f"weight_ih_l{found_layers}" in state_dict:
        found_layers += 1
    if found_layers == 0:
        fail(fn, f"expected key 'weight_ih_l0' in state_dict, got {sorted(state_dict)}")
    found_bidirectional = "weight_ih_l0_reverse" in state_dict
    if num_layers is not None:
        check_positive_int(fn, "num_layers", num_layers)
        if num_layers != found_layers:
            fail(fn, f"expected num_layers={num_layers}, got a state_dict of {found_layers}")
    if bidirectional is not None and bool(bidirectional) != found_bidirectional:
        fail(
            fn,
            f"expected bidirectional={bidirectional}, got a state_dict "
            + ("with" if found_bidirectional else "without")
            + " '_reverse' keys",
        )
    layers, relu = [], _relu(module_or_state_dict)
    for layer in range(found_layers):
        forward = _from_torch(fn, cell, state_dict, layer, False, relu)
        if found_bidirectional:
            backward = _from_torch(fn, cell, state_dict, layer, True, relu)
            layers.append(BidirectionalParams(forward, backward))
        else:
            layers.append(forward)
    return StackedParams(tuple(layers))


def _to_torch(
    fn: str, params, layer: int, reverse: bool, name: str, bias: bool
) -> dict[str, np.ndarray]:
    w_x, w_h, b_x, b_h = export_arrays(fn, params, "PyTorch", name)
    if not bias:
        for field, b in (("b_x", b_x), ("b_h", b_h)):
            if np.any(b != 0):
                fail(
                    fn,
                    f"expected {name}.{field} all zero with bias=False, got values in "
                    f"[{b.min()}, {b.max()}]",
                    "a bias=False module has no biases to hold them: export for one with bias=True",
                )
    arrays = [w_x, w_h, b_x, b_h]
    check_reset_after(fn, params, "PyTorch")
    if isinstance(params, GRUParams):
        arrays = [reorder_gates(a, *_Z_NEGATED) for a in arrays]
    w_x, w_h, b_x, b_h = arrays
    suffix = _suffix(layer, reverse)
    state_dict = {
        f"weight_ih{suffix}": np.ascontiguousarray(w_x.T),
        f"weight_hh{suffix}": np.ascontiguousarray(w_h.T),
    }
    if bias:
        state_dict[f"bias_ih{suffix}"] = np.array(b_x)
        state_dict[f"bias_hh{suffix}"] = np.array(b_h)
    return state_dict


def params_to_torch(
    params: RNNParams | GRUParams | LSTMParams | BidirectionalParams | StackedParams,
    layer: int = 0,
    reverse: bool = False,
    *,
    bias: bool = True,
) -> dict[str, np.ndarray]:
    """A PyTorch-style state dict (numpy arrays), the inverse of the ``*_from_torch`` functions.

    - One cell's params: the four entries of layer ``layer`` (direction ``reverse``).
    - `BidirectionalParams`: both directions of layer ``layer``.
    - `StackedParams`: the whole module, every layer, in the order of ``module.state_dict()``
      (``layer`` and ``reverse`` must be left at their defaults). PyTorch makes either every layer
      bidirectional or none, with one hidden size for all.

    Load it with ``module.load_state_dict({k: torch.from_numpy(v) for k, v in d.items()})``
    (``strict=False`` for part of a deeper module). GRU params must be for
    ``gru(reset="after")``, the only GRU PyTorch has. Both biases are kept: nothing is lost.

    jaxrnn params always hold biases; a module made with ``bias=False`` has none, and imports with
    zero biases. Export for it with ``bias=False`` (the module's own ``module.bias``), which leaves
    the bias entries out so that ``load_state_dict(..., strict=True)`` takes the dict.

    Args:
      params: one cell's params, `BidirectionalParams` or `StackedParams`.
      layer: the layer the entries are named for (``_l{layer}``).
      reverse: name them for the backward direction (``_reverse``).
      bias: whether the module has biases, as its ``bias`` constructor argument.

    Returns:
      dict with weight_ih_l{layer}[_reverse] (G·H, D), weight_hh… (G·H, H), and with ``bias``
      bias_ih… and bias_hh… (G·H,).

    Raises:
      InputError: for params PyTorch has no module for (peephole LSTM, simplified GRU), shapes that
        do not fit, layers that mix bidirectional and unidirectional or hidden sizes, or non-zero
        biases with ``bias=False`` (they would be lost).
    """
    fn = "params_to_torch"
    if not isinstance(bias, bool | np.bool_):
        fail(fn, f"expected bias to be True or False, got {bias!r}")
    if isinstance(params, StackedParams):
        if layer != 0 or reverse:
            fail(fn, "expected layer=0 and reverse=False with StackedParams, which hold all layers")
        if not params.layers:
            fail(fn, "expected params.layers to hold at least one layer, got none")
        kinds = [isinstance(p, BidirectionalParams) for p in params.layers]
        if len(set(kinds)) > 1:
            fail(
                fn,
                "expected every layer bidirectional or none (PyTorch's bidirectional applies to "
                f"all layers), got bidirectional={kinds}",
            )
        state_dict: dict[str, np.ndarray] = {}
        for depth, layer_params in enumerate(params.layers):
            state_dict.update(
                _layer_to_torch(fn, layer_params, depth, False, f"params.layers[{depth}]", bias)
            )
        sizes = {state_dict[k].shape[1] for k in state_dict if k.startswith("weight_hh")}
        if len(sizes) > 1:
            fail(fn, f"expected one hidden size for every layer, got {sorted(sizes)}")
        return state_dict
    return _layer_to_torch(fn, params, layer, reverse, "params", bias)


def _layer_to_torch(
    fn: str, params, layer: int, reverse: bool, name: str, bias: bool
) -> dict[str, np.ndarray]:
    if isinstance(params, BidirectionalParams):
        if reverse:
            fail(fn, "expected reverse=False with BidirectionalParams, which hold both directions")
        return {
            **_to_torch(fn, params.forward, layer, False, f"{name}.forward", bias),
            **_to_torch(fn, params.backward, layer, True, f"{name}.backward", bias),
        }
    return _to_torch(fn, params, layer, reverse, name, bias)


def stacked_carry_from_torch(
    state, *, bidirectional: bool | None = None, num_layers: int | None = None
) -> tuple:
    """PyTorch's h_n (or (h_n, c_n) for an LSTM) as one jaxrnn carry per layer.

    The leading axis of h_n holds num_layers·dirs entries, so its length alone does not tell a
    two-layer module from a one-layer bidirectional one: pass
    ``bidirectional=module.bidirectional``, or ``num_layers=module.num_layers`` and let the length
    tell.

    Args:
      state: h_n of shape (num_layers·dirs, *batch, H), index 2l (+1 for the reverse direction)
        for layer l, as ``torch.nn.GRU``/``RNN`` return it; for ``torch.nn.LSTM`` the pair
        (h_n, c_n). Arrays or tensors.
      bidirectional: whether the module was bidirectional (dirs = 2). If None: inferred from
        ``num_layers`` when that is given, else False.
      num_layers: the module's number of layers; if given, the leading axis is checked against it.

    Returns:
      A tuple of num_layers carries, bottom first, as `jaxrnn.stacked` takes (``carry=``) and
      returns them: arrays (*batch, H) or `LSTMState` (h, c), wrapped in `BidirectionalCarry`
      (forward, backward) for a bidirectional module.

    Raises:
      InputError: for a leading axis that is not a multiple of dirs or that does not fit
        ``num_layers``, or h_n and c_n of different shapes.
    """
    fn = "stacked_carry_from_torch"
    is_lstm = isinstance(state, tuple | list)
    if is_lstm:
        if len(state) != 2:
            fail(fn, f"expected state h_n or the pair (h_n, c_n), got a sequence of {len(state)}")
        h_n, c_n = as_numpy(state[0]), as_numpy(state[1])
        if h_n.shape != c_n.shape:
            fail(fn, f"expected h_n and c_n of the same shape, got {h_n.shape} and {c_n.shape}")
    else:
        h_n = c_n = as_numpy(state)
    if h_n.ndim < 2:
        fail(fn, f"expected h_n of shape (num_layers·dirs, *batch, H), got {h_n.shape}")
    if num_layers is not None:
        check_positive_int(fn, "num_layers", num_layers)
        entries = h_n.shape[0]
        if bidirectional is None:
            allowed, given = (num_layers, 2 * num_layers), ""
        else:
            allowed, given = ((2 if bidirectional else 1) * num_layers,), f", {bidirectional=}"
        if entries not in allowed:
            hint = ""
            if entries == 2 * num_layers:
                hint = "a bidirectional module's h_n has two entries per layer: bidirectional=True"
            fail(
                fn,
                f"expected h_n with {' or '.join(map(str, allowed))} entries along axis 0 "
                f"({num_layers=}{given}), got shape {h_n.shape}",
                hint,
            )
        bidirectional = entries == 2 * num_layers
    bidirectional = bool(bidirectional)
    directions = 2 if bidirectional else 1
    if h_n.shape[0] % directions:
        fail(fn, f"expected h_n of shape (num_layers·{directions}, *batch, H), got {h_n.shape}")

    def carry(index):
        if is_lstm:
            return LSTMState(jnp.asarray(h_n[index]), jnp.asarray(c_n[index]))
        return jnp.asarray(h_n[index])

    if bidirectional:
        return tuple(
            BidirectionalCarry(carry(2 * k), carry(2 * k + 1)) for k in range(h_n.shape[0] // 2)
        )
    return tuple(carry(k) for k in range(h_n.shape[0]))


def stacked_carry_to_torch(carries) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """jaxrnn's per-layer carries as PyTorch's h_n, or (h_n, c_n) for an LSTM; numpy arrays.

    Args:
      carries: a tuple of carries, one per layer, bottom first (what `jaxrnn.stacked` returns), or
        one layer's carry (an array, an `LSTMState` or a `BidirectionalCarry`).

    Returns:
      h_n (num_layers·dirs, *batch, H), or the pair (h_n, c_n) when the carries are `LSTMState`.

    Raises:
      InputError: if the layers mix bidirectional and unidirectional, LSTM and non-LSTM carries, or
        shapes.
    """
    fn = "stacked_carry_to_torch"
    if isinstance(carries, LSTMState | BidirectionalCarry) or not isinstance(carries, Sequence):
        carries = (carries,)
    entries, kinds = [], set()
    for layer in carries:
        kinds.add(isinstance(layer, BidirectionalCarry))
        entries += list(layer) if isinstance(layer, BidirectionalCarry) else [layer]
    lstm = {isinstance(e, LSTMState) for e in entries}
    if len(kinds) > 1 or len(lstm) > 1:
        fail(fn, "expected carries of one kind: all bidirectional or none, all LSTM or none")
    fields = [[e.h for e in entries], [e.c for e in entries]] if lstm == {True} else [entries]
    stacked = []
    for arrays in fields:
        arrays = [as_numpy(a) for a in arrays]
        if len({a.shape for a in arrays}) > 1:
            fail(fn, f"expected carries of one shape, got {[a.shape for a in arrays]}")
        stacked.append(np.stack(arrays))
    return tuple(stacked) if lstm == {True} else stacked[0]
