"""Training steps on very long sequences (T = 10,000 and 100,000) with gradient checkpointing.

    python -m benchmarks.stress_long_sequences [--lengths 10000,100000] [--out benchmarks/results]

An LSTM (B=32, D=64, H=256, as ``memory_vs_length``) takes the gradient of the sum of all its
hidden states with ``jaxrnn.unroll(..., remat=...)``: no remat, every step (``remat=True``) and
blocks of k = ⌈√T⌉ steps. Each configuration runs in its own process, which reports

- XLA's peak temporary buffers for the compiled step (``compiled.memory_analysis()``), known
  before running it: a configuration estimated above ``--max-gib`` is compiled but not run;
- the process's peak resident memory (``ru_maxrss``: everything, compilation included);
- the compile time and the time of one step;
- the largest relative difference of its gradients from the ``remat=True`` run at the same T,
  so that checkpointing is checked at these lengths, not assumed.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path

B, D, H = 32, 64, 256
MODES = ("none", "step", "block")


def _remat(mode: str, t: int) -> bool | int:
    return {"none": False, "step": True, "block": math.ceil(math.sqrt(t))}[mode]


def worker(t: int, mode: str, max_gib: float, grads_path: str | None) -> dict:
    """Runs in a child process: compile, maybe run, and report one configuration."""
    import resource

    import jax
    import numpy as np

    import jaxrnn

    cell = jaxrnn.lstm()
    params = cell.init(jax.random.key(0), D, H)
    xs = jax.random.normal(jax.random.key(1), (B, t, D))

    def loss(params, xs):
        return jaxrnn.unroll(cell, params, xs, remat=_remat(mode, t))[1].sum()

    start = time.perf_counter()
    compiled = jax.jit(jax.grad(loss)).lower(params, xs).compile()
    compile_s = time.perf_counter() - start
    temp_gib = compiled.memory_analysis().temp_size_in_bytes / 2**30
    row = {"T": t, "mode": mode, "remat": _remat(mode, t), "xla_temp_gib": temp_gib}
    row["compile_s"] = compile_s
    if temp_gib > max_gib:
        row["ran"] = False
        return row
    start = time.perf_counter()
    grads = jax.block_until_ready(compiled(params, xs))
    row["step_s"] = time.perf_counter() - start
    row["ran"] = True
    row["finite"] = all(bool(np.isfinite(g).all()) for g in jax.tree.leaves(grads))
    flat = [np.asarray(g, np.float64) for g in jax.tree.leaves(grads)]
    if mode == "step":
        np.savez(grads_path, *flat)
    elif grads_path is not None and Path(grads_path).exists():
        reference = np.load(grads_path)
        row["max_rel_diff_vs_remat_step"] = max(
            float(np.abs(g - reference[f"arr_{i}"]).max() / np.abs(reference[f"arr_{i}"]).max())
            for i, g in enumerate(flat)
        )
    row["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return row


def run_in_child(t: int, mode: str, max_gib: float, grads_path: Path) -> dict:
    command = [sys.executable, "-m", "benchmarks.stress_long_sequences", "--worker"]
    command += [f"{t}:{mode}:{max_gib}:{grads_path}"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        return {"T": t, "mode": mode, "error": done.stderr.strip().splitlines()[-1:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _fmt(row: dict, key: str, spec: str) -> str:
    return format(row[key], spec) if key in row else "–"


def write_report(rows: list[dict], out: Path) -> None:
    import jax

    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# Long sequences: LSTM training step at T = 10k and 100k (B={B}, D={D}, H={H}, cpu)",
        "",
        f"{stamp}; jax {jax.__version__}; Python {platform.python_version()}; "
        "`python -m benchmarks.stress_long_sequences`. One process per row. XLA temp: the "
        "compiled step's peak temporary buffers; RSS: the process's peak resident memory, "
        "compilation included. Gradients compared with the `remat=True` run at the same T.",
        "",
        "| T | remat | XLA temp GiB | peak RSS GiB | compile s | step s | grads finite "
        "| max rel. diff vs remat=True |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['T']} | {row['mode']} | error: {row['error']} | | | | | |")
            continue
        ran = row["ran"]
        lines.append(
            f"| {row['T']:,} | {row['remat']} | {row['xla_temp_gib']:.2f} | "
            f"{_fmt(row, 'peak_rss_gib', '.2f') if ran else 'not run (over the limit)'} | "
            f"{row['compile_s']:.1f} | {_fmt(row, 'step_s', '.1f')} | "
            f"{row.get('finite', '–')} | {_fmt(row, 'max_rel_diff_vs_remat_step', '.1e')} |"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "stress_long_sequences_cpu.md").write_text("\n".join(lines) + "\n")
    (out / "stress_long_sequences_cpu.json").write_text(json.dumps(rows, indent=1) + "\n")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="10000,100000")
    parser.add_argument("--max-gib", type=float, default=16.0, help="run only if XLA temp below")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from benchmarks import require_native_kernels

    require_native_kernels()
    if args.worker:
        t, mode, max_gib, grads = args.worker.split(":", 3)
        print(json.dumps(worker(int(t), mode, float(max_gib), grads)))
        return
    rows = []
    scratch = args.out / ".stress_grads"
    scratch.mkdir(parents=True, exist_ok=True)
    for t in (int(v) for v in args.lengths.split(",")):
        grads_path = scratch / f"grads_{t}.npz"
        for mode in ("step", "block", "none"):  # remat=True first: the others compare to it
            row = run_in_child(t, mode, args.max_gib, grads_path)
            print(row, flush=True)
            rows.append(row)
        grads_path.unlink(missing_ok=True)
    scratch.rmdir()
    write_report(rows, args.out)


if __name__ == "__main__":
    main()
