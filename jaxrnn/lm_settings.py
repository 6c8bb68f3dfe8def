"""What a language-model run may be configured with, and the checks of every setting.

`TrainConfig` says how to train, and `make_lm_optimizer` builds the optimizer it describes.
`check_settings` refuses, before anything is allocated, settings
no run can use and model sizes that would not fit in memory; `checked_metadata` does the same for
the settings a checkpoint holds, before anything is built from them; `divergence` tells from the
validation losses that a run has gone wrong; `changed_settings` lists what a resumed run changed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal, NamedTuple

import optax

from jaxrnn import _checks
from jaxrnn import text as text_lib
from jaxrnn._checks import fail, gib, is_int, is_number
from jaxrnn.checkpoint import CheckpointError, config_from_json
from jaxrnn.lm import LMConfig
from jaxrnn.train import learning_rate_schedule, make_optimizer


class TrainConfig(NamedTuple):
    """How to train; saved in the checkpoint with the model's `LMConfig`."""

    steps: int = 2000
    batch_size: int = 32
    seq_len: int = 128  # stream mode: tokens per example and step
    stateful: bool = False  # stream mode: consecutive chunks, carry passed on (truncated BPTT)
    # Lines mode: several whole lines to a row, each read from a reset carry, rather than one line
    # padded to the longest (1.3-1.7x the tokens a step, 1.1-1.2x a second on a CPU, where the
    # padded steps are skipped: benchmarks/results/packing_cpu.md).
    pack: bool = True
    learning_rate: float = 2e-3
    final_learning_rate: float | None = None  # cosine decay to it at `steps`; None: constant
    warmup_steps: int = 0
    optimizer: str = "adam"
    clip_value: float | None = 5.0  # the course clips every gradient entry to [−5, 5]
    clip_norm: float | None = None
    reduce_time: Literal["mean", "sum"] = "mean"
    seed: int = 0
    minutes: float | None = None  # also stop after this much training time (evaluation excluded)
    # What the cosine decay to final_learning_rate runs over: `steps`, or the `minutes` of training
    # time, so that it ends with a time budget whatever this machine's step rate turns out to be.
    decay_over: Literal["steps", "minutes"] = "steps"
    eval_every: int = 250
    eval_every_seconds: float | None = None  # also evaluate after each such stretch of training
    sample_every: int = 500
    checkpoint_every: int = 500
    eval_rows: int = 32  # stream mode: validation read as this many contiguous rows
    max_nonfinite_steps: int = 20  # consecutive skipped updates before the run stops
    # Data parallelism over this many local devices, batch_size a multiple of it. None: as many
    # of the local devices as divide batch_size evenly (all of them when batch_size allows).
    devices: int | None = None


def make_lm_optimizer(config: TrainConfig):
    """The optax optimizer a `TrainConfig` describes (clipping first, then the update rule, at
    the rate of `jaxrnn.train.learning_rate_schedule`). With ``decay_over="minutes"`` the rate is
    a hyperparameter in the state (``optax.inject_hyperparams``) that the training loop sets
    before each step to `learning_rate_at` the training time so far."""
    if config.decay_over == "minutes":
        return optax.inject_hyperparams(
            lambda learning_rate: make_optimizer(
                learning_rate,
                name=config.optimizer,
                clip_value=config.clip_value,
                clip_norm=config.clip_norm,
            )
        )(learning_rate=config.learning_rate)
    rate = learning_rate_schedule(
        config.learning_rate,
        steps=config.steps,
        warmup_steps=config.warmup_steps,
        final=config.final_learning_rate,
    )
    return make_optimizer(
        rate, name=config.optimizer, clip_value=config.clip_value, clip_norm=config.clip_norm
    )


