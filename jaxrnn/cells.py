"""Recurrent cells: the vanilla RNN, three GRUs and the LSTM, each one time step and nothing more.

A cell is a `Cell`, a small NamedTuple of pure functions over a params NamedTuple:

    params = cell.init(key, input_size, hidden_size)
    carry = cell.init_carry(params)                       # a⟨0⟩ = 0
    carry, y = cell.step(params, carry, x)                # one step: x⟨t⟩ -> a⟨t⟩

``step(params, carry, x) -> (carry, y)`` is in ``lax.scan`` order, so once ``params`` is bound it is
a scan body (`jaxrnn.unroll` does exactly that). Each step is written for one example, x of shape
(input_size,); called with leading batch dimensions, x (*batch, input_size) and a carry of
(*batch, hidden_size), it maps itself over them with ``jax.vmap``.

Conventions, shared by every cell (the course's notation, transposed to row vectors):

- ``w_x`` (input_size, G·H) is the stack of the course's W_·x matrices, transposed: x @ w_x.
- ``w_h`` (H, G·H) is the stack of the W_·a (recurrent) matrices, transposed: a @ w_h.
- ``b_x`` and ``b_h`` (G·H,) are the input-side and recurrent-side biases. The course has one bias
  b = b_x + b_h; keeping both lets PyTorch weights carry over exactly (`jaxrnn.interop`).
- Gates are stacked along the last axis in the order the docstring of each cell gives; for the LSTM
  and the reset-after GRU this is PyTorch's order.
- ``step = step_projected ∘ project_input`` (the cell's `Structure`): ``project_input`` is the
  input side x @ w_x + b_x of all gates and can be computed for every time step at once, before
  the scan; ``step_projected`` is the recurrent side, one fused matmul a⟨t−1⟩ @ w_h per step (two
  for the reset-before GRU, whose relevance gate acts before its candidate matmul).

Initialisers: input weights Glorot-uniform per gate (He-normal for a ReLU RNN), recurrent weights
orthogonal per gate, biases zero except the LSTM forget gate's input-side bias (``forget_bias``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn._checks import (
    check_float_dtype,
    check_floating,
    check_positive_int,
    check_rank_at_least,
    check_shape,
    fail,
)

Array = jax.Array
Params = Any
Carry = Any


class RNNParams(NamedTuple):
    """Vanilla RNN weights. a⟨t⟩ = g(x⟨t⟩ w_x + b_x + a⟨t−1⟩ w_h + b_h)."""

    w_x: Array  # (input_size, H)  W_axᵀ
    w_h: Array  # (H, H)           W_aaᵀ
    b_x: Array  # (H,)
    b_h: Array  # (H,)


class ReLURNNParams(RNNParams):
    """`RNNParams` of ``rnn("relu")``: the type says which activation the weights were made for."""

    __slots__ = ()


class GRUParams(NamedTuple):
    """GRU weights of the course's GRUs, ``gru()`` (reset before, G = 3) and ``simplified_gru()``
    (G = 2); gates stacked along the last axis."""

    w_x: Array  # (input_size, G·H)
    w_h: Array  # (H, G·H)
    b_x: Array  # (G·H,)
    b_h: Array  # (G·H,)


class ResetAfterGRUParams(GRUParams):
    """`GRUParams` of ``gru(reset="after")``, PyTorch's, Keras's and Flax's GRU (G = 3): the same
    arrays compute another function through the course's GRU, so the type says which they are
    for."""

    __slots__ = ()


class LSTMParams(NamedTuple):
    """LSTM weights; gates stacked along the last axis in the order (u, f, c̃, o)."""

    w_x: Array  # (input_size, 4H)
    w_h: Array  # (H, 4H)
    b_x: Array  # (4H,)
    b_h: Array  # (4H,)
    peephole: Array | None = None  # (3, H): diagonal weights from c to the gates u, f, o


class LSTMState(NamedTuple):
    """LSTM carry. Named, never a bare tuple: frameworks disagree on the order of h and c."""

    h: Array  # (*batch, H) hidden state a⟨t⟩
    c: Array  # (*batch, H) memory cell c⟨t⟩


class Cell(NamedTuple):
    """A recurrence as three pure functions (in the spirit of ``optax.GradientTransformation``).

    Any three functions with these signatures are a cell: `jaxrnn.unroll`, the layers, the models,
    the language model and the samplers need nothing else.

    Attributes:
      init: ``(key, input_size, hidden_size, dtype=float32) -> params``.
      init_carry: ``(params, batch_shape=()) -> carry`` of zeros, each array (*batch_shape, H).
      step: ``(params, carry, x) -> (carry, y)``; x (*batch, input_size), y = a⟨t⟩ (*batch, H).
    """

    init: Callable[..., Params]
    init_carry: Callable[..., Carry]
    step: Callable[[Params, Carry, Array], tuple[Carry, Array]]


class Structure(NamedTuple):
    """What a built-in cell's ``step`` computes, in the parts that faster implementations read.

    It belongs to the step function itself (see `structure`): a cell whose ``step`` is replaced
    has no structure, and runs as the plain scan of its step.

    Attributes:
      name: a short description used in error messages, e.g. ``"lstm"``.
      project_input: ``(params, x) -> z``; the input side x @ w_x + b_x of all gates,
        x (*lead, input_size) -> z (*lead, G·H), for any leading axes (time included).
      step_projected: ``(params, carry, z) -> (carry, y)``; the step given z = project_input(x).
      pointwise: None, or, for a cell whose step is one affine map followed by elementwise work,
        ``(params, carry, z) -> (carry, y)`` for one example, with z = x @ w_x + b_x + h @ w_h + b_h
        (h the carry, or ``carry.h`` for the LSTM) and y = h⟨t⟩: what the fused backward pass of
        `jaxrnn.kernels` differentiates by hand.
      parallel_scan: None, or, for a cell whose recurrence is linear in its carry with
        coefficients that depend on x only (`jaxrnn.min_gru`, `jaxrnn.min_lstm`), ``(params, xs,
        carry, starts=None, restart=None) -> (carries, ys)``: every step at once for one example, xs
        (T, input_size) and carry leaves (H,), returning the carry after every step (leaves
        (T, H)) and the outputs (T, H). ``starts``, (T,) bool, resets the carry before the steps
        where it is true, to ``restart`` (leaves (H,)) if given, else to ``carry``.
    """

    name: str
    project_input: Callable[[Params, Array], Array]
    step_projected: Callable[[Params, Carry, Array], tuple[Carry, Array]]
    pointwise: Callable[[Params, Carry, Array], tuple[Carry, Array]] | None = None
    parallel_scan: Callable[..., tuple[Carry, Array]] | None = None


# Keyed by the step function itself, so that a structure never outlives the step it describes.
_STRUCTURES: dict[Callable, Structure] = {}


def structure(cell: Cell) -> Structure | None:
    """The `Structure` of a built-in cell's step; None for any other step."""
    try:
        return _STRUCTURES.get(cell.step)
    except TypeError:  # an unhashable step
        return None


