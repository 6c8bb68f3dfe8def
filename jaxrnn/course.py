"""The functions of the course's week-1 assignments, with the course's names, shapes and caches.

"Building a recurrent neural network step by step" and "Character-level language model" ask for a
set of numpy functions; this module offers each of them with the same name, arguments, parameter
keys and return values (caches included), computed by jaxrnn's cells, `jaxrnn.unroll` and
``jax.vjp`` (the character model's `optimize` and `sample`, called once per name in a training
loop, are each one compiled program instead), so that each line of a notebook can be checked
against it:
``from jaxrnn import course``, then ``course.rnn_cell_forward(xt, a_prev, parameters)``.

The course lays arrays out features first, one column per example; jaxrnn puts one example per
row. The functions here transpose on the way in and out:

    course (features first)                    jaxrnn (one example per row)
    -----------------------------------------  ---------------------------------------------------
    x⟨t⟩ (n_x, m); x (n_x, m, T_x)              x (m, n_x); xs (m, T_x, n_x)
    a⟨t⟩ (n_a, m); a (n_a, m, T_x)              carry (m, n_a); unroll's outputs (m, T_x, n_a)
    tanh(Waa a⟨t−1⟩ + Wax x⟨t⟩ + ba)            ``jaxrnn.rnn().step``, `RNNParams`
    Wax (n_a, n_x); Waa (n_a, n_a)             w_x = Waxᵀ; w_h = Waaᵀ
    ba (n_a, 1) (b in the character model)     b_x = ba[:, 0], b_h = 0
    Γ_u = it, Γ_f = ft, c̃ = cct, Γ_o = ot       the LSTM's gate blocks, in the order (u, f, c̃, o)
    Wi, Wf, Wc, Wo (n_a, n_a + n_x)            ``jaxrnn.lstm(forget_bias=0.0)``, `LSTMParams`:
      acting on [a⟨t−1⟩; x⟨t⟩]                    w_h block = W[:, :n_a]ᵀ, w_x block = W[:, n_a:]ᵀ
    bi, bf, bc, bo (n_a, 1)                    b_x = [bi, bf, bc, bo][:, 0], b_h = 0
    softmax(Wya a⟨t⟩ + by), over axis 0         softmax of `jaxrnn.dense` (w = Wyaᵀ, b = by[:, 0])
    for t in range(T_x): … (forward loop)      `jaxrnn.unroll`: one ``lax.scan``
    caches kept for the backward pass          ``jax.vjp``'s residuals, kept by JAX
    the hand-written backward functions        the pullback of ``jax.vjp`` of the step or unroll
    da: ∂L/∂a⟨t⟩ from above, every t            the cotangent of unroll's stacked outputs
    clip(gradients, maxValue)                  `jaxrnn.train.clip_elementwise`
    optimize(X, Y, a_prev, parameters, lr)     the forward pass and backpropagation through time
                                               written out, clipped, SGD: one compiled call
    X[t] = None: x⟨t⟩ is the zero vector        input id −1: a one-hot row of zeros
    sample(parameters, char_to_ix, seed)       one compiled loop to "\\n" (Threefry draws)

The caches hold what the course's caches hold: numpy copies of the arrays the step used, and the
caller's ``parameters`` dict itself. The backward functions read from them only the inputs of the
forward pass (x, a⟨0⟩, c⟨0⟩ and the parameters) and differentiate through the cell again; the gate
values in an LSTM cache are for the reader to compare with their own.

Arrays go in and come out as numpy arrays, in the inputs' floating-point dtype (float64 needs
``jax_enable_x64``; float32 otherwise). Wrong shapes and missing keys raise `jaxrnn.InputError`
naming the argument or key, the expected and the actual shape.

`optimize` and `sample` run compiled programs, one per size and dtype, which take longer to
compile (half a second to a second each) than the course's whole numpy loop over a thousand names.
So that no loop waits for them, the first call of either for a new size starts compiling its
program in the background and runs a numpy version of the same step (`jaxrnn._course_host`),
as do the calls after it until the program is ready; `wait_for_compilation` waits for them.
The numpy versions compute the same values to float rounding and draw the same characters. A
program compiles in a process of its own (one at a time, at the lowest priority), which stores it
in an on-disk cache that later processes load from in milliseconds: ``$JAXRNN_CACHE_DIR`` if it is
set, else ``$XDG_CACHE_HOME/jaxrnn`` or ``~/.cache/jaxrnn``. ``JAXRNN_CACHE_DIR=off`` turns the
cache off, and programs then compile on a thread of this process. A program is keyed by the
sizes, dtype and padded length it was compiled for, the jax and jaxlib versions, the device and
CPU, ``XLA_FLAGS``, the matmul precision and the code it runs; files are written atomically,
checked against their SHA-256 when read, and read only from a directory that no other user can
write to (a file there is loaded as machine code). Anything that goes wrong with the cache means
compiling, as without one. It serves these programs only. Where jax's own persistent
compilation cache is on (``jax_compilation_cache_dir``, or ``$JAX_COMPILATION_CACHE_DIR``),
that cache keeps them instead, they compile on a thread, and this one is not used: a program
jax has loaded from its cache does not serialise again intact.

Example:
  >>> from jaxrnn import course
  >>> rng = np.random.default_rng(0)
  >>> n_x, n_a, n_y, m, T_x = 3, 5, 2, 10, 4
  >>> parameters = {"Wax": rng.normal(size=(n_a, n_x)), "Waa": rng.normal(size=(n_a, n_a)),
  ...               "Wya": rng.normal(size=(n_y, n_a)), "ba": rng.normal(size=(n_a, 1)),
  ...               "by": rng.normal(size=(n_y, 1))}
  >>> x, a0 = rng.normal(size=(n_x, m, T_x)), rng.normal(size=(n_a, m))
  >>> a, y_pred, caches = course.rnn_forward(x, a0, parameters)
  >>> gradients = course.rnn_backward(rng.normal(size=a.shape), caches)
  >>> a.shape, y_pred.shape, gradients["dx"].shape, gradients["dWaa"].shape
  ((5, 10, 4), (2, 10, 4), (3, 10, 4), (5, 5))
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import hashlib
import inspect
import json
import os
import platform
import stat
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import jaxlib.version
import numpy as np
from jax import lax
from jax.experimental.serialize_executable import deserialize_and_load, serialize

from jaxrnn import _course_host, cells
from jaxrnn._checks import check_shape, fail, shape_of
from jaxrnn.cells import Cell, LSTMParams, LSTMState, RNNParams
from jaxrnn.checkpoint import atomic_output
from jaxrnn.layers import DenseParams, dense
from jaxrnn.scan import unroll
from jaxrnn.train import clip_elementwise

__all__ = [
    "clip",
    "lstm_backward",
    "lstm_cell_backward",
    "lstm_cell_forward",
    "lstm_forward",
    "optimize",
    "rnn_backward",
    "rnn_cell_backward",
    "rnn_cell_forward",
    "rnn_forward",
    "sample",
    "sigmoid",
    "softmax",
]

_RNN = cells.rnn("tanh")
_LSTM = cells.lstm(forget_bias=0.0)

# Parameter keys and their shapes, in the course's names.
_RNN_SHAPES = {
    "Wax": ("n_a", "n_x"),
    "Waa": ("n_a", "n_a"),
    "ba": ("n_a", 1),
    "Wya": ("n_y", "n_a"),
    "by": ("n_y", 1),
}
_GATES = ("Wf", "bf", "Wi", "bi", "Wc", "bc", "Wo", "bo")
_LSTM_SHAPES = {
    **{key: ("n_a", "n_a+n_x") if key[0] == "W" else ("n_a", 1) for key in _GATES},
    "Wy": ("n_y", "n_a"),
    "by": ("n_y", 1),
}
_CHAR_SHAPES = {
    "Wax": ("n_a", "n_x"),
    "Waa": ("n_a", "n_a"),
    "Wya": ("n_y", "n_a"),
    "b": ("n_a", 1),
    "by": ("n_y", 1),
}
_CHAR_KEYS = tuple(_CHAR_SHAPES)
_CLIPPED = ("dWaa", "dWax", "dWya", "db", "dby")
_SAMPLE_MAX_LEN = 50  # the course's sample stops after 50 characters and then appends "\n"
# optimize pads a sequence to the next power of two from this length. Each padded step costs
# about 1.5 µs a call (n_a = 50, 2-core CPU), so 8 rather than 16 saves about 12 µs on the 85% of
# the shipped names.txt that make at most 8 steps, at the price of a second compilation (16) for
# the others.
_MIN_BUCKET = 8


# ------------------------------------------------------------------------------------ the layouts


def _rnn_params(w_ax: jax.Array, w_aa: jax.Array, b_a: jax.Array) -> RNNParams:
    """Course weights (features first) -> `RNNParams` (rows): transposes, one bias."""
    b = b_a[:, 0]
    return RNNParams(w_x=w_ax.T, w_h=w_aa.T, b_x=b, b_h=jnp.zeros_like(b))


def _lstm_params(p: Mapping[str, jax.Array]) -> LSTMParams:
    """Course gate weights W_g (n_a, n_a + n_x) on [a_prev; xt] -> `LSTMParams` (u, f, c̃, o)."""
    n_a = p["Wf"].shape[0]
    w = jnp.concatenate([p["Wi"], p["Wf"], p["Wc"], p["Wo"]])  # (4 n_a, n_a + n_x)
    b = jnp.concatenate([p["bi"], p["bf"], p["bc"], p["bo"]])[:, 0]
    return LSTMParams(w_x=w[:, n_a:].T, w_h=w[:, :n_a].T, b_x=b, b_h=jnp.zeros_like(b))


def _time_last(a: jax.Array) -> jax.Array:
    """unroll's (m, T, n) -> the course's (n, m, T)."""
    return jnp.transpose(a, (2, 0, 1))


def _batch_first(x: jax.Array) -> jax.Array:
    """The course's (n, m, T) -> unroll's (m, T, n)."""
    return jnp.transpose(x, (1, 2, 0))


def _softmax_head(w_y: jax.Array, b_y: jax.Array, a: jax.Array) -> jax.Array:
    """softmax(W_y a + b_y) over axis 0: a (n_a, ...) -> (n_y, ...)."""
    logits = dense(DenseParams(w_y.T, b_y[:, 0]), jnp.moveaxis(a, 0, -1))
    return jnp.moveaxis(jax.nn.softmax(logits, axis=-1), -1, 0)


# ------------------------------------------------------------------ the computations, on jax arrays


def _rnn_cell(p, xt, a_prev):
    """a⟨t⟩ (n_a, m) by jaxrnn's RNN step; p holds Wax, Waa, ba."""
    a_next, _ = _RNN.step(_rnn_params(p["Wax"], p["Waa"], p["ba"]), a_prev.T, xt.T)
    return a_next.T


