"""``jaxrnn train`` under generated argument lists and output-folder states.

Whatever the arguments and whatever is at ``--out`` (nothing, an empty folder, a regular file, a
folder that cannot be written, an earlier run, an earlier run whose files are symbolic links, a run
another trainer holds), the command either trains and leaves a checkpoint that loads with finite
parameters, or exits 2 with a one-line error, and in every case:

- no exception escapes and no traceback is printed;
- a file that was in the folder is changed only by a run that was asked to resume or replace it;
- a file a symbolic link points to is never written;
- a run held by another trainer is never touched.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from jaxrnn import cli
from jaxrnn.lm_train import load_lm

PROPERTY = settings(
    max_examples=10,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
STATES = ["missing", "empty", "file", "unwritable", "run", "linked run", "locked run"]
UNWRITABLE = Path("/proc/self/fdinfo")  # a folder no process can create files in, root included

# Each option: values a run can use, then values it must refuse. The valid ones keep runs tiny.
OPTIONS = {
    "--steps": (["1", "2", "3"], ["0", "-5"]),
    "--batch": (["2", "4"], ["0", "-1"]),
    "--hidden": (["4", "6"], ["0", "-3"]),
    "--layers": (["1", "2"], ["0"]),
    "--lr": (["0.01", "1e-3"], ["nan", "inf", "-1", "0"]),
    "--eval-every": (["1", "2"], ["0", "-2"]),
    "--checkpoint-every": (["1", "3"], ["0"]),
    "--warmup": (["0", "1"], ["-5"]),
    "--valid-fraction": (["0.1", "0.3"], ["1.5", "0", "-0.2", "nan"]),
    "--dropout": (["0", "0.2"], ["1.0", "-0.1", "nan"]),
    "--clip-value": (["5", "0"], ["-1", "nan"]),
    "--clip-norm": (["0", "1"], ["-1", "inf"]),
    "--final-lr": (["1e-4"], ["-1", "nan"]),
    "--cell": (["rnn", "gru", "lstm", "min_gru"], []),
    "--optimizer": (["adam", "sgd", "rmsprop"], []),
    "--embedding": (["0", "3"], ["-2"]),
    "--max-len": (["6"], ["0"]),
    "--seed": (["0", "7"], []),
}
FIXED = ["--corpus", "names", "--sample-every", "0", "--ngram", "0", "--no-progress"]
DEFAULTS = ["--steps", "2", "--batch", "2", "--hidden", "4", "--eval-every", "1"]


@st.composite
def argument_lists(draw):
    args = list(DEFAULTS)
    for option in draw(st.lists(st.sampled_from(sorted(OPTIONS)), max_size=4, unique=True)):
        valid, invalid = OPTIONS[option]
        pool = valid + invalid if draw(st.integers(0, 3)) == 0 and invalid else valid
        args += [option, draw(st.sampled_from(pool))]
    flag = draw(
        st.sampled_from([[], [], ["--resume"], ["--overwrite"], ["--resume", "--overwrite"]])
    )
    return args + flag


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory) -> Path:
    """A tiny finished run, copied into each example's folder."""
    out = tmp_path_factory.mktemp("earlier") / "run"
    assert cli.main(["train", *FIXED, *DEFAULTS, "--out", str(out)]) == 0
    return out


def _files(folder: Path) -> dict[str, bytes]:
    """The bytes of every regular file in ``folder``, links not followed; ``.lock`` aside (its
    content is the process id of the trainer that last held it). In the procfs folder, the names
    that are not descriptor numbers: whatever a trainer might have created there."""
    if not folder.is_dir():
        return {}
    if folder == UNWRITABLE:  # one entry per open descriptor, each changing as files are read
        return {p.name: b"" for p in folder.iterdir() if not p.name.isdigit()}
    return {
        p.name: p.read_bytes()
        for p in folder.iterdir()
        if p.name != ".lock" and p.is_file() and not p.is_symlink()
    }


