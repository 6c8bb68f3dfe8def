"""The benchmark suite's JAX implementations: jaxrnn's variants, flax linen, equinox and, on a GPU,
cuDNN's LSTM through ``jax.experimental.rnn``.

Every implementation starts from the same weights in PyTorch's layout and is checked against
PyTorch before it is timed. jaxrnn's variants get their params from `jaxrnn.interop`, and their
gradients go back through `jaxrnn.interop.params_to_torch`, so a new variant only has to say how it
runs the model. To time one, add a line to ``JAXRNN_VARIANTS``, e.g.::

    "jaxrnn hoisted": Variant(functools.partial(jaxrnn_forward, implementation="hoisted")),
    "jaxrnn my lstm": Variant(functools.partial(jaxrnn_forward, cells={"lstm": my_lstm()}),
                              kinds=("lstm",)),

A variant's ``forward(model, params, xs) -> ys`` gets the `Model` (cell, layers, bidirectional),
params as `jaxrnn.interop` builds them (`LSTMParams` / `GRUParams` for one layer, `StackedParams`
of `BidirectionalParams` for "bi") and xs (B, T, D); it returns all outputs (B, T, H·directions).
A variant that wants another parameter layout can build it from these params inside ``forward``:
it is then part of the compiled function, and its gradients still come back in jaxrnn's layout.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import jaxrnn
from benchmarks.matmul_rate import jax_gemm_rate
from benchmarks.suite_types import Bench, Impl, Model

CELLS = {"lstm": jaxrnn.lstm(), "gru": jaxrnn.gru(reset="after")}  # PyTorch's two cells
_FROM_TORCH = {
    "lstm": jaxrnn.interop.lstm_params_from_torch,
    "gru": jaxrnn.interop.gru_params_from_torch,
}
_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


# ------------------------------------------------------------------------------ jaxrnn variants


def jaxrnn_forward(model: Model, params, xs, *, cells=CELLS, **unroll_options):
    """`jaxrnn.unroll` for one layer (with ``lengths`` for a right-padded batch), `jaxrnn.stacked`
    for deep or bidirectional models."""
    cell = cells[model.cell]
    if isinstance(params, jaxrnn.StackedParams):
        return jaxrnn.stacked(cell, params, xs, **unroll_options)[1]
    if model.lengths is not None:
        unroll_options["lengths"] = jnp.asarray(model.lengths)
    return jaxrnn.unroll(cell, params, xs, **unroll_options)[1]


def eager_forward(model: Model, params, xs, *, cells=CELLS):
    """A Python loop over time calling the cell's step, op by op (meant to run without jit)."""
    cell = cells[model.cell]

    def run(params, xs, reverse):
        carry = cell.init_carry(params, xs.shape[:1])
        ys = [None] * xs.shape[1]
        for t in reversed(range(xs.shape[1])) if reverse else range(xs.shape[1]):
            carry, ys[t] = cell.step(params, carry, xs[:, t])
        return jnp.stack(ys, axis=1)

    if not isinstance(params, jaxrnn.StackedParams):
        return model.masked(run(params, xs, False))  # every step run, the padded ones masked
    for layer in params.layers:
        if isinstance(layer, jaxrnn.BidirectionalParams):
            xs = jnp.concatenate([run(layer.forward, xs, False), run(layer.backward, xs, True)], -1)
        else:
            xs = run(layer, xs, False)
    return xs


class Variant(NamedTuple):
    """How a jaxrnn variant runs: ``forward(model, params, xs) -> ys``, jitted or not."""

    forward: Callable
    jit: bool = True  # under jax.jit / jax.jit(jax.value_and_grad); False runs op by op
    kinds: tuple[str, ...] = ("lstm", "gru")  # the cells it implements ("bi" is an lstm)
    note: str = ""


