"""Array plumbing shared by the weight converters of `jaxrnn.interop`: cell kinds, gate blocks,
and the checks on jaxrnn params that are about to leave for another framework.

The converters work on concrete arrays (numpy, jax, or anything with ``__array__``; torch tensors
through ``.detach()``), never under ``jit``, and never import the other framework.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from jaxrnn._checks import fail
from jaxrnn.cells import GRUParams, LSTMParams, ReLURNNParams, ResetAfterGRUParams, RNNParams

# cell kind -> (params type, number of gate blocks G); the other frameworks' GRU resets after
CELLS = {"rnn": (RNNParams, 1), "gru": (ResetAfterGRUParams, 3), "lstm": (LSTMParams, 4)}
GATES = {RNNParams: 1, ReLURNNParams: 1, GRUParams: 3, ResetAfterGRUParams: 3, LSTMParams: 4}


def check_reset_after(fn: str, params, target: str) -> None:
    """Raise for the course's GRU (reset before), which ``target``'s GRU does not compute."""
    if type(params) is GRUParams and params.w_h.shape[-1] == 3 * params.w_h.shape[0]:
        fail(
            fn,
            f"expected ResetAfterGRUParams ({target}'s GRU is jaxrnn.gru(reset='after')), got "
            "GRUParams, the params of the course's gru(reset='before')",
        )


def as_numpy(value) -> np.ndarray:
    """A numpy array of ``value``; a torch tensor is detached and moved to the CPU first."""
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def check_cell(fn: str, cell) -> tuple[type, int]:
    """The params type and gate count of ``cell`` ("rnn", "gru" or "lstm"), or `InputError`."""
    if not (isinstance(cell, str) and cell in CELLS):
        fail(fn, f"expected cell 'lstm', 'gru' or 'rnn', got {cell!r}")
    return CELLS[cell]


def reorder_gates(a: np.ndarray, order: Sequence[int], signs: Sequence[int]) -> np.ndarray:
    """Block k of the result is ``signs[k] * blocks[order[k]]``, gate blocks along the last axis.

    Negating a gate's pre-activation turns σ(v) into σ(−v) = 1 − σ(v): that is how an update gate
    weighting the old state becomes one weighting the new candidate, exactly (negation is exact in
    floating point).
    """
    blocks = np.split(a, len(order), axis=-1)
    return np.concatenate(
        [blocks[k] if s == 1 else -blocks[k] for k, s in zip(order, signs, strict=True)], axis=-1
    )


def to_jax(params_type: type, *arrays: np.ndarray):
    return params_type(*(jnp.asarray(a) for a in arrays))


def check_weight(fn: str, name: str, value, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` as numpy, or `InputError` unless its shape is ``shape``."""
    array = as_numpy(value)
    if array.shape != tuple(shape):
        fail(fn, f"expected {name} of shape {tuple(shape)}, got {array.shape}")
    return array


def export_arrays(fn: str, params, target: str, name: str = "params") -> tuple[np.ndarray, ...]:
    """(w_x, w_h, b_x, b_h) of one cell's params as numpy, after checking type and shapes.

    Raises `InputError` for anything but `RNNParams`, `GRUParams` (G = 3) or `LSTMParams` without
    peepholes, or for arrays whose shapes do not fit together; ``target`` names the framework and
    ``name`` the argument (``"params.layers[1].forward"``) in the messages.
    """
    if type(params) not in GATES:
        fail(
            fn,
            f"expected {name} of type RNNParams, GRUParams or LSTMParams, "
            f"got {type(params).__name__}",
        )
    if getattr(params, "peephole", None) is not None:
        fail(fn, f"expected an LSTM without peepholes ({name}.peephole None): {target} has none")
    w_x, w_h, b_x, b_h = (as_numpy(a) for a in (params.w_x, params.w_h, params.b_x, params.b_h))
    gates = GATES[type(params)]
    if w_h.ndim != 2:
        fail(fn, f"expected {name}.w_h of shape (H, {gates}·H), got {w_h.shape}")
    n_a = w_h.shape[0]
    if isinstance(params, GRUParams) and w_h.shape == (n_a, 2 * n_a):
        fail(fn, f"expected GRU params with 3 gate blocks: the simplified GRU has no {target} cell")
    check_weight(fn, f"{name}.w_h", w_h, (n_a, gates * n_a))
    if w_x.ndim != 2 or w_x.shape[1] != gates * n_a:
        fail(fn, f"expected {name}.w_x of shape (input_size, {gates * n_a}), got {w_x.shape}")
    check_weight(fn, f"{name}.b_x", b_x, (gates * n_a,))
    check_weight(fn, f"{name}.b_h", b_h, (gates * n_a,))
    return w_x, w_h, b_x, b_h
