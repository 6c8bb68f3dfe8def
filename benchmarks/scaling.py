"""Throughput of a data-parallel training step against the number of devices.

    python -m benchmarks.scaling [--devices 1,2,4] [--steps 10] [--out benchmarks/results]

The step is `jaxrnn.make_train_step` (Adam) on the language model `jaxrnn train` builds: an LSTM
with H = 256 over learned embeddings E = 64, vocabulary 64, sequences of T = 128 tokens (the
suite's c1 sizes). With n devices the batch is split over `jaxrnn.parallel.data_mesh(n)`
(`jaxrnn.parallel.shard_batch`), the parameters and optimizer state are replicated
(`jaxrnn.parallel.replicate`), and XLA sums the gradients with an all-reduce. Two series:

- strong scaling: the global batch is fixed (B = 32), each device gets B / n rows;
- weak scaling: each device gets 32 rows, the global batch is 32 n.

Each device count runs in its own process. When JAX's backend is the CPU, that process gets
``XLA_FLAGS=--xla_force_host_platform_device_count=n``: n simulated devices that share this
machine's cores, so the CPU numbers measure what sharding and the all-reduce cost, not the
speed-up of more hardware; on a machine with n accelerators the same script measures the real
scaling. Per device count: the
first call (trace + compile + one run) is reported as compile time, two more calls warm up, then
the median, min and max of ``--steps`` calls, each waited for with ``jax.block_until_ready`` on the
new params, optimizer state and metrics.

Writes ``scaling_<backend>.md``, ``.json`` and ``.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

VOCAB, EMBEDDING, HIDDEN, LENGTH = 64, 64, 256, 128
BATCH = 32  # strong scaling: the global batch; weak scaling: the batch of each device


def measure(devices: int, batch: int, steps: int) -> dict:
    """Times the train step on ``devices`` devices with a global batch of ``batch`` sequences."""
    import jax
    import numpy as np

    import jaxrnn
    from jaxrnn.lm import LMConfig, init_lm, lm_loss
    from jaxrnn.parallel import data_mesh, replicate, shard_batch

    model = LMConfig(VOCAB, cell_name="lstm", hidden_size=HIDDEN, embedding_size=EMBEDDING)
    optimizer = jaxrnn.make_optimizer(1e-3)

    def loss_fn(params, inputs, targets):
        return lm_loss(params, model, inputs, targets)[0]

    train_step = jaxrnn.make_train_step(loss_fn, optimizer)
    mesh = data_mesh(devices)
    params = init_lm(jax.random.key(0), model)
    params, opt_state = replicate((params, optimizer.init(params)), mesh)
    ids = np.random.default_rng(0).integers(0, VOCAB, (batch, LENGTH + 1)).astype(np.int32)
    inputs, targets = shard_batch((ids[:, :-1], ids[:, 1:]), mesh)

    def one_step():
        nonlocal params, opt_state
        start = time.perf_counter()
        params, opt_state, metrics = train_step(params, opt_state, inputs, targets)
        jax.block_until_ready((params, opt_state, metrics))
        return time.perf_counter() - start

    compile_s = one_step()
    for _ in range(2):
        one_step()
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    times = [one_step() for _ in range(steps)]
    cpu_over_wall = (time.process_time() - cpu_start) / (time.perf_counter() - wall_start)
    median = statistics.median(times)
    return {
        "devices": devices,
        "batch": batch,
        "rows_per_device": batch // devices,
        "median_s": median,
        "min_s": min(times),
        "max_s": max(times),
        "sequences_per_s": batch / median,
        "compile_s": compile_s,
        "cpu_over_wall": cpu_over_wall,
        "backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
        "device_count": jax.device_count(),
    }


def _run_worker(devices: int, batch: int, steps: int) -> dict:
    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "")
    # Only the host platform reads this flag: on a GPU machine the n devices are real ones.
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices}".strip()
    command = [sys.executable, "-m", "benchmarks.scaling", "--worker", str(devices), str(batch)]
    done = subprocess.run(
        [*command, "--steps", str(steps)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _table(rows: list[dict]) -> list[str]:
    base = rows[0]["sequences_per_s"]
    lines = [
        "| devices | global batch | rows per device | ms per step, median [min–max] | sequences/s "
        "| × 1 device | first call s | cpu/wall |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['devices']} | {r['batch']} | {r['rows_per_device']} | "
            f"{1e3 * r['median_s']:.1f} [{1e3 * r['min_s']:.1f}–{1e3 * r['max_s']:.1f}] | "
            f"{r['sequences_per_s']:.1f} | {r['sequences_per_s'] / base:.2f} | "
            f"{r['compile_s']:.2f} | {r['cpu_over_wall']:.2f} |"
        )
    return lines


def _plot(series: dict[str, list[dict]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    labels = {"strong": f"global batch {BATCH}", "weak": f"{BATCH} rows per device"}
    for name, rows in series.items():
        counts = [r["devices"] for r in rows]
        ax.plot(counts, [r["sequences_per_s"] for r in rows], "o-", label=labels[name])
    ax.set_xscale("log", base=2)
    ax.set_xticks(counts, [str(n) for n in counts])
    ax.set_xlabel("devices")
    ax.set_ylabel("sequences / s")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scaling", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--devices", default="1,2,4", help="comma-separated device counts")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per device count")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--worker", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from benchmarks import require_native_kernels

    require_native_kernels()
    if args.worker:
        print(json.dumps(measure(*args.worker, args.steps)))
        return

    counts = [int(n) for n in args.devices.split(",")]
    start = time.perf_counter()
    series = {"strong": [], "weak": []}
    for n in counts:
        for name, batch in (("strong", BATCH), ("weak", BATCH * n)):
            if name == "weak" and n == 1:
                series["weak"].append(series["strong"][0])  # the same run
                continue
            row = _run_worker(n, batch, args.steps)
            series[name].append(row)
            print(
                f"{name:6s} devices={n} batch={batch:4d} {1e3 * row['median_s']:8.1f} ms "
                f"{row['sequences_per_s']:8.1f} seq/s",
                flush=True,
            )
    first = series["strong"][0]
    backend = first["backend"]
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = "python -m benchmarks.scaling " + " ".join(argv)
    model = f"LSTM language model, V={VOCAB}, E={EMBEDDING}, H={HIDDEN}, T={LENGTH}"
    lines = [
        f"# Data-parallel training step against device count ({backend})",
        "",
        f"{stamp}; `{command.strip()}`; whole run {time.perf_counter() - start:.0f} s; "
        f"jax on {first['device_kind']}; Python {platform.python_version()}; "
        f"`os.cpu_count()` = {os.cpu_count()}.",
        "",
        f"{model}: `jaxrnn.make_train_step` with Adam, the batch split over "
        "`jaxrnn.parallel.data_mesh(n)`, "
        "params and optimizer state replicated. Median of "
        f"{args.steps} timed steps after the first call and 2 warm-up calls. × 1 device = "
        "sequences/s over the one-device run's. cpu/wall = process CPU time over wall time "
        "during the timed steps: the cores actually busy.",
        "",
    ]
    if backend == "cpu":
        lines += [
            "**Simulated devices.** On the CPU the n devices are simulated "
            "(`--xla_force_host_platform_device_count=n`) and all share the same "
            f"{os.cpu_count()} cores, so these numbers are not the speed-up that n real devices "
            "would give. They measure the overhead of splitting the batch and of the gradient "
            "all-reduce; where n devices come out faster, it is because each runs its rows on its "
            "own thread and so fills cores that one device's sequential scan leaves idle (compare "
            "cpu/wall), not because there is more hardware.",
            "",
        ]
    lines += ["## Strong scaling: global batch fixed", "", *_table(series["strong"]), ""]
    lines += ["## Weak scaling: batch per device fixed", "", *_table(series["weak"]), ""]
    args.out.mkdir(parents=True, exist_ok=True)
    name = f"scaling_{backend}"
    (args.out / f"{name}.md").write_text("\n".join(lines))
    (args.out / f"{name}.json").write_text(
        json.dumps({"date": stamp, "command": command.strip(), "model": model, **series}, indent=1)
    )
    simulated = "simulated CPU devices sharing the same cores" if backend == "cpu" else backend
    _plot(series, args.out / f"{name}.png", f"{model}\n{simulated}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
