"""The native kernels: a whole sequence, forward and backward, as two XLA:CPU FFI calls each.

``lstm.cc`` runs what ``jaxrnn.lstm()`` (peepholes or none), ``jaxrnn.rnn()`` (tanh or relu) and
``jaxrnn.simplified_gru()`` compute over a batch-major sequence, ``gru.cc`` what
``jaxrnn.gru(reset="after")`` does and ``gru_before.cc`` what ``jaxrnn.gru()`` (the reset before
the candidate's product) does, with oneDNN's matrix products on weights packed once per call.
Where the CPU lacks AVX-512 the steps of more than four sequences multiply with a product of the
kernels' own instead, over weights they pack once per call (oneDNN's there packs them again at
every step); ``JAXRNN_STEP_PRODUCTS=own`` or ``onednn`` chooses either on any CPU, read at each
call. A call's threads share either every step's units (a team that meets after each step) or
the examples (each thread runs a block of them alone, as a call of its own), as the cell, the
batch and the size of the weights suit; ``JAXRNN_THREADS_SHARE=units`` or ``examples`` chooses
either, read at each call. A team runs 32 to 63 sequences in two groups of rows, each member
waiting only for the others' units of the group it multiplies next; ``JAXRNN_ROW_GROUPS=1`` or
``2`` chooses, read at each call. Where a team's inputs are at least twice as wide as its carry
(a bidirectional stack's upper layers), with 256 units or more and at most 32 sequences, the
input side of every step is one product before the steps, which then multiply only the carry;
``JAXRNN_INPUT_SIDE=steps`` or ``before`` chooses, read at each call. A bidirectional LSTM
layer's two directions are one call (`lstm_both_ways`), which runs them at once, a thread each,
where the weights a step reads fit in a core's share of L2, else one after the other with the
whole team; ``JAXRNN_BOTH_WAYS=in_turn`` or ``at_once`` chooses, read at each call. The first
call after a pause first spreads its team's threads over free cores, where a woken thread would
otherwise share the core of the one that woke it; ``JAXRNN_SPREAD_TEAM=off`` or ``on`` chooses,
read at each call. A call of under 4 million floating-point operations of products runs alone on the
thread that makes it, where handing it to the kernels' worker thread and starting a team would
cost more than its products; ``JAXRNN_SMALL_CALLS=team`` runs it on the worker's team instead
(``caller``, or unset, takes the rule), read at each call. `lstm`, `gru` and `one_product`
wrap the two calls in a ``jax.custom_vjp``: under ``jax.grad`` the forward call also saves what
the backward call reads (gate activations, memory cells or recurrent candidates; the RNN's outputs
alone), and the backward call returns the gradients the caller differentiates for (`_Wanted`).
`jaxrnn.kernels` decides when to use them; the ``lax.scan`` of the cell's step stays the
definition they are tested against.

`available` is False where the kernels were not built (a platform other than Linux x86-64, or no
compiler at install time) or cannot load; jaxrnn then runs the scan.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import importlib.machinery
import importlib.metadata
import os
from pathlib import Path

import jax
import jax.numpy as jnp
from jax.custom_derivatives import SymbolicZero, custom_vjp_primal_tree_values

from jaxrnn._checks import fail, without_derivative

_TARGETS = {  # FFI target: symbol in the library
    "jaxrnn_lstm_forward": "JaxrnnLstmForward",
    "jaxrnn_lstm_backward": "JaxrnnLstmBackward",
    "jaxrnn_lstm_both_ways_forward": "JaxrnnLstmBothWaysForward",
    "jaxrnn_lstm_both_ways_backward": "JaxrnnLstmBothWaysBackward",
    "jaxrnn_one_product_forward": "JaxrnnOneProductForward",
    "jaxrnn_one_product_backward": "JaxrnnOneProductBackward",
    "jaxrnn_gru_forward": "JaxrnnGruForward",
    "jaxrnn_gru_backward": "JaxrnnGruBackward",
    "jaxrnn_gru_reset_before_forward": "JaxrnnGruResetBeforeForward",
    "jaxrnn_gru_reset_before_backward": "JaxrnnGruResetBeforeBackward",
}


def _onednn_library() -> Path | None:
    """libdnnl.so.3 of the onednn-cpu-gomp wheel, wherever this environment installed it."""
    try:
        files = importlib.metadata.files("onednn-cpu-gomp") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.name == "libdnnl.so.3":
            return Path(file.locate()).resolve()
    return None


@functools.cache
def _load() -> str | None:
    """Registers the kernel's FFI targets; returns why it cannot, or None when it did."""
    here = Path(__file__).parent
    built = [here / f"_kernels{suffix}" for suffix in importlib.machinery.EXTENSION_SUFFIXES]
    built = [path for path in built if path.exists()]
    if not built:
        return "the native kernel was not built with this installation"
    onednn = _onednn_library()
    try:
        if onednn is not None:  # found by path, whatever the rpath of the build says
            ctypes.CDLL(str(onednn), mode=ctypes.RTLD_GLOBAL)
        library = ctypes.CDLL(str(built[0]))
    except OSError as error:
        return f"the native kernel does not load: {error}"
    for name, symbol in _TARGETS.items():
        capsule = jax.ffi.pycapsule(getattr(library, symbol))
        jax.ffi.register_ffi_target(name, capsule, platform="cpu")
    return None


