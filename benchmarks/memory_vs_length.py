"""Peak memory of a training step against sequence length T, with and without checkpointing.

    python -m benchmarks.memory_vs_length [--lengths 100,1000,10000] [--out benchmarks/results]

For an LSTM (B=32, D=64, H=256) the gradient of the sum of all hidden states with respect to every
parameter is compiled with ``jaxrnn.unroll(..., remat=False)``, ``remat=True`` (every step) and
``remat=k`` (every k-th step, k = ⌈√T⌉). The memory figure
is XLA's own buffer assignment for the compiled step (``compiled.memory_analysis()``): the
temporary buffers it needs at its peak, besides inputs and outputs. Without remat the backward
pass keeps every gate value of every step; with per-step remat it keeps the carry of every step
and recomputes the step; with blocks of k it keeps one carry per block and recomputes the
block. The time is the median of 3 runs of the compiled step.
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import statistics
import time
from pathlib import Path

import jax

import jaxrnn

B, D, H = 32, 64, 256


def measure(t: int, remat: bool | int) -> tuple[float, float]:
    """(peak temporary MiB, median seconds per step) of the training step at length t."""
    cell = jaxrnn.lstm()
    params = cell.init(jax.random.key(0), D, H)
    xs = jax.random.normal(jax.random.key(1), (B, t, D))

    def loss(params, xs):
        return jaxrnn.unroll(cell, params, xs, remat=remat)[1].sum()

    compiled = jax.jit(jax.grad(loss)).lower(params, xs).compile()
    mib = compiled.memory_analysis().temp_size_in_bytes / 2**20
    jax.block_until_ready(compiled(params, xs))
    times = []
    for _ in range(3):
        start = time.perf_counter()
        jax.block_until_ready(compiled(params, xs))
        times.append(time.perf_counter() - start)
    return mib, statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="100,1000,10000")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    from benchmarks import require_native_kernels

    require_native_kernels()
    lengths = [int(v) for v in args.lengths.split(",")]
    rows = {}
    modes = ("none", "step", "block")
    for t in lengths:
        block = max(2, math.ceil(math.sqrt(t)))
        for mode, remat in zip(modes, (False, True, block), strict=True):
            rows[t, mode] = measure(t, remat)
            mib, seconds = rows[t, mode]
            print(f"T={t:6d} remat={remat!s:5s} {mib:9.1f} MiB  {seconds:7.3f} s", flush=True)

    device = jax.devices()[0]
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# Training-step memory against T (LSTM B={B}, D={D}, H={H}, {device.platform})",
        "",
        f"{stamp}; jax {jax.__version__}; "
        f"Python {platform.python_version()}; XLA's peak temporary buffers for the compiled step.",
        "",
        "| T | MiB: no remat | every step | every k=⌈√T⌉ steps | s/step: no remat | every step "
        "| every k steps |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in lengths:
        (m0, s0), (m1, s1), (m2, s2) = (rows[t, mode] for mode in modes)
        lines.append(f"| {t} | {m0:.1f} | {m1:.1f} | {m2:.1f} | {s0:.3f} | {s1:.3f} | {s2:.3f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"memory_vs_length_{device.platform}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    labels = ("no remat", "remat every step", "remat every ⌈√T⌉ steps")
    for mode, label in zip(modes, labels, strict=True):
        ax.plot(lengths, [rows[t, mode][0] for t in lengths], "o-", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("peak temporary memory (MiB)")
    ax.set_title(f"LSTM training step, B={B}, H={H}")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / f"memory_vs_length_{device.platform}.png")


if __name__ == "__main__":
    main()
