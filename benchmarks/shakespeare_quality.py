"""Validation loss against training time on tiny shakespeare: jaxrnn, a PyTorch LSTM, n-grams.

    python -m benchmarks.shakespeare_quality --input ../shared/data/tinyshakespeare/input.txt \\
        [--minutes 10] [--only jaxrnn,torch] [--out benchmarks/results] \\
        [--model KEY=VALUE ...] [--train KEY=VALUE ...] [--members N] [--bf16]

Split: the first 90% of the characters train, the last 10% validate. Every model is evaluated the
same way, on the whole validation split: the validation text is cut into 32 contiguous rows read
left to right in chunks of 256 characters with the recurrent state carried on, and the loss is the
mean negative log-likelihood of all n − 1 next characters, in nats. Evaluation time is excluded
from training time; compilation time (JAX) is included. Each model trains in its own process,
one after the other, with the machine otherwise idle.

Models:
- ``torch``: what a PyTorch user would write — embedding 64, ``nn.LSTM`` 2 × 256, Adam 2e-3,
  gradient norm clipped at 5, batches of 32 random windows of 128 characters, 2 threads.
- ``jaxrnn``: jaxrnn's best character model (configuration below), sized for this CPU and budget
  by ``jaxrnn_model``: the widest layer that still fits enough steps in the budget at the CPU's
  measured matmul rate (with ``--bf16``, at the measured speed-up of its training step with
  bfloat16 products, ``bf16_step_speedup``), and more dropout where float32's steps would pass
  over the text many times. Its cosine decay runs over the time budget
  (``decay_over="minutes"``), so that it ends with the budget whatever the step rate. Where half
  the budget still fits enough steps (``jaxrnn_members``: the 10-minute run on a Zen 4 EPYC or an
  AMX Xeon, and with ``--bf16`` the 5-minute run on the AMX Xeon), it trains two such models,
  each sized for and given half the budget, one after the other, and is scored as their
  mixture (`jaxrnn.lm.mixture`) once the second has finished: past about 1.42 nats a longer run
  of one model gains nothing on this text, and two models that err differently do
  (benchmarks/NOTES.md, sections 29 and 30).
- n-gram: interpolated Kneser–Ney of orders 3 to 7, drawn as horizontal lines.

``--model`` and ``--train`` change one setting of jaxrnn's model (an `LMConfig` field, e.g.
``hidden_size=640``) or of its training (a `TrainConfig` field, e.g. ``seq_len=32``) for an
experiment; such a run's files end in ``_custom``, so that the committed results stay.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

EVAL_ROWS, EVAL_CHUNK = 32, 256
MAX_STEPS = 10**7
MARKS_MIN = (2, 5, 10)

# Chosen by measuring loss against steps for a dozen candidates (cells, widths, depths, batch
# shapes, stateful or random windows, schedules, dropout), and steps per second on two CPUs.
JAXRNN_MODEL = {
    "cell_name": "lstm",
    "hidden_size": 768,  # the widest of WIDTHS; jaxrnn_model narrows it on a slower CPU
    "num_layers": 1,
    "embedding_size": 64,
    "dropout_rate": 0.1,
}
# A wider layer learns more per step and takes longer over each. In 5 minutes on an AVX2 EPYC
# (NOTES section 17): 768 units, 1,152 steps, 1.470; 640, 1,700, 1.436; 576, 2,121, 1.432; 512,
# 2,345, 1.444. On an AVX-512 EPYC 768 units ran 2,300–2,700 steps and beat 512 (5,200 steps,
# overfitted) and 1024 (section 15). On an AMX Xeon (section 26): 768, 1,850, 1.432 (1.545 at 2
# minutes, above the 6-gram); 640, 2,706, 1.426 (1.505); 576, 3,396, 1.431 (1.505). So: the
# widest layer that fits MIN_STEPS steps into the budget, a threshold that takes 640 units on
# the Xeon at any rate it measured (280–335 GFLOP/s) and costs the AVX2 EPYC 576's 0.012.
WIDTHS = (768, 640, 576, 512)
MIN_STEPS = 2100
# A measured step took 1.4–1.6 times its training FLOPs at the 2048³ matmul rate, on both CPUs.
STEP_OVER_MATMUL = 1.5
# Steps past about 7 passes over the text need more regularisation: at 4,800–5,500 steps dropout
# 0.25 ended 0.013 lower than 0.1, at 2,400 steps 0.02 higher (NOTES sections 13 and 17).
LONG_RUN_STEPS = 3600
LONG_RUN_DROPOUT = 0.25
SHAKESPEARE_VOCAB = 65
# Two models of 5 minutes each on a Zen 4 EPYC (576 units, 1,950–1,990 steps, 1.433–1.435 alone;
# 2,550–2,650 steps predicted for 512 units) mixed to 1.406, where one 10-minute model ends at
# 1.42 (NOTES section 29). Members of 512 units with 2,345 steps (1.444 alone on an AVX2 EPYC,
# section 17) would only draw level with that CPU's one model (1.414–1.418).
MEMBER_STEPS = 2500


def training_flops(hidden_size: int) -> float:
    """FLOPs of one training step (forward and backward, 3 × the forward's products) of the
    LSTM of ``hidden_size`` units and its output layer, with JAXRNN_TRAIN's batch."""
    rows = JAXRNN_TRAIN["batch_size"] * JAXRNN_TRAIN["seq_len"]
    lstm = 2 * rows * (JAXRNN_MODEL["embedding_size"] + hidden_size) * 4 * hidden_size
    head = 2 * rows * hidden_size * SHAKESPEARE_VOCAB
    return 3.0 * (lstm + head)


def predicted_steps(minutes: float, hidden_size: int, gflops: float) -> float:
    """Training steps of a ``hidden_size`` model in ``minutes`` on a CPU whose float32 matmul
    runs at ``gflops`` GFLOP/s."""
    step_s = STEP_OVER_MATMUL * training_flops(hidden_size) / (gflops * 1e9)
    return 60 * minutes / step_s


def jaxrnn_model(minutes: float, gflops: float, speedup: float = 1.0) -> dict:
    """JAXRNN_MODEL sized for ``minutes`` on a CPU whose float32 matmul runs at ``gflops`` and
    whose steps run ``speedup`` times as fast as that predicts (bfloat16 products,
    `bf16_step_speedup`): the widest of WIDTHS predicted to run MIN_STEPS steps at that speed
    (the narrowest if none is), with LONG_RUN_DROPOUT where it is predicted to run
    LONG_RUN_STEPS at the float32 rate. bfloat16's extra steps on one model flattened where
    float32's did, and dropout 0.25 for them ended no lower (NOTES sections 24 and 33)."""
    for width in WIDTHS:
        if predicted_steps(minutes, width, gflops * speedup) >= MIN_STEPS:
            break
    long_run = predicted_steps(minutes, width, gflops) >= LONG_RUN_STEPS
    dropout = LONG_RUN_DROPOUT if long_run else JAXRNN_MODEL["dropout_rate"]
    return {**JAXRNN_MODEL, "hidden_size": width, "dropout_rate": dropout}


def jaxrnn_members(minutes: float, gflops: float, speedup: float = 1.0) -> int:
    """How many models jaxrnn's run trains, one after the other, each for an equal share of
    ``minutes``, and mixes (`jaxrnn.lm.mixture`): 2 where half the budget is predicted to fit
    MEMBER_STEPS steps of the narrowest of WIDTHS at ``gflops`` and ``speedup`` (as
    `jaxrnn_model`), else 1."""
    steps = predicted_steps(minutes / 2, min(WIDTHS), gflops * speedup)
    return 2 if steps >= MEMBER_STEPS else 1


def matmul_gflops() -> float:
    """The float32 matmul rate the worker sizes the model by, in GFLOP/s."""
    from benchmarks.matmul_rate import jax_gemm_rate

    return jax_gemm_rate()


def bf16_step_speedup(corpus, hidden_size: int = 640, trial_steps: int = 8) -> float:
    """How many times as fast a training step of jaxrnn's model (JAXRNN_MODEL with
    ``hidden_size`` units, JAXRNN_TRAIN) on ``corpus`` runs with bfloat16 products as in float32
    on this machine: the ratio of the two `jaxrnn.lm_train.steps_for_minutes` trials' step times,
    ``trial_steps`` steps each. A ``--bf16`` run's width and members are chosen at the float32
    matmul rate times this (`jaxrnn_model`, `jaxrnn_members`)."""
    import jax

    from jaxrnn.lm import LMConfig
    from jaxrnn.lm_train import TrainConfig, steps_for_minutes

    model = LMConfig(vocab_size=corpus.vocab.size, **{**JAXRNN_MODEL, "hidden_size": hidden_size})
    train = TrainConfig(**{**JAXRNN_TRAIN, **benchmark_settings(0, 1.0, 60.0)})
    seconds = {}
    for precision in ("float32", "bfloat16"):
        with jax.default_matmul_precision(precision):  # the precision is fixed as it compiles
            trial = steps_for_minutes(corpus, model, train, 1.0, trial_steps=trial_steps)
        seconds[precision] = trial.seconds_per_step
    return seconds["float32"] / seconds["bfloat16"]


JAXRNN_TRAIN = {
    "batch_size": 32,  # twice the updates of 64 rows for the same characters: 0.016 lower at 5 min
    "seq_len": 64,
    "stateful": True,  # truncated BPTT: each row continues where the last chunk stopped
    "learning_rate": 6e-3,  # per step, better than 4e-3 and 8e-3 over a 5-minute schedule
    "final_learning_rate": 1e-4,
    # The cosine decay ends with the time budget. A step count fitted beforehand by a timed trial
    # (`steps_for_minutes`) ended 8–15% early whenever this shared machine ran faster after the
    # trial than during it (NOTES section 15).
    "decay_over": "minutes",
    "clip_value": 5.0,
}


def benchmark_settings(seed: int, minutes: float, eval_every: float) -> dict:
    """The `TrainConfig` fields the benchmark sets itself, which ``--train`` may not change: the
    budget, the evaluations (its curves are compared at fixed marks) and the seed."""
    return {
        "seed": seed,
        "steps": MAX_STEPS,  # the budget ends the run
        "minutes": minutes,
        "eval_every": 10**9,
        "eval_every_seconds": eval_every,
        "eval_rows": EVAL_ROWS,
        "sample_every": 0,
        "checkpoint_every": 10**9,
    }


BENCHMARK_OWNS = frozenset(benchmark_settings(0, 1.0, 1.0))


def parse_settings(pairs: list[str], fields: tuple[str, ...], flag: str) -> dict:
    """``KEY=VALUE`` strings as a dict, each VALUE a Python literal (``640``, ``0.25``, ``None``)
    or else the string itself (``gru_reset_after``); KEY must be one of ``fields``.

    Raises:
      ValueError: a pair without ``=``, or a KEY not in ``fields``; the message names ``flag``.
    """
    settings = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or key not in fields:
            raise ValueError(
                f"{flag}: expected KEY=VALUE with KEY one of {', '.join(sorted(fields))}; "
                f"got {pair!r}"
            )
        try:
            settings[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            settings[key] = text
    return settings


def model_fields() -> tuple[str, ...]:
    """The `LMConfig` fields ``--model`` may set: all but the vocabulary, which the text sets."""
    from jaxrnn.lm import LMConfig

    return tuple(f for f in LMConfig._fields if f != "vocab_size")


def train_fields() -> tuple[str, ...]:
    """The `TrainConfig` fields ``--train`` may set: all but BENCHMARK_OWNS."""
    from jaxrnn.lm_train import TrainConfig

    return tuple(f for f in TrainConfig._fields if f not in BENCHMARK_OWNS)


def split(path: Path) -> tuple[str, str]:
    text = path.read_text()
    cut = int(0.9 * len(text))
    return text[:cut], text[cut:]


# ------------------------------------------------------------------------------------- workers


def worker_torch(
    path: Path, minutes: float, eval_every: float, seed: int, bf16: bool = False
) -> list:
    """PyTorch's curve, ``[step, seconds, nats]`` rows; its forward passes under
    ``torch.autocast("cpu", torch.bfloat16)`` with ``bf16``."""
    import torch
    from torch import nn

    from jaxrnn.lm_train import stream_rows

    torch.set_num_threads(2)
    torch.manual_seed(seed)
    train_text, valid_text = split(path)
    chars = sorted(set(train_text + valid_text))
    index = {c: i for i, c in enumerate(chars)}
    train_ids = np.array([index[c] for c in train_text], np.int64)
    valid_ids = np.array([index[c] for c in valid_text], np.int64)

    class CharLSTM(nn.Module):
        def __init__(self, vocab: int):
            super().__init__()
            self.embed = nn.Embedding(vocab, 64)
            self.lstm = nn.LSTM(64, 256, num_layers=2, batch_first=True)
            self.head = nn.Linear(256, vocab)

        def forward(self, x, state=None):
            h, state = self.lstm(self.embed(x), state)
            return self.head(h), state

    model = CharLSTM(len(chars))
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    rng = np.random.default_rng(seed)
    # The very layout jaxrnn's evaluate_lm reads, so both models are scored identically.
    inputs_v, targets_v, lengths_v = (
        a.astype(np.int64) for a in stream_rows(valid_ids, EVAL_ROWS, EVAL_CHUNK)
    )

    def evaluate() -> float:
        model.eval()
        total, state = 0.0, None
        with torch.inference_mode():
            for start in range(0, inputs_v.shape[1], EVAL_CHUNK):
                cols = slice(start, start + EVAL_CHUNK)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    logits, new_state = model(torch.from_numpy(inputs_v[:, cols]), state)
                logits = logits.float()
                valid = torch.from_numpy(np.arange(EVAL_CHUNK)[None] < (lengths_v - start)[:, None])
                nll = nn.functional.cross_entropy(
                    logits.transpose(1, 2), torch.from_numpy(targets_v[:, cols]), reduction="none"
                )
                total += float(nll[valid].sum())
                # Rows that ended keep their state; only rows still running advance.
                keep = torch.from_numpy((lengths_v - start) > 0)[None, :, None]
                state = (
                    new_state
                    if state is None
                    else tuple(
                        torch.where(keep, n, o) for n, o in zip(new_state, state, strict=True)
                    )
                )
        model.train()
        return total / (len(valid_ids) - 1)

    curve, seconds, step, next_eval = [], 0.0, 0, eval_every
    while seconds < 60 * minutes:
        starts = rng.integers(0, len(train_ids) - 129, 32)
        window = train_ids[starts[:, None] + np.arange(129)]
        x, y = torch.from_numpy(window[:, :-1]), torch.from_numpy(window[:, 1:])
        begin = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits, _ = model(x)
        loss = nn.functional.cross_entropy(logits.float().reshape(-1, len(chars)), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        seconds += time.perf_counter() - begin
        step += 1
        if seconds >= next_eval or seconds >= 60 * minutes:
            curve.append([step, seconds, evaluate()])
            next_eval += eval_every
            print(f"torch   {seconds:7.1f} s  step {step:6d}  valid {curve[-1][2]:.4f}", flush=True)
    return curve


def worker_jaxrnn(
    path: Path,
    minutes: float,
    eval_every: float,
    seed: int,
    model_settings: dict | None = None,
    train_settings: dict | None = None,
    bf16: bool = False,
    members: int | None = None,
) -> dict[str, list]:
    """jaxrnn's curves, each ``[step, seconds, nats]`` rows: ``members`` models (by default
    `jaxrnn_members`), each the model `jaxrnn_model` sizes for its share of ``minutes``, trained
    one after the other with JAXRNN_TRAIN (seeds ``seed``, ``seed + 1``, …); ``model_settings``
    and ``train_settings`` replace some of their fields. With ``bf16``, under
    ``jax.default_matmul_precision("bfloat16")``, sized with `bf16_step_speedup`.

    ``"jaxrnn"`` is what the finished members give: the first member's evaluations while it
    trains, then the mixture of the members finished so far as each later one finishes. Each
    later member's own curve, alone, is ``"jaxrnn, member k alone"``. Seconds and steps run on
    from one member to the next; the choice of the model counts as training time."""
    import jax

    if bf16:  # before anything is traced
        jax.config.update("jax_default_matmul_precision", "bfloat16")
    from jaxrnn.lm import LMConfig, mixture
    from jaxrnn.lm_train import TrainConfig, evaluate_lm, make_corpus, train_lm

    begin = time.perf_counter()
    corpus = make_corpus(path.read_text(), level="char", mode="stream", valid_fraction=0.1)
    gflops = matmul_gflops()
    speedup = bf16_step_speedup(corpus) if bf16 else 1.0
    count = members or jaxrnn_members(minutes, gflops, speedup)
    settings = {**jaxrnn_model(minutes / count, gflops, speedup), **(model_settings or {})}
    shown = {**settings, "members": count, "matmul_gflops": round(gflops, 1)}
    if bf16:
        shown["bf16_step_speedup"] = round(speedup, 2)
    print(f"MODEL {json.dumps(shown)}", flush=True)
    model = LMConfig(vocab_size=corpus.vocab.size, **settings)
    curves, finished, steps, seconds = {}, [], 0, time.perf_counter() - begin
    for k in range(count):
        share = (60 * minutes - seconds) / (count - k) / 60
        own = benchmark_settings(seed + k, share, eval_every)
        config = TrainConfig(**{**JAXRNN_TRAIN, **(train_settings or {}), **own})
        result = train_lm(corpus, model, config, progress=False, log=print)
        curve = [[steps + s, seconds + t, v] for s, t, v in result.history.valid]
        steps, seconds = steps + result.step, seconds + result.history.seconds
        finished.append(result.params)
        print(f"jaxrnn  member {k + 1}: {result.step} steps in {share:.2f} min", flush=True)
        if k == 0:
            curves["jaxrnn"] = curve
        else:
            curves[f"jaxrnn, member {k + 1} alone"] = curve
            nats = evaluate_lm(mixture(finished), model, corpus, rows=EVAL_ROWS, seq_len=EVAL_CHUNK)
            curves["jaxrnn"].append([steps, seconds, nats])
    # The loop evaluates with evaluate_lm's default chunk; the torch worker reads EVAL_CHUNK.
    again = evaluate_lm(result.params, model, corpus, rows=EVAL_ROWS, seq_len=EVAL_CHUNK)
    assert abs(again - result.history.valid[-1].nats) < 1e-3
    for name, curve in curves.items():
        for s, t, v in curve:
            print(f"{name:7s} {t:7.1f} s  step {s:6d}  valid {v:.4f}", flush=True)
    return curves


def ngram_lines(path: Path) -> dict[int, float]:
    from jaxrnn import ngram

    train_text, valid_text = split(path)
    chars = sorted(set(train_text + valid_text))
    index = {c: i for i, c in enumerate(chars)}
    train_ids = np.array([index[c] for c in train_text], np.int64)
    valid_ids = np.array([index[c] for c in valid_text], np.int64)
    return {
        order: ngram.evaluate(
            ngram.fit_ngram(train_ids, len(chars), order), valid_ids
        ).nats_per_token
        for order in (3, 5, 6, 7)
    }


# ----------------------------------------------------------------------------------- the report


def at_mark(curve: list, minutes: float) -> float | None:
    """The validation loss of the last evaluation at or before ``minutes`` of training."""
    before = [v for _, t, v in curve if t <= 60 * minutes + 1.0]
    return before[-1] if before else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, required=True, help="tiny shakespeare input.txt")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--eval-every", type=float, default=10.0, help="seconds of training")
    parser.add_argument("--only", default="jaxrnn,torch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change a setting of jaxrnn's model (an LMConfig field); repeatable",
    )
    parser.add_argument(
        "--train",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change a setting of jaxrnn's training (a TrainConfig field); repeatable",
    )
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="matrix products in bfloat16: jaxrnn under jax.default_matmul_precision"
        '("bfloat16"), PyTorch under torch.autocast("cpu", torch.bfloat16)',
    )
    parser.add_argument(
        "--members",
        type=int,
        help="models jaxrnn trains one after the other, each for an equal share of the budget, "
        "then mixes (default: jaxrnn_members's rule)",
    )
    parser.add_argument("--worker", choices=["torch", "jaxrnn"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker != "torch":  # the torch worker trains no jaxrnn model
        try:
            args.model_settings = parse_settings(args.model, model_fields(), "--model")
            args.train_settings = parse_settings(args.train, train_fields(), "--train")
        except ValueError as error:
            parser.error(str(error))
    if args.members is not None and args.members < 1:
        parser.error(f"--members: expected a positive int, got {args.members}")
    from benchmarks import require_native_kernels

    require_native_kernels()
    if args.worker:
        if args.worker == "torch":
            curves = {
                "torch": worker_torch(
                    args.input, args.minutes, args.eval_every, args.seed, args.bf16
                )
            }
        else:
            curves = worker_jaxrnn(
                args.input,
                args.minutes,
                args.eval_every,
                args.seed,
                args.model_settings,
                args.train_settings,
                args.bf16,
                args.members,
            )
        print("CURVES " + json.dumps(curves))
        return

    curves, jaxrnn_settings = {}, None
    for name in args.only.split(","):
        command = [sys.executable, "-m", "benchmarks.shakespeare_quality", "--worker", name]
        command += ["--input", str(args.input), "--minutes", str(args.minutes)]
        command += ["--eval-every", str(args.eval_every), "--seed", str(args.seed)]
        command += ["--bf16"] if args.bf16 else []
        if name == "jaxrnn":
            command += [f"--model={pair}" for pair in args.model]
            command += [f"--train={pair}" for pair in args.train]
            command += [f"--members={args.members}"] if args.members else []
        output = subprocess.run(
            command, check=True, capture_output=True, text=True, env=dict(os.environ)
        ).stdout
        for line in output.splitlines():
            if line.startswith("CURVES "):
                curves.update(json.loads(line[7:]))
            elif line.startswith("MODEL "):
                jaxrnn_settings = json.loads(line[6:])
                print(f"jaxrnn  model {jaxrnn_settings}", flush=True)
            elif "valid" in line or "steps in" in line:
                print(line, flush=True)
    grams = ngram_lines(args.input)
    report(args, curves, grams, jaxrnn_settings)


def mixture_lines(jaxrnn_settings: dict | None, seed: int) -> list[str]:
    """What the report says of a run of several jaxrnn models: how they are trained and read."""
    count = (jaxrnn_settings or {}).get("members", 1)
    if count == 1:
        return []
    return [
        f"jaxrnn trains {count} such models one after the other, each for an equal share of the "
        f"budget (seeds {seed} to {seed + count - 1}). Its curve is the first model's "
        "evaluations while it trains, then, as each later model finishes, the mixture of the "
        "finished ones (`jaxrnn.lm.mixture`: each next character's distribution is the mean of "
        "theirs); 'member k alone' is the k-th model by itself.",
        "",
    ]


def report(args, curves: dict, grams: dict, jaxrnn_settings: dict | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import jax
    import matplotlib.pyplot as plt

    from benchmarks import kernels_stamp
    from benchmarks.suite import machine_info

    machine = machine_info()
    train_settings = {**JAXRNN_TRAIN, **args.train_settings}
    marks = [m for m in MARKS_MIN if m <= args.minutes]
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Tiny shakespeare: validation loss (nats/char) against training time",
        "",
        f"{stamp}; {machine['cpu']}, {machine['cpu_count']} CPUs; "
        f"Python {platform.python_version()}; jax {jax.__version__}; "
        f"one run each, one after the other, seed {args.seed}; {kernels_stamp()}.",
        "",
        "Matrix products in bfloat16 (jaxrnn: jax.default_matmul_precision; PyTorch: autocast)."
        if args.bf16
        else "float32 throughout.",
        "",
        f"jaxrnn model (sized by the matmul rate measured before it trained): "
        f"{jaxrnn_settings}, training: {train_settings}.",
        "",
        *mixture_lines(jaxrnn_settings, args.seed),
        "| model | " + " | ".join(f"{m} min" for m in marks) + " | best (at min) | steps |",
        "|---|" + "---|" * (len(marks) + 2),
    ]
    for name, curve in curves.items():
        best = min(curve, key=lambda row: row[2])
        cells = [f"{at_mark(curve, m):.4f}" if at_mark(curve, m) else "–" for m in marks]
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {best[2]:.4f} ({best[1] / 60:.1f}) "
            f"| {curve[-1][0]} |"
        )
    for order, nats in grams.items():
        lines.append(
            f"| {order}-gram, Kneser–Ney | " + " | ".join([f"{nats:.4f}"] * len(marks)) + " | | |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "shakespeare_quality"
    if args.minutes != 10:  # the default run keeps the plain name the docs show
        stem += f"_{args.minutes:g}min"
    if args.bf16:
        stem += "_bf16"
    if args.model_settings or args.train_settings or args.members:
        stem += "_custom"
    (args.out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    (args.out / f"{stem}.json").write_text(
        json.dumps(
            {
                "machine": machine,
                "curves": curves,
                "ngram": grams,
                "jaxrnn_model": jaxrnn_settings,
                "jaxrnn_train": train_settings,
                "bf16": args.bf16,
            }
        )
    )
    print("\n".join(lines))

    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    count = (jaxrnn_settings or {}).get("members", 1)
    for name, curve in curves.items():
        rows = np.asarray(curve, float)
        if "alone" in name:
            ax.plot(rows[:, 1] / 60, rows[:, 2], "--", lw=1, alpha=0.7, label=name)
            continue
        if name != "jaxrnn" or count == 1:
            ax.plot(rows[:, 1] / 60, rows[:, 2], "o-", ms=3, label=name)
            continue
        # The first member's curve; then what the finished members give: the first one alone
        # (held level) until the next finishes and their mixture is scored.
        first, mixed = rows[: -(count - 1)], rows[-(count - 1) :]
        line = ax.plot(first[:, 1] / 60, first[:, 2], "o-", ms=3, label=name)[0]
        held = np.concatenate([first[-1:], mixed])
        ax.step(held[:, 1] / 60, held[:, 2], where="post", color=line.get_color(), ls=":")
        ax.plot(mixed[:, 1] / 60, mixed[:, 2], "*", ms=12, color=line.get_color())
        ax.annotate(
            f"mixture of {count}",
            (mixed[-1, 1] / 60, mixed[-1, 2]),
            textcoords="offset points",
            xytext=(-90, -14),
        )
    best_order = min(grams, key=grams.get)
    ax.axhline(grams[best_order], color="gray", ls="--", label=f"{best_order}-gram Kneser–Ney")
    for m in marks:
        ax.axvline(m, color="lightgray", lw=0.8)
    ax.set_xlabel("training time (minutes, this CPU)")
    ax.set_ylabel("validation loss (nats/char)")
    ax.set_ylim(1.35, 2.2)
    ax.set_title("tiny shakespeare, character level")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / f"{stem}.png")
    print(f"wrote {args.out / f'{stem}.png'}")


if __name__ == "__main__":
    main()
