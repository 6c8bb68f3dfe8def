"""A training run's folder, signals and history: one writer per folder, a stop that never loses
work, and the record of what was trained.

Before a step is trained, `claim_run_folder` makes sure the folder can take the run — it is a
folder, it can be written, it holds no other run unless asked to resume or replace it — and takes
an exclusive lock on ``.lock`` inside it for as long as the run lasts, so that a second trainer on
the same folder is refused instead of interleaving its checkpoints with the first one's.

`StopOnSignal` turns SIGINT and SIGTERM into a request the training loop reads between steps, so
that a signal never lands inside a save, and a save always completes before the process exits.

`History` is what a run has done so far (losses, evaluations, training time); a checkpoint keeps
it, so a resumed run carries on with it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import signal
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from jaxrnn.errors import fail

LOCK_NAME = ".lock"
CHECKPOINT_NAME = "checkpoint.npz"


class OptionNames(NamedTuple):
    """What messages call the caller and its options: the Python API's names by default, the
    command line's flags for ``jaxrnn train``."""

    fn: str = "train_lm"
    resume: str = "resume=True"
    overwrite: str = "overwrite=True"
    other: str = "another out_dir"
    steps: str = "train.steps"


class Evaluation(NamedTuple):
    """One validation of a run."""

    step: int  # steps trained when it was measured
    seconds: float  # training time by then (evaluations excluded)
    nats: float  # validation loss, nats per predicted token


@dataclasses.dataclass
class History:
    """What a run has done: saved in its checkpoint as JSON, ``to_dict`` and ``from_dict``."""

    loss: list[float] = dataclasses.field(default_factory=list)  # training loss of each step
    valid: list[Evaluation] = dataclasses.field(default_factory=list)
    seconds: float = 0.0  # training time, evaluations and checkpoints excluded
    skipped_steps: int = 0  # updates refused for a non-finite loss, gradient or update

    def to_dict(self) -> dict:
        """The history as the JSON-ready dict a checkpoint stores (`from_dict` reads it back)."""
        saved = {"loss": list(self.loss), "valid": [list(row) for row in self.valid]}
        saved["seconds"] = self.seconds
        if self.skipped_steps:
            saved["skipped_steps"] = self.skipped_steps
        return saved

    @classmethod
    def from_dict(cls, saved: dict) -> History:
        """The history of a checkpoint's metadata (checked by `lm_settings.checked_metadata`)."""
        return cls(
            loss=list(saved["loss"]),
            valid=[Evaluation(int(s), float(t), float(n)) for s, t, n in saved["valid"]],
            seconds=float(saved["seconds"]),
            skipped_steps=int(saved.get("skipped_steps", 0)),
        )


def checkpoint_file(path: str | os.PathLike) -> Path:
    """The checkpoint ``path`` names: the file itself, or the ``checkpoint.npz`` of a run folder."""
    path = Path(path)
    return path / CHECKPOINT_NAME if path.is_dir() else path


API = OptionNames()
CLI = OptionNames("train", "--resume", "--overwrite", "a new --out", "--steps")


def _saved_step(checkpoint: Path) -> int | None:
    """The step a checkpoint was saved at; None if it cannot be read or does not say."""
    from jaxrnn.checkpoint import CheckpointError, read_metadata

    try:
        step = read_metadata(checkpoint).get("step")
    except CheckpointError:
        return None
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def _checkpoint_step(checkpoint: Path) -> str:
    step = _saved_step(checkpoint)
    return "a checkpoint" if step is None else f"a checkpoint at step {step}"