def learning_rate_at(config: TrainConfig, step: int, seconds: float) -> float:
    """The rate of a ``decay_over="minutes"`` run at ``step``, after ``seconds`` of training:
    a cosine from ``learning_rate`` at 0 s to ``final_learning_rate`` at ``minutes`` (flat
    after), times a linear warm-up over the first ``warmup_steps``."""
    peak = config.learning_rate
    final = peak if config.final_learning_rate is None else config.final_learning_rate
    done = min(1.0, seconds / (60.0 * config.minutes))
    rate = final + (peak - final) * 0.5 * (1.0 + math.cos(math.pi * done))
    if config.warmup_steps:
        rate *= min(1.0, step / config.warmup_steps)
    return rate


# How the command line names each setting, for messages that tell the user what to change.
CLI_NAMES = {
    "steps": "--steps",
    "batch_size": "--batch",
    "seq_len": "--seq-len",
    "pack": "--pack",
    "learning_rate": "--lr",
    "final_learning_rate": "--final-lr",
    "warmup_steps": "--warmup",
    "optimizer": "--optimizer",
    "clip_value": "--clip-value",
    "clip_norm": "--clip-norm",
    "reduce_time": "--reduce-time",
    "seed": "--seed",
    "minutes": "--minutes",
    "decay_over": "--decay-over",
    "eval_every": "--eval-every",
    "sample_every": "--sample-every",
    "checkpoint_every": "--checkpoint-every",
    "devices": "--devices",
    "vocab_size": "the vocabulary size",
    "hidden_size": "--hidden",
    "num_layers": "--layers",
    "embedding_size": "--embedding",
    "dropout_rate": "--dropout",
    "cell_name": "--cell",
}
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
MAX_COUNT = 2**31 - 1  # steps, sizes and intervals: the compiled step counts in int32


def _rules(train: TrainConfig) -> list[tuple[str, object, bool, str]]:
    """(setting, value, valid?, what a valid value is) for every setting of ``train``."""

    def positive(v):
        return is_number(v) and math.isfinite(v) and v > 0

    def count(v, least):
        return is_int(v) and v >= least

    return [
        ("steps", train.steps, count(train.steps, 1), "an int >= 1"),
        ("batch_size", train.batch_size, count(train.batch_size, 1), "an int >= 1"),
        ("seq_len", train.seq_len, count(train.seq_len, 1), "an int >= 1"),
        ("pack", train.pack, isinstance(train.pack, bool), "True or False"),
        (
            "learning_rate",
            train.learning_rate,
            positive(train.learning_rate),
            "a finite number > 0",
        ),
        (
            "final_learning_rate",
            train.final_learning_rate,
            train.final_learning_rate is None
            or (
                is_number(train.final_learning_rate)
                and math.isfinite(train.final_learning_rate)
                and train.final_learning_rate >= 0
            ),
            "None or a finite number >= 0",
        ),
        ("warmup_steps", train.warmup_steps, count(train.warmup_steps, 0), "an int >= 0"),
        ("optimizer", train.optimizer, train.optimizer in OPTIMIZERS, f"one of {OPTIMIZERS}"),
        (
            "clip_value",
            train.clip_value,
            train.clip_value is None or positive(train.clip_value),
            "None or a finite number > 0",
        ),
        (
            "clip_norm",
            train.clip_norm,
            train.clip_norm is None or positive(train.clip_norm),
            "None or a finite number > 0",
        ),
        ("reduce_time", train.reduce_time, train.reduce_time in ("mean", "sum"), "mean or sum"),
        (
            "seed",
            train.seed,
            is_int(train.seed) and 0 <= train.seed < 2**62,
            "an int in [0, 2**62)",
        ),
        (
            "minutes",
            train.minutes,
            train.minutes is None or positive(train.minutes),
            "None or a finite number > 0",
        ),
        (
            "decay_over",
            train.decay_over,
            train.decay_over in ("steps", "minutes"),
            '"steps" or "minutes"',
        ),
        ("eval_every", train.eval_every, count(train.eval_every, 1), "an int >= 1"),
        (
            "eval_every_seconds",
            train.eval_every_seconds,
            train.eval_every_seconds is None or positive(train.eval_every_seconds),
            "None or a finite number > 0",
        ),
        ("sample_every", train.sample_every, count(train.sample_every, 0), "an int >= 0"),
        (
            "checkpoint_every",
            train.checkpoint_every,
            count(train.checkpoint_every, 1),
            "an int >= 1",
        ),
        ("eval_rows", train.eval_rows, count(train.eval_rows, 1), "an int >= 1"),
        (
            "max_nonfinite_steps",
            train.max_nonfinite_steps,
            count(train.max_nonfinite_steps, 1),
            "an int >= 1",
        ),
        (
            "devices",
            train.devices,
            train.devices is None or count(train.devices, 1),
            "None or an int >= 1",
        ),
    ]


