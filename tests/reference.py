"""A plain-numpy reference for every cell of ``jaxrnn.cells``, written from the course equations.

No jax here, so that the tests compare the library with something that shares none of its code.
Everything is computed in float64 whatever the dtype of the arguments.

Row-vector convention, as in the library: x⟨t⟩ @ w_x and a⟨t−1⟩ @ w_h, and the course's W_g
[a⟨t−1⟩, x⟨t⟩] + b_g for gate g is written ``x @ g.wx + a_prev @ g.wh + g.b`` with gate g's column
block of the stacked weights. Gate orders: RNN (a), simplified GRU (u, c̃), GRU (r, u, c̃),
LSTM (u, f, c̃, o); the LSTM peephole rows are (u, f, o).

Carries: an array a⟨t⟩ (or c⟨t⟩) for the RNN and GRUs, a tuple (h, c) for the LSTM.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def relu(v):
    return np.maximum(v, 0.0)


class Gate(NamedTuple):
    """One gate's blocks of the stacked params: wx (n_x, H), wh (H, H), bx and bh (H,)."""

    wx: np.ndarray
    wh: np.ndarray
    bx: np.ndarray
    bh: np.ndarray

    @property
    def b(self) -> np.ndarray:
        """The course's single bias b_g = b_x + b_h."""
        return self.bx + self.bh


def gates(params, n_gates: int) -> list[Gate]:
    """Gate k owns columns k·H … (k+1)·H − 1 of w_x, w_h, b_x and b_h."""
    w_x, w_h, b_x, b_h = (np.asarray(p, np.float64) for p in params[:4])
    n_a = w_h.shape[0]
    assert w_x.shape[1] == w_h.shape[1] == b_x.shape[0] == b_h.shape[0] == n_gates * n_a
    blocks = [slice(k * n_a, (k + 1) * n_a) for k in range(n_gates)]
    return [Gate(w_x[:, s], w_h[:, s], b_x[s], b_h[s]) for s in blocks]


def _f64(*arrays):
    return [np.asarray(a, np.float64) for a in arrays]


# --------------------------------------------------------------------------------------- one step


def rnn_step(params, a_prev, x, g=np.tanh):
    a_prev, x = _f64(a_prev, x)
    (w,) = gates(params, 1)
    a = g(x @ w.wx + a_prev @ w.wh + w.b)  # a⟨t⟩ = g(W_ax x⟨t⟩ + W_aa a⟨t−1⟩ + b_a)
    return a, a


def rnn_relu_step(params, a_prev, x):
    return rnn_step(params, a_prev, x, g=relu)


def simplified_gru_step(params, c_prev, x):
    c_prev, x = _f64(c_prev, x)
    u, cand = gates(params, 2)
    c_tilde = np.tanh(x @ cand.wx + c_prev @ cand.wh + cand.b)  # c̃ = tanh(W_c [c⟨t−1⟩, x] + b_c)
    gamma_u = sigmoid(x @ u.wx + c_prev @ u.wh + u.b)  # Γ_u = σ(W_u [c⟨t−1⟩, x⟨t⟩] + b_u)
    c = gamma_u * c_tilde + (1 - gamma_u) * c_prev  # c⟨t⟩ = Γ_u * c̃ + (1 − Γ_u) * c⟨t−1⟩
    return c, c


def gru_before_step(params, c_prev, x):
    c_prev, x = _f64(c_prev, x)
    r, u, cand = gates(params, 3)
    gamma_r = sigmoid(x @ r.wx + c_prev @ r.wh + r.b)  # Γ_r = σ(W_r [c⟨t−1⟩, x⟨t⟩] + b_r)
    gamma_u = sigmoid(x @ u.wx + c_prev @ u.wh + u.b)  # Γ_u = σ(W_u [c⟨t−1⟩, x⟨t⟩] + b_u)
    c_tilde = np.tanh(x @ cand.wx + (gamma_r * c_prev) @ cand.wh + cand.b)  # W_c [Γ_r * c, x]
    c = gamma_u * c_tilde + (1 - gamma_u) * c_prev  # c⟨t⟩ = Γ_u * c̃ + (1 − Γ_u) * c⟨t−1⟩
    return c, c


