"""Which `jaxrnn.unroll` options are fastest on this backend: input hoisting × scan unroll.

    python -m benchmarks.scan_options [--quick] [--out benchmarks/results]

For each configuration (batch B, length T, input D, hidden H) and cell it times the forward pass
(all hidden states from a zero carry) and a training step (value and gradient of the sum of all
hidden states with respect to every parameter), under ``jax.jit``, with ``block_until_ready``.
Warm-up (compile + first run) is excluded and reported separately; the figure is the median of
repeated runs, with min and max. All variants are first checked to compute the same outputs.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import platform
import statistics
import time
from pathlib import Path

import jax
import numpy as np

import jaxrnn

CONFIGS = {  # name: (B, T, D, H)
    "c1": (32, 128, 64, 256),
    "c2": (1, 512, 64, 128),
    "c3": (128, 64, 128, 512),
}
CELLS = {"lstm": jaxrnn.lstm(), "gru": jaxrnn.gru(reset="after")}


def _time(fn, *args, repeats: int) -> tuple[float, float, float, float]:
    """(first call s, median ms, min ms, max ms)."""
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append((time.perf_counter() - start) * 1e3)
    return first, statistics.median(times), min(times), max(times)


def _variants(cell, hoist: bool, unroll: int):
    """The scan kernel with its two knobs (`jaxrnn.kernels.sequential_one`), over the batch."""

    def one(params, x):
        carry = cell.init_carry(params)
        options = dict(reverse=False, remat=False, hoist=hoist, poison=False, unroll=unroll)
        return jaxrnn.kernels.sequential_one(cell, params, x, carry, None, **options)[1]

    def forward(params, xs):
        return jax.vmap(one, in_axes=(None, 0))(params, xs)

    def loss(params, xs):
        return forward(params, xs).sum()

    return jax.jit(forward), jax.jit(jax.value_and_grad(loss))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="c1 only, fewer repeats")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    from benchmarks import require_native_kernels

    require_native_kernels()
    configs = {"c1": CONFIGS["c1"]} if args.quick else CONFIGS
    repeats = 5 if args.quick else args.repeats

    device = jax.devices()[0]
    rows = []
    for (name, (b, t, d, h)), (cell_name, cell) in itertools.product(
        configs.items(), CELLS.items()
    ):
        params = cell.init(jax.random.key(0), d, h)
        xs = jax.random.normal(jax.random.key(1), (b, t, d))
        reference = None
        for hoist, unroll in itertools.product((False, True), (1, 4)):
            forward, train = _variants(cell, hoist, unroll)
            # Checked at full float32 precision: a GPU's default TF32 matmuls differ by ~1e-3.
            with jax.default_matmul_precision("highest"):
                out = np.asarray(forward(params, xs))
            reference = out if reference is None else reference
            np.testing.assert_allclose(out, reference, atol=1e-4)
            fwd = _time(forward, params, xs, repeats=repeats)
            trn = _time(train, params, xs, repeats=repeats)
            rows.append((name, cell_name, hoist, unroll, fwd, trn))
            print(
                f"{name} {cell_name:4s} hoist={hoist!s:5s} unroll={unroll}  "
                f"fwd {fwd[1]:8.2f} ms  train {trn[1]:8.2f} ms",
                flush=True,
            )

    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# unroll options on {device.platform.upper()} ({device.device_kind})",
        "",
        f"{stamp}; jax {jax.__version__}; Python {platform.python_version()}; "
        f"{platform.machine()}; median of {repeats} runs [min–max] in ms; first call = trace + "
        "compile + one run, in s.",
        "",
        "| config (B,T,D,H) | cell | hoist | unroll | forward ms | train ms "
        "| first call fwd/train s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, cell_name, hoist, unroll, fwd, trn in rows:
        lines.append(
            f"| {name} {CONFIGS[name]} | {cell_name} | {hoist} | {unroll} | "
            f"{fwd[1]:.2f} [{fwd[2]:.2f}–{fwd[3]:.2f}] | "
            f"{trn[1]:.2f} [{trn[2]:.2f}–{trn[3]:.2f}] | "
            f"{fwd[0]:.2f} / {trn[0]:.2f} |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"scan_options_{device.platform}.md"
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
