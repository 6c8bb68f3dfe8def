"""Test settings: float64 available for finite differences, implicit rank promotion an error.

Matmuls run at full float32 precision: on GPUs JAX's default lets float32 matmuls use TF32
(about 3 significant digits), which is a speed choice, not a correctness property under test.

Compilation is most of the suite's time (about four fifths of a file such as test_unroll), and
most programs run once or twice, on small arrays, so the suite compiles them cheaply:
``jax_disable_most_optimizations`` (LLVM at its lowest optimization level) takes about a third
off each compile, and XLA:CPU's LLVM emitters for fusions instead of its newer MLIR ones
(``--xla_cpu_use_fusion_emitters=false``) about half of what is left. XLA's graph passes, which
decide what a program computes, run as ever. And it compiles each program once: many tests build
the same program afresh (a new closure over the same function, a reference that several cases
share), so the test processes, and the processes they start (the command line, killed-and-resumed
runs, notebook kernels, the docs' examples), share one persistent compilation cache for the
session, which took a fifth off the native kernels' tests. The tests of `jaxrnn.course` turn it
off for themselves, because that module keeps its own cache only where jax's is off, and test it
both ways.

The workers also wait for OpenMP as the speed page advises on a busy machine
(``GOMP_SPINCOUNT=10000``): with GNU's default spinning, two workers running the native kernels at
once took 67 s each for the seq2seq tests that take 10 s this way.
"""

import os
import shutil
import sys
import tempfile

import jax
import pytest

_CHEAP_COMPILES = "JAX_DISABLE_MOST_OPTIMIZATIONS"
_CHEAP_FUSIONS = "--xla_cpu_use_fusion_emitters=false"
_SHARED_CACHE = "JAXRNN_TESTS_JAX_CACHE"  # the folder, set by the process that starts the workers

if _CHEAP_FUSIONS not in os.environ.get("XLA_FLAGS", ""):  # read when XLA starts, not yet
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_CHEAP_FUSIONS}".strip()

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_default_matmul_precision", "highest")
jax.config.update("jax_disable_most_optimizations", True)


def pytest_configure(config):
    if not (hasattr(config, "workerinput") or _SHARED_CACHE in os.environ):
        # The process that starts the workers, or runs the tests itself
        folder = tempfile.mkdtemp(prefix="jaxrnn-tests-jax-cache-")
        os.environ.update(
            {
                _SHARED_CACHE: folder,
                _CHEAP_COMPILES: "1",
                "JAX_COMPILATION_CACHE_DIR": folder,
                "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
                # Two workers on two cores: OpenMP threads that spin for ~1 ms after each
                # parallel region (GNU's default) take the core the other worker's kernels wait
                # for.
                "GOMP_SPINCOUNT": os.environ.get("GOMP_SPINCOUNT", "10000"),
            }
        )
        config._jaxrnn_cache_owner = folder
    # jax read its settings when this file imported it, before a lone process set them above
    jax.config.update("jax_compilation_cache_dir", os.environ[_SHARED_CACHE])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    folder = getattr(config, "_jaxrnn_cache_owner", None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
    if hasattr(config, "workerinput"):
        # A worker has sent every result by now. jax's exit handler would clear the caches of
        # the thousands of programs it compiled, which took longer than the 10 s that xdist waits
        # for a worker to end before it kills it: the suite's last 11 s. The system frees the
        # memory at once.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
