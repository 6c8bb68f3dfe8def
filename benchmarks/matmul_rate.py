"""The machine's float32 matrix-product rate under JAX: the suite's GEMM floor and the measure by
which the Shakespeare benchmark sizes its model."""

from __future__ import annotations

import time

import numpy as np


def jax_gemm_rate(n: int = 2048, repeats: int = 5) -> float:
    """Best float32 matmul rate of ``jax.jit(jnp.matmul)`` at n³, in GFLOP/s."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    a, b = (jax.device_put(rng.standard_normal((n, n), np.float32)) for _ in range(2))
    matmul = jax.jit(jnp.matmul)
    jax.block_until_ready(matmul(a, b))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(matmul(a, b))
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9
