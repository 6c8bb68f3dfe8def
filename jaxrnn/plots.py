"""Plots of training runs, written to PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxrnn.checkpoint import atomic_output
from jaxrnn.runs import History

__all__ = ["plot_history"]


def plot_history(history: History, path: str | Path, *, title: str = "language model") -> None:
    """Training loss (per step, and its moving average) and validation loss against step, to PNG.

    The file is replaced atomically; a symbolic link at ``path`` is replaced, its target untouched.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = np.asarray(history.loss, float)
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
    if history.valid:
        valid = np.asarray(history.valid, float)
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
