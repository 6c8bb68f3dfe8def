"""Black-box probes of the ``jaxrnn`` CLI, its checkpoints, signals and numerics.

    python -m benchmarks.probes [--out benchmarks/results] [--workers 2] [--only CATEGORY,...]

A reproducible battery, generated from tables, of what a tester who has not read the code would
try: every numeric option with valid, zero, negative, NaN, infinite, huge and non-numeric values;
output folders in every state (missing, a file, unwritable, holding a run, symbolic links, a
trainer already running); SIGINT and SIGTERM, once and repeated, at several moments; crafted
checkpoint files (truncated, random, compressed, deeply nested, pickled, absurd sizes); and learning
rates that make training diverge. Each probe is a real ``jaxrnn`` process (or, for loading a
checkpoint, a child process calling the public `jaxrnn.lm_train.load_lm`), run with its address
space limited to ``--max-gib`` so that a value that asks for too much memory fails in that process
instead of exhausting the machine.

Each probe has an expectation: ``ok`` (exit 0 and, for training, a checkpoint that loads with
finite params), ``refuse`` (exit 2 and one error line ``jaxrnn <cmd>: error: ...`` on stderr;
argparse's usage block before it is allowed), ``either`` (a clean refusal, a success, or a
diverged run stopped with advice) or ``diverge`` (stopped with advice to lower the learning rate,
or refused). Outcomes:

- pass;
- ``run lost or corrupted``: a checkpoint that existed is gone or changed without ``--resume`` /
  ``--overwrite``, a checkpoint does not load or holds non-finite params, a symbolic link's target
  changed, a ``.tmp`` file is left after the process exited, or the step said to be saved is not
  the one in the checkpoint;
- ``raw traceback``: "Traceback" (or a native crash dump) in the output, a process killed by a
  signal it was not sent, or a Python call raising other than ``CheckpointError`` / ``InputError``;
- ``code executed``: the marker file that a crafted pickle would create exists;
- ``wrong result``: anything else that does not meet the expectation (exit 0 where a refusal was
  due, a refusal that is not one clean line, a hang, a printed checkpoint that is not there).

``--commit REV`` probes the ``jaxrnn`` package of that commit (extracted with ``git archive``)
instead of the working tree's, so that edits in progress do not change the results mid-run; the
report names the commit, or says that the working tree had uncommitted changes to ``jaxrnn/``.

The script exits 0 whether or not probes fail: it is a measurement. Results go to
``probes_cpu.md`` and ``probes_cpu.json`` in ``--out``.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import hashlib
import io
import json
import os
import platform
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

PASS = "pass"
LOST = "run lost or corrupted"
TRACEBACK = "raw traceback"
EXECUTED = "code executed"
WRONG = "wrong result"
KINDS = (LOST, TRACEBACK, EXECUTED, WRONG)

CATEGORIES = {
    "options": "1. CLI options",
    "folders": "2. Output folders and inputs",
    "signals": "3. Signals",
    "checkpoints": "4. Crafted checkpoints",
    "numerics": "5. Numerics",
}

# A tiny model: every training probe starts from these options and changes one.
BASE_TRAIN = {
    "--corpus": "names",
    "--hidden": "4",
    "--steps": "2",
    "--batch": "2",
    "--sample-every": "0",
    "--ngram": "0",
    "--eval-every": "1000",
    "--no-progress": None,
}
HUGE = ("1000000000", "1000000000000")

# option: (a valid value, then the expectation for 0, -1, nan, inf, 10**9, 10**12, "abc").
# ok: exit 0 with a good checkpoint; refuse: a clean refusal; either: refusal or success; diverge:
# stopped with advice for a smaller learning rate (or refused); None: not probed (10**12 where
# 10**9 already trains a whole run the same way, to keep the battery short).
R, OK, E, D = "refuse", "ok", "either", "diverge"
TRAIN_OPTIONS = {
    "--steps": ("3", R, R, R, R, OK, E, R),
    "--batch": ("4", R, R, R, R, R, R, R),
    "--hidden": ("8", R, R, R, R, R, R, R),
    "--layers": ("2", R, R, R, R, R, R, R),
    "--embedding": ("4", OK, R, R, R, R, R, R),
    "--dropout": ("0.1", OK, R, R, R, R, R, R),
    "--lr": ("0.01", R, R, R, R, D, D, R),
    "--final-lr": ("0.0001", E, R, R, R, E, E, R),
    "--warmup": ("1", OK, R, R, R, E, E, R),
    "--clip-value": ("1", OK, R, R, E, OK, None, R),
    "--clip-norm": ("1", OK, R, R, E, OK, None, R),
    "--valid-fraction": ("0.2", E, R, R, R, R, R, R),
    "--max-vocab": ("10", E, R, R, R, OK, None, R),
    "--min-count": ("2", E, R, R, R, E, None, R),
    "--max-len": ("5", R, R, R, R, OK, None, R),
    "--seq-len": ("8", R, R, R, R, E, E, R),
    "--eval-every": ("1", E, R, R, R, OK, None, R),
    "--sample-every": ("1", OK, R, R, R, OK, None, R),
    "--checkpoint-every": ("1", E, R, R, R, OK, None, R),
    "--minutes": ("0.05", E, R, R, E, OK, OK, R),
    "--devices": ("1", R, R, R, R, R, R, R),
    "--ngram": ("2", OK, R, R, R, E, E, R),
    "--seed": ("1", OK, E, R, R, OK, OK, R),
}
VALUE_NAMES = ("0", "-1", "nan", "inf", *HUGE, "abc")
# Extra values a tester tries on a few options.
TRAIN_EXTRAS = [
    ("--steps", "2.5", R),
    ("--dropout", "1", R),
    ("--valid-fraction", "1", R),
    ("--lr", "1e400", R),
    ("--seed", "100000000000000000000", E),
]

SAMPLE_BASE = {"--num": "2", "--max-len": "8"}
SAMPLE_OPTIONS = {
    "--num": ("3", E, R, R, R, E, E, R),
    "--max-len": ("5", E, R, R, R, E, E, R),
    "--temperature": ("0.5", OK, R, R, E, OK, OK, R),
    "--top-k": ("3", E, R, R, R, E, E, R),
}


# ----------------------------------------------------------------------------------- running


@dataclass
class Probe:
    category: str
    name: str
    expect: str
    command: str = ""
    verdict: str = ""
    detail: str = ""
    tail: str = ""
    seconds: float = 0.0
    notes: list = field(default_factory=list)


@dataclass
class Run:
    rc: int | None
    out: str
    err: str
    timed_out: bool
    seconds: float

    @property
    def text(self) -> str:
        return self.out + self.err


class Env:
    """Paths and settings shared by the probes."""

    def __init__(self, root: Path, max_gib: float):
        self.root = root
        self.max_bytes = int(max_gib * 2**30)
        self.jaxrnn = Path(sys.executable).with_name("jaxrnn")
        self.markers: dict[str, Path] = {}  # crafted file name -> what its pickle would create
        self.counter = 0
        self.lock = threading.Lock()
        self.load_lock = threading.Lock()

    def folder(self, stem: str) -> Path:
        with self.lock:
            self.counter += 1
            return self.root / f"{self.counter:03d}-{re.sub(r'[^A-Za-z0-9]+', '_', stem)[:40]}"

    def argv(self, args: list[str]) -> list[str]:
        """``jaxrnn ARGS`` under an address-space limit; exec keeps the process id."""
        limit = (
            "import os, resource, sys; "
            "resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[1]), int(sys.argv[1]))); "
            "os.execv(sys.argv[2], sys.argv[2:])"
        )
        return [sys.executable, "-c", limit, str(self.max_bytes), str(self.jaxrnn), *args]

    def popen(self, args: list[str]) -> subprocess.Popen:
        return subprocess.Popen(
            self.argv(args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            cwd=self.root,
        )

    def run(self, args: list[str], timeout: float = 90) -> Run:
        start = time.monotonic()
        proc = self.popen(args)
        try:
            out, err = proc.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            timed_out = True
        return Run(proc.returncode, out, err, timed_out, time.monotonic() - start)


def show(args: list[str]) -> str:
    return "jaxrnn " + shlex.join(args)


def options(base: dict, **changes) -> list[str]:
    merged = dict(base)
    merged.update(changes)
    args = []
    for key, value in merged.items():
        if value is False:
            continue
        args.append(key)
        if value is not None and value is not True:
            args.append(value)
    return args


def tail(run: Run, n: int = 900) -> str:
    text = (run.out + ("\n[stderr]\n" + run.err if run.err.strip() else "")).strip()
    return text if len(text) <= n else "…" + text[-n:]


# --------------------------------------------------------------------------------- judging


def traceback_in(run: Run) -> str | None:
    if "Traceback (most recent call last)" in run.text or "Traceback" in run.text:
        return "a Python traceback in the output"
    if "Check failure stack trace" in run.text or "*** " in run.err:
        return "a native crash dump in the output"
    if run.rc is not None and run.rc < 0 and not run.timed_out:
        return f"killed by signal {signal.Signals(-run.rc).name}"
    return None


def refusal_problem(run: Run, cmd: str) -> str | None:
    """None if ``run`` is a clean refusal: exit 2, stderr one line ``jaxrnn CMD: error: ...``
    (argparse's usage block may come before it)."""
    if run.timed_out:
        return "did not finish"
    if run.rc != 2:
        return f"exit {run.rc}, expected a refusal (exit 2)"
    lines = [line for line in run.err.splitlines() if line.strip()]
    message = [line for line in lines if not (line.startswith("usage:") or line.startswith(" "))]
    if len(message) != 1:
        return f"exit 2 but stderr has {len(message)} lines besides usage, expected one error line"
    if not message[0].startswith(f"jaxrnn {cmd}: error:"):
        return f"exit 2 but the error line does not start with 'jaxrnn {cmd}: error:'"
    return None


def usage_noise(run: Run) -> bool:
    return any(line.startswith("usage:") for line in run.err.splitlines())


def digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def snapshot(folder: Path) -> dict:
    """Digest of every plain file (links followed) and the target of every link in ``folder``."""
    state = {}
    if folder.is_dir():
        for entry in sorted(folder.iterdir()):
            if entry.is_symlink():
                state[entry.name] = ("link", os.readlink(entry), digest(entry))
            elif entry.is_file():
                state[entry.name] = ("file", digest(entry))
    return state


def leftover_temporaries(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def check_checkpoint(env: Env, path: Path) -> tuple[str | None, int | None]:
    """(problem or None, saved step): loads with `load_lm`, params finite."""
    from jaxrnn.lm_train import load_lm

    if path.stat().st_size > 64 * 2**20:
        return f"{path.name} is {path.stat().st_size:,} bytes, too large for a tiny model", None
    with env.load_lock:
        try:
            params, _, _, metadata = load_lm(path)
        except Exception as error:  # noqa: BLE001 - any failure to load is the finding
            return f"{path.name} does not load: {type(error).__name__}: {error}"[:400], None
        finite = all(
            bool(np.isfinite(np.asarray(leaf, np.float64)).all()) for leaf in _leaves(params)
        )
    if not finite:
        return f"{path.name} holds non-finite params", metadata.get("step")
    return None, metadata.get("step")


def _leaves(tree):
    import jax

    return jax.tree.leaves(tree)


def judge_train(
    env: Env,
    probe: Probe,
    run: Run,
    out: Path,
    *,
    before: dict | None = None,
    may_change: bool = False,
    need_checkpoint: bool = False,
    linked_targets: dict | None = None,
) -> None:
    """Sets the verdict of a training probe from its run and its folder."""
    problems: list[tuple[str, str]] = []
    if (why := traceback_in(run)) is not None:
        problems.append((TRACEBACK, why))
    if not run.timed_out and (left := leftover_temporaries(out)):
        problems.append((LOST, f"temporary files left after exit: {left}"))
    for target, saved in (linked_targets or {}).items():
        if digest(target) != saved:
            problems.append((LOST, f"the link target {target.name} outside --out was changed"))
    after = snapshot(out)
    if before is not None and "self" in before and digest(out) != before["self"]:
        problems.append((LOST, f"{out.name} was changed"))
    if before is not None and not may_change:
        for name in ("checkpoint.npz", "loss.png"):
            if name in before and before[name] != after.get(name):
                problems.append((LOST, f"{name} changed or vanished without --resume/--overwrite"))
    checkpoint = out / "checkpoint.npz"
    refused = refusal_problem(run, "train") is None
    if checkpoint.is_file() and not checkpoint.is_symlink():
        problem, step = check_checkpoint(env, checkpoint)
        if problem:
            problems.append((LOST, problem))
        probe.notes.append(f"checkpoint step {step}")
    elif need_checkpoint and not refused:
        problems.append((LOST, "no checkpoint.npz after the run"))
    for label, printed in re.findall(r"^(checkpoint|loss plot): (\S+)$", run.out, re.MULTILINE):
        if not Path(printed).exists():
            problems.append((WRONG, f"prints '{label}: {printed}' but there is no such file"))
    expectation_problem = expectation(run, probe.expect, "train", bool(problems))
    if expectation_problem:
        problems.append((WRONG, expectation_problem))
    if usage_noise(run):
        probe.notes.append("usage block printed before the error")
    settle(probe, run, problems)


def expectation(run: Run, expect: str, cmd: str, other_problems: bool) -> str | None:
    refusal = refusal_problem(run, cmd)
    diverged = (
        not run.timed_out
        and run.rc not in (0, 2)
        and re.search(r"smaller learning rate", run.text) is not None
    )
    success = not run.timed_out and run.rc == 0
    if run.timed_out:
        return "did not finish within its time limit (hang?)"
    if expect == R:
        return refusal
    if expect == OK:
        if success:
            return None
        return f"exit {run.rc}, expected success" + (
            "" if refusal else " (refused cleanly, but this value is valid)"
        )
    if expect == D:
        if diverged or refusal is None:
            return None
        if success:
            return "exit 0 with no advice to lower the learning rate"
        return f"exit {run.rc} without a clean refusal or advice to lower the learning rate"
    if expect == E:
        if success or diverged or refusal is None:
            return None
        return f"exit {run.rc}: neither a success nor a clean refusal"
    raise ValueError(expect)


def settle(probe: Probe, run: Run | None, problems: list[tuple[str, str]]) -> None:
    order = {k: i for i, k in enumerate((EXECUTED, LOST, TRACEBACK, WRONG))}
    problems.sort(key=lambda p: order[p[0]])
    if problems:
        probe.verdict = problems[0][0]
        probe.detail = "; ".join(f"{k}: {d}" for k, d in problems)
    else:
        probe.verdict = PASS
        if run is None or run.rc == 0:
            probe.detail = "ok"
        elif run.rc == 2:
            message = [line for line in run.err.splitlines() if "error:" in line]
            probe.detail = "refused cleanly: " + (message[-1][:200] if message else "")
        else:
            last = [line for line in run.text.splitlines() if line.strip()]
            probe.detail = f"stopped (exit {run.rc}): " + (last[-1][:200] if last else "")
    if run is not None:
        probe.tail = tail(run)
        probe.seconds = round(run.seconds, 2)


def judge_read(
    env: Env,
    probe: Probe,
    run: Run,
    cmd: str,
    before: dict | None = None,
    folder: Path | None = None,
    marker: Path | None = None,
) -> None:
    """Verdict of a ``sample`` or ``score`` probe."""
    problems = []
    if marker is not None and marker.exists():
        problems.append((EXECUTED, f"{marker.name} exists: the pickled payload ran"))
    if (why := traceback_in(run)) is not None:
        problems.append((TRACEBACK, why))
    if before is not None and folder is not None and snapshot(folder) != before:
        problems.append((LOST, "reading the checkpoint changed the files"))
    if (p := expectation(run, probe.expect, cmd, bool(problems))) is not None:
        problems.append((WRONG, p))
    if probe.expect == OK and run.rc == 0 and not run.out:
        problems.append((WRONG, "exit 0 but nothing printed"))
    if usage_noise(run):
        probe.notes.append("usage block printed before the error")
    settle(probe, run, problems)


# -------------------------------------------------------------------------------- fixtures


def make_fixture(env: Env, name: str, **changes) -> Path:
    out = env.root / f"fixture-{name}"
    args = ["train", *options(BASE_TRAIN, **{"--out": str(out), "--steps": "3", **changes})]
    run = env.run(args, timeout=180)
    if run.rc != 0 or not (out / "checkpoint.npz").is_file():
        raise SystemExit(f"could not make the fixture {name}: {show(args)}\n{tail(run)}")
    return out


# ---------------------------------------------------------------------- 1. options


def option_probes(env: Env) -> list:
    jobs = []

    def train_job(option: str, value: str, expect: str, extra: dict | None = None):
        def job() -> Probe:
            out = env.folder(f"opt{option}{value}")
            changes = {"--out": str(out), option: value, **(extra or {})}
            if option == "--seq-len":
                changes["--mode"] = "stream"
            if option == "--steps" and value in HUGE:
                changes["--minutes"] = "0.05"
            args = ["train", *options(BASE_TRAIN, **changes)]
            probe = Probe("options", f"train {option} {value!r}", expect, show(args))
            run = env.run(args, timeout=120)
            judge_train(env, probe, run, out, need_checkpoint=expect == OK)
            return probe

        return job

    for option, (valid, *expects) in TRAIN_OPTIONS.items():
        jobs.append(train_job(option, valid, OK))
        for value, expect in zip(VALUE_NAMES, expects, strict=True):
            if expect is not None:
                jobs.append(train_job(option, value, expect))
    for option, value, expect in TRAIN_EXTRAS:
        jobs.append(train_job(option, value, expect))
    return jobs


def read_option_probes(env: Env, fixture: Path, stream: Path) -> list:
    jobs = []

    def sample_job(option: str, value: str, expect: str):
        def job() -> Probe:
            args = ["sample", str(fixture), *options(SAMPLE_BASE, **{option: value})]
            probe = Probe("options", f"sample {option} {value!r}", expect, show(args))
            before = snapshot(fixture)
            judge_read(env, probe, env.run(args, timeout=60), "sample", before, fixture)
            return probe

        return job

    for option, (valid, *expects) in SAMPLE_OPTIONS.items():
        jobs.append(sample_job(option, valid, OK))
        for value, expect in zip(VALUE_NAMES, expects, strict=True):
            jobs.append(sample_job(option, value, expect))
    jobs.append(sample_job("--prompt", "ann", OK))
    jobs.append(sample_job("--prompt", "ÄÖ€ ", E))
    jobs.append(sample_job("--seed", "100000000000000000000", E))

    def score_job(name: str, model: Path, sentences: list[str], expect: str, extra=()):
        def job() -> Probe:
            args = ["score", str(model), *extra, *sentences]
            probe = Probe("options", name, expect, show(args))
            judge_read(env, probe, env.run(args, timeout=60), "score")
            return probe

        return job

    jobs += [
        score_job("score a name", fixture, ["anna", "bob"], OK),
        score_job("score ''", fixture, [""], R),
        score_job("score whitespace '   '", fixture, ["   "], E),
        score_job("score unknown characters", fixture, ["ÄÖ€漢"], E),
        score_job("score --per-token unknown characters", fixture, ["a€b"], E, ["--per-token"]),
        score_job("score --top-k 3", fixture, ["anna"], OK, ["--top-k", "3"]),
        score_job("score --top-k -1", fixture, ["anna"], R, ["--top-k", "-1"]),
        score_job("score --top-k 10**9", fixture, ["anna"], E, ["--top-k", HUGE[0]]),
        score_job("score a 100,000-character sentence", fixture, ["a" * 100_000], E),
        score_job("score stream model ''", stream, [""], R),
        score_job("score stream model a name", stream, ["anna"], OK),
    ]
    return jobs


# ------------------------------------------------------------------ 2. folders and inputs


def folder_probes(env: Env, fixture: Path) -> list:
    jobs = []

    def train(
        out,
        *extra,
        steps="2",
        expect=OK,
        name="",
        before=None,
        may_change=False,
        need=True,
        linked=None,
        text=None,
        cmd_out=None,
    ):
        def job() -> Probe:
            target = out() if callable(out) else out
            b = before(target) if callable(before) else before
            links = linked(target) if callable(linked) else linked
            base = dict(BASE_TRAIN)
            if text is not None:
                base.pop("--corpus")
            changes = {"--out": str(cmd_out or target), "--steps": steps}
            args = ["train", *options(base, **changes), *extra]
            if text is not None:
                args.append(str(text() if callable(text) else text))
            probe = Probe("folders", name, expect, show(args))
            run = env.run(args, timeout=120)
            judge_train(
                env,
                probe,
                run,
                target if isinstance(target, Path) else Path(target),
                before=b,
                may_change=may_change,
                need_checkpoint=need and expect == OK,
                linked_targets=links,
            )
            return probe

        return job

    def fresh_run(stem: str) -> Path:
        folder = env.folder(stem)
        shutil.copytree(fixture, folder, symlinks=True)
        return folder

    def missing():
        return env.folder("missing") / "a" / "b"

    def empty():
        folder = env.folder("empty")
        folder.mkdir()
        return folder

    def regular_file():
        path = env.folder("file")
        path.write_text("not a folder\n")
        return path

    jobs += [
        train(missing, name="--out missing (nested)"),
        train(empty, name="--out an empty folder"),
        train(
            regular_file,
            expect=R,
            name="--out a regular file",
            need=False,
            before=lambda p: {"self": digest(p)},
        ),
        train(
            Path("/proc/self/fdinfo"),
            expect=R,
            name="--out unwritable (/proc/self/fdinfo)",
            need=False,
        ),
        train(Path("/proc/version/x"), expect=R, name="--out under a file in /proc", need=False),
        train(
            lambda: fresh_run("existing") / "checkpoint.npz",
            expect=R,
            need=False,
            name="--out the checkpoint file of a run",
        ),
    ]
    # A run exists.
    jobs += [
        train(lambda: fresh_run("exists"), expect=R, name="existing run, no flag", before=snapshot),
        train(
            lambda: fresh_run("exists-same-steps"),
            steps="3",
            expect=R,
            name="existing run, no flag, same --steps",
            before=snapshot,
        ),
        train(
            lambda: fresh_run("resume"),
            "--resume",
            steps="5",
            expect=OK,
            name="existing run, --resume to more steps",
            before=snapshot,
            may_change=True,
        ),
        train(
            lambda: fresh_run("resume-equal"),
            "--resume",
            steps="3",
            expect=E,
            name="existing run, --resume with --steps equal to done",
            before=snapshot,
            may_change=True,
        ),
        train(
            lambda: fresh_run("resume-fewer"),
            "--resume",
            steps="2",
            expect=R,
            name="existing run, --resume with fewer --steps",
            before=snapshot,
        ),
        train(
            lambda: fresh_run("overwrite"),
            "--overwrite",
            steps="2",
            expect=OK,
            name="existing run, --overwrite",
            before=snapshot,
            may_change=True,
        ),
        train(
            lambda: fresh_run("both"),
            "--resume",
            "--overwrite",
            steps="5",
            expect=R,
            name="existing run, --resume and --overwrite",
            before=snapshot,
        ),
        train(
            lambda: fresh_run("resume-other-model"),
            "--resume",
            "--hidden",
            "8",
            steps="5",
            expect=R,
            name="--resume with another --hidden",
            before=snapshot,
        ),
        train(
            lambda: fresh_run("resume-other-cell"),
            "--resume",
            "--cell",
            "gru",
            steps="5",
            expect=R,
            name="--resume with another --cell",
            before=snapshot,
        ),
        train(
            empty, "--resume", steps="5", expect=R, name="--resume on an empty folder", need=False
        ),
        train(
            missing,
            "--resume",
            steps="5",
            expect=R,
            name="--resume on a missing folder",
            need=False,
        ),
    ]

    # Symbolic links inside --out.
    def outside(stem: str, data: bytes) -> Path:
        path = env.folder(stem)
        path.write_bytes(data)
        return path

    def with_links(stem: str, loss_to=None, checkpoint_to=None):
        def make():
            folder = env.folder(stem)
            folder.mkdir()
            if loss_to is not None:
                (folder / "loss.png").symlink_to(loss_to())
            if checkpoint_to is not None:
                (folder / "checkpoint.npz").symlink_to(checkpoint_to())
            return folder

        return make

    def link_targets(folder: Path) -> dict:
        return {
            p.resolve(): digest(p.resolve())
            for p in folder.iterdir()
            if p.is_symlink() and p.resolve().exists()
        }

    fixture_bytes = (fixture / "checkpoint.npz").read_bytes()
    jobs += [
        train(
            with_links("loss-link", loss_to=lambda: outside("precious-png", b"precious\n")),
            name="loss.png a link to an outside file",
            linked=link_targets,
        ),
        train(
            with_links("ckpt-link", checkpoint_to=lambda: outside("precious-ckpt", fixture_bytes)),
            expect=R,
            name="checkpoint.npz a link to an outside checkpoint, no flag",
            linked=link_targets,
            need=False,
        ),
        train(
            with_links(
                "ckpt-link-ow", checkpoint_to=lambda: outside("precious-ckpt2", fixture_bytes)
            ),
            "--overwrite",
            expect=E,
            name="checkpoint.npz a link, --overwrite",
            linked=link_targets,
            need=False,
        ),
        train(
            with_links(
                "ckpt-link-res", checkpoint_to=lambda: outside("precious-ckpt3", fixture_bytes)
            ),
            "--resume",
            steps="5",
            expect=E,
            name="checkpoint.npz a link, --resume",
            linked=link_targets,
            need=False,
        ),
        train(
            with_links(
                "ckpt-link-junk", checkpoint_to=lambda: outside("precious-junk", b"junk" * 100)
            ),
            expect=R,
            name="checkpoint.npz a link to a non-checkpoint, no flag",
            linked=link_targets,
            need=False,
        ),
        train(
            with_links("ckpt-dangling", checkpoint_to=lambda: env.root / "nowhere.npz"),
            expect=E,
            name="checkpoint.npz a dangling link",
            need=False,
        ),
    ]

    # Text inputs.
    def text_file(stem: str, data: bytes):
        def make():
            path = env.folder(stem)
            path.write_bytes(data)
            return path

        return make

    def text_dir():
        path = env.folder("text-dir")
        path.mkdir()
        return path

    jobs += [
        train(
            empty,
            text=lambda: env.root / "no-such-file.txt",
            expect=R,
            name="text: a missing file",
            need=False,
        ),
        train(
            empty,
            text=text_file("text-empty", b""),
            expect=R,
            name="text: an empty file",
            need=False,
        ),
        train(
            empty,
            text=text_file("text-newlines", b"\n\n\n"),
            expect=R,
            name="text: only newlines",
            need=False,
        ),
        train(
            empty,
            text=text_file("text-binary", bytes(range(256)) * 8),
            expect=R,
            name="text: binary bytes",
            need=False,
        ),
        train(
            empty,
            text=text_file("text-latin1", "caf\xe9\n".encode("latin-1") * 50),
            expect=R,
            name="text: not UTF-8",
            need=False,
        ),
        train(empty, text=text_dir, expect=R, name="text: a directory", need=False),
        train(
            empty,
            text=text_file("text-one-line", b"abc\n"),
            expect=E,
            name="text: a single short line",
            need=False,
        ),
        train(
            empty,
            "--corpus",
            "names",
            text=text_file("text-and-corpus", b"abc\nde\n" * 40),
            expect=R,
            name="text and --corpus both",
            need=False,
        ),
    ]
    return jobs


def concurrent_trainer_probes(env: Env) -> list[Probe]:
    """A second trainer (and readers) while the first trains into the same folder."""
    probes = []
    out = env.folder("concurrent")
    first_args = [
        "train",
        *options(
            BASE_TRAIN,
            **{
                "--out": str(out),
                "--steps": "100000",
                "--checkpoint-every": "100",
                "--eval-every": "100000",
            },
        ),
    ]
    first = env.popen(first_args)
    deadline = time.monotonic() + 120
    while not (out / "checkpoint.npz").exists() and time.monotonic() < deadline:
        if first.poll() is not None:
            break
        time.sleep(0.05)
    if not (out / "checkpoint.npz").exists():
        first.kill()
        o, e = first.communicate()
        probe = Probe("folders", "a first long trainer starts", OK, show(first_args))
        settle(
            probe, Run(first.returncode, o, e, False, 0), [(WRONG, "no checkpoint within 120 s")]
        )
        return [probe]
    for flag in ("--overwrite", "--resume"):
        args = ["train", *options(BASE_TRAIN, **{"--out": str(out), "--steps": "200000"}), flag]
        probe = Probe("folders", f"second trainer {flag} while the first runs", R, show(args))
        run = env.run(args, timeout=90)
        problems = []
        if (why := traceback_in(run)) is not None:
            problems.append((TRACEBACK, why))
        if (p := refusal_problem(run, "train")) is not None:
            problems.append((WRONG, p))
        elif str(first.pid) not in run.err and "running" not in run.err.lower():
            problems.append(
                (WRONG, f"the refusal does not name the first trainer (pid {first.pid})")
            )
        if first.poll() is not None:
            problems.append((LOST, f"the first trainer exited ({first.returncode})"))
        settle(probe, run, problems)
        probes.append(probe)
    for i in range(3):
        args = ["sample", str(out), "--num", "2", "--max-len", "8"]
        probe = Probe("folders", f"sample while the run trains ({i + 1})", OK, show(args))
        judge_read(env, probe, env.run(args, timeout=60), "sample")
        probes.append(probe)
    probe = Probe(
        "folders",
        "SIGINT the first trainer, its checkpoint loads",
        OK,
        show(first_args) + "  # then SIGINT",
    )
    first.send_signal(signal.SIGINT)
    start = time.monotonic()
    try:
        o, e = first.communicate(timeout=60)
        run = Run(first.returncode, o, e, False, time.monotonic() - start)
    except subprocess.TimeoutExpired:
        first.kill()
        o, e = first.communicate()
        run = Run(first.returncode, o, e, True, time.monotonic() - start)
    signal_verdict(env, probe, run, out, sent=(signal.SIGINT,))
    probes.append(probe)
    return probes


# ------------------------------------------------------------------------------ 3. signals


def signal_verdict(env: Env, probe: Probe, run: Run, out: Path, sent: tuple) -> None:
    problems = []
    if run.timed_out:
        problems.append((WRONG, "did not exit within 60 s of the signal"))
    if "Traceback" in run.text or "Check failure stack trace" in run.text:
        problems.append((TRACEBACK, "a traceback in the output"))
    if run.rc is not None and run.rc < 0 and not run.timed_out:
        killed_by = signal.Signals(-run.rc)
        if killed_by not in sent:
            problems.append((TRACEBACK, f"killed by {killed_by.name}, which was not sent"))
        else:
            probe.notes.append(f"ended by {killed_by.name} (default action)")
    if not run.timed_out and (left := leftover_temporaries(out)):
        problems.append((LOST, f"temporary files left after exit: {left}"))
    checkpoint = out / "checkpoint.npz"
    printed = re.findall(r"step (\d+)[^\n]*checkpoint saved", run.text)
    if checkpoint.exists():
        problem, step = check_checkpoint(env, checkpoint)
        if problem:
            problems.append((LOST, problem))
        elif printed and int(printed[-1]) != step:
            problems.append(
                (
                    LOST,
                    f"printed 'step {printed[-1]} … checkpoint saved' but the "
                    f"checkpoint holds step {step}",
                )
            )
        probe.notes.append(f"checkpoint step {step}")
    elif printed:
        problems.append((LOST, "printed 'checkpoint saved' but there is no checkpoint"))
    if run.rc == 0 and not run.timed_out:
        probe.notes.append("exit 0 after the signal")
    settle(probe, run, problems)


SIGNAL_PATTERNS = {
    "SIGINT once": [(0.0, signal.SIGINT)],
    "SIGTERM once": [(0.0, signal.SIGTERM)],
    "two SIGINTs 10 ms apart": [(0.0, signal.SIGINT), (0.01, signal.SIGINT)],
    "two SIGTERMs 10 ms apart": [(0.0, signal.SIGTERM), (0.01, signal.SIGTERM)],
    "SIGTERM then SIGINT": [(0.0, signal.SIGTERM), (0.01, signal.SIGINT)],
    "three SIGINTs 10 ms apart": [
        (0.0, signal.SIGINT),
        (0.01, signal.SIGINT),
        (0.01, signal.SIGINT),
    ],
    "three SIGINTs at once": [(0.0, signal.SIGINT), (0.0, signal.SIGINT), (0.0, signal.SIGINT)],
}


def signal_probes(env: Env, rng: random.Random) -> list:
    jobs = []

    def job_for(pattern: str, after_checkpoint: bool, delay: float):
        def job() -> Probe:
            out = env.folder(f"sig-{pattern}")
            args = [
                "train",
                *options(
                    BASE_TRAIN,
                    **{
                        "--out": str(out),
                        "--steps": "100000",
                        "--checkpoint-every": "50",
                        "--eval-every": "100000",
                    },
                ),
            ]
            when = (
                f"{delay:.2f} s after the first checkpoint"
                if after_checkpoint
                else (f"{delay:.2f} s after start")
            )
            probe = Probe("signals", f"{pattern}, {when}", "clean", show(args) + f"  # {pattern}")
            proc = env.popen(args)
            start = time.monotonic()
            if after_checkpoint:
                while not (out / "checkpoint.npz").exists() and proc.poll() is None:
                    if time.monotonic() - start > 120:
                        break
                    time.sleep(0.02)
            time.sleep(delay)
            sent = []
            for gap, sig in SIGNAL_PATTERNS[pattern]:
                time.sleep(gap)
                if proc.poll() is None:
                    proc.send_signal(sig)
                    sent.append(sig)
            t0 = time.monotonic()
            try:
                o, e = proc.communicate(timeout=60)
                run = Run(proc.returncode, o, e, False, time.monotonic() - start)
            except subprocess.TimeoutExpired:
                proc.kill()
                o, e = proc.communicate()
                run = Run(proc.returncode, o, e, True, time.monotonic() - start)
            probe.notes.append(f"exit {run.rc} {time.monotonic() - t0:.1f} s after the signal")
            signal_verdict(env, probe, run, out, tuple(sent))
            return probe

        return job

    for pattern in SIGNAL_PATTERNS:
        for delay in (0.0, round(rng.uniform(0.05, 0.6), 2)):
            jobs.append(job_for(pattern, True, delay))
    # Before training starts: during imports, and while building the corpus or compiling.
    for pattern, delay in (("SIGINT once", 0.3), ("SIGTERM once", 2.5)):
        jobs.append(job_for(pattern, False, delay))
    return jobs


# ----------------------------------------------------------------- 4. crafted checkpoints


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: the marker appears if a loader unpickles."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _members(path: Path) -> tuple[dict, dict[str, bytes]]:
    with zipfile.ZipFile(path) as archive:
        header = json.loads(archive.read("metadata.json"))
        members = {name: archive.read(name) for name in archive.namelist()}
    return header, members


def _write_zip(path: Path, members: dict[str, bytes], deflate: set = frozenset()) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            method = zipfile.ZIP_DEFLATED if name in deflate else zipfile.ZIP_STORED
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=method)


def _with_header(members: dict, header_text: str) -> dict:
    return {**members, "metadata.json": header_text.encode()}


def crafted_checkpoints(env: Env, source: Path) -> dict[str, Path]:
    """name -> a damaged or hostile file built from the good checkpoint ``source``."""
    folder = env.root / "crafted"
    folder.mkdir()
    data = source.read_bytes()
    header, members = _members(source)
    rng = np.random.default_rng(0)
    files: dict[str, Path] = {}

    def put(name: str, content: bytes | dict, deflate: set = frozenset()) -> None:
        path = folder / f"{len(files):02d}-{re.sub(r'[^a-z0-9]+', '-', name.lower())[:40]}.npz"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            _write_zip(path, content, deflate)
        files[name] = path

    def header_with(change) -> dict:
        h = json.loads(json.dumps(header))
        change(h)
        return _with_header(members, json.dumps(h))

    put("an empty file", b"")
    put("truncated to half", data[: len(data) // 2])
    put("truncated by one byte", data[:-1])
    put("random bytes", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    put("random bytes after a zip signature", b"PK\x03\x04" + rng.bytes(2000))
    put("a deflated member", members, deflate={"0.npy"})
    put("a deflated header", members, deflate={"metadata.json"})
    put("header 5,000 levels deep", _with_header(members, "[" * 5000 + "]" * 5000))
    deep = json.dumps(header)[:-1] + ', "x": ' + "[" * 5000 + "]" * 5000 + "}"
    put("metadata nested 5,000 levels deep", _with_header(members, deep))
    put("header a list, not an object", _with_header(members, json.dumps([header])))
    put(
        "model config a list",
        header_with(
            lambda h: h["metadata"].__setitem__("model", list(h["metadata"]["model"].values()))
        ),
    )
    put("metadata a list", header_with(lambda h: h.__setitem__("metadata", [1, 2])))
    put("a leaf spec a list", header_with(lambda h: h["leaves"].__setitem__(0, ["x", [], "int32"])))
    put(
        "unknown key in the model config",
        header_with(lambda h: h["metadata"]["model"].__setitem__("sneaky", 1)),
    )
    put(
        "hidden_size 10**12",
        header_with(lambda h: h["metadata"]["model"].__setitem__("hidden_size", 10**12)),
    )
    put(
        "hidden_size -4",
        header_with(lambda h: h["metadata"]["model"].__setitem__("hidden_size", -4)),
    )
    put("num_layers 0", header_with(lambda h: h["metadata"]["model"].__setitem__("num_layers", 0)))
    put(
        "cell 'os.system'",
        header_with(lambda h: h["metadata"]["model"].__setitem__("cell_name", "os.system")),
    )
    put(
        "dropout 2.0",
        header_with(lambda h: h["metadata"]["model"].__setitem__("dropout_rate", 2.0)),
    )
    step_text = json.dumps(header).replace(
        f'"step": {header["metadata"]["step"]}', '"step": 1e400', 1
    )
    put("step 1e400", _with_header(members, step_text))
    put("step -5", header_with(lambda h: h["metadata"].__setitem__("step", -5)))
    put("step a string", header_with(lambda h: h["metadata"].__setitem__("step", "3")))
    put(
        "vocab of 6 tokens, vocab_size 28",
        header_with(
            lambda h: h["metadata"]["vocab"].__setitem__(
                "tokens", h["metadata"]["vocab"]["tokens"][:6]
            )
        ),
    )
    put(
        "vocab with a duplicate token",
        header_with(
            lambda h: h["metadata"]["vocab"]["tokens"].__setitem__(
                1, h["metadata"]["vocab"]["tokens"][2]
            )
        ),
    )
    put(
        "vocab tokens numbers",
        header_with(lambda h: h["metadata"]["vocab"].__setitem__("tokens", list(range(28)))),
    )
    put("format_version 99", header_with(lambda h: h.__setitem__("format_version", 99)))
    put("header not UTF-8", {**members, "metadata.json": b"\xff\xfe" + members["metadata.json"]})
    put("no metadata.json", {k: v for k, v in members.items() if k != "metadata.json"})
    put("a member missing", {k: v for k, v in members.items() if k != "3.npy"})

    # A pickled object array in place of the first leaf and of a params leaf.
    for index in (0, len(header["leaves"]) - 1):
        spec = header["leaves"][index]
        array = np.empty(tuple(spec["shape"]), dtype=object)
        name = f"pickled payload in leaf {index}"
        env.markers[name] = env.root / f"PAYLOAD_RAN_{index}"
        array[...] = _Payload(str(env.markers[name]))
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, array, allow_pickle=True)
        put(name, {**members, f"{index}.npy": buffer.getvalue()})
    name = "leaf declared object dtype, pickled"
    env.markers[name] = env.root / "PAYLOAD_RAN_object"
    array = np.empty((), dtype=object)
    array[()] = _Payload(str(env.markers[name]))
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=True)
    put(
        name,
        header_with(lambda h: h["leaves"][0].__setitem__("dtype", "object"))
        | {"0.npy": buffer.getvalue()},
    )

    params = [i for i, s in enumerate(header["leaves"]) if s["path"].startswith("['params']")]
    big = params[0]
    put(
        "a leaf declared 256 GiB",
        header_with(lambda h: h["leaves"][big].__setitem__("shape", [2**36])),
    )
    big_npy = io.BytesIO()
    np.lib.format.write_array_header_2_0(
        big_npy, {"descr": "<f4", "fortran_order": False, "shape": (2**36,)}
    )
    put(
        "a leaf and its .npy declared 256 GiB",
        header_with(lambda h: h["leaves"][big].__setitem__("shape", [2**36]))
        | {f"{big}.npy": big_npy.getvalue() + members[f"{big}.npy"][-64:]},
    )
    nan_members = dict(members)
    for i in params:
        spec = header["leaves"][i]
        buffer = io.BytesIO()
        np.lib.format.write_array(buffer, np.full(spec["shape"], np.nan, np.float32))
        nan_members[f"{i}.npy"] = buffer.getvalue()
    put("all params NaN", nan_members)
    put(
        "duplicate member names",
        {**members},  # the writer below appends a second header
    )
    with zipfile.ZipFile(files["duplicate member names"], "a") as archive:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            archive.writestr("metadata.json", json.dumps(header))
    return files


# Crafted files read by sample, score and load_lm; the others by one of sample and score.
THREE_WAYS = {
    "truncated to half",
    "random bytes",
    "a deflated member",
    "header 5,000 levels deep",
    "model config a list",
    "unknown key in the model config",
    "hidden_size 10**12",
    "step 1e400",
    "vocab of 6 tokens, vocab_size 28",
    "a leaf declared 256 GiB",
    "all params NaN",
}

LOAD_CHILD = """
import json, sys
from jaxrnn.checkpoint import CheckpointError
from jaxrnn.errors import InputError
from jaxrnn.lm_train import load_lm
try:
    load_lm(sys.argv[1])
    print(json.dumps({"result": "loaded"}))
except (CheckpointError, InputError) as error:
    result, caught = "documented", error
except BaseException as error:
    result, caught = "other", error
else:
    sys.exit()
print(json.dumps({"result": result, "type": type(caught).__name__, "message": str(caught)[:300]}))
"""


def checkpoint_probes(env: Env, files: dict[str, Path], folder_without_run: Path) -> list:
    jobs = []
    loadable = {"all params NaN"}  # may load; then sample and score must not crash

    def cli_job(name: str, path: Path, cmd: str):
        def job() -> Probe:
            args = (
                [cmd, str(path), "--num", "2", "--max-len", "8"]
                if cmd == "sample"
                else [cmd, str(path), "anna"]
            )
            expect = E if name in loadable else R
            probe = Probe("checkpoints", f"{cmd}: {name}", expect, show(args))
            before = digest(path)
            run = env.run(args, timeout=60)
            judge_read(env, probe, run, cmd, marker=env.markers.get(name))
            if digest(path) != before and probe.verdict == PASS:
                settle(probe, run, [(LOST, "the file was changed by reading it")])
            return probe

        return job

    def load_job(name: str, path: Path):
        def job() -> Probe:
            argv = [sys.executable, "-c", LOAD_CHILD, str(path)]
            limit = (
                "import os, resource, sys; "
                "resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[1]), int(sys.argv[1]))); "
                "os.execv(sys.argv[2], sys.argv[2:])"
            )
            full = [sys.executable, "-c", limit, str(env.max_bytes), *argv]
            expect = E if name in loadable else R
            probe = Probe(
                "checkpoints",
                f"load_lm: {name}",
                expect,
                f"python -c 'jaxrnn.lm_train.load_lm({str(path)!r})'",
            )
            start = time.monotonic()
            try:
                done = subprocess.run(
                    full, capture_output=True, text=True, errors="replace", timeout=60, cwd=env.root
                )
                run = Run(
                    done.returncode, done.stdout, done.stderr, False, time.monotonic() - start
                )
            except subprocess.TimeoutExpired as error:
                run = Run(None, str(error.stdout or ""), str(error.stderr or ""), True, 60.0)
            problems = []
            marker = env.markers.get(name)
            if marker is not None and marker.exists():
                problems.append((EXECUTED, f"{marker.name} exists: the pickled payload ran"))
            try:
                result = json.loads(run.out.strip().splitlines()[-1])
            except (ValueError, IndexError):
                result = {"result": "crash"}
            if run.timed_out:
                problems.append((WRONG, "load_lm did not return within 60 s"))
            elif result["result"] == "other":
                problems.append(
                    (TRACEBACK, f"load_lm raised {result['type']}: {result['message']}")
                )
            elif result["result"] == "crash":
                problems.append((TRACEBACK, f"the process died (exit {run.rc})"))
            elif result["result"] == "loaded" and expect == R:
                problems.append((WRONG, "load_lm accepted the file"))
            settle(probe, None, problems)
            probe.tail = tail(run)
            probe.seconds = round(run.seconds, 2)
            if not problems:
                probe.detail = f"{result.get('type', 'loaded')}: {result.get('message', '')}"[:200]
            return probe

        return job

    for name, path in files.items():
        if name in THREE_WAYS or name in env.markers:
            jobs += [
                cli_job(name, path, "sample"),
                cli_job(name, path, "score"),
                load_job(name, path),
            ]
        else:  # one reader each, alternating, to keep the battery short
            jobs.append(cli_job(name, path, "score" if len(jobs) % 2 else "sample"))
    jobs.append(cli_job("a folder without a run", folder_without_run, "sample"))
    jobs.append(cli_job("a missing path", env.root / "nowhere" / "checkpoint.npz", "score"))
    return jobs


# ---------------------------------------------------------------------------- 5. numerics


def numeric_probes(env: Env, fixture: Path) -> list:
    jobs = []

    def job_for(
        name: str,
        expect: str,
        changes: dict,
        extra=(),
        on_run: bool = False,
        may_change: bool = True,
    ):
        def job() -> Probe:
            out = env.folder(name)
            if on_run:
                shutil.copytree(fixture, out)
            before = snapshot(out) if on_run else None
            args = ["train", *options(BASE_TRAIN, **{"--out": str(out), **changes}), *extra]
            probe = Probe("numerics", name, expect, show(args))
            run = env.run(args, timeout=120)
            judge_train(env, probe, run, out, before=before, may_change=may_change)
            if expect == D and run.rc == 0:
                settle(probe, run, [(WRONG, "exit 0 without stopping early")])
            return probe

        return job

    many = {"--steps": "20", "--checkpoint-every": "1", "--eval-every": "1"}
    jobs += [
        job_for("--lr nan", R, {"--lr": "nan"}),
        job_for("--lr inf", R, {"--lr": "inf"}),
        job_for("--lr -inf", R, {"--lr": "-inf"}),
        job_for("--lr 1e6 stops early", D, {"--lr": "1e6", **many}),
        job_for("--lr 1e6 sgd", D, {"--lr": "1e6", "--optimizer": "sgd", **many}),
        job_for(
            "--lr 1e6 rmsprop, --clip-value 0",
            D,
            {"--lr": "1e6", "--optimizer": "rmsprop", "--clip-value": "0", **many},
        ),
        job_for("--lr 1e30 --reduce-time sum", D, {"--lr": "1e30", "--reduce-time": "sum", **many}),
        job_for("--lr 1e6 --clip-norm 1", E, {"--lr": "1e6", "--clip-norm": "1", **many}),
        job_for(
            "--lr 1e6 --warmup 5 --final-lr 1e-3",
            D,
            {"--lr": "1e6", "--warmup": "5", "--final-lr": "0.001", **many},
        ),
        job_for(
            "--lr 1e6 stream mode", D, {"--lr": "1e6", "--mode": "stream", "--seq-len": "8", **many}
        ),
        job_for(
            "--resume --lr nan on a good run",
            R,
            {"--lr": "nan", "--steps": "6"},
            extra=["--resume"],
            on_run=True,
            may_change=False,
        ),
        job_for(
            "--resume --lr inf on a good run",
            R,
            {"--lr": "inf", "--steps": "6"},
            extra=["--resume"],
            on_run=True,
            may_change=False,
        ),
        job_for(
            "--resume --lr 1e6 on a good run",
            D,
            {"--lr": "1e6", "--steps": "25", "--checkpoint-every": "1", "--eval-every": "1"},
            extra=["--resume"],
            on_run=True,
        ),
    ]
    return jobs


# --------------------------------------------------------------------------------- report


def summarise(probes: list[Probe]) -> dict:
    table = {}
    for key, title in CATEGORIES.items():
        rows = [p for p in probes if p.category == key]
        table[key] = {
            "title": title,
            "probes": len(rows),
            "passed": sum(p.verdict == PASS for p in rows),
            "failed": {kind: sum(p.verdict == kind for p in rows) for kind in KINDS},
        }
    return table


def totals_line(probes: list[Probe]) -> str:
    count = {kind: sum(p.verdict == kind for p in probes) for kind in KINDS}
    failed = sum(count.values())
    return (
        f"{len(probes)} probes: {len(probes) - failed} passed, {failed} failed "
        f"({count[LOST]} runs lost or corrupted, {count[TRACEBACK]} raw tracebacks, "
        f"{count[EXECUTED]} code executed, {count[WRONG]} wrong results)"
    )


def markdown(probes: list[Probe], stamp: str, seconds: float, max_gib: float, tested: str) -> str:
    summary = summarise(probes)
    lines = [
        "# Black-box probes of the jaxrnn CLI (CPU)",
        "",
        f"`python -m benchmarks.probes`, jaxrnn from {tested}; {stamp}; "
        f"Python {platform.python_version()}; "
        f"{platform.machine()}, {os.cpu_count()} cores; {seconds:.0f} s in all. Each probe is a "
        f"`jaxrnn` process limited to {max_gib:g} GiB of address space.",
        "",
        f"**{totals_line(probes)}**",
        "",
        "| category | probes | passed | lost or corrupted | raw traceback | code executed | "
        "wrong result |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in summary.values():
        f = row["failed"]
        lines.append(
            f"| {row['title']} | {row['probes']} | {row['passed']} | {f[LOST]} | {f[TRACEBACK]} | "
            f"{f[EXECUTED]} | {f[WRONG]} |"
        )
    n = {kind: sum(p.verdict == kind for p in probes) for kind in KINDS}
    lines.append(
        f"| **all** | **{len(probes)}** | **{sum(p.verdict == PASS for p in probes)}** | "
        f"**{n[LOST]}** | **{n[TRACEBACK]}** | **{n[EXECUTED]}** | **{n[WRONG]}** |"
    )
    failing = [p for p in probes if p.verdict != PASS]
    lines += ["", "## Failing probes", ""]
    if not failing:
        lines.append("None.")
    for p in failing:
        lines += [
            f"### [{p.verdict}] {CATEGORIES[p.category]}: {p.name}",
            "",
            f"Expected: {p.expect}. Observed: {p.detail}",
            "",
            "```",
            p.command,
            "```",
            "",
            "Output tail:",
            "",
            "```",
            p.tail.replace("```", "'''") or "(nothing)",
            "```",
            "",
        ]
    lines += ["## Every probe", ""]
    for key, title in CATEGORIES.items():
        lines += [
            f"### {title}",
            "",
            "| probe | expected | verdict | detail |",
            "|---|---|---|---|",
        ]
        for p in (p for p in probes if p.category == key):
            detail = (p.detail + ("; " + "; ".join(p.notes) if p.notes else "")).replace("|", "\\|")
            detail = detail.replace("\n", " ")[:220]
            name = p.name.replace("|", "\\|").replace("\n", "\\n")
            lines.append(f"| {name} | {p.expect} | {p.verdict} | {detail} |")
        lines.append("")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------- main


def _git(*args: str) -> str:
    repo = Path(__file__).resolve().parent.parent
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, check=True).stdout.decode()


def source_under_test(commit: str | None, root: Path) -> str:
    """Makes every probe (children through PYTHONPATH, this process through sys.path) use the
    jaxrnn package of ``commit``, extracted under ``root``; returns what is tested, in words."""
    if commit is None:
        head = _git("rev-parse", "--short", "HEAD").strip()
        dirty = _git("status", "--porcelain", "--", "jaxrnn").strip()
        return f"the working tree at {head}" + (
            " with uncommitted changes to jaxrnn/" if dirty else ""
        )
    sha = _git("rev-parse", "--short", f"{commit}^{{commit}}").strip()
    source = root / "source"
    source.mkdir()
    archive = subprocess.run(
        ["git", "archive", sha, "jaxrnn"],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive, check=True)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(source), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    sys.path.insert(0, str(source))
    for name in [m for m in sys.modules if m == "jaxrnn" or m.startswith("jaxrnn.")]:
        del sys.modules[name]
    return f"commit {sha}"


def run_jobs(jobs: list, workers: int) -> list[Probe]:
    if workers <= 1:
        return [job() for job in jobs]
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda job: job(), jobs))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--workers", type=int, default=2, help="probes run at once")
    parser.add_argument("--max-gib", type=float, default=6.0, help="address space per process")
    parser.add_argument("--only", default=",".join(CATEGORIES), help="categories to run")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--commit", help="probe jaxrnn as of this commit (default: working tree)")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="jaxrnn-probes-"))
    tested = source_under_test(args.commit, root)
    env = Env(root, args.max_gib)
    rng = random.Random(0)
    probes: list[Probe] = []

    def record(batch: list[Probe], label: str) -> None:
        probes.extend(batch)
        failed = sum(p.verdict != PASS for p in batch)
        print(
            f"{label}: {len(batch)} probes, {failed} failed ({time.monotonic() - started:.0f} s)",
            flush=True,
        )

    try:
        fixture = make_fixture(env, "lines")
        stream = make_fixture(env, "stream", **{"--mode": "stream", "--seq-len": "16"})
        if "options" in only:
            record(
                run_jobs(
                    option_probes(env) + read_option_probes(env, fixture, stream), args.workers
                ),
                "options",
            )
        if "folders" in only:
            batch = run_jobs(folder_probes(env, fixture), args.workers)
            batch += concurrent_trainer_probes(env)
            record(batch, "folders")
        if "signals" in only:
            record(run_jobs(signal_probes(env, rng), args.workers), "signals")
        if "checkpoints" in only:
            files = crafted_checkpoints(env, fixture / "checkpoint.npz")
            empty = root / "crafted-empty-folder"
            empty.mkdir()
            record(run_jobs(checkpoint_probes(env, files, empty), args.workers), "checkpoints")
        if "numerics" in only:
            record(run_jobs(numeric_probes(env, fixture), args.workers), "numerics")
        ran = sorted(p.name for p in root.glob("PAYLOAD_RAN_*"))
        if "checkpoints" in only:
            probe = Probe(
                "checkpoints",
                "no pickled payload ran during the battery",
                "clean",
                "ls PAYLOAD_RAN_*  # in the scratch folder, after every probe",
            )
            settle(probe, None, [(EXECUTED, f"{ran} exist after the battery")] if ran else [])
            probes.append(probe)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"scratch folder kept: {root}")

    seconds = time.monotonic() - started
    print(f"jaxrnn from {tested}")
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "probes_cpu.md").write_text(markdown(probes, stamp, seconds, args.max_gib, tested))
    report = {
        "date": stamp,
        "jaxrnn": tested,
        "python": platform.python_version(),
        "cores": os.cpu_count(),
        "seconds": round(seconds, 1),
        "max_gib_per_process": args.max_gib,
        "totals": totals_line(probes),
        "categories": summarise(probes),
        "probes": [asdict(p) for p in probes],
    }
    (args.out / "probes_cpu.json").write_text(
        json.dumps(report, indent=1, ensure_ascii=False) + "\n"
    )
    for p in probes:
        if p.verdict != PASS:
            print(f"FAIL [{p.verdict}] {p.name}: {p.detail}\n    {p.command}")
    print(totals_line(probes))


if __name__ == "__main__":
    main()