def available() -> bool:
    """Whether the native kernels are built and load in this process."""
    return _load() is None


def unavailable_reason() -> str | None:
    """Why `available` is False, or None."""
    return _load()


STEP_PRODUCTS = "JAXRNN_STEP_PRODUCTS"  # "own", "onednn", or unset: as the CPU suits
# "units" (a team splits every step's units), "examples" (each thread runs a block of the
# examples alone), or unset: as the cell, the batch and the weights suit (SharesExamples in
# common.h)
THREADS_SHARE = "JAXRNN_THREADS_SHARE"
# "1", "2", or unset: in how many groups of rows a team runs its steps (RowGroups in common.h)
ROW_GROUPS = "JAXRNN_ROW_GROUPS"
# "steps", "before", or unset: whether a team multiplies each step's inputs with its carry or
# takes their product for every step from one product before the steps (InputSideBefore in
# common.h)
INPUT_SIDE = "JAXRNN_INPUT_SIDE"
# "off", "on", or unset (on): whether the first call after a pause spreads the team's threads
# over free cores before it runs (SpreadTeam in common.h)
SPREAD_TEAM = "JAXRNN_SPREAD_TEAM"
# "caller", "team", or unset (caller): whether a call under 4 MFLOP of products runs alone on the
# calling thread or on the worker thread's team as larger calls do (RunsOnCaller in common.h)
SMALL_CALLS = "JAXRNN_SMALL_CALLS"
# "in_turn", "at_once", or unset: whether a bidirectional layer's two directions run one after
# the other, each with the whole team, or at once, a thread each (BothWaysAtOnce in common.h)
BOTH_WAYS = "JAXRNN_BOTH_WAYS"
_CHOICES = {
    STEP_PRODUCTS: ("own", "onednn"),
    THREADS_SHARE: ("units", "examples"),
    ROW_GROUPS: ("1", "2"),
    INPUT_SIDE: ("steps", "before"),
    SPREAD_TEAM: ("off", "on"),
    SMALL_CALLS: ("caller", "team"),
    BOTH_WAYS: ("in_turn", "at_once"),
}


def _check_environment(fn: str) -> None:
    """Raises `jaxrnn.InputError` where a variable of _CHOICES holds none of its choices (the
    kernels check them again at each call, whose error is then the call's)."""
    for name, choices in _CHOICES.items():
        value = os.environ.get(name, "")
        if value not in ("", *choices):
            fail(
                fn,
                f"expected the environment variable {name} {choices[0]!r}, {choices[1]!r} or "
                f"unset, got {value!r}",
            )


# jax.default_matmul_precision values that ask for one bfloat16 pass with float32 accumulation.
_BF16_PRECISIONS = ("bfloat16", "BF16_BF16_F32")


def bf16_products() -> bool:
    """Whether the calls traced now let oneDNN multiply in bfloat16 with float32 accumulation:
    under ``jax.default_matmul_precision("bfloat16")`` (or ``"BF16_BF16_F32"``), as a TPU does
    for float32 by default. CPUs with AMX (oneDNN converts the float32 factors as it multiplies)
    or AVX512_BF16 (the kernels convert them first) take it; the kernels' own loops (up to four
    sequences, AVX2 CPUs) and the gates stay float32."""
    return jax.config.jax_default_matmul_precision in _BF16_PRECISIONS


