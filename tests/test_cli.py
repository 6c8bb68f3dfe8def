"""The command line: train on a text file, then sample and score from the checkpoint."""

from __future__ import annotations

import math
import re
import shutil
import signal
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import jax
import numpy as np
import pytest

from jaxrnn import cli
from jaxrnn.checkpoint import read_metadata
from jaxrnn.lm import mixture, sample, sentence_log_prob
from jaxrnn.lm_train import load_lm

TINY = ["--hidden", "16", "--steps", "40", "--batch", "16", "--eval-every", "20"]
QUIET = ["--sample-every", "0", "--no-progress", "--ngram", "3"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny character model of 400 shipped names, trained through the CLI."""
    folder = tmp_path_factory.mktemp("cli")
    names = resources.files("jaxrnn").joinpath("data/names.txt").read_text().split()[:400]
    text_file = folder / "names.txt"
    text_file.write_text("\n".join(names) + "\n")
    out = folder / "run"
    code = cli.main(["train", str(text_file), "--out", str(out), *TINY, *QUIET])
    assert code == 0
    return out


def test_cli_train_writes_checkpoint_plot_and_reports(trained, capsys):
    assert (trained / "checkpoint.npz").is_file()
    assert (trained / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    params, model, vocab, metadata = load_lm(trained / "checkpoint.npz")
    assert metadata["step"] == 40 and model.hidden_size == 16 and vocab.level == "char"
    assert [row[0] for row in metadata["history"]["valid"]] == [20, 40]


def test_cli_score_ranks_by_log_probability_computed_by_the_library(trained, capsys):
    assert cli.main(["score", str(trained), "anna", "xqzzy", "--per-token", "--top-k", "3"]) == 0
    out = capsys.readouterr().out
    printed = [float(v) for v in re.findall(r"log P = +(-?[\d.]+) nats", out)]
    assert out.index("'anna'") < out.index("'xqzzy'")  # the likelier name is printed first
    params, model, vocab, _ = load_lm(trained / "checkpoint.npz")
    expected = [
        float(sentence_log_prob(params, model, np.asarray(vocab.encode(name, add_eos=True))))
        for name in ("anna", "xqzzy")
    ]
    np.testing.assert_allclose(printed, expected, atol=1e-3)
    assert out.count("next token:") == 2
    assert math.exp(printed[0]) > math.exp(printed[1])


def test_cli_sample_is_reproducible_and_respects_max_len(trained, capsys):
    args = ["sample", str(trained), "--num", "6", "--max-len", "5", "--seed", "3"]
    assert cli.main(args) == 0
    first = capsys.readouterr().out.splitlines()
    assert cli.main(args) == 0
    assert capsys.readouterr().out.splitlines() == first
    assert len(first) == 6 and all(len(line) <= 5 for line in first)
    assert cli.main(["sample", str(trained), "--num", "3", "--greedy", "--prompt", "ma"]) == 0
    greedy = capsys.readouterr().out.splitlines()
    assert len(set(greedy)) == 1 and greedy[0].startswith("ma")


@pytest.fixture(scope="module")
def trained_again(trained):
    """A second run of the same tiny model on the same names at another learning rate and with
    dropout, which acts in training only. (Another seed would split the lines, and so may build
    the vocabulary, differently.)"""
    out = trained.parent / "run_again"
    text_file = trained.parent / "names.txt"
    other = ["--lr", "0.006", "--dropout", "0.1"]
    code = cli.main(["train", str(text_file), "--out", str(out), *other, *TINY, *QUIET])
    assert code == 0
    return out


def _both_runs(trained, trained_again):
    """(params of the first run, of the second), the first run's model and vocabulary."""
    first, model, vocab, _ = load_lm(trained / "checkpoint.npz")
    second, *_ = load_lm(trained_again / "checkpoint.npz")
    return (first, second), model, vocab


def test_cli_score_with_a_second_run_scores_their_mixture(trained, trained_again, capsys):
    args = ["score", str(trained), "anna", "xqzzy", "--with", str(trained_again / "checkpoint.npz")]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    printed = dict(
        (name, float(value))
        for value, name in re.findall(r"log P = +(-?[\d.]+) nats.*'(\w+)'", out)
    )
    (p1, p2), model, vocab = _both_runs(trained, trained_again)
    for name in ("anna", "xqzzy"):
        ids = np.asarray(vocab.encode(name, add_eos=True))
        each = [float(sentence_log_prob(p, model, ids)) for p in (p1, p2)]
        expected = float(sentence_log_prob(mixture([p1, p2]), model, ids))
        np.testing.assert_allclose(printed[name], expected, atol=1e-3)
        assert min(abs(printed[name] - e) for e in each) > 1e-2  # neither run alone


def test_cli_sample_with_a_second_run_draws_from_their_mixture(trained, trained_again, capsys):
    args = ["sample", str(trained), "--with", str(trained_again), "--greedy", "--num", "2"]
    assert cli.main([*args, "--prompt", "ma"]) == 0
    greedy = capsys.readouterr().out.splitlines()
    (p1, p2), model, vocab = _both_runs(trained, trained_again)
    drawn = sample(
        mixture([p1, p2]),
        model,
        jax.random.key(0),
        max_len=100,
        eos_id=vocab.eos_id,
        temperature=0.0,
        exclude_ids=[vocab.unk_id],
        prompt=list(vocab.encode("ma")),
    )
    assert greedy == ["ma" + vocab.decode(np.asarray(drawn.ids[0]), stop_at_eos=True)] * 2


def test_cli_with_a_run_of_another_model_is_refused(trained, tmp_path, capsys):
    other = tmp_path / "wider"
    small = [*TINY[:1], "24", *TINY[2:]]  # --hidden 24
    assert (
        cli.main(["train", str(trained.parent / "names.txt"), "--out", str(other), *small, *QUIET])
        == 0
    )
    capsys.readouterr()
    assert cli.main(["score", str(trained), "anna", "--with", str(other)]) == 2
    err = capsys.readouterr().err
    assert f"--with {other}: expected a run with the model, vocabulary and mode of" in err
    assert "its model differ" in err and "hidden_size=24" in err


def test_cli_resume_continues_to_more_steps(trained, tmp_path, capsys):
    names = resources.files("jaxrnn").joinpath("data/names.txt").read_text().split()[:400]
    text_file = tmp_path / "names.txt"
    text_file.write_text("\n".join(names) + "\n")
    out = tmp_path / "run"
    tiny = [a if a != "40" else "20" for a in TINY]
    assert cli.main(["train", str(text_file), "--out", str(out), *tiny, *QUIET]) == 0
    assert cli.main(["train", str(text_file), "--out", str(out), *TINY, *QUIET, "--resume"]) == 0
    *_, resumed = load_lm(out / "checkpoint.npz")
    *_, straight = load_lm(trained / "checkpoint.npz")
    # Same data, seed and schedule: 20 + 20 steps equal 40 steps in one go.
    assert resumed["history"]["loss"] == straight["history"]["loss"]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is empty"),
        (b"   \n\n", "is empty"),
        (b"abc\x00\x01def\n", "NUL bytes"),
        (b"caf\xe9\nna\xefve\n", "expected a UTF-8 text file"),
    ],
)
def test_cli_train_rejects_bad_text_files(tmp_path, capsys, content, message):
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    assert cli.main(["train", str(path), "--out", str(tmp_path / "run"), *TINY, *QUIET]) == 2
    assert message in capsys.readouterr().err