def _rnn_states(p, x, a0):
    """a⟨1⟩ … a⟨T⟩ as (n_a, m, T), by jaxrnn.unroll; p holds Wax, Waa, ba."""
    params = _rnn_params(p["Wax"], p["Waa"], p["ba"])
    _, a = unroll(_RNN, params, _batch_first(x), a0.T)
    return _time_last(a)


@jax.jit
def _rnn_cell_forward(p, xt, a_prev):
    a_next = _rnn_cell(p, xt, a_prev)
    return a_next, _softmax_head(p["Wya"], p["by"], a_next)


@jax.jit
def _rnn_forward(p, x, a0):
    a = _rnn_states(p, x, a0)
    return a, _softmax_head(p["Wya"], p["by"], a)


@jax.jit
def _rnn_cell_backward(p, xt, a_prev, da_next):
    _, pullback = jax.vjp(_rnn_cell, p, xt, a_prev)
    return pullback(da_next)


@jax.jit
def _rnn_backward(p, x, a0, da):
    _, pullback = jax.vjp(_rnn_states, p, x, a0)
    return pullback(da)


def _emit_carry(params: LSTMParams, carry: LSTMState, x: jax.Array):
    """jaxrnn's LSTM step, outputting the whole carry (a⟨t⟩, c⟨t⟩) instead of a⟨t⟩ alone."""
    carry, _ = _LSTM.step(params, carry, x)
    return carry, carry


_LSTM_WITH_MEMORY = Cell(_LSTM.init, _LSTM.init_carry, _emit_carry)


def _lstm_gates(params: LSTMParams, carry: LSTMState, x: jax.Array):
    """The gate values (Γ_f, Γ_u, c̃, Γ_o) of jaxrnn's LSTM step at (carry, x), read off the step.

    A gate whose pre-activation is pushed to ±∞ (through its block of b_h) is exactly 1 or 0, and
    with the right c⟨t−1⟩ the step's own output is then the gate wanted:

        Γ_u = 1, c⟨t−1⟩ = 0:   c⟨t⟩ = c̃⟨t⟩
        c̃ = 1,  c⟨t−1⟩ = 0:   c⟨t⟩ = Γ_u
        Γ_u = 0, c⟨t−1⟩ = 1:   c⟨t⟩ = Γ_f
        Γ_f = 1, c⟨t−1⟩ = ∞:   c⟨t⟩ = ∞ and a⟨t⟩ = Γ_o tanh(∞) = Γ_o

    The other gates see the true a⟨t−1⟩ and x⟨t⟩ (c⟨t−1⟩ enters only the memory update: the cell
    has no peepholes), so each value is the one the step computes; no gate equation is repeated.
    Arrays have any leading batch axes, as in ``cell.step``.
    """
    n_a = carry.h.shape[-1]

    def run(block: int, push: float, c_prev: float) -> LSTMState:
        shift = jnp.zeros_like(params.b_h).at[block * n_a : (block + 1) * n_a].set(push)
        state, _ = _LSTM.step(
            params._replace(b_h=params.b_h + shift),
            LSTMState(carry.h, jnp.full_like(carry.c, c_prev)),
            x,
        )
        return state

    update, forget, candidate = 0, 1, 2  # blocks in jaxrnn's gate order (u, f, c̃, o)
    cct = run(update, jnp.inf, 0.0).c
    it = run(candidate, jnp.inf, 0.0).c
    ft = run(update, -jnp.inf, 1.0).c
    ot = run(forget, jnp.inf, jnp.inf).h
    return ft, it, cct, ot


def _lstm_cell(p, xt, a_prev, c_prev):
    """(a⟨t⟩, c⟨t⟩), each (n_a, m), by jaxrnn's LSTM step; p holds the gate weights."""
    state, _ = _LSTM.step(_lstm_params(p), LSTMState(a_prev.T, c_prev.T), xt.T)
    return state.h.T, state.c.T


@jax.jit
def _lstm_cell_forward(p, xt, a_prev, c_prev):
    a_next, c_next = _lstm_cell(p, xt, a_prev, c_prev)
    gates = _lstm_gates(_lstm_params(p), LSTMState(a_prev.T, c_prev.T), xt.T)
    y = _softmax_head(p["Wy"], p["by"], a_next)
    return a_next, c_next, y, tuple(g.T for g in gates)


@jax.jit
def _lstm_forward(p, x, a0):
    params, xs = _lstm_params(p), _batch_first(x)
    carry0 = LSTMState(a0.T, jnp.zeros_like(a0.T))  # the course starts from c⟨0⟩ = 0
    _, states = unroll(_LSTM_WITH_MEMORY, params, xs, carry0)  # h, c: (m, T, n_a)
    before = jax.tree.map(
        lambda first, later: jnp.concatenate([first[:, None], later[:, :-1]], axis=1),
        carry0,
        states,
    )  # a⟨t−1⟩, c⟨t−1⟩ for every t
    gates = _lstm_gates(params, before, xs)
    a, c = _time_last(states.h), _time_last(states.c)
    return a, c, _softmax_head(p["Wy"], p["by"], a), tuple(_time_last(g) for g in gates)


@jax.jit
def _lstm_cell_backward(p, xt, a_prev, c_prev, da_next, dc_next):
    _, pullback = jax.vjp(_lstm_cell, p, xt, a_prev, c_prev)
    return pullback((da_next, dc_next))


@jax.jit
def _lstm_backward(p, x, a0, c0, da):
    def hidden_states(p, x, a0):
        _, a = unroll(_LSTM, _lstm_params(p), _batch_first(x), LSTMState(a0.T, c0.T))
        return _time_last(a)

    _, pullback = jax.vjp(hidden_states, p, x, a0)
    return pullback(da)


# ------------------------------------------------------- the character model, as compiled programs


@functools.cache
def _char_layout(sizes: tuple[int, int, int]) -> dict[str, tuple[int, int]]:
    """The shape of each parameter for sizes (n_x, n_a, n_y)."""
    named = dict(zip(("n_x", "n_a", "n_y"), sizes, strict=True))
    return {key: tuple(named.get(s, s) for s in spec) for key, spec in _CHAR_SHAPES.items()}