def _out(*shape):
    return jax.ShapeDtypeStruct(shape, jnp.float32)


def _shapes_of(*arrays):
    return tuple(_out(*a.shape) for a in arrays)


def _folding_vmap(call, n_weights: int):
    """``call(*weights, *per_example)`` (the per-example arguments (B, ...) and the results
    (B, ...) or empty) with a vmap rule: where the weights are shared, the mapped axis joins the
    batch axis and the kernel runs once over all the rows, rather than once per mapped element.
    Mapped weights (an ensemble) run the kernel once per member."""

    @jax.custom_batching.custom_vmap
    def folded(*args):
        return tuple(call(*args))

    @folded.def_vmap
    def rule(axis_size, in_batched, *args):
        def mapped(a, batched):
            return a if batched else jnp.broadcast_to(a, (axis_size, *a.shape))

        if any(in_batched[:n_weights]):
            members = [mapped(a, b) for a, b in zip(args, in_batched, strict=True)]
            results = jax.lax.map(lambda member: tuple(call(*member)), members)
            return tuple(results), (True,) * len(results)
        per_example = [
            mapped(a, b) for a, b in zip(args[n_weights:], in_batched[n_weights:], strict=True)
        ]
        rows = [a.reshape(-1, *a.shape[2:]) for a in per_example]  # (axis_size · B, ...)
        results = call(*args[:n_weights], *rows)
        return tuple(
            r.reshape(axis_size, -1, *r.shape[1:])
            if r.ndim > 1
            else jnp.zeros((axis_size, 0), r.dtype)
            for r in results
        ), (True,) * len(results)

    return folded


@functools.cache
def _forward_kernel(
    target: str,
    residual_widths: tuple[int, ...],
    n_weights: int,
    n_carries: int,
    reverse: bool,
    save: bool,
    bf16: bool,
    attributes: tuple = (),
):
    """The forward FFI call of a cell of ``n_carries`` carry arrays: ``(*weights, xs, *carries,
    lengths, starts, *restarts)`` to (ys, *last carries, *residuals), a residual (B, T, w·H) for
    each w of ``residual_widths`` (gate activations, memory cells), empty without ``save``; its
    products in bfloat16 with ``bf16`` (`bf16_products`); more attributes as (name, value) pairs;
    `_folding_vmap`'s rule under `jax.vmap`."""

    def run(*args):
        weights, (xs, *rest) = args[:n_weights], args[n_weights:]
        carries, (lengths, starts, *restarts) = rest[:n_carries], rest[n_carries:]
        batch, steps, _ = xs.shape
        hidden = carries[0].shape[-1]
        # Without `save` the residuals are not wanted: empty outputs, nothing written.
        residuals = tuple(
            _out(batch, steps, width * hidden) if save else _out(0) for width in residual_widths
        )
        call = jax.ffi.ffi_call(
            target,
            (_out(batch, steps, hidden), *(_out(batch, hidden) for _ in carries), *residuals),
            vmap_method="sequential",
        )
        return call(
            xs,
            *carries,
            *weights,
            lengths,
            starts,
            *restarts,
            reverse=reverse,
            save=save,
            bf16_products=bf16,
            **dict(attributes),
        )

    return _without_derivative(_folding_vmap(run, n_weights))


def _without_derivative(call):
    return without_derivative(call, "the native kernels' backward pass")


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class _Wanted:
    """Which gradients the caller differentiates for, known when the forward rule runs and kept
    in the residuals' structure (no array carries it). The backward call leaves out the rest, as
    XLA drops a scan's unused gradients: dL/dxs = dL/dz w_xᵀ (B·T·D·G·H) where xs is data (the
    first layer of a model fed data), and the weights' gradients (B·T·(D + H)·G·H) where no
    weight is differentiated (a gradient with respect to the inputs alone, a frozen layer).
    It also keeps the forward call's `bf16_products`, so that the backward call multiplies as
    the forward one did."""

    d_xs: bool
    d_weights: bool
    bf16_products: bool  # as the forward call ran, whatever the precision when the rule runs


