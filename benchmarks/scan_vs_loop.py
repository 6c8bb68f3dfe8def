"""Compile time and run time against T: ``lax.scan`` (`jaxrnn.unroll`) against a Python loop.

    python -m benchmarks.scan_vs_loop [--quick] [--lengths 16,64,256,1024] [--timeout 120]
                                      [--out benchmarks/results] [--pin]

An LSTM on c1's batch, input and hidden sizes (B, D, H) = (32, 64, 256), forward (all hidden
states) and training step (value and gradient of the sum of all hidden states, every parameter),
both under ``jax.jit``, written two ways:

- scan: ``jaxrnn.unroll(jaxrnn.lstm(), params, xs)``, one ``lax.scan`` whatever T is;
- loop: a Python ``for`` loop over ``cell.step``, which ``jit`` unrolls into T copies of the step.

Each (way, pass, T) runs in its own process with a wall-clock limit (``--timeout``, which
includes about 3 s of start-up and the timed runs); a case that hits it is recorded as "timeout"
and the longer sequences of that way and pass are skipped. First call = trace + compile + one run;
then the median, min and max of timed calls, each on a fresh random input. The loop's outputs and
gradients are checked against the scan's.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmarks.suite import (
    ROOT,
    Policy,
    default_out,
    format_ms,
    measure,
    report_stamp,
)

SIZES = (32, 64, 256)  # (B, D, H), c1's
LENGTHS = (16, 64, 256, 1024)
QUICK_LENGTHS = (16, 64)
SMOKE_SIZES, SMOKE_LENGTHS = (4, 8, 16), (4, 8, 16)
METHODS = ("scan", "loop")
PASSES = ("forward", "train")


def run_case(method: str, which: str, n_steps: int, repeats: int, sizes) -> dict:
    """One case, in this process: times it and checks the loop against the scan."""
    import jax
    import jax.numpy as jnp

    import jaxrnn

    batch, input_size, hidden_size = sizes
    cell = jaxrnn.lstm()
    params = jax.tree.map(  # nonzero biases, so that every term of the step is exercised
        lambda p: p + 0.1, cell.init(jax.random.key(0), input_size, hidden_size)
    )

    def scan_forward(params, xs):
        return jaxrnn.unroll(cell, params, xs)[1]

    def loop_forward(params, xs):
        carry = cell.init_carry(params, (batch,))
        ys = []
        for t in range(n_steps):  # traced T times: T copies of the step in the program
            carry, y = cell.step(params, carry, xs[:, t])
            ys.append(y)
        return jnp.stack(ys, axis=1)

    def compiled(forward):
        if which == "forward":
            return jax.jit(forward)
        return jax.jit(jax.value_and_grad(lambda params, xs: forward(params, xs).sum()))

    fn = compiled(scan_forward if method == "scan" else loop_forward)
    rng = np.random.default_rng(n_steps)
    inputs = [
        jax.device_put(rng.standard_normal((batch, n_steps, input_size), dtype=np.float32))
        for _ in range(repeats + 2)
    ]
    result = measure(
        lambda x: fn(params, x),
        jax.block_until_ready,
        inputs,
        Policy(repeats, repeats, 0.0, math.inf),
        capped=False,
    )
    result["backend"] = jax.default_backend()
    result["cores"] = sorted(os.sched_getaffinity(0))
    if method == "loop":
        got = fn(params, inputs[0])
        want = compiled(scan_forward)(params, inputs[0])
        diffs = jax.tree.map(
            lambda a, b: float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))), got, want
        )
        result["max_rel_diff_vs_scan"] = max(jax.tree.leaves(diffs))
    return result


def _run_subprocess(args: list[str], timeout: float, pin: bool) -> dict:
    command = [sys.executable, "-m", "benchmarks.scan_vs_loop", "--case", *args]
    if pin:
        command = ["taskset", "-c", "0", *command]
    try:
        done = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return {"status": "timeout"}
    if done.returncode != 0:
        return {"status": "error", "error": done.stderr.strip().splitlines()[-1:]}
    return {"status": "ok", **json.loads(done.stdout.strip().splitlines()[-1])}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--case"]:
        method, which, n_steps, repeats, *sizes = argv[1:]
        result = run_case(method, which, int(n_steps), int(repeats), tuple(map(int, sizes)))
        print(json.dumps(result))
        return

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scan_vs_loop", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--quick", action="store_true", help="T = 16, 64; 5 timed calls")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--lengths", help="comma-separated sequence lengths T")
    parser.add_argument("--timeout", type=float, help="seconds per case (default 120, quick 60)")
    parser.add_argument("--out", type=Path, help="default benchmarks/results")
    parser.add_argument("--pin", action="store_true", help="run on one core (taskset -c 0)")
    args = parser.parse_args(argv)
    from benchmarks import require_native_kernels

    require_native_kernels()

    args.out = args.out or default_out(args.smoke)
    sizes = SMOKE_SIZES if args.smoke else SIZES
    if args.lengths:
        lengths = tuple(int(n) for n in args.lengths.split(","))
    else:
        lengths = SMOKE_LENGTHS if args.smoke else QUICK_LENGTHS if args.quick else LENGTHS
    quick = args.quick or args.smoke
    timeout = args.timeout or (60.0 if quick else 120.0)
    repeats = 3 if args.smoke else 5 if args.quick else 7

    rows = []
    for method in METHODS:
        for which in PASSES:
            timed_out_at = None
            for n_steps in lengths:
                if timed_out_at is not None:
                    result = {"status": f"skipped (T={timed_out_at} timed out)"}
                else:
                    case = [method, which, str(n_steps), str(repeats), *map(str, sizes)]
                    result = _run_subprocess(case, timeout, args.pin)
                    if result["status"] == "timeout":
                        timed_out_at = n_steps
                rows.append({"method": method, "pass": which, "T": n_steps, **result})
                print(f"{method:4s} {which:7s} T={n_steps:5d}  {_summary(result)}", flush=True)

    backend = next((r["backend"] for r in rows if "backend" in r), "cpu")
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        **report_stamp(),
        "sizes": sizes,
        "timeout_s": timeout,
        "repeats": repeats,
        "pinned": args.pin,
        "smoke": args.smoke,
    }
    markdown = args.out / f"scan_vs_loop_{backend}.md"
    markdown.write_text(_markdown(meta, rows, backend))
    chart = args.out / f"scan_vs_loop_{backend}.png"
    _chart(meta, rows, chart, backend)
    print(f"wrote {markdown} and {chart.name}")


def _summary(result: dict) -> str:
    if result["status"] != "ok":
        return result["status"] + (f" {result['error']}" if "error" in result else "")
    return (
        f"first call {result['first_call_s']:7.2f} s  run {format_ms(result['median_ms']):>8s} ms"
        + (
            f"  max rel |Δ| vs scan {result['max_rel_diff_vs_scan']:.1e}"
            if "max_rel_diff_vs_scan" in result
            else ""
        )
    )


def _markdown(meta: dict, rows: list[dict], backend: str) -> str:
    batch, input_size, hidden_size = meta["sizes"]
    machine = meta["machine"]
    version_text = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    cores = next((r["cores"] for r in rows if "cores" in r), machine["affinity"])
    lines = [
        f"# lax.scan against a Python loop under jit: LSTM, {backend.upper()}",
        "",
        f"{meta['date']}"
        + ("; smoke-test sizes, not a measurement" if meta["smoke"] else "")
        + f". B={batch}, D={input_size}, H={hidden_size}; one process per case, limited to "
        f"{meta['timeout_s']:.0f} s wall (start-up, compile and timed runs); cores {cores}"
        + (" (pinned with taskset)" if meta["pinned"] else "")
        + ".",
        "",
        f"Machine: {machine['cpu']}, `os.cpu_count()` = {machine['cpu_count']}. {version_text}.",
        "",
        "First call = trace + compile + one run (s); run = median [min–max] of "
        f"{meta['repeats']} timed calls (ms), each on a fresh random input, after one warm-up "
        "call. scan = `jaxrnn.unroll` (one `lax.scan`); loop = a Python `for` over `cell.step`, "
        "unrolled by `jax.jit`. Train = value and gradient of the sum of all hidden states. "
        "Max rel Δ: the loop's outputs (or loss and gradients) against the scan's, max |Δ| / "
        "max |scan| of each array.",
        "",
        "| way | pass | T | first call s | run ms | max rel Δ vs scan | status |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r["status"] == "ok":
            run = f"{format_ms(r['median_ms'])} [{format_ms(r['min_ms'])}–{format_ms(r['max_ms'])}]"
            diff = f"{r['max_rel_diff_vs_scan']:.1e}" if "max_rel_diff_vs_scan" in r else ""
            lines.append(
                f"| {r['method']} | {r['pass']} | {r['T']} | {r['first_call_s']:.2f} | {run} | "
                f"{diff} | ok |"
            )
        else:
            lines.append(f"| {r['method']} | {r['pass']} | {r['T']} | | | | {r['status']} |")
    return "\n".join(lines) + f"\n\n![scan vs loop](scan_vs_loop_{backend}.png)\n"


def _chart(meta: dict, rows: list[dict], path: Path, backend: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_compile, ax_run) = plt.subplots(1, 2, figsize=(11, 4.2))
    styles = {"scan": "-", "loop": "--"}
    colors = {"forward": "tab:blue", "train": "tab:orange"}
    for method in METHODS:
        for which in PASSES:
            case = [r for r in rows if r["method"] == method and r["pass"] == which]
            ok = [r for r in case if r["status"] == "ok"]
            label = f"{method} {which}"
            style = dict(linestyle=styles[method], color=colors[which], marker="o")
            if ok:
                steps = [r["T"] for r in ok]
                ax_compile.plot(steps, [r["first_call_s"] for r in ok], label=label, **style)
                ax_run.plot(steps, [r["median_ms"] for r in ok], label=label, **style)
            timeouts = [r["T"] for r in case if r["status"] == "timeout"]
            if timeouts:
                ax_compile.scatter(
                    timeouts,
                    [meta["timeout_s"]] * len(timeouts),
                    marker="x",
                    s=80,
                    color=colors[which],
                    label=f"{label}: timeout (> {meta['timeout_s']:.0f} s)",
                )
    for ax, title, unit in (
        (ax_compile, "first call (trace + compile + run)", "s"),
        (ax_run, "run time (median)", "ms"),
    ):
        ax.set_xscale("log")
        lengths = sorted({r["T"] for r in rows})
        ax.set_xticks(lengths, [str(n) for n in lengths])
        ax.minorticks_off()
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T")
        ax.set_ylabel(unit)
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    batch, input_size, hidden_size = meta["sizes"]
    fig.suptitle(
        f"LSTM B={batch}, D={input_size}, H={hidden_size}: lax.scan vs Python loop under jit — "
        f"{backend} ({meta['machine']['cpu']}), {meta['date']}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
