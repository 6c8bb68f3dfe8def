"""The benchmark suite's numpy peer: a float32 loop over time, with a hand-written backward pass.

Weights stay in PyTorch's layout (W_ih (G·H, D), W_hh (G·H, H), two biases, gates i, f, g, o for
the LSTM and r, z, n for the GRU), so the gradients come out in that layout too. The forward pass
is the course's loop, one step at a time; backpropagation through time keeps only the recurrent
product inside its loop and forms the weight gradients afterwards, as one matmul over all steps.
"""

from __future__ import annotations

import time

import numpy as np

from benchmarks.suite_types import Bench, Impl, Model

# --------------------------------------------------------------------------------------- helpers


def _sigmoid(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):  # exp(−z) → inf for very negative z gives σ = 0, as it should
        return 1.0 / (1.0 + np.exp(-z))


def _steps(n_steps: int, reverse: bool) -> range:
    return range(n_steps - 1, -1, -1) if reverse else range(n_steps)


# ------------------------------------------------------------------------------------------- LSTM


def lstm_forward(x, w_ih, w_hh, b_ih, b_hh, reverse=False, keep=False):
    """One LSTM layer over x (B, T, D); returns hs (B, T, H) and, with ``keep``, the cache."""
    batch, n_steps, _ = x.shape
    n_a = w_hh.shape[1]
    w_ih_t, w_hh_t, b = w_ih.T, w_hh.T, b_ih + b_hh
    h = np.zeros((batch, n_a), x.dtype)
    c = np.zeros((batch, n_a), x.dtype)
    hs = np.empty((batch, n_steps, n_a), x.dtype)
    if keep:
        gates = np.empty((batch, n_steps, 4 * n_a), x.dtype)  # i, f, g, o after σ / tanh
        c_prev = np.empty((batch, n_steps, n_a), x.dtype)
        h_prev = np.empty((batch, n_steps, n_a), x.dtype)
        tanh_c = np.empty((batch, n_steps, n_a), x.dtype)
    for t in _steps(n_steps, reverse):
        z = x[:, t] @ w_ih_t + h @ w_hh_t + b  # all four gates' pre-activations
        i = _sigmoid(z[:, :n_a])  # input (update) gate
        f = _sigmoid(z[:, n_a : 2 * n_a])  # forget gate
        g = np.tanh(z[:, 2 * n_a : 3 * n_a])  # candidate memory
        o = _sigmoid(z[:, 3 * n_a :])  # output gate
        if keep:
            c_prev[:, t], h_prev[:, t] = c, h
        c = f * c + i * g  # c⟨t⟩ = f * c⟨t−1⟩ + i * g
        tc = np.tanh(c)
        h = o * tc  # h⟨t⟩ = o * tanh(c⟨t⟩)
        hs[:, t] = h
        if keep:
            gates[:, t] = np.concatenate([i, f, g, o], axis=1)
            tanh_c[:, t] = tc
    cache = (x, gates, c_prev, h_prev, tanh_c) if keep else None
    return hs, cache


def lstm_backward(dhs, cache, w_ih, w_hh, reverse=False, need_dx=True):
    """Gradients of one LSTM layer given dL/dhs (B, T, H); returns (dx or None, weight grads)."""
    x, gates, c_prev, h_prev, tanh_c = cache
    batch, n_steps, n_a = dhs.shape
    dz_all = np.empty((batch, n_steps, 4 * n_a), dhs.dtype)
    dh_next = np.zeros((batch, n_a), dhs.dtype)
    dc_next = np.zeros((batch, n_a), dhs.dtype)
    for t in _steps(n_steps, not reverse):
        i, f, g, o = np.split(gates[:, t], 4, axis=1)
        tc = tanh_c[:, t]
        dh = dhs[:, t] + dh_next
        dc = dc_next + dh * o * (1 - tc * tc)
        dz = np.concatenate(
            [
                dc * g * i * (1 - i),  # through i = σ(z_i)
                dc * c_prev[:, t] * f * (1 - f),  # through f = σ(z_f)
                dc * i * (1 - g * g),  # through g = tanh(z_g)
                dh * tc * o * (1 - o),  # through o = σ(z_o)
            ],
            axis=1,
        )
        dz_all[:, t] = dz
        dh_next = dz @ w_hh  # to h⟨t−1⟩ through the recurrent matmul
        dc_next = dc * f  # to c⟨t−1⟩
    return _weight_grads(x, h_prev, dz_all, dz_all, w_ih, need_dx)


# -------------------------------------------------------------------------------------------- GRU


def gru_forward(x, w_ih, w_hh, b_ih, b_hh, reverse=False, keep=False):
    """One GRU layer (PyTorch's equations) over x (B, T, D); returns hs (B, T, H) and the cache."""
    batch, n_steps, _ = x.shape
    n_a = w_hh.shape[1]
    w_ih_t, w_hh_t = w_ih.T, w_hh.T
    h = np.zeros((batch, n_a), x.dtype)
    hs = np.empty((batch, n_steps, n_a), x.dtype)
    if keep:
        gates = np.empty((batch, n_steps, 3 * n_a), x.dtype)  # r, z, n after σ / tanh
        h_n = np.empty((batch, n_steps, n_a), x.dtype)  # W_hn h⟨t−1⟩ + b_hn
        h_prev = np.empty((batch, n_steps, n_a), x.dtype)
    for t in _steps(n_steps, reverse):
        gi = x[:, t] @ w_ih_t + b_ih  # input side of r, z, n
        gh = h @ w_hh_t + b_hh  # recurrent side of r, z, n
        r = _sigmoid(gi[:, :n_a] + gh[:, :n_a])  # reset gate
        z = _sigmoid(gi[:, n_a : 2 * n_a] + gh[:, n_a : 2 * n_a])  # update gate (keeps h⟨t−1⟩)
        n = np.tanh(gi[:, 2 * n_a :] + r * gh[:, 2 * n_a :])  # candidate
        if keep:
            h_prev[:, t] = h
            gates[:, t] = np.concatenate([r, z, n], axis=1)
            h_n[:, t] = gh[:, 2 * n_a :]
        h = (1 - z) * n + z * h  # h⟨t⟩
        hs[:, t] = h
    cache = (x, gates, h_n, h_prev) if keep else None
    return hs, cache


