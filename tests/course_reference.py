"""The course's week-1 assignment functions in plain numpy float64, backward passes by hand.

No jax here: `jaxrnn.course` computes its backward passes with ``jax.vjp``, and this file writes
each gradient out from the chain rule, so the two share no code. Layout as in the course: features
first, one column per example; x (n_x, m, T_x); gate weights act on the stacked [a⟨t−1⟩; x⟨t⟩].
"""

from __future__ import annotations

import numpy as np


def sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def softmax(z):
    e = np.exp(z - z.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


# ------------------------------------------------------------------------------------- the RNN


def rnn_cell_forward(xt, a_prev, p):
    a_next = np.tanh(p["Waa"] @ a_prev + p["Wax"] @ xt + p["ba"])
    yt = softmax(p["Wya"] @ a_next + p["by"])
    return a_next, yt, (a_next, a_prev, xt, p)


def rnn_forward(x, a0, p):
    n_a, (n_y, m, n_steps) = a0.shape[0], (p["Wya"].shape[0], *x.shape[1:])
    a, y = np.zeros((n_a, m, n_steps)), np.zeros((n_y, m, n_steps))
    caches, a_t = [], a0
    for t in range(n_steps):
        a_t, y[:, :, t], cache = rnn_cell_forward(x[:, :, t], a_t, p)
        a[:, :, t] = a_t
        caches.append(cache)
    return a, y, (caches, x)


def rnn_cell_backward(da_next, cache):
    """a = tanh(z), z = Waa a_prev + Wax x + ba: ∂L/∂z = (1 − a²) ∂L/∂a, then z's linear pieces."""
    a_next, a_prev, xt, p = cache
    dz = (1.0 - a_next**2) * da_next
    return {
        "dxt": p["Wax"].T @ dz,
        "da_prev": p["Waa"].T @ dz,
        "dWax": dz @ xt.T,
        "dWaa": dz @ a_prev.T,
        "dba": dz.sum(axis=1, keepdims=True),
    }


def rnn_backward(da, caches):
    """From the last step back: each step's ∂L/∂a⟨t⟩ is da[t] plus what step t + 1 sends back."""
    cell_caches, x = caches
    p = cell_caches[0][3]
    grads = {
        "dx": np.zeros_like(x),
        "dWax": np.zeros_like(p["Wax"]),
        "dWaa": np.zeros_like(p["Waa"]),
        "dba": np.zeros_like(p["ba"]),
    }
    da_prev = np.zeros(da.shape[:2])
    for t in reversed(range(da.shape[2])):
        step = rnn_cell_backward(da[:, :, t] + da_prev, cell_caches[t])
        grads["dx"][:, :, t] = step["dxt"]
        for key in ("dWax", "dWaa", "dba"):
            grads[key] += step[key]
        da_prev = step["da_prev"]
    grads["da0"] = da_prev
    return grads


# ------------------------------------------------------------------------------------ the LSTM

GATE_KEYS = ("Wf", "bf", "Wi", "bi", "Wc", "bc", "Wo", "bo")


def lstm_cell_forward(xt, a_prev, c_prev, p):
    concat = np.concatenate([a_prev, xt])
    ft = sigmoid(p["Wf"] @ concat + p["bf"])
    it = sigmoid(p["Wi"] @ concat + p["bi"])
    cct = np.tanh(p["Wc"] @ concat + p["bc"])
    ot = sigmoid(p["Wo"] @ concat + p["bo"])
    c_next = ft * c_prev + it * cct
    a_next = ot * np.tanh(c_next)
    yt = softmax(p["Wy"] @ a_next + p["by"])
    return a_next, c_next, yt, (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, p)


def lstm_forward(x, a0, p):
    n_a, (n_y, m, n_steps) = a0.shape[0], (p["Wy"].shape[0], *x.shape[1:])
    a, c, y = np.zeros((n_a, m, n_steps)), np.zeros((n_a, m, n_steps)), np.zeros((n_y, m, n_steps))
    caches, a_t, c_t = [], a0, np.zeros_like(a0)
    for t in range(n_steps):
        a_t, c_t, y[:, :, t], cache = lstm_cell_forward(x[:, :, t], a_t, c_t, p)
        a[:, :, t], c[:, :, t] = a_t, c_t
        caches.append(cache)
    return a, y, c, (caches, x)


def lstm_cell_backward(da_next, dc_next, cache):
    """Through a = Γ_o tanh(c) and c = Γ_f c_prev + Γ_u c̃, then each gate's activation, matmul."""
    a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, p = cache
    n_a = a_next.shape[0]
    tanh_c = np.tanh(c_next)
    dc = dc_next + da_next * ot * (1.0 - tanh_c**2)  # every path into c⟨t⟩
    dz = {  # ∂L/∂(pre-activation) of each gate
        "f": dc * c_prev * ft * (1.0 - ft),
        "i": dc * cct * it * (1.0 - it),
        "c": dc * it * (1.0 - cct**2),
        "o": da_next * tanh_c * ot * (1.0 - ot),
    }
    concat = np.concatenate([a_prev, xt])
    dconcat = sum(p["W" + g].T @ dz[g] for g in "fico")
    grads = {"dxt": dconcat[n_a:], "da_prev": dconcat[:n_a], "dc_prev": dc * ft}
    for g in "fico":
        grads["dW" + g] = dz[g] @ concat.T
        grads["db" + g] = dz[g].sum(axis=1, keepdims=True)
    return grads


def lstm_backward(da, caches):
    """As in the course, the steps come from da: T ≤ T_x, walking back over the first T caches."""
    cell_caches, x = caches
    p = cell_caches[0][9]
    dx = np.zeros((*x.shape[:2], da.shape[2]))
    grads = {"dx": dx, **{"d" + key: np.zeros_like(p[key]) for key in GATE_KEYS}}
    da_prev = dc_prev = np.zeros(da.shape[:2])
    for t in reversed(range(da.shape[2])):
        step = lstm_cell_backward(da[:, :, t] + da_prev, dc_prev, cell_caches[t])
        grads["dx"][:, :, t] = step["dxt"]
        for key in GATE_KEYS:
            grads["d" + key] += step["d" + key]
        da_prev, dc_prev = step["da_prev"], step["dc_prev"]
    grads["da0"] = da_prev
    return grads


# ------------------------------------------------------------------ the character-level model

CHAR_KEYS = ("Wax", "Waa", "Wya", "b", "by")


def clip(gradients, max_value):
    return {
        key: np.clip(gradients[key], -max_value, max_value) for key in ("d" + k for k in CHAR_KEYS)
    }


def char_forward(X, Y, a0, p):
    """One sequence, m = 1: X[t] None is the zero input. Returns loss and the per-step values."""
    vocab = p["Wax"].shape[1]
    xs, hs, ps, loss = [], [a0], [], 0.0
    for x_id, y_id in zip(X, Y, strict=True):
        x = np.zeros((vocab, 1))
        if x_id is not None:
            x[x_id] = 1.0
        a = np.tanh(p["Wax"] @ x + p["Waa"] @ hs[-1] + p["b"])
        y_hat = softmax(p["Wya"] @ a + p["by"])
        loss -= np.log(y_hat[y_id, 0])
        xs.append(x)
        hs.append(a)
        ps.append(y_hat)
    return loss, (xs, hs, ps)


def char_backward(Y, p, values):
    """Σ_t −log ŷ⟨t⟩[y⟨t⟩]: ∂/∂(Wya a + by) = ŷ − onehot(y); then back through tanh and time."""
    xs, hs, ps = values
    grads = {"d" + key: np.zeros_like(p[key]) for key in CHAR_KEYS}
    da_from_next = np.zeros_like(hs[0])
    for t in reversed(range(len(xs))):
        dlogits = ps[t].copy()
        dlogits[Y[t]] -= 1.0
        grads["dWya"] += dlogits @ hs[t + 1].T
        grads["dby"] += dlogits
        dz = (1.0 - hs[t + 1] ** 2) * (p["Wya"].T @ dlogits + da_from_next)
        grads["db"] += dz
        grads["dWax"] += dz @ xs[t].T
        grads["dWaa"] += dz @ hs[t].T
        da_from_next = p["Waa"].T @ dz
    return grads


def optimize(X, Y, a_prev, p, learning_rate):
    """Forward, backward, clip at 5, SGD. Returns (loss, clipped gradients, a⟨T⟩, new params)."""
    loss, values = char_forward(X, Y, a_prev, p)
    grads = clip(char_backward(Y, p, values), 5.0)
    new = {key: p[key] - learning_rate * grads["d" + key] for key in CHAR_KEYS}
    return loss, grads, values[1][-1], new
