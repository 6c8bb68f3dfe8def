"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"): every step at once.

Their gates read x⟨t⟩ alone, never h⟨t−1⟩, so the recurrence is linear in its carry,

    h⟨t⟩ = a⟨t⟩ ⊙ h⟨t−1⟩ + b⟨t⟩,        a⟨t⟩ ∈ (0, 1) and b⟨t⟩ > 0 functions of x⟨t⟩ only,

and two steps compose into one of the same form:

    (a₁, b₁) ∘ (a₂, b₂) = (a₁ a₂, a₂ b₁ + b₂).

The composition is associative, so ``jax.lax.associative_scan`` can compute h⟨1⟩ … h⟨T⟩ in
O(log T) depth instead of T dependent steps (`linear_recurrence`). The cells' ``parallel_scan``
does not use it: "parallel" there means every gate at once, input-only gates computed a block of
steps at a time with one GEMM, and the cheap elementwise recurrence then run step by step
(`_blocked_recurrence`). On a 2-core CPU that was ~1.9× faster to train than the associative
scan (T = 4096), whose O(T log T) memory traffic, not the T dependent steps, bounds the time.
In both, the initial carry, of any sign, enters exactly as part of the first step:
b⟨1⟩ ← a⟨1⟩ h⟨0⟩ + b⟨1⟩.

The scan runs on a and b themselves, not on their logarithms. A cumulative-sum form,
h⟨t⟩ = A⟨t⟩ (h⟨0⟩ + Σ_{s≤t} b⟨s⟩ / A⟨s⟩) with prefix products A⟨t⟩ = Π_{s≤t} a⟨s⟩, needs log space
because 1 / A⟨s⟩ overflows; composing pairs never divides. Its products of gates in (0, 1) only
shrink, and underflow to 0 only where the term they weigh is below the smallest float; its sums
(for h⟨0⟩ = 0) add positive terms, with no cancellation. Log space would cost an exp and a log1p
per combination for no gain in accuracy.

The candidate h̃ goes through the paper's g(v) = v + 0.5 for v ≥ 0 and σ(v) for v < 0
(continuous, increasing, positive, linear for large v), which makes b⟨t⟩ > 0.