def test_cli_reports_missing_file_and_checkpoint(tmp_path, capsys):
    assert cli.main(["train", str(tmp_path / "nope.txt"), "--out", str(tmp_path)]) == 2
    assert "cannot read the text file" in capsys.readouterr().err
    assert cli.main(["sample", str(tmp_path / "missing.npz")]) == 2
    assert "no checkpoint file" in capsys.readouterr().err


def test_cli_help_lists_commands_and_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(command in out for command in ("train", "sample", "score"))
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    out = capsys.readouterr().out
    for option in (
        "--corpus",
        "--resume",
        "--stateful",
        "--clip-value",
        "--minutes",
        "--cell",
        "--decay-over",
    ):
        assert option in out


# ------------------------------------------------------------------ the run folder is never lost


def _snapshot(folder):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file()}


def _names_file(folder):
    names = resources.files("jaxrnn").joinpath("data/names.txt").read_text().split()[:400]
    path = folder / "names.txt"
    path.write_text("\n".join(names) + "\n")
    return path


def test_cli_train_refuses_an_out_folder_that_holds_a_run_and_leaves_it_untouched(
    trained, tmp_path, capsys
):
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    before = _snapshot(out)
    code = cli.main(["train", str(_names_file(tmp_path)), "--out", str(out), *TINY, *QUIET])
    assert code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert str(out) in err and "at step 40" in err
    assert "--resume" in err and "--overwrite" in err and "a new --out" in err
    assert _snapshot(out) == before