JAXRNN_VARIANTS = {
    "jaxrnn": Variant(
        jaxrnn_forward, note="jaxrnn.unroll / jaxrnn.stacked under jax.jit; cl: lengths="
    ),
    "jaxrnn eager": Variant(
        eager_forward, jit=False, note="Python loop over cell.step, no jit; cl: masked"
    ),
    # The LSTM's XLA path, where the default is the native kernel (jaxrnn/_native) on a CPU and
    # cuDNN's LSTM (jaxrnn/_cudnn) on a CUDA GPU.
    "jaxrnn fused (XLA)": Variant(
        functools.partial(jaxrnn_forward, implementation="fused"),
        kinds=("lstm",),
        note='implementation="fused": the scan with its own backward pass, all in XLA',
    ),
    # The GRU has no fused kernel, so for it this would time the default again.
    "jaxrnn autodiff backward": Variant(
        functools.partial(jaxrnn_forward, implementation="scan"),
        kinds=("lstm",),
        note='implementation="scan": autodiff of lax.scan instead of the fused backward pass',
    ),
}


def jaxrnn_params(model: Model, weights: dict):
    """jaxrnn params from PyTorch-layout weights, for `jaxrnn.unroll` or `jaxrnn.stacked`."""
    convert = _FROM_TORCH[model.cell]
    if model.single_layer:
        return convert(weights)
    layers = []
    for layer in range(model.layers):
        if model.bidirectional:
            layers.append(
                jaxrnn.BidirectionalParams(
                    convert(weights, layer), convert(weights, layer, reverse=True)
                )
            )
        else:
            layers.append(convert(weights, layer))
    return jaxrnn.StackedParams(tuple(layers))


def jaxrnn_grads(grads) -> dict:
    """Gradients in jaxrnn's layout back to PyTorch's names (the GRU's z rows negated back)."""
    if not isinstance(grads, jaxrnn.StackedParams):
        return jaxrnn.interop.params_to_torch(grads)
    out = {}
    for layer, g in enumerate(grads.layers):
        if isinstance(g, jaxrnn.BidirectionalParams):
            out.update(jaxrnn.interop.params_to_torch(g.forward, layer))
            out.update(jaxrnn.interop.params_to_torch(g.backward, layer, reverse=True))
        else:
            out.update(jaxrnn.interop.params_to_torch(g, layer))
    return out


def _to_device(x: np.ndarray) -> jax.Array:
    return jax.device_put(x)


def _jax_bench(forward: Callable, train: Callable, params, grads: Callable) -> Bench:
    """The Bench of ``forward(params, x)`` and ``train(params, x)``, functions of JAX arrays;
    ``grads(train's result)`` gives the gradients by PyTorch parameter name."""
    return Bench(
        forward=lambda x: forward(params, x),
        train=lambda x: train(params, x),
        to_input=_to_device,
        output=np.asarray,
        grads=grads,
        sync=jax.block_until_ready,
    )


def _build_variant(variant: Variant, model: Model, weights: dict) -> Bench:
    params = jaxrnn_params(model, weights)

    def forward(params, xs):
        return variant.forward(model, params, xs)

    def loss(params, xs):
        return forward(params, xs).sum()

    value_and_grad = jax.value_and_grad(loss)
    if variant.jit:
        forward, value_and_grad = jax.jit(forward), jax.jit(value_and_grad)
    return _jax_bench(forward, value_and_grad, params, lambda result: jaxrnn_grads(result[1]))


# ------------------------------------------------------------------------------------------ flax
#
# flax's LSTMCell and OptimizedLSTMCell have per-gate Dense layers ii, if, ig, io (kernels (D, H),
# no bias) and hi, hf, hg, ho (kernels (H, H) with bias); carry (c, h); gates i, f, g, o as in
# PyTorch. One bias per gate, so it gets b_ih + b_hh. flax's GRUCell has ir, iz, in (with bias)
# and hr, hz (no bias), hn (with bias):
#     r = σ(W_ir x + b_ir + W_hr h),  z = σ(W_iz x + b_iz + W_hz h)
#     n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),  h' = (1 − z) n + z h
# which is PyTorch's GRU with b_ir = b_ir + b_hr and b_iz = b_iz + b_hz: the same function.

_FLAX_CELLS = {"optimized": nn.OptimizedLSTMCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}