Both cells are ordinary `jaxrnn.cells.Cell` tuples: ``step`` is one step (for generation, and
``jaxrnn.unroll(..., implementation="scan")``); their `jaxrnn.cells.Structure` adds
``parallel_scan``, all steps of one example, which `jaxrnn.unroll` uses by default. There are no
recurrent weights, so the params are ``w_x`` (input_size, G·H) and ``b_x`` (G·H,) only, gates
stacked along the last axis; the carry and the output are h⟨t⟩ (*batch, H), with h⟨0⟩ = 0 from
``init_carry``.
"""

from __future__ import annotations

import functools
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn import cells
from jaxrnn._checks import check_positive_int, fail
from jaxrnn.cells import Array, Cell


class MinGRUParams(NamedTuple):
    """minGRU weights; gates stacked along the last axis in the order (z, h̃): G = 2."""

    w_x: Array  # (input_size, 2H)
    b_x: Array  # (2H,)

    @property
    def hidden_size(self) -> int:
        return self.w_x.shape[-1] // 2


class MinLSTMParams(NamedTuple):
    """minLSTM weights; gates stacked along the last axis in the order (f, i, h̃): G = 3."""

    w_x: Array  # (input_size, 3H)
    b_x: Array  # (3H,)

    @property
    def hidden_size(self) -> int:
        return self.w_x.shape[-1] // 3


def _g(v: Array) -> Array:
    """g(v) = v + 0.5 for v ≥ 0, σ(v) for v < 0."""
    return jnp.where(v >= 0, v + 0.5, jax.nn.sigmoid(v))


def linear_recurrence(a: Array, b: Array, h0: Array) -> Array:
    """h⟨t⟩ = a⟨t⟩ ⊙ h⟨t−1⟩ + b⟨t⟩ for t = 1 … T at once, by an associative scan.

    Args:
      a: (T, H) decay factors a⟨t⟩, in [0, 1] for a stable recurrence.
      b: (T, H) inputs b⟨t⟩.
      h0: (H,) h⟨0⟩, any sign.

    Returns:
      (T, H) h⟨1⟩ … h⟨T⟩, of the dtype of the arguments.
    """

    def compose(earlier, later):
        a1, b1 = earlier
        a2, b2 = later
        return a1 * a2, a2 * b1 + b2

    b = b.at[0].add(a[0] * h0)  # h⟨1⟩ = a⟨1⟩ h⟨0⟩ + b⟨1⟩: the scan then starts from h⟨0⟩ = 0
    return jax.lax.associative_scan(compose, (a, b))[1]


def _init(name: str, params_type: type, gates: int):
    def init(key: Array, input_size: int, hidden_size: int, dtype=jnp.float32):
        check_positive_int(f"{name}.init", "input_size", input_size)
        check_positive_int(f"{name}.init", "hidden_size", hidden_size)
        w_x = cells._stacked(cells._glorot, key, (input_size, hidden_size), gates, dtype)
        return params_type(w_x, jnp.zeros((gates * hidden_size,), dtype))

    init.__doc__ = (
        f"``(key, input_size, hidden_size, dtype=float32) -> {params_type.__name__}``: w_x "
        "Glorot-uniform per gate, b_x zero."
    )
    return init


def _projected(params, xs: Array) -> Array:
    """x⟨t⟩ w_x + b_x for every step: xs (T, input_size) -> (T, G·H)."""
    return xs @ params.w_x + params.b_x[None, :]


# Steps per block of `_blocked_recurrence`: measured on a 2-core CPU (B=8, D=64, H=256, T=4096,
# training step), 32 and 64 were within noise of each other and both well ahead of 1 (one GEMM
# per step) and of T (every gate in memory at once).
_BLOCK = 32


def _restarted(a: Array, b: Array, restart: Array, starts: Array | None) -> tuple[Array, Array]:
    """(a, b) with a reset before each step where ``starts`` (…,) is true: there h⟨t⟩ reads
    ``restart`` instead of h⟨t−1⟩, so its coefficient a⟨t⟩ becomes zero and a⟨t⟩ · restart joins
    b⟨t⟩."""
    if starts is None:
        return a, b
    start = starts[..., None]
    return jnp.where(start, jnp.zeros_like(a), a), jnp.where(start, b + a * restart[None], b)


def _blocked_recurrence(params, xs: Array, h0: Array, starts, restart, decay_and_input) -> Array:
    """h⟨t⟩ = a⟨t⟩ ⊙ h⟨t−1⟩ + b⟨t⟩ for one example, block by block: xs (T, input_size) -> (T, H).

    ``decay_and_input`` maps pre-activations x w_x + b_x (…, G·H) to (a, b), each (…, H);
    ``starts`` is None or (T,) bool, the steps before which h is reset to ``restart``. The
    sequence is cut into blocks of `_BLOCK` steps; a ``lax.scan`` over the blocks computes each
    block's pre-activations with one GEMM and its gates at once, then runs the recurrence over the
    block's steps with an inner ``lax.scan``. Every intermediate of a block stays in cache, where
    computing all T steps' gates up front (or `linear_recurrence`'s associative scan) streams
    several (T, G·H) arrays through memory, forward and backward; on CPU that memory traffic,
    not the T dependent steps, bounds the time. Plain ``lax.scan``s, so autodiff (forward and
    reverse) is exact. The last block is padded with zero inputs, whose outputs are dropped.
    """
    n_steps, n_x = xs.shape
    n_blocks = -(-n_steps // _BLOCK)
    padded = jnp.pad(xs, ((0, n_blocks * _BLOCK - n_steps), (0, 0)))
    blocks = padded.reshape(n_blocks, _BLOCK, n_x)
    if starts is not None:
        starts = jnp.pad(starts, (0, n_blocks * _BLOCK - n_steps)).reshape(n_blocks, _BLOCK)

    def block(h, xs_and_starts):
        xs_block, starts_block = xs_and_starts
        a, b = _restarted(*decay_and_input(_projected(params, xs_block)), restart, starts_block)

        def step(h, a_b):
            h = a_b[0] * h + a_b[1]
            return h, h

        return jax.lax.scan(step, h, (a, b))

    _, hs = jax.lax.scan(block, h0, (blocks, starts))
    return hs.reshape(n_blocks * _BLOCK, -1)[:n_steps]


def _associative_recurrence(
    params, xs: Array, h0: Array, starts, restart, decay_and_input
) -> Array:
    """As `_blocked_recurrence`, with every step's gates at once and `linear_recurrence`."""
    a, b = _restarted(*decay_and_input(_projected(params, xs)), restart, starts)
    return linear_recurrence(a, b, h0)


_RECURRENCES = {"blocked": _blocked_recurrence, "associative": _associative_recurrence}


def _parallel_scan(scan: str, decay_and_input):
    """A ``parallel_scan``: (params, xs (T, D), h0 (H,), starts None or (T,) bool, restart None
    or (H,), h0 if None) -> (hs, hs), each (T, H), one example."""
    if scan not in _RECURRENCES:
        fail("min_gru/min_lstm", f"expected scan 'blocked' or 'associative', got {scan!r}")
    recurrence = _RECURRENCES[scan]

    def parallel_scan(params, xs: Array, h0: Array, starts=None, restart=None):
        restart = h0 if restart is None else restart
        hs = recurrence(params, xs, h0, starts, restart, decay_and_input)
        return hs, hs

    return parallel_scan