def cell_name(cell: Cell) -> str:
    """A short name for messages: the built-in cell's name, else the step function's."""
    known = structure(cell)
    if known is not None:
        return known.name
    return getattr(cell.step, "__qualname__", None) or type(cell.step).__name__


# Each built-in params type and the cell it belongs to, for messages and `cell_for`.
_VARIANT = {
    RNNParams: "rnn('tanh')",
    ReLURNNParams: "rnn('relu')",
    GRUParams: "gru(reset='before') or simplified_gru()",
    ResetAfterGRUParams: "gru(reset='after')",
    LSTMParams: "lstm()",
}


def check_variant(fn: str, params: Params, expected: type) -> None:
    """Raise unless built-in params are of the ``expected`` type: weights of one variant never run
    through another's step (PyTorch's GRU through the course's GRU, ReLU weights through tanh)."""
    given = type(params)
    if given is expected or given not in _VARIANT:
        return
    fail(
        fn,
        f"expected {expected.__name__}, the params of {_VARIANT[expected]}, got {given.__name__}, "
        f"the params of {_VARIANT[given]}",
        f"run them with jaxrnn.{_VARIANT[given].split(' or ')[0]} (jaxrnn.cells.cell_for(params))",
    )


def cell_for(params: Params) -> Cell:
    """The built-in cell that built-in params belong to: ``cell_for(params).step(params, …)``.

    Raises:
      InputError: for params that are not of a built-in cell.
    """
    cell_of = _CELL_OF.get(type(params))
    if cell_of is None:
        fail("cell_for", f"expected the params of a built-in cell, got {type(params).__name__}")
    return cell_of(params)