def _flax_cell_params(kind: str, w_ih, w_hh, b_ih, b_hh) -> dict:
    n_a = w_hh.shape[1]

    def rows(a, k):
        return a[k * n_a : (k + 1) * n_a]

    params = {}
    if kind == "gru":
        for k, gate in enumerate("rzn"):
            params[f"i{gate}"] = {"kernel": rows(w_ih, k).T, "bias": rows(b_ih, k)}
            params[f"h{gate}"] = {"kernel": rows(w_hh, k).T}
        params["ir"]["bias"] = rows(b_ih, 0) + rows(b_hh, 0)
        params["iz"]["bias"] = rows(b_ih, 1) + rows(b_hh, 1)
        params["hn"]["bias"] = rows(b_hh, 2)
    else:
        for k, gate in enumerate("ifgo"):
            params[f"i{gate}"] = {"kernel": rows(w_ih, k).T}
            params[f"h{gate}"] = {"kernel": rows(w_hh, k).T, "bias": rows(b_ih + b_hh, k)}
    return jax.tree.map(jnp.asarray, params)


def _flax_cell_grads(kind: str, g: dict) -> tuple:
    """(dW_ih, dW_hh, db_ih, db_hh) in PyTorch's layout; a summed bias feeds both of its parts."""
    if kind == "gru":
        w_ih = np.concatenate([np.asarray(g[f"i{gate}"]["kernel"]).T for gate in "rzn"])
        w_hh = np.concatenate([np.asarray(g[f"h{gate}"]["kernel"]).T for gate in "rzn"])
        b_ih = np.concatenate([np.asarray(g[f"i{gate}"]["bias"]) for gate in "rzn"])
        b_hh = np.concatenate(
            [np.asarray(g["ir"]["bias"]), np.asarray(g["iz"]["bias"]), np.asarray(g["hn"]["bias"])]
        )
        return w_ih, w_hh, b_ih, b_hh
    w_ih = np.concatenate([np.asarray(g[f"i{gate}"]["kernel"]).T for gate in "ifgo"])
    w_hh = np.concatenate([np.asarray(g[f"h{gate}"]["kernel"]).T for gate in "ifgo"])
    b = np.concatenate([np.asarray(g[f"h{gate}"]["bias"]) for gate in "ifgo"])
    return w_ih, w_hh, b, b


class _FlaxStack(nn.Module):
    """Layers of ``nn.RNN`` (``nn.Bidirectional`` pairs), cells named like PyTorch's suffixes."""

    kind: str
    hidden_size: int
    layers: int
    bidirectional: bool

    @nn.compact
    def __call__(self, xs):
        model = Model("lstm", self.layers, self.bidirectional)
        for layer in range(self.layers):
            rnns = [
                nn.RNN(_FLAX_CELLS[self.kind](self.hidden_size, name=suffix[1:]))
                for suffix, _ in model.directions(layer)
            ]
            xs = nn.Bidirectional(*rnns)(xs) if self.bidirectional else rnns[0](xs)
        return xs


def _build_flax(kind: str, model: Model, weights: dict) -> Bench:
    input_size, hidden_size = weights["weight_ih_l0"].shape[1], weights["weight_hh_l0"].shape[1]
    if model.single_layer:
        module = nn.RNN(_FLAX_CELLS[kind](hidden_size))
        where = {"_l0": "cell"}
    else:
        module = _FlaxStack(kind, hidden_size, model.layers, model.bidirectional)
        where = {s: s[1:] for layer in range(model.layers) for s, _ in model.directions(layer)}
    params = {
        key: _flax_cell_params(kind, *(weights[name + suffix] for name in _NAMES))
        for suffix, key in where.items()
    }
    expected = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 1, input_size)))
    shapes = jax.tree.map(jnp.shape, expected["params"])
    if shapes != jax.tree.map(jnp.shape, params):
        raise ValueError(f"flax params {shapes} differ from the ones built here")

    lengths = None if model.lengths is None else jnp.asarray(model.lengths)

    def forward(params, xs):
        if lengths is None:
            return module.apply({"params": params}, xs)
        # nn.RNN's seq_lengths freezes the carry; its outputs past the end are not defined
        return model.masked(module.apply({"params": params}, xs, seq_lengths=lengths))

    def loss(params, xs):
        return forward(params, xs).sum()

    forward_jit, train_jit = jax.jit(forward), jax.jit(jax.value_and_grad(loss))

    def grads(result):
        out = {}
        for suffix, key in where.items():
            for name, g in zip(_NAMES, _flax_cell_grads(kind, result[1][key]), strict=True):
                out[name + suffix] = g
        return out

    return _jax_bench(forward_jit, train_jit, params, grads)