def check_settings(
    model: LMConfig | None,
    train: TrainConfig,
    *,
    fn: str = "train_lm",
    names: dict | None = None,
    time_steps: int | None = None,
) -> None:
    """Raises `InputError` for a setting no run can use — a learning rate that is NaN, zero steps,
    evaluation every 0 steps, a final learning rate above the peak (the cosine "decay" would
    rise), a warm-up as long as the run — or for a model and batch whose training step would need
    more memory than this machine has, with an estimate, before anything is allocated.

    ``names`` maps setting names to what the message calls them (the CLI passes `CLI_NAMES`);
    ``time_steps`` is the length of a training example (default: ``train.seq_len``). With
    ``model=None`` only ``train`` is checked (before the text is read and the model known).
    """
    names = names or {}
    if not isinstance(train, TrainConfig):
        fail(fn, f"expected train to be a TrainConfig, got {type(train).__name__}")
    if model is not None and not isinstance(model, LMConfig):
        fail(fn, f"expected model to be an LMConfig, got {type(model).__name__}")
    for setting, value, valid, expected in _rules(train):
        if not valid:
            fail(fn, f"expected {names.get(setting, setting)} to be {expected}, got {value!r}")
        if is_int(value) and value > MAX_COUNT and setting != "seed":
            fail(
                fn,
                f"expected {names.get(setting, setting)} at most {MAX_COUNT:,} (steps and sizes "
                f"are counted in int32), got {value!r}",
            )
    if train.decay_over == "minutes" and train.minutes is None:
        fail(
            fn,
            f"expected {names.get('minutes', 'minutes')} to be set when "
            f'{names.get("decay_over", "decay_over")} is "minutes", got None',
            "give the time budget the decay should end with",
        )
    peak, final = train.learning_rate, train.final_learning_rate
    if final is not None and final > peak:
        fail(
            fn,
            f"expected {names.get('final_learning_rate', 'final_learning_rate')} at most "
            f"{names.get('learning_rate', 'learning_rate')} = {peak!r}, got {final!r}",
            "the rate decays from the one to the other",
        )
    if train.warmup_steps and train.warmup_steps >= train.steps:
        fail(
            fn,
            f"expected {names.get('warmup_steps', 'warmup_steps')} below "
            f"{names.get('steps', 'steps')} = {train.steps}, got {train.warmup_steps}",
            "the run would end before the warm-up reached the learning rate",
        )
    if model is None:
        return
    for setting in ("vocab_size", "hidden_size", "num_layers"):
        value = getattr(model, setting)
        if not is_int(value) or value < 1:
            fail(fn, f"expected {names.get(setting, setting)} to be an int >= 1, got {value!r}")
    embedding = model.embedding_size
    if embedding is not None and (not is_int(embedding) or embedding < 1):
        fail(
            fn,
            f"expected {names.get('embedding_size', 'embedding_size')} to be None or an int >= 1"
            f", got {embedding!r}",
        )
    if not is_number(model.dropout_rate) or not 0.0 <= model.dropout_rate < 1.0:
        fail(
            fn,
            f"expected {names.get('dropout_rate', 'dropout_rate')} in [0, 1), "
            f"got {model.dropout_rate!r}",
        )
    n_params, step_bytes = estimate_memory(model, train, time_steps)
    if step_bytes > _checks.MEMORY_LIMIT_BYTES:
        hidden, batch = (
            names.get("hidden_size", "hidden_size"),
            names.get("batch_size", "batch_size"),
        )
        fail(
            fn,
            f"a training step would need about {gib(step_bytes)} ({n_params:,} parameters, "
            f"batch {train.batch_size} of {time_steps or train.seq_len} steps), more than the "
            f"{gib(_checks.MEMORY_LIMIT_BYTES)} this machine can "
            "give",
            f"use a smaller {hidden} or {batch}",
        )


