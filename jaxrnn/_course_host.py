"""The course's character model, `optimize`'s step and `sample`'s loop, in numpy.

`jaxrnn.course` runs these for the calls that come while XLA compiles its programs in the
background (compiling takes longer than the course's whole numpy loop over a thousand names), and
the compiled programs from then on. Both compute the same function on the same packed arguments,
to float rounding (tests/test_course.py checks it), and draw the same characters: a draw uses
integer arithmetic only (Threefry-2x32 of the key and the step) up to one uniform number, so
the two differ only where that number falls within rounding of a boundary of the cumulative
distribution.
"""

from __future__ import annotations

import numpy as np

_MASK = 0xFFFFFFFF
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def threefry2x32(key: tuple, count: tuple) -> tuple:
    """Threefry-2x32 with 20 rounds (Salmon et al., 2011), on Python ints or elementwise on
    uint32 arrays (numpy or jax: a compiled program computes many blocks in one fused loop).

    The same words as ``jax.extend.random.threefry_2x32(key, [count[0], count[1]])``.
    """
    k0, k1 = key
    wrap = (lambda v: v & _MASK) if isinstance(k0, int) else (lambda v: v)  # uint32 wraps itself
    keys = (k0, k1, k0 ^ k1 ^ 0x1BD11BDA)
    x0, x1 = wrap(count[0] + k0), wrap(count[1] + k1)
    for block in range(5):
        for r in _ROTATIONS[block % 2]:
            x0 = wrap(x0 + x1)
            x1 = wrap((x1 << r) | (x1 >> (32 - r)))
            x1 ^= x0
        x0 = wrap(x0 + keys[(block + 1) % 3])
        x1 = wrap(x1 + keys[(block + 2) % 3] + block + 1)
    return x0, x1


def uniform(words: tuple[int, int], dtype: np.dtype) -> float:
    """A number in [0, 1) from two random words: 53 of their bits for float64, 24 otherwise."""
    if np.dtype(dtype) == np.float64:
        return ((words[0] >> 5) * 2.0**26 + (words[1] >> 6)) / 2.0**53
    return (words[0] >> 8) / 2.0**24


def draw_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype a draw computes its probabilities in: the parameters', at least float32."""
    return np.promote_types(dtype, np.float32)


def unpack(floats, layout: dict[str, tuple[int, int]]):
    """Packed floats -> (the parameters by name, in the shapes of layout; what follows them).

    Slices and reshapes only, so it serves numpy arrays here and traced jax arrays in the
    compiled programs of `jaxrnn.course` alike.
    """
    out, start = {}, 0
    for key, shape in layout.items():
        stop = start + shape[0] * shape[1]
        out[key] = floats[start:stop].reshape(shape)
        start = stop
    return out, floats[start:]


def char_step(floats: np.ndarray, ints: np.ndarray, layout: dict, order: tuple) -> np.ndarray:
    """`jaxrnn.course._char_step` in numpy: the same packed arguments and result.

    Written for the few microseconds each numpy call costs at these sizes: only the recurrences
    loop over time (one matrix-vector product and a few vector operations a step), everything
    else is one call over all steps, and the clipping and the update act on all parameters at
    once, raveled.
    """
    p, rest = unpack(floats, layout)
    n_a, n_x = p["Wax"].shape
    n_params = floats.shape[0] - n_a - 1
    a_prev, learning_rate = rest[:n_a], rest[n_a]
    padded = (ints.shape[0] - 1) // 2
    length = int(ints[-1])
    ids, targets = ints[:length], ints[padded : padded + length]
    rows = np.arange(length)
    x = np.zeros((length, n_x), floats.dtype)
    x[rows, ids] = ids >= 0  # id −1: a row of zeros (the last column is set to False)
    a = x @ p["Wax"].T + p["b"][:, 0]  # Wax x⟨t⟩ + b for every t, then a⟨t⟩ in place
    w_aa_t = p["Waa"].T
    np.tanh(a[0] + a_prev @ w_aa_t, out=a[0])
    for t in range(1, length):
        np.tanh(a[t] + a[t - 1] @ w_aa_t, out=a[t])
    logits = a @ p["Wya"].T + p["by"][:, 0]
    logits -= logits.max(axis=1, keepdims=True)
    dy = np.exp(logits)
    totals = dy.sum(axis=1, keepdims=True)
    loss = np.log(totals).sum() - logits[rows, targets].sum()
    dy /= totals
    dy[rows, targets] -= 1.0
    dz = dy @ p["Wya"]  # Wyaᵀ dy⟨t⟩, then dz⟨t⟩ in place
    slope = 1.0 - a * a
    w_aa = p["Waa"]
    dz[-1] *= slope[-1]
    for t in range(length - 2, -1, -1):
        dz[t] += dz[t + 1] @ w_aa
        dz[t] *= slope[t]
    a_before = np.concatenate([a_prev[None], a[:-1]])
    grads = {
        "Wax": dz.T @ x,
        "Waa": dz.T @ a_before,
        "Wya": dy.T @ a,
        "b": dz.sum(axis=0),
        "by": dy.sum(axis=0),
    }
    clipped = np.concatenate([grads[key].ravel() for key in order])
    np.clip(clipped, -5.0, 5.0, out=clipped)
    updated = floats[:n_params] - learning_rate * clipped
    return np.concatenate([[loss], a[-1], clipped, updated], dtype=floats.dtype)


def char_sample(floats: np.ndarray, ints: np.ndarray, layout: dict, max_len: int) -> np.ndarray:
    """`jaxrnn.course._char_sample` in numpy: the same packed arguments and result."""
    p, _ = unpack(floats, layout)
    key, newline = (int(ints[0]), int(ints[1])), int(ints[2])
    dtype = draw_dtype(floats.dtype)
    w_ax, w_aa_t, w_ya_t = p["Wax"], p["Waa"].T, p["Wya"].T
    b, by = p["b"][:, 0], p["by"][:, 0]
    state = np.zeros(w_aa_t.shape[0], floats.dtype)
    ids = np.zeros(1 + max_len, np.int32)
    last, t = -1, 0
    while t < max_len and last != newline:
        x_in = w_ax[:, last] if last >= 0 else 0.0
        state = np.tanh(x_in + state @ w_aa_t + b)
        logits = (state @ w_ya_t + by).astype(dtype)
        weights = np.exp(logits - logits.max())
        cdf = np.cumsum(weights / weights.sum())
        u = uniform(threefry2x32(key, (t, 0)), dtype)
        last = min(int(np.count_nonzero(cdf <= u * cdf[-1])), cdf.shape[0] - 1)
        t += 1
        ids[t] = last
    ids[0] = t
    return ids