def _char_step(floats, ints, *, sizes):
    """One SGD step of the character model, the course's ``optimize``, on packed arguments.

    floats: the parameters raveled in the order of _CHAR_SHAPES, a⟨0⟩ and the learning rate.
    ints: ids (−1: x⟨t⟩ = 0) and targets, each right-padded to a bucket length B, then the true
    length T: (2B + 1,).
    Returns one vector: the loss, a⟨T⟩, the clipped gradients and the updated parameters (raveled,
    in the order of _CHAR_SHAPES). One array in and one out keeps the cost of each call low.

    The course's forward pass and backpropagation through time, one time step per row:

        a⟨t⟩ = tanh(Wax x⟨t⟩ + Waa a⟨t−1⟩ + b)                      forward, one lax.scan
        ŷ⟨t⟩ = softmax(Wya a⟨t⟩ + by),   loss = Σ_t −log ŷ⟨t⟩[y⟨t⟩]
        dy⟨t⟩ = ŷ⟨t⟩ − onehot(y⟨t⟩)                                  ∂loss/∂(Wya a⟨t⟩ + by)
        dz⟨t⟩ = (1 − a⟨t⟩²) ⊙ (Wyaᵀ dy⟨t⟩ + Waaᵀ dz⟨t+1⟩)             backward, one lax.scan
        dWya = Σ_t dy⟨t⟩ a⟨t⟩ᵀ,  dby = Σ_t dy⟨t⟩,  dWax = Σ_t dz⟨t⟩ x⟨t⟩ᵀ,
        dWaa = Σ_t dz⟨t⟩ a⟨t−1⟩ᵀ,  db = Σ_t dz⟨t⟩                    one matmul each

    Padded steps (t ≥ T) keep a⟨t⟩ = a⟨t−1⟩ and have dy⟨t⟩ = 0: they add nothing. The backward
    pass is written out rather than taken from ``jax.value_and_grad`` through `jaxrnn.unroll`:
    the values are the same (tests/test_course.py checks it), and one call takes about half the
    time (about 45 against 95 µs for a name of 7 steps, n_a = 50, on a 2-core CPU), which is what
    a loop of one short name per call pays for.
    """
    p, rest = _course_host.unpack(floats, _char_layout(sizes))
    n_x, n_a, n_y = sizes
    a_prev, learning_rate = rest[:n_a], rest[n_a]
    steps = (ints.shape[0] - 1) // 2
    ids, targets, length = ints[:steps], ints[steps:-1], ints[-1]
    valid = (jnp.arange(steps) < length)[:, None]
    x = jax.nn.one_hot(ids, n_x, dtype=floats.dtype)  # (B, n_x); id −1: a row of zeros
    x_in = x @ p["Wax"].T + p["b"].T  # Wax x⟨t⟩ + b for every t: (B, n_a)

    def forward(a, inputs):
        x_in_t, valid_t = inputs
        a_next = jnp.where(valid_t, jnp.tanh(x_in_t + p["Waa"] @ a), a)
        return a_next, a_next

    a_last, a = lax.scan(forward, a_prev, (x_in, valid[:, 0]))  # a⟨1⟩ … a⟨B⟩: (B, n_a)
    log_y = jax.nn.log_softmax(a @ p["Wya"].T + p["by"].T)  # log ŷ⟨t⟩: (B, n_y)
    y = jax.nn.one_hot(targets, n_y, dtype=floats.dtype)
    loss = -jnp.sum(jnp.where(valid, y * log_y, 0.0))
    dy = jnp.where(valid, jnp.exp(log_y) - y, 0.0)

    def backward(da, inputs):  # da = Waaᵀ dz⟨t+1⟩
        dy_in_t, a_t = inputs  # Wyaᵀ dy⟨t⟩, a⟨t⟩
        dz = (1 - a_t * a_t) * (dy_in_t + da)
        return dz @ p["Waa"], dz

    _, dz = lax.scan(backward, jnp.zeros_like(a_prev), (dy @ p["Wya"], a), reverse=True)
    a_before = jnp.concatenate([a_prev[None], a[:-1]])  # a⟨t−1⟩ for every t
    grads = {
        "Wax": dz.T @ x,
        "Waa": dz.T @ a_before,
        "Wya": dy.T @ a,
        "b": jnp.sum(dz, axis=0)[:, None],
        "by": jnp.sum(dy, axis=0)[:, None],
    }
    transform = clip_elementwise(5.0)
    clipped, _ = transform.update(grads, transform.init(grads))
    updated = [p[key] - learning_rate * clipped[key] for key in _CHAR_SHAPES]
    pieces = [loss[None], a_last, *(clipped[key].ravel() for key in _CHAR_SHAPES)]
    return jnp.concatenate(pieces + [value.ravel() for value in updated])


def _bucket(n_steps: int) -> int:
    """The padded length for a sequence of n_steps: a power of two, at least _MIN_BUCKET."""
    return max(_MIN_BUCKET, 1 << (n_steps - 1).bit_length())


@functools.cache
def _char_offsets(sizes: tuple[int, int, int]) -> tuple[tuple[str, int, int, tuple], ...]:
    """Where each output of `_char_step` lies in its result: (name, start, stop, shape)."""
    layout, n_a = _char_layout(sizes), sizes[1]
    entries = [("loss", 1, ()), ("a_last", n_a, (n_a, 1))]
    entries += [("d" + key, int(np.prod(shape)), shape) for key, shape in layout.items()]
    entries += [(key, int(np.prod(shape)), shape) for key, shape in layout.items()]
    out, start = [], 0
    for name, size, shape in entries:
        out.append((name, start, start + size, shape))
        start += size
    return tuple(out)


def _char_sample(floats, ints, *, sizes):
    """The course's ``sample`` as one compiled loop that stops at the newline.

    floats: the parameters raveled in the order of _CHAR_SHAPES.
    ints (uint32): the key (two 32-bit words) and the newline's index: (3,).
    Returns (1 + 50,) int32: the number of indices drawn, then the indices (zeros after them).

        a⟨t⟩ = tanh(Wax x⟨t⟩ + Waa a⟨t−1⟩ + b),   ŷ⟨t⟩ = softmax(Wya a⟨t⟩ + by)
        u⟨t⟩ uniform in [0, 1) from Threefry-2x32(key, (t, 0)), i⟨t⟩ = #{i : Σ_{j≤i} ŷ⟨t⟩_j ≤ u⟨t⟩}
        x⟨t+1⟩ = onehot(i⟨t⟩);   a⟨0⟩ = 0, x⟨1⟩ = 0

    An index is drawn by inverting the cumulative distribution, as numpy's ``choice`` does, with a
    uniform number made by integer arithmetic only, so that the numpy version in
    `jaxrnn._course_host` draws the same indices. A ``lax.while_loop`` runs until the newline is
    drawn or 50 indices are, not always 50 steps.
    """
    p, _ = _course_host.unpack(floats, _char_layout(sizes))
    dtype = _course_host.draw_dtype(floats.dtype)
    newline = ints[2].astype(jnp.int32)
    # Every step's uniform number at once, before the loop: one fused computation, where jax's
    # threefry_2x32 is a loop of its own that each draw would run.
    steps = jnp.arange(_SAMPLE_MAX_LEN, dtype=jnp.uint32)
    words = _course_host.threefry2x32((ints[0], ints[1]), (steps, jnp.zeros_like(steps)))
    uniforms = _uniform(words, dtype)

    def running(state):
        t, _, last, _ = state
        return (t < _SAMPLE_MAX_LEN) & (last != newline)

    def draw(state):
        t, a, last, ids = state
        x_in = jnp.where(last >= 0, p["Wax"][:, last], 0.0)  # Wax x⟨t⟩; x⟨1⟩ = 0
        a = jnp.tanh(x_in + p["Waa"] @ a + p["b"][:, 0])
        logits = (p["Wya"] @ a + p["by"][:, 0]).astype(dtype)
        weights = jnp.exp(logits - logits.max())
        cdf = jnp.cumsum(weights / weights.sum())
        index = jnp.minimum(jnp.sum(cdf <= uniforms[t] * cdf[-1]), sizes[2] - 1).astype(jnp.int32)
        return t + 1, a, index, ids.at[t].set(index)

    start = (jnp.int32(0), jnp.zeros(sizes[1], floats.dtype), jnp.int32(-1))
    n_drawn, _, _, ids = lax.while_loop(
        running, draw, (*start, jnp.zeros(_SAMPLE_MAX_LEN, jnp.int32))
    )
    return jnp.concatenate([n_drawn[None], ids])


def _uniform(words: jax.Array, dtype) -> jax.Array:
    """`jaxrnn._course_host.uniform` on jax arrays: [0, 1) from two uint32 words."""
    if dtype == jnp.float64:
        high, low = (words[0] >> 5).astype(dtype), (words[1] >> 6).astype(dtype)
        return (high * 2.0**26 + low) / 2.0**53
    return (words[0] >> 8).astype(dtype) / 2.0**24


# ------------------------------------------------------------ compiled programs, kept on disk
#
# optimize and sample each run one compiled program per vocabulary size, hidden size, dtype (and,
# for optimize, bucket length). Compiling one takes half a second to a second, as long as the
# course's whole numpy loop over a few thousand names, so the compiled programs are also kept on
# disk, where the next process loads them in milliseconds. This cache serves these programs only:
# jax's own compilation cache (a global setting that would change how the user's functions
# compile) is left as the user set it.

_CACHE_ENV = "JAXRNN_CACHE_DIR"
_CACHE_HEADER = b"jaxrnn.course compiled program 1\n"  # then the SHA-256 of the payload, then it
_EXECUTABLES: dict[tuple, Any] = {}  # (program, sizes, argument shapes and dtypes) -> Compiled
_ORDERS: dict[tuple, tuple] = {}  # the same keys -> what compiling the program needs
_COMPILING: dict[tuple, Any] = {}  # the same keys -> a Future of the Compiled, or a process
_COMPILER: list[concurrent.futures.ThreadPoolExecutor] = []  # made on first use
# XLA's backend optimization level 1 instead of 3: about a quarter less compile time for these
# small programs, and the same time per call within the noise (measured on a 2-core CPU).
_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}
# The files whose code the programs run: a change to one of them makes new programs.
_SOURCES = (__file__, inspect.getsourcefile(clip_elementwise))


