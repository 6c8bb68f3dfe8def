"""Training-step time against sequence length: minGRU/minLSTM parallel in time vs sequential RNNs.

    python -m benchmarks.parallel_scan [--quick] [--lengths 256,1024,4096,16384] [--out DIR]

For B = 8 sequences of T steps, D = 64 input features and H = 256 hidden units, it times one
training step (value and gradient of the sum of all hidden states with respect to every parameter,
under ``jax.jit``, ``block_until_ready``) of

- ``min_gru`` and ``min_lstm`` in parallel mode (``jaxrnn.unroll``'s default for them: the gates
  of 32 steps per GEMM, then an elementwise scan over those steps),
- ``min_gru(scan="associative")``: every step's gates at once, then ``jax.lax.associative_scan``,
- ``min_gru`` in sequential mode (``implementation="scan"``: a ``lax.scan`` of its step),
- jaxrnn's sequential ``gru()`` and ``lstm()``.

Compilation (trace + compile) is timed on its own; one warm-up run follows and is excluded; the
figure is the median of ``--repeats`` runs (at least 7), with min and max. Before timing, the
parallel and sequential minGRU are checked to compute the same outputs.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time
from pathlib import Path

import jax
import numpy as np

import jaxrnn

B, D, H = 8, 64, 256
QUICK = (2, 8, 16)  # B, D, H for --quick: checks that the script runs, measures nothing
LENGTHS = (256, 1024, 4096, 16384)
QUICK_LENGTHS = (64, 256)
VARIANTS = {  # label: (cell, parallel)
    "min_gru parallel": (jaxrnn.min_gru(), True),
    "min_lstm parallel": (jaxrnn.min_lstm(), True),
    "min_gru associative": (jaxrnn.min_gru(scan="associative"), True),
    "min_gru sequential": (jaxrnn.min_gru(), False),
    "gru sequential": (jaxrnn.gru(), False),
    "lstm sequential": (jaxrnn.lstm(), False),
}


_IMPLEMENTATION = {True: "time_parallel", False: "scan"}


def _train_step(cell, parallel: bool):
    def loss(params, xs):
        return jaxrnn.unroll(cell, params, xs, implementation=_IMPLEMENTATION[parallel])[1].sum()

    return jax.jit(jax.value_and_grad(loss))


def _measure(cell, parallel: bool, params, xs, repeats: int) -> tuple[float, float, float, float]:
    """(compile s, median ms, min ms, max ms) of one training step."""
    step = _train_step(cell, parallel)
    start = time.perf_counter()
    compiled = step.lower(params, xs).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled(params, xs))  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(params, xs))
        times.append((time.perf_counter() - start) * 1e3)
    return compile_s, statistics.median(times), min(times), max(times)


def _check_modes_agree(params, xs) -> None:
    cell = jaxrnn.min_gru()
    with jax.default_matmul_precision("highest"):
        run = jax.jit(
            lambda p, x, parallel: jaxrnn.unroll(
                cell, p, x, implementation=_IMPLEMENTATION[parallel]
            )[1],
            static_argnums=2,
        )
        parallel, sequential = (np.asarray(run(params, xs, mode)) for mode in (True, False))
    np.testing.assert_allclose(parallel, sequential, rtol=1e-4, atol=1e-4)


def _plot(rows: dict, lengths, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=120)
    for label in VARIANTS:
        median = np.array([rows[t, label][1] for t in lengths])
        low = median - np.array([rows[t, label][2] for t in lengths])
        high = np.array([rows[t, label][3] for t in lengths]) - median
        style = "o-" if "parallel" in label else "s--"
        ax.errorbar(lengths, median, yerr=[low, high], fmt=style, capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(lengths, [str(t) for t in lengths])
    ax.minorticks_off()
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("training step (ms, median, min–max)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script runs")
    parser.add_argument("--lengths", help="comma-separated T values (default 256,1024,4096,16384)")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    from benchmarks import require_native_kernels

    require_native_kernels()
    if args.repeats < 7:
        parser.error("--repeats must be at least 7")
    b, d, h = QUICK if args.quick else (B, D, H)
    if args.lengths:
        lengths = [int(v) for v in args.lengths.split(",")]
    else:
        lengths = list(QUICK_LENGTHS if args.quick else LENGTHS)

    rows = {}
    for t in lengths:
        xs = jax.random.normal(jax.random.key(1), (b, t, d))
        _check_modes_agree(jaxrnn.min_gru().init(jax.random.key(0), d, h), xs)
        for label, (cell, parallel) in VARIANTS.items():
            params = cell.init(jax.random.key(0), d, h)
            rows[t, label] = _measure(cell, parallel, params, xs, args.repeats)
            compile_s, median, low, high = rows[t, label]
            print(
                f"T={t:6d} {label:19s} {median:10.2f} ms [{low:.2f}–{high:.2f}]  "
                f"compile {compile_s:.2f} s",
                flush=True,
            )

    device = jax.devices()[0]
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    sizes = f"B={b}, D={d}, H={h}"
    lines = [
        f"# Training-step time against T: parallel minGRU/minLSTM vs sequential RNNs "
        f"({device.platform.upper()}, {sizes})",
        "",
        f"{stamp}; {platform.platform()}; {os.cpu_count()} CPUs ({device.device_kind}); "
        f"jax {jax.__version__}; Python {platform.python_version()}"
        + ("; **--quick: tiny sizes, not a measurement**" if args.quick else "")
        + ".",
        "",
        "One training step: value and gradient of the sum of all hidden states with respect to "
        f"every parameter, jit, block_until_ready; median of {args.repeats} runs [min–max] in ms "
        "after one warm-up run; compile = trace + compile, in s.",
        "",
        "| T | " + " | ".join(VARIANTS) + " | gru seq / min_gru par | min_gru seq / par |",
        "|---|" + "---|" * (len(VARIANTS) + 2),
    ]
    for t in lengths:
        cells = [f"{rows[t, v][1]:.2f} [{rows[t, v][2]:.2f}–{rows[t, v][3]:.2f}]" for v in VARIANTS]
        speedup = rows[t, "gru sequential"][1] / rows[t, "min_gru parallel"][1]
        modes = rows[t, "min_gru sequential"][1] / rows[t, "min_gru parallel"][1]
        lines.append(f"| {t} | " + " | ".join(cells) + f" | {speedup:.2f}× | {modes:.2f}× |")
    lines += ["", "Compile time (s):", "", "| T | " + " | ".join(VARIANTS) + " |"]
    lines.append("|---|" + "---|" * len(VARIANTS))
    for t in lengths:
        lines.append(f"| {t} | " + " | ".join(f"{rows[t, v][0]:.2f}" for v in VARIANTS) + " |")

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"parallel_scan_{device.platform}.md"
    path.write_text("\n".join(lines) + "\n")
    _plot(rows, lengths, f"training step, {sizes} ({device.platform})", path.with_suffix(".png"))
    print("\n".join(lines))
    print(f"wrote {path} and {path.with_suffix('.png')}")


if __name__ == "__main__":
    main()
