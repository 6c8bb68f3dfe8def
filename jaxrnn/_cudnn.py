"""cuDNN's LSTM for `jaxrnn.lstm` on a CUDA GPU, through ``jax.experimental.rnn``.

cuDNN runs a whole sequence of an LSTM, one direction or both, as one call forward and one
backward. It computes what ``jaxrnn.lstm()`` without peepholes computes: the same gates in the
same order (PyTorch's i, f, g, o, the course's u, f, c̃, o), a bias on each side. Its weights are
one flat array, in cuDNN's order for one layer: each direction's W_ih (4H, D) and W_hh (4H, H)
row-major, then each direction's b_ih and b_hh (4H,) — jaxrnn's ``w_x`` and ``w_h`` transposed,
``b_x`` and ``b_h`` as they are.

`lstm` adds what jaxrnn's unroll promises and cuDNN's call does not: ``jax.vmap`` (one call per
mapped element, as the native kernels' backward calls run), an example of length 0 (cuDNN reads
at least one step), ``reverse`` within each example's own length for a single direction, and
zeros at padded steps whatever cuDNN leaves there. `jaxrnn.kernels` decides when to use it; the
``lax.scan`` of the cell's step stays the definition, and tests/test_cudnn.py checks this wrapper
against it through JAX's own reference implementation of cuDNN's call.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxrnn._checks import without_derivative


def available() -> bool:
    """Whether JAX's default backend is a CUDA GPU, where ``jax.experimental.rnn`` lowers to
    cuDNN (a ROCm GPU, also "gpu" to JAX, orders the LSTM's gates otherwise)."""
    if jax.default_backend() != "gpu":
        return False
    try:
        return bool(jax.devices("cuda"))
    except RuntimeError:  # a GPU backend other than CUDA
        return False


def placement_misfit(**trees) -> str | None:
    """Why arrays that would run on cuDNN are not placed on the GPU although it is JAX's default
    backend (``jax.default_device`` set to another device, or arrays put on one), or None. A
    traced array's placement is not known: the default backend's is assumed."""
    device = jax.config.jax_default_device  # a Device, a platform's name, or None
    if device is not None and getattr(device, "platform", device) != "gpu":
        return f"it runs on a CUDA GPU, and jax.default_device is {device}"
    for name, tree in trees.items():
        for leaf in jax.tree.leaves(tree):
            if isinstance(leaf, jax.Array) and not isinstance(leaf, jax.core.Tracer):
                platforms = sorted({d.platform for d in leaf.devices()})
                if platforms != ["gpu"]:
                    return f"it runs on a CUDA GPU, and {name} lies on {', '.join(platforms)}"
    return None


# The settings of jax.default_matmul_precision that ask for float32 products or better: cuDNN
# then multiplies in float32. Every other setting, None included, lets it use TensorFloat-32 (as
# XLA's float32 products do by default on a GPU): faster than float32, and more precise than the
# bfloat16 or float16 products those settings ask for, which cuDNN's LSTM does not offer.
_FULL_FLOAT32 = frozenset(
    {
        "highest",
        "float32",
        "F32_F32_F32",
        "F64_F64_F64",
        "TF32_TF32_F32_X3",
        "BF16_BF16_F32_X3",
        "BF16_BF16_F32_X6",
        "BF16_BF16_F32_X9",
    }
)


def math_precision(setting: str | None) -> str:
    """cuDNN's math for a ``jax.default_matmul_precision`` setting (a name or None), as
    ``jax.experimental.rnn`` takes it: "highest" (float32) or "high" (TensorFloat-32)."""
    return "highest" if setting in _FULL_FLOAT32 else "high"


def _rnn_calls():
    """``jax.experimental.rnn``'s forward and backward calls: ``lstm_fwd(x, h_0, c_0, weights,
    seq_lengths, *sizes, precision)`` to ((y, h_n, c_n), residuals), and ``lstm_bwd(*sizes,
    precision, residuals, (d_y, d_h_n, d_c_n))`` to (d_x, d_h_0, d_c_0, d_weights, _)."""
    from jax.experimental import rnn

    return rnn.lstm_fwd, rnn.lstm_bwd


def flat_weights(*directions):
    """jaxrnn's LSTM weights of one layer, (w_x (D, 4H), w_h (H, 4H), b_x (4H,), b_h (4H,)) for
    each direction (the forward one first), as cuDNN's flat array: every direction's w_xᵀ and
    w_hᵀ, then every direction's b_x and b_h; ((D + H) · 4H + 8H,) a direction."""
    weights = [w.T.ravel() for w_x, w_h, _, _ in directions for w in (w_x, w_h)]
    return jnp.concatenate(weights + [b for _, _, b_x, b_h in directions for b in (b_x, b_h)])


def _one_by_one(call):
    """``call(*args)`` (pytrees of arrays) with a vmap rule that calls it once per mapped element
    (``lax.map``), the unmapped arrays broadcast: cuDNN's calls have no batching rule of their
    own. Every result is mapped."""

    @jax.custom_batching.custom_vmap
    def mapped_call(*args):
        return call(*args)

    @mapped_call.def_vmap
    def rule(axis_size, in_batched, *args):
        def member_axis(a, batched):
            return a if batched else jnp.broadcast_to(a, (axis_size, *a.shape))

        members = jax.tree.map(member_axis, list(args), list(in_batched))
        results = jax.lax.map(lambda member: mapped_call(*member), members)
        return results, jax.tree.map(lambda _: True, results)

    return mapped_call


@functools.cache
def _forward(sizes: tuple[int, int], both_ways: bool, precision):
    input_size, hidden_size = sizes

    def call(x, h_0, c_0, weights, seq_lengths):
        lstm_fwd, _ = _rnn_calls()
        return lstm_fwd(
            x, h_0, c_0, weights, seq_lengths, input_size, hidden_size, 1, 0.0, both_ways, precision
        )

    return _without_derivative(_one_by_one(call))


@functools.cache
def _backward(sizes: tuple[int, int], both_ways: bool, precision):
    input_size, hidden_size = sizes

    def call(residuals, cotangents):
        _, lstm_bwd = _rnn_calls()
        return lstm_bwd(
            input_size, hidden_size, 1, 0.0, both_ways, precision, residuals, cotangents
        )

    return _without_derivative(_one_by_one(call))


def _without_derivative(call):
    return without_derivative(call, "cuDNN's LSTM backward pass")


# One layer, one direction or both (``both_ways``): h0 and c0 (directions, B, H), ys (B, T,
# directions · H), the reverse direction's half read backwards within each length by cuDNN.
@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7))
def _cudnn_lstm(weights, xs, h0, c0, seq_lengths, sizes, both_ways, precision):
    (ys, h, c), _ = _forward(sizes, both_ways, precision)(xs, h0, c0, weights, seq_lengths)
    return ys, h, c


