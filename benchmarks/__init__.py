"""jaxrnn's benchmarks: ``python -m benchmarks`` runs the suite (`benchmarks.suite`); every other
module is a script of its own (``benchmarks/README.md``).

They are run from the repository's root, so they time the ``jaxrnn`` of this checkout. Where the
native kernels are not built into it, that jaxrnn runs every cell as its ``lax.scan``: a benchmark
would then time the fallback instead of what an installed jaxrnn runs, and say nothing about it.
"""

import platform
import sys
from pathlib import Path


def kernels_stamp() -> str:
    """Which jaxrnn the benchmark imports and whether its native kernels load, for reports."""
    import jaxrnn
    from jaxrnn import _native

    reason = _native.unavailable_reason()
    state = "native kernels loaded" if reason is None else f"no native kernels: {reason}"
    return f"jaxrnn from {Path(jaxrnn.__file__).parent}, {state}"


def require_native_kernels() -> None:
    """Exits with what to do where jaxrnn builds native kernels (Linux x86-64) but the imported
    jaxrnn has none: a source checkout that was never built, whose timings would be the scan's.
    On a GPU the native kernels are not used, and nothing is required."""
    if sys.platform != "linux" or platform.machine() != "x86_64":
        return
    import jax

    if jax.default_backend() != "cpu":
        return
    from jaxrnn import _native

    if _native.available():
        return
    raise SystemExit(
        f"benchmarks: {kernels_stamp()}, so jaxrnn would run the lax.scan fallback instead of "
        "its kernels. Build them into this checkout first: `make bench`, `make test` or `make "
        "demo` does (each copies the kernels it builds into jaxrnn/_native/), or `python "
        "setup.py build_ext --inplace`."
    )
