"""Faster ways to run a known cell over time, each computing exactly what the plain scan computes.

`jaxrnn.unroll` defines an unroll: the loop ``carry, ys[t] = cell.step(params, carry, xs[t])``
as one ``lax.scan`` (``"scan"``), with its semantics (lengths, reverse, remat). This module holds
the other implementations of that same function, and `choose` picks among them the way
``jax.nn.dot_product_attention(implementation=...)`` does:

===============  =============================================================  ==================
implementation   what it does                                                   cells
===============  =============================================================  ==================
``"scan"``       ``lax.scan`` of ``cell.step``: the definition                  every cell
``"hoisted"``    the input side x @ w_x + b_x of every step as one matmul       built-in cells
                 before the scan; the scan does only the recurrent side
``"fused"``      the scan with its own backward pass: the backward loop         rnn, simplified
                 carries only ∂L/∂carry, each weight gradient is one matmul     GRU, LSTM
                 over all steps after it
``"time_parallel"``  the cell's ``parallel_scan``: gates of many steps at once   min_gru, min_lstm
``"layerwise"``  a deep cell layer after layer (`jaxrnn.stacked`), each layer   ``layers.deep``
                 over the whole sequence with its own fastest kernel
``"native"``     the whole sequence as one compiled call forward and one        basic RNN, LSTM
                 backward (`jaxrnn._native`): oneDNN's matrix products on       (peepholes too),
                 weights packed once, the gates vectorised, on XLA:CPU          GRUs (either
                                                                                reset, and the
                                                                                simplified one);
                                                                                float32 or
                                                                                bfloat16, CPU
``"cudnn"``      the whole sequence as one call of cuDNN's LSTM forward and     LSTM without
                 one backward, through ``jax.experimental.rnn``                 peepholes,
                 (`jaxrnn._cudnn`)                                              float32, CUDA
                                                                                GPU
===============  =============================================================  ==================

A kernel reads the `jaxrnn.cells.Structure` of the cell's step, which belongs to the step function
itself: a cell whose ``step`` is replaced has no structure and runs as the plain scan.

``None`` (automatic) takes ``"layerwise"`` for a deep cell, ``"time_parallel"`` where the cell has
it, ``"native"`` for a basic RNN, an LSTM or a GRU it can run (float32 or bfloat16 on the CPU
backend), ``"cudnn"`` for an LSTM it can run (float32 on a CUDA GPU, without resets, outside
``jax.vmap``: the batch axes of xs run it as one call, a vmap as one call per element), else
``"fused"`` where the cell has a pointwise part, else the per-step loop: ``"scan"``, or
``"hoisted"`` on a GPU, where it measured faster. Forward-mode differentiation (``jax.jvp``,
``jax.jacfwd``, ``jax.hessian``), which the fused, native and cuDNN backward passes lack, takes
the per-step loop, and ``remat`` the plain ``"scan"`` (hoisting would keep the input side of every
step, which remat is asked to spare). Every scan loop runs 4 steps an iteration on a GPU
(`scan_unroll`), 1 elsewhere. The native kernels' and cuDNN's backward passes are not themselves
differentiable, so a gradient of a gradient takes ``"fused"`` or ``"scan"``, whose
backward passes are JAX's own. Both are seen in the arguments while tracing; ``jax.jvp`` or
``jax.grad`` of a function that calls ``unroll`` inside its own ``jax.jit`` is not, and needs
``implementation="scan"`` (or ``"fused"`` for reverse mode) there.

Kernels take checked arguments, batch-major: xs (*batch, T, D), carry leaves (*batch, H),
lengths None or (*batch,) ints, resets None or (*batch, T) bools (none past a length); every
kernel handles resets, each in its own way (`reading_starts`); ``poison`` turns to NaN the
examples whose length, only known at run time, lies outside [0, T].
"""

from __future__ import annotations

import contextlib
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import _cudnn, _native
from jaxrnn._checks import fail
from jaxrnn.cells import (
    Cell,
    GRUParams,
    LSTMParams,
    LSTMState,
    ReLURNNParams,
    ResetAfterGRUParams,
    RNNParams,
    cell_name,
    check_variant,
    recurrent_state,
    structure,
)

IMPLEMENTATIONS = ("scan", "hoisted", "fused", "time_parallel", "layerwise", "native", "cudnn")

# deep cells (`jaxrnn.layers.deep`) by their step: (the cell of every layer, the layer loop)
_LAYERWISE: dict = {}


def describe_layers(deep_cell: Cell, layer_cell: Cell, run_layers) -> None:
    """Records that ``deep_cell`` stacks ``layer_cell``, and ``run_layers`` (`jaxrnn.stacked`)
    runs it layer after layer: the ``"layerwise"`` implementation."""
    _LAYERWISE[deep_cell.step] = (layer_cell, run_layers)


def available(cell: Cell) -> tuple[str, ...]:
    """The implementations that compute ``cell``'s unroll, ``"scan"`` first."""
    if _LAYERWISE.get(cell.step) is not None:
        return ("scan", "layerwise")
    known = structure(cell)
    if known is None:
        return ("scan",)
    names = ["scan", "hoisted"]
    if known.pointwise is not None:
        names.append("fused")
    if known.parallel_scan is not None:
        names.append("time_parallel")
    if known.name in _NATIVE and _native.available():
        names.append("native")
    if known.name == "lstm" and _cudnn.available():
        names.append("cudnn")
    return tuple(names)


