"""A language model's training state and its checkpoint.

`TrainState` is everything a training step changes. `save_state` writes it, with the run's
settings, vocabulary and `History`, to one checkpoint file (atomically, never with non-finite
parameters); `resume_state` reads it back for a run with the same model and vocabulary, and
`load_lm` reads the trained model for use. Every setting a file holds is checked before anything
is built from it (`jaxrnn.lm_settings.checked_metadata`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import lm_settings
from jaxrnn import text as text_lib
from jaxrnn.checkpoint import CheckpointError, load_checkpoint, read_metadata, save_checkpoint
from jaxrnn.lm import LMConfig, init_lm, init_lm_carry
from jaxrnn.lm_settings import TrainConfig, make_lm_optimizer
from jaxrnn.models import GeneratorParams
from jaxrnn.runs import History, checkpoint_file

__all__ = ["TrainState", "init_train_state", "load_lm", "resume_state", "save_state"]


class TrainState(NamedTuple):
    """What a training step changes; saved under the names ``params``, ``opt_state``, ``carry``."""

    params: GeneratorParams
    opt_state: Any  # the optimizer's state, a pytree of arrays
    carry: Any  # stateful stream mode: the carry handed from one chunk to the next; else None


def init_train_state(model: LMConfig, train: TrainConfig, mode: str) -> TrainState:
    """The state before the first step: params from ``train.seed``, a fresh optimizer state, and
    a zero carry of ``train.batch_size`` rows when ``mode`` is ``"stream"`` and training is
    stateful."""
    params = init_lm(jax.random.key(train.seed), model)
    stateful = mode == "stream" and train.stateful
    return TrainState(
        params,
        make_lm_optimizer(train).init(params),
        init_lm_carry(params, model, (train.batch_size,)) if stateful else None,
    )


def _all_finite(tree) -> bool:
    return all(bool(np.isfinite(np.asarray(leaf)).all()) for leaf in jax.tree.leaves(tree))


def save_state(
    path: Path,
    state: TrainState,
    *,
    model: LMConfig,
    train: TrainConfig,
    corpus: text_lib.Corpus,
    step: int,
    history: History,
) -> bool:
    """Writes the checkpoint of step ``step`` to ``path``, replacing it atomically; returns False
    and leaves the file as it was if the parameters are not all finite."""
    if not _all_finite(state.params):
        return False
    saved = history.to_dict()
    saved["loss"] = saved["loss"][:step]
    metadata = {
        "kind": "jaxrnn.lm",
        "step": step,
        "model": model._asdict(),
        "train": train._asdict(),
        "mode": corpus.mode,
        "vocab": corpus.vocab.to_dict(),
        "history": saved,
    }
    save_checkpoint(path, state._asdict(), metadata)
    return True


# The training settings that decide the optimizer state's layout (the rest only change values).
OPTIMIZER_STATE_SETTINGS = ("optimizer", "decay_over", "clip_value", "clip_norm")


def _template(model: LMConfig, train: TrainConfig, mode: str) -> dict:
    return jax.eval_shape(lambda: init_train_state(model, train, mode)._asdict())


def resume_state(
    path: Path, model: LMConfig, train: TrainConfig, corpus: text_lib.Corpus
) -> tuple[TrainState, int, History, TrainConfig]:
    """``(state, step, history, the checkpoint's TrainConfig)`` of the run saved at ``path``.

    Raises:
      CheckpointError: the file is corrupt, or holds another model or vocabulary than this run's,
        or an optimizer state that ``train``'s optimizer settings lay out otherwise.
    """
    metadata = read_metadata(path)
    saved_model, saved_train, saved_vocab = lm_settings.checked_metadata(path, metadata)
    for name, saved, asked in (
        ("model", saved_model._asdict(), model._asdict()),
        ("vocabulary", saved_vocab.to_dict(), corpus.vocab.to_dict()),
    ):
        if saved != asked:
            diff = {k: (saved.get(k), v) for k, v in asked.items() if saved.get(k) != v}
            raise CheckpointError(
                f"{path}: the checkpoint's {name} differs from this run's ({diff if diff else ''}: "
                "saved, asked); resume with the same settings and text, or use a new output folder"
            )
    template = _template(model, train, corpus.mode)
    saved_layout = _template(model, saved_train, corpus.mode)["opt_state"]
    if jax.tree.structure(saved_layout) != jax.tree.structure(template["opt_state"]):
        diff = {
            name: (getattr(saved_train, name), getattr(train, name))
            for name in OPTIMIZER_STATE_SETTINGS
            if getattr(saved_train, name) != getattr(train, name)
        }
        raise CheckpointError(
            f"{path}: the checkpoint's optimizer state was made with other training settings "
            f"({diff if diff else ''}: saved, asked); resume with the same settings, or use a new "
            "output folder"
        )
    arrays, metadata = load_checkpoint(path, template)
    again = lm_settings.checked_metadata(path, metadata)
    if (again[0], again[2]) != (saved_model, saved_vocab):
        raise CheckpointError(f"{path}: the file was replaced by another model while being read")
    state = TrainState(**jax.tree.map(jnp.asarray, arrays))
    return state, metadata["step"], History.from_dict(metadata["history"]), saved_train


def load_lm(path: str | Path) -> tuple[GeneratorParams, LMConfig, text_lib.Vocab, dict]:
    """Reads a language-model checkpoint; returns (params, model config, vocabulary, metadata).

    ``path`` is the checkpoint file or the folder of a run (its ``checkpoint.npz``), as for the
    command line.

    Raises:
      CheckpointError: if the file is missing, corrupt, not a language model's, or its metadata
        is not what `jaxrnn.lm_train.train_lm` writes; everything is checked before it is built or
        allocated.
    """
    path = checkpoint_file(path)
    metadata = read_metadata(path)
    model, train, vocab = lm_settings.checked_metadata(path, metadata)
    try:
        template = _template(model, train, metadata["mode"])
    except ValueError as error:  # InputError: a cell or optimizer this jaxrnn does not know
        raise CheckpointError(f"{path}: the saved model cannot be built ({error})") from None
    arrays, saved = load_checkpoint(path, template)
    # A run writing the file meanwhile is fine as long as the arrays fit what was checked.
    again = lm_settings.checked_metadata(path, saved)
    if (again[0], again[2], saved["mode"]) != (model, vocab, metadata["mode"]):
        raise CheckpointError(f"{path}: the file was replaced by another model while being read")
    params = jax.tree.map(jnp.asarray, arrays["params"])
    return params, model, vocab, saved
