"""Training a language model on a text: the training loop, and where its parts live.

`train_lm` is what ``jaxrnn train`` and the demo run. Everything a run depends on is a pure
function of ``(seed, step)`` — the batch (`jaxrnn.text.training_batch`), the dropout key — and the
checkpoint holds the params, optimizer state, carry and `History` (`jaxrnn.lm_state`), so a run
resumed from a checkpoint continues exactly as if it had never stopped (bit for bit on CPU).
Ctrl-C or SIGTERM saves a checkpoint before exiting (`jaxrnn.runs`).

With several local devices (GPUs, or simulated CPU devices) each step is data-parallel
(`jaxrnn.parallel`): the batch and the carry are split by rows over the devices, params and
optimizer state are replicated, and XLA sums the gradients. Checkpoints hold whole arrays, so a run
saved on n devices resumes on any other count; the losses then agree with an uninterrupted run to
float rounding, since n devices add the gradient's terms in another order.

This module is also the one place to import a training run's parts from: the corpus
(`jaxrnn.text`), the settings (`jaxrnn.lm_settings`), evaluation (`jaxrnn.lm_eval`), checkpoints
(`jaxrnn.lm_state`) and plots (`jaxrnn.plots`).
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import lm_settings, parallel, runs
from jaxrnn import progress as progress_lib
from jaxrnn import text as text_lib
from jaxrnn._checks import fail, is_int, is_number
from jaxrnn.lm import LMConfig, lm_loss, sample
from jaxrnn.lm_eval import evaluate_lm, ngram_baseline, perplexity, unigram_nats
from jaxrnn.lm_settings import TrainConfig, learning_rate_at, make_lm_optimizer
from jaxrnn.lm_state import TrainState, init_train_state, load_lm, resume_state, save_state
from jaxrnn.models import GeneratorParams
from jaxrnn.plots import plot_history
from jaxrnn.runs import CHECKPOINT_NAME, Evaluation, History
from jaxrnn.text import Corpus, make_corpus, stream_rows, training_batch
from jaxrnn.train import make_train_step

__all__ = [
    "CHECKPOINT_NAME",
    "Corpus",
    "Evaluation",
    "History",
    "StepsForMinutes",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "check_data",
    "evaluate_lm",
    "load_lm",
    "make_corpus",
    "make_lm_optimizer",
    "ngram_baseline",
    "perplexity",
    "plot_history",
    "steps_for_minutes",
    "stream_rows",
    "train_lm",
]


class TrainResult(NamedTuple):
    """What `train_lm` returns: the trained params, the step reached and the run's history."""

    params: GeneratorParams
    step: int
    history: History
    checkpoint: Path | None  # None if nothing was kept on disk
    stopped_early: str | None  # why the run stopped before `steps`, if it did
    failed: bool = False  # stopped because training went wrong (diverged, non-finite steps)


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


def _loss_fn(model: LMConfig, train: TrainConfig):
    """The loss a training step differentiates: ``(params, inputs, targets, lengths, resets,
    carry, step) -> (loss, last carry)``, dropout drawn from ``train.seed`` and the step."""

    def loss_fn(params, inputs, targets, lengths, resets, carry, step):
        dropout_key = jax.random.fold_in(jax.random.key(train.seed + 1), step)
        return lm_loss(
            params,
            model,
            inputs,
            targets,
            lengths=lengths,
            resets=resets,
            carry=carry,
            reduce_time=train.reduce_time,
            dropout_key=dropout_key if model.dropout_rate > 0 else None,
        )

    return loss_fn


def _make_step(model: LMConfig, train: TrainConfig):
    return make_train_step(_loss_fn(model, train), make_lm_optimizer(train), has_aux=True)


