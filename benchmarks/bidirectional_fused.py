"""Bidirectional LSTM: both directions in one scan (``batch_directions=True``) against two scans.

    python -m benchmarks.bidirectional_fused [--repeats 7]

c1 = (B, T, D, H) = (32, 128, 64, 256) with per-example lengths; forward (all outputs) and training
step (gradient of the sum of the outputs with respect to every parameter), under ``jax.jit``, median
of ``--repeats`` runs after a warm-up, ``block_until_ready``. Both modes are first checked to give
the same outputs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np

import jaxrnn

B, T, D, H = 32, 128, 64, 256


def median_ms(fn, *args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    from benchmarks import require_native_kernels

    require_native_kernels()
    cell = jaxrnn.lstm()
    params = jaxrnn.bidirectional_init(cell, jax.random.key(0), D, H)
    xs = jax.random.normal(jax.random.key(1), (B, T, D))
    lengths = jax.random.randint(jax.random.key(2), (B,), T // 2, T + 1)

    results = {}
    for fused in (False, True):

        def forward(params, xs, fused=fused):
            return jaxrnn.bidirectional(cell, params, xs, lengths=lengths, batch_directions=fused)[
                1
            ]

        train = jax.jit(jax.grad(lambda params, xs, f=forward: f(params, xs).sum()))
        forward = jax.jit(forward)
        with jax.default_matmul_precision("highest"):
            results[fused, "out"] = np.asarray(forward(params, xs))
        results[fused] = (
            median_ms(forward, params, xs, repeats=args.repeats),
            median_ms(train, params, xs, repeats=args.repeats),
        )
    np.testing.assert_allclose(results[True, "out"], results[False, "out"], atol=1e-5)
    device = jax.devices()[0]
    print(f"{device.platform} ({device.device_kind}), jax {jax.__version__}, c1 {(B, T, D, H)}")
    for fused in (False, True):
        fwd, trn = results[fused]
        name = "one fused scan" if fused else "two scans"
        print(f"  {name:15s} forward {fwd:8.2f} ms   train step {trn:8.2f} ms")


if __name__ == "__main__":
    main()
