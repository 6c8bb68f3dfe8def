"""Trace-time argument checks whose messages name the argument, the expected and the actual value.

Shapes and dtypes are static under ``jit``, so every check here runs once, while tracing, and costs
nothing at run time.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn.errors import InputError, fail

__all__ = ["InputError", "fail"]  # and the check_* functions


def _format_shape(shape: Sequence[int | None | str]) -> str:
    parts = ["…" if d is None else str(d) for d in shape]
    return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"


def tree_layout(tree, lead: int = 0) -> tuple[Any, dict[str, tuple[int, ...]]]:
    """The tree structure of ``tree`` and each leaf's shape by its path (``jax.tree_util.keystr``,
    e.g. ``.head.w`` or ``[0].mu['w']``) without its first ``lead`` axes: what a tree of arrays is
    compared with the one it should be by, while tracing."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    shapes = {jax.tree_util.keystr(path): tuple(jnp.shape(x))[lead:] for path, x in leaves}
    return treedef, shapes


def first_shape_difference(expected: dict, got: dict) -> str | None:
    """The first path of two `tree_layout` shape maps whose shapes differ, or that one lacks."""
    paths = dict.fromkeys([*expected, *got])
    return next((path for path in paths if expected.get(path) != got.get(path)), None)


def shape_of(fn: str, name: str, x) -> tuple[int, ...]:
    try:
        return tuple(jnp.shape(x))
    except TypeError:
        fail(fn, f"expected {name} to be an array, got {type(x).__name__}")


def check_shape(fn: str, name: str, x, expected: Sequence[int | None], hint: str = "") -> None:
    """Raise `InputError` unless ``x.shape`` matches ``expected`` (``None`` matches any size)."""
    shape = shape_of(fn, name, x)
    ok = len(shape) == len(expected) and all(
        e is None or e == s for e, s in zip(expected, shape, strict=False)
    )
    if not ok:
        fail(
            fn,
            f"expected {name} of shape {_format_shape(expected)}, got {_format_shape(shape)}",
            hint,
        )


def check_rank_at_least(fn: str, name: str, x, rank: int, meaning: str) -> tuple[int, ...]:
    shape = shape_of(fn, name, x)
    if len(shape) < rank:
        fail(fn, f"expected {name} with at least {rank} dimensions {meaning}, got shape {shape}")
    return shape


def dtype_of(fn: str, name: str, x) -> np.dtype:
    """The dtype of array ``x``; a list or other non-array gets an `InputError`, not a TypeError."""
    if not hasattr(x, "dtype") and not isinstance(x, int | float | complex | np.generic):
        fail(fn, f"expected {name} to be an array, got {type(x).__name__}", "use jnp.asarray")
    return jnp.result_type(x)


def check_floating(fn: str, name: str, x, like=None, like_name: str = "params") -> None:
    """Raise unless ``x`` is a floating-point array (of the same dtype as ``like``, if given)."""
    dtype = dtype_of(fn, name, x)
    if not jnp.issubdtype(dtype, jnp.floating):
        fail(
            fn, f"expected {name} to have a floating-point dtype, got {dtype}", "cast with .astype"
        )
    if like is not None and dtype != jnp.result_type(like):
        fail(
            fn,
            f"expected {name} of dtype {jnp.result_type(like)} (the dtype of {like_name}), "
            f"got {dtype}",
            "cast the inputs or initialise the parameters with that dtype",
        )


def check_integer(fn: str, name: str, x) -> None:
    dtype = dtype_of(fn, name, x)
    if not jnp.issubdtype(dtype, jnp.integer):
        fail(fn, f"expected {name} to have an integer dtype, got {dtype}")


def concrete_or_none(x) -> np.ndarray | None:
    """The value of ``x`` as numpy if it is known at trace time, else ``None`` (a jit tracer)."""
    if isinstance(x, jax.core.Tracer):
        return None
    return np.asarray(x)


def check_float_dtype(fn: str, dtype) -> None:
    """Raise unless ``dtype`` is a floating-point dtype, the only kind parameters may have."""
    try:
        ok = jnp.issubdtype(dtype, jnp.floating)
    except TypeError:
        ok = False
    if not ok:
        shown = np.dtype(dtype).name if isinstance(dtype, type | np.dtype | str) else repr(dtype)
        fail(fn, f"expected dtype to be a floating-point dtype, got {shown}")


def check_values_in(
    fn: str, name: str, x, low, high, *, closed: bool = False, hint: str = ""
) -> None:
    """When ``x``'s values are known at trace time, raise unless each is in [low, high) (or
    [low, high] with ``closed``). Under ``jit`` the values are unknown and nothing is checked."""
    known = concrete_or_none(x)
    if known is None or known.size == 0:
        return
    bad = (known < low) | ((known > high) if closed else (known >= high))
    if bad.any():
        interval = f"[{low}, {high}]" if closed else f"[{low}, {high})"
        fail(
            fn,
            f"expected {name} in {interval}, got values in [{known.min()}, {known.max()}]",
            hint,
        )


def check_lengths(
    fn: str, lengths, batch_shape: Sequence[int], *, name: str = "lengths", of: str = "xs"
) -> None:
    """Raise `InputError` unless ``lengths`` (if given) is an int array of shape ``batch_shape``."""
    if lengths is None:
        return
    check_integer(fn, name, lengths)
    check_shape(
        fn,
        name,
        lengths,
        batch_shape,
        f"{name} has one entry per example: the batch dimensions of {of}",
    )


def check_positive_int(fn: str, name: str, value) -> None:
    """Raise `InputError` unless ``value`` is an int >= 1 (a bool is not accepted)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        fail(fn, f"expected {name} to be a positive int, got {value!r}")


def check_flag(fn: str, name: str, value) -> bool:
    """Raise `InputError` unless ``value`` is a bool (Python's or numpy's); returns it. A string
    such as "no" would otherwise count as true."""
    if not isinstance(value, bool | np.bool_):
        fail(fn, f"expected {name} to be True or False, got {value!r}")
    return bool(value)


def check_int_in(fn: str, name: str, value, low: int, high: int) -> int:
    """Raise `InputError` unless ``value`` is an int (not a bool) in [low, high); returns it."""
    is_int = isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)
    if not is_int or not low <= value < high:
        got = value if is_int else repr(value)
        fail(fn, f"expected {name} to be an int in [{low}, {high}), got {got}")
    return int(value)


# Memory a run may plan for; more is refused before anything is allocated.
MEMORY_LIMIT_BYTES = int(
    0.8 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if hasattr(os, "sysconf")
    else 16 * 2**30
)


def gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:,.1f} GiB"


def is_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def is_number(value) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def without_derivative(call, backward: str):
    """``call`` with a derivative rule that stops with a clear error. A whole-sequence kernel's
    rules differentiate its calls once; a second differentiation, which `jaxrnn.unroll` cannot
    see from inside a `jax.jit`, would otherwise end in JAX's error about a call or primitive
    without a derivative. ``backward`` names the pass, e.g. "the native kernels' backward pass"."""

    @jax.custom_jvp
    def once(*args):
        return call(*args)

    @once.defjvp
    def rule(primals, tangents):
        del primals, tangents
        fail(
            "unroll",
            f"{backward} has no derivative (a derivative of a gradient whose unroll sits inside "
            "a jax.jit, where unroll cannot see the outer one)",
            "pass implementation='fused' or 'scan' to that unroll",
        )

    return once