class _Run:
    """One run in progress: its state, step and history, and what it does between steps."""

    def __init__(self, corpus, model, train, checkpoint, num_samples, n_devices):
        self.corpus, self.model, self.train = corpus, model, train
        self.checkpoint, self.num_samples = checkpoint, num_samples
        self.write: Callable[[str], None] = print
        self.mesh = parallel.data_mesh(jax.local_devices()[:n_devices])
        self.state = init_train_state(model, train, corpus.mode)
        self.step, self.history = 0, History()
        self.train_step = _make_step(model, train)
        self.bad_in_a_row = 0
        self.baseline_nats = unigram_nats(corpus)

    def resume(self) -> TrainConfig:
        """Takes up the run saved in the checkpoint; returns the settings it was saved with."""
        self.state, self.step, self.history, saved = resume_state(
            self.checkpoint, self.model, self.train, self.corpus
        )
        return saved

    def say_resumed(self, saved: TrainConfig) -> None:
        steps = self.train.steps
        valid = self.history.valid
        self.write(
            f"resuming from step {self.step} of {steps} in {self.checkpoint}"
            + (f" (validation {valid[-1].nats:.4f} nats/token)" if valid else "")
        )
        changed = lm_settings.changed_settings(saved._asdict(), self.train._asdict())
        if changed:
            self.write("training settings changed since the checkpoint: " + ", ".join(changed))
        if self.step == steps:
            self.write(f"the run is already at step {self.step} of {steps}: nothing to train")

    def place(self, n_devices: int) -> None:
        """Params and optimizer state replicated on the devices, the carry split by rows like the
        batches it continues."""
        self.state = TrainState(
            parallel.replicate(self.state.params, self.mesh),
            parallel.replicate(self.state.opt_state, self.mesh),
            parallel.shard_batch(self.state.carry, self.mesh),
        )
        if jax.local_device_count() > 1:
            self.write(
                f"data-parallel training on {n_devices} of {jax.local_device_count()} local "
                f"devices, {self.train.batch_size // n_devices} rows of each batch on each"
            )

    def train_one_step(self) -> dict:
        """Trains one step; returns the figures the progress bar shows."""
        train = self.train
        batch = training_batch(
            self.corpus,
            self.step,
            batch_size=train.batch_size,
            seq_len=train.seq_len,
            seed=train.seed,
            stateful=train.stateful,
            pack=train.pack,
        )
        carry = self.state.carry
        if batch.fresh_carry and carry is not None:
            carry = jax.tree.map(jnp.zeros_like, carry)
        opt_state = self.state.opt_state
        if train.decay_over == "minutes":
            rate = learning_rate_at(train, self.step, self.history.seconds)
            rate = parallel.replicate(jnp.float32(rate), self.mesh)
            opt_state = opt_state._replace(
                hyperparams={**opt_state.hyperparams, "learning_rate": rate}
            )
        start = time.perf_counter()
        arrays = (batch.inputs, batch.targets, batch.lengths, batch.resets, carry)
        placed = parallel.shard_batch(arrays, self.mesh)
        params, opt_state, metrics, new_carry = self.train_step(
            self.state.params, opt_state, *placed, self.step
        )
        loss = float(metrics.loss)  # waits for the step: the timing below is honest
        seconds = time.perf_counter() - start
        self.state = TrainState(params, opt_state, new_carry if carry is not None else None)
        self.step += 1
        self.history.loss.append(loss)
        self.history.seconds += seconds
        self.bad_in_a_row = 0 if bool(metrics.finite) else self.bad_in_a_row + 1
        if self.bad_in_a_row:
            self.history.skipped_steps += 1
            self.write(
                f"step {self.step}: non-finite loss, gradient or update, update skipped "
                f"({self.bad_in_a_row} in a row, {self.history.skipped_steps} in this run)"
            )
        n_tokens = batch.targets.size if batch.lengths is None else int(batch.lengths.sum())
        recent = self.history.loss[-50:]
        figures = {
            "loss": f"{sum(recent) / len(recent):.3f}",
            "tok/s": f"{n_tokens / max(seconds, 1e-9):,.0f}",
        }
        if self.history.skipped_steps:
            figures["skipped"] = self.history.skipped_steps
        if train.minutes is not None:  # the bar's ETA counts steps, which a budget may cut short
            left = max(0.0, 60 * train.minutes - self.history.seconds)
            figures["budget left"] = progress_lib.format_duration(left)
        self.last_seconds = seconds
        return figures

    def out_of_time(self) -> str | None:
        minutes = self.train.minutes
        if minutes is not None and self.history.seconds >= 60 * minutes:
            return f"time budget of {minutes} min reached"
        return None

    def too_many_bad_steps(self) -> str | None:
        if self.bad_in_a_row >= self.train.max_nonfinite_steps:
            return (
                f"{self.bad_in_a_row} steps in a row had a non-finite loss, gradient or update "
                "and were skipped; try clipping (clip_value, clip_norm) or a smaller learning rate"
            )
        return None

    def evaluation_due(self) -> bool:
        every, seconds = self.train.eval_every_seconds, self.history.seconds
        crossed = every and seconds // every > (seconds - self.last_seconds) // every
        return self.step % self.train.eval_every == 0 or self.step == self.train.steps or crossed

    def evaluate(self) -> float:
        nats = evaluate_lm(self.state.params, self.model, self.corpus, rows=self.train.eval_rows)
        self.history.valid.append(Evaluation(self.step, self.history.seconds, nats))
        return nats

    def evaluate_and_check(self) -> str | None:
        """Evaluates and reports; returns why the run diverged, if it did."""
        nats = self.evaluate()
        ppl = perplexity(nats)
        self.write(f"step {self.step}: valid {nats:.4f} nats/token, perplexity {ppl:.2f}")
        diverged = lm_settings.divergence(self.history.valid, self.baseline_nats)
        if not diverged:
            return None
        kept = self.checkpoint is not None and self.checkpoint.exists()
        return (
            f"the run diverged at step {self.step}: {diverged}; try a smaller learning rate (now "
            f"{self.train.learning_rate:g})"
            + (f"; the last checkpoint in {self.checkpoint} was kept" if kept else "")
        )

    def show_samples(self) -> None:
        vocab, lines = self.corpus.vocab, self.corpus.mode == "lines"
        drawn = sample(
            self.state.params,
            self.model,
            jax.random.fold_in(jax.random.key(self.train.seed + 2), self.step),
            num_samples=self.num_samples,
            max_len=40 if lines else 160,
            eos_id=vocab.eos_id if lines else None,
            exclude_ids=[vocab.unk_id],
        )
        self.write(f"samples after step {self.step}:")
        for ids in np.asarray(drawn.ids):
            self.write("  " + vocab.decode(ids, stop_at_eos=lines).replace("\n", "⏎"))

    def save(self) -> None:
        if self.checkpoint is None:
            return
        saved = save_state(
            self.checkpoint,
            self.state,
            model=self.model,
            train=self.train,
            corpus=self.corpus,
            step=self.step,
            history=self.history,
        )
        if not saved:
            self.write(
                f"parameters are not finite at step {self.step}: the checkpoint was not overwritten"
            )