def check_run_folder(
    out_dir: Path,
    *,
    resume: bool,
    overwrite: bool,
    steps: int | None = None,
    how: OptionNames = API,
) -> None:
    """Raises `InputError` unless ``out_dir`` can take this run: a folder (or nothing yet) that
    holds no checkpoint unless ``resume`` or ``overwrite``, and a checkpoint if ``resume``, saved
    at no more than ``steps`` steps when ``steps`` is given (`CheckpointError` if that checkpoint
    cannot be read).

    Reads only: nothing in the folder is created, changed or removed.
    """
    fn = how.fn
    if resume and overwrite:
        fail(fn, f"expected at most one of {how.resume} and {how.overwrite}, got both")
    if out_dir.exists() and not out_dir.is_dir():
        fail(fn, f"expected the output folder {out_dir} to be a folder, it is a file", how.other)
    checkpoint = out_dir / CHECKPOINT_NAME
    has_run = checkpoint.exists() or checkpoint.is_symlink()
    if resume and not has_run:
        fail(
            fn,
            f"nothing to resume: no {CHECKPOINT_NAME} in {out_dir}",
            f"drop {how.resume} to start a new run there",
        )
    if has_run and not resume and not overwrite:
        fail(
            fn,
            f"{out_dir} already holds a run ({_checkpoint_step(checkpoint)}); nothing was changed",
            f"continue it with {how.resume}, or choose {how.other}, or {how.overwrite} to replace"
            " it",
        )
    if not resume or steps is None:
        return
    from jaxrnn.checkpoint import read_metadata

    done = read_metadata(checkpoint).get("step")  # a CheckpointError if it cannot be read
    if isinstance(done, int) and done > steps:
        fail(
            fn,
            f"the checkpoint in {out_dir} is at step {done}, past the {steps} steps asked for; "
            "nothing was trained",
            f"set {how.steps} above {done} to train further",
        )


def _check_writable(fn: str, out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=out_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        fail(fn, f"cannot write to the output folder {out_dir} ({error.strerror or error})")


@contextlib.contextmanager
def claim_run_folder(
    out_dir: Path,
    *,
    resume: bool,
    overwrite: bool,
    steps: int | None = None,
    how: OptionNames = API,
) -> Iterator[None]:
    """Checks ``out_dir`` (`check_run_folder`), proves it writable, and holds its lock while the
    block runs.

    Raises:
      InputError: the folder cannot take the run, cannot be written, or another process holds
        its lock (another trainer is writing there).
    """
    fn = how.fn
    check_run_folder(out_dir, resume=resume, overwrite=overwrite, steps=steps, how=how)
    _check_writable(fn, out_dir)
    lock_path = out_dir / LOCK_NAME
    try:
        # O_NOFOLLOW: a link planted at .lock must not make the lock truncate another file.
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as error:
        fail(fn, f"cannot create the lock file {lock_path} ({error.strerror or error})")
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            fail(
                fn,
                f"another trainer (process {holder}) is writing to {out_dir}",
                f"wait for it to finish, or choose {how.other}",
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


class Interrupted(KeyboardInterrupt):
    """Training stopped by a signal after saving its checkpoint; ``signum`` is the signal."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopOnSignal:
    """SIGINT and SIGTERM ask the training loop to stop; they never raise inside it.

    The first signal sets ``requested``, which the loop reads between steps: it then saves a
    checkpoint and says so. Signals that come while it does are counted and otherwise ignored, so
    the save always runs to completion. A third signal before the save has begun ends the process
    at once (exit 128 + signal), leaving the last checkpoint on disk as it was.

    Python runs the handlers of signals that arrive during one long call (a training step) in
    the order of their numbers, SIGINT before SIGTERM, whatever order they came in; the signals'
    own record of their arrival (`signal.set_wakeup_fd`) says which came first.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, write: Callable[[str], None]):
        self.write = write
        self.requested: int | None = None
        self.count = 0
        self.saving = False
        self._previous: dict = {}
        self._sockets: tuple = ()  # (where the arrivals are read, where they are written)
        self._previous_wakeup = -1

    def _first_arrived(self, signum: int) -> int:
        """The first of the signals that have arrived, ``signum`` if none is on record."""
        if not self._sockets:
            return signum
        try:
            arrived = self._sockets[0].recv(64)
        except BlockingIOError:
            return signum
        return next((s for s in arrived if s in self.SIGNALS), signum)

    def _handle(self, signum, frame):
        self.count += 1
        if self.requested is None:
            signum = self.requested = self._first_arrived(signum)
            self.write(
                f"{signal.Signals(signum).name}: stopping after this step to save a checkpoint "
                "(a third signal exits without saving)"
            )
        elif self.count >= 3 and not self.saving:
            self.write("exiting without saving; the last checkpoint on disk is intact")
            os._exit(128 + signum)

    def __enter__(self):
        try:
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        except ValueError:  # not the main thread: signals stay as they are
            self._previous.clear()
            return self
        self._sockets = socket.socketpair()
        for end in self._sockets:
            end.setblocking(False)
        self._previous_wakeup = signal.set_wakeup_fd(
            self._sockets[1].fileno(), warn_on_full_buffer=False
        )
        return self

    def __exit__(self, *exc_info):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        if self._sockets:
            signal.set_wakeup_fd(self._previous_wakeup)
            for end in self._sockets:
                end.close()
            self._sockets = ()
        return False
