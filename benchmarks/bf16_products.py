"""bfloat16 matrix products on a CPU: jaxrnn's native kernels against PyTorch's autocast.

    python -m benchmarks.bf16_products [--quick] [--out benchmarks/results]

On CPUs with bfloat16 instructions (AMX, AVX512_BF16) both frameworks can multiply float32
recurrences in bfloat16 with float32 sums: jaxrnn under ``jax.default_matmul_precision
("bfloat16")``, where the native kernels let oneDNN convert the factors as it multiplies (the
parameters, inputs, outputs and gates stay float32), and PyTorch under ``torch.autocast("cpu",
torch.bfloat16)``, where ``nn.LSTM``/``nn.GRU`` run oneDNN's RNN primitive on bfloat16 inputs
and weights and return bfloat16 outputs. Each framework runs in a process of its own and times
its float32 and its bfloat16 call alternately (median of the timed calls, after two warm-ups);
the error is the largest difference from the same framework's float32 result over the largest
float32 value, for the outputs and for every parameter's gradient (the loss is the sum of all
hidden states, as in the suite).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CONFIGS = {"c1": (32, 128, 64, 256), "c3": (128, 64, 128, 512)}  # (B, T, D, H), the suite's
CELLS = ("lstm", "gru")
FRAMEWORKS = ("jaxrnn", "torch")


def _relative_error(got, want) -> float:
    want = np.asarray(want, np.float64)
    return float(np.max(np.abs(np.asarray(got, np.float64) - want)) / np.max(np.abs(want)))


def _timed(calls: dict, rounds: int) -> dict:
    """Median seconds of each of ``calls`` (name: no-argument function that waits for its
    result), called in turn ``rounds`` times after two warm-up rounds."""
    seconds = {name: [] for name in calls}
    for k in range(rounds + 2):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            if k >= 2:
                seconds[name].append(time.perf_counter() - start)
    return {name: float(np.median(values)) for name, values in seconds.items()}


def jaxrnn_case(cell_name: str, sizes: tuple, rounds: int) -> dict:
    import jax
    import jax.numpy as jnp

    import jaxrnn

    batch, steps, n_in, hidden = sizes
    cell = jaxrnn.lstm() if cell_name == "lstm" else jaxrnn.gru(reset="after")
    params = cell.init(jax.random.key(0), input_size=n_in, hidden_size=hidden)
    xs = jax.random.normal(jax.random.key(1), (batch, steps, n_in), jnp.float32)

    def outputs(params, xs):
        return jaxrnn.unroll(cell, params, xs)[1]

    def loss(params, xs):
        return jnp.sum(outputs(params, xs))

    compiled = {}
    for precision in ("float32", "bfloat16"):
        with jax.default_matmul_precision(precision):
            compiled[precision, "forward"] = jax.jit(outputs).lower(params, xs).compile()
            compiled[precision, "train"] = jax.jit(jax.grad(loss)).lower(params, xs).compile()
    results = {key: fn(params, xs) for key, fn in compiled.items()}
    calls = {
        f"{precision} {mode}": (lambda fn=fn: jax.block_until_ready(fn(params, xs)))
        for (precision, mode), fn in compiled.items()
    }
    return {
        "seconds": _timed(calls, rounds),
        "output_error": _relative_error(
            results["bfloat16", "forward"], results["float32", "forward"]
        ),
        "gradient_error": max(
            _relative_error(a, b)
            for a, b in zip(
                jax.tree.leaves(results["bfloat16", "train"]),
                jax.tree.leaves(results["float32", "train"]),
                strict=True,
            )
        ),
    }


def torch_case(cell_name: str, sizes: tuple, rounds: int) -> dict:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    batch, steps, n_in, hidden = sizes
    torch.manual_seed(0)
    module = (torch.nn.LSTM if cell_name == "lstm" else torch.nn.GRU)(
        n_in, hidden, batch_first=True
    )
    xs = torch.randn(batch, steps, n_in)

    def forward(bf16: bool):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return module(xs)[0].float()

    def train(bf16: bool):
        module.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            ys = module(xs)[0]
        ys.float().sum().backward()
        return [p.grad.clone() for p in module.parameters()]

    calls = {
        f"{'bfloat16' if bf16 else 'float32'} {mode}": (lambda f=f, bf16=bf16: f(bf16))
        for bf16 in (False, True)
        for mode, f in (("forward", forward), ("train", train))
    }
    return {
        "seconds": _timed(calls, rounds),
        "output_error": _relative_error(forward(True).numpy(), forward(False).numpy()),
        "gradient_error": max(
            _relative_error(a.numpy(), b.numpy())
            for a, b in zip(train(True), train(False), strict=True)
        ),
    }


def run_worker(framework: str, rounds: int, configs: list[str], out: Path) -> None:
    case = jaxrnn_case if framework == "jaxrnn" else torch_case
    results = {
        f"{config}/{cell}": case(cell, CONFIGS[config], rounds)
        for config in configs
        for cell in CELLS
    }
    out.write_text(json.dumps(results))


def write_markdown(report: dict, path: Path) -> None:
    lines = [
        "# bfloat16 matrix products on a CPU: jaxrnn against PyTorch's autocast",
        "",
        f"{report['date']}; {report['machine']['cpu']}, {report['machine']['cpu_count']} CPUs; "
        f"jax {report['versions'].get('jax')}, torch {report['versions'].get('torch')}; "
        f"median of {report['rounds']} calls each, float32 and bfloat16 in turn.",
        "",
        'jaxrnn: `jax.default_matmul_precision("bfloat16")` (float32 arrays, the native '
        'kernels\' products in bfloat16); PyTorch: `torch.autocast("cpu", torch.bfloat16)`. '
        "Error: largest difference from the same framework's float32 result over the largest "
        "float32 value (outputs; the worst parameter gradient).",
        "",
        "| case | framework | float32 fwd / train ms | bfloat16 fwd / train ms | speed-up fwd / "
        "train | error outputs / gradients |",
        "|---|---|---|---|---|---|",
    ]
    for case, by_framework in report["results"].items():
        for framework, result in by_framework.items():
            s = result["seconds"]
            f32 = (s["float32 forward"], s["float32 train"])
            b16 = (s["bfloat16 forward"], s["bfloat16 train"])
            lines.append(
                f"| {case} | {framework} | {1e3 * f32[0]:.1f} / {1e3 * f32[1]:.1f} | "
                f"{1e3 * b16[0]:.1f} / {1e3 * b16[1]:.1f} | {f32[0] / b16[0]:.2f} / "
                f"{f32[1] / b16[1]:.2f} | {result['output_error']:.1e} / "
                f"{result['gradient_error']:.1e} |"
            )
    lines += ["", "jaxrnn's time over PyTorch's, each in bfloat16 (forward / train):", ""]
    for case, by_framework in report["results"].items():
        if set(FRAMEWORKS) <= set(by_framework):
            mine, theirs = by_framework["jaxrnn"]["seconds"], by_framework["torch"]["seconds"]
            lines.append(
                f"- {case}: {mine['bfloat16 forward'] / theirs['bfloat16 forward']:.2f} / "
                f"{mine['bfloat16 train'] / theirs['bfloat16 train']:.2f}"
            )
    path.write_text("\n".join(lines) + "\n")


def write_chart(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(report["results"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, mode in zip(axes, ("forward", "train"), strict=True):
        labels, width = [], 0.2
        for i, (framework, precision) in enumerate(
            (f, p) for f in FRAMEWORKS for p in ("float32", "bfloat16")
        ):
            values = [
                1e3 * report["results"][case][framework]["seconds"][f"{precision} {mode}"]
                if framework in report["results"][case]
                else 0.0
                for case in cases
            ]
            ax.bar(np.arange(len(cases)) + (i - 1.5) * width, values, width)
            labels.append(f"{framework} {precision}")
        ax.set_xticks(np.arange(len(cases)), cases)
        ax.set_ylabel("ms (lower is better)")
        ax.set_title(f"{mode}: {report['machine']['cpu']}")
        ax.legend(labels, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="c1 only, 5 calls each")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--only", default=",".join(FRAMEWORKS), help="frameworks, e.g. jaxrnn")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    rounds = 5 if args.quick else 15
    configs = ["c1"] if args.quick else list(CONFIGS)
    if args.worker:
        run_worker(args.worker, rounds, configs, args.worker_out)
        return {}
    from benchmarks.suite import report_stamp  # run as ``python -m``, from the root

    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    for framework in args.only.split(","):
        worker_out = args.out / f".bf16_products_{framework}.json"
        command = [sys.executable, "-m", "benchmarks.bf16_products", "--worker", framework]
        command += ["--worker-out", str(worker_out)] + (["--quick"] if args.quick else [])
        subprocess.run(command, check=True)
        for case, result in json.loads(worker_out.read_text()).items():
            results.setdefault(case, {})[framework] = result
        worker_out.unlink()
    report = {
        **report_stamp(),
        "rounds": rounds,
        "results": results,
    }
    (args.out / "bf16_products_cpu.json").write_text(json.dumps(report, indent=1))
    write_markdown(report, args.out / "bf16_products_cpu.md")
    write_chart(report, args.out / "bf16_products_cpu.png")
    print((args.out / "bf16_products_cpu.md").read_text())
    return report


if __name__ == "__main__":
    main()