def _wanted(xs, *weights) -> _Wanted:
    """What the caller differentiates for, from the forward rule's (value, perturbed) arguments
    (``symbolic_zeros``): dL/dxs where xs is perturbed, the weights' gradients where any is."""
    return _Wanted(
        d_xs=xs.perturbed,
        d_weights=any(w.perturbed for w in weights),
        bf16_products=bf16_products(),
    )


def _backward_call(target: str, shapes, wanted: _Wanted, **attributes):
    """The backward FFI call ``target`` to results of ``shapes``, with ``attributes``: multiplying
    as the forward call did (`_Wanted`), and stopping a derivative of itself with a clear error."""
    call = jax.ffi.ffi_call(target, shapes, vmap_method="sequential")
    call = functools.partial(call, bf16_products=wanted.bf16_products, **attributes)
    return _without_derivative(call)


def _dense(cotangent):
    """``cotangent`` as an array: a symbolic zero (an output the caller does not use)
    becomes zeros of its shape."""
    if isinstance(cotangent, SymbolicZero):
        return jnp.zeros(cotangent.shape, cotangent.dtype)
    return cotangent


def _result(wanted: bool, *shape):
    """A result of the backward call: empty, and not computed, where it is not wanted."""
    return _out(*shape) if wanted else _out(0)


def _kept(wanted: bool, gradient):
    return gradient if wanted else None


# ------------------------------------------------------------------------------------------- LSTM


def _forward_call(w_x, w_h, bias, peephole, xs, h0, c0, lengths, starts, h_r, c_r, reverse, save):
    _check_environment("lstm")
    kernel = _forward_kernel("jaxrnn_lstm_forward", (4, 1), 4, 2, reverse, save, bf16_products())
    return kernel(w_x, w_h, bias, peephole, xs, h0, c0, lengths, starts, h_r, c_r)


@functools.partial(jax.custom_vjp, nondiff_argnums=(11,))
def lstm(w_x, w_h, bias, peephole, xs, h0, c0, lengths, starts, h_r, c_r, reverse: bool):
    """The LSTM over a sequence: w_x (D, 4H), w_h (H, 4H), bias (4H,) = b_x + b_h, peephole
    (3, H) or (0,) for none, xs (B, T, D), h0 and c0 (B, H), all float32, lengths (B,) int32 in
    [0, T], starts (B, T) uint8 and the restart carry h_r, c_r (B, H); returns (ys (B, T, H),
    last h, last c), reading the steps backwards with ``reverse`` (outputs stay aligned with xs).
    An example's steps from its length on are not run: its carry is kept and its outputs are
    zero. A step where ``starts`` is 1 (in the order the steps are read:
    `jaxrnn.kernels.reading_starts`) reads (h_r, c_r) instead of the carry before it. B and T at
    least 1."""
    ys, h, c, _, _ = _forward_call(
        w_x, w_h, bias, peephole, xs, h0, c0, lengths, starts, h_r, c_r, reverse, save=False
    )
    return ys, h, c


def _lstm_forward(w_x, w_h, bias, peephole, xs, h0, c0, lengths, starts, h_r, c_r, reverse):
    # symbolic_zeros: each array argument comes as (value, perturbed).
    wanted = _wanted(xs, w_x, w_h, bias, peephole)
    arrays = custom_vjp_primal_tree_values(
        (w_x, w_h, bias, peephole, xs, h0, c0, lengths, starts, h_r, c_r)
    )
    w_x, w_h, bias, peephole, xs, h0, c0, lengths, starts, h_r, c_r = arrays
    ys, h, c, gates, cells = _forward_call(*arrays, reverse, save=True)
    residuals = (
        w_x,
        w_h,
        peephole,
        xs,
        h0,
        c0,
        lengths,
        starts,
        h_r,
        c_r,
        ys,
        gates,
        cells,
        wanted,
    )
    return (ys, h, c), residuals


