"""What the benchmark suite and its framework families share: the model timed, an
implementation's registry entry and what its build returns.

Each family's module (``suite_numpy``, ``suite_torch``, ``suite_jax``) imports these and no more
of the suite, so that the suite can import a family without a circle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np


class Model(NamedTuple):
    """What is timed: a cell, how many layers, and whether each layer reads both ways."""

    cell: str  # "lstm" or "gru"
    layers: int = 1
    bidirectional: bool = False
    lengths: tuple[int, ...] | None = None  # a right-padded batch: each example's valid steps

    @property
    def single_layer(self) -> bool:
        return self.layers == 1 and not self.bidirectional

    def masked(self, ys):
        """ys (B, T, …), numpy or jax, with the steps past each example's length set to zero; ys
        itself without lengths."""
        if self.lengths is None:
            return ys
        valid = np.arange(ys.shape[1])[None, :] < np.asarray(self.lengths)[:, None]
        return ys * valid[..., None].astype(np.float32)

    def directions(self, layer: int) -> list[tuple[str, bool]]:
        """(PyTorch parameter suffix, reverse) of each direction of a layer."""
        suffix = f"_l{layer}"
        return (
            [(suffix, False), (suffix + "_reverse", True)]
            if self.bidirectional
            else [(suffix, False)]
        )

    def input_size(self, layer: int, input_size: int, hidden_size: int) -> int:
        return input_size if layer == 0 else hidden_size * (2 if self.bidirectional else 1)


class Bench(NamedTuple):
    """One implementation, built for one model and its weights: what the suite calls and checks."""

    forward: Callable[[Any], Any]  # x -> all hidden states (B, T, H·directions)
    train: Callable[[Any], Any]  # x -> (loss, gradients) or whatever carries them
    to_input: Callable[[np.ndarray], Any]  # numpy x (B, T, D) -> the framework's array
    output: Callable[[Any], np.ndarray]  # forward's result -> numpy
    grads: Callable[[Any], dict]  # train's result -> {PyTorch parameter name: numpy gradient}
    sync: Callable[[Any], Any]  # waits until a result is computed


def _any_model(model: Model) -> bool:
    return True


class Impl(NamedTuple):
    """A registry entry: ``build(model, weights in PyTorch layout) -> Bench``.

    ``family`` names the worker process it is timed in; ``peer`` is False for jaxrnn's own
    variants; ``capped`` limits its timed calls to the mode's time budget (for slow, uncompiled
    loops); ``note`` is shown in the table.
    """

    family: str
    build: Callable[[Model, dict], Bench]
    peer: bool = True
    supports: Callable[[Model], bool] = _any_model
    capped: bool = False
    note: str = ""