def estimate_memory(model: LMConfig, train: TrainConfig, seq_len: int | None = None) -> tuple:
    """(parameter count, bytes) of a training step, roughly: parameters, gradients and two
    optimizer moments, plus the activations BPTT keeps for every step (float32)."""
    gates = {"lstm": 4, "lstm_peephole": 4, "gru": 3, "gru_reset_after": 3, "min_lstm": 3}
    g = gates.get(model.cell_name, 2)
    inputs = model.embedding_size or model.vocab_size
    hidden, vocab, layers = model.hidden_size, model.vocab_size, model.num_layers
    n_params = (
        (model.embedding_size or 0) * vocab
        + g * hidden * (inputs + hidden + 2)
        + (layers - 1) * g * hidden * (2 * hidden + 2)
        + (hidden + 1) * vocab
    )
    time_steps = train.seq_len if seq_len is None else seq_len
    per_step = train.batch_size * ((g + 2) * hidden * layers + inputs + 2 * vocab)
    return n_params, 4 * (4 * n_params + time_steps * per_step)


# LMConfig fields under the names that checkpoints written before their renaming hold
_OLD_LMCONFIG_NAMES = {"cell": "cell_name", "dropout": "dropout_rate"}


def _renamed(model: object) -> object:
    """A checkpoint's model config with the fields' current names (older files keep old ones)."""
    if not isinstance(model, dict) or set(_OLD_LMCONFIG_NAMES.values()) & set(model):
        return model
    return {_OLD_LMCONFIG_NAMES.get(name, name): value for name, value in model.items()}


def _unpacked(train: object) -> object:
    """A checkpoint's training config; files written before lines were packed padded them."""
    if isinstance(train, dict) and "pack" not in train:
        return {**train, "pack": False}
    return train


