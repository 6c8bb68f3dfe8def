"""Small native calls: alone on the calling thread (the rule) against the worker thread's team.

    python -m benchmarks.small_calls [--quick] [--rounds 3] [--out benchmarks/results]

A call whose forward products take under 4 MFLOP runs alone on the thread that makes it
(`jaxrnn._native`, ``RunsOnCaller`` in ``common.h``); ``JAXRNN_SMALL_CALLS=team`` runs it on the
kernels' worker thread and its team, as every call ran before. For each cell and size below,
jitted forward and training calls (the gradient of the sum of the outputs) are timed two ways:

- *back to back*: the median of the calls made one after another for up to 0.6 s;
- *after a pause*: the median of 10 calls, each after 50 ms asleep, as calls from a notebook or
  a loop that does other work between them come.

Each setting runs in a process of its own, the two in turn, their order reversed in every other
round; a case's time is the median over the rounds. Sizes above the threshold run the same path
under both settings: their ratios show the machine's noise.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

SETTINGS = ("team", "caller")
CELLS = ("lstm", "gru", "gru_before")  # the LSTM, the reset-after GRU, the course's GRU
GATES = {"lstm": 4, "gru": 3, "gru_before": 3}
# (B, T, D, H): the course's sizes, then up to and past the threshold
SIZES = ((10, 4, 3, 5), (4, 16, 8, 16), (16, 16, 8, 16), (8, 16, 8, 32), (8, 32, 16, 32),
         (2, 64, 32, 64), (16, 32, 16, 64))  # fmt: skip
QUICK_SIZES = ((10, 4, 3, 5), (2, 64, 32, 64))
THRESHOLD_FLOPS = 4e6  # kCallerThreadFlops in jaxrnn/_native/common.h
BUDGET_SECONDS = 0.6  # of calls back to back, each mode
PAUSES = 10  # calls, each after 50 ms asleep
MEASURES = ("forward, back to back", "forward, after a pause", "train, back to back",
            "train, after a pause")  # fmt: skip


def forward_flops(cell: str, sizes: tuple) -> float:
    """The forward products' FLOPs of one call, as the kernels' rule counts them."""
    B, T, D, H = sizes
    return 2.0 * B * T * (D + H) * GATES[cell] * H


def case_flops(case: str) -> float:
    """`forward_flops` of a case named as `run_worker` names it, "cell BxTxDxH"."""
    cell, shape = case.split()
    return forward_flops(cell, tuple(map(int, shape.split("x"))))


def time_calls(cell: str, sizes: tuple) -> dict:
    """Median seconds of `MEASURES` for ``cell`` at ``sizes`` (B, T, D, H) in this process."""
    import jax
    import jax.numpy as jnp

    import jaxrnn

    unit = {"lstm": jaxrnn.lstm(), "gru": jaxrnn.gru(reset="after"), "gru_before": jaxrnn.gru()}
    B, T, D, H = sizes
    params = unit[cell].init(jax.random.key(0), D, H)
    rng = np.random.default_rng(0)
    xs = [jnp.asarray(rng.standard_normal((B, T, D)), jnp.float32) for _ in range(3)]

    def outputs(params, xs):
        return jaxrnn.unroll(unit[cell], params, xs, implementation="native")[1]

    calls = {
        "forward": jax.jit(outputs),
        "train": jax.jit(jax.grad(lambda p, xs: jnp.sum(outputs(p, xs)))),
    }
    measured = {}
    for mode, call in calls.items():
        for i in range(5):
            jax.block_until_ready(call(params, xs[i % 3]))
        seconds, spent = [], 0.0
        while spent < BUDGET_SECONDS and len(seconds) < 300:
            start = time.perf_counter()
            jax.block_until_ready(call(params, xs[len(seconds) % 3]))
            seconds.append(time.perf_counter() - start)
            spent += seconds[-1]
        measured[f"{mode}, back to back"] = statistics.median(seconds)
        after = []
        for _ in range(PAUSES):
            time.sleep(0.05)
            start = time.perf_counter()
            jax.block_until_ready(call(params, xs[0]))
            after.append(time.perf_counter() - start)
        measured[f"{mode}, after a pause"] = statistics.median(after)
    return measured


def run_worker(setting: str, sizes: list, out: Path) -> None:
    """Times every cell at every size with ``JAXRNN_SMALL_CALLS=setting`` (read at each call)."""
    os.environ["JAXRNN_SMALL_CALLS"] = setting
    results = {
        f"{cell} {'x'.join(map(str, s))}": time_calls(cell, tuple(s))
        for cell in CELLS
        for s in sizes
    }
    out.write_text(json.dumps(results))


def pooled(rounds: list[dict]) -> dict:
    """Each setting's median over the rounds, case by case and measure by measure."""
    return {
        setting: {
            case: {m: statistics.median(r[setting][case][m] for r in rounds) for m in MEASURES}
            for case in rounds[0][setting]
        }
        for setting in SETTINGS
    }