def choose(cell: Cell, implementation: str | None, *, remat, traced_args) -> str:
    """The implementation `jaxrnn.unroll` runs: ``implementation`` if given and possible, else the
    fastest one that supports what was asked (see the module docstring).

    Raises:
      InputError: for an unknown name, one the cell lacks, or one that cannot do what was asked.
    """
    fn = "unroll"
    cell_has = available(cell)
    forward_mode = _has_forward_mode(traced_args)
    second_order = _differentiation_levels(traced_args) > 1
    if implementation is None:
        # The per-step loop, where no other kernel runs: hoisted on a backend where that measured
        # faster (_PLAIN_LOOP).
        plain = _PLAIN_LOOP.get(jax.default_backend(), "scan")
        plain = plain if plain in cell_has else "scan"
        if "layerwise" in cell_has:  # each layer then takes its own fastest kernel
            return "layerwise"
        if remat is not False:  # hoisted, the projected inputs would be kept for every step
            return "scan"
        if "time_parallel" in cell_has:  # plain lax.scans inside: every transform works
            return "time_parallel"
        if (
            "native" in cell_has
            and not forward_mode
            and not second_order
            and _native_misfit(*traced_args) is None
        ):
            return "native"
        if (
            "cudnn" in cell_has
            and not forward_mode
            and not second_order
            and not _is_vmapped(traced_args)
            and _cudnn_misfit(*traced_args) is None
        ):
            return "cudnn"
        if "fused" in cell_has and not forward_mode:
            return "fused"
        return plain
    if implementation not in IMPLEMENTATIONS:
        fail(
            fn, f"expected implementation None or one of {IMPLEMENTATIONS}, got {implementation!r}"
        )
    if implementation == "cudnn" and implementation not in cell_has:
        known = structure(cell)
        if known is not None and known.name == "lstm(peephole)":
            fail(
                fn,
                "implementation='cudnn' runs cuDNN's LSTM, which has no peepholes",
                "leave implementation=None to choose automatically",
            )
        if known is not None and known.name == "lstm":
            fail(
                fn,
                "implementation='cudnn' runs on a CUDA GPU, and the default backend is "
                f"{jax.default_backend()}",
                "leave implementation=None to choose automatically",
            )
    if implementation not in cell_has:
        fail(
            fn,
            f"implementation={implementation!r} does not compute {cell_name(cell)}'s step; "
            f"it has {cell_has}",
            "leave implementation=None to choose automatically",
        )
    if implementation in ("fused", "time_parallel", "native", "cudnn") and remat is not False:
        fail(
            fn,
            f"implementation={implementation!r} cannot be combined with remat",
            "leave implementation=None, or pass remat=False",
        )
    if implementation in ("fused", "native", "cudnn") and forward_mode:
        fail(
            fn,
            f"implementation={implementation!r} has no forward-mode derivative (jax.jvp, "
            "jax.jacfwd)",
            "leave implementation=None, which uses the scan there",
        )
    if implementation in ("native", "cudnn") and second_order:
        fail(
            fn,
            f"implementation={implementation!r} has no derivative of its backward pass (a "
            "gradient of a gradient)",
            "leave implementation=None, which runs the XLA kernels there",
        )
    if implementation in ("native", "cudnn"):
        misfit = (_native_misfit if implementation == "native" else _cudnn_misfit)(*traced_args)
        if misfit is not None:
            fail(
                fn,
                f"implementation={implementation!r} cannot run this call: {misfit}",
                "leave implementation=None to choose automatically",
            )
    return implementation


# By backend, the per-step loop `choose` takes where no other kernel runs, and the steps each
# iteration of every lax.scan loop runs (lax.scan's unroll: the same result, a speed knob). On
# an H100 (results/scan_options_gpu.md) the input side hoisted out of the loop and 4 steps an
# iteration took the scan's forward pass 1.5–2.2× and its training step 1.5–2.5× as fast as the
# plain loop, at every size measured; on XLA:CPU both were slower (benchmarks/NOTES.md,
# section 3). Elsewhere the plain loop, one step an iteration.
_PLAIN_LOOP = {"gpu": "hoisted"}
_SCAN_UNROLL = {"gpu": 4}


def scan_unroll() -> int:
    """Steps per iteration of the scan loops on the default backend (`_SCAN_UNROLL`)."""
    return _SCAN_UNROLL.get(jax.default_backend(), 1)


# The cells with a native kernel, by the name of their structure: the params they take.
_NATIVE = {
    "rnn(tanh)": RNNParams,
    "rnn(relu)": ReLURNNParams,
    "simplified_gru": GRUParams,
    "lstm": LSTMParams,  # with peepholes where params.peephole holds them
    "lstm(peephole)": LSTMParams,
    "gru(reset=after)": ResetAfterGRUParams,
    "gru(reset=before)": GRUParams,
}
_NATIVE_DTYPES = (jnp.float32, jnp.bfloat16)
# The cells whose step is one product and a single carry, which the LSTM kernel's passes run.
_ONE_PRODUCT = {
    "rnn(tanh)": _native.RNN_TANH,
    "rnn(relu)": _native.RNN_RELU,
    "simplified_gru": _native.SIMPLIFIED_GRU,
}