# params type -> the cell its params belong to; `jaxrnn.minimal` adds its own two
_CELL_OF: dict[type, Callable[[Params], Cell]] = {}


def input_size(params: Params) -> int | None:
    """The number of input features n_x the params expect: the rows of ``w_x``, or of the first
    layer's for stacked params; None for params of another shape (a user's cell)."""
    w_x = getattr(params, "w_x", None)
    if w_x is not None:
        return w_x.shape[0]
    first = getattr(params, "forward", None)  # a bidirectional layer
    if first is None:
        layers = getattr(params, "layers", None)
        first = layers[0] if isinstance(layers, tuple) and layers else None
    return None if first is None else input_size(first)


def params_dtype(params: Params):
    """The dtype of the first floating-point array in params (the dtype inputs must have)."""
    for leaf in jax.tree.leaves(params):
        if jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            return jnp.result_type(leaf)
    return None


def recurrent_state(carry: Carry) -> Array:
    """The part of a carry that the recurrent matmul reads: h for the LSTM, the carry otherwise."""
    return carry.h if isinstance(carry, LSTMState) else carry


def hidden_size(params: Params) -> int:
    """The hidden size n_a of the params: the rows of the recurrent weights ``w_h``, or, for params
    without recurrent weights (`jaxrnn.minimal`), their own ``hidden_size`` property."""
    w_h = getattr(params, "w_h", None)
    return params.hidden_size if w_h is None else w_h.shape[0]


# ----------------------------------------------------------------------------------- initialisers


def _stacked(init_fn, key: Array, shape: tuple[int, int], gates: int, dtype) -> Array:
    """``gates`` independent (rows, cols) blocks, concatenated along the last axis.

    Drawn in at least float32 and then cast: the orthogonal initialiser's QR has no bfloat16 or
    float16 kernel, and low-precision params start as the rounding of the float32 ones.
    """
    check_float_dtype("init", dtype)
    keys = jax.random.split(key, gates)
    wide = jnp.promote_types(dtype, jnp.float32)
    return jnp.concatenate([init_fn(k, shape, wide) for k in keys], axis=-1).astype(dtype)


def _init_weights(key, n_x: int, n_a: int, gates: int, dtype, input_init) -> tuple[Array, Array]:
    check_positive_int("init", "input_size", n_x)
    check_positive_int("init", "hidden_size", n_a)
    key_x, key_h = jax.random.split(key)
    w_x = _stacked(input_init, key_x, (n_x, n_a), gates, dtype)
    w_h = _stacked(jax.nn.initializers.orthogonal(), key_h, (n_a, n_a), gates, dtype)
    return w_x, w_h


_glorot = jax.nn.initializers.glorot_uniform()
_he = jax.nn.initializers.he_normal()


# ---------------------------------------------------------------------------- shared plumbing


def _vmap_leading(fn: Callable, n: int, in_axes) -> Callable:
    for _ in range(n):
        fn = jax.vmap(fn, in_axes=in_axes)
    return fn


def _affine(x: Array, w: Array, b: Array) -> Array:
    return x @ w + b


