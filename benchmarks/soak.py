"""A long training run with its memory watched: resident memory must stay flat.

    python -m benchmarks.soak [--minutes 30] [--out benchmarks/results]

Trains the demo's kind of model (a 2-layer LSTM language model) on the shipped Shakespeare text
through `jaxrnn.lm_train.train_lm`, with everything a real run does: periodic evaluation,
sampling and checkpoints (every 200 steps, into a temporary folder). A thread reads the process's
resident set size (VmRSS) every 5 s. The report gives the RSS after warm-up (the first minute, or
the first quarter of a shorter run: compilation done) and at the end, the slope of a least-squares
line through the samples after warm-up, and a PNG of RSS and training loss against time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import tempfile
import threading
import time
from importlib import resources
from pathlib import Path

import numpy as np


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class Sampler(threading.Thread):
    def __init__(self, every_s: float):
        super().__init__(daemon=True)
        self.every_s, self.samples, self.stop = every_s, [], threading.Event()
        self.start_time = time.monotonic()

    def run(self):
        while not self.stop.is_set():
            self.samples.append((time.monotonic() - self.start_time, rss_mib()))
            self.stop.wait(self.every_s)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    from benchmarks import require_native_kernels

    require_native_kernels()

    import jax

    from jaxrnn.lm import LMConfig
    from jaxrnn.lm_train import TrainConfig, make_corpus, train_lm

    text = resources.files("jaxrnn").joinpath("data/shakespeare.txt").read_text()
    corpus = make_corpus(text, mode="stream")
    model = LMConfig(
        corpus.vocab.size, cell_name="lstm", hidden_size=256, num_layers=2, embedding_size=32
    )
    train = TrainConfig(
        steps=10**9,  # the time budget ends the run
        batch_size=32,
        seq_len=64,
        stateful=True,
        minutes=args.minutes,
        eval_every=500,
        eval_rows=8,
        sample_every=1000,
        checkpoint_every=200,
    )
    sampler = Sampler(every_s=5.0)
    sampler.start()
    with tempfile.TemporaryDirectory() as folder:
        result = train_lm(corpus, model, train, folder, log=lambda message: None)
    sampler.stop.set()
    sampler.join()

    t, rss = np.array(sampler.samples).T
    settle_s = min(60.0, 0.25 * t[-1])  # compilation and warm-up; a minute in a real soak
    settled = t >= settle_s
    slope = float(np.polyfit(t[settled] / 60, rss[settled], 1)[0]) if settled.sum() > 2 else None
    row = {
        "minutes": args.minutes,
        "warmup_s": settle_s,
        "steps": result.step,
        "checkpoints_written": result.step // train.checkpoint_every,
        "rss_mib_after_warmup": float(rss[settled][0]) if settled.any() else None,
        "rss_mib_at_end": float(rss[-1]),
        "rss_mib_max": float(rss.max()),
        "rss_slope_mib_per_min": slope,
        "final_train_loss": float(np.mean(result.history.loss[-200:])),
        "losses": result.history.loss,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Soak: a long training run's resident memory",
        "",
        f"{stamp}; jax {jax.__version__}; Python {platform.python_version()}; "
        f"`python -m benchmarks.soak --minutes {args.minutes:g}`; 2-layer LSTM 256 on the "
        "shipped Shakespeare, stateful truncated BPTT 32×64, evaluation every 500 steps, samples "
        "every 1000, a checkpoint every 200.",
        "",
        "| minutes | steps | checkpoints | RSS after warm-up (MiB) | RSS at end | max | "
        "slope after warm-up (MiB/min) |",
        "|---|---|---|---|---|---|---|",
        f"| {args.minutes:g} | {row['steps']:,} | {row['checkpoints_written']} | "
        f"{row['rss_mib_after_warmup']:.0f} | {row['rss_mib_at_end']:.0f} | "
        f"{row['rss_mib_max']:.0f} | {slope:+.2f} |",
    ]
    (args.out / "soak_cpu.md").write_text("\n".join(lines) + "\n")
    (args.out / "soak_cpu.json").write_text(json.dumps({**row, "samples": sampler.samples}) + "\n")
    plot(t, rss, result.history, args.out / "soak_cpu.png")
    print("\n".join(lines))


def plot(t, rss, history, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5), dpi=110, sharex=True)
    top.plot(t / 60, rss, color="tab:red")
    top.set_ylabel("resident memory (MiB)")
    top.set_ylim(0, rss.max() * 1.15)
    top.set_title("Soak: memory of a long training run")
    top.grid(alpha=0.3)
    losses = np.asarray(history.loss, float)
    seconds = history.seconds
    # training seconds per step are about even; spread the steps over the run's wall time
    steps_t = np.linspace(0, t[-1], len(losses))
    window = max(1, len(losses) // 200)
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")  # no zero-padded ends
    bottom.plot(steps_t[window - 1 :] / 60, smooth, color="tab:blue")
    bottom.set_ylabel("training loss (nats/char)")
    bottom.set_xlabel(f"minutes ({seconds / 60:.1f} of them training)")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