def _native_misfit(params, xs, carry, lengths, resets, reset_carry) -> str | None:
    """Why the native kernels cannot run these arguments, or None if they can."""
    del lengths, resets, reset_carry  # any lengths and resets run
    if not isinstance(params, tuple(_NATIVE.values())):
        return "it runs the basic RNN, the LSTM and the GRUs"
    if jax.default_backend() != "cpu":
        return f"it runs on the CPU backend, and the default backend is {jax.default_backend()}"
    return _whole_sequence_misfit(params, xs, carry, _NATIVE_DTYPES, "float32 and bfloat16")


def _whole_sequence_misfit(params, xs, carry, dtypes, dtype_names: str) -> str | None:
    """Why a kernel that runs a whole sequence as one call on one device, on arrays of
    ``dtypes``, cannot run these arguments, or None if it can."""
    if jax.device_count() > 1:  # XLA cannot split such a call: it would gather the whole batch
        return f"it runs on one device, and there are {jax.device_count()}"
    if xs.shape[-1] == 0:
        return "it runs inputs of one feature or more, and xs has none"
    for name, tree in (("params", params), ("xs", xs), ("carry", carry)):
        for leaf in jax.tree.leaves(tree):
            if getattr(leaf, "dtype", None) not in dtypes:
                return f"it runs {dtype_names}, and {name} has {getattr(leaf, 'dtype', type(leaf))}"
    return None


def _cudnn_misfit(params, xs, carry, lengths, resets, reset_carry) -> str | None:
    """Why cuDNN's LSTM cannot run these arguments, or None if it can."""
    del lengths, reset_carry  # any lengths run; reset_carry only with resets
    if not isinstance(params, LSTMParams):
        return "it runs the LSTM"
    if params.peephole is not None:
        return "cuDNN's LSTM has no peepholes, and params.peephole holds them"
    if resets is not None:
        return "cuDNN's LSTM cannot start the carry again inside a sequence, and resets are given"
    placed = _cudnn.placement_misfit(params=params, xs=xs, carry=carry)
    if placed is not None:
        return placed
    return _whole_sequence_misfit(params, xs, carry, (jnp.float32,), "float32")


def _tracers(tree):
    """Every tracer in the leaves of ``tree``, at every depth of nesting."""
    for leaf in jax.tree.leaves(tree):
        while isinstance(leaf, jax.core.Tracer):
            yield leaf
            leaf = (
                getattr(leaf, "val", None)
                if hasattr(leaf, "val")
                else getattr(leaf, "primal", None)
            )


def _is_vmapped(tree) -> bool:
    """Whether any leaf is traced by `jax.vmap`, at any depth of nesting. cuDNN's calls have no
    batching rule, so `jaxrnn._cudnn` calls them once per mapped element: where a vmap maps
    examples, the XLA kernels batch them into one loop instead."""
    return any(type(tracer).__name__ == "BatchTracer" for tracer in _tracers(tree))


def _has_forward_mode(tree) -> bool:
    """Whether any leaf is traced by a forward-mode transformation, at any depth of nesting."""
    return any(type(tracer).__name__ == "JVPTracer" for tracer in _tracers(tree))


def _differentiation_levels(tree) -> int:
    """How many differentiations (forward or reverse) trace the leaves, counted over every
    leaf and every depth of nesting: 2 or more is a derivative of a derivative."""
    return len(
        {
            id(tracer._trace)
            for tracer in _tracers(tree)
            if type(tracer).__name__ in ("JVPTracer", "LinearizeTracer")
        }
    )