def _run(program, sizes: tuple[int, int, int], floats: np.ndarray, ints: np.ndarray) -> Any:
    """program(floats, ints, sizes=sizes): compiled once per process (loaded from disk if there);
    its numpy version from `jaxrnn._course_host` while it compiles in the background."""
    key = (program, sizes, floats.shape, floats.dtype, ints.shape, ints.dtype)
    compiled = _EXECUTABLES.get(key)
    if compiled is None:
        compiled = _ready(key, program, sizes, floats, ints)
    if compiled is None:
        layout = _char_layout(sizes)
        if program is _char_step:
            return _course_host.char_step(floats, ints, layout, _CHAR_KEYS)
        return _course_host.char_sample(floats, ints, layout, _SAMPLE_MAX_LEN)
    return compiled(floats, ints)


def _ready(key: tuple, program, sizes, floats, ints) -> Any:
    """The program for key if it can run now: loaded from the on-disk cache, or compiled in the
    background and finished; None until then. One program compiles at a time, in the order they
    were first asked for, so that the calls meanwhile keep a core to themselves."""
    pending = _COMPILING.get(key)
    if pending is not None:
        return _finish(key) if pending.done() else None
    if key not in _ORDERS:  # the first call for key
        avals = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in (floats, ints)]
        path = None
        with contextlib.suppress(Exception):  # a cache that fails to read means compiling
            path = _cache_path(program, sizes, avals)
            compiled = None if path is None else _load(path)
            if compiled is not None:
                _EXECUTABLES[key] = compiled
                return compiled
        # The calling thread's settings, which a thread of jax's does not inherit.
        settings = (jax.config.jax_enable_x64, jax.config.jax_default_matmul_precision)
        _ORDERS[key] = (program, sizes, avals, path, settings)
    if all(other.done() for other in _COMPILING.values()):
        _COMPILING[key] = _start_compiling(*_ORDERS[key])
    return None


def _finish(key: tuple) -> Any:
    """The background compilation of key, waited for, as a program that runs in this process."""
    compiled = _EXECUTABLES[key] = _COMPILING[key].result()
    del _COMPILING[key]
    return compiled


def wait_for_compilation() -> None:
    """Compiles, or waits for, the programs of every size and dtype `optimize` and `sample` have
    been called with; later calls run them.

    The first call of either for a new size or dtype runs a numpy version of the same step and
    has its program compiled in the background (in a process of its own where the on-disk cache
    is on, else on a thread); calls run the program once it is ready. The two agree to float
    rounding, and draw the same characters but where a uniform number falls within rounding of
    a boundary of the cumulative distribution. Call this where every call must run the compiled
    program, as when comparing runs step by step.

    Example:
      >>> from jaxrnn import course
      >>> course.wait_for_compilation()  # returns at once when nothing is left to compile
    """
    for key in list(_ORDERS):
        if key in _EXECUTABLES:
            continue
        if key not in _COMPILING:
            _COMPILING[key] = _start_compiling(*_ORDERS[key])
        _finish(key)


def _start_compiling(program, sizes, avals: list, path: Path | None, settings: tuple) -> Any:
    """Compiles in a process of its own where the program can come back through the on-disk
    cache, else on a thread of this one. A thread slows the calls meanwhile to a third or less
    (tracing, lowering and XLA hold the interpreter's lock much of the time), which a process
    on another core does not."""
    if path is not None:
        with contextlib.suppress(OSError):
            return _CompileProcess(program, sizes, avals, path, settings)
    return _compiler().submit(_compile, program, sizes, avals, path, settings)


class _CompileProcess:
    """A Python process that compiles one program into the on-disk cache, with the interface of
    a `concurrent.futures.Future`: done() and result() (the program, loaded from the cache; or
    compiled here if the process failed to store it)."""

    def __init__(self, program, sizes, avals: list, path: Path, settings: tuple):
        self.args = (program, sizes, avals, path, settings)
        order = {
            "program": program.__name__,
            "sizes": sizes,
            "avals": [(list(a.shape), np.dtype(a.dtype).name) for a in avals],
            "path": str(path),
            "settings": settings,
        }
        package_parent = str(Path(__file__).resolve().parent.parent)  # this jaxrnn, not another
        paths = [package_parent, *filter(None, [os.environ.get("PYTHONPATH")])]
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
        # jax's own persistent cache is off here (else this cache would not be used), and must
        # be there too: an executable jax loaded from its cache does not serialise intact.
        environment.pop("JAX_COMPILATION_CACHE_DIR", None)
        # At the lowest priority from its first instruction: importing jax takes a few seconds of
        # CPU, more than compiling, and the process that waits runs meanwhile.
        script = "import os; os.nice(19); import jaxrnn.course as c; c._compile_main()"
        command = [sys.executable, "-P", "-c", script]
        self.process = subprocess.Popen(
            [*command, json.dumps(order)],
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def done(self) -> bool:
        return self.process.poll() is not None

    def result(self) -> Any:
        self.process.wait()
        compiled = None
        with contextlib.suppress(Exception):
            compiled = _load(self.args[3])
        return compiled if compiled is not None else _compile(*self.args)


def _compile_main() -> None:
    """The compiling process's work: the order (JSON, in argv) compiled into the on-disk cache."""
    order = json.loads(sys.argv[-1])
    x64, precision = order["settings"]
    jax.config.update("jax_enable_x64", x64)
    jax.config.update("jax_compilation_cache_dir", None)
    program = {"_char_step": _char_step, "_char_sample": _char_sample}[order["program"]]
    avals = [jax.ShapeDtypeStruct(tuple(shape), dtype) for shape, dtype in order["avals"]]
    _compile(program, tuple(order["sizes"]), avals, Path(order["path"]), (x64, precision))


def _compiler() -> concurrent.futures.ThreadPoolExecutor:
    """The one thread that compiles the course's programs, in the order they were asked for."""
    if not _COMPILER:
        _COMPILER.append(
            concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="jaxrnn-course")
        )
    return _COMPILER[0]


def _compile(program, sizes, avals: list, path: Path | None, settings: tuple) -> Any:
    """Compiles program for avals under the caller's settings, and stores it in path."""
    x64, precision = settings
    function = functools.partial(program, sizes=sizes)
    with jax.enable_x64(x64), jax.default_matmul_precision(precision):
        try:
            compiled = jax.jit(function, compiler_options=_COMPILER_OPTIONS).lower(*avals).compile()
        except Exception:  # an XLA without these options
            compiled = jax.jit(function).lower(*avals).compile()
    if path is not None:
        with contextlib.suppress(Exception):
            _store(path, compiled)
    return compiled


def _cache_dir() -> Path | None:
    """$JAXRNN_CACHE_DIR, else $XDG_CACHE_HOME/jaxrnn, else ~/.cache/jaxrnn; None for "off", or
    when jax's own persistent cache is on and keeps the programs."""
    setting = os.environ.get(_CACHE_ENV, "")
    if setting.strip().lower() == "off" or jax.config.jax_compilation_cache_dir:
        return None
    if setting:
        return Path(setting).expanduser()
    try:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    except RuntimeError:  # no home directory
        return None
    return Path(base) / "jaxrnn"


@functools.cache
def _fingerprint() -> str:
    """What a compiled program depends on besides its arguments: versions, machine, code."""
    device = jax.devices()[0]
    cpu = platform.machine()
    with contextlib.suppress(OSError):  # the instruction set extensions the code may use
        flags = [line for line in Path("/proc/cpuinfo").read_text().splitlines() if ":" in line]
        cpu += next((line for line in flags if line.startswith("flags")), "")
    return "\n".join(
        [
            f"jax {jax.__version__}, jaxlib {jaxlib.version.__version__}",
            f"{device.platform} {device.client.platform_version} {device.device_kind} {cpu}",
            f"XLA_FLAGS={os.environ.get('XLA_FLAGS', '')}",
            *(hashlib.sha256(Path(source).read_bytes()).hexdigest() for source in _SOURCES),
        ]
    )


def _cache_path(program, sizes: tuple, avals: list) -> Path | None:
    directory = _cache_dir()
    if directory is None:
        return None
    precision = jax.config.jax_default_matmul_precision
    what = f"{program.__name__} {sizes} {avals} {precision} {_COMPILER_OPTIONS}\n{_fingerprint()}"
    digest = hashlib.sha256(what.encode()).hexdigest()[:32]
    return directory / f"course{program.__name__}-{digest}.bin"


def _private(directory: Path) -> bool:
    """Whether only this user can write in directory: a file there is loaded as code."""
    if not hasattr(os, "getuid"):
        return True
    info = directory.stat()
    return info.st_uid == os.getuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