def _make_cell(
    name: str,
    gates: int,
    init: Callable[..., Params],
    step_projected_one: Callable[[Params, Carry, Array], tuple[Carry, Array]],
    carry_from_zeros: Callable[[Array], Carry],
    *,
    recurrent_weights: bool = True,
    parallel_scan_one: Callable[..., tuple[Carry, Array]] | None = None,
    pointwise_one: Callable[[Params, Carry, Array], tuple[Carry, Array]] | None = None,
    params_type: type | None = None,
) -> Cell:
    """Wraps a one-example recurrent step in argument checks and batching, and builds the Cell.

    ``recurrent_weights=False`` is for params with only ``w_x`` and ``b_x`` (the gates see x
    alone); ``parallel_scan_one``, if given, becomes the `Structure`'s ``parallel_scan``, with
    argument checks. ``pointwise_one``, if given, is the `Structure`'s ``pointwise`` and
    ``step_projected_one`` is None: the step
    is then the affine map z = z_x + h @ w_h + b_h followed by it.
    """
    if pointwise_one is not None:

        def step_projected_one(params: Params, carry: Carry, z_x: Array) -> tuple[Carry, Array]:
            z = z_x + recurrent_state(carry) @ params.w_h + params.b_h
            return pointwise_one(params, carry, z)

        step_projected_one.__doc__ = pointwise_one.__doc__

    def init_carry(params: Params, batch_shape: tuple[int, ...] = ()) -> Carry:
        zeros = jnp.zeros((*tuple(batch_shape), hidden_size(params)), params.w_x.dtype)
        return carry_from_zeros(zeros)

    def check_params(fn: str, params: Params) -> None:
        if params_type is not None:
            check_variant(fn, params, params_type)
        if not recurrent_weights:
            n_x = check_rank_at_least(fn, "params.w_x", params.w_x, 2, "(input_size, G·H)")[0]
            n_a = hidden_size(params)
            check_shape(fn, "params.w_x", params.w_x, (n_x, gates * n_a))
            check_shape(fn, "params.b_x", params.b_x, (gates * n_a,))
            return
        n_a = check_rank_at_least(fn, "params.w_h", params.w_h, 2, "(H, G·H)")[0]
        n_x = check_rank_at_least(fn, "params.w_x", params.w_x, 2, "(input_size, G·H)")[0]
        check_shape(fn, "params.w_h", params.w_h, (n_a, gates * n_a))
        check_shape(fn, "params.w_x", params.w_x, (n_x, gates * n_a))
        check_shape(fn, "params.b_x", params.b_x, (gates * n_a,))
        check_shape(fn, "params.b_h", params.b_h, (gates * n_a,))
        if getattr(params, "peephole", None) is not None:
            check_shape(fn, "params.peephole", params.peephole, (3, n_a))

    def check_carry(fn: str, params: Params, carry: Carry, batch: tuple[int, ...]) -> None:
        expected = jax.tree.structure(init_carry(params))
        if jax.tree.structure(carry) != expected:
            fail(fn, f"expected carry with structure {expected}, got {jax.tree.structure(carry)}")
        for leaf in jax.tree.leaves(carry):
            check_shape(
                fn,
                "carry",
                leaf,
                (*batch, hidden_size(params)),
                "the carry needs the batch dimensions of x and the hidden size",
            )
            check_floating(fn, "carry", leaf, params.w_x)

    def project_input(params: Params, x: Array) -> Array:
        fn = f"{name}.project_input"
        check_params(fn, params)
        shape = check_rank_at_least(fn, "x", x, 1, "(…, input_size)")
        check_shape(fn, "x", x, (*shape[:-1], input_size(params)))
        check_floating(fn, "x", x, params.w_x)
        return _vmap_leading(_affine, len(shape) - 1, (0, None, None))(x, params.w_x, params.b_x)

    def step_projected(params: Params, carry: Carry, z: Array) -> tuple[Carry, Array]:
        fn = f"{name}.step_projected"
        check_params(fn, params)
        shape = check_rank_at_least(fn, "z", z, 1, "(*batch, G·hidden_size)")
        check_shape(
            fn, "z", z, (*shape[:-1], gates * hidden_size(params)), "z is project_input(params, x)"
        )
        check_carry(fn, params, carry, shape[:-1])
        return _vmap_leading(step_projected_one, len(shape) - 1, (None, 0, 0))(params, carry, z)

    def step(params: Params, carry: Carry, x: Array) -> tuple[Carry, Array]:
        fn = f"{name}.step"
        check_params(fn, params)
        shape = check_rank_at_least(fn, "x", x, 1, "(*batch, input_size)")
        check_shape(
            fn,
            "x",
            x,
            (*shape[:-1], input_size(params)),
            f"the params were initialised for input_size={input_size(params)}",
        )
        check_floating(fn, "x", x, params.w_x)
        check_carry(fn, params, carry, shape[:-1])

        def one(params, carry, x):
            return step_projected_one(params, carry, _affine(x, params.w_x, params.b_x))

        return _vmap_leading(one, len(shape) - 1, (None, 0, 0))(params, carry, x)

    def parallel_scan(
        params: Params, xs: Array, carry: Carry, starts=None, restart=None
    ) -> tuple[Carry, Array]:
        fn = f"{name}.parallel_scan"
        check_params(fn, params)
        check_rank_at_least(fn, "xs", xs, 2, "(time, input_size)")
        check_shape(
            fn,
            "xs",
            xs,
            (None, input_size(params)),
            "one example (time, input_size); jaxrnn.unroll runs batches",
        )
        check_floating(fn, "xs", xs, params.w_x)
        check_carry(fn, params, carry, ())
        if restart is not None:
            check_carry(fn, params, restart, ())
        return parallel_scan_one(params, xs, carry, starts, restart)

    step.__doc__ = step_projected_one.__doc__
    step.__qualname__ = f"{name}.step"
    if parallel_scan_one is None:
        parallel_scan = None
    else:
        parallel_scan.__doc__ = parallel_scan_one.__doc__
    _STRUCTURES[step] = Structure(name, project_input, step_projected, pointwise_one, parallel_scan)
    return Cell(init, init_carry, step)