def _lstm_backward(reverse, residuals, cotangents):
    w_x, w_h, peephole, xs, h0, c0, lengths, starts, h_r, c_r, ys, gates, cells, wanted = residuals
    d_ys, d_h, d_c = map(_dense, cotangents)
    shapes = (
        _result(wanted.d_xs, *xs.shape),
        *_shapes_of(h0, c0),
        _result(wanted.d_weights, *w_x.shape),
        _result(wanted.d_weights, *w_h.shape),
        _result(wanted.d_weights, w_h.shape[1]),
        _result(wanted.d_weights, *peephole.shape),
        *_shapes_of(h_r, c_r),
    )
    call = _backward_call("jaxrnn_lstm_backward", shapes, wanted, reverse=reverse)
    d_xs, d_h0, d_c0, d_w_x, d_w_h, d_bias, d_peephole, d_h_r, d_c_r = call(
        xs,
        h0,
        c0,
        w_x,
        w_h,
        peephole,
        ys,
        gates,
        cells,
        d_ys,
        d_h,
        d_c,
        lengths,
        starts,
        h_r,
        c_r,
    )
    d_w_x, d_w_h, d_bias, d_peephole = (
        _kept(wanted.d_weights, d) for d in (d_w_x, d_w_h, d_bias, d_peephole)
    )
    d_xs = _kept(wanted.d_xs, d_xs)
    return d_w_x, d_w_h, d_bias, d_peephole, d_xs, d_h0, d_c0, None, None, d_h_r, d_c_r


lstm.defvjp(_lstm_forward, _lstm_backward, symbolic_zeros=True)


# ------------------------------------------------------------------- LSTM, both directions at once


def _both_ways_forward_call(w_x, w_h, bias, peephole, xs, h0, c0, lengths, save):
    _check_environment("bidirectional")
    batch, steps, _ = xs.shape
    hidden = h0.shape[-1]
    call = jax.ffi.ffi_call(
        "jaxrnn_lstm_both_ways_forward",
        (
            _out(2, batch, steps, hidden),
            _out(2, batch, hidden),
            _out(2, batch, hidden),
            _out(2, batch, steps, 4 * hidden) if save else _out(0),
            _out(2, batch, steps, hidden) if save else _out(0),
        ),
        vmap_method="sequential",
    )
    call = _without_derivative(functools.partial(call, save=save, bf16_products=bf16_products()))
    starts = jnp.zeros((batch, steps), jnp.uint8)
    return call(xs, h0, c0, w_x, w_h, bias, peephole, lengths, starts)


@jax.custom_vjp
def lstm_both_ways(w_x, w_h, bias, peephole, xs, h0, c0, lengths):
    """A bidirectional layer of the LSTM in one call: the weights of both directions stacked on a
    leading axis of 2 (forward, backward): w_x (2, D, 4H), w_h (2, H, 4H), bias (2, 4H),
    peephole (2, 3, H) or (0,); h0 and c0 (2, B, H); xs (B, T, D) and lengths (B,) int32 in
    [0, T] shared. Returns (ys (2, B, T, H), last h, last c (2, B, H)): what `lstm` gives for
    the forward direction and, with ``reverse``, for the backward one. B and T at least 1."""
    ys, h, c, _, _ = _both_ways_forward_call(
        w_x, w_h, bias, peephole, xs, h0, c0, lengths, save=False
    )
    return ys, h, c


def _both_ways_forward(w_x, w_h, bias, peephole, xs, h0, c0, lengths):
    wanted = _wanted(xs, w_x, w_h, bias, peephole)
    arrays = custom_vjp_primal_tree_values((w_x, w_h, bias, peephole, xs, h0, c0, lengths))
    ys, h, c, gates, cells = _both_ways_forward_call(*arrays, save=True)
    return (ys, h, c), (*arrays, ys, gates, cells, wanted)


def _both_ways_backward(residuals, cotangents):
    w_x, w_h, bias, peephole, xs, h0, c0, lengths, ys, gates, cells, wanted = residuals
    d_ys, d_h, d_c = map(_dense, cotangents)
    shapes = (
        _result(wanted.d_xs, 2, *xs.shape),
        *_shapes_of(h0, c0),
        _result(wanted.d_weights, *w_x.shape),
        _result(wanted.d_weights, *w_h.shape),
        _result(wanted.d_weights, *bias.shape),
        _result(wanted.d_weights, *peephole.shape),
    )
    call = _backward_call("jaxrnn_lstm_both_ways_backward", shapes, wanted)
    starts = jnp.zeros(xs.shape[:2], jnp.uint8)
    d_xs, d_h0, d_c0, d_w_x, d_w_h, d_bias, d_peephole = call(
        xs, h0, c0, w_x, w_h, bias, peephole, ys, gates, cells, d_ys, d_h, d_c, lengths, starts
    )
    d_w_x, d_w_h, d_bias, d_peephole = (
        _kept(wanted.d_weights, d) for d in (d_w_x, d_w_h, d_bias, d_peephole)
    )
    d_xs = d_xs[0] + d_xs[1] if wanted.d_xs else None
    return d_w_x, d_w_h, d_bias, d_peephole, d_xs, d_h0, d_c0, None


