"""The training step of the Shakespeare benchmark's model against its floor, in one process.

    python -m benchmarks.shakespeare_step --input ../shared/data/tinyshakespeare/input.txt \
        [--hidden-size 576] [--rounds 12] [--steps 5]

Times, in turn within each round (the order reversed every other round, so that a machine whose
speed drifts weighs on all alike), the model and batch of `benchmarks.shakespeare_quality`
(JAXRNN_MODEL at ``--hidden-size``, JAXRNN_TRAIN's batch of 32 × 64 characters):

- ``step``: the trainer's own training step (`jaxrnn.lm_train`, as `train_lm` runs it: its loss,
  clipping, Adam, the finite check), dropout on;
- ``gradients``: the loss and its gradients alone (the step less the update), dropout on;
- ``no dropout``: the whole step with dropout off.

Each against the floor: the step's FLOPs (`shakespeare_quality.training_flops`) at the 2048³
matmul rate measured in the same process before and after. Writes ``shakespeare_step.json``
under ``--out``.
"""

import argparse
import json
import statistics
import time
from pathlib import Path

from benchmarks.shakespeare_quality import (
    JAXRNN_MODEL,
    JAXRNN_TRAIN,
    matmul_gflops,
    training_flops,
)

VARIANTS = ("step", "gradients", "no dropout")


def build(hidden_size: int, text: str):
    """The timed calls, each ``() -> arrays``, on one batch of ``text``."""
    import jax
    import jax.numpy as jnp

    from jaxrnn import lm_train
    from jaxrnn.lm import LMConfig, init_lm, init_lm_carry
    from jaxrnn.lm_settings import make_lm_optimizer
    from jaxrnn.text import training_batch

    corpus = lm_train.make_corpus(text, level="char", mode="stream", valid_fraction=0.1)
    train = lm_train.TrainConfig(**{**JAXRNN_TRAIN, "decay_over": "steps", "steps": 10**6})
    batch = training_batch(
        corpus, 0, batch_size=train.batch_size, seq_len=train.seq_len, seed=0, stateful=True
    )
    calls = {}
    for name in VARIANTS:
        dropout = 0.0 if name == "no dropout" else JAXRNN_MODEL["dropout_rate"]
        model = LMConfig(
            vocab_size=corpus.vocab.size,
            **{**JAXRNN_MODEL, "hidden_size": hidden_size, "dropout_rate": dropout},
        )
        params = init_lm(jax.random.key(0), model)
        carry = init_lm_carry(params, model, (train.batch_size,))
        arrays = (batch.inputs, batch.targets, batch.lengths, batch.resets, carry)

        # The trainer's own loss and step (`jaxrnn.lm_train`), as `train_lm` runs them
        if name == "gradients":
            run = jax.jit(jax.value_and_grad(lm_train._loss_fn(model, train), has_aux=True))
            calls[name] = lambda run=run, p=params, a=arrays: run(p, *a, jnp.int32(7))
        else:
            step = lm_train._make_step(model, train)
            state = make_lm_optimizer(train).init(params)
            calls[name] = lambda s=step, p=params, o=state, a=arrays: s(p, o, *a, jnp.int32(7))
    return calls


def measure(hidden_size: int, rounds: int, steps: int, text: str) -> dict:
    """Median ms a call of each variant over ``rounds`` rounds of ``steps`` calls, in turn."""
    import jax

    calls = build(hidden_size, text)
    for call in calls.values():
        jax.block_until_ready(call())  # compiled and warm
    gflops_before = matmul_gflops()
    times = {name: [] for name in calls}
    for round_ in range(rounds):
        order = list(calls) if round_ % 2 == 0 else list(reversed(calls))
        for name in order:
            start = time.perf_counter()
            for _ in range(steps):
                jax.block_until_ready(calls[name]())
            times[name].append((time.perf_counter() - start) / steps * 1e3)
    gflops_after = matmul_gflops()
    floor_ms = training_flops(hidden_size) / (max(gflops_before, gflops_after) * 1e9) * 1e3
    medians = {name: statistics.median(values) for name, values in times.items()}
    return {
        "hidden_size": hidden_size,
        "rounds": rounds,
        "steps": steps,
        "matmul_gflops": [round(gflops_before, 1), round(gflops_after, 1)],
        "floor_ms": round(floor_ms, 4),
        "median_ms": {name: round(ms, 2) for name, ms in medians.items()},
        "over_floor": {name: round(ms / floor_ms, 3) for name, ms in medians.items()},
        "update_ms": round(medians["step"] - medians["gradients"], 2),
        "dropout_ms": round(medians["step"] - medians["no dropout"], 2),
        "round_ms": {name: [round(ms, 2) for ms in values] for name, values in times.items()},
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", type=Path, required=True, help="tiny shakespeare input.txt")
    parser.add_argument("--hidden-size", type=int, default=576)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--steps", type=int, default=5, help="calls timed together in a round")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    report = measure(args.hidden_size, args.rounds, args.steps, args.input.read_text())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "shakespeare_step.json").write_text(json.dumps(report, indent=1) + "\n")
    print(
        f"{args.hidden_size} units: floor {report['floor_ms']:.1f} ms at "
        f"{max(report['matmul_gflops'])} GFLOP/s; "
        + "; ".join(
            f"{name} {report['median_ms'][name]} ms ({report['over_floor'][name]}×)"
            for name in VARIANTS
        )
        + f"; update {report['update_ms']} ms, dropout {report['dropout_ms']} ms"
    )
    return report


if __name__ == "__main__":
    main()
