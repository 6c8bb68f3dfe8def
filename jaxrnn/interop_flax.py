"""Weights of Flax's recurrent cells, ``flax.linen`` and ``flax.nnx``, into jaxrnn params and back.

Flax (0.12) keeps one ``Dense``/``Linear`` per side, or per gate and side, with kernels (in, H)
in row-vector convention like jaxrnn's, gates (i, f, g, o) for the LSTM and (r, z, n) for the GRU:

    cell                          input side                  recurrent side
    linen LSTMCell,               ii, if, ig, io: kernel      hi, hf, hg, ho: kernel, bias
      OptimizedLSTMCell (same)
    nnx LSTMCell                  ii, if_, ig, io: kernel     hi, hf, hg, ho: kernel, bias
    nnx OptimizedLSTMCell         dense_i: kernel (D, 4H)     dense_h: kernel (H, 4H), bias
    linen GRUCell                 ir, iz, in: kernel, bias    hr, hz: kernel; hn: kernel, bias
    nnx GRUCell                   dense_i: kernel, bias       dense_h: kernel (no bias)
    linen SimpleCell              i: kernel, bias             h: kernel
    nnx SimpleCell                dense_i: kernel, bias       dense_h: kernel (no bias)

with the default ``gate_fn`` (sigmoid) and ``activation_fn`` (tanh), and ``residual=False`` for
``SimpleCell``. The equations, and their jaxrnn counterparts:

    LSTM  c' = f ⊙ c + i ⊙ g,  h' = o ⊙ tanh(c'): jaxrnn's lstm(), gates (u, f, c̃, o) =
          (i, f, g, o); one bias per gate, on the recurrent side (b_x = 0 coming in).
    GRU   r, z = σ(W_i· x + b_i· + W_h· h),  n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)),
          h' = (1 − z) ⊙ n + z ⊙ h: jaxrnn's gru(reset="after"); z weights the old state, so
          Γ_u = 1 − z and the z columns are negated. linen has the recurrent candidate bias b_hn,
          nnx does not (n = tanh(W_in x + b_in + r ⊙ W_hn h)).
    RNN   h' = tanh(W_i x + b_i + W_h h): jaxrnn's rnn("tanh") (rnn("relu") for activation_fn
          relu).

The LSTM carry is (c, h) in Flax and `LSTMState` (h, c) in jaxrnn: `lstm_state_from_flax` and
`lstm_state_to_flax` convert it.

What is lost going to Flax (coming from Flax nothing is: the round trip Flax -> jaxrnn -> Flax is
exact): jaxrnn keeps an input-side and a recurrent-side bias per gate (b_x, b_h). Where Flax has
one, the two are added: the LSTM's b_x + b_h goes to the recurrent-side bias, the RNN's to the
input side, and the GRU's for the r and u gates to the input side. The outputs are the same (up to
float rounding) but the split is lost; coming back the sum is on Flax's side. The candidate's
recurrent bias b_h[2H:] of a reset-after GRU sits inside r ⊙ (…) and cannot move: linen's
``hn.bias`` holds it, and nnx's GRUCell, which has none, accepts only params whose b_h[2H:] is zero.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np

from jaxrnn._checks import fail
from jaxrnn._convert import (
    CELLS,
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

__all__ = [
    "lstm_state_from_flax",
    "lstm_state_to_flax",
    "params_from_linen",
    "params_from_nnx",
    "params_to_linen",
    "params_to_nnx",
]

# flax (r, z, n) <-> jaxrnn (r, u, c̃): negate z (an involution)
_Z_NEGATED = ((0, 1, 2), (1, -1, 1))

# linen submodule names: (input side, recurrent side, those with a bias)
_LINEN = {
    "lstm": (("ii", "if", "ig", "io"), ("hi", "hf", "hg", "ho"), {"hi", "hf", "hg", "ho"}),
    "gru": (("ir", "iz", "in"), ("hr", "hz", "hn"), {"ir", "iz", "in", "hn"}),
    "rnn": (("i",), ("h",), {"i"}),
}
_LINEN_CLASS = {"lstm": "LSTMCell or OptimizedLSTMCell", "gru": "GRUCell", "rnn": "SimpleCell"}
_KIND = {LSTMParams: "lstm", ResetAfterGRUParams: "gru", RNNParams: "rnn", ReLURNNParams: "rnn"}


def _assemble(cell: str, parts_x, parts_h):
    """jaxrnn params from Flax's (kernel, bias or None) pieces, gate blocks in Flax's order."""
    params_type = CELLS[cell][0]

    def side(parts):
        kernel = np.concatenate([k for k, _ in parts], axis=-1)
        bias = np.concatenate(
            [np.zeros(k.shape[-1], k.dtype) if b is None else b for k, b in parts], axis=-1
        )
        return kernel, bias

    (w_x, b_x), (w_h, b_h) = side(parts_x), side(parts_h)
    arrays = [w_x, w_h, b_x, b_h]
    if cell == "gru":
        arrays = [reorder_gates(a, *_Z_NEGATED) for a in arrays]
    return to_jax(params_type, *arrays)


def _check_pieces(fn: str, cell: str, parts_x, parts_h, names) -> None:
    """Input kernels (D, w), recurrent kernels (H, w), biases (w,): w = H per gate, G·H fused."""
    gates = check_cell(fn, cell)[1]
    first_x, first_h = parts_x[0][0], parts_h[0][0]
    n_x = first_x.shape[0] if first_x.ndim == 2 else -1
    n_a = first_h.shape[0] if first_h.ndim == 2 else -1
    width = gates * n_a // len(parts_h)
    for k, (kernel, bias) in enumerate(parts_x + parts_h):
        rows = n_x if k < len(parts_x) else n_a
        if kernel.shape != (rows, width):
            fail(
                fn,
                f"expected {names[k]}.kernel of shape ({rows}, {width}), got {kernel.shape}",
                "is this the right kind of cell?",
            )
        if bias is not None and bias.shape != (width,):
            fail(fn, f"expected {names[k]}.bias of shape ({width},), got {bias.shape}")


# ------------------------------------------------------------------------------------------ linen


def params_from_linen(variables: Mapping, cell: str) -> LSTMParams | GRUParams | RNNParams:
    """jaxrnn params from the variables of a ``flax.linen`` recurrent cell.

    Args:
      variables: what ``module.init`` returns, ``{"params": {...}}``, or the inner params dict,
        of a ``nn.LSTMCell`` or ``nn.OptimizedLSTMCell`` (the two have the same params),
        ``nn.GRUCell`` or ``nn.SimpleCell``.
      cell: ``"lstm"`` (for ``jaxrnn.lstm()``), ``"gru"`` (``jaxrnn.gru(reset="after")``) or
        ``"rnn"`` (``jaxrnn.rnn()``).

    Returns:
      Params with w_x (D, G·H), w_h (H, G·H), b_x and b_h (G·H,), gates in jaxrnn's order: for the
      LSTM b_x = 0 and b_h the recurrent-side biases; for the GRU b_x = the input-side biases and
      b_h = [0, 0, b_hn], z negated into Γ_u; for the RNN b_x the bias and b_h = 0.

    Raises:
      InputError: for an unknown ``cell``, a params dict of another cell, or kernels whose shapes
        do not fit together.

    Example:
      >>> from flax import linen as nn
      >>> flax_cell = nn.LSTMCell(features=8)
      >>> carry = flax_cell.initialize_carry(jax.random.key(0), (2, 3))
      >>> variables = flax_cell.init(jax.random.key(1), carry, jnp.ones((2, 3)))
      >>> params = jaxrnn.interop.params_from_linen(variables, "lstm")
      >>> params.w_x.shape, params.w_h.shape
      ((3, 32), (8, 32))
    """
    fn = "params_from_linen"
    check_cell(fn, cell)
    tree = variables
    if isinstance(tree, Mapping) and "params" in tree:
        tree = tree["params"]
    if not isinstance(tree, Mapping):
        fail(fn, f"expected variables to be a dict of params, got {type(variables).__name__}")
    names_x, names_h, with_bias = _LINEN[cell]
    if set(tree) != set(names_x + names_h):
        fail(
            fn,
            f"expected the params of a flax.linen {_LINEN_CLASS[cell]} (cell={cell!r}), with "
            f"submodules {sorted(names_x + names_h)}, got {sorted(tree)}",
        )

    def piece(name):
        module = tree[name]
        keys = {"kernel", "bias"} if name in with_bias else {"kernel"}
        if not isinstance(module, Mapping) or set(module) != keys:
            got = sorted(module) if isinstance(module, Mapping) else type(module).__name__
            fail(fn, f"expected params[{name!r}] with {sorted(keys)}, got {got}")
        bias = as_numpy(module["bias"]) if "bias" in module else None
        return as_numpy(module["kernel"]), bias

    parts_x, parts_h = [piece(n) for n in names_x], [piece(n) for n in names_h]
    _check_pieces(fn, cell, parts_x, parts_h, [f"params[{n!r}]" for n in names_x + names_h])
    return _assemble(cell, parts_x, parts_h)


def _flax_sides(fn: str, params, name: str = "params"):
    """(cell, w_i, b_i, w_r, b_r): Flax's input and recurrent sides, gate blocks in its order.

    b_i and b_r are full (G·H,) vectors; the biases a Flax cell does not have are zero in them,
    except b_r[2H:] of a GRU (linen's hn bias), which may be non-zero.
    """
    w_x, w_h, b_x, b_h = export_arrays(fn, params, "Flax", name)
    check_reset_after(fn, params, "Flax")
    cell = _KIND[type(params)]
    zeros = np.zeros_like(b_x)
    if cell == "lstm":
        return cell, w_x, zeros, w_h, b_x + b_h
    if cell == "rnn":
        return cell, w_x, b_x + b_h, w_h, zeros
    w_x, w_h, b_x, b_h = (reorder_gates(a, *_Z_NEGATED) for a in (w_x, w_h, b_x, b_h))
    n_a = w_h.shape[0]
    b_i = np.concatenate([b_x[: 2 * n_a] + b_h[: 2 * n_a], b_x[2 * n_a :]])
    b_r = np.concatenate([zeros[: 2 * n_a], b_h[2 * n_a :]])
    return cell, w_x, b_i, w_h, b_r


def params_to_linen(params: LSTMParams | GRUParams | RNNParams) -> dict:
    """The variables of a ``flax.linen`` cell, ``{"params": {...}}``, from jaxrnn params.

    For ``nn.LSTMCell`` and ``nn.OptimizedLSTMCell`` (from `LSTMParams` without peepholes),
    ``nn.GRUCell`` (from `GRUParams` of ``jaxrnn.gru(reset="after")``) and ``nn.SimpleCell``
    (from `RNNParams`); use it as ``flax_cell.apply(params_to_linen(params), carry, x)``.

    Where the Flax cell has one bias per gate and jaxrnn two, they are added: the LSTM's
    b_x + b_h becomes the recurrent-side bias (``hi``, ``hf``, ``hg``, ``ho``), the RNN's the
    input-side one, the GRU's for r and z the input-side ``ir``/``iz`` biases; the GRU's candidate
    biases stay apart (``in`` and ``hn``). The outputs are exact (up to float rounding), but the
    split between b_x and b_h is lost: `params_from_linen` brings the sum back on Flax's side.

    Returns:
      A nested dict of numpy arrays, kernels (in, H) and biases (H,) per gate.

    Raises:
      InputError: for a peephole LSTM, the simplified GRU, or shapes that do not fit together.
    """
    cell, w_i, b_i, w_r, b_r = _flax_sides("params_to_linen", params)
    names_x, names_h, with_bias = _LINEN[cell]
    tree = {}
    for names, kernel, bias in ((names_x, w_i, b_i), (names_h, w_r, b_r)):
        for name, k, b in zip(
            names, np.split(kernel, len(names), -1), np.split(bias, len(names)), strict=True
        ):
            tree[name] = {"kernel": k, "bias": b} if name in with_bias else {"kernel": k}
    return {"params": tree}


# -------------------------------------------------------------------------------------------- nnx


def _nnx_layout(fn: str, module):
    """(cell, input-side Linears, recurrent-side Linears) of a flax.nnx cell, gates in order."""
    from flax import nnx

    if isinstance(module, nnx.OptimizedLSTMCell):
        return "lstm", [module.dense_i], [module.dense_h]
    if isinstance(module, nnx.LSTMCell):
        inputs = [module.ii, module.if_, module.ig, module.io]
        return "lstm", inputs, [module.hi, module.hf, module.hg, module.ho]
    if isinstance(module, nnx.GRUCell):
        return "gru", [module.dense_i], [module.dense_h]
    if isinstance(module, nnx.SimpleCell):
        if module.residual:
            fail(fn, "expected a SimpleCell with residual=False; jaxrnn's rnn has no residual")
        return "rnn", [module.dense_i], [module.dense_h]
    fail(
        fn,
        "expected module to be a flax.nnx LSTMCell, OptimizedLSTMCell, GRUCell or SimpleCell, "
        f"got {type(module).__name__}",
    )


def _linear_names(module, linears) -> list[str]:
    names = {id(v): k for k, v in vars(module).items()}
    return [f"module.{names.get(id(linear), '?')}" for linear in linears]


def params_from_nnx(module) -> LSTMParams | GRUParams | RNNParams:
    """jaxrnn params from a ``flax.nnx`` recurrent cell's current weights.

    Args:
      module: a ``nnx.LSTMCell`` or ``nnx.OptimizedLSTMCell`` (-> `LSTMParams` for
        ``jaxrnn.lstm()``, b_x = 0), ``nnx.GRUCell`` (-> `GRUParams` for
        ``jaxrnn.gru(reset="after")``, b_h = 0, z negated into Γ_u) or ``nnx.SimpleCell``
        (-> `RNNParams` for ``jaxrnn.rnn()``, b_h = 0).

    Returns:
      Params with w_x (D, G·H), w_h (H, G·H), b_x and b_h (G·H,), gates in jaxrnn's order.

    Raises:
      InputError: for another module, or a ``SimpleCell`` with ``residual=True``.

    Example:
      >>> flax_cell = nnx.GRUCell(3, 8, rngs=nnx.Rngs(0))
      >>> params = jaxrnn.interop.params_from_nnx(flax_cell)
      >>> carry, y = jaxrnn.gru(reset="after").step(params, jnp.zeros(8), jnp.ones(3))
    """
    fn = "params_from_nnx"
    cell, linears_x, linears_h = _nnx_layout(fn, module)

    def piece(linear):
        bias = None if linear.bias is None else as_numpy(linear.bias[...])
        return as_numpy(linear.kernel[...]), bias

    parts_x, parts_h = [piece(v) for v in linears_x], [piece(v) for v in linears_h]
    _check_pieces(fn, cell, parts_x, parts_h, _linear_names(module, linears_x + linears_h))
    return _assemble(cell, parts_x, parts_h)


def params_to_nnx(params: LSTMParams | GRUParams | RNNParams, module):
    """Writes jaxrnn params into a ``flax.nnx`` recurrent cell, in place, and returns it.

    The module must be of the matching kind and sizes: ``nnx.LSTMCell`` or
    ``nnx.OptimizedLSTMCell`` for `LSTMParams` (no peepholes), ``nnx.GRUCell`` for `GRUParams`
    of ``jaxrnn.gru(reset="after")``, ``nnx.SimpleCell`` for `RNNParams`, built with
    ``in_features=D, hidden_features=H``. Values are cast to the module's parameter dtype.

    Biases as in `params_to_linen`: where the cell has one bias per gate the two jaxrnn biases
    are added (outputs exact, split lost). ``nnx.GRUCell`` has no recurrent-side bias at all, so
    the candidate's b_h[2H:], which acts inside r ⊙ (…), cannot move there: it must be zero.

    Returns:
      ``module``, with its weights replaced.

    Raises:
      InputError: for a module of another kind or size, a peephole LSTM, the simplified GRU, or
        GRU params with a non-zero b_h[2H:] going to ``nnx.GRUCell``.

    Example:
      >>> params = jaxrnn.lstm().init(jax.random.key(0), 3, 8)
      >>> flax_cell = jaxrnn.interop.params_to_nnx(params, nnx.LSTMCell(3, 8, rngs=nnx.Rngs(0)))
    """
    fn = "params_to_nnx"
    cell, w_i, b_i, w_r, b_r = _flax_sides(fn, params)
    module_cell, linears_x, linears_h = _nnx_layout(fn, module)
    if module_cell != cell:
        fail(
            fn,
            f"expected a flax.nnx {_LINEN_CLASS[cell]} for {type(params).__name__}, "
            f"got {type(module).__name__}",
        )
    names = _linear_names(module, linears_x + linears_h)
    n_a = w_r.shape[0]
    updates = []
    for linears, kernel, bias, side in ((linears_x, w_i, b_i, 0), (linears_h, w_r, b_r, 1)):
        kernels = np.split(kernel, len(linears), -1)
        biases = np.split(bias, len(linears))
        for k, (linear, kk, bb) in enumerate(zip(linears, kernels, biases, strict=True)):
            name = names[k + side * len(linears_x)]
            if linear.kernel.shape != kk.shape:
                fail(
                    fn,
                    f"expected {name}.kernel of shape {kk.shape} to receive params of "
                    f"input_size={w_i.shape[0]}, hidden_size={n_a}, got {linear.kernel.shape}",
                )
            updates.append((linear.kernel, kk))
            if linear.bias is not None:
                updates.append((linear.bias, bb))
            elif np.any(bb != 0):
                fail(
                    fn,
                    f"expected params.b_h[{2 * n_a}:{3 * n_a}] (the candidate's recurrent-side "
                    f"bias) to be zero: {type(module).__name__} has no recurrent-side bias, "
                    f"got max |b_h[{2 * n_a}:]| = {np.abs(bb).max():.3g}",
                    "flax.linen.GRUCell has this bias (params_to_linen)",
                )
    for variable, value in updates:  # write only once everything has been checked
        variable.set_value(jnp.asarray(value, dtype=variable[...].dtype))
    return module


# ------------------------------------------------------------------------------------------ carry


def lstm_state_from_flax(carry) -> LSTMState:
    """Flax's LSTM carry ``(c, h)`` (linen and nnx alike) as jaxrnn's `LSTMState` (h, c).

    Args:
      carry: the pair (c, h), each (*batch, H), as ``initialize_carry`` and the cells return it.

    Raises:
      InputError: for anything but a pair, or an `LSTMState` (already jaxrnn's order).
    """
    fn = "lstm_state_from_flax"
    if isinstance(carry, LSTMState):
        fail(fn, "expected Flax's carry (c, h), got an LSTMState, which is already jaxrnn's")
    if not isinstance(carry, tuple | list) or len(carry) != 2:
        fail(fn, f"expected carry to be the pair (c, h), got {type(carry).__name__}")
    c, h = carry
    return LSTMState(jnp.asarray(h), jnp.asarray(c))


def lstm_state_to_flax(state: LSTMState) -> tuple:
    """jaxrnn's `LSTMState` (h, c) as Flax's LSTM carry ``(c, h)``.

    Raises:
      InputError: unless ``state`` is an `LSTMState`: a bare pair is ambiguous.
    """
    if not isinstance(state, LSTMState):
        fail(
            "lstm_state_to_flax",
            f"expected state to be an LSTMState(h, c), got {type(state).__name__}",
        )
    return (state.c, state.h)