lstm_both_ways.defvjp(_both_ways_forward, _both_ways_backward, symbolic_zeros=True)


# -------------------------------------------------------------------------------------------- GRU


_GRU_TARGETS = {  # where the reset gate acts: the FFI targets' prefix
    "after": "jaxrnn_gru",
    "before": "jaxrnn_gru_reset_before",
}


def _gru_forward_call(w_x, w_h, b_x, b_h, xs, h0, lengths, starts, h_r, reverse, reset, save):
    _check_environment("gru")
    target = f"{_GRU_TARGETS[reset]}_forward"
    kernel = _forward_kernel(target, (3, 1), 4, 1, reverse, save, bf16_products())
    return kernel(w_x, w_h, b_x, b_h, xs, h0, lengths, starts, h_r)


@functools.partial(jax.custom_vjp, nondiff_argnums=(9, 10))
def gru(w_x, w_h, b_x, b_h, xs, h0, lengths, starts, h_r, reverse: bool, reset: str = "after"):
    """The GRU over a sequence, with the reset gate after the recurrent product
    (``reset="after"``, `jaxrnn.gru` ``(reset="after")``) or before the candidate's
    (``"before"``, the course's): w_x (D, 3H), w_h (H, 3H), b_x and b_h (3H,), gates (r, u, c̃);
    xs (B, T, D), h0 (B, H), all float32, lengths, starts and the restart carry h_r (B, H) as for
    `lstm`; returns (ys (B, T, H), last h). B and T at least 1."""
    ys, h, _, _ = _gru_forward_call(
        w_x, w_h, b_x, b_h, xs, h0, lengths, starts, h_r, reverse, reset, save=False
    )
    return ys, h


def _gru_forward(w_x, w_h, b_x, b_h, xs, h0, lengths, starts, h_r, reverse, reset):
    weights = (w_x, w_h, b_x, b_h)
    wanted = _wanted(xs, *weights)
    w_x, w_h, b_x, b_h, xs, h0, lengths, starts, h_r = custom_vjp_primal_tree_values(
        (w_x, w_h, b_x, b_h, xs, h0, lengths, starts, h_r)
    )
    # The second residual: the recurrent candidates h_c (reset after), or the candidate
    # product's rows r * h_{t-1} (reset before).
    ys, h, gates, rows = _gru_forward_call(
        w_x, w_h, b_x, b_h, xs, h0, lengths, starts, h_r, reverse, reset, save=True
    )
    return (ys, h), (w_x, w_h, xs, h0, lengths, starts, h_r, ys, gates, rows, wanted)


def _gru_backward(reverse, reset, residuals, cotangents):
    w_x, w_h, xs, h0, lengths, starts, h_r, ys, gates, rows, wanted = residuals
    d_ys, d_h = map(_dense, cotangents)
    bias = _result(wanted.d_weights, w_h.shape[1])
    shapes = (
        _result(wanted.d_xs, *xs.shape),
        *_shapes_of(h0),
        _result(wanted.d_weights, *w_x.shape),
        _result(wanted.d_weights, *w_h.shape),
        bias,
        bias,
        *_shapes_of(h_r),
    )
    call = _backward_call(f"{_GRU_TARGETS[reset]}_backward", shapes, wanted, reverse=reverse)
    d_xs, d_h0, d_w_x, d_w_h, d_b_x, d_b_h, d_h_r = call(
        xs, h0, w_x, w_h, ys, gates, rows, d_ys, d_h, lengths, starts, h_r
    )
    d_w_x, d_w_h, d_b_x, d_b_h = (_kept(wanted.d_weights, d) for d in (d_w_x, d_w_h, d_b_x, d_b_h))
    d_xs = _kept(wanted.d_xs, d_xs)
    return d_w_x, d_w_h, d_b_x, d_b_h, d_xs, d_h0, None, None, d_h_r


