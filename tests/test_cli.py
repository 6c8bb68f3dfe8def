"""The command line: train on a text file, then sample and score from the checkpoint."""

from __future__ import annotations

import math
import re
from importlib import resources

import numpy as np
import pytest

from jaxrnn import cli
from jaxrnn.lm import sentence_log_prob
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
    for option in ("--corpus", "--resume", "--stateful", "--clip-value", "--minutes", "--cell"):
        assert option in out
