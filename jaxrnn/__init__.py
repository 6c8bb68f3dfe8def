"""jaxrnn: recurrent sequence models as pure step functions lifted over time by ``lax.scan``.

The core (cells, `unroll`, layers, losses, training steps) is importable from ``jaxrnn`` itself
(``jaxrnn.lstm``, ``jaxrnn.unroll``); each family is a namespace reachable as an attribute
(``jaxrnn.models``, ``jaxrnn.lm``, ``jaxrnn.interop``, ``jaxrnn.course``, ``jaxrnn.nnx``,
``jaxrnn.parallel``, ``jaxrnn.kernels``). Both are loaded on first use, so that ``import jaxrnn``
— and ``jaxrnn --help`` — does not import JAX.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"  # the package's one version: pyproject.toml reads it from here

# The public API: each name and the module that defines it.
_EXPORTS: dict[str, tuple[str, ...]] = {
    "errors": ("InputError",),
    "cells": (
        "Cell",
        "GRUParams",
        "LSTMParams",
        "LSTMState",
        "RNNParams",
        "gru",
        "hidden_size",
        "input_size",
        "lstm",
        "rnn",
        "simplified_gru",
    ),
    "layers": (
        "BidirectionalParams",
        "DenseParams",
        "StackedParams",
        "bidirectional",
        "bidirectional_init",
        "deep",
        "dense",
        "dense_init",
        "stacked",
        "stacked_init",
    ),
    "losses": (
        "sequence_mask",
        "sigmoid_cross_entropy",
        "softmax_cross_entropy",
    ),
    "minimal": (
        "min_gru",
        "min_lstm",
    ),
    "scan": ("unroll",),
    "train": (
        "make_optimizer",
        "make_train_step",
    ),
}
_ORIGIN = {name: module for module, names in _EXPORTS.items() for name in names}

SUBMODULES = (
    "cells",
    "checkpoint",
    "errors",
    "course",
    "decode",
    "interop",
    "interop_flax",
    "interop_keras",
    "kernels",
    "layers",
    "lm",
    "lm_eval",
    "lm_settings",
    "lm_state",
    "lm_train",
    "losses",
    "minimal",
    "models",
    "ngram",
    "nnx",
    "parallel",
    "plots",
    "progress",
    "runs",
    "scan",
    "text",
    "train",
)

__all__ = sorted([*_ORIGIN, *SUBMODULES])


def __getattr__(name: str) -> Any:
    if name in _ORIGIN:
        value = getattr(importlib.import_module(f"jaxrnn.{_ORIGIN[name]}"), name)
    elif name in SUBMODULES:
        value = importlib.import_module(f"jaxrnn.{name}")
    else:
        raise AttributeError(f"module 'jaxrnn' has no attribute {name!r}")
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