def run(
    implementation: str,
    cell: Cell,
    params,
    xs,
    carry,
    lengths,
    *,
    resets,
    reverse,
    remat,
    poison,
    reset_carry=None,
):
    """The unroll of ``cell`` by ``implementation``; returns (last carry, ys (*batch, T, H)).

    ``reset_carry`` (None: ``carry``) is where the carry starts again at each reset."""
    if implementation == "layerwise":
        layer_cell, run_layers = _LAYERWISE[cell.step]
        options = dict(lengths=lengths, resets=resets, reverse=reverse, remat=remat)
        if reset_carry is not None:
            options["reset_carry"] = tuple(reset_carry)
        last, ys = run_layers(layer_cell, params, xs, carry=tuple(carry), **options)
        return tuple(last), ys
    starts = None if resets is None else reading_starts(resets, reverse)
    restart = carry if reset_carry is None or starts is None else reset_carry
    if implementation in ("native", "cudnn", "fused"):
        _check_as_the_step_would(cell, params, carry, xs)
    if implementation in ("native", "cudnn"):
        name = structure(cell).name
        # Nor do they look at the params type: another variant's weights of the same shapes.
        check_variant("unroll", params, _NATIVE[name] if implementation == "native" else LSTMParams)
        n_steps, batch_shape = xs.shape[-2], xs.shape[:-2]
        if n_steps and math.prod(batch_shape):
            if implementation == "cudnn":
                (last,), (ys,) = _cudnn_run(
                    ((params, carry),), xs, lengths, reverse=reverse, poison=poison
                )
                return last, ys
            return _native_run(
                name, params, xs, carry, lengths, starts, restart, reverse=reverse, poison=poison
            )
        implementation = "scan"  # nothing to compute: the scan's edge cases are the definition
    if implementation == "fused":
        if xs.shape[-2] == 0:
            implementation = "scan"
        else:
            return fused(
                cell,
                params,
                xs,
                carry,
                lengths,
                starts,
                restart,
                reverse=reverse,
                poison=poison,
                unroll=scan_unroll(),
            )
    if implementation == "time_parallel" and xs.shape[-2] == 0:
        implementation = "scan"  # an empty sequence has nothing to scan in parallel

    def one(xs, carry, length, starts, restart):
        if implementation == "time_parallel":
            return _parallel_one(
                cell, params, xs, carry, length, starts, restart, reverse=reverse, poison=poison
            )
        return sequential_one(
            cell,
            params,
            xs,
            carry,
            length,
            starts,
            restart,
            reverse=reverse,
            remat=remat,
            hoist=implementation == "hoisted",
            poison=poison,
            unroll=scan_unroll(),
        )

    for _ in xs.shape[:-2]:
        one = jax.vmap(
            one, in_axes=(0, 0, None if lengths is None else 0, None if starts is None else 0, 0)
        )
    return one(xs, carry, lengths, starts, restart)


def _check_as_the_step_would(cell: Cell, params, carry, xs) -> None:
    """The cell's own checks of params and carry against xs (*batch, T, D), run on shapes alone,
    at no run-time cost: neither the kernels nor the fused backward pass call the cell's step as
    the scan does, whose checks refuse weights of other shapes (the course's GRU's, 3 gates,
    through simplified_gru's 2)."""
    x = jax.ShapeDtypeStruct((*xs.shape[:-2], xs.shape[-1]), xs.dtype)  # T may be 0
    jax.eval_shape(cell.step, params, carry, x)


def runs_both_ways(cell: Cell, implementation: str | None) -> bool:
    """Whether ``implementation`` (as `choose` took it for both directions of a bidirectional
    layer of ``cell``; None for no whole-sequence kernel) runs the layer as one call
    (`run_both_ways`)."""
    if implementation == "cudnn":
        return True
    return implementation == "native" and structure(cell).name in ("lstm", "lstm(peephole)")


def run_both_ways(cell: Cell, forward, backward, xs, carries, lengths, *, implementation, poison):
    """A bidirectional layer of the LSTM as one call (`runs_both_ways`): cuDNN's bidirectional
    LSTM, or the native kernel's two directions (`jaxrnn._native.lstm_both_ways`). xs (*batch,
    T, D), ``carries`` the two directions' initial `LSTMState`s; returns ((last forward, last
    backward), (ys forward, ys backward)), what ``implementation`` would give for each
    direction, the backward one with ``reverse``."""
    batch_shape, n_steps = xs.shape[:-2], xs.shape[-2]
    if not (n_steps and math.prod(batch_shape)):  # the scan's edge cases are the definition
        runs = [
            run("scan", cell, p, xs, c, lengths, resets=None, reverse=r, remat=False, poison=poison)
            for p, c, r in ((forward, carries[0], False), (backward, carries[1], True))
        ]
        return (runs[0][0], runs[1][0]), (runs[0][1], runs[1][1])
    for params, carry in zip((forward, backward), carries, strict=True):
        _check_as_the_step_would(cell, params, carry, xs)
        # nor do the kernels look at the params type: another variant's weights of the same shapes
        check_variant("bidirectional", params, LSTMParams)
    directions = ((forward, carries[0]), (backward, carries[1]))
    if implementation == "cudnn":
        return _cudnn_run(directions, xs, lengths, reverse=False, poison=poison)
    return _native_both_ways(directions, xs, lengths, poison=poison)


def _native_both_ways(directions, xs, lengths, *, poison):
    """The native LSTM kernel's two directions in one call (`jaxrnn._native.lstm_both_ways`) on
    xs (*batch, T, D), float32 or bfloat16 as in `_native_run`; returns (last carries, ys), each
    a pair, the backward direction's read with ``reverse``."""
    batch_shape, (n_steps, n_inputs) = xs.shape[:-2], xs.shape[-2:]
    n_rows, hidden = math.prod(batch_shape), directions[0][0].w_h.shape[0]
    none = jnp.zeros((0,), jnp.float32)  # an LSTM without peepholes

    def both(weights):
        return jnp.stack([weights(params) for params, _ in directions])

    arrays = (
        both(lambda p: p.w_x),
        both(lambda p: p.w_h),
        both(lambda p: p.b_x + p.b_h),
        none if directions[0][0].peephole is None else both(lambda p: p.peephole),
        xs.reshape(n_rows, n_steps, n_inputs),
        *_stacked_carries(directions, n_rows, hidden),
    )
    with _kernel_products(xs.dtype):
        ys, h, c = _native.lstm_both_ways(
            *(a.astype(jnp.float32) for a in arrays), _rows_lengths(lengths, n_rows, n_steps)
        )
    return _per_direction(ys, h, c, xs, lengths, poison=poison)


