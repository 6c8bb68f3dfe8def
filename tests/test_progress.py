"""Progress reads well in a terminal (a live bar), in a log file (plain lines), in a notebook."""

import io
import subprocess
import sys
import textwrap
import warnings

import pytest

from jaxrnn import progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_file_gets_plain_lines_without_carriage_returns():
    log = io.StringIO()
    bar = progress.Progress(40, stream=log, interval=0.0)
    assert bar.style == "lines"
    for step in range(40):
        bar.update(1, loss=f"{3.0 - step / 20:.3f}")
    bar.close()
    text = log.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert len(lines) == 41  # one a step at interval 0, and the closing line
    assert lines[0].startswith("step 1/40 (2%)  loss 3.000")
    assert lines[-1].startswith("step 40/40 (100%)  loss 1.050")
    assert all("step/s" in line for line in lines)
    assert "ETA" in lines[0] and "ETA" not in lines[-1]


def test_plain_lines_come_once_per_interval():
    log = io.StringIO()
    bar = progress.Progress(1000, stream=log, interval=3600.0)
    for _ in range(1000):
        bar.update(1)
    assert log.getvalue() == ""  # no line before the interval has passed
    bar.close()
    bar.close()
    assert len(log.getvalue().splitlines()) == 1


def test_a_resumed_run_counts_from_where_it_stopped():
    log = io.StringIO()
    bar = progress.Progress(100, initial=60, stream=log, interval=0.0)
    bar.update(1)
    assert log.getvalue().startswith("step 61/100 (61%)")


def test_a_terminal_gets_a_live_bar():
    screen = Terminal()
    bar = progress.Progress(10, stream=screen)
    assert bar.style == "bar"
    for _ in range(10):
        bar.update(1, loss="1.234")
    bar.close()
    text = screen.getvalue()
    assert "\r" in text and "10/10" in text and "loss=1.234" in text


def test_off_prints_nothing(capsys):
    log = io.StringIO()
    bar = progress.Progress(10, style="off", stream=log)
    bar.update(10)
    bar.close()
    bar.write("a message still reaches the user")
    assert log.getvalue() == ""
    assert capsys.readouterr().out == "a message still reaches the user\n"


def test_a_notebook_without_ipywidgets_gets_plain_lines_and_no_warning():
    """Run inside a real IPython kernel shell class (what Jupyter runs), with ipywidgets made
    unimportable: tqdm.auto would warn "IProgress not found"; jaxrnn prints lines instead."""
    pytest.importorskip("ipykernel")
    script = textwrap.dedent(
        """
        import sys, warnings
        sys.modules["ipywidgets"] = None  # as if not installed
        from ipykernel.zmqshell import ZMQInteractiveShell
        ZMQInteractiveShell.instance()
        from jaxrnn import progress
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            bar = progress.Progress(5, interval=0.0, stream=sys.stdout)
            print("style", bar.style)
            for _ in range(5):
                bar.update(1, loss="0.5")
            bar.close()
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "style lines" in result.stdout
    assert "step 5/5 (100%)  loss 0.5" in result.stdout
    assert "IProgress" not in result.stdout + result.stderr


def test_choose_style_outside_a_notebook():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert progress.choose_style(io.StringIO()) == "lines"
        assert progress.choose_style(Terminal()) == "bar"