# ------------------------------------------------------------------------------------ vanilla RNN

_ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu}


def rnn(activation: Literal["tanh", "relu"] = "tanh") -> Cell:
    """The basic RNN cell (course notation).

        a⟨t⟩ = g(W_aa a⟨t−1⟩ + W_ax x⟨t⟩ + b_a) = g(W_a [a⟨t−1⟩, x⟨t⟩] + b_a),  g = tanh or relu

    with W_a = [W_aa | W_ax] the stacked form; here w_h = W_aaᵀ, w_x = W_axᵀ, b_a = b_x + b_h.
    The step returns y = a⟨t⟩; the output ŷ⟨t⟩ = g(W_ya a⟨t⟩ + b_y) is a separate head
    (`jaxrnn.dense`), as in ``torch.nn.RNN``.

    Args:
      activation: ``"tanh"`` (weights Glorot-uniform) or ``"relu"`` (He-normal).

    Returns:
      A `Cell` with `RNNParams` and a carry a⟨t⟩ of shape (*batch, H).

    Example:
      >>> cell = jaxrnn.rnn()
      >>> params = cell.init(jax.random.key(0), input_size=3, hidden_size=5)
      >>> carry, y = cell.step(params, cell.init_carry(params), jnp.ones(3))
      >>> y.shape
      (5,)
    """
    return _rnn(activation)


@functools.cache
def _rnn(activation: Literal["tanh", "relu"] = "tanh") -> Cell:
    """The cell `rnn` returns; cached, so that each variant is one `Cell` however spelled."""
    if activation not in _ACTIVATIONS:
        fail("rnn", f"expected activation 'tanh' or 'relu', got {activation!r}")
    g = _ACTIVATIONS[activation]
    input_init = _he if activation == "relu" else _glorot
    params_type = ReLURNNParams if activation == "relu" else RNNParams

    def init(key, input_size: int, hidden_size: int, dtype=jnp.float32) -> RNNParams:
        w_x, w_h = _init_weights(key, input_size, hidden_size, 1, dtype, input_init)
        zeros = jnp.zeros((hidden_size,), dtype)
        return params_type(w_x, w_h, zeros, zeros)

    def pointwise(params: RNNParams, a_prev: Array, z: Array) -> tuple[Array, Array]:
        a = g(z)  # a⟨t⟩ = g(W_ax x⟨t⟩ + W_aa a⟨t−1⟩ + b_a), the affine part already in z
        return a, a

    return _make_cell(
        f"rnn({activation})",
        1,
        init,
        None,
        lambda zeros: zeros,
        pointwise_one=pointwise,
        params_type=params_type,
    )


# -------------------------------------------------------------------------------------------- GRU