def checked_metadata(
    path: str | Path, metadata: dict
) -> tuple[LMConfig, TrainConfig, text_lib.Vocab]:
    """The model, training settings and vocabulary in a language-model checkpoint's metadata,
    each checked before anything is built from it: the configurations hold only their known
    fields, with values of the right types in ranges a model in memory can have, ``step`` and
    ``history`` are what `train_lm` writes, and the vocabulary is as large as the model's.

    Raises:
      CheckpointError: naming the file and the first entry that is wrong.
    """
    if metadata.get("kind") != "jaxrnn.lm":
        raise CheckpointError(f"{path}: not a jaxrnn language-model checkpoint")
    model = config_from_json(LMConfig, _renamed(metadata.get("model")), path, "model config")
    train = config_from_json(TrainConfig, _unpacked(metadata.get("train")), path, "training config")
    max_params, max_layers, max_int = 2**31, 256, 2**62

    def refuse(message: str) -> CheckpointError:
        return CheckpointError(f"{path}: {message}")

    for field in ("vocab_size", "hidden_size", "num_layers", "embedding_size"):
        value = getattr(model, field)
        if value is not None and not 1 <= value <= max_params:
            raise refuse(f"the model's {field} {value!r:.40} is not in [1, {max_params:,}]")
    if model.num_layers > max_layers:
        raise refuse(f"the model has {model.num_layers} layers, more than {max_layers}")
    inputs, hidden = model.embedding_size or model.vocab_size, model.hidden_size
    # at most four gates of (inputs + hidden + bias + peephole) × hidden in every layer
    n_params = (
        (model.embedding_size or 0) * model.vocab_size
        + model.num_layers * 4 * hidden * (max(inputs, hidden) + hidden + 2)
        + (hidden + 1) * model.vocab_size
    )
    if n_params > max_params:
        raise refuse(
            f"the model would have about {n_params:.3g} parameters, more than the "
            f"{max_params:,} a checkpoint may hold"
        )
    if not 0 <= model.dropout_rate < 1:
        raise refuse(f"the model's dropout_rate {model.dropout_rate} is not in [0, 1)")
    for setting, value in train._asdict().items():
        if type(value) in (int, float) and not 0 <= value <= max_int:
            raise refuse(f"the training setting {setting} {value} is not in [0, {max_int}]")
    if train.batch_size < 1:
        raise refuse(f"the training setting batch_size {train.batch_size} is not >= 1")
    mode = metadata.get("mode")
    if mode not in ("lines", "stream"):
        raise refuse(f"mode {mode!r:.40}, expected 'lines' or 'stream'")
    step = metadata.get("step")
    if type(step) is not int or not 0 <= step <= max_int:
        raise refuse(f"step {step!r:.40}, expected an int in [0, {max_int}]")

    def numbers(xs, width=None) -> bool:
        return (
            isinstance(xs, list)
            and (width is None or len(xs) == width)
            and all(type(x) in (int, float) for x in xs)
        )

    history = metadata.get("history")
    if not isinstance(history, dict):
        raise refuse(f"the history is {history!r:.40}, expected an object")
    loss, valid, seconds = history.get("loss"), history.get("valid"), history.get("seconds")
    if not numbers(loss) or len(loss) > step:
        raise refuse(f"the history's loss must be a list of at most step = {step} numbers")
    if not isinstance(valid, list) or not all(numbers(row, 3) for row in valid):
        raise refuse("the history's valid must be a list of [step, seconds, nats] rows")
    if type(seconds) not in (int, float) or not 0 <= seconds < math.inf:
        raise refuse(f"the history's seconds {seconds!r:.40} is not a number >= 0")
    for name, value in history.items():
        if not (
            type(value) in (int, float)
            or numbers(value)
            or (isinstance(value, list) and all(map(numbers, value)))
        ):
            raise refuse(f"the history's {name} is not a number or a list of numbers or rows")
    data = metadata.get("vocab")
    if not (
        isinstance(data, dict)
        and isinstance(data.get("tokens"), list)
        and all(isinstance(t, str) for t in data["tokens"])
        and isinstance(data.get("level"), str)
        and isinstance(data.get("lowercase"), bool)
    ):
        raise refuse("the vocabulary must be an object of tokens (strings), level and lowercase")
    try:
        vocab = text_lib.Vocab.from_dict(data)
    except ValueError as error:  # InputError
        raise refuse(f"the vocabulary is not valid ({error})") from None
    if vocab.size != model.vocab_size:
        raise refuse(
            f"the vocabulary has {vocab.size} tokens, the model expects vocab_size "
            f"{model.vocab_size}"
        )
    return model, train, vocab


def divergence(valid: list, baseline_nats: float, patience: int = 3) -> str | None:
    """Why the validation losses ``valid`` ([step, seconds, nats] rows) show a diverging run, or
    None: the last loss is not finite or far above the unigram ``baseline_nats`` (more than
    ``2 × baseline + 1``), or it rose at each of the last ``patience`` evaluations to above the
    baseline."""
    if not valid:
        return None
    nats = [row[2] for row in valid]
    last = nats[-1]
    if not math.isfinite(last) or last > 2 * baseline_nats + 1:
        return (
            f"validation loss {last:.4g} nats/token, far above the {baseline_nats:.3f} of "
            "token frequencies alone"
        )
    recent = nats[-(patience + 1) :]
    rising = len(recent) == patience + 1 and all(
        b > a for a, b in zip(recent[:-1], recent[1:], strict=True)
    )
    if rising and last > baseline_nats:
        return (
            f"validation loss rose at each of the last {patience} evaluations, to {last:.4f} "
            f"nats/token, above the {baseline_nats:.3f} of token frequencies alone"
        )
    return None


def changed_settings(saved: dict, asked: dict) -> list[str]:
    """``"name old -> new"`` for each setting in ``asked`` whose value differs from ``saved``'s."""
    return [
        f"{name} {saved.get(name)!r} -> {value!r}"
        for name, value in asked.items()
        if saved.get(name) != value
    ]