def _prepare(state: str, root: Path, earlier_run: Path) -> tuple[Path, dict[Path, bytes]]:
    """The ``--out`` folder in ``state``; returns it and the files outside it that links point at
    (which must never change)."""
    out = root / "out"
    outside = {}
    if state == "empty":
        out.mkdir()
    elif state == "file":
        out.write_bytes(b"not a folder")
        outside[out] = out.read_bytes()
    elif state == "unwritable":
        out = UNWRITABLE
    elif state in ("run", "locked run"):
        shutil.copytree(earlier_run, out)
    elif state == "linked run":
        out.mkdir()
        for name in ("checkpoint.npz", "loss.png"):
            target = root / f"elsewhere-{name}"
            shutil.copy(earlier_run / name, target)
            (out / name).symlink_to(target)
            outside[target] = target.read_bytes()
    return out, outside


@pytest.mark.parametrize("state", STATES)
@PROPERTY
@given(args=argument_lists())
def test_cli_train_trains_or_refuses_and_never_loses_what_was_there(
    tmp_path_factory, capsys, earlier_run, state, args
):
    root = tmp_path_factory.mktemp("cli_property")
    out, outside = _prepare(state, root, earlier_run)
    before = _files(out)
    holder = None
    if state == "locked run":  # another trainer holds the folder
        holder = os.open(out / ".lock", os.O_RDWR | os.O_CREAT)
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(holder, b"4242\n")
    try:
        code = cli.main(["train", *FIXED, *args, "--out", str(out)])
    except SystemExit as error:  # argparse: an unknown value of a choice, a non-number
        code = error.code
    finally:
        if holder is not None:
            os.close(holder)
    captured = capsys.readouterr()
    event(f"{state}: exit {code}")
    assert "Traceback" not in captured.err + captured.out
    assert code in (0, 1, 2), (code, captured.err)
    for path, content in outside.items():
        assert path.read_bytes() == content, f"{path} was written through a link"
    asked_to_replace = "--resume" in args or "--overwrite" in args
    if code == 2:
        error = captured.err.strip().splitlines()
        assert error and error[-1].startswith("jaxrnn train: error: "), captured.err
        assert _files(out) == before  # nothing in the folder changed
        return
    assert state not in ("file", "unwritable", "locked run"), (state, args, code)
    if state in ("run", "linked run"):
        assert asked_to_replace, "an earlier run was replaced without --resume or --overwrite"
    if code == 0:
        params, _, _, metadata = load_lm(out / "checkpoint.npz")
        last = max(i for i, arg in enumerate(args) if arg == "--steps")
        assert metadata["step"] == int(args[last + 1])
        assert all(np.isfinite(np.asarray(leaf)).all() for leaf in _leaves(params))
        assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert not (out / "loss.png").is_symlink()


def _leaves(tree):
    import jax

    return jax.tree.leaves(tree)


@pytest.mark.parametrize("state", ["file", "unwritable", "locked run"])
def test_cli_train_refuses_an_out_it_cannot_use_before_training(
    tmp_path, capsys, earlier_run, state
):
    out, _ = _prepare(state, tmp_path, earlier_run)
    holder = None
    if state == "locked run":
        holder = os.open(out / ".lock", os.O_RDWR | os.O_CREAT)
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(holder, b"4242\n")
    try:
        code = cli.main(
            ["train", *FIXED, *DEFAULTS, "--steps", "500", "--out", str(out), "--resume"]
        )
    finally:
        if holder is not None:
            os.close(holder)
    err = capsys.readouterr()
    assert code == 2
    expected = {
        "file": f"expected the output folder {out} to be a folder, it is a file",
        "unwritable": "nothing to resume",
        "locked run": f"another trainer (process 4242) is writing to {out}",
    }[state]
    assert expected in err.err
    assert "step " not in err.out  # not one step was trained


def test_cli_train_reports_an_unwritable_out_before_the_first_step(capsys):
    code = cli.main(["train", *FIXED, *DEFAULTS, "--steps", "500", "--out", str(UNWRITABLE)])
    assert code == 2
    captured = capsys.readouterr()
    assert f"cannot write to the output folder {UNWRITABLE}" in captured.err
    assert "step 1" not in captured.out and "nats/token" not in captured.out


def test_a_plot_written_over_a_symlink_replaces_the_link_not_its_target(tmp_path):
    from jaxrnn.plots import plot_history
    from jaxrnn.runs import Evaluation, History

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    link = tmp_path / "loss.png"
    link.symlink_to(victim)
    plot_history(History([3.0, 2.5, 2.0], [Evaluation(3, 0.0, 2.1)], seconds=1.0), link)
    assert victim.read_text() == "precious"
    assert not link.is_symlink() and link.read_bytes()[:4] == b"\x89PNG"