# ----------------------------------------------------------------------------------------- minGRU


def _min_gru_step(params: MinGRUParams, h_prev: Array, z_x: Array) -> tuple[Array, Array]:
    """One minGRU step.

        z⟨t⟩ = σ(x⟨t⟩ W_z + b_z)
        h̃⟨t⟩ = g(x⟨t⟩ W_h + b_h)
        h⟨t⟩ = (1 − z⟨t⟩) ⊙ h⟨t−1⟩ + z⟨t⟩ ⊙ h̃⟨t⟩

    z_x is x⟨t⟩ w_x + b_x, the pre-activations of (z, h̃).
    """
    k, v = jnp.split(z_x, 2)
    # σ(−k) is 1 − z⟨t⟩, and stays accurate where z⟨t⟩ rounds to 1
    h = jax.nn.sigmoid(-k) * h_prev + jax.nn.sigmoid(k) * _g(v)
    return h, h


def _min_gru_decay_and_input(pre: Array) -> tuple[Array, Array]:
    """minGRU as h⟨t⟩ = a⟨t⟩ h⟨t−1⟩ + b⟨t⟩: (a, b) = (1 − z, z g(v)) = (σ(−k), σ(k) g(v)) from
    pre-activations (…, 2H) = (k, v)."""
    k, v = jnp.split(pre, 2, axis=-1)
    return jax.nn.sigmoid(-k), jax.nn.sigmoid(k) * _g(v)


def min_gru(scan: Literal["blocked", "associative"] = "blocked") -> Cell:
    """minGRU: a GRU whose update gate and candidate read only the input.

        z⟨t⟩ = σ(x⟨t⟩ W_z + b_z)
        h̃⟨t⟩ = g(x⟨t⟩ W_h + b_h),        g(v) = v + 0.5 (v ≥ 0), σ(v) (v < 0)
        h⟨t⟩ = (1 − z⟨t⟩) ⊙ h⟨t−1⟩ + z⟨t⟩ ⊙ h̃⟨t⟩

    Gates are stacked in the order (z, h̃): w_x (input_size, 2H), b_x (2H,). ``parallel_scan``
    computes the gates of many steps at once (see `jaxrnn.minimal`), which `jaxrnn.unroll` uses by
    default.

    Args:
      scan: how ``parallel_scan`` runs the elementwise recurrence. ``"blocked"``: the gates of
        32 steps with one GEMM, then those steps in a short ``lax.scan`` (the faster on CPU,
        `benchmarks/NOTES.md`); ``"associative"``: every step's gates at once, then
        `linear_recurrence`, O(log T) depth (for accelerators). Same outputs up to rounding.

    Returns:
      A `Cell` with `MinGRUParams` and a carry h⟨t⟩ of shape (*batch, H); the output is h⟨t⟩.

    Example:
      >>> cell = jaxrnn.min_gru()
      >>> params = cell.init(jax.random.key(0), input_size=3, hidden_size=8)
      >>> last, hs = jaxrnn.unroll(cell, params, jnp.ones((4, 1000, 3)))  # blocked
      >>> hs.shape
      (4, 1000, 8)
    """
    return _min_gru(scan)


@functools.cache
def _min_gru(scan: Literal["blocked", "associative"] = "blocked") -> Cell:
    """The cell `min_gru` returns; cached, so that each variant is one `Cell` however spelled."""
    init = _init("min_gru", MinGRUParams, 2)
    return cells._make_cell(
        "min_gru",
        2,
        init,
        _min_gru_step,
        lambda zeros: zeros,
        recurrent_weights=False,
        parallel_scan_one=_parallel_scan(scan, _min_gru_decay_and_input),
        params_type=MinGRUParams,
    )


# ---------------------------------------------------------------------------------------- minLSTM


def _min_lstm_gates(k_f: Array, k_i: Array) -> tuple[Array, Array]:
    """The normalised gates f′ = f / (f + i) and i′ = i / (f + i), from f, i = σ(k_f), σ(k_i).

    With d = log f − log i, f′ = σ(d) and i′ = σ(−d): accurate where f and i both underflow.
    """
    d = jax.nn.log_sigmoid(k_f) - jax.nn.log_sigmoid(k_i)
    return jax.nn.sigmoid(d), jax.nn.sigmoid(-d)