@functools.cache
def simplified_gru() -> Cell:
    """The simplified GRU of the course: an update gate and no relevance gate.

        c̃⟨t⟩ = tanh(W_c [c⟨t−1⟩, x⟨t⟩] + b_c)
        Γ_u  = σ(W_u [c⟨t−1⟩, x⟨t⟩] + b_u)
        c⟨t⟩ = Γ_u * c̃⟨t⟩ + (1 − Γ_u) * c⟨t−1⟩,   a⟨t⟩ = c⟨t⟩

    Gates are stacked in the order (u, c̃): G = 2.

    Returns:
      A `Cell` with `GRUParams` and a carry c⟨t⟩ of shape (*batch, H).
    """

    def init(key, input_size: int, hidden_size: int, dtype=jnp.float32) -> GRUParams:
        w_x, w_h = _init_weights(key, input_size, hidden_size, 2, dtype, _glorot)
        zeros = jnp.zeros((2 * hidden_size,), dtype)
        return GRUParams(w_x, w_h, zeros, zeros)

    def pointwise(params: GRUParams, c_prev: Array, z: Array) -> tuple[Array, Array]:
        u, cand = jnp.split(z, 2)
        update, candidate = jax.nn.sigmoid(u), jnp.tanh(cand)  # Γ_u, c̃⟨t⟩
        c = update * candidate + (1 - update) * c_prev
        return c, c

    return _make_cell(
        "simplified_gru",
        2,
        init,
        None,
        lambda zeros: zeros,
        pointwise_one=pointwise,
        params_type=GRUParams,
    )


def gru(
    reset: Literal["before", "after"] = "before",
    *,
    update_bias: float = 0.0,
    chrono: int | None = None,
) -> Cell:
    """The full GRU, with relevance gate Γ_r and update gate Γ_u.

    ``reset="before"`` is the course's GRU (Cho et al. 2014): Γ_r scales c⟨t−1⟩ before the
    candidate's matmul.

        Γ_r  = σ(W_r [c⟨t−1⟩, x⟨t⟩] + b_r)
        Γ_u  = σ(W_u [c⟨t−1⟩, x⟨t⟩] + b_u)
        c̃⟨t⟩ = tanh(W_c [Γ_r * c⟨t−1⟩, x⟨t⟩] + b_c)
        c⟨t⟩ = Γ_u * c̃⟨t⟩ + (1 − Γ_u) * c⟨t−1⟩,   a⟨t⟩ = c⟨t⟩

    ``reset="after"`` is the variant of PyTorch, Keras (``reset_after=True``), Flax and cuDNN: Γ_r
    scales the candidate's recurrent term after its matmul, which makes the recurrent side one
    matmul per step:

        c̃⟨t⟩ = tanh(W_cx x⟨t⟩ + b_xc + Γ_r * (W_cc c⟨t−1⟩ + b_hc))

    Gates are stacked in the order (r, u, c̃), PyTorch's (r, z, n). Γ_u weights the *new* candidate,
    as in the course; PyTorch's z weights the *old* state, so z = 1 − Γ_u, and
    `jaxrnn.interop.gru_params_from_torch` negates the z rows (σ(−v) = 1 − σ(v)).

    On a CPU both run jaxrnn's native kernels (`jaxrnn.kernels`). ``"before"`` multiplies twice
    a step where ``"after"`` multiplies once, and takes 1.03–1.3× its time at the suite's sizes
    (``python -m benchmarks.course_gru``).

    Args:
      reset: where the relevance gate acts, ``"before"`` (course) or ``"after"`` (PyTorch).
      update_bias: the initial input-side bias of Γ_u. Negative values start the cell near
        "keep" (Γ_u ≈ 0 copies c⟨t−1⟩), which is what lets a GRU learn dependencies over tens of
        steps (notebook 06); 0 is PyTorch's and Flax's start.
      chrono: None, or T_max ≥ 2 for chrono initialisation (Tallec & Ollivier 2018): each unit's
        update bias is −log u with u uniform in [1, T_max − 1], so the units start with memory
        time scales spread up to about T_max steps. It replaces ``update_bias``: give one of them.

    Returns:
      A `Cell` with `GRUParams` (G = 3) and a carry c⟨t⟩ of shape (*batch, H).
    """
    return _gru(reset, update_bias, chrono)