_TREES = (jax.tree.structure(((0, 0), {})), jax.tree.structure(0))  # (floats, ints) -> one array


def _load(path: Path) -> Any:
    """The compiled program in path, or None if it is not there, not private or not intact."""
    if not path.exists() or not _private(path.parent):
        return None
    data, start = path.read_bytes(), len(_CACHE_HEADER) + 32
    payload = data[start:]
    if data[:start] != _CACHE_HEADER + hashlib.sha256(payload).digest():
        return None
    return deserialize_and_load(payload, *_TREES)


def _store(path: Path, compiled: Any) -> None:
    """Writes the compiled program to path, atomically: readers see the whole file or none."""
    payload, *trees = serialize(compiled)
    if tuple(trees) != _TREES:
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if _private(path.parent):
        with atomic_output(path) as tmp:
            Path(tmp).write_bytes(_CACHE_HEADER + hashlib.sha256(payload).digest() + payload)


# ----------------------------------------------------------------------------- argument checks


class _Shapes:
    """Checks arrays against shapes written with the course's sizes, e.g. ("n_a", "m").

    A size is fixed by the first array that shows it, and that array is named in later messages;
    ``"n_a+n_x"`` is a sum of sizes, and fixes the one term not known yet.
    """

    def __init__(self, fn: str):
        self.fn = fn
        self.sizes: dict[str, int] = {}
        self.source: dict[str, str] = {}

    def __call__(self, name: str, value: Any, spec: tuple) -> None:
        shape = shape_of(self.fn, name, value)
        _check_real(self.fn, name, value)
        layout = "(" + ", ".join(str(size) for size in spec) + ")"
        if len(shape) == len(spec):
            for size, given in zip(spec, shape, strict=True):
                if isinstance(size, str):
                    self._bind(name, layout, shape, size, given)
        expected = tuple(self._size(size) for size in spec)
        terms = dict.fromkeys(t for part in spec if isinstance(part, str) for t in _terms(part))
        known = [
            f"{t}={self.sizes[t]} from {self.source[t]}"
            for t in terms
            if t in self.sizes and self.source[t] != name
        ]
        hint = f"{name} is {layout}" + (f" with {', '.join(known)}" if known else "")
        check_shape(self.fn, name, value, expected, hint)

    def _bind(self, name: str, layout: str, shape: tuple, size: str, given: int) -> None:
        unknown = [t for t in _terms(size) if t not in self.sizes]
        if len(unknown) != 1:
            return
        rest = given - sum(self.sizes[t] for t in _terms(size) if t in self.sizes)
        if rest < 1 and len(_terms(size)) > 1:
            fail(self.fn, f"expected {name} of shape {layout} with {unknown[0]} ≥ 1, got {shape}")
        self.sizes[unknown[0]], self.source[unknown[0]] = rest, name

    def _size(self, size: int | str) -> int | None:
        if isinstance(size, int):
            return size
        terms = _terms(size)
        if all(term in self.sizes for term in terms):
            return sum(self.sizes[term] for term in terms)
        return None


def _terms(size: str) -> list[str]:
    return size.split("+")


def _check_real(fn: str, name: str, value: Any) -> None:
    """Raise unless value is an array (or nested list) of real numbers, ints or floats."""
    try:
        dtype = np.asarray(value).dtype
    except (TypeError, ValueError):
        fail(fn, f"expected {name} to be an array, got {type(value).__name__}")
    if dtype == np.bool_ or not (
        np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)
    ):
        fail(fn, f"expected {name} to hold real numbers, got dtype {dtype}")


def _parameters(fn: str, name: str, parameters: Any, keys: Sequence[str]) -> dict[str, Any]:
    """The entries ``keys`` of a parameters (or cache) dict; raises naming any missing key."""
    if not isinstance(parameters, Mapping):
        fail(fn, f"expected {name} to be a dict of numpy arrays, got {type(parameters).__name__}")
    missing = [key for key in keys if key not in parameters]
    if missing:
        fail(
            fn,
            f"expected {name} to have the keys {list(keys)}, missing {missing}",
            f"got the keys {list(parameters)}",
        )
    return {key: parameters[key] for key in keys}


def _check_parameters(shapes: _Shapes, name: str, p: Mapping, layout: Mapping) -> None:
    for key, value in p.items():
        shapes(f"{name}[{key!r}]", value, layout[key])


def _cache(fn: str, name: str, cache: Any, fields: tuple[str, ...], made_by: str) -> tuple:
    if not isinstance(cache, tuple | list) or len(cache) != len(fields):
        got = f"a {type(cache).__name__}" + (
            f" of length {len(cache)}" if isinstance(cache, tuple | list) else ""
        )
        fail(
            fn,
            f"expected {name} to be the {len(fields)}-tuple ({', '.join(fields)}), got {got}",
            f"pass the cache that {made_by} returned",
        )
    return tuple(cache)


def _sequence_caches(fn: str, caches: Any, made_by: str) -> tuple[list, Any]:
    if not isinstance(caches, tuple | list) or len(caches) != 2:
        fail(
            fn,
            f"expected caches to be the pair (list of cell caches, x), got {type(caches).__name__}",
            f"pass the caches that {made_by} returned",
        )
    cell_caches, x = caches
    if not isinstance(cell_caches, tuple | list) or not cell_caches:
        fail(fn, "expected caches[0] to be a non-empty list of cell caches, one per time step")
    return list(cell_caches), x


def _check_cache_count(fn: str, cell_caches: list, n_steps: int) -> None:
    if len(cell_caches) != n_steps:
        fail(
            fn,
            f"expected caches[0] to hold T_x = {n_steps} cell caches, one per step of x, "
            f"got {len(cell_caches)}",
        )


def _to_jax(*trees: Any) -> list[Any]:
    """Arrays as jax arrays of one floating dtype: numpy's promotion of them all, canonicalised."""
    dtype = _float_dtype(jax.tree.leaves(trees))
    return [jax.tree.map(lambda leaf: jnp.asarray(leaf, dtype), tree) for tree in trees]


def _float_dtype(leaves: Sequence[Any]) -> np.dtype:
    """numpy's promotion of the leaves' dtypes, float64 if that is not floating, canonicalised."""
    dtype = np.result_type(
        *[getattr(leaf, "dtype", None) or np.asarray(leaf).dtype for leaf in leaves]
    )
    if not np.issubdtype(dtype, np.floating):
        dtype = np.float64
    return jax.dtypes.canonicalize_dtype(dtype)


def _numpy(tree: Any) -> Any:
    """jax arrays -> writable numpy arrays (copies)."""
    return jax.tree.map(np.array, tree)


def _check_steps(fn: str, name: str, n_steps: int) -> None:
    if n_steps < 1:
        fail(fn, f"expected {name} with at least one time step, got T_x = {n_steps}")


# ------------------------------------------------------------------------------------- helpers


def softmax(x: Any) -> np.ndarray:
    """softmax over axis 0 (one column per example): x (n, ...) -> (n, ...), columns sum to 1."""
    _check_real("softmax", "x", x)
    if np.ndim(x) < 1:
        fail("softmax", "expected x with at least one dimension (classes first), got a scalar")
    (x,) = _to_jax(x)
    return _numpy(jax.nn.softmax(x, axis=0))


def sigmoid(x: Any) -> np.ndarray:
    """σ(x) = 1 / (1 + exp(−x)), element-wise, any shape."""
    _check_real("sigmoid", "x", x)
    (x,) = _to_jax(x)
    return _numpy(jax.nn.sigmoid(x))


# ------------------------------------------------------------------------------------- the RNN


def rnn_cell_forward(
    xt: np.ndarray, a_prev: np.ndarray, parameters: dict
) -> tuple[np.ndarray, np.ndarray, tuple]:
    """One step of the basic RNN and its softmax output.

        a⟨t⟩ = tanh(Waa a⟨t−1⟩ + Wax x⟨t⟩ + ba),   ŷ⟨t⟩ = softmax(Wya a⟨t⟩ + by)

    Args:
      xt: x⟨t⟩ (n_x, m).
      a_prev: a⟨t−1⟩ (n_a, m).
      parameters: dict with Wax (n_a, n_x), Waa (n_a, n_a), Wya (n_y, n_a), ba (n_a, 1),
        by (n_y, 1).

    Returns:
      ``(a_next, yt_pred, cache)``: a⟨t⟩ (n_a, m), ŷ⟨t⟩ (n_y, m), and
      ``cache = (a_next, a_prev, xt, parameters)``.

    Raises:
      InputError: if a key is missing or a shape does not fit.
    """
    fn = "rnn_cell_forward"
    p = _parameters(fn, "parameters", parameters, tuple(_RNN_SHAPES))
    shapes = _Shapes(fn)
    _check_parameters(shapes, "parameters", p, _RNN_SHAPES)
    shapes("xt", xt, ("n_x", "m"))
    shapes("a_prev", a_prev, ("n_a", "m"))
    p, xt, a_prev = _to_jax(p, xt, a_prev)
    a_next, yt_pred = _numpy(_rnn_cell_forward(p, xt, a_prev))
    return a_next, yt_pred, (a_next, _numpy(a_prev), _numpy(xt), parameters)