def _min_lstm_step(params: MinLSTMParams, h_prev: Array, z_x: Array) -> tuple[Array, Array]:
    """One minLSTM step.

        f⟨t⟩ = σ(x⟨t⟩ W_f + b_f),   i⟨t⟩ = σ(x⟨t⟩ W_i + b_i)
        f′⟨t⟩ = f⟨t⟩ / (f⟨t⟩ + i⟨t⟩),   i′⟨t⟩ = i⟨t⟩ / (f⟨t⟩ + i⟨t⟩)
        h̃⟨t⟩ = g(x⟨t⟩ W_h + b_h)
        h⟨t⟩ = f′⟨t⟩ ⊙ h⟨t−1⟩ + i′⟨t⟩ ⊙ h̃⟨t⟩

    z_x is x⟨t⟩ w_x + b_x, the pre-activations of (f, i, h̃).
    """
    k_f, k_i, v = jnp.split(z_x, 3)
    forget, update = _min_lstm_gates(k_f, k_i)  # f′⟨t⟩, i′⟨t⟩
    h = forget * h_prev + update * _g(v)
    return h, h


def _min_lstm_decay_and_input(pre: Array) -> tuple[Array, Array]:
    """minLSTM as h⟨t⟩ = a⟨t⟩ h⟨t−1⟩ + b⟨t⟩: (a, b) = (f′, i′ g(v)) from pre-activations
    (…, 3H) = (k_f, k_i, v)."""
    k_f, k_i, v = jnp.split(pre, 3, axis=-1)
    forget, update = _min_lstm_gates(k_f, k_i)
    return forget, update * _g(v)


def min_lstm(scan: Literal["blocked", "associative"] = "blocked") -> Cell:
    """minLSTM: an LSTM with input-only gates, normalised so that f′ + i′ = 1, and no output gate.

        f⟨t⟩ = σ(x⟨t⟩ W_f + b_f),   i⟨t⟩ = σ(x⟨t⟩ W_i + b_i)
        f′⟨t⟩ = f⟨t⟩ / (f⟨t⟩ + i⟨t⟩),   i′⟨t⟩ = i⟨t⟩ / (f⟨t⟩ + i⟨t⟩)
        h̃⟨t⟩ = g(x⟨t⟩ W_h + b_h),        g(v) = v + 0.5 (v ≥ 0), σ(v) (v < 0)
        h⟨t⟩ = f′⟨t⟩ ⊙ h⟨t−1⟩ + i′⟨t⟩ ⊙ h̃⟨t⟩

    Gates are stacked in the order (f, i, h̃): w_x (input_size, 3H), b_x (3H,). The normalised
    gates are computed as σ(±(log f − log i)), which stays accurate where f and i both underflow.
    ``parallel_scan`` computes the gates of many steps at once (see `jaxrnn.minimal`), which
    `jaxrnn.unroll` uses by default.

    Args:
      scan: how ``parallel_scan`` runs the elementwise recurrence. ``"blocked"``: the gates of
        32 steps with one GEMM, then those steps in a short ``lax.scan`` (the faster on CPU,
        `benchmarks/NOTES.md`); ``"associative"``: every step's gates at once, then
        `linear_recurrence`, O(log T) depth (for accelerators). Same outputs up to rounding.

    Returns:
      A `Cell` with `MinLSTMParams` and a carry h⟨t⟩ of shape (*batch, H); the output is h⟨t⟩.

    Example:
      >>> cell = jaxrnn.min_lstm()
      >>> params = cell.init(jax.random.key(0), input_size=3, hidden_size=8)
      >>> carry, h = cell.step(params, cell.init_carry(params), jnp.ones(3))   # one step
      >>> h.shape
      (8,)
    """
    return _min_lstm(scan)


@functools.cache
def _min_lstm(scan: Literal["blocked", "associative"] = "blocked") -> Cell:
    """The cell `min_lstm` returns; cached, so that each variant is one `Cell` however spelled."""
    init = _init("min_lstm", MinLSTMParams, 3)
    return cells._make_cell(
        "min_lstm",
        3,
        init,
        _min_lstm_step,
        lambda zeros: zeros,
        recurrent_weights=False,
        parallel_scan_one=_parallel_scan(scan, _min_lstm_decay_and_input),
        params_type=MinLSTMParams,
    )


cells._CELL_OF.update({MinGRUParams: lambda p: min_gru(), MinLSTMParams: lambda p: min_lstm()})
# simplified_gru's and gru(reset='before')'s params have the shapes that the min cells check (w_x
# and b_x alone), 2 and 3 gates wide: the type tells them apart.
cells._VARIANT.update({MinGRUParams: "min_gru()", MinLSTMParams: "min_lstm()"})