def test_cli_train_overwrite_replaces_the_run(trained, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    tiny = [a if a != "40" else "10" for a in TINY]
    args = ["train", str(_names_file(tmp_path)), "--out", str(out), *tiny, *QUIET, "--overwrite"]
    assert cli.main(args) == 0
    assert read_metadata(out / "checkpoint.npz")["step"] == 10


def test_cli_resume_without_a_checkpoint_is_an_error(tmp_path, capsys):
    out = tmp_path / "empty"
    args = ["train", str(_names_file(tmp_path)), "--out", str(out), *TINY, *QUIET, "--resume"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert f"nothing to resume: no checkpoint.npz in {out}" in err
    assert "drop --resume" in err
    assert not out.exists()


def test_cli_resume_says_where_it_resumes_from_and_which_settings_changed(
    trained, tmp_path, capsys
):
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    more = [a if a != "40" else "44" for a in TINY]
    args = ["train", str(_names_file(tmp_path)), "--out", str(out), *more, *QUIET]
    assert cli.main([*args, "--resume", "--lr", "0.001"]) == 0
    printed = capsys.readouterr().out
    assert f"resuming from step 40 of 44 in {out / 'checkpoint.npz'}" in printed
    assert "training settings changed since the checkpoint: steps 40 -> 44" in printed
    assert "learning_rate 0.002 -> 0.001" in printed
    assert "after 44 steps" in printed


def test_cli_resume_with_fewer_steps_than_done_says_so_and_changes_nothing(
    trained, tmp_path, capsys
):
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    before = _snapshot(out)
    fewer = [a if a != "40" else "30" for a in TINY]
    args = ["train", str(_names_file(tmp_path)), "--out", str(out), *fewer, *QUIET, "--resume"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert "is at step 40, past the 30 steps asked for; nothing was trained" in err
    assert "set --steps above 40" in err
    assert _snapshot(out) == before


def test_cli_resume_of_a_finished_run_says_there_is_nothing_to_train(trained, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    args = ["train", str(_names_file(tmp_path)), "--out", str(out), *TINY, *QUIET, "--resume"]
    assert cli.main(args) == 0
    assert "already at step 40 of 40: nothing to train" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------ help


def test_cli_help_gives_every_option_a_description_and_its_default():
    commands = cli.build_parser()._subparsers._group_actions[0].choices
    for name, command in commands.items():
        formatter = command.formatter_class(prog=f"jaxrnn {name}")
        for action in command._actions:
            if not action.option_strings or "--help" in action.option_strings:
                continue
            text = formatter._get_help_string(action)
            assert action.help and "(default" in text, (name, action.option_strings, text)
    train_help = commands["train"].format_help()
    for shown in ("--hidden HIDDEN       hidden size", "(default: 256)", "(default: 2000)"):
        assert shown in train_help


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["score", "--help"]])
def test_cli_help_does_not_import_jax(argv):
    script = (
        "import sys\nfrom jaxrnn import cli\n"
        f"try:\n    cli.main({argv!r})\nexcept SystemExit:\n    pass\n"
        "print('jax imported' if 'jax' in sys.modules else 'no jax')"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("no jax")


def test_cli_cell_and_optimizer_choices_are_the_librarys():
    from jaxrnn.lm import CELL_NAMES
    from jaxrnn.lm_settings import OPTIMIZERS

    assert sorted(cli.CELL_NAMES) == sorted(CELL_NAMES)
    assert sorted(cli.OPTIMIZERS) == sorted(OPTIMIZERS)


# ----------------------------------------------------------------------------------------- score


def test_cli_score_counts_unknown_tokens_and_names_them_per_token(trained, capsys):
    assert cli.main(["score", str(trained), "an9a"]) == 0
    out = capsys.readouterr().out
    assert "1 of 4 tokens not in the vocabulary, scored as <unk>" in out
    assert "'9'" not in out
    assert cli.main(["score", str(trained), "an9a", "zo€", "--per-token"]) == 0
    out = capsys.readouterr().out
    assert "1 of 4 tokens not in the vocabulary, scored as <unk>: '9'" in out
    assert "1 of 3 tokens not in the vocabulary, scored as <unk>: '€'" in out
    assert re.search(r"'9' +-?[\d.]+ \(as <unk>\)", out)


@pytest.mark.parametrize("sentence", ["", "   "])
def test_cli_score_refuses_an_empty_sentence(trained, capsys, sentence):
    assert cli.main(["score", str(trained), "anna", sentence]) == 2
    err = capsys.readouterr().err
    assert "expected sentences with at least one token" in err and "sentence 2" in err


@pytest.mark.parametrize("lr", ["nan", "inf", "-1", "0"])
def test_cli_resume_with_a_learning_rate_no_step_can_use_leaves_the_run_untouched(
    trained, tmp_path, capsys, lr
):
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    before = _snapshot(out)
    more = [a if a != "40" else "60" for a in TINY]
    args = ["train", str(_names_file(tmp_path)), "--out", str(out), *more, *QUIET, "--resume"]
    assert cli.main([*args, "--lr", lr]) == 2
    assert f"expected --lr to be a finite number > 0, got {float(lr)!r}" in capsys.readouterr().err
    assert _snapshot(out) == before


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--num", "1000000000"], "use a smaller --num or --max-len"),
        (["--max-len", "1000000000000"], "use a smaller --num or --max-len"),
        (["--seed", str(10**20)], "expected --seed to be an int in [0, 2**63)"),
    ],
)
def test_cli_sample_refuses_what_cannot_be_drawn_before_allocating(trained, capsys, extra, message):
    assert cli.main(["sample", str(trained), *extra]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "option, value",
    [("--warmup", 10**12), ("--steps", 2**31), ("--eval-every", 2**40)],
)
def test_cli_train_refuses_counts_beyond_int32(tmp_path, capsys, option, value):
    args = ["train", str(_names_file(tmp_path)), "--out", str(tmp_path / "run"), *TINY, *QUIET]
    assert cli.main([*args, option, str(value)]) == 2
    err = capsys.readouterr().err
    assert f"expected {option} at most 2,147,483,647" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_cli_train_decay_over_minutes_needs_minutes(tmp_path, capsys):
    args = ["train", str(_names_file(tmp_path)), "--out", str(tmp_path / "run"), *TINY, *QUIET]
    assert cli.main([*args, "--decay-over", "minutes"]) == 2
    err = capsys.readouterr().err
    assert 'expected --minutes to be set when --decay-over is "minutes"' in err
    assert "Traceback" not in err and not (tmp_path / "run").exists()


def test_cli_train_refuses_a_seed_beyond_int64(tmp_path, capsys):
    args = ["train", str(_names_file(tmp_path)), "--out", str(tmp_path / "run"), *TINY, *QUIET]
    assert cli.main([*args, "--seed", str(10**20)]) == 2
    assert "expected --seed to be an int in [0, 2**62)" in capsys.readouterr().err


def _wait_until_python_catches_sigint(pid: int) -> None:
    """Until the interpreter has installed its SIGINT handler (bit 2 of SigCgt): before that a
    SIGINT kills the process at once, however the program is written."""
    deadline = time.monotonic() + 1800  # a hang guard, not a speed check
    while time.monotonic() < deadline:
        status = Path(f"/proc/{pid}/status").read_text()
        caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
        if int(caught.split()[1], 16) & (1 << (signal.SIGINT - 1)):
            return
        time.sleep(0.01)


def test_cli_interrupted_while_starting_exits_quietly(tmp_path):
    """SIGINT while the command is still importing JAX or reading the corpus: exit 130 at once,
    no traceback, nothing written."""
    out = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "jaxrnn.cli", "train", "--corpus", "names", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    _wait_until_python_catches_sigint(process.pid)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=1800)  # a hang guard, not a speed check
    assert process.returncode == 130, output
    assert "Traceback" not in output
    assert not (out / "checkpoint.npz").exists()