def gru_after_step(params, c_prev, x):
    c_prev, x = _f64(c_prev, x)
    r, u, cand = gates(params, 3)
    gamma_r = sigmoid(x @ r.wx + c_prev @ r.wh + r.b)  # Γ_r
    gamma_u = sigmoid(x @ u.wx + c_prev @ u.wh + u.b)  # Γ_u
    c_tilde = np.tanh(x @ cand.wx + cand.bx + gamma_r * (c_prev @ cand.wh + cand.bh))  # after
    c = gamma_u * c_tilde + (1 - gamma_u) * c_prev
    return c, c


def lstm_step(params, carry, x):
    a_prev, c_prev = _f64(*carry)
    (x,) = _f64(x)
    u, f, cand, o = gates(params, 4)
    c_tilde = np.tanh(x @ cand.wx + a_prev @ cand.wh + cand.b)  # c̃ = tanh(W_c [a⟨t−1⟩, x] + b_c)
    gamma_u = sigmoid(x @ u.wx + a_prev @ u.wh + u.b)  # Γ_u = σ(W_u [a⟨t−1⟩, x⟨t⟩] + b_u)
    gamma_f = sigmoid(x @ f.wx + a_prev @ f.wh + f.b)  # Γ_f = σ(W_f [a⟨t−1⟩, x⟨t⟩] + b_f)
    gamma_o = sigmoid(x @ o.wx + a_prev @ o.wh + o.b)  # Γ_o = σ(W_o [a⟨t−1⟩, x⟨t⟩] + b_o)
    c = gamma_u * c_tilde + gamma_f * c_prev  # c⟨t⟩ = Γ_u * c̃⟨t⟩ + Γ_f * c⟨t−1⟩
    a = gamma_o * np.tanh(c)  # a⟨t⟩ = Γ_o * tanh(c⟨t⟩)
    return (a, c), a


def lstm_peephole_step(params, carry, x):
    a_prev, c_prev = _f64(*carry)
    (x,) = _f64(x)
    u, f, cand, o = gates(params, 4)
    p_u, p_f, p_o = np.asarray(params.peephole, np.float64)
    c_tilde = np.tanh(x @ cand.wx + a_prev @ cand.wh + cand.b)
    gamma_u = sigmoid(x @ u.wx + a_prev @ u.wh + u.b + p_u * c_prev)  # sees c⟨t−1⟩
    gamma_f = sigmoid(x @ f.wx + a_prev @ f.wh + f.b + p_f * c_prev)  # sees c⟨t−1⟩
    c = gamma_u * c_tilde + gamma_f * c_prev
    gamma_o = sigmoid(x @ o.wx + a_prev @ o.wh + o.b + p_o * c)  # sees the new c⟨t⟩
    a = gamma_o * np.tanh(c)
    return (a, c), a


STEPS = {
    "rnn_tanh": rnn_step,
    "rnn_relu": rnn_relu_step,
    "simplified_gru": simplified_gru_step,
    "gru_before": gru_before_step,
    "gru_after": gru_after_step,
    "lstm": lstm_step,
    "lstm_peephole": lstm_peephole_step,
}


# ------------------------------------------------------------------------------------ over time


def reference_unroll(cell_name, params, xs, h0, lengths=None, reverse=False):
    """One example, xs (T, n_x): (last carry, ys (T, H)), from the definition of lengths.

    Only the valid prefix xs[:L] is run (backwards within it if ``reverse``); the carry is the one
    after the last step run (h0 if L = 0) and the outputs at the T − L padded steps are zero.
    """
    step = STEPS[cell_name]
    xs = np.asarray(xs, np.float64)
    n_steps, n_a = xs.shape[0], np.shape(params.w_h)[0]
    length = n_steps if lengths is None else int(lengths)
    assert 0 <= length <= n_steps

    prefix = xs[:length][::-1] if reverse else xs[:length]
    carry, outputs = h0, []
    for x in prefix:
        carry, y = step(params, carry, x)
        outputs.append(y)
    if reverse:
        outputs = outputs[::-1]  # ys[t] is the output after reading xs[t]

    ys = np.zeros((n_steps, n_a))
    ys[:length] = np.reshape(outputs, (length, n_a))
    return carry, ys