def gru_backward(dhs, cache, w_ih, w_hh, reverse=False, need_dx=True):
    """Gradients of one GRU layer given dL/dhs (B, T, H); returns (dx or None, weight grads)."""
    x, gates, h_n, h_prev = cache
    batch, n_steps, n_a = dhs.shape
    dgi_all = np.empty((batch, n_steps, 3 * n_a), dhs.dtype)
    dgh_all = np.empty((batch, n_steps, 3 * n_a), dhs.dtype)
    dh_next = np.zeros((batch, n_a), dhs.dtype)
    for t in _steps(n_steps, not reverse):
        r, z, n = np.split(gates[:, t], 3, axis=1)
        dh = dhs[:, t] + dh_next
        dn = dh * (1 - z) * (1 - n * n)  # through n = tanh(…), pre-activation
        dr = dn * h_n[:, t] * r * (1 - r)  # through r = σ(…)
        dz = dh * (h_prev[:, t] - n) * z * (1 - z)  # through z = σ(…)
        dgi_all[:, t] = np.concatenate([dr, dz, dn], axis=1)
        dgh = np.concatenate([dr, dz, dn * r], axis=1)
        dgh_all[:, t] = dgh
        dh_next = dh * z + dgh @ w_hh  # to h⟨t−1⟩: directly and through W_hh
    return _weight_grads(x, h_prev, dgi_all, dgh_all, w_ih, need_dx)


def _weight_grads(x, h_prev, dgi, dgh, w_ih, need_dx):
    """Weight and bias gradients as one matmul over all B·T steps, and dL/dx if wanted."""
    rows = dgi.shape[0] * dgi.shape[1]
    dgi_2d, dgh_2d = dgi.reshape(rows, -1), dgh.reshape(rows, -1)
    grads = {
        "weight_ih": dgi_2d.T @ x.reshape(rows, -1),
        "weight_hh": dgh_2d.T @ h_prev.reshape(rows, -1),
        "bias_ih": dgi_2d.sum(axis=0),
        "bias_hh": dgh_2d.sum(axis=0),
    }
    return (dgi @ w_ih if need_dx else None), grads


_LAYERS = {"lstm": (lstm_forward, lstm_backward), "gru": (gru_forward, gru_backward)}


# ----------------------------------------------------------------------------------------- model


def forward(model: Model, weights: dict, x: np.ndarray, keep: bool = False):
    """The whole (possibly deep, bidirectional) network: outputs (B, T, H·directions), caches."""
    layer_forward = _LAYERS[model.cell][0]
    caches = []
    for layer in range(model.layers):
        outputs = []
        for suffix, reverse in model.directions(layer):
            w = [weights[f"{name}{suffix}"] for name in _NAMES]
            hs, cache = layer_forward(x, *w, reverse=reverse, keep=keep)
            outputs.append(hs)
            caches.append(cache)
        x = outputs[0] if len(outputs) == 1 else np.concatenate(outputs, axis=-1)
    return x, caches


def backward(model: Model, weights: dict, caches: list, d_out: np.ndarray) -> dict:
    """Gradients of every weight (PyTorch names) given dL/d(outputs)."""
    layer_backward = _LAYERS[model.cell][1]
    grads = {}
    index = len(caches)
    for layer in reversed(range(model.layers)):
        directions = model.directions(layer)
        index -= len(directions)
        n_a = d_out.shape[-1] // len(directions)
        d_in = None
        for k, (suffix, reverse) in enumerate(directions):
            dx, layer_grads = layer_backward(
                d_out[..., k * n_a : (k + 1) * n_a],
                caches[index + k],
                weights[f"weight_ih{suffix}"],
                weights[f"weight_hh{suffix}"],
                reverse=reverse,
                need_dx=layer > 0,  # no gradient for the input sequence itself
            )
            grads.update({f"{name}{suffix}": g for name, g in layer_grads.items()})
            if dx is not None:
                d_in = dx if d_in is None else d_in + dx
        d_out = d_in
    return grads


_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def build(model: Model, weights: dict) -> Bench:
    weights = {k: np.ascontiguousarray(v, np.float32) for k, v in weights.items()}

    # With lengths, every step runs and the padded ones are masked.
    def run_forward(x):
        return model.masked(forward(model, weights, x)[0])

    def run_train(x):
        out, caches = forward(model, weights, x, keep=True)
        d_out = model.masked(np.ones_like(out))
        return model.masked(out).sum(), backward(model, weights, caches, d_out)

    return Bench(
        forward=run_forward,
        train=run_train,
        to_input=lambda x: np.ascontiguousarray(x, np.float32),
        output=np.asarray,
        grads=lambda result: result[1],
        sync=lambda result: None,
    )


IMPLS = {"numpy": Impl("numpy", build, note="float32 loop, hand-written BPTT; cl: masked")}


def setup(threads: int) -> dict:
    return {"numpy": np.__version__}


def gemm_rate(n: int = 2048, repeats: int = 5) -> float:
    """Best float32 matmul rate of numpy @ at n³, in GFLOP/s."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), np.float32) for _ in range(2))
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