def _stacked_carries(directions, n_rows: int, hidden: int):
    """(h0, c0), each (directions, n_rows, H): the LSTM carries of ``directions``, pairs of
    (params, carry), their batch axes flattened."""
    return tuple(
        jnp.stack([getattr(carry, leaf).reshape(n_rows, hidden) for _, carry in directions])
        for leaf in ("h", "c")
    )


def _per_direction(ys, h, c, xs, lengths, *, poison):
    """A call's results for each direction, ys (directions, n_rows, T, H) and the last h and c
    (directions, n_rows, H), as (last carries, ys): `LSTMState`s and (*batch, T, H) in the dtype
    and batch axes of xs (*batch, T, D), poisoned past the lengths as the scan is."""
    batch_shape, n_steps, hidden = xs.shape[:-2], xs.shape[-2], h.shape[-1]
    lasts, outputs = [], []
    for direction, y in enumerate(ys):
        last = LSTMState(*(a[direction].reshape(*batch_shape, hidden) for a in (h, c)))
        last = jax.tree.map(lambda leaf: leaf.astype(xs.dtype), last)
        y = y.reshape(*batch_shape, n_steps, hidden).astype(xs.dtype)
        if poison and lengths is not None:
            last, y = poisoned(last, y, jnp.asarray(lengths), n_steps)
        lasts.append(last)
        outputs.append(y)
    return tuple(lasts), tuple(outputs)


def _kernel_products(dtype):
    """How a native call multiplies for arrays of ``dtype``: float32 at the caller's precision;
    bfloat16 arrays, which the kernels read as float32, in oneDNN's bfloat16 products. Products
    of bfloat16 values lose nothing there, which the precision asks for as the scan's products
    are; the gates and the carry from step to step stay float32 inside the call (as in cuDNN's
    and oneDNN's own bfloat16 RNNs), and only what the call returns is rounded."""
    if dtype == jnp.bfloat16:
        return jax.default_matmul_precision("bfloat16")
    return contextlib.nullcontext()


def _rows_lengths(lengths, n_rows: int, n_steps: int):
    """Every example's length, (n_rows,) int32 in [0, T], its batch axes flattened: T without
    lengths. A length outside [0, T] is clipped here and poisoned after the call, as the scan
    does."""
    if lengths is None:
        return jnp.full((n_rows,), n_steps, jnp.int32)
    return jnp.clip(jnp.reshape(lengths, -1), 0, n_steps).astype(jnp.int32)


def _native_run(name, params, xs, carry, lengths, starts, restart, *, reverse, poison):
    """The native kernel of the cell called ``name`` (a key of `_NATIVE`) on xs (*batch, T, D),
    its batch axes flattened into one; starts None or (*batch, T) bools in reading order, where
    the carry starts again from ``restart``. params, xs and the carries float32, or bfloat16 (run
    as float32 with bfloat16 products, the results rounded back)."""
    batch_shape, (n_steps, n_inputs) = xs.shape[:-2], xs.shape[-2:]
    n_rows, hidden = math.prod(batch_shape), params.w_h.shape[0]
    rows_lengths = _rows_lengths(lengths, n_rows, n_steps)
    if starts is None:
        rows_starts = jnp.zeros((n_rows, n_steps), jnp.uint8)
    else:
        rows_starts = jnp.reshape(starts, (n_rows, n_steps)).astype(jnp.uint8)

    def rows(tree):
        return jax.tree.map(lambda leaf: leaf.reshape(-1, hidden), tree)

    dtype = xs.dtype
    arrays = (params, xs.reshape(-1, n_steps, n_inputs), rows(carry), rows(restart))
    if dtype == jnp.bfloat16:  # the kernels read float32 (`_kernel_products`)
        arrays = jax.tree.map(lambda leaf: leaf.astype(jnp.float32), arrays)
    params, xs, carry, restart = arrays
    with _kernel_products(dtype):
        last, ys = _native_call(
            name, params, xs, carry, rows_lengths, rows_starts, restart, reverse
        )
    last = jax.tree.map(lambda leaf: leaf.reshape(*batch_shape, hidden).astype(dtype), last)
    ys = ys.reshape(*batch_shape, n_steps, hidden).astype(dtype)
    if poison and lengths is not None:
        last, ys = poisoned(last, ys, jnp.asarray(lengths), n_steps)
    return last, ys


