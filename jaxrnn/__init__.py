"""jaxrnn: recurrent sequence models as pure step functions lifted over time by ``lax.scan``.

Every public name below is importable from ``jaxrnn`` itself (``jaxrnn.lstm``, ``jaxrnn.unroll``),
and every submodule is reachable as an attribute (``jaxrnn.nnx``, ``jaxrnn.lm_train``). Both are
loaded on first use, so that ``import jaxrnn`` — and ``jaxrnn --help`` — does not import JAX.
"""

from __future__ import annotations

import importlib
from typing import Any

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
    "interop": (
        "gru_params_from_torch",
        "lstm_params_from_torch",
        "lstm_state_from_flax",
        "lstm_state_to_flax",
        "params_from_keras",
        "params_from_linen",
        "params_from_nnx",
        "params_to_keras",
        "params_to_linen",
        "params_to_nnx",
        "params_to_torch",
        "rnn_params_from_torch",
        "stacked_carry_from_torch",
        "stacked_carry_to_torch",
        "stacked_params_from_torch",
    ),
    "layers": (
        "BidirectionalCarry",
        "BidirectionalParams",
        "DenseParams",
        "StackedParams",
        "bidirectional",
        "bidirectional_init",
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
        "MinGRUParams",
        "MinLSTMParams",
        "min_gru",
        "min_lstm",
    ),
    "models": (
        "GeneratorParams",
        "Seq2SeqParams",
        "SequenceParams",
        "classifier_apply",
        "classifier_init",
        "generate",
        "generator_apply",
        "generator_init",
        "pool_over_time",
        "seq2seq_apply",
        "seq2seq_decode",
        "seq2seq_init",
        "seq2seq_loss",
        "tagger_apply",
        "tagger_init",
    ),
    "parallel": (
        "data_mesh",
        "replicate",
        "shard_batch",
    ),
    "scan": ("unroll",),
    "train": (
        "StepMetrics",
        "clip_by_global_norm",
        "clip_elementwise",
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
    "lm_settings",
    "lm_train",
    "losses",
    "minimal",
    "models",
    "ngram",
    "nnx",
    "parallel",
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