def check_data(
    corpus: Corpus, train: TrainConfig, *, fn: str = "train_lm", names: dict | None = None
) -> None:
    """Raises `InputError` where ``corpus`` cannot give ``train`` a batch: ``stateful`` in lines
    mode, a batch of more rows than the training lines fill, a stream shorter than an example
    (``seq_len``) or, stateful, than ``batch_size`` of them. ``names`` as for
    `jaxrnn.lm_settings.check_settings`."""
    names = names or {}
    batch, seq_len = train.batch_size, train.seq_len
    batch_name, seq_name = names.get("batch_size", "batch_size"), names.get("seq_len", "seq_len")
    if corpus.mode == "lines":
        if train.stateful:
            fail(
                fn,
                "expected stateful=False for a lines-mode corpus, got True",
                "stateful training passes the carry along a stream: make_corpus(mode='stream')",
            )
        n_lines = len(corpus.train[1])
        if not train.pack and batch > n_lines:
            fail(
                fn,
                f"expected {batch_name} at most {n_lines} (the training lines), got {batch}",
                f"use a smaller {batch_name}",
            )
        if not train.pack:
            return
        # packed_batch's own count, which its steps keep: it costs training nothing
        lengths, width = corpus.train[1], corpus.train[0].shape[1]
        packing = dict(width=width, seed=train.seed)
        if text_lib.packed_batches_in_first_epoch(lengths, batch_size=batch, **packing) == 0:
            rows = text_lib.rows_packed_lines_fill(lengths, **packing)
            fail(
                fn,
                f"expected {batch_name} at most {rows - 1}, got {batch}: packed, the {n_lines} "
                f"training lines fill {rows} rows, and a batch needs lines left over",
                f"use a smaller {batch_name} (up to {n_lines} with one line a row, unpacked)",
            )
        return
    n_ids = len(corpus.train[0])
    if seq_len >= n_ids:
        fail(
            fn,
            f"expected {seq_name} at most {n_ids - 1} (the training tokens, less one), got "
            f"{seq_len}",
        )
    if train.stateful and batch * seq_len >= n_ids:
        largest = (n_ids - 1) // seq_len
        fail(
            fn,
            f"expected {batch_name} at most {largest}, got {batch}: stateful, the {n_ids} "
            f"training tokens are cut into a row per example, each at least {seq_name} = "
            f"{seq_len} long",
            f"use a smaller {batch_name} or {seq_name}",
        )