def _native_call(name, params, xs, carry, lengths, starts, restart, reverse):
    """The kernel of the cell called ``name`` on rows of examples, xs (N, T, D), carry and restart
    leaves (N, H), lengths (N,) int32, starts (N, T) uint8; returns (last carry, ys (N, T, H))."""
    if name in _ONE_PRODUCT:
        ys, h = _native.one_product(
            params.w_x,
            params.w_h,
            params.b_x + params.b_h,
            xs,
            carry,
            lengths,
            starts,
            restart,
            bool(reverse),
            _ONE_PRODUCT[name],
        )
        return h, ys
    if name.startswith("gru"):
        ys, h = _native.gru(
            params.w_x,
            params.w_h,
            params.b_x,
            params.b_h,
            xs,
            carry,
            lengths,
            starts,
            restart,
            bool(reverse),
            "before" if name == "gru(reset=before)" else "after",
        )
        return h, ys
    none = jnp.zeros((0,), jnp.float32)  # an LSTM without peepholes
    ys, h, c = _native.lstm(
        params.w_x,
        params.w_h,
        params.b_x + params.b_h,
        none if params.peephole is None else params.peephole,
        xs,
        carry.h,
        carry.c,
        lengths,
        starts,
        restart.h,
        restart.c,
        bool(reverse),
    )
    return LSTMState(h, c), ys


def _cudnn_run(directions, xs, lengths, *, reverse, poison):
    """cuDNN's LSTM on xs (*batch, T, D), its batch axes flattened into one: ``directions`` one
    (params, carry), read backwards with ``reverse``, or two, a bidirectional layer in one call
    (`jaxrnn._cudnn.lstm`). Returns (last carries, ys), each a tuple of one per direction."""
    batch_shape, (n_steps, n_inputs) = xs.shape[:-2], xs.shape[-2:]
    n_rows, hidden = math.prod(batch_shape), directions[0][0].w_h.shape[0]
    h0, c0 = _stacked_carries(directions, n_rows, hidden)
    ys, h, c = _cudnn.lstm(
        [(params.w_x, params.w_h, params.b_x, params.b_h) for params, _ in directions],
        xs.reshape(n_rows, n_steps, n_inputs),
        h0,
        c0,
        _rows_lengths(lengths, n_rows, n_steps),
        reverse=bool(reverse),
        precision=jax.config.jax_default_matmul_precision,
    )
    return _per_direction(ys, h, c, xs, lengths, poison=poison)


def reading_starts(resets, reverse: bool):
    """The steps before which the carry is reset, in the order the steps are read.

    ``resets`` (*batch, T) marks the first step of each segment. Read forwards, the carry is reset
    there. Read backwards, each segment starts from its own last step, the step before a reset.
    """
    if not reverse:
        return resets
    after = jnp.zeros_like(resets[..., :1])
    return jnp.concatenate([resets[..., 1:], after], axis=-1)


# ------------------------------------------------------------------------------- the scan itself


def sequential_one(
    cell: Cell,
    params,
    xs,
    carry,
    length,
    starts=None,
    restart=None,
    *,
    reverse,
    remat,
    hoist,
    poison,
    unroll=1,
):
    """One example as a ``lax.scan``: xs (T, input_size), carry leaves (H,), length a scalar or
    None, starts None or (T,) bool (reset the carry before these steps, in the order they are
    read: see `reading_starts`) to ``restart`` (leaves (H,); None: ``carry``). ``hoist``
    computes the input side of every step before the loop (``"hoisted"``); ``unroll`` is
    ``lax.scan``'s (steps per loop iteration: same result, a speed knob)."""
    if hoist:
        known = structure(cell)
        inputs, step = known.project_input(params, xs), known.step_projected
    else:
        inputs, step = xs, cell.step

    n_steps = xs.shape[0]
    block = 0 if remat is False else int(remat)
    initial = carry if restart is None else restart

    def body(carry, x_valid_start):
        x, valid, start = x_valid_start
        read = carry
        if start is not None:
            read = jax.tree.map(lambda first, old: jnp.where(start, first, old), initial, carry)
        new_carry, y = step(params, read, x)
        if valid is None:
            return new_carry, y
        # Past the example's end the carry is frozen and the output is zero. With reverse=True
        # the padded steps come first, so the carry stays a⟨0⟩ until the last valid step.
        carry = jax.tree.map(lambda new, old: jnp.where(valid, new, old), new_carry, carry)
        return carry, jnp.where(valid, y, jnp.zeros_like(y))

    valid = None if length is None else jnp.arange(n_steps) < length
    scanned = (inputs, valid, starts)

    if block <= 1:
        if block == 1:
            body = jax.checkpoint(body)
        carry, ys = jax.lax.scan(body, carry, scanned, reverse=reverse, unroll=unroll)
    else:
        # Blocks of `block` steps: the outer scan stores one carry per block and the backward pass
        # recomputes each block's steps from it. The T mod block steps left over run as a scan of
        # their own (checkpointed per step) rather than as a padded block: padding the sequence
        # would make the backward pass build a padded copy of the whole output cotangent.
        n_main = n_steps - n_steps % block

        def run_block(carry, block_inputs):
            return jax.lax.scan(body, carry, block_inputs, reverse=reverse, unroll=unroll)

        def run_blocks(carry):
            blocks = jax.tree.map(lambda a: a[:n_main].reshape(-1, block, *a.shape[1:]), scanned)
            carry, ys = jax.lax.scan(jax.checkpoint(run_block), carry, blocks, reverse=reverse)
            return carry, ys.reshape(n_main, *ys.shape[2:])

        def run_rest(carry):
            rest = jax.tree.map(lambda a: a[n_main:], scanned)
            return jax.lax.scan(jax.checkpoint(body), carry, rest, reverse=reverse, unroll=unroll)

        if reverse:  # the leftover steps are the last in time, so a reverse pass meets them first
            carry, ys_rest = run_rest(carry)
            carry, ys_main = run_blocks(carry)
        else:
            carry, ys_main = run_blocks(carry)
            carry, ys_rest = run_rest(carry)
        ys = jnp.concatenate([ys_main, ys_rest])

    if poison:
        carry, ys = poisoned(carry, ys, length, n_steps)
    return carry, ys