def test_cli_packs_lines_by_default_and_refuses_pack_for_a_stream(trained, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(trained, out)
    more = [a if a != "40" else "44" for a in TINY]
    args = ["train", str(_names_file(tmp_path)), "--out", str(out), *more, *QUIET]
    assert read_metadata(out / "checkpoint.npz")["train"]["pack"] is True  # the default
    assert cli.main([*args, "--resume", "--no-pack"]) == 0
    printed = capsys.readouterr().out
    assert "training settings changed since the checkpoint: steps 40 -> 44, pack True -> False" in (
        printed
    )
    assert read_metadata(out / "checkpoint.npz")["train"]["pack"] is False

    stream = ["train", str(_names_file(tmp_path)), "--out", str(tmp_path / "stream"), *TINY]
    assert cli.main([*stream, *QUIET, "--mode", "stream", "--pack"]) == 2
    err = capsys.readouterr().err
    assert "--pack acts in lines mode only: expected --mode lines, got --mode stream" in err
    assert not (tmp_path / "stream").exists()


# ------------------------------------------------- settings at odds with the data or each other


@pytest.mark.parametrize(
    "data, option, message",
    [
        (
            ["--corpus", "names"],
            ["--stateful"],
            "--stateful acts in stream mode only: expected --mode stream, got lines mode (the "
            "default for --corpus names), where --stateful has no effect",
        ),
        (
            ["--corpus", "names"],
            ["--seq-len", "3"],
            "--seq-len acts in stream mode only: expected --mode stream, got lines mode (the "
            "default for --corpus names), where --seq-len has no effect",
        ),
        (
            ["--mode", "stream"],
            ["--max-len", "2"],
            "--max-len acts in lines mode only: expected --mode lines, got --mode stream, where "
            "--max-len has no effect",
        ),
        (
            ["--mode", "stream"],
            ["--no-pack"],
            "--no-pack acts in lines mode only: expected --mode lines, got --mode stream, where "
            "--no-pack has no effect",
        ),
        (
            [],
            ["--stateful"],
            "--stateful acts in stream mode only: expected --mode stream, got lines mode (the "
            "default for a text file)",
        ),
    ],
)
def test_cli_train_refuses_an_option_of_the_other_data_mode(
    tmp_path, capsys, data, option, message
):
    text = [] if "--corpus" in data else [str(_names_file(tmp_path))]
    out = tmp_path / "run"
    assert cli.main(["train", *text, *data, "--out", str(out), *TINY, *QUIET, *option]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"jaxrnn train: error: {message}") and len(err.splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize(
    "option, message",
    [
        (["--final-lr", "0.01"], "expected --final-lr at most --lr = 0.002, got 0.01"),
        (["--warmup", "40"], "expected --warmup below --steps = 40, got 40"),
    ],
)
def test_cli_train_refuses_a_schedule_at_odds_with_itself(tmp_path, capsys, option, message):
    out = tmp_path / "run"
    args = ["train", str(_names_file(tmp_path)), "--out", str(out), *TINY, *QUIET, *option]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"jaxrnn train: error: {message}") and len(err.splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize(
    "option, message",
    [
        (["--no-pack"], r"expected --batch at most 36 \(the training lines\), got 40"),
        ([], r"expected --batch at most \d+, got 40: packed, the 36 training lines fill \d+ rows"),
    ],
)
def test_cli_train_refuses_a_batch_larger_than_the_data_before_creating_out(
    tmp_path, capsys, option, message
):
    text = tmp_path / "small.txt"
    text.write_text("\n".join(_names_file(tmp_path).read_text().split()[:40]) + "\n")
    out = tmp_path / "run"
    args = ["train", str(text), "--out", str(out), *TINY, *QUIET, "--batch", "40", *option]
    assert cli.main(args) == 2
    captured = capsys.readouterr()
    assert re.match(f"jaxrnn train: error: {message}", captured.err), captured.err
    assert len(captured.err.splitlines()) == 1 and "Traceback" not in captured.err
    assert not out.exists()


def test_cli_train_whose_reader_has_gone_saves_and_exits_quietly(tmp_path):
    """`jaxrnn train ... | head -2`: the run stops at the next line it writes, saves its
    checkpoint, and exits 141 (128 + SIGPIPE) without a traceback."""
    out = tmp_path / "run"
    every_step = ["--eval-every", "1", "--steps", "2000", "--batch", "4", "--hidden", "8"]
    process = subprocess.Popen(
        [sys.executable, "-m", "jaxrnn.cli", "train", str(_names_file(tmp_path)), "--out"]
        + [str(out), *every_step, "--sample-every", "0", "--ngram", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    for _ in range(2):
        process.stdout.readline()
    process.stdout.close()
    _, err = process.communicate(timeout=1800)  # a hang guard, not a speed check
    assert process.returncode == 141, err
    assert "Traceback" not in err and "BrokenPipeError" not in err
    assert 1 <= read_metadata(out / "checkpoint.npz")["step"] < 2000


def test_cli_sample_warns_of_prompt_tokens_not_in_the_vocabulary(trained, capsys):
    assert cli.main(["sample", str(trained), "--num", "2", "--prompt", "m9a€"]) == 0
    captured = capsys.readouterr()
    assert (
        "jaxrnn sample: warning: --prompt: 2 of 4 tokens not in the vocabulary, read as <unk>: "
        "'9', '€'"
    ) in captured.err
    assert len(captured.out.splitlines()) == 2
    assert cli.main(["sample", str(trained), "--num", "2", "--prompt", "ma"]) == 0
    assert capsys.readouterr().err == ""


def test_cli_sample_names_the_top_k_flag_beyond_the_vocabulary(trained, capsys):
    _, model, _, _ = load_lm(trained / "checkpoint.npz")
    assert cli.main(["sample", str(trained), "--top-k", "1000"]) == 2
    err = capsys.readouterr().err
    assert (
        f"expected --top-k to be an int in [1, {model.vocab_size}] (the vocabulary), got 1000"
        in (err)
    )
    assert "top_k" not in err
    assert cli.main(["sample", str(trained), "--top-k", str(model.vocab_size), "--num", "1"]) == 0