def rnn_forward(
    x: np.ndarray, a0: np.ndarray, parameters: dict
) -> tuple[np.ndarray, np.ndarray, tuple]:
    """The basic RNN over T_x steps from a⟨0⟩, and its softmax outputs at every step.

    Args:
      x: x⟨1⟩ … x⟨T_x⟩ (n_x, m, T_x).
      a0: a⟨0⟩ (n_a, m).
      parameters: as for `rnn_cell_forward`.

    Returns:
      ``(a, y_pred, caches)``: a⟨1⟩ … a⟨T_x⟩ (n_a, m, T_x), ŷ (n_y, m, T_x), and
      ``caches = (list of T_x cell caches as from rnn_cell_forward, x)``.

    Raises:
      InputError: if a key is missing or a shape does not fit.
    """
    fn = "rnn_forward"
    p = _parameters(fn, "parameters", parameters, tuple(_RNN_SHAPES))
    shapes = _Shapes(fn)
    _check_parameters(shapes, "parameters", p, _RNN_SHAPES)
    shapes("x", x, ("n_x", "m", "T_x"))
    shapes("a0", a0, ("n_a", "m"))
    _check_steps(fn, "x", shapes.sizes["T_x"])
    p, x, a0 = _to_jax(p, x, a0)
    a, y_pred = _numpy(_rnn_forward(p, x, a0))
    x, a_prev = _numpy(x), _numpy(a0)
    cell_caches = []
    for t in range(x.shape[2]):
        a_next = a[:, :, t].copy()
        cell_caches.append((a_next, a_prev, x[:, :, t].copy(), parameters))
        a_prev = a_next
    return a, y_pred, (cell_caches, x)


def rnn_cell_backward(da_next: np.ndarray, cache: tuple) -> dict[str, np.ndarray]:
    """Gradients of one RNN step, given the gradient of the loss with respect to a⟨t⟩ alone.

    The pullback of ``jax.vjp`` through jaxrnn's RNN step; the softmax head is not involved.

    Args:
      da_next: ∂L/∂a⟨t⟩ (n_a, m).
      cache: as returned by `rnn_cell_forward`.

    Returns:
      dict with dxt (n_x, m), da_prev (n_a, m), dWax (n_a, n_x), dWaa (n_a, n_a), dba (n_a, 1).

    Raises:
      InputError: if the cache is not one from `rnn_cell_forward` or da_next does not fit it.
    """
    fn = "rnn_cell_backward"
    fields = ("a_next", "a_prev", "xt", "parameters")
    a_next, a_prev, xt, parameters = _cache(fn, "cache", cache, fields, "rnn_cell_forward")
    layout = {key: _RNN_SHAPES[key] for key in ("Wax", "Waa", "ba")}
    p = _parameters(fn, "cache[3]", parameters, tuple(layout))
    shapes = _Shapes(fn)
    _check_parameters(shapes, "cache[3]", p, layout)
    shapes("cache[2] (xt)", xt, ("n_x", "m"))
    shapes("cache[1] (a_prev)", a_prev, ("n_a", "m"))
    shapes("cache[0] (a_next)", a_next, ("n_a", "m"))
    shapes("da_next", da_next, ("n_a", "m"))
    p, xt, a_prev, da_next = _to_jax(p, xt, a_prev, da_next)
    dp, dxt, da_prev = _numpy(_rnn_cell_backward(p, xt, a_prev, da_next))
    return {"dxt": dxt, "da_prev": da_prev, "dWax": dp["Wax"], "dWaa": dp["Waa"], "dba": dp["ba"]}


def rnn_backward(da: np.ndarray, caches: tuple) -> dict[str, np.ndarray]:
    """Backpropagation through time for the basic RNN: the pullback of ``jax.vjp`` of unroll.

    Args:
      da: ∂L/∂a⟨t⟩ for every t, as it comes from above (the outputs), not through the
        recurrence, (n_a, m, T_x). The recurrent part is added by the pullback.
      caches: as returned by `rnn_forward`.

    Returns:
      dict with dx (n_x, m, T_x), da0 (n_a, m), dWax (n_a, n_x), dWaa (n_a, n_a), dba (n_a, 1).

    Raises:
      InputError: if the caches are not ones from `rnn_forward` or da does not fit them.
    """
    fn = "rnn_backward"
    cell_caches, x = _sequence_caches(fn, caches, "rnn_forward")
    fields = ("a_next", "a_prev", "xt", "parameters")
    _, a0, _, parameters = _cache(fn, "caches[0][0]", cell_caches[0], fields, "rnn_forward")
    layout = {key: _RNN_SHAPES[key] for key in ("Wax", "Waa", "ba")}
    p = _parameters(fn, "caches[0][0][3]", parameters, tuple(layout))
    shapes = _Shapes(fn)
    _check_parameters(shapes, "caches[0][0][3]", p, layout)
    shapes("caches[1] (x)", x, ("n_x", "m", "T_x"))
    shapes("caches[0][0][1] (a0)", a0, ("n_a", "m"))
    shapes("da", da, ("n_a", "m", "T_x"))
    _check_cache_count(fn, cell_caches, shapes.sizes["T_x"])
    p, x, a0, da = _to_jax(p, x, a0, da)
    dp, dx, da0 = _numpy(_rnn_backward(p, x, a0, da))
    return {"dx": dx, "da0": da0, "dWax": dp["Wax"], "dWaa": dp["Waa"], "dba": dp["ba"]}


# ------------------------------------------------------------------------------------ the LSTM


def lstm_cell_forward(
    xt: np.ndarray, a_prev: np.ndarray, c_prev: np.ndarray, parameters: dict
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple]:
    """One LSTM step, each gate acting on the stacked [a⟨t−1⟩; x⟨t⟩]:

        Γ_f = σ(Wf [a⟨t−1⟩; x⟨t⟩] + bf),  Γ_u = σ(Wi [·] + bi),  c̃ = tanh(Wc [·] + bc),
        Γ_o = σ(Wo [·] + bo),  c⟨t⟩ = Γ_f c⟨t−1⟩ + Γ_u c̃,  a⟨t⟩ = Γ_o tanh(c⟨t⟩),
        ŷ⟨t⟩ = softmax(Wy a⟨t⟩ + by).

    Args:
      xt: x⟨t⟩ (n_x, m).
      a_prev: a⟨t−1⟩ (n_a, m).
      c_prev: c⟨t−1⟩ (n_a, m).
      parameters: dict with Wf, Wi, Wc, Wo (n_a, n_a + n_x), bf, bi, bc, bo (n_a, 1),
        Wy (n_y, n_a), by (n_y, 1).

    Returns:
      ``(a_next, c_next, yt_pred, cache)``: a⟨t⟩, c⟨t⟩ (n_a, m), ŷ⟨t⟩ (n_y, m), and
      ``cache = (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters)`` with the gate
      values ft = Γ_f, it = Γ_u, cct = c̃, ot = Γ_o, each (n_a, m).

    Raises:
      InputError: if a key is missing or a shape does not fit.
    """
    fn = "lstm_cell_forward"
    p = _parameters(fn, "parameters", parameters, tuple(_LSTM_SHAPES))
    shapes = _Shapes(fn)
    _check_parameters(shapes, "parameters", p, _LSTM_SHAPES)
    shapes("xt", xt, ("n_x", "m"))
    shapes("a_prev", a_prev, ("n_a", "m"))
    shapes("c_prev", c_prev, ("n_a", "m"))
    p, xt, a_prev, c_prev = _to_jax(p, xt, a_prev, c_prev)
    a_next, c_next, yt_pred, gates = _numpy(_lstm_cell_forward(p, xt, a_prev, c_prev))
    ft, it, cct, ot = gates
    cache = (
        a_next,
        c_next,
        _numpy(a_prev),
        _numpy(c_prev),
        ft,
        it,
        cct,
        ot,
        _numpy(xt),
        parameters,
    )
    return a_next, c_next, yt_pred, cache


