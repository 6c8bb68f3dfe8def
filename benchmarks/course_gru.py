"""The course's GRU on a CPU: its native kernel against the scan it ran before, and PyTorch's GRU.

    python -m benchmarks.course_gru [--quick] [--out benchmarks/results]

``jaxrnn.gru()`` resets before the candidate's product, c̃ = tanh(W_cx x + (Γ_r * c⟨t−1⟩) W_cc
+ b_c), as the course (and Cho et al. 2014, Keras's ``reset_after=False``, Haiku's GRU) writes
it. PyTorch, Flax and cuDNN reset after the product, which is another function, so no peer here
computes it; what it is timed against:

- *before, scan*: the same cell through the XLA kernels, what the automatic choice took before
  its native kernel existed (``implementation="scan"``);
- *after, native*: ``jaxrnn.gru(reset="after")`` on its native kernel, the same sizes with one
  product a step where the course's GRU needs two;
- *torch*: PyTorch's ``nn.GRU`` (reset after), the fastest GRU most users know.

Each configuration runs a process for the native kernels, one for the scan and one for PyTorch
(the threads of each, spinning after a call, slowed the next call of another in the same
process by 30–130%), every variant in turn (median of the timed calls after two warm-ups). The
loss is the sum of every hidden state, as in the suite. The native kernel's largest difference
from the scan (outputs; the worst parameter gradient, over the largest value) is reported
beside the times.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

# (B, T, D, H): the suite's c1, c2 (one sequence) and c3
CONFIGS = {"c1": (32, 128, 64, 256), "c2": (1, 512, 64, 128), "c3": (128, 64, 128, 512)}
VARIANTS = ("before, native", "before, scan", "after, native", "torch")


def _median_seconds(calls: dict, rounds: int) -> dict:
    """Median seconds of each of ``calls`` (no-argument functions that wait for their result),
    called in turn ``rounds`` times after two warm-up rounds."""
    seconds = {name: [] for name in calls}
    for k in range(rounds + 2):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            if k >= 2:
                seconds[name].append(time.perf_counter() - start)
    return {name: float(np.median(values)) for name, values in seconds.items()}


def jaxrnn_calls(sizes: tuple, implementation: str) -> tuple[dict, dict]:
    """The forward and training calls of jaxrnn's variants that run ``implementation``
    ("native" or "scan"), and the native kernel's largest relative difference from the scan
    (outputs, gradients), computed before any call is timed."""
    import jax
    import jax.numpy as jnp

    import jaxrnn

    batch, steps, n_in, hidden = sizes
    xs = jax.random.normal(jax.random.key(1), (batch, steps, n_in), jnp.float32)
    calls, results = {}, {}
    for variant in VARIANTS[:3]:
        reset, runs = variant.split(", ")
        if reset == "after" and runs != implementation:
            continue
        cell = jaxrnn.gru(reset=reset)
        params = cell.init(jax.random.key(0), input_size=n_in, hidden_size=hidden)

        def outputs(params, xs, cell=cell, runs=runs):
            return jaxrnn.unroll(cell, params, xs, implementation=runs)[1]

        forward = jax.jit(outputs).lower(params, xs).compile()
        train = jax.jit(jax.grad(lambda p, x, f=outputs: jnp.sum(f(p, x)))).lower(params, xs)
        train = train.compile()
        if runs == implementation:
            calls[f"{variant} forward"] = lambda f=forward, p=params: jax.block_until_ready(
                f(p, xs)
            )
            calls[f"{variant} train"] = lambda f=train, p=params: jax.block_until_ready(f(p, xs))
        if reset == "before":
            results[runs] = [
                np.asarray(forward(params, xs)),
                *(np.asarray(g) for g in jax.tree.leaves(train(params, xs))),
            ]

    def relative(got, want):
        return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))

    pairs = list(zip(results["native"], results["scan"], strict=True))
    errors = {
        "outputs": relative(*pairs[0]),
        "gradients": max(relative(*pair) for pair in pairs[1:]),
    }
    return calls, errors


def torch_calls(sizes: tuple) -> dict:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    batch, steps, n_in, hidden = sizes
    torch.manual_seed(0)
    module = torch.nn.GRU(n_in, hidden, batch_first=True)
    xs = torch.randn(batch, steps, n_in)

    def forward():
        with torch.no_grad():
            return module(xs)[0]

    def train():
        module.zero_grad(set_to_none=True)
        module(xs)[0].sum().backward()

    return {"torch forward": forward, "torch train": train}


def run_worker(config: str, framework: str, rounds: int, out: Path) -> None:
    """Times ``framework``'s variants of ``config``: "torch", or jaxrnn's that run "native" or
    "scan"."""
    if framework == "torch":
        calls, errors = torch_calls(CONFIGS[config]), {}
    else:
        calls, errors = jaxrnn_calls(CONFIGS[config], framework)
    out.write_text(json.dumps({"seconds": _median_seconds(calls, rounds), "errors": errors}))


def write_markdown(report: dict, path: Path) -> None:
    lines = [
        "# The course's GRU (reset before) on a CPU",
        "",
        f"{report['date']}; {report['machine']['cpu']}, {report['machine']['cpu_count']} CPUs; "
        f"jax {report['versions'].get('jax')}, torch {report['versions'].get('torch')}; "
        f"median of {report['rounds']} calls each, every variant in turn, a process per "
        "configuration and engine. Loss: the sum of every hidden state.",
        "",
        "| config (B, T, D, H) | variant | fwd / train ms | ÷ before, native |",
        "|---|---|---|---|",
    ]
    for config, result in report["results"].items():
        s = result["seconds"]
        native = (s["before, native forward"], s["before, native train"])
        for variant in VARIANTS:
            if f"{variant} forward" not in s:
                continue
            forward, train = s[f"{variant} forward"], s[f"{variant} train"]
            lines.append(
                f"| {config} {CONFIGS[config]} | {variant} | {1e3 * forward:.1f} / "
                f"{1e3 * train:.1f} | {forward / native[0]:.2f} / {train / native[1]:.2f} |"
            )
    lines += ["", "The native kernel's largest difference from the scan, outputs / gradients:", ""]
    for config, result in report["results"].items():
        e = result["errors"]
        lines.append(f"- {config}: {e['outputs']:.1e} / {e['gradients']:.1e}")
    path.write_text("\n".join(lines) + "\n")


def write_chart(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = list(report["results"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / len(VARIANTS)
    for ax, mode in zip(axes, ("forward", "train"), strict=True):
        for i, variant in enumerate(VARIANTS):
            # each configuration's times over the native kernel's, so that c2 and c3 share an axis
            values = [
                report["results"][c]["seconds"].get(f"{variant} {mode}", 0.0)
                / report["results"][c]["seconds"][f"before, native {mode}"]
                for c in configs
            ]
            offset = (i - (len(VARIANTS) - 1) / 2) * width
            ax.bar(np.arange(len(configs)) + offset, values, width, label=variant)
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_xticks(np.arange(len(configs)), configs)
        ax.set_ylabel("time ÷ the native kernel's (lower is better)")
        ax.set_title(f"{mode}: {report['machine']['cpu']}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="c1 only, 5 calls each")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--no-torch", action="store_true", help="jaxrnn's variants alone")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--framework", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from benchmarks import require_native_kernels

    require_native_kernels()
    rounds = 5 if args.quick else 15
    if args.worker:
        run_worker(args.worker, args.framework, rounds, args.worker_out)
        return {}
    # run as ``python -m``, from the root
    from benchmarks.suite import measured_in_own_process, report_stamp

    args.out.mkdir(parents=True, exist_ok=True)
    results = {}
    frameworks = ["native", "scan"] + ([] if args.no_torch else ["torch"])
    for config in ["c1"] if args.quick else list(CONFIGS):
        results[config] = {"seconds": {}, "errors": {}}
        for framework in frameworks:
            worker_args = ["--worker", config, "--framework", framework]
            worker_args += ["--quick"] if args.quick else []
            measured = measured_in_own_process("benchmarks.course_gru", worker_args, args.out)
            results[config]["seconds"].update(measured["seconds"])
            results[config]["errors"].update(measured["errors"])
    report = {**report_stamp(), "rounds": rounds, "results": results}
    (args.out / "course_gru_cpu.json").write_text(json.dumps(report, indent=1))
    write_markdown(report, args.out / "course_gru_cpu.md")
    write_chart(report, args.out / "course_gru_cpu.png")
    print((args.out / "course_gru_cpu.md").read_text())
    return report


if __name__ == "__main__":
    main()