def poisoned(carry, ys, length, n_steps):
    """NaN carry and outputs where a length only known at run time is outside [0, T].

    ``length`` has the batch shape (a scalar for one example), carry leaves (*batch, H) and
    ys (*batch, T, H).
    """
    invalid = (length < 0) | (length > n_steps)
    carry = jax.tree.map(lambda leaf: jnp.where(invalid[..., None], np.nan, leaf), carry)
    return carry, jnp.where(invalid[..., None, None], np.nan, ys)


# ------------------------------------------------------------------------------ the parallel form


def _parallel_one(cell: Cell, params, xs, carry, length, starts, restart, *, reverse, poison):
    """One example with the cell's ``parallel_scan``: xs (T, input_size), carry leaves (H,),
    starts None or (T,) bool in reading order, restart leaves (H,) where they reset to.

    Padded steps come after the valid ones and each step depends only on earlier ones, so the
    scan runs over all T steps and the carry is read at step L − 1. Reverse reads xs through the
    permutation t -> L − 1 − t on the valid steps (padded ones stay), which is its own inverse.
    """
    n_steps = xs.shape[0]
    last = n_steps - 1 if length is None else length - 1
    if reverse:
        t = jnp.arange(n_steps)
        order = jnp.where(t <= last, last - t, t)
        xs = xs[order]
        starts = None if starts is None else starts[order]
    carries, ys = structure(cell).parallel_scan(params, xs, carry, starts, restart)
    if reverse:
        ys = ys[order]
    if length is None:
        return jax.tree.map(lambda leaf: leaf[-1], carries), ys
    index = jnp.clip(last, 0, n_steps - 1)
    carry = jax.tree.map(
        lambda leaf, first: jnp.where(length > 0, leaf[index], first), carries, carry
    )
    ys = jnp.where((jnp.arange(n_steps) < length)[:, None], ys, jnp.zeros_like(ys))
    if poison:
        carry, ys = poisoned(carry, ys, length, n_steps)
    return carry, ys


# ------------------------------------------------------------------------ the fused backward pass


def fused(
    cell: Cell, params, xs, carry, lengths, starts=None, restart=None, *, reverse, poison, unroll=1
):
    """``"fused"``: xs (*batch, T, D), carry leaves (*batch, H), starts None or (*batch, T) bool
    in reading order, restart (None: carry) the carry leaves (*batch, H) they reset to, for a cell
    with a pointwise part.

    The batch dimensions are flattened into one, N, and the whole batch goes through one
    time-major scan, so that the weight gradients are matmuls over all T·N rows at once.
    """
    batch_shape, n_steps = xs.shape[:-2], xs.shape[-2]
    flat_xs = jnp.moveaxis(xs.reshape(math.prod(batch_shape), n_steps, xs.shape[-1]), 1, 0)
    flat_carry = jax.tree.map(lambda leaf: leaf.reshape(-1, leaf.shape[-1]), carry)
    if starts is None:  # nothing resets: the program is the one without resets
        restart = None
    elif restart is None:
        restart = carry
    flat_restart = jax.tree.map(lambda leaf: leaf.reshape(-1, leaf.shape[-1]), restart)
    valid = None
    if lengths is not None:
        flat_lengths = jnp.reshape(lengths, -1)
        valid = jnp.arange(n_steps)[:, None] < flat_lengths[None, :]  # (T, N)
    if starts is not None:
        starts = jnp.reshape(starts, (-1, n_steps)).T  # (T, N)
    last, ys = _scan_fused_backward(
        structure(cell).pointwise,
        params,
        flat_xs,
        flat_carry,
        flat_restart,
        valid,
        starts,
        reverse=reverse,
        unroll=unroll,
    )
    last = jax.tree.map(lambda leaf: leaf.reshape(*batch_shape, leaf.shape[-1]), last)
    ys = jnp.moveaxis(ys, 0, 1).reshape(*batch_shape, n_steps, ys.shape[-1])
    if poison:
        last, ys = poisoned(last, ys, jnp.asarray(lengths), n_steps)
    return last, ys


def _add_to_state(carry, d_h):
    """carry + d_h on the part the recurrent matmul reads (see `jaxrnn.cells.recurrent_state`)."""
    if isinstance(carry, LSTMState):
        return carry._replace(h=carry.h + d_h)
    return carry + d_h