def lstm_forward(
    x: np.ndarray, a0: np.ndarray, parameters: dict
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple]:
    """The LSTM over T_x steps from a⟨0⟩ and c⟨0⟩ = 0, and its softmax outputs at every step.

    Args:
      x: x⟨1⟩ … x⟨T_x⟩ (n_x, m, T_x).
      a0: a⟨0⟩ (n_a, m).
      parameters: as for `lstm_cell_forward`.

    Returns:
      ``(a, y, c, caches)``: a⟨1⟩ … a⟨T_x⟩ (n_a, m, T_x), ŷ (n_y, m, T_x), c⟨1⟩ … c⟨T_x⟩
      (n_a, m, T_x), and ``caches = (list of T_x cell caches as from lstm_cell_forward, x)``.

    Raises:
      InputError: if a key is missing or a shape does not fit.
    """
    fn = "lstm_forward"
    p = _parameters(fn, "parameters", parameters, tuple(_LSTM_SHAPES))
    shapes = _Shapes(fn)
    _check_parameters(shapes, "parameters", p, _LSTM_SHAPES)
    shapes("x", x, ("n_x", "m", "T_x"))
    shapes("a0", a0, ("n_a", "m"))
    _check_steps(fn, "x", shapes.sizes["T_x"])
    p, x, a0 = _to_jax(p, x, a0)
    a, c, y, gates = _numpy(_lstm_forward(p, x, a0))
    x, a_prev = _numpy(x), _numpy(a0)
    c_prev = np.zeros_like(a_prev)
    cell_caches = []
    for t in range(x.shape[2]):
        a_next, c_next = a[:, :, t].copy(), c[:, :, t].copy()
        ft, it, cct, ot = (g[:, :, t].copy() for g in gates)
        xt = x[:, :, t].copy()
        cell_caches.append((a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters))
        a_prev, c_prev = a_next, c_next
    return a, y, c, (cell_caches, x)


_LSTM_CACHE = ("a_next", "c_next", "a_prev", "c_prev", "ft", "it", "cct", "ot", "xt", "parameters")


def lstm_cell_backward(
    da_next: np.ndarray, dc_next: np.ndarray, cache: tuple
) -> dict[str, np.ndarray]:
    """Gradients of one LSTM step, given the gradients of the loss with respect to a⟨t⟩ and c⟨t⟩.

    The pullback of ``jax.vjp`` through jaxrnn's LSTM step; the softmax head is not involved.

    Args:
      da_next: ∂L/∂a⟨t⟩ (n_a, m).
      dc_next: ∂L/∂c⟨t⟩ (n_a, m), as it comes from step t + 1 (the path through a⟨t⟩ is added).
      cache: as returned by `lstm_cell_forward`.

    Returns:
      dict with dxt (n_x, m), da_prev, dc_prev (n_a, m), dWf, dWi, dWc, dWo (n_a, n_a + n_x),
      dbf, dbi, dbc, dbo (n_a, 1).

    Raises:
      InputError: if the cache is not one from `lstm_cell_forward` or da_next, dc_next do not fit.
    """
    fn = "lstm_cell_backward"
    cache = _cache(fn, "cache", cache, _LSTM_CACHE, "lstm_cell_forward")
    a_prev, c_prev, xt, parameters = cache[2], cache[3], cache[8], cache[9]
    layout = {key: _LSTM_SHAPES[key] for key in _GATES}
    p = _parameters(fn, "cache[9]", parameters, _GATES)
    shapes = _Shapes(fn)
    _check_parameters(shapes, "cache[9]", p, layout)
    shapes("cache[8] (xt)", xt, ("n_x", "m"))
    shapes("cache[2] (a_prev)", a_prev, ("n_a", "m"))
    shapes("cache[3] (c_prev)", c_prev, ("n_a", "m"))
    shapes("da_next", da_next, ("n_a", "m"))
    shapes("dc_next", dc_next, ("n_a", "m"))
    p, xt, a_prev, c_prev, da_next, dc_next = _to_jax(p, xt, a_prev, c_prev, da_next, dc_next)
    dp, dxt, da_prev, dc_prev = _numpy(_lstm_cell_backward(p, xt, a_prev, c_prev, da_next, dc_next))
    gradients = {"dxt": dxt, "da_prev": da_prev, "dc_prev": dc_prev}
    gradients.update({"d" + key: dp[key] for key in _GATES})
    return gradients


def lstm_backward(da: np.ndarray, caches: tuple) -> dict[str, np.ndarray]:
    """Backpropagation through time for the LSTM: the pullback of ``jax.vjp`` of unroll.

    As in the course, the number of steps T is read from ``da``: it may be smaller than the T_x
    steps of the forward pass, and then the gradients are those of a⟨1⟩ … a⟨T⟩, through the first
    T cell caches (the course's own test of ``lstm_backward`` passes a ``da`` of 4 steps after a
    forward pass of 7). Later steps do not reach a⟨1⟩ … a⟨T⟩, so this equals ``da`` padded with
    zeros to T_x steps, with dx cut to T steps.

    Args:
      da: ∂L/∂a⟨t⟩ for t = 1 … T, as it comes from above (the outputs), not through the
        recurrence, (n_a, m, T) with 1 ≤ T ≤ T_x. No gradient comes from above into the memory
        cells.
      caches: as returned by `lstm_forward`.

    Returns:
      dict with dx (n_x, m, T), da0 (n_a, m), dWf, dWi, dWc, dWo (n_a, n_a + n_x),
      dbf, dbi, dbc, dbo (n_a, 1).

    Raises:
      InputError: if the caches are not ones from `lstm_forward` or da does not fit them (more
        steps than the caches hold included).
    """
    fn = "lstm_backward"
    cell_caches, x = _sequence_caches(fn, caches, "lstm_forward")
    first = _cache(fn, "caches[0][0]", cell_caches[0], _LSTM_CACHE, "lstm_forward")
    a0, c0, parameters = first[2], first[3], first[9]
    layout = {key: _LSTM_SHAPES[key] for key in _GATES}
    p = _parameters(fn, "caches[0][0][9]", parameters, _GATES)
    shapes = _Shapes(fn)
    _check_parameters(shapes, "caches[0][0][9]", p, layout)
    shapes("caches[1] (x)", x, ("n_x", "m", "T_x"))
    shapes("caches[0][0][2] (a0)", a0, ("n_a", "m"))
    shapes("caches[0][0][3] (c0)", c0, ("n_a", "m"))
    _check_cache_count(fn, cell_caches, shapes.sizes["T_x"])
    shapes("da", da, ("n_a", "m", "T"))
    n_steps = shapes.sizes["T"]
    if not 1 <= n_steps <= len(cell_caches):
        fail(
            fn,
            f"expected da with 1 to T_x = {len(cell_caches)} time steps (one per cell cache), "
            f"got {n_steps}",
            "da covers the first T ≤ T_x steps of the forward pass",
        )
    x = np.asarray(x)[:, :, :n_steps]  # the steps after T do not reach a⟨1⟩ … a⟨T⟩
    p, x, a0, c0, da = _to_jax(p, x, a0, c0, da)
    dp, dx, da0 = _numpy(_lstm_backward(p, x, a0, c0, da))
    gradients = {"dx": dx, "da0": da0}
    gradients.update({"d" + key: dp[key] for key in _GATES})
    return gradients


# ------------------------------------------------------------------ the character-level model


def clip(gradients: dict, maxValue: float) -> dict[str, np.ndarray]:
    """Clips each entry of dWaa, dWax, dWya, db, dby to [−maxValue, maxValue].

    Element-wise clipping is `jaxrnn.train.clip_elementwise` (optax's ``clip``).

    Args:
      gradients: dict with (at least) the keys dWaa, dWax, dWya, db, dby.
      maxValue: the bound, > 0.

    Returns:
      A new dict with those five keys (other keys are left out, as in the course); the arrays
      passed in are not changed.

    Raises:
      InputError: if a key is missing or maxValue is not a positive number.
    """
    fn = "clip"
    g = _parameters(fn, "gradients", gradients, _CLIPPED)
    if (
        isinstance(maxValue, bool)
        or not isinstance(maxValue, int | float | np.number)
        or not maxValue > 0
    ):
        fail(fn, f"expected maxValue to be a number > 0, got {maxValue!r}")
    for key, value in g.items():
        _check_real(fn, f"gradients[{key!r}]", value)
    g = {key: _to_jax(value)[0] for key, value in g.items()}
    transform = clip_elementwise(float(maxValue))
    clipped, _ = transform.update(g, transform.init(g))
    return _numpy(clipped)


def _char_ids(fn: str, name: str, ids: Any, size: int, allow_none: bool) -> list[int]:
    """A list of character indices as a list of ints; None (the zero vector) becomes −1."""
    if (
        type(ids) is list
        and ids
        and all((type(v) is int and 0 <= v < size) or (v is None and allow_none) for v in ids)
    ):  # the common case, checked at little cost
        return [-1 if v is None else v for v in ids]
    if (
        isinstance(ids, str | bytes)
        or not isinstance(ids, Sequence | np.ndarray)
        or np.ndim(ids) != 1
    ):
        fail(fn, f"expected {name} to be a list of character indices, got {type(ids).__name__}")
    if len(ids) == 0:
        fail(fn, f"expected {name} to hold at least one index, got an empty list")
    out = []
    for t, v in enumerate(ids):
        if v is None and allow_none:
            out.append(-1)
            continue
        ok = isinstance(v, int | np.integer) and not isinstance(v, bool) and 0 <= v < size
        if not ok:
            what = f"an index in [0, {size})" + (" or None (the zero vector)" if allow_none else "")
            fail(fn, f"expected {name}[{t}] to be {what}, got {v!r}")
        out.append(int(v))
    return out