# --------------------------------------------------------------------------- jax.experimental.rnn
#
# jax.experimental.rnn.lstm is cuDNN's LSTM called from JAX, on a GPU only. Its weights are one
# flat array in cuDNN's order: for each layer, and in it each direction (the reverse one second),
# W_ih (4H, in) and W_hh (4H, H) row-major; then, in the same order, every b_ih and b_hh (4H,).
# The gates are PyTorch's, i, f, g, o, so PyTorch's tensors are the blocks as they are.


def cudnn_blocks(model: Model, weights: dict) -> list[tuple[str, tuple[int, ...]]]:
    """(PyTorch parameter name, shape) of each block of cuDNN's flat LSTM weights, in order."""
    suffixes = [s for layer in range(model.layers) for s, _ in model.directions(layer)]
    order = [k + s for s in suffixes for k in ("weight_ih", "weight_hh")]
    order += [k + s for s in suffixes for k in ("bias_ih", "bias_hh")]
    return [(name, tuple(weights[name].shape)) for name in order]


def build_jax_rnn(model: Model, weights: dict, lstm: Callable | None = None) -> Bench:
    """`jax.experimental.rnn.lstm` (or ``lstm``, a function of the same arguments) on the flat
    weights, with every sequence's length (``model.lengths`` or T)."""
    if lstm is None:
        from jax.experimental import rnn

        lstm = rnn.lstm
    blocks = cudnn_blocks(model, weights)
    flat = jnp.concatenate([jnp.asarray(weights[name]).ravel() for name, _ in blocks])
    input_size, hidden_size = weights["weight_ih_l0"].shape[1], weights["weight_hh_l0"].shape[1]
    stacked = model.layers * (2 if model.bidirectional else 1)

    def forward(flat, xs):
        zeros = jnp.zeros((stacked, xs.shape[0], hidden_size), xs.dtype)
        if model.lengths is None:
            lengths = jnp.full((xs.shape[0],), xs.shape[1], jnp.int32)
        else:
            lengths = jnp.asarray(model.lengths, jnp.int32)
        ys, _, _ = lstm(
            xs,
            zeros,
            zeros,
            flat,
            lengths,
            input_size,
            hidden_size,
            model.layers,
            0.0,
            model.bidirectional,
        )
        return model.masked(ys)

    def loss(flat, xs):
        return forward(flat, xs).sum()

    forward_jit, train_jit = jax.jit(forward), jax.jit(jax.value_and_grad(loss))

    def grads(result):
        flat_grads, out, offset = np.asarray(result[1]), {}, 0
        for name, shape in blocks:
            size = int(np.prod(shape))
            out[name] = flat_grads[offset : offset + size].reshape(shape)
            offset += size
        return out

    return _jax_bench(forward_jit, train_jit, flat, grads)


# --------------------------------------------------------------------------------------- equinox
#
# eqx.nn.LSTMCell: weight_ih (4H, D), weight_hh (4H, H), one bias (4H,) = b_ih + b_hh, gates
# i, f, g, o, state (h, c). eqx.nn.GRUCell: weight_ih (3H, D), weight_hh (3H, H), bias (3H,) added
# to the input side, bias_n (H,) inside r * (W_hn h + bias_n), h' = n + z (h − n): PyTorch's GRU
# with bias = b_ih + [b_hr, b_hz, 0] and bias_n = b_hn.


def _equinox_cell(model: Model, w_ih, w_hh, b_ih, b_hh):
    n_a = w_hh.shape[1]
    key = jax.random.key(0)
    if model.cell == "lstm":
        cell = eqx.nn.LSTMCell(w_ih.shape[1], n_a, key=key)
        new = (w_ih, w_hh, b_ih + b_hh)
        return eqx.tree_at(lambda c: (c.weight_ih, c.weight_hh, c.bias), cell, new)
    cell = eqx.nn.GRUCell(w_ih.shape[1], n_a, key=key)
    bias = b_ih + np.concatenate([b_hh[: 2 * n_a], np.zeros(n_a, b_hh.dtype)])
    new = (w_ih, w_hh, bias, b_hh[2 * n_a :])
    return eqx.tree_at(lambda c: (c.weight_ih, c.weight_hh, c.bias, c.bias_n), cell, new)


