"""Killed training loses nothing: SIGKILL at random points, mid-write included, then resume.

Processes are real subprocesses killed by the operating system, so nothing in jaxrnn gets a chance
to clean up: what survives is what was on disk. The kill times are drawn from a seeded generator.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from jaxrnn.checkpoint import load_checkpoint, read_metadata

ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}
# Waits end when what they wait for happens; this bound only stops a test that would otherwise
# hang forever, far above any run time on a busy machine. No test here asserts a speed.
HANG_GUARD_S = 1800

WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from jaxrnn.checkpoint import save_checkpoint

    path = sys.argv[1]
    version = 0
    print("ready", flush=True)
    while True:
        version += 1
        tree = {"big": np.full((1 << 19,), version, np.float64), "small": np.full(3, version)}
        save_checkpoint(path, tree, {"version": version})
    """
)


def _wait_for_line(process: subprocess.Popen, expected: str, timeout: float = HANG_GUARD_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if expected in line:
            return
        if not line and process.poll() is not None:
            raise AssertionError(f"process exited ({process.returncode}) before {expected!r}")
    raise AssertionError(f"no {expected!r} within {timeout} s")


def test_sigkill_during_checkpoint_writes_never_corrupts_the_checkpoint(tmp_path):
    """A process that does nothing but rewrite a 4 MB checkpoint is killed 8 times at random
    moments, so most kills land inside a write; every time, the file on disk is one whole
    version, and the temporary file a killed write leaves behind is cleared by the next save."""
    path = tmp_path / "checkpoint.npz"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    rng = np.random.default_rng(0)
    versions, mid_write = [], 0
    template = {"big": np.zeros(1 << 19), "small": np.zeros(3, np.int64)}
    for _ in range(8):
        process = subprocess.Popen(
            [sys.executable, str(script), str(path)], stdout=subprocess.PIPE, text=True, env=ENV
        )
        _wait_for_line(process, "ready")
        time.sleep(rng.uniform(0.05, 0.4))
        process.send_signal(signal.SIGKILL)
        process.wait()
        mid_write += bool(list(tmp_path.glob(".checkpoint.npz.*.tmp")))
        if not path.exists():  # killed before the first write finished
            continue
        tree, metadata = load_checkpoint(path, template)
        version = metadata["version"]
        assert (tree["big"] == version).all() and (tree["small"] == version).all()
        versions.append(version)
    assert len(versions) >= 6, versions
    assert mid_write >= 2, f"only {mid_write} of 8 kills landed inside a write"
    # a later save clears what killed writes left behind
    from jaxrnn.checkpoint import save_checkpoint

    save_checkpoint(path, template, {"version": 0})
    assert not list(tmp_path.glob(".checkpoint.npz.*.tmp"))


STEPS = 720  # long enough that a kill up to 1 s after a checkpoint lands inside the run

TRAIN = [
    "train",
    "--corpus",
    "names",
    "--cell",
    "gru",
    "--hidden",
    "24",
    "--embedding",
    "8",
    "--batch",
    "16",
    "--steps",
    str(STEPS),
    "--checkpoint-every",
    "4",
    "--eval-every",
    "100",
    "--sample-every",
    "0",
    "--ngram",
    "0",
    "--no-progress",
]


def _train(out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "jaxrnn.cli", *TRAIN, "--out", str(out), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=ENV,
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> list[float]:
    out = tmp_path_factory.mktemp("uninterrupted")
    process = _train(out)
    output, _ = process.communicate(timeout=HANG_GUARD_S)
    assert process.returncode == 0, output
    return read_metadata(out / "checkpoint.npz")["history"]["loss"]


def _wait_for_new_checkpoint(
    process: subprocess.Popen, path: Path, timeout: float = HANG_GUARD_S
) -> bool:
    """Waits until ``process`` has written ``path`` once (training is under way); False if the
    process finished first."""
    before = path.stat().st_mtime_ns if path.exists() else None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_mtime_ns != before:
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.005)
    raise AssertionError(f"no checkpoint written within {timeout} s")


def test_sigkill_at_random_points_then_resume_equals_uninterrupted_run(uninterrupted, tmp_path):
    """Training is SIGKILLed at 3 random moments, resumed with --resume each time, and then left
    to finish. After every kill the checkpoint loads, its loss history is exactly the first steps of
    the uninterrupted run's, and the finished run's whole trajectory equals it bit for bit."""
    out = tmp_path / "run"
    checkpoint = out / "checkpoint.npz"
    rng = np.random.default_rng(1)
    resumed_from = []
    for attempt in range(3):
        process = _train(out, *(["--resume"] if attempt else []))  # the first starts the run
        assert _wait_for_new_checkpoint(process, checkpoint), "finished before the kill"
        time.sleep(rng.uniform(0.0, 1.0))
        process.send_signal(signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL
        metadata = read_metadata(checkpoint)
        step, losses = metadata["step"], metadata["history"]["loss"]
        assert step % 4 == 0 and len(losses) == step  # checkpoints come every 4 steps
        assert losses == uninterrupted[:step]
        resumed_from.append(step)
    process = _train(out, "--resume")
    output, _ = process.communicate(timeout=HANG_GUARD_S)
    assert process.returncode == 0, output
    assert resumed_from == sorted(resumed_from)  # never went back to an older checkpoint
    final = read_metadata(out / "checkpoint.npz")
    assert final["step"] == STEPS
    assert final["history"]["loss"] == uninterrupted


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_save_the_current_step_before_exiting(uninterrupted, tmp_path, sig):
    out = tmp_path / "run"
    process = _train(out)
    assert _wait_for_new_checkpoint(process, out / "checkpoint.npz")
    time.sleep(0.2)
    process.send_signal(sig)
    output, _ = process.communicate(timeout=HANG_GUARD_S)
    assert process.returncode != 0
    metadata = read_metadata(out / "checkpoint.npz")
    step = metadata["step"]
    assert f"interrupted at step {step}; checkpoint saved" in output
    assert 0 < step < STEPS and metadata["history"]["loss"] == uninterrupted[:step]


@pytest.mark.parametrize(
    "signals",
    [
        (signal.SIGINT, signal.SIGINT),
        (signal.SIGTERM, signal.SIGTERM),
        (signal.SIGTERM, signal.SIGINT),
    ],
    ids=["2xSIGINT", "2xSIGTERM", "SIGTERM+SIGINT"],
)
def test_a_second_signal_during_the_interrupt_save_does_not_lose_the_run(
    uninterrupted, tmp_path, signals
):
    """Two signals, the second as soon as the first is taken: the first stops training after the
    current step, the second arrives while that step ends or the checkpoint is being saved and is
    ignored; the save completes, says so, and holds exactly the steps the uninterrupted run took.
    (Sent 10 ms apart instead, both could be pending at once on a busy machine, and the kernel
    then delivers the lower-numbered first.)"""
    out = tmp_path / "run"
    process = _train(out)
    assert _wait_for_new_checkpoint(process, out / "checkpoint.npz")
    time.sleep(0.2)
    process.send_signal(signals[0])
    taken = []
    for line in process.stdout:
        taken.append(line)
        if "stopping after this step" in line:
            break
    process.send_signal(signals[1])
    output, _ = process.communicate(timeout=HANG_GUARD_S)
    output = "".join(taken) + output
    assert process.returncode == 128 + signals[0], output
    metadata = read_metadata(out / "checkpoint.npz")
    step = metadata["step"]
    assert f"interrupted at step {step}; checkpoint saved to {out / 'checkpoint.npz'}" in output
    assert "resume with the same command and --resume" in output
    assert 0 < step < STEPS and metadata["history"]["loss"] == uninterrupted[:step]
    assert not list(out.glob("*.tmp"))


def test_a_third_signal_exits_at_once_and_the_checkpoint_on_disk_stays_whole(
    uninterrupted, tmp_path
):
    out = tmp_path / "run"
    process = _train(out)
    assert _wait_for_new_checkpoint(process, out / "checkpoint.npz")
    for _ in range(3):
        process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=HANG_GUARD_S)
    assert process.returncode in (128 + signal.SIGINT, -signal.SIGINT), output
    metadata = read_metadata(out / "checkpoint.npz")  # whole: it loads
    step = metadata["step"]
    assert metadata["history"]["loss"] == uninterrupted[:step]
    if "checkpoint saved" in output:  # the save began before the third signal: it finished
        assert f"interrupted at step {step}; checkpoint saved" in output
    else:
        assert "exiting without saving; the last checkpoint on disk is intact" in output
    assert not list(out.glob("*.tmp"))


def test_a_second_trainer_on_the_same_folder_is_refused_and_the_first_goes_on(
    uninterrupted, tmp_path
):
    """One run folder has one writer: a second trainer started on it exits with an error naming
    the first, touching nothing, and the first run goes on as if alone."""
    out = tmp_path / "run"
    first = _train(out, "--steps", "1000000")  # still training when the second one starts
    assert _wait_for_new_checkpoint(first, out / "checkpoint.npz")
    second = _train(out, "--resume", "--steps", "1000000")
    output, _ = second.communicate(timeout=HANG_GUARD_S)
    assert second.returncode == 2, output
    assert f"another trainer (process {first.pid}) is writing to {out}" in output
    assert first.poll() is None  # undisturbed
    time.sleep(0.5)
    first.send_signal(signal.SIGINT)
    output, _ = first.communicate(timeout=HANG_GUARD_S)
    assert first.returncode == 128 + signal.SIGINT, output
    losses = read_metadata(out / "checkpoint.npz")["history"]["loss"]
    n = min(len(losses), len(uninterrupted))
    assert n > 0 and losses[:n] == uninterrupted[:n]
    assert not list(out.glob("*.tmp"))


ORDER_OF_ARRIVAL = textwrap.dedent(
    """
    import os, signal, threading
    from jaxrnn import runs

    messages = []
    go = threading.Event()

    def send(first, second):
        go.wait()
        os.kill(os.getpid(), first)
        os.kill(os.getpid(), second)

    for first, second in [(signal.SIGTERM, signal.SIGINT), (signal.SIGINT, signal.SIGTERM)]:
        go.clear()
        # Started before the main thread blocks both signals, so that it alone receives them:
        # both are then pending for the main thread's handlers at once, as during a long step.
        helper = threading.Thread(target=send, args=(first, second))
        helper.start()
        with runs.StopOnSignal(messages.append) as stop:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            go.set()
            helper.join()
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
            sum(range(1000))  # the handlers run here, in the main thread
            print(signal.Signals(stop.requested).name, stop.count)
    print(*messages, sep="\\n")
    """
)


def test_signals_that_arrive_during_one_step_are_taken_in_the_order_they_came():
    """Python runs the handlers of signals pending together in the order of their numbers,
    SIGINT before SIGTERM: the stop request (and so the exit status) is the first to arrive."""
    result = subprocess.run(
        [sys.executable, "-c", ORDER_OF_ARRIVAL],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=HANG_GUARD_S,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["SIGTERM 2", "SIGINT 2"], result.stdout
    assert lines[2].startswith("SIGTERM: stopping after this step to save a checkpoint")
    assert lines[3].startswith("SIGINT: stopping after this step to save a checkpoint")