def _scan_fused_backward(
    pointwise_one, params, xs, carry, restart, valid, starts, *, reverse: bool, unroll: int
):
    """A time-major scan of a cell with a pointwise part, and its own backward pass.

    xs (T, N, input_size), carry leaves (N, H), valid None or a (T, N) bool mask of real steps,
    starts None or a (T, N) bool mask of the steps that read ``restart`` (leaves (N, H); None
    without starts) instead of the previous carry. Returns (last carry, ys (T, N, H)), the same
    function as the plain scan over the batch.

    Autodiff of ``lax.scan`` forms the weight gradients inside the backward loop, one small matmul
    per step and weight. Here the backward loop carries only ∂L/∂carry and emits ∂L/∂z of every
    step; each weight gradient is then one large matmul over all T·N rows, after the loop. Saved
    for the backward pass: z and the carry after every step (the carry before a step is the one
    after the previous step, or ``restart`` where the step starts a segment).
    """
    pointwise = jax.vmap(pointwise_one, in_axes=(None, 0, 0))

    def gate_params(params):
        # What the pointwise part may read (LSTM peepholes): the affine weights are not its own.
        return params._replace(w_x=None, w_h=None, b_x=None, b_h=None)

    def masked_pointwise(gates, carry_prev, z, valid_t):
        new, _ = pointwise(gates, carry_prev, z)
        if valid_t is None:
            return new
        # Past an example's end its carry is frozen, as in the plain scan.
        return jax.tree.map(lambda n, o: jnp.where(valid_t[:, None], n, o), new, carry_prev)

    def restarted(start_t, first, carry):
        if start_t is None:
            return carry
        return jax.tree.map(lambda f, c: jnp.where(start_t[:, None], f, c), first, carry)

    def forward(params, xs, carry, restart, valid, starts):
        first = restart

        def step(carry, x_valid_start):
            x, valid_t, start_t = x_valid_start
            carry = restarted(start_t, first, carry)
            bias = (params.b_x + params.b_h)[None, :]
            z = x @ params.w_x + recurrent_state(carry) @ params.w_h + bias
            new = masked_pointwise(gate_params(params), carry, z, valid_t)
            return new, (z, new)

        scanned = (xs, valid, starts)
        last, (zs, carries) = jax.lax.scan(step, carry, scanned, reverse=reverse, unroll=unroll)
        ys = recurrent_state(carries)  # every cell with a pointwise part outputs y⟨t⟩ = h⟨t⟩
        ys = ys if valid is None else jnp.where(valid[..., None], ys, 0)
        return (last, ys), (zs, carries)

    @jax.custom_vjp
    def scan_with_own_backward(params, xs, carry, restart, valid, starts):
        return forward(params, xs, carry, restart, valid, starts)[0]

    def run_forward(params, xs, carry, restart, valid, starts):
        outputs, (zs, carries) = forward(params, xs, carry, restart, valid, starts)
        return outputs, (params, xs, carry, restart, valid, starts, zs, carries)

    def run_backward(residuals, cotangents):
        params, xs, carry0, restart, valid, starts, zs, carries = residuals
        d_last, d_ys = cotangents
        if valid is not None:
            d_ys = jnp.where(valid[..., None], d_ys, 0)

        def before(first, after):  # the carry before each step: `after` shifted by one step
            if reverse:
                return jnp.concatenate([after[1:], first[None]], 0)
            return jnp.concatenate([first[None], after[:-1]], 0)

        previous = jax.tree.map(before, carry0, carries)
        if starts is not None:
            previous = jax.tree.map(
                lambda first, prev: jnp.where(starts[..., None], first[None], prev),
                restart,
                previous,
            )
        w_h_transposed = params.w_h.T

        def step(acc, inputs):
            d_carry, d_gates, d_first = acc
            z, carry_prev, d_y, valid_t, start_t = inputs
            _, pullback = jax.vjp(
                lambda g, c, zz: masked_pointwise(g, c, zz, valid_t),
                gate_params(params),
                carry_prev,
                z,
            )
            d_g, d_prev, d_z = pullback(_add_to_state(d_carry, d_y))
            d_prev = _add_to_state(d_prev, d_z @ w_h_transposed)
            d_gates = jax.tree.map(jnp.add, d_gates, d_g)
            if start_t is not None:  # a segment's first step read the restart carry
                at_start = start_t[:, None]
                d_first = jax.tree.map(
                    lambda acc, d: acc + jnp.where(at_start, d, 0), d_first, d_prev
                )
                d_prev = jax.tree.map(lambda d: jnp.where(at_start, 0, d), d_prev)
            return (d_prev, d_gates, d_first), d_z

        zero = jax.tree.map(jnp.zeros_like, gate_params(params))
        no_first = None if starts is None else jax.tree.map(jnp.zeros_like, restart)
        (d_carry0, d_gates, d_first), d_zs = jax.lax.scan(
            step,
            (d_last, zero, no_first),
            (zs, previous, d_ys, valid, starts),
            reverse=not reverse,
            unroll=unroll,
        )
        d_b = d_zs.sum((0, 1))
        d_params = d_gates._replace(
            w_x=jnp.einsum("tnd,tng->dg", xs, d_zs),
            w_h=jnp.einsum("tnh,tng->hg", recurrent_state(previous), d_zs),
            b_x=d_b,
            b_h=d_b,
        )
        return d_params, d_zs @ params.w_x.T, d_carry0, d_first, None, None

    scan_with_own_backward.defvjp(run_forward, run_backward)
    return scan_with_own_backward(params, xs, carry, restart, valid, starts)
