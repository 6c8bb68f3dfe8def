"""Training a language model on a text: corpus, training loop, evaluation, checkpoints, plots.

`train_lm` is what ``jaxrnn train`` and the demo run. Everything a run depends on is a pure
function of ``(seed, step)`` — the batch, the dropout key — and the checkpoint holds the params,
optimizer state, carry and loss history, so a run resumed from a checkpoint continues exactly as if
it had never stopped (bit for bit on CPU). Ctrl-C or SIGTERM saves a checkpoint before exiting.

Validation loss is the mean negative log-likelihood per predicted token, in nats; perplexity is
its exponential, exp(−(1/N) Σ log P(y⟨t⟩ | y⟨<t⟩)).

With several local devices (GPUs, or simulated CPU devices) each step is data-parallel
(`jaxrnn.parallel`): the batch and the carry are split by rows over the devices, params and
optimizer state are replicated, and XLA sums the gradients. Checkpoints hold whole arrays, so a run
saved on n devices resumes on any other count; the losses then agree with an uninterrupted run to
float rounding, since n devices add the gradient's terms in another order.
"""

from __future__ import annotations

import contextlib
import functools
import math
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrnn import lm_settings, ngram, parallel, runs
from jaxrnn import progress as progress_lib
from jaxrnn import text as text_lib
from jaxrnn._checks import fail
from jaxrnn.checkpoint import (
    CheckpointError,
    atomic_output,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)
from jaxrnn.lm import (
    LMConfig,
    LMParams,
    init_lm,
    init_lm_carry,
    lm_apply,
    lm_loss,
    sample,
    teacher_forcing_inputs,
)
from jaxrnn.lm_settings import TrainConfig
from jaxrnn.losses import sequence_mask
from jaxrnn.train import make_optimizer, make_train_step

__all__ = [  # TrainConfig is defined in jaxrnn.lm_settings, with the checks of its fields
    "CHECKPOINT_NAME",
    "Corpus",
    "TrainConfig",
    "TrainResult",
    "evaluate_lm",
    "load_lm",
    "make_corpus",
    "make_lm_optimizer",
    "ngram_baseline",
    "perplexity",
    "plot_history",
    "stream_rows",
    "train_lm",
]

CHECKPOINT_NAME = runs.CHECKPOINT_NAME


class Corpus(NamedTuple):
    """A text prepared for a language model.

    ``mode="lines"``: each line is a sentence (a name, a sentence); ``train`` and ``valid`` are
    ``(targets (N, T) int32, lengths (N,) int32)``, each line followed by ⟨EOS⟩ and right-padded.
    ``mode="stream"``: the text is one long sequence; ``train`` and ``valid`` are ``(ids (n,),)``.
    """

    vocab: text_lib.Vocab
    mode: Literal["lines", "stream"]
    train: tuple
    valid: tuple