def _example_length(corpus: Corpus, train: TrainConfig) -> int:
    """The length of a training example: the corpus's padded lines, or ``train.seq_len``."""
    return corpus.train[0].shape[1] if corpus.mode == "lines" else train.seq_len


class StepsForMinutes(NamedTuple):
    """What `steps_for_minutes` measured."""

    steps: int  # training steps that fit the budget after the trial
    seconds_per_step: float  # median of the trial's last half (its first steps warm up)
    trial_seconds: float  # training time the trial itself took, compilation included


def steps_for_minutes(
    corpus: Corpus, model: LMConfig, train: TrainConfig, minutes: float, *, trial_steps: int = 30
) -> StepsForMinutes:
    """How many steps of ``train`` this machine runs in ``minutes`` of training time, measured.

    Runs ``trial_steps`` real steps from a fresh state (then discarded) and times them as
    `train_lm` does; a step takes the median time of the last two thirds (the first steps
    compile and warm up). Use it to fit a schedule to a time budget — the cosine decay of
    ``final_learning_rate`` ends at ``steps``, so a ``minutes`` budget that stops the run earlier
    or later leaves the rate high or flat — and count ``trial_seconds`` against the budget::

        fit = steps_for_minutes(corpus, model, train, 5)
        left = 5 - fit.trial_seconds / 60
        train_lm(corpus, model, train._replace(steps=fit.steps, minutes=left))

    ``steps`` leaves out the trial's time and one compilation, the cost of the real run's first
    step; the rate depends on the machine and its load, so ``steps`` is not reproducible. On a
    machine whose speed changes during a run, ``TrainConfig(decay_over="minutes")`` ends the
    decay with the budget without a trial.

    Raises:
      InputError: ``minutes`` not a number > 0, ``trial_steps`` < 4, or a setting no run can use.
    """
    fn = "steps_for_minutes"
    if not is_number(minutes) or not minutes > 0:
        fail(fn, f"expected minutes a number > 0, got {minutes!r}")
    if not is_int(trial_steps) or trial_steps < 4:
        fail(fn, f"expected trial_steps an int >= 4, got {trial_steps!r}")
    time_steps = _example_length(corpus, train)
    lm_settings.check_settings(model, train, fn=fn, time_steps=time_steps)
    check_data(corpus, train, fn=fn)
    n_devices = _device_count(train)
    trial = _Run(corpus, model, train, None, 0, n_devices)
    trial.write = lambda message: None
    trial.place(n_devices)
    seconds = []
    for _ in range(trial_steps):
        trial.train_one_step()
        seconds.append(trial.last_seconds)
    # The median of the last two thirds, not a faster quantile: a schedule fitted a little short
    # ends early and runs its last steps at the final rate, one fitted long never anneals. The
    # lower quartile underestimated a 5-minute run's step by 16% with the native LSTM kernel.
    # Steps 10 to 20 still run slower than the steady state (a 768-unit LSTM: 118 against 106 ms
    # median), and a median of those 10 alone once fitted 142 ms to a run of 119: its schedule
    # ended 48 s before the budget.
    per_step = float(np.median(seconds[len(seconds) // 3 :]))
    compile_seconds = max(seconds[0] - per_step, 0.0)
    left = 60 * minutes - sum(seconds) - compile_seconds
    steps = int(left / per_step + 1e-6)  # 1e-6: 55 s at 0.1 s a step is 550, not 549
    return StepsForMinutes(max(1, steps), per_step, float(sum(seconds)))


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
    """Trains ``model`` on ``corpus``; returns the final params and the run's `History`.

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
    `jaxrnn.runs.Interrupted` (a ``KeyboardInterrupt``), and so does output whose reader has gone
    (a ``BrokenPipeError`` of ``jaxrnn train | head``; ``signum`` SIGPIPE).

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
      InputError: a setting no run can use (or this corpus cannot: `check_data`), a folder that
        cannot take the run, a resume past ``train.steps``.
      CheckpointError: ``resume`` from a checkpoint that is corrupt or of another model.
      Interrupted: after saving, when SIGINT or SIGTERM stopped the run, or a closed pipe.
    """
    fn = "train_lm"
    if model.vocab_size != corpus.vocab.size:
        fail(
            fn,
            f"expected model.vocab_size == corpus vocabulary size {corpus.vocab.size}, "
            f"got {model.vocab_size}",
        )
    time_steps = _example_length(corpus, train)
    lm_settings.check_settings(model, train, fn=fn, time_steps=time_steps)
    check_data(corpus, train, fn=fn)
    if stop_after is not None and (not is_int(stop_after) or stop_after < 0):
        fail(fn, f"expected stop_after None or an int >= 0, got {stop_after!r}")
    n_devices = _device_count(train)
    if out_dir is None and resume:
        fail(fn, "expected an out_dir to resume from, got None")
    claim = contextlib.nullcontext()
    if out_dir is not None:
        out_dir = Path(out_dir)
        claim = runs.claim_run_folder(
            out_dir, resume=resume, overwrite=overwrite, steps=train.steps, how=option_names
        )
    with claim:
        checkpoint = None if out_dir is None else out_dir / CHECKPOINT_NAME
        run = _Run(corpus, model, train, checkpoint, num_samples, n_devices)
        saved = run.resume() if resume else None
        bar = progress_lib.Progress(train.steps, initial=run.step, style=_style(progress))
        run.write = log or bar.write
        if saved is not None:
            run.say_resumed(saved)
        run.place(n_devices)
        last = train.steps if stop_after is None else min(train.steps, stop_after)
        stopped_early, failed, diverged = None, False, False
        with runs.StopOnSignal(run.write) as signals:
            try:
                while run.step < last and signals.requested is None:
                    if stopped_early := run.out_of_time():
                        break
                    bar.update(1, **run.train_one_step())
                    if stopped_early := run.too_many_bad_steps():
                        failed = True
                    elif run.evaluation_due() and (stopped_early := run.evaluate_and_check()):
                        failed = diverged = True
                    if failed:
                        run.write(stopped_early)
                        break
                    if train.sample_every and run.step % train.sample_every == 0:
                        run.show_samples()
                    if run.step % train.checkpoint_every == 0:
                        run.save()
            except KeyboardInterrupt:  # raised where no handler could be installed
                signals.requested = signals.requested or signal.SIGINT
            except BrokenPipeError:  # the output's reader has gone (`| head`): stop as SIGPIPE
                progress_lib.mute_closed_streams()
                signals.requested = signals.requested or signal.SIGPIPE
            bar.close()
            _finish(run, signals, stopped_early, diverged=diverged)
            if out_dir is not None:
                plot_history(run.history, out_dir / "loss.png")
    kept = checkpoint if checkpoint is not None and checkpoint.exists() else None
    return TrainResult(run.state.params, run.step, run.history, kept, stopped_early, failed)


def _style(progress: bool | progress_lib.Style) -> progress_lib.Style | None:
    return progress if isinstance(progress, str) else (None if progress else "off")


def _finish(run: _Run, signals: runs.StopOnSignal, stopped_early, *, diverged: bool) -> None:
    """The end of a run: after a signal, save, say so and raise `jaxrnn.runs.Interrupted`;
    otherwise evaluate where the run stopped and save, unless it diverged (the checkpoint from
    before it went wrong is kept)."""
    if signals.requested is not None:
        signals.saving = True
        run.save()
        run.write(
            f"interrupted at step {run.step}"
            + (f"; checkpoint saved to {run.checkpoint}" if run.checkpoint else "")
        )
        raise runs.Interrupted(signals.requested)
    valid = run.history.valid
    if stopped_early and run.step > 0 and (not valid or valid[-1].step != run.step):
        run.evaluate()  # the run ended between evaluations
    signals.saving = True
    if not diverged:
        run.save()