def _equinox_grads(model: Model, g) -> tuple:
    if model.cell == "lstm":
        return g.weight_ih, g.weight_hh, g.bias, g.bias
    n_a = g.weight_hh.shape[1]
    return g.weight_ih, g.weight_hh, g.bias, jnp.concatenate([g.bias[: 2 * n_a], g.bias_n])


def _build_equinox(model: Model, weights: dict) -> Bench:
    net = tuple(
        tuple(
            _equinox_cell(model, *(jnp.asarray(weights[name + suffix]) for name in _NAMES))
            for suffix, _ in model.directions(layer)
        )
        for layer in range(model.layers)
    )

    def run(cell, xs, reverse):
        n_a = cell.hidden_size
        zeros = jnp.zeros((xs.shape[0], n_a), xs.dtype)
        carry = (zeros, zeros) if model.cell == "lstm" else zeros

        def step(carry, x):
            carry = jax.vmap(cell)(x, carry)
            return carry, carry[0] if model.cell == "lstm" else carry

        _, hs = jax.lax.scan(step, carry, jnp.swapaxes(xs, 0, 1), reverse=reverse)
        return jnp.swapaxes(hs, 0, 1)

    def forward(net, xs):
        for layer, cells in enumerate(net):
            directions = model.directions(layer)
            ys = [run(cell, xs, rev) for cell, (_, rev) in zip(cells, directions, strict=True)]
            xs = ys[0] if len(ys) == 1 else jnp.concatenate(ys, axis=-1)
        return model.masked(xs)  # no lengths in equinox: every step run, the padded ones masked

    def loss(net, xs):
        return forward(net, xs).sum()

    forward_jit = eqx.filter_jit(forward)
    train_jit = eqx.filter_jit(eqx.filter_value_and_grad(loss))

    def grads(result):
        out = {}
        for layer, cells in enumerate(result[1]):
            for g, (suffix, _) in zip(cells, model.directions(layer), strict=True):
                for name, a in zip(_NAMES, _equinox_grads(model, g), strict=True):
                    out[name + suffix] = np.asarray(a)
        return out

    return _jax_bench(forward_jit, train_jit, net, grads)


# -------------------------------------------------------------------------------------- registry


def _lstm_only(model: Model) -> bool:
    return model.cell == "lstm"


def _gru_only(model: Model) -> bool:
    return model.cell == "gru"


IMPLS = {
    **{
        name: Impl(
            "jaxrnn",
            functools.partial(_build_variant, variant),
            peer=False,
            supports=lambda model, kinds=variant.kinds: model.cell in kinds,
            capped=not variant.jit,
            note=variant.note,
        )
        for name, variant in JAXRNN_VARIANTS.items()
    },
    "flax OptimizedLSTMCell": Impl(
        "flax",
        functools.partial(_build_flax, "optimized"),
        supports=_lstm_only,
        note="nn.RNN(nn.OptimizedLSTMCell); bi: nn.Bidirectional; cl: seq_lengths",
    ),
    "flax LSTMCell": Impl(
        "flax",
        functools.partial(_build_flax, "lstm"),
        supports=_lstm_only,
        note="nn.RNN(nn.LSTMCell); bi: nn.Bidirectional; cl: seq_lengths",
    ),
    "flax GRUCell": Impl(
        "flax",
        functools.partial(_build_flax, "gru"),
        supports=_gru_only,
        note="nn.RNN(nn.GRUCell), biases merged; cl: seq_lengths",
    ),
    "jax.experimental.rnn": Impl(
        "jax",
        build_jax_rnn,
        supports=lambda model: model.cell == "lstm" and jax.default_backend() == "gpu",
        note="cuDNN's LSTM from JAX, flat weights; GPU only; cl: seq_lengths",
    ),
    "equinox": Impl(
        "equinox",
        _build_equinox,
        note="jax.vmap(eqx.nn.*Cell) in lax.scan, eqx.filter_jit; cl: masked",
    ),
}


def setup(threads: int) -> dict:
    device = jax.devices()[0]
    return {"jax_backend": jax.default_backend(), "jax_device": device.device_kind}


gemm_rate = jax_gemm_rate  # the suite's worker reads each module's gemm_rate