@functools.cache
def _gru(
    reset: Literal["before", "after"] = "before",
    update_bias: float = 0.0,
    chrono: int | None = None,
) -> Cell:
    """The cell `gru` returns; cached, so that each variant is one `Cell` however spelled."""
    if reset not in ("before", "after"):
        fail("gru", f"expected reset 'before' or 'after', got {reset!r}")
    _check_gate_init("gru", "update_bias", update_bias, chrono, default=0.0)

    params_type = GRUParams if reset == "before" else ResetAfterGRUParams

    def init(key, input_size: int, hidden_size: int, dtype=jnp.float32) -> GRUParams:
        w_x, w_h = _init_weights(key, input_size, hidden_size, 3, dtype, _glorot)
        zeros = jnp.zeros((3 * hidden_size,), dtype)
        if chrono is None:
            update = jnp.full((hidden_size,), update_bias, dtype)
        else:
            update = -_chrono_bias(key, hidden_size, chrono, dtype)
        b_x = zeros.at[hidden_size : 2 * hidden_size].set(update)
        return params_type(w_x, w_h, b_x, zeros)

    def step_reset_before(params: GRUParams, c_prev: Array, z_x: Array) -> tuple[Array, Array]:
        n_a = c_prev.shape[-1]
        x_r, x_u, x_c = jnp.split(z_x, 3)
        h_r, h_u = jnp.split(c_prev @ params.w_h[:, : 2 * n_a] + params.b_h[: 2 * n_a], 2)
        relevance = jax.nn.sigmoid(x_r + h_r)  # Γ_r
        update = jax.nn.sigmoid(x_u + h_u)  # Γ_u
        candidate = jnp.tanh(
            x_c + (relevance * c_prev) @ params.w_h[:, 2 * n_a :] + params.b_h[2 * n_a :]
        )  # c̃⟨t⟩
        c = update * candidate + (1 - update) * c_prev
        return c, c

    def step_reset_after(params: GRUParams, c_prev: Array, z_x: Array) -> tuple[Array, Array]:
        x_r, x_u, x_c = jnp.split(z_x, 3)
        h_r, h_u, h_c = jnp.split(c_prev @ params.w_h + params.b_h, 3)
        relevance = jax.nn.sigmoid(x_r + h_r)  # Γ_r
        update = jax.nn.sigmoid(x_u + h_u)  # Γ_u
        candidate = jnp.tanh(x_c + relevance * h_c)  # c̃⟨t⟩
        c = update * candidate + (1 - update) * c_prev
        return c, c

    step = step_reset_before if reset == "before" else step_reset_after
    return _make_cell(
        f"gru(reset={reset})", 3, init, step, lambda zeros: zeros, params_type=params_type
    )


# ------------------------------------------------------------------------------------------- LSTM


def lstm(*, peephole: bool = False, forget_bias: float = 1.0, chrono: int | None = None) -> Cell:
    """The LSTM cell of the course (Hochreiter & Schmidhuber 1997, with a forget gate).

        c̃⟨t⟩ = tanh(W_c [a⟨t−1⟩, x⟨t⟩] + b_c)
        Γ_u  = σ(W_u [a⟨t−1⟩, x⟨t⟩] + b_u)          update (PyTorch: input gate i)
        Γ_f  = σ(W_f [a⟨t−1⟩, x⟨t⟩] + b_f)          forget
        Γ_o  = σ(W_o [a⟨t−1⟩, x⟨t⟩] + b_o)          output
        c⟨t⟩ = Γ_u * c̃⟨t⟩ + Γ_f * c⟨t−1⟩
        a⟨t⟩ = Γ_o * tanh(c⟨t⟩)

    Gates are stacked in the order (u, f, c̃, o), PyTorch's (i, f, g, o), so PyTorch weights carry
    over by transposition alone. With peephole connections (Gers & Schmidhuber 2000) the gates also
    see the memory cell through diagonal weights p: Γ_u and Γ_f add p_u * c⟨t−1⟩ and p_f * c⟨t−1⟩,
    Γ_o adds p_o * c⟨t⟩. Whether a step uses peepholes is decided by ``params.peephole`` (None or
    an array of shape (3, H)); the arguments here only shape ``init``.

    Args:
      peephole: whether ``init`` creates peephole weights (initialised to zero).
      forget_bias: the initial input-side bias of the forget gate. 1.0 keeps the memory cell open
        early in training (Jozefowicz et al. 2015); it lives in ``params.b_x``, not in the step.
      chrono: None, or T_max ≥ 2 for chrono initialisation (Tallec & Ollivier 2018): each unit's
        forget bias is log u with u uniform in [1, T_max − 1] and its update (input) bias is the
        negative of that, so the units start with memory time scales spread up to about T_max
        steps. It replaces ``forget_bias``: give one of them.

    Returns:
      A `Cell` with `LSTMParams` and carry `LSTMState` (h, c), each of shape (*batch, H).
    """
    return _lstm(peephole, forget_bias, chrono)