def make_corpus(
    text: str,
    *,
    level: text_lib.Level = "char",
    mode: Literal["lines", "stream"] = "lines",
    valid_fraction: float = 0.1,
    max_vocab: int | None = None,
    min_count: int = 1,
    lowercase: bool = False,
    max_len: int | None = None,
    seed: int = 0,
) -> Corpus:
    """Splits ``text`` into training and validation parts and encodes both with a vocabulary built
    on the training part (so validation may hold ⟨UNK⟩).

    Lines mode shuffles the non-empty lines with ``seed`` before the split; stream mode takes the
    first ``1 − valid_fraction`` of the characters for training and the rest for validation.
    ``max_len`` truncates long lines (lines mode; ⟨EOS⟩ included).
    """
    fn = "make_corpus"
    if mode not in ("lines", "stream"):
        fail(fn, f"expected mode 'lines' or 'stream', got {mode!r}")
    if not lm_settings.is_number(valid_fraction) or not 0 < valid_fraction < 1:
        fail(fn, f"expected valid_fraction strictly between 0 and 1, got {valid_fraction!r}")
    if max_len is not None and (not lm_settings.is_int(max_len) or max_len < 1):
        fail(fn, f"expected max_len None or an int >= 1, got {max_len!r}")
    if mode == "lines":
        lines = [line for line in text.splitlines() if line.strip()]
        if len(lines) < 2:
            fail(fn, f"expected a text with at least 2 non-empty lines, got {len(lines)}")
        train_lines, valid_lines = text_lib.split_lines(lines, 1 - valid_fraction, seed)
        vocab = text_lib.build_vocab(
            train_lines, level=level, max_size=max_vocab, min_count=min_count, lowercase=lowercase
        )
        encoded = [vocab.encode_lines(part) for part in (train_lines, valid_lines)]
        longest = max(len(ids) for part in encoded for ids in part)
        width = longest if max_len is None else min(longest, max_len)
        padded_bytes = 2 * 4 * width * sum(len(part) for part in encoded)  # targets and inputs
        if padded_bytes > lm_settings.MEMORY_LIMIT_BYTES / 4:
            fail(
                fn,
                f"padding {len(lines):,} lines to the longest one ({longest:,} tokens) would take "
                f"about {lm_settings.gib(padded_bytes)}",
                "pass max_len (jaxrnn train --max-len) to truncate long lines, or use mode "
                "'stream' (--mode stream)",
            )
        train, valid = (
            text_lib.pad_batch(part, pad_id=vocab.eos_id, max_len=width) for part in encoded
        )
        return Corpus(vocab, mode, train, valid)
    train_text, valid_text = text_lib.split_text(text, 1 - valid_fraction)
    vocab = text_lib.build_vocab(
        [train_text], level=level, max_size=max_vocab, min_count=min_count, lowercase=lowercase
    )
    return Corpus(vocab, mode, (vocab.encode(train_text),), (vocab.encode(valid_text),))


class TrainResult(NamedTuple):
    params: LMParams
    step: int
    # "loss": per-step training losses; "valid": [step, train seconds, nats] rows;
    # "skipped_steps": updates refused for a non-finite loss or gradient (absent if none)
    history: dict
    checkpoint: Path | None  # None if nothing was kept on disk
    stopped_early: str | None  # why the run stopped before `steps`, if it did
    failed: bool = False  # stopped because training went wrong (diverged, non-finite steps)


def _learning_rate(config: TrainConfig) -> float | optax.Schedule:
    if config.final_learning_rate is None and config.warmup_steps == 0:
        return config.learning_rate
    final = (
        config.learning_rate if config.final_learning_rate is None else config.final_learning_rate
    )
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0 if config.warmup_steps else config.learning_rate,
        peak_value=config.learning_rate,
        warmup_steps=config.warmup_steps,
        decay_steps=max(config.steps, config.warmup_steps + 1),
        end_value=final,
    )


def make_lm_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    """The optax optimizer a `TrainConfig` describes (clipping first, then the update rule)."""
    return make_optimizer(
        _learning_rate(config),
        name=config.optimizer,
        clip_value=config.clip_value,
        clip_norm=config.clip_norm,
    )


def _initial_state(model: LMConfig, train: TrainConfig, mode: str) -> dict:
    params = init_lm(jax.random.key(train.seed), model)
    stateful = mode == "stream" and train.stateful
    return {
        "params": params,
        "opt_state": make_lm_optimizer(train).init(params),
        "carry": init_lm_carry(params, model, (train.batch_size,)) if stateful else None,
    }


def _device_count(train: TrainConfig) -> int:
    """How many local devices each step is split over: ``train.devices``, or for None the most
    local devices that divide ``train.batch_size`` evenly."""
    available = jax.local_device_count()
    devices = train.devices
    if devices is None:
        return max(n for n in range(1, available + 1) if train.batch_size % n == 0)
    if not isinstance(devices, int) or isinstance(devices, bool) or not 1 <= devices <= available:
        fail(
            "train_lm",
            f"expected devices between 1 and {available} (the local device count), got {devices!r}",
            "None uses as many as divide batch_size; on CPU, "
            "XLA_FLAGS=--xla_force_host_platform_device_count=N simulates N devices",
        )
    if train.batch_size % devices:
        fail(
            "train_lm",
            f"expected batch_size divisible by the {devices} devices, got {train.batch_size}",
            "choose a batch size that is a multiple of the device count",
        )
    return devices


def _placed(state: dict, mesh) -> dict:
    """The training state on ``mesh``: params and optimizer state replicated, carry split by rows
    like the batches it continues."""
    return {
        "params": parallel.replicate(state["params"], mesh),
        "opt_state": parallel.replicate(state["opt_state"], mesh),
        "carry": parallel.shard_batch(state["carry"], mesh),
    }


