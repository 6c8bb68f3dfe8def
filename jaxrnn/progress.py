"""Progress of long work, readable wherever it is shown: a terminal, a log file, a notebook.

A terminal gets a live tqdm bar. Anything else that is not a terminal (a file, a pipe, CI's log)
gets a plain line every ``interval`` seconds and one at the end, since carriage-return updates turn
a log into one unreadable line. A notebook gets tqdm's widget when ipywidgets is installed and the
plain lines otherwise, never the warning ``tqdm.auto`` prints without it.
"""

from __future__ import annotations

import os
import select
import sys
import time
from typing import Literal, TextIO

Style = Literal["bar", "lines", "off"]


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    get_ipython = getattr(shell, "get_ipython", None)
    kernel = get_ipython() if get_ipython else None
    return kernel is not None and type(kernel).__name__ == "ZMQInteractiveShell"


def _has_widgets() -> bool:
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def choose_style(stream: TextIO) -> Style:
    """``"bar"`` for a terminal or a notebook with widgets, ``"lines"`` for everything else."""
    if _in_notebook():
        return "bar" if _has_widgets() else "lines"
    isatty = getattr(stream, "isatty", None)
    return "bar" if isatty is not None and isatty() else "lines"


def mute_closed_streams() -> None:
    """Points standard output and error, where their reader has gone (``jaxrnn train | head``),
    at the null device, so that what is still buffered, and whatever is written after, is dropped
    instead of raising BrokenPipeError again (Python's recipe for SIGPIPE)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            fd = stream.fileno()
        except (AttributeError, OSError, ValueError):  # Python's own stream: a notebook's
            continue
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        # POLLERR: a pipe whose reading end is closed (whether or not this stream failed yet)
        if any(events & select.POLLERR for _, events in poller.poll(0)):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)


def format_duration(seconds: float) -> str:
    """``seconds`` as m:ss, or h:mm:ss from an hour on."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class Progress:
    """Counts steps towards ``total`` and shows them with the latest figures (loss, tokens/s).

    Args:
      total: the step the work ends at.
      initial: the step it starts from (a resumed run).
      style: ``"bar"``, ``"lines"``, ``"off"``, or None to choose from ``stream`` (`choose_style`).
      stream: where progress goes (default: standard error).
      interval: seconds between plain lines.
      unit: what a step is called.
    """

    def __init__(
        self,
        total: int,
        *,
        initial: int = 0,
        style: Style | None = None,
        stream: TextIO | None = None,
        interval: float = 30.0,
        unit: str = "step",
    ):
        self.stream = stream if stream is not None else sys.stderr
        self.style = choose_style(self.stream) if style is None else style
        self.total, self.count, self.unit, self.interval = total, initial, unit, interval
        self.figures: dict[str, object] = {}
        self._start_count = initial
        self._start = self._last_line = time.monotonic()
        self._bar = None
        if self.style == "bar":
            if _in_notebook():
                from tqdm.notebook import tqdm
            else:
                from tqdm import tqdm
            self._bar = tqdm(
                total=total, initial=initial, unit=unit, smoothing=0.1, file=self.stream
            )

    def update(self, steps: int = 1, **figures: object) -> None:
        """Adds ``steps`` done and replaces the figures shown beside the count."""
        self.count += steps
        self.figures.update(figures)
        if self._bar is not None:
            self._bar.update(steps)
            self._bar.set_postfix({k: str(v) for k, v in self.figures.items()}, refresh=False)
        elif self.style == "lines" and time.monotonic() - self._last_line >= self.interval:
            self._line()

    def _line(self) -> None:
        now = time.monotonic()
        self._last_line = now
        elapsed = now - self._start
        rate = (self.count - self._start_count) / elapsed if elapsed > 0 else 0.0
        parts = [
            f"{self.unit} {self.count:,}/{self.total:,} ({100 * self.count / self.total:.0f}%)"
        ]
        parts += [f"{name} {value}" for name, value in self.figures.items()]
        parts.append(f"{rate:.2f} {self.unit}/s")
        if rate > 0 and self.count < self.total:
            parts.append(f"ETA {format_duration((self.total - self.count) / rate)}")
        print("  ".join(parts), file=self.stream, flush=True)

    def write(self, message: str) -> None:
        """Prints a message without breaking the bar."""
        if self._bar is not None:
            self._bar.write(message, file=sys.stdout)
        else:
            print(message, flush=True)

    def close(self) -> None:
        """Ends the bar, or prints the last plain line."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.style == "lines" and self.count > self._start_count:
            self._line()
            self._start_count = self.count  # a second close prints nothing