@functools.cache
def _lstm(peephole: bool = False, forget_bias: float = 1.0, chrono: int | None = None) -> Cell:
    """The cell `lstm` returns; cached, so that each variant is one `Cell` however spelled."""
    _check_gate_init("lstm", "forget_bias", forget_bias, chrono, default=1.0)

    def init(key, input_size: int, hidden_size: int, dtype=jnp.float32) -> LSTMParams:
        w_x, w_h = _init_weights(key, input_size, hidden_size, 4, dtype, _glorot)
        b_x = jnp.zeros((4 * hidden_size,), dtype)
        if chrono is None:
            b_x = b_x.at[hidden_size : 2 * hidden_size].set(forget_bias)
        else:
            forget = _chrono_bias(key, hidden_size, chrono, dtype)
            b_x = b_x.at[:hidden_size].set(-forget).at[hidden_size : 2 * hidden_size].set(forget)
        peep = jnp.zeros((3, hidden_size), dtype) if peephole else None
        return LSTMParams(w_x, w_h, b_x, jnp.zeros((4 * hidden_size,), dtype), peep)

    def pointwise(params: LSTMParams, carry: LSTMState, z: Array):
        z_u, z_f, z_c, z_o = jnp.split(z, 4)
        if params.peephole is not None:
            z_u = z_u + params.peephole[0] * carry.c
            z_f = z_f + params.peephole[1] * carry.c
        update, forget = jax.nn.sigmoid(z_u), jax.nn.sigmoid(z_f)  # Γ_u, Γ_f
        c = update * jnp.tanh(z_c) + forget * carry.c  # c⟨t⟩ = Γ_u * c̃⟨t⟩ + Γ_f * c⟨t−1⟩
        if params.peephole is not None:
            z_o = z_o + params.peephole[2] * c
        h = jax.nn.sigmoid(z_o) * jnp.tanh(c)  # a⟨t⟩ = Γ_o * tanh(c⟨t⟩)
        return LSTMState(h, c), h

    name = "lstm(peephole)" if peephole else "lstm"
    return _make_cell(
        name,
        4,
        init,
        None,
        lambda zeros: LSTMState(zeros, zeros),
        pointwise_one=pointwise,
        params_type=LSTMParams,
    )


def _check_gate_init(fn: str, bias_name: str, bias, chrono, default: float) -> None:
    if isinstance(bias, bool) or not isinstance(bias, int | float) or not math.isfinite(bias):
        fail(fn, f"expected {bias_name} to be a finite number, got {bias!r}")
    if chrono is not None and (
        isinstance(chrono, bool) or not isinstance(chrono, int) or chrono < 2
    ):
        fail(fn, f"expected chrono to be None or an int T_max >= 2, got {chrono!r}")
    if chrono is not None and bias != default:
        fail(
            fn,
            f"expected {bias_name} or chrono, got both ({bias_name}={bias!r}, chrono={chrono!r}); "
            f"chrono draws the bias {bias_name} would set",
            "keep one of them",
        )


def _chrono_bias(key: Array, hidden_size: int, t_max: int, dtype) -> Array:
    """log u, u ~ uniform[1, T_max − 1], one per unit (Tallec & Ollivier 2018).

    Drawn from a key of its own, so the weights are those of the same key without chrono."""
    u = jax.random.uniform(
        jax.random.fold_in(key, 1), (hidden_size,), jnp.float32, 1.0, max(t_max - 1, 1)
    )
    return jnp.log(u).astype(dtype)


_CELL_OF.update(
    {
        RNNParams: lambda params: rnn("tanh"),
        ReLURNNParams: lambda params: rnn("relu"),
        ResetAfterGRUParams: lambda params: gru("after"),
        GRUParams: lambda params: (
            simplified_gru() if params.w_h.shape[-1] == 2 * params.w_h.shape[0] else gru("before")
        ),
        LSTMParams: lambda params: lstm(peephole=params.peephole is not None),
    }
)