def _cudnn_lstm_forward(weights, xs, h0, c0, seq_lengths, sizes, both_ways, precision):
    return _forward(sizes, both_ways, precision)(xs, h0, c0, weights, seq_lengths)


def _cudnn_lstm_backward(sizes, both_ways, precision, residuals, cotangents):
    d_xs, d_h0, d_c0, d_weights, _ = _backward(sizes, both_ways, precision)(residuals, cotangents)
    return d_weights, d_xs, d_h0, d_c0, None


_cudnn_lstm.defvjp(_cudnn_lstm_forward, _cudnn_lstm_backward)


def lstm(directions, xs, h0, c0, lengths, *, reverse: bool = False, precision=None):
    """``jaxrnn.lstm()``'s unroll by cuDNN, one direction or a bidirectional layer in one call:
    ``directions`` one or two (w_x (D, 4H), w_h (H, 4H), b_x (4H,), b_h (4H,)), the forward one
    first; xs (B, T, D), h0 and c0 (directions, B, H), all float32, lengths (B,) int32 in [0, T].
    Returns (ys, a tuple of one (B, T, H) per direction, h and c (directions, B, H)). An example's
    steps from its length on are not run: its carry is kept and its outputs are zero. A second
    direction reads each example's steps backwards within its length, as cuDNN's bidirectional
    LSTM does; ``reverse`` does the same for a single one. Outputs stay aligned with xs.
    ``precision``: a ``jax.default_matmul_precision`` setting, or None (see `math_precision`).
    B, T ≥ 1."""
    n_steps, hidden = xs.shape[1], h0.shape[-1]
    if reverse:
        # Step t of example b reads step L_b − 1 − t of its own: the padded steps stay where they
        # are, and the permutation is its own inverse.
        t = jnp.arange(n_steps)[None, :]
        order = jnp.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
        xs = jnp.take_along_axis(xs, order[..., None], axis=1)
    # cuDNN reads at least one step of every example: one of length 0 reads one, and keeps its
    # initial carry below.
    ys, h, c = _cudnn_lstm(
        flat_weights(*directions),
        xs,
        h0,
        c0,
        jnp.maximum(lengths, 1).astype(jnp.int32),
        (xs.shape[-1], hidden),
        len(directions) == 2,
        math_precision(precision),
    )
    empty = (lengths == 0)[None, :, None]
    h, c = jnp.where(empty, h0, h), jnp.where(empty, c0, c)
    ys = jnp.where((jnp.arange(n_steps)[None, :] < lengths[:, None])[..., None], ys, 0.0)
    if reverse:
        ys = jnp.take_along_axis(ys, order[..., None], axis=1)
    return tuple(ys[..., k * hidden : (k + 1) * hidden] for k in range(len(directions))), h, c
