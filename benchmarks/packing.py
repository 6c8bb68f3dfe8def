"""Packed against padded lines: tokens per second and validation loss, on names and Shakespeare.

    python -m benchmarks.packing [--quick] [--out benchmarks/results]

Lines mode pads every line of a batch to the corpus's longest; ``TrainConfig(pack=True)`` fills
the same (batch, T) rows with several whole lines, each read from a reset carry. The step's shape
is the same; on a CPU the native kernels skip the padded steps (``lengths=``) and run every step
of the packed rows (``resets=``), so packing buys real tokens per step at a cost per step.

- Throughput: the compiled training step on padded and on packed batches, called alternately
  (so that both see the same load on a shared machine); median step time, real tokens per step.
- Quality: ``train_lm`` with each, same model, schedule, seed and number of steps; the validation
  loss (nats per token over every held-out line, read one line at a time as always) at each
  evaluation, against training time and against the tokens trained on.

Corpora: the demo's names with the demo's model and settings, and the Shakespeare text shipped
with jaxrnn read as lines (each line of verse a sentence).
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from importlib import resources
from pathlib import Path

import jax
import numpy as np

from benchmarks.suite import machine_info
from jaxrnn.lm import LMConfig, lm_loss
from jaxrnn.lm_settings import make_lm_optimizer
from jaxrnn.lm_state import init_train_state
from jaxrnn.lm_train import TrainConfig, make_corpus, train_lm
from jaxrnn.text import training_batch
from jaxrnn.train import make_train_step

SETUPS = {
    "names": dict(
        file="names.txt",
        model=dict(
            cell_name="lstm", hidden_size=256, num_layers=2, embedding_size=32, dropout_rate=0.5
        ),
        train=dict(batch_size=64, learning_rate=3e-3, final_learning_rate=1e-4, clip_value=5.0),
        steps=3000,
    ),
    "shakespeare": dict(
        file="shakespeare.txt",
        model=dict(cell_name="lstm", hidden_size=256, num_layers=1, embedding_size=64),
        train=dict(batch_size=32, learning_rate=3e-3, final_learning_rate=1e-4, clip_value=5.0),
        steps=1500,
    ),
}
TIMED_ROUNDS = 30


def step_times(corpus, model, train, rounds):
    """Median seconds of one training step on padded and on packed batches, timed alternately."""

    def loss_fn(params, inputs, targets, lengths, resets):
        return lm_loss(params, model, inputs, targets, lengths=lengths, resets=resets)[0]

    step = make_train_step(loss_fn, make_lm_optimizer(train))
    state = init_train_state(model, train, corpus.mode)
    seconds = {False: [], True: []}
    tokens = {False: [], True: []}
    for k in range(rounds + 2):
        for pack in (False, True):
            batch = training_batch(
                corpus, k, batch_size=train.batch_size, seq_len=0, seed=train.seed, pack=pack
            )
            arrays = (batch.inputs, batch.targets, batch.lengths, batch.resets)
            start = time.perf_counter()
            _, _, metrics = step(state.params, state.opt_state, *arrays)
            jax.block_until_ready(metrics.loss)
            if k >= 2:  # the first calls compile
                seconds[pack].append(time.perf_counter() - start)
                tokens[pack].append(int(batch.lengths.sum()))
    return {
        pack: dict(
            step_ms=1e3 * float(np.median(seconds[pack])),
            tokens_per_step=float(np.mean(tokens[pack])),
            tokens_per_s=float(np.mean(tokens[pack]) / np.median(seconds[pack])),
        )
        for pack in (False, True)
    }


def quality(corpus, model, train):
    result = train_lm(corpus, model, train, progress="off", log=lambda _: None)
    return dict(
        valid=[[e.step, e.seconds, e.nats] for e in result.history.valid],
        seconds=result.history.seconds,
    )


def tokens_per_epoch_step(corpus, train, pack, steps=50):
    return float(
        np.mean(
            [
                training_batch(
                    corpus, k, batch_size=train.batch_size, seq_len=0, seed=train.seed, pack=pack
                ).lengths.sum()
                for k in range(steps)
            ]
        )
    )


def run(name, setup, quick):
    text = resources.files("jaxrnn").joinpath(f"data/{setup['file']}").read_text()
    corpus = make_corpus(text, level="char", mode="lines", seed=0)
    model = LMConfig(vocab_size=corpus.vocab.size, **setup["model"])
    steps = setup["steps"] // (10 if quick else 1)
    figures = {"corpus": name, "lines": len(corpus.train[0]), "width": corpus.train[0].shape[1]}
    base = TrainConfig(steps=steps, eval_every=max(steps // 6, 1), sample_every=0, **setup["train"])
    figures["throughput"] = step_times(corpus, model, base, 5 if quick else TIMED_ROUNDS)
    figures["quality"] = {}
    for pack in (False, True):
        train = base._replace(pack=pack, checkpoint_every=steps + 1)
        run_figures = quality(corpus, model, train)
        run_figures["tokens_per_step"] = tokens_per_epoch_step(corpus, train, pack)
        figures["quality"][pack] = run_figures
        print(f"{name} pack={pack}: {run_figures['valid'][-1]}", flush=True)
    return figures


def write(results, out: Path):
    out.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    stamp = (
        f"{datetime.date.today()}, {machine['cpu']}, {machine['cpu_count']} CPUs, "
        f"jax {jax.__version__}, {jax.devices()[0].platform}"
    )
    lines = [
        "# Packed against padded lines",
        "",
        f"{stamp}. `python -m benchmarks.packing`. The step's shape is the same for both; the",
        "native kernels skip the padded steps past each line's end and run every packed one.",
        "Tokens/s come from the step timed alternately on both; the training seconds are each",
        "whole run's, one after the other on a shared machine, and move with its load.",
        "",
        "| corpus | lines | width | | step (ms) | real tokens per step | tokens/s | "
        "valid nats at the end | training s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for pack in (False, True):
            t, q = r["throughput"][pack], r["quality"][pack]
            lines.append(
                f"| {r['corpus']} | {r['lines']:,} | {r['width']} | "
                f"{'packed' if pack else 'padded'} | {t['step_ms']:.1f} | "
                f"{t['tokens_per_step']:.0f} | {t['tokens_per_s']:,.0f} | "
                f"{q['valid'][-1][2]:.4f} | {q['seconds']:.0f} |"
            )
        ratio = r["throughput"][True]["tokens_per_s"] / r["throughput"][False]["tokens_per_s"]
        lines.append(f"| {r['corpus']} | | | packed ÷ padded | | | {ratio:.2f}× | | |")
    (out / "packing_cpu.md").write_text("\n".join(lines) + "\n")
    (out / "packing_cpu.json").write_text(json.dumps(results, indent=1) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(results), figsize=(5.5 * len(results), 7), squeeze=False)
    for col, r in enumerate(results):
        for pack, style in ((False, "o-"), (True, "s-")):
            q = r["quality"][pack]
            valid = np.array(q["valid"])
            label = "packed" if pack else "padded"
            axes[0, col].plot(valid[:, 1], valid[:, 2], style, label=label)
            axes[1, col].plot(
                valid[:, 0] * q["tokens_per_step"] / 1e6, valid[:, 2], style, label=label
            )
        axes[0, col].set(
            title=r["corpus"], xlabel="training seconds", ylabel="validation nats/char"
        )
        axes[1, col].set(xlabel="tokens trained on (millions)", ylabel="validation nats/char")
        for ax in axes[:, col]:
            ax.grid(alpha=0.3)
            ax.legend()
    fig.tight_layout()
    fig.savefig(out / "packing_cpu.png", dpi=110)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the steps")
    parser.add_argument("--only", default=",".join(SETUPS), help="corpora, comma-separated")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    from benchmarks import require_native_kernels

    require_native_kernels()
    results = [run(name, SETUPS[name], args.quick) for name in args.only.split(",")]
    write(results, args.out)
    print((args.out / "packing_cpu.md").read_text())


if __name__ == "__main__":
    main()