def write_markdown(report: dict, path: Path) -> None:
    times = report["pooled"]
    lines = [
        "# Small native calls: alone on the calling thread against the worker's team",
        "",
        f"{report['date']}; {report['machine']['cpu']}, {report['machine']['cpu_count']} CPUs; "
        f"jax {report['versions'].get('jax')}; {report['rounds']} rounds, each setting in a "
        "process of its own, in turn; medians (ms).",
        "",
        "*rule*: the kernels' default, a call under 4 MFLOP of forward products alone on the "
        "calling thread; *team*: `JAXRNN_SMALL_CALLS=team`, every call on the worker thread's "
        "team. Above the threshold both run the same path.",
        "",
        "| cell | B·T·D·H | MFLOP | path | " + " | ".join(MEASURES) + " |",
        "|---|---|---|---|" + "---|" * len(MEASURES),
    ]
    for case in times["team"]:
        cell, shape = case.split()
        flops = case_flops(case)
        path_taken = "alone" if flops < THRESHOLD_FLOPS else "team (both)"
        rule, team = times["caller"][case], times["team"][case]
        cells = [
            f"{1e3 * team[m]:.3f} → {1e3 * rule[m]:.3f} ({rule[m] / team[m]:.2f})" for m in MEASURES
        ]
        lines.append(
            f"| {cell} | {shape.replace('x', '·')} | {flops / 1e6:.2f} | {path_taken} | "
            + " | ".join(cells)
            + " |"
        )
    lines += ["", "Each entry: team → rule (rule ÷ team)."]
    path.write_text("\n".join(lines) + "\n")


def write_chart(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = report["pooled"]
    cases = list(times["team"])
    fig, ax = plt.subplots(figsize=(13, 5))
    width = 0.8 / len(MEASURES)
    for i, case in enumerate(cases):
        if case_flops(case) >= THRESHOLD_FLOPS:
            # both settings run the team here: what these bars show is the machine's noise
            ax.axvspan(i - 0.45, i + 0.45, color="0.9", zorder=0)
    for i, measure in enumerate(MEASURES):
        ratios = [times["caller"][c][measure] / times["team"][c][measure] for c in cases]
        offset = (i - (len(MEASURES) - 1) / 2) * width
        ax.bar(np.arange(len(cases)) + offset, ratios, width, label=measure)
    ax.axhline(1.0, color="grey", lw=0.8)
    labels = [f"{c.split()[0]} {c.split()[1].replace('x', '·')}" for c in cases]
    ax.set_xticks(np.arange(len(cases)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_xlim(-0.6, len(cases) - 0.4)
    ax.text(0.01, 0.97, "grey: above the threshold, the team either way", transform=ax.transAxes,
            va="top", fontsize=8)  # fmt: skip
    ax.set_ylabel("time with the rule ÷ with the team (lower is better)")
    ax.set_title(f"Small native calls: {report['machine']['cpu']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="two sizes, one round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--worker", choices=SETTINGS, help=argparse.SUPPRESS)
    parser.add_argument("--sizes", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from benchmarks import require_native_kernels

    require_native_kernels()
    if args.worker:
        run_worker(args.worker, json.loads(args.sizes), args.worker_out)
        return {}
    from benchmarks.suite import measured_in_own_process, report_stamp

    args.out.mkdir(parents=True, exist_ok=True)
    sizes = QUICK_SIZES if args.quick else SIZES
    rounds = []
    for r in range(1 if args.quick else args.rounds):
        order = SETTINGS if r % 2 == 0 else SETTINGS[::-1]
        worker_args = ["--sizes", json.dumps(sizes)]
        rounds.append(
            {
                s: measured_in_own_process(
                    "benchmarks.small_calls", ["--worker", s, *worker_args], args.out
                )
                for s in order
            }
        )
    report = {
        **report_stamp(),
        "rounds": len(rounds),
        "each_round": rounds,
        "pooled": pooled(rounds),
    }
    (args.out / "small_calls_cpu.json").write_text(json.dumps(report, indent=1))
    write_markdown(report, args.out / "small_calls_cpu.md")
    write_chart(report, args.out / "small_calls_cpu.png")
    print((args.out / "small_calls_cpu.md").read_text())
    return report


if __name__ == "__main__":
    main()