gru.defvjp(_gru_forward, _gru_backward, symbolic_zeros=True)


# ------------------------------------------------------- the basic RNN and the simplified GRU


def _one_product_forward_call(cell, w_x, w_h, bias, xs, h0, lengths, starts, h_r, reverse, save):
    _check_environment(cell.name)
    kernel = _forward_kernel(
        "jaxrnn_one_product_forward",
        (cell.gates,),
        3,
        1,
        reverse,
        save and cell.gates > 0,
        bf16_products(),
        (("cell", cell.code),),
    )
    return kernel(w_x, w_h, bias, xs, h0, lengths, starts, h_r)


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class OneProductCell:
    """A cell of one product a step, z = x w_x + h w_h + bias, and a single carry, that the LSTM
    kernel's passes run (`one_product`): its name in messages, its code for the FFI targets
    (``OneProduct`` in lstm.cc), and how many gates' activations its forward pass saves for the
    backward one (none for the RNN, whose backward pass reads its outputs)."""

    name: str
    code: int
    gates: int


RNN_TANH = OneProductCell("rnn", 0, 0)
RNN_RELU = OneProductCell("rnn", 1, 0)
SIMPLIFIED_GRU = OneProductCell("simplified_gru", 2, 2)


@functools.partial(jax.custom_vjp, nondiff_argnums=(8, 9))
def one_product(w_x, w_h, bias, xs, h0, lengths, starts, h_r, reverse: bool, cell: OneProductCell):
    """The basic RNN (`RNN_TANH`, `RNN_RELU`: h⟨t⟩ = g(z)) or the course's simplified GRU
    (`SIMPLIFIED_GRU`: gates u, c̃) over a sequence, z = x⟨t⟩ w_x + h⟨t−1⟩ w_h + bias: w_x (D, G·H),
    w_h (H, G·H), bias (G·H,) = b_x + b_h; xs (B, T, D), h0 (B, H), all float32, lengths, starts
    and the restart carry h_r (B, H) as for `lstm`; returns (ys (B, T, H), last h). B and T at
    least 1."""
    ys, h, _ = _one_product_forward_call(
        cell, w_x, w_h, bias, xs, h0, lengths, starts, h_r, reverse, save=False
    )
    return ys, h


def _one_product_forward(w_x, w_h, bias, xs, h0, lengths, starts, h_r, reverse, cell):
    wanted = _wanted(xs, w_x, w_h, bias)
    arrays = custom_vjp_primal_tree_values((w_x, w_h, bias, xs, h0, lengths, starts, h_r))
    w_x, w_h, bias, xs, h0, lengths, starts, h_r = arrays
    # The RNN's backward pass reads the outputs alone (g'(z) from g(z)); the simplified GRU's
    # its gates too.
    ys, h, gates = _one_product_forward_call(cell, *arrays, reverse, save=True)
    return (ys, h), (w_x, w_h, xs, h0, lengths, starts, h_r, ys, gates, wanted)


def _one_product_backward(reverse, cell, residuals, cotangents):
    w_x, w_h, xs, h0, lengths, starts, h_r, ys, gates, wanted = residuals
    d_ys, d_h = map(_dense, cotangents)
    shapes = (
        _result(wanted.d_xs, *xs.shape),
        *_shapes_of(h0),
        _result(wanted.d_weights, *w_x.shape),
        _result(wanted.d_weights, *w_h.shape),
        _result(wanted.d_weights, w_h.shape[1]),
        *_shapes_of(h_r),
    )
    call = _backward_call(
        "jaxrnn_one_product_backward", shapes, wanted, reverse=reverse, cell=cell.code
    )
    d_xs, d_h0, d_w_x, d_w_h, d_bias, d_h_r = call(
        xs, h0, w_x, w_h, ys, gates, d_ys, d_h, lengths, starts, h_r
    )
    d_w_x, d_w_h, d_bias = (_kept(wanted.d_weights, d) for d in (d_w_x, d_w_h, d_bias))
    return d_w_x, d_w_h, d_bias, _kept(wanted.d_xs, d_xs), d_h0, None, None, d_h_r


one_product.defvjp(_one_product_forward, _one_product_backward, symbolic_zeros=True)
