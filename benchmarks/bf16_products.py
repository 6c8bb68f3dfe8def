"""bfloat16 on a CPU: jaxrnn's native kernels against PyTorch, in two ways of asking for it.

    python -m benchmarks.bf16_products [--quick] [--out benchmarks/results]

On CPUs with bfloat16 instructions (AMX or AVX512_BF16) both frameworks can multiply in
bfloat16 with float32 sums, asked in two ways:

- *bfloat16 products* of float32 recurrences: jaxrnn under ``jax.default_matmul_precision
  ("bfloat16")``, where the native kernels round the factors to bfloat16 (oneDNN's AMX kernels
  as they multiply, the kernels themselves before an AVX512_BF16 product; the parameters,
  inputs, outputs and gates stay float32), and PyTorch under ``torch.autocast("cpu",
  torch.bfloat16)``, where ``nn.LSTM``/``nn.GRU`` run oneDNN's RNN primitive on bfloat16 inputs
  and weights and return bfloat16 outputs;
- *bfloat16 arrays*: parameters and inputs in bfloat16. jaxrnn's native kernels multiply them as
  bfloat16 and keep the gates and the carry float32 inside the call; ``bfloat16 arrays, XLA``
  times the same arrays through the XLA kernels (jaxrnn's only path for them on other backends).
  PyTorch runs the module and inputs ``.to(torch.bfloat16)``.

Each framework runs each case in a process of its own and times its variants in turn (median
of the timed calls, after two warm-ups); the error is the largest difference from the same
framework's float32 result over the largest float32 value, for the outputs and for every
parameter's gradient (the loss is the sum of all hidden states, as in the suite).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

CONFIGS = {"c1": (32, 128, 64, 256), "c3": (128, 64, 128, 512)}  # (B, T, D, H), the suite's
CELLS = ("lstm", "gru")
FRAMEWORKS = ("jaxrnn", "torch")
VARIANTS = ("float32", "bfloat16 products", "bfloat16 arrays")  # both frameworks run these


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


def _measured(variants: dict, rounds: int, as_arrays) -> dict:
    """``variants`` (name: {"forward": call, "train": call}, "float32" among them) timed in turn
    (`_timed`), and each bfloat16 variant's largest relative difference from the float32
    result, for the outputs and for the worst parameter gradient. ``as_arrays`` turns a call's
    result into a list of float32 numpy arrays, outside the timed calls."""
    calls = {f"{v} {mode}": call for v, modes in variants.items() for mode, call in modes.items()}
    results = {
        (v, mode): as_arrays(call())
        for v, modes in variants.items()
        for mode, call in modes.items()
    }

    def error(variant: str, mode: str) -> float:
        pairs = zip(results[variant, mode], results["float32", mode], strict=True)
        return max(_relative_error(a, b) for a, b in pairs)

    errors = {
        v: {"outputs": error(v, "forward"), "gradients": error(v, "train")}
        for v in variants
        if v != "float32"
    }
    return {"seconds": _timed(calls, rounds), "errors": errors}


def jaxrnn_case(cell_name: str, sizes: tuple, rounds: int) -> dict:
    import jax
    import jax.numpy as jnp

    import jaxrnn

    batch, steps, n_in, hidden = sizes
    cell = jaxrnn.lstm() if cell_name == "lstm" else jaxrnn.gru(reset="after")
    params = cell.init(jax.random.key(0), input_size=n_in, hidden_size=hidden)
    xs = jax.random.normal(jax.random.key(1), (batch, steps, n_in), jnp.float32)
    # The XLA kernels the automatic choice takes where the native ones cannot run.
    xla = "fused" if cell_name == "lstm" else "scan"

    def compiled(precision: str, dtype, implementation=None):
        args = jax.tree.map(lambda a: a.astype(dtype), (params, xs))

        def outputs(params, xs):
            ys = jaxrnn.unroll(cell, params, xs, implementation=implementation)[1]
            return ys.astype(jnp.float32)

        def loss(params, xs):
            return jnp.sum(outputs(params, xs))

        with jax.default_matmul_precision(precision):
            forward = jax.jit(outputs).lower(*args).compile()
            train = jax.jit(jax.grad(loss)).lower(*args).compile()
        return {
            "forward": lambda: jax.block_until_ready(forward(*args)),
            "train": lambda: jax.block_until_ready(train(*args)),
        }

    variants = {
        "float32": compiled("float32", jnp.float32),
        "bfloat16 products": compiled("bfloat16", jnp.float32),
        "bfloat16 arrays": compiled("float32", jnp.bfloat16),
        "bfloat16 arrays, XLA": compiled("float32", jnp.bfloat16, xla),
    }
    return _measured(
        variants,
        rounds,
        lambda result: [np.asarray(leaf, np.float32) for leaf in jax.tree.leaves(result)],
    )


def torch_case(cell_name: str, sizes: tuple, rounds: int) -> dict:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    batch, steps, n_in, hidden = sizes
    torch.manual_seed(0)
    module = (torch.nn.LSTM if cell_name == "lstm" else torch.nn.GRU)(
        n_in, hidden, batch_first=True
    )
    xs = torch.randn(batch, steps, n_in)
    in_bf16 = type(module)(n_in, hidden, batch_first=True).to(torch.bfloat16)
    in_bf16.load_state_dict({k: v.to(torch.bfloat16) for k, v in module.state_dict().items()})
    xs_bf16 = xs.to(torch.bfloat16)

    def variant(module, xs, autocast: bool):
        def forward():  # float32 outputs, as jaxrnn's forward call returns them
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                return [module(xs)[0].float()]

        def train():
            module.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                ys = module(xs)[0]
            ys.float().sum().backward()
            return [p.grad for p in module.parameters()]

        return {"forward": forward, "train": train}

    variants = {
        "float32": variant(module, xs, False),
        "bfloat16 products": variant(module, xs, True),  # autocast
        "bfloat16 arrays": variant(in_bf16, xs_bf16, False),
    }
    return _measured(variants, rounds, lambda result: [t.float().numpy() for t in result])


def run_worker(framework: str, case: str, rounds: int, out: Path) -> None:
    config, cell = case.split("/")
    measure = jaxrnn_case if framework == "jaxrnn" else torch_case
    out.write_text(json.dumps(measure(cell, CONFIGS[config], rounds)))


def write_markdown(report: dict, path: Path) -> None:
    lines = [
        "# bfloat16 on a CPU: jaxrnn against PyTorch",
        "",
        f"{report['date']}; {report['machine']['cpu']}, {report['machine']['cpu_count']} CPUs; "
        f"jax {report['versions'].get('jax')}, torch {report['versions'].get('torch')}; "
        f"median of {report['rounds']} calls each, every variant in turn.",
        "",
        "- *bfloat16 products*: float32 arrays, products in bfloat16 with float32 sums. jaxrnn: "
        '`jax.default_matmul_precision("bfloat16")`; PyTorch: `torch.autocast("cpu", '
        "torch.bfloat16)`.",
        "- *bfloat16 arrays*: parameters and inputs in bfloat16. jaxrnn: the native kernels (the "
        "gates and the carry float32 inside the call); *XLA*: the same arrays through the XLA "
        "kernels (fused LSTM, GRU scan). PyTorch: the module and inputs `.to(torch.bfloat16)`.",
        "- Error: the largest difference from the same framework's float32 result over the "
        "largest float32 value (outputs; the worst parameter gradient).",
        "",
        "| case | framework | variant | fwd / train ms | speed-up over float32 | "
        "error outputs / gradients |",
        "|---|---|---|---|---|---|",
    ]
    for case, by_framework in report["results"].items():
        for framework, result in by_framework.items():
            s = result["seconds"]
            for variant in dict.fromkeys(key.rsplit(" ", 1)[0] for key in s):
                forward, train = s[f"{variant} forward"], s[f"{variant} train"]
                speed_up = (
                    f"{s['float32 forward'] / forward:.2f} / {s['float32 train'] / train:.2f}"
                )
                error = result["errors"].get(variant)
                error = f"{error['outputs']:.1e} / {error['gradients']:.1e}" if error else "–"
                lines.append(
                    f"| {case} | {framework} | {variant} | {1e3 * forward:.1f} / "
                    f"{1e3 * train:.1f} | {speed_up} | {error} |"
                )
    lines += ["", "jaxrnn's time over PyTorch's, forward / train:", ""]
    for case, by_framework in report["results"].items():
        if set(FRAMEWORKS) <= set(by_framework):
            mine, theirs = by_framework["jaxrnn"]["seconds"], by_framework["torch"]["seconds"]
            ratios = [
                f"{variant} {mine[f'{variant} forward'] / theirs[f'{variant} forward']:.2f} / "
                f"{mine[f'{variant} train'] / theirs[f'{variant} train']:.2f}"
                for variant in VARIANTS
            ]
            lines.append(f"- {case}: " + "; ".join(ratios))
    path.write_text("\n".join(lines) + "\n")


def write_chart(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(report["results"])
    bars = [(f, v) for f in FRAMEWORKS for v in VARIANTS]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    width = 0.8 / len(bars)
    for ax, mode in zip(axes, ("forward", "train"), strict=True):
        for i, (framework, variant) in enumerate(bars):
            values = [
                1e3 * report["results"][case][framework]["seconds"][f"{variant} {mode}"]
                if framework in report["results"][case]
                else 0.0
                for case in cases
            ]
            offset = (i - (len(bars) - 1) / 2) * width
            ax.bar(np.arange(len(cases)) + offset, values, width, label=f"{framework} {variant}")
        ax.set_xticks(np.arange(len(cases)), cases)
        ax.set_ylabel("ms (lower is better)")
        ax.set_title(f"{mode}: {report['machine']['cpu']}")
        ax.legend(fontsize=7)
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
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from benchmarks import require_native_kernels

    require_native_kernels()
    rounds = 5 if args.quick else 15
    configs = ["c1"] if args.quick else list(CONFIGS)
    if args.worker:
        run_worker(args.worker, args.case, rounds, args.worker_out)
        return {}
    # run as ``python -m``, from the root
    from benchmarks.suite import measured_in_own_process, report_stamp

    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    # A process per case: what earlier cases leave in the allocator moved the c3 LSTM's
    # bfloat16 training step from 137 to 164-213 ms (benchmarks/NOTES.md, section 24).
    for case in (f"{config}/{cell}" for config in configs for cell in CELLS):
        for framework in args.only.split(","):
            worker_args = ["--worker", framework, "--case", case]
            worker_args += ["--quick"] if args.quick else []
            results.setdefault(case, {})[framework] = measured_in_own_process(
                "benchmarks.bf16_products", worker_args, args.out
            )
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