def optimize(
    X: list, Y: list, a_prev: np.ndarray, parameters: dict, learning_rate: float = 0.01
) -> tuple[Any, dict[str, np.ndarray], np.ndarray]:
    """One training step of the character-level model: forward, backward, clip at 5, SGD update.

        a⟨t⟩ = tanh(Wax x⟨t⟩ + Waa a⟨t−1⟩ + b),  ŷ⟨t⟩ = softmax(Wya a⟨t⟩ + by),
        loss = Σ_t −log ŷ⟨t⟩[Y[t]],  W ← W − learning_rate · clip(∂loss/∂W, 5)

    x⟨t⟩ is the one-hot vector of X[t] (the zero vector where X[t] is None).

    The whole step — forward, backward, clipping and update — is one compiled call, with the
    course's backpropagation through time written out: the same gradients as
    ``jax.value_and_grad`` through jaxrnn's RNN step and `jaxrnn.unroll` (the tests check it), at
    about half the cost per call, which a loop of one short name per call is made of. X and Y are
    padded to the next power of two from 8 steps (8, 16, 32, …), the padded steps masked out, so
    a loop over names of many lengths compiles once per padded length, not once per length, and
    each compiled program is kept on disk for later processes (see the module's docstring;
    ``JAXRNN_CACHE_DIR=off`` turns it off). Until a program is compiled, in the background, the
    same step runs in numpy (see `wait_for_compilation`).

    Args:
      X: input character indices, a list of T ints in [0, n_x) or None.
      Y: target character indices, a list of T ints in [0, n_y).
      a_prev: a⟨0⟩ (n_a, 1).
      parameters: dict with Wax (n_a, n_x), Waa (n_a, n_a), Wya (n_y, n_a), b (n_a, 1),
        by (n_y, 1). Updated in place: writable numpy arrays are overwritten, other values are
        replaced by updated numpy arrays in the dict.
      learning_rate: the SGD step size.

    Returns:
      ``(loss, gradients, a_last)``: the loss before the update (a numpy scalar), the clipped
      gradients dWax, dWaa, dWya, db, dby (as `clip` returns them), and a⟨T⟩ (n_a, 1).

    Raises:
      InputError: if a key is missing, a shape does not fit, or an index is out of range.
    """
    fn = "optimize"
    p = _parameters(fn, "parameters", parameters, _CHAR_KEYS)
    arrays = [*p.values(), a_prev]
    plain = _plain_char(arrays)
    if plain is None:  # anything but numpy float arrays of fitting shapes: check it all
        shapes = _Shapes(fn)
        _check_parameters(shapes, "parameters", p, _CHAR_SHAPES)
        shapes("a_prev", a_prev, ("n_a", 1))
        sizes = (shapes.sizes["n_x"], shapes.sizes["n_a"], shapes.sizes["n_y"])
        plain = sizes, _float_dtype(arrays)
        arrays = [np.asarray(v) for v in arrays]
    sizes, dtype = plain
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, int | float | np.number):
        fail(fn, f"expected learning_rate to be a number, got {learning_rate!r}")
    ids = _char_ids(fn, "X", X, sizes[0], allow_none=True)
    targets = _char_ids(fn, "Y", Y, sizes[2], allow_none=False)
    if len(ids) != len(targets):
        fail(fn, f"expected X and Y of the same length, got {len(ids)} and {len(targets)}")

    floats = np.concatenate([v.ravel() for v in arrays] + [[learning_rate]], dtype=dtype)
    n_steps = len(ids)
    padding = [0] * (_bucket(n_steps) - n_steps)
    ints = np.array(ids + padding + targets + padding + [n_steps], np.int32)
    result = np.array(_run(_char_step, sizes, floats, ints))  # one writable copy; outputs view it
    out = {name: result[i:j].reshape(shape) for name, i, j, shape in _char_offsets(sizes)}
    for key in _CHAR_KEYS:
        value = parameters[key]
        if type(value) is np.ndarray and value.flags.writeable:
            value[...] = out[key]
        else:
            parameters[key] = out[key]
    gradients = {key: out[key] for key in _CLIPPED}
    return out["loss"][()], gradients, out["a_last"]


def _plain_char(arrays: Sequence[Any]) -> tuple[tuple[int, int, int], np.dtype] | None:
    """((n_x, n_a, n_y), dtype) if the parameters Wax, Waa, Wya, b, by (then any a_prev) are numpy
    arrays of one floating dtype and of fitting shapes.

    The common case, which the full checks would pass, checked at little cost (the answer for
    each list of shapes and dtypes is kept); None otherwise, and the full checks then run (and
    name what is wrong).
    """
    signature = tuple([(v.shape, v.dtype) for v in arrays if type(v) is np.ndarray])
    if len(signature) != len(arrays):
        return None
    plain = _plain_signature(signature)
    return None if plain is None else (plain[0], jax.dtypes.canonicalize_dtype(plain[1]))


@functools.lru_cache(maxsize=64)
def _plain_signature(signature: tuple) -> tuple[tuple[int, int, int], np.dtype] | None:
    """`_plain_char` of arrays with these (shape, dtype) pairs, the dtype not canonicalised (that
    depends on ``jax_enable_x64`` at the time of the call)."""
    shapes, dtypes = zip(*signature, strict=True)
    dtype = dtypes[0]
    if dtype.kind != "f" or any(d != dtype for d in dtypes) or any(len(s) != 2 for s in shapes):
        return None
    (n_a, n_x), n_y = shapes[0], shapes[2][0]
    fitting = ((n_a, n_x), (n_a, n_a), (n_y, n_a), (n_a, 1), (n_y, 1)) + ((n_a, 1),) * (
        len(shapes) - 5
    )
    if shapes != fitting:
        return None
    return (n_x, n_a, n_y), dtype


def sample(parameters: dict, char_to_ix: Mapping[str, int], seed: int) -> list[int]:
    """Samples one sequence of character indices from the character model.

    As in the course: a⟨0⟩ = 0, x⟨1⟩ = 0, each index drawn from ŷ⟨t⟩ and fed back as x⟨t+1⟩,
    until the newline is drawn or 50 indices are; after 50 the newline is appended.

    Each index is drawn as numpy's ``choice`` draws, by inverting the cumulative distribution of
    ŷ⟨t⟩ at a uniform number u⟨t⟩, but u⟨t⟩ comes from Threefry-2x32 (the generator of JAX's
    keys) of the key (the seed's 64 bits, two's complement, as two words) and the counter (t, 0),
    not from numpy's global generator seeded as the course's loop seeds it: the same seed gives
    other indices than the course's sample (from the same distribution), and always the same
    indices.

    One compiled call draws a whole sample, a loop that stops at the newline. It is compiled once
    for each vocabulary size, hidden size and dtype, in the background (the same loop runs in
    numpy until then, drawing the same indices), and kept on disk as `optimize` keeps its
    programs, so that a later process does not compile it again.

    Args:
      parameters: dict with Wax (n_a, V), Waa (n_a, n_a), Wya (V, n_a), b (n_a, 1), by (V, 1).
      char_to_ix: dict from characters to indices in [0, V); must contain "\\n".
      seed: an int.

    Returns:
      The list of sampled indices, ending with the newline's index.

    Raises:
      InputError: if a key is missing, a shape does not fit, or char_to_ix has no "\\n".
    """
    fn = "sample"
    p = _parameters(fn, "parameters", parameters, _CHAR_KEYS)
    arrays = list(p.values())
    plain = _plain_char(arrays)
    if plain is None or plain[0][0] != plain[0][2]:  # anything unusual: check it all
        shapes = _Shapes(fn)
        layout = {**_CHAR_SHAPES, "Wax": ("n_a", "V"), "Wya": ("V", "n_a"), "by": ("V", 1)}
        _check_parameters(shapes, "parameters", p, layout)
        sizes = (shapes.sizes["V"], shapes.sizes["n_a"], shapes.sizes["V"])
        plain = sizes, _float_dtype(arrays)
        arrays = [np.asarray(v) for v in arrays]
    sizes, dtype = plain
    vocab_size = sizes[0]
    if not isinstance(char_to_ix, Mapping) or "\n" not in char_to_ix:
        fail(fn, "expected char_to_ix to be a dict with the key '\\n' (where a sample ends)")
    newline = char_to_ix["\n"]
    if not isinstance(newline, int | np.integer) or not 0 <= newline < vocab_size:
        fail(fn, f"expected char_to_ix['\\n'] to be an index in [0, {vocab_size}), got {newline!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        fail(fn, f"expected seed to be an int, got {seed!r}")
    floats = np.concatenate([v.ravel() for v in arrays], dtype=dtype)
    bits = int(seed) % 2**64  # two's complement
    ints = np.array([bits >> 32, bits & 0xFFFFFFFF, newline], np.uint32)
    drawn = np.asarray(_run(_char_sample, sizes, floats, ints))
    indices = drawn[1 : 1 + drawn[0]].tolist()
    if len(indices) == _SAMPLE_MAX_LEN:
        indices.append(int(newline))
    return indices