def _batch(corpus: Corpus, train: TrainConfig, step: int):
    """The batch of training step ``step``: (inputs, targets, lengths or None, reset carry?)."""
    if corpus.mode == "lines":
        targets, lengths = corpus.train
        rows = text_lib.batch_indices(len(targets), train.batch_size, seed=train.seed, step=step)
        return teacher_forcing_inputs(targets[rows]), targets[rows], lengths[rows], True
    (ids,) = corpus.train
    if train.stateful:
        inputs, targets, first = text_lib.stream_chunks(
            ids, batch_size=train.batch_size, seq_len=train.seq_len, step=step
        )
        return inputs, targets, None, first
    inputs, targets = text_lib.stream_windows(
        ids, batch_size=train.batch_size, seq_len=train.seq_len, seed=train.seed, step=step
    )
    return inputs, targets, None, True


def stream_rows(ids: np.ndarray, rows: int, seq_len: int) -> tuple[np.ndarray, ...]:
    """A stream cut into ``rows`` contiguous rows for evaluation with the carry passed on.

    Returns ``(inputs, targets, lengths)``: int32 (rows, W) each, W a multiple of ``seq_len``,
    right-padded, targets[r, t] the id after inputs[r, t]; lengths (rows,) the valid part of each
    row. Together the rows hold every one of the stream's n − 1 next-token predictions once.
    """
    n_targets = len(ids) - 1
    row_len = -(-n_targets // rows)
    width = -(-row_len // seq_len) * seq_len
    inputs = np.zeros((rows, width), np.int32)
    targets = np.zeros((rows, width), np.int32)
    lengths = np.zeros(rows, np.int32)
    for r in range(rows):
        begin, end = r * row_len, min((r + 1) * row_len, n_targets)
        lengths[r] = max(end - begin, 0)
        inputs[r, : lengths[r]] = ids[begin:end]
        targets[r, : lengths[r]] = ids[begin + 1 : end + 1]
    return inputs, targets, lengths


def evaluate_lm(
    params: LMParams, model: LMConfig, corpus: Corpus, *, rows: int = 32, seq_len: int = 256
) -> float:
    """Validation loss in nats per predicted token (every token of the validation part counted).

    Lines mode: each line on its own from a⟨0⟩ = 0, x⟨1⟩ = 0, ⟨EOS⟩ predicted too. Stream mode: the
    validation text is cut into ``rows`` contiguous rows read left to right in chunks of
    ``seq_len`` with the carry passed on, so each token is predicted from everything before it in
    its row; all n − 1 next-token predictions are counted.
    """
    if corpus.mode == "lines":
        targets, lengths = corpus.valid
        pad = -len(targets) % rows
        targets = np.concatenate([targets, np.zeros((pad, targets.shape[1]), targets.dtype)])
        lengths = np.concatenate([lengths, np.zeros(pad, lengths.dtype)])
        total = 0.0
        for start in range(0, len(targets), rows):
            chunk = slice(start, start + rows)
            total += float(_lines_nll(params, model, targets[chunk], lengths[chunk]))
        return total / float(corpus.valid[1].sum())
    (ids,) = corpus.valid
    n_targets = len(ids) - 1
    inputs, targets, row_lengths = stream_rows(ids, rows, seq_len)
    width = inputs.shape[1]
    carry = init_lm_carry(params, model, (rows,))
    total = 0.0
    for start in range(0, width, seq_len):
        chunk_lengths = np.clip(row_lengths - start, 0, seq_len).astype(np.int32)
        cols = slice(start, start + seq_len)
        carry, nll = _stream_nll(
            params, model, carry, inputs[:, cols], targets[:, cols], chunk_lengths
        )
        total += float(nll)
    return total / n_targets


def ngram_baseline(corpus: Corpus, order: int) -> ngram.Evaluation:
    """An order-n interpolated Kneser–Ney model fit on the corpus's training part, evaluated on
    its validation part: the traditional baseline on the same split, in the same units."""
    if corpus.mode == "lines":
        train, valid = (
            [ids[:n] for ids, n in zip(*part, strict=True)] for part in (corpus.train, corpus.valid)
        )
    else:
        train, valid = corpus.train[0], corpus.valid[0]
    return ngram.evaluate(ngram.fit_ngram(train, corpus.vocab.size, order), valid)


def perplexity(nats: float) -> float:
    """exp(nats); inf where that overflows (a diverged run), rather than an OverflowError."""
    return math.inf if nats > 709.0 else math.exp(nats)


@functools.partial(jax.jit, static_argnames="model")
def _lines_nll(params, model, targets, lengths):
    sums = lm_loss(
        params, model, teacher_forcing_inputs(targets), targets, lengths=lengths, reduce_time="sum"
    )[0]
    return sums * targets.shape[0]


@functools.partial(jax.jit, static_argnames="model")
def _stream_nll(params, model, carry, inputs, targets, lengths):
    carry, logits = lm_apply(params, model, inputs, carry, lengths=lengths)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    valid = sequence_mask(lengths, inputs.shape[1])
    return carry, -jnp.where(valid, picked, 0.0).sum()


def _make_step(model: LMConfig, train: TrainConfig):
    def loss_fn(params, inputs, targets, lengths, carry, step):
        dropout_key = jax.random.fold_in(jax.random.key(train.seed + 1), step)
        return lm_loss(
            params,
            model,
            inputs,
            targets,
            lengths=lengths,
            carry=carry,
            reduce_time=train.reduce_time,
            dropout_key=dropout_key if model.dropout > 0 else None,
        )

    return make_train_step(loss_fn, make_lm_optimizer(train), has_aux=True)


def _metadata(model, train, corpus, step, history) -> dict:
    return {
        "kind": "jaxrnn.lm",
        "step": step,
        "model": model._asdict(),
        "train": train._asdict(),
        "mode": corpus.mode,
        "vocab": corpus.vocab.to_dict(),
        "history": history,
    }


def load_lm(path: str | Path) -> tuple[LMParams, LMConfig, text_lib.Vocab, dict]:
    """Reads a language-model checkpoint; returns (params, model config, vocabulary, metadata).

    Raises:
      CheckpointError: if the file is missing, corrupt, not a language model's, or its metadata
        is not what `train_lm` writes; everything is checked before it is built or allocated.
    """
    metadata = read_metadata(path)
    model, train, vocab = lm_settings.checked_metadata(path, metadata)
    try:
        template = jax.eval_shape(lambda: _initial_state(model, train, metadata["mode"]))
    except ValueError as error:  # InputError: a cell or optimizer this jaxrnn does not know
        raise CheckpointError(f"{path}: the saved model cannot be built ({error})") from None
    state, saved = load_checkpoint(path, template)
    # A run writing the file meanwhile is fine as long as the arrays fit what was checked.
    again = lm_settings.checked_metadata(path, saved)
    if (again[0], again[2], saved["mode"]) != (model, vocab, metadata["mode"]):
        raise CheckpointError(f"{path}: the file was replaced by another model while being read")
    params = jax.tree.map(jnp.asarray, state["params"])
    return params, model, vocab, saved


def _resume(path: Path, model: LMConfig, train: TrainConfig, corpus: Corpus):
    """(state, step, history, the checkpoint's TrainConfig) of the run saved at ``path``, refused
    with `CheckpointError` unless it has this run's model and vocabulary."""
    metadata = read_metadata(path)
    saved_model, saved_train, saved_vocab = lm_settings.checked_metadata(path, metadata)
    for name, saved, asked in (
        ("model", saved_model._asdict(), model._asdict()),
        ("vocabulary", saved_vocab.to_dict(), corpus.vocab.to_dict()),
    ):
        if saved != asked:
            diff = {k: (saved.get(k), v) for k, v in asked.items() if saved.get(k) != v}
            raise CheckpointError(
                f"{path}: the checkpoint's {name} differs from this run's ({diff if diff else ''}: "
                "saved, asked); resume with the same settings and text, or use a new output folder"
            )
    template = jax.eval_shape(lambda: _initial_state(model, train, corpus.mode))
    state, metadata = load_checkpoint(path, template)
    again = lm_settings.checked_metadata(path, metadata)
    if (again[0], again[2]) != (saved_model, saved_vocab):
        raise CheckpointError(f"{path}: the file was replaced by another model while being read")
    return jax.tree.map(jnp.asarray, state), metadata["step"], metadata["history"], saved_train


def _all_finite(tree) -> bool:
    return all(bool(np.isfinite(np.asarray(leaf)).all()) for leaf in jax.tree.leaves(tree))


def _unigram_nats(corpus: Corpus) -> float:
    """Cross-entropy of the training part's token frequencies on itself, in nats per token: what a
    model that ignores all context reaches, and what any trained model should beat."""
    ids = (
        corpus.train[0]
        if corpus.mode == "stream"
        else corpus.train[0][np.arange(corpus.train[0].shape[1]) < corpus.train[1][:, None]]
    )
    counts = np.bincount(np.asarray(ids).ravel(), minlength=corpus.vocab.size).astype(float)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def train_lm(
    corpus: Corpus,
    model: LMConfig,
    train: TrainConfig,
    out_dir: str | Path | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | progress_lib.Style = True,
    log: Callable[[str], None] | None = None,
    num_samples: int = 5,
    stop_after: int | None = None,
    option_names: runs.OptionNames = runs.API,
) -> TrainResult:
    """Trains ``model`` on ``corpus``; returns the final params and the loss history.

    Shows progress (a bar in a terminal, a plain line every 30 s in a log file; loss, tokens/s,
    ETA), prints samples every ``train.sample_every`` steps, evaluates every ``train.eval_every``
    steps, and, when ``out_dir`` is given, writes ``checkpoint.npz`` there every
    ``train.checkpoint_every`` steps, on Ctrl-C/SIGTERM and at the end, and ``loss.png`` at the
    end. With several local devices each batch is split over ``train.devices`` of them (see
    `TrainConfig`); the run stays on this machine (one process).

    Nothing is lost: the settings are checked and ``out_dir`` is proved writable before the first
    step; ``out_dir`` is locked against a second trainer for the whole run; a checkpoint with
    non-finite parameters is never written; a run whose validation loss diverges stops and keeps
    its last checkpoint; Ctrl-C or SIGTERM stops after the current step, saves, then raises
    `jaxrnn.runs.Interrupted` (a ``KeyboardInterrupt``).

    Args:
      corpus: from `make_corpus`.
      model: the `LMConfig`; its ``vocab_size`` must equal the corpus vocabulary's size.
      train: the `TrainConfig`.
      out_dir: where checkpoint and plot go; None keeps nothing on disk.
      resume: continue from ``out_dir/checkpoint.npz`` (same model and vocabulary); without a
        checkpoint there this is an error.
      overwrite: replace the run ``out_dir`` holds; without it (or ``resume``) an ``out_dir`` that
        holds a checkpoint is refused and left untouched.
      progress: show progress; or ``"bar"``, ``"lines"`` to choose how.
      log: where messages and samples go (default: printed beside the progress).
      num_samples: samples shown at each sampling point.
      stop_after: stop (and checkpoint) after this global step, as an interruption would; for
        tests and for training in slices.
      option_names: how messages name ``resume``, ``overwrite`` and ``out_dir`` (the command line
        passes its flags).

    Raises:
      InputError: a setting no run can use, a folder that cannot take the run, a resume past
        ``train.steps``.
      CheckpointError: ``resume`` from a checkpoint that is corrupt or of another model.
      Interrupted: after saving, when SIGINT or SIGTERM stopped the run.
    """
    fn = "train_lm"
    if model.vocab_size != corpus.vocab.size:
        fail(
            fn,
            f"expected model.vocab_size == corpus vocabulary size {corpus.vocab.size}, "
            f"got {model.vocab_size}",
        )
    time_steps = corpus.train[0].shape[1] if corpus.mode == "lines" else train.seq_len
    lm_settings.check_settings(model, train, fn=fn, time_steps=time_steps)
    if stop_after is not None and (not lm_settings.is_int(stop_after) or stop_after < 0):
        fail(fn, f"expected stop_after None or an int >= 0, got {stop_after!r}")
    n_devices = _device_count(train)
    if resume and out_dir is not None and (Path(out_dir) / CHECKPOINT_NAME).is_file():
        # Checked before the folder is claimed, so that a refused resume changes nothing there.
        done = read_metadata(Path(out_dir) / CHECKPOINT_NAME).get("step")
        if isinstance(done, int) and done > train.steps:
            names = option_names
            fail(
                names.fn,
                f"the checkpoint in {out_dir} is at step {done}, past the {train.steps} steps "
                "asked for; nothing was trained",
                f"set {names.steps} above {done} to train further",
            )
    if out_dir is None:
        if resume:
            fail(fn, "expected an out_dir to resume from, got None")
        claim = contextlib.nullcontext()
    else:
        out_dir = Path(out_dir)
        claim = runs.claim_run_folder(out_dir, resume=resume, overwrite=overwrite, how=option_names)
    with claim:
        return _train_in_folder(
            corpus,
            model,
            train,
            out_dir,
            resume,
            progress,
            log,
            num_samples,
            stop_after,
            n_devices,
        )


def _train_in_folder(
    corpus, model, train, out_dir, resume, progress, log, num_samples, stop_after, n_devices
) -> TrainResult:
    mesh = parallel.data_mesh(jax.local_devices()[:n_devices])
    checkpoint = None if out_dir is None else out_dir / CHECKPOINT_NAME
    style = progress if isinstance(progress, str) else (None if progress else "off")
    state = _initial_state(model, train, corpus.mode)
    step, history = 0, {"loss": [], "valid": [], "seconds": 0.0}
    saved_train = None
    if resume:
        state, step, history, saved_train = _resume(checkpoint, model, train, corpus)
    bar = progress_lib.Progress(train.steps, initial=step, style=style)
    write = log or bar.write
    if saved_train is not None:
        last_valid = history["valid"][-1][2] if history["valid"] else None
        write(
            f"resuming from step {step} of {train.steps} in {checkpoint}"
            + (f" (validation {last_valid:.4f} nats/token)" if last_valid is not None else "")
        )
        changed = lm_settings.changed_settings(saved_train._asdict(), train._asdict())
        if changed:
            write("training settings changed since the checkpoint: " + ", ".join(changed))
        if step == train.steps:
            write(f"the run is already at step {step} of {train.steps}: nothing to train")
    state = _placed(state, mesh)
    if jax.local_device_count() > 1:
        write(
            f"data-parallel training on {n_devices} of {jax.local_device_count()} local devices, "
            f"{train.batch_size // n_devices} rows of each batch on each"
        )
    train_step = _make_step(model, train)
    last = min(train.steps, stop_after) if stop_after is not None else train.steps
    baseline_nats = _unigram_nats(corpus)

    def save() -> None:
        if checkpoint is None:
            return
        if not _all_finite(state["params"]):
            write(f"parameters are not finite at step {step}: the checkpoint was not overwritten")
            return
        history["loss"] = history["loss"][:step]
        save_checkpoint(checkpoint, state, _metadata(model, train, corpus, step, history))

    def evaluate():
        nats = evaluate_lm(state["params"], model, corpus, rows=train.eval_rows)
        history["valid"].append([step, history["seconds"], nats])
        return nats

    def show_samples():
        eos = corpus.vocab.eos_id if corpus.mode == "lines" else None
        drawn = sample(
            state["params"],
            model,
            jax.random.fold_in(jax.random.key(train.seed + 2), step),
            num_samples=num_samples,
            max_len=40 if corpus.mode == "lines" else 160,
            eos_id=eos,
            exclude_ids=[corpus.vocab.unk_id],
        )
        write(f"samples after step {step}:")
        for ids in np.asarray(drawn.ids):
            write("  " + corpus.vocab.decode(ids, stop_at_eos=eos is not None).replace("\n", "⏎"))

    stopped_early, failed, diverged, bad_in_a_row = None, False, None, 0
    with runs.StopOnSignal(write) as signals:
        try:
            while step < last and signals.requested is None:
                if train.minutes is not None and history["seconds"] >= 60 * train.minutes:
                    stopped_early = f"time budget of {train.minutes} min reached"
                    break
                inputs, targets, lengths, reset = _batch(corpus, train, step)
                carry = state["carry"]
                if reset and carry is not None:
                    carry = jax.tree.map(jnp.zeros_like, carry)
                n_tokens = targets.size if lengths is None else int(lengths.sum())
                start = time.perf_counter()
                batch = parallel.shard_batch((inputs, targets, lengths, carry), mesh)
                params, opt_state, metrics, new_carry = train_step(
                    state["params"], state["opt_state"], *batch, step
                )
                loss = float(metrics.loss)  # waits for the step: the timing below is honest
                seconds = time.perf_counter() - start
                new_carry = new_carry if state["carry"] is not None else None
                state, step = (
                    {"params": params, "opt_state": opt_state, "carry": new_carry},
                    step + 1,
                )
                history["loss"].append(loss)
                history["seconds"] += seconds
                bad_in_a_row = 0 if bool(metrics.finite) else bad_in_a_row + 1
                if bad_in_a_row:
                    history["skipped_steps"] = history.get("skipped_steps", 0) + 1
                    write(
                        f"step {step}: non-finite loss, gradient or update, update skipped "
                        f"({bad_in_a_row} in a row, {history['skipped_steps']} in this run)"
                    )
                if bad_in_a_row >= train.max_nonfinite_steps:
                    stopped_early = (
                        f"{bad_in_a_row} steps in a row had a non-finite loss, gradient or update "
                        "and were skipped; try clipping (clip_value, clip_norm) or a smaller "
                        "learning rate"
                    )
                    failed = True
                    write(stopped_early)
                    break
                recent = history["loss"][-50:]
                figures = {
                    "loss": f"{sum(recent) / len(recent):.3f}",
                    "tok/s": f"{n_tokens / max(seconds, 1e-9):,.0f}",
                }
                if history.get("skipped_steps"):
                    figures["skipped"] = history["skipped_steps"]
                bar.update(1, **figures)
                every = train.eval_every_seconds
                crossed = every and (
                    history["seconds"] // every > (history["seconds"] - seconds) // every
                )
                if step % train.eval_every == 0 or step == train.steps or crossed:
                    nats = evaluate()
                    ppl = perplexity(nats)
                    write(f"step {step}: valid {nats:.4f} nats/token, perplexity {ppl:.2f}")
                    diverged = lm_settings.divergence(history["valid"], baseline_nats)
                    if diverged:
                        kept = checkpoint is not None and checkpoint.exists()
                        stopped_early = (
                            f"the run diverged at step {step}: {diverged}; try a smaller learning "
                            f"rate (now {train.learning_rate:g})"
                            + (f"; the last checkpoint in {checkpoint} was kept" if kept else "")
                        )
                        failed = True
                        write(stopped_early)
                        break
                if train.sample_every and step % train.sample_every == 0:
                    show_samples()
                if step % train.checkpoint_every == 0:
                    save()
        except KeyboardInterrupt:  # raised where no handler could be installed (another thread)
            signals.requested = signals.requested or signal.SIGINT
        bar.close()
        if signals.requested is not None:
            signals.saving = True
            save()
            write(
                f"interrupted at step {step}"
                + (f"; checkpoint saved to {checkpoint}" if checkpoint else "")
            )
            raise runs.Interrupted(signals.requested)
        if stopped_early and step > 0 and (not history["valid"] or history["valid"][-1][0] != step):
            evaluate()  # the run ended between evaluations
        signals.saving = True
        if not diverged:  # a diverged run keeps the checkpoint from before it went wrong
            save()
        if out_dir is not None:
            plot_history(history, out_dir / "loss.png")
    if checkpoint is not None and not checkpoint.exists():
        checkpoint = None  # stopped (diverged) before its first checkpoint
    return TrainResult(state["params"], step, history, checkpoint, stopped_early, failed)


def plot_history(history: dict, path: str | Path, *, title: str = "language model") -> None:
    """Training loss (per step, and its moving average) and validation loss against step, to PNG.

    The file is replaced atomically; a symbolic link at ``path`` is replaced, its target untouched.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = np.asarray(history["loss"], float)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=120)
    if len(losses):
        steps = np.arange(1, len(losses) + 1)
        ax.plot(steps, losses, color="tab:blue", alpha=0.25, lw=0.8, label="train (per step)")
        window = max(1, min(100, len(losses) // 20))
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        ax.plot(
            steps[window - 1 :],
            smooth,
            color="tab:blue",
            lw=1.6,
            label=f"train ({window}-step mean)",
        )
    if history["valid"]:
        valid = np.asarray(history["valid"], float)
        ax.plot(valid[:, 0], valid[:, 2], "o-", color="tab:orange", lw=1.6, label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats per token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        # Written like a checkpoint: a temporary file renamed into place, never through a link.
        with atomic_output(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
