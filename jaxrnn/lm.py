"""Recurrent language models: the model, sentence probability, and sampling of novel sequences.

The course's set-up: x⟨1⟩ = 0, x⟨t⟩ = y⟨t−1⟩, and at each step a softmax over the vocabulary,

    ŷ⟨t⟩ = softmax(W_ya a⟨t⟩ + b_y) = P(y⟨t⟩ | y⟨1⟩ … y⟨t−1⟩),
    P(y⟨1⟩ … y⟨T⟩) = Π_t ŷ⟨t⟩[y⟨t⟩].

Token inputs are int ids, and the id −1 stands for the zero vector x = 0 (the course's x⟨1⟩), both
for one-hot inputs (the course) and for learned embeddings. `teacher_forcing_inputs` builds
``[−1, y⟨1⟩, …, y⟨T−1⟩]`` from the targets. Layers are stacked as a deep RNN: layer l reads the
outputs of layer l − 1, and the head reads the last layer.

A `Mixture` of models of one `LMConfig` (an equal-weight ensemble, ``P = (1/K) Σ_k P_k``) is
scored and sampled wherever one model's params are: `lm_log_probs`, `token_log_probs`,
`sentence_log_prob`, `next_token_log_probs`, `sample` and `jaxrnn.lm_eval.evaluate_lm`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn import cells as cells_lib
from jaxrnn import minimal
from jaxrnn._checks import (
    check_float_dtype,
    check_int_in,
    check_integer,
    check_positive_int,
    check_rank_at_least,
    check_values_in,
    fail,
    first_shape_difference,
    tree_layout,
)
from jaxrnn.cells import Array, Cell
from jaxrnn.decode import check_temperature, check_top_k, decode, host_scalar
from jaxrnn.layers import (
    StackedParams,
    deep,
    dense,
    dense_init,
    dropout,
    embed_ids,
    stacked,
)
from jaxrnn.losses import Reduction, sequence_mask, softmax_cross_entropy
from jaxrnn.models import GeneratorParams
from jaxrnn.text import START

CELL_NAMES = {
    "rnn": lambda: cells_lib.rnn("tanh"),
    "rnn_relu": lambda: cells_lib.rnn("relu"),
    "simplified_gru": cells_lib.simplified_gru,
    "gru": lambda: cells_lib.gru(reset="before"),
    "gru_reset_after": lambda: cells_lib.gru(reset="after"),
    "lstm": cells_lib.lstm,
    "lstm_peephole": lambda: cells_lib.lstm(peephole=True),
    "min_gru": minimal.min_gru,
    "min_lstm": minimal.min_lstm,
}


def cell_from_name(name: str) -> Cell:
    """The `Cell` for a name in ``CELL_NAMES``: rnn, rnn_relu, simplified_gru, gru (the course's,
    reset before the candidate matmul), gru_reset_after (PyTorch's), lstm, lstm_peephole, min_gru,
    min_lstm (parallel in time, `jaxrnn.minimal`)."""
    if name not in CELL_NAMES:
        fail("cell_from_name", f"expected cell in {sorted(CELL_NAMES)}, got {name!r}")
    return CELL_NAMES[name]()


class LMConfig(NamedTuple):
    """The shape of a language model; hashable, JSON-able (``config._asdict()``)."""

    vocab_size: int
    cell_name: str = "lstm"  # a name in CELL_NAMES
    hidden_size: int = 256
    num_layers: int = 1
    embedding_size: int | None = None  # None: one-hot inputs, as in the course
    # on the embedded inputs, between layers (`jaxrnn.stacked`) and on the head's input; never on
    # the carry (Zaremba et al. 2014)
    dropout_rate: float = 0.0


def _check_config(config: LMConfig) -> None:
    fn = "LMConfig"
    if not isinstance(config, LMConfig):
        fail(fn, f"expected config to be an LMConfig, got {type(config).__name__}")
    for name in ("vocab_size", "hidden_size", "num_layers"):
        check_positive_int(fn, name, getattr(config, name))
    if config.embedding_size is not None and (
        not isinstance(config.embedding_size, int) or config.embedding_size < 1
    ):
        fail(fn, f"expected embedding_size None or a positive int, got {config.embedding_size!r}")
    if not 0.0 <= config.dropout_rate < 1.0:
        fail(fn, f"expected dropout_rate in [0, 1), got {config.dropout_rate!r}")
    cell_from_name(config.cell_name)


def lm_cell(config: LMConfig) -> Cell:
    """The recurrent part of the model: ``config.num_layers`` of the named cell stacked into one
    deep cell (`jaxrnn.deep`), whose params are a `jaxrnn.StackedParams`."""
    _check_config(config)
    return deep(cell_from_name(config.cell_name), config.num_layers)


def init_lm(key: Array, config: LMConfig, dtype=jnp.float32) -> GeneratorParams:
    """Initial parameters: N(0, 1) embeddings, the cells' own initialisers, a Glorot head.

    A language model is a generator (`jaxrnn.models.generate`) over the deep cell `lm_cell`: its
    params are a `jaxrnn.models.GeneratorParams` whose ``recurrent`` part is `StackedParams`."""
    check_float_dtype("init_lm", dtype)
    _check_config(config)
    cell = cell_from_name(config.cell_name)
    key_emb, key_head, *keys = jax.random.split(key, 2 + config.num_layers)
    embedding = None
    input_size = config.vocab_size
    if config.embedding_size is not None:
        embedding = jax.random.normal(key_emb, (config.vocab_size, config.embedding_size), dtype)
        input_size = config.embedding_size
    layers = []
    for k in keys:
        layers.append(cell.init(k, input_size, config.hidden_size, dtype))
        input_size = config.hidden_size
    head = dense_init(key_head, config.hidden_size, config.vocab_size, dtype)
    return GeneratorParams(embedding, StackedParams(tuple(layers)), head)


def check_params_fit(fn: str, params, config: LMConfig) -> None:
    """Raise `jaxrnn.InputError` unless ``params`` (one model's or a `Mixture`'s) have the arrays
    `init_lm` makes for ``config``. Reads shapes only: it runs while tracing, under ``jit`` too.

    The message names the first `LMConfig` field the params disagree with, the config's value and
    the params' (the cell is the one of ``CELL_NAMES`` whose init makes their first layer).
    """
    _check_config(config)
    lead = 0  # a Mixture's arrays have the members' axis in front
    if isinstance(params, Mixture):
        params, lead = params.members, 1
    if not isinstance(params, GeneratorParams):
        fail(
            fn,
            f"expected params to be GeneratorParams or a Mixture, got {type(params).__name__}",
            "make them with jaxrnn.lm.init_lm",
        )
    theirs = _config_of(params, lead, config.cell_name)
    if theirs is not None:
        for field, value in theirs.items():
            if getattr(config, field) != value:
                fail(
                    fn,
                    f"expected params built for LMConfig.{field}={getattr(config, field)!r}, "
                    f"got params of {field} {value!r}",
                    "pass the LMConfig they were built with; they fit LMConfig("
                    + ", ".join(f"{k}={v!r}" for k, v in theirs.items())
                    + ", …)",
                )
    # The fields agree; every array must too (a layer of another size, an embedding of other rows).
    expected_def, expected = _lm_layout(config)
    got_def, got = tree_layout(params, lead)
    path = first_shape_difference(expected, got)
    if path is not None:
        fail(
            fn,
            f"expected params{path} of shape {expected.get(path)} for {config}, "
            f"got {got.get(path)}",
        )
    if got_def != expected_def:
        fail(fn, f"expected params of the layout init_lm makes for {config}, got {got_def}")


@functools.cache
def _lm_layout(config: LMConfig) -> tuple[Any, dict[str, tuple]]:
    """`tree_layout` of the params `init_lm` makes for ``config``, from shapes (no device work)."""
    return tree_layout(jax.eval_shape(lambda: init_lm(jax.random.key(0), config)))


@functools.cache
def _cell_layout(name: str, input_size: int, hidden_size: int) -> tuple[Any, dict[str, tuple]]:
    cell = cell_from_name(name)
    return tree_layout(
        jax.eval_shape(lambda: cell.init(jax.random.key(0), input_size, hidden_size))
    )


def _config_of(params: GeneratorParams, lead: int, likely_cell: str) -> dict[str, Any] | None:
    """The `LMConfig` fields that the shapes of ``params`` give; None where they are not laid out
    as `init_lm` lays them out (then `check_params_fit` names the array that differs). The cell
    ``likely_cell`` is tried first, the others only when it does not fit."""
    try:
        hidden_size, vocab_size = jnp.shape(params.head.w)[lead:]
        layers = params.recurrent.layers
        first = tree_layout(layers[0], lead)
        input_size = first[1][".w_x"][0]
    except (AttributeError, IndexError, KeyError, TypeError, ValueError):
        return None
    # The cell is the one whose init makes the first layer's arrays; weights of one variant (a
    # reset-after GRU, ReLU RNN) are of their own params type. No cell name where none fits (a
    # layer of another size than the head): the arrays are compared one by one after.
    fits = (
        n for n in (likely_cell, *CELL_NAMES) if _cell_layout(n, input_size, hidden_size) == first
    )
    cell_name = next(fits, None)
    embedding = params.embedding
    fields = {
        "vocab_size": vocab_size,
        "cell_name": cell_name,
        "hidden_size": hidden_size,
        "num_layers": len(layers),
        "embedding_size": None if embedding is None else jnp.shape(embedding)[-1],
    }
    return {k: v for k, v in fields.items() if k != "cell_name" or v is not None}


class Mixture(NamedTuple):
    """K language models of one `LMConfig` read as one, whose next-token distribution is the mean
    of theirs: P(y⟨t⟩ | y⟨<t⟩) = (1/K) Σ_k P_k(y⟨t⟩ | y⟨<t⟩). Made by `mixture`."""

    members: GeneratorParams  # the members' params stacked: every array (K, *its own shape)


def mixture(members: Sequence[GeneratorParams]) -> Mixture:
    """The `Mixture` of ``members``: params from `init_lm` or training, all of one `LMConfig`.

    Raises:
      jaxrnn.InputError: no members, a member that is not `GeneratorParams`, or one whose arrays
        differ in structure, shape or dtype from the first member's (the message names both).
    """
    fn = "mixture"
    if isinstance(members, (GeneratorParams, str)) or not isinstance(members, Sequence):
        fail(fn, f"expected a sequence of GeneratorParams, got {type(members).__name__}")
    members = list(members)
    if not members:
        fail(fn, "expected at least one member, got an empty sequence")
    for k, member in enumerate(members):
        if not isinstance(member, GeneratorParams):
            fail(fn, f"expected members[{k}] to be GeneratorParams, got {type(member).__name__}")
    first = _arrays(members[0])
    for k, member in enumerate(members[1:], start=1):
        these = _arrays(member)
        if these.keys() != first.keys():
            fail(
                fn,
                f"expected members[{k}] to hold members[0]'s arrays {sorted(first)}, "
                f"got {sorted(these)}",
            )
        for where, (shape, dtype) in these.items():
            if (shape, dtype) != first[where]:
                fail(
                    fn,
                    f"expected members[{k}]{where} shaped as members[0]{where}, "
                    f"{first[where][0]} {first[where][1]}; got {shape} {dtype}",
                )
    return Mixture(jax.tree.map(lambda *leaves: jnp.stack(leaves), *members))


def _arrays(params: GeneratorParams) -> dict[str, tuple]:
    """Each array of ``params`` by its path, e.g. ``.head.w``: its shape and dtype."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(params)
    return {jax.tree_util.keystr(path): (jnp.shape(x), jnp.result_type(x)) for path, x in leaves}


def init_lm_carry(
    params: GeneratorParams | Mixture, config: LMConfig, batch_shape: tuple[int, ...] = ()
) -> tuple:
    """a⟨0⟩ = 0 for every layer: a tuple of per-layer carries, each array (*batch_shape, H);
    (K, *batch_shape, H) for a `Mixture` of K models."""
    check_params_fit("init_lm_carry", params, config)
    if isinstance(params, Mixture):
        return jax.vmap(lambda p: init_lm_carry(p, config, batch_shape))(params.members)
    return lm_cell(config).init_carry(params.recurrent, batch_shape)


def teacher_forcing_inputs(targets: Array) -> Array:
    """x⟨1⟩ = 0 (id −1), x⟨t⟩ = y⟨t−1⟩: targets (*batch, T) int -> inputs (*batch, T) int."""
    check_integer("teacher_forcing_inputs", "targets", targets)
    targets = jnp.asarray(targets)
    start = jnp.full((*targets.shape[:-1], 1), START, targets.dtype)
    return jnp.concatenate([start, targets[..., :-1]], axis=-1)


def embed(params: GeneratorParams, config: LMConfig, ids: Array) -> Array:
    """Input vectors for ids (*shape) -> (*shape, E) or one-hot (*shape, V); id −1 gives zeros,
    and an id outside [−1, V), which ``jit`` cannot check, NaN (see `jaxrnn.layers.embed_ids`)."""
    check_params_fit("embed", params, config)
    return embed_ids(params.embedding, ids, config.vocab_size, params.head.w.dtype)


def _check_inputs(fn: str, config: LMConfig, inputs: Array) -> None:
    check_rank_at_least(fn, "inputs", inputs, 1, "(*batch, time)")
    check_integer(fn, "inputs", inputs)
    check_values_in(
        fn,
        "inputs ids",
        inputs,
        START,
        config.vocab_size,
        hint="−1 is the zero input x⟨1⟩ = 0; other ids index the vocabulary",
    )


def _check_ids(fn: str, name: str, config: LMConfig, ids) -> Array:
    """Integer token ids (not the zero input −1); when known while tracing, each in [0, V)."""
    check_integer(fn, name, ids)
    check_values_in(fn, name, ids, 0, config.vocab_size)
    return jnp.asarray(ids)


def lm_apply(
    params: GeneratorParams,
    config: LMConfig,
    inputs: Array,
    carry: tuple | None = None,
    *,
    lengths: Array | None = None,
    resets: Array | None = None,
    dropout_key: Array | None = None,
    **unroll_options: Any,
) -> tuple[tuple, Array]:
    """Runs the model over input ids; returns (last carry of every layer, logits).

    Args:
      params: from `init_lm`.
      config: the model's `LMConfig`.
      inputs: int ids (*batch, T) in [−1, V); −1 is the zero input (see
        `teacher_forcing_inputs`). Other ids raise `jaxrnn.InputError` when they are known while
        tracing; under ``jit`` such an id reads as a vector of NaN, so that the logits of its step
        and of every later step of its example (and that example's last carry) are NaN rather
        than a silent wrong number. Padded steps (with ``lengths``) are not read.
      carry: per-layer initial carries (from `init_lm_carry` or a previous call); zeros if None.
      lengths: optional (*batch,) valid lengths of right-padded inputs.
      resets: optional bool (*batch, T): where true, every layer's carry starts again from
        ``carry`` before that step, so several lines packed into one row are each read alone.
      dropout_key: a PRNG key turns on dropout (training); None (inference) turns it off.
      **unroll_options: passed to `jaxrnn.unroll` (``remat``, ``implementation``).

    Returns:
      ``(carry, logits)``: a tuple of per-layer carries, and logits (*batch, T, V).
    """
    if isinstance(params, Mixture):
        fail(
            "lm_apply",
            "expected one model's GeneratorParams, got a Mixture, whose members' logits do not "
            "mix; use lm_log_probs for its log-probabilities",
        )
    check_params_fit("lm_apply", params, config)
    _check_inputs("lm_apply", config, inputs)
    cell = cell_from_name(config.cell_name)
    key_in = key_layers = key_out = None
    if dropout_key is not None:
        key_in, key_layers, key_out = jax.random.split(dropout_key, 3)
    xs = dropout(key_in, config.dropout_rate, embed(params, config, jnp.asarray(inputs)))
    last, xs = stacked(
        cell,
        params.recurrent,
        xs,
        lengths=lengths,
        resets=resets,
        carry=carry,
        dropout_rate=config.dropout_rate,
        dropout_key=key_layers,
        **unroll_options,
    )
    return last, dense(params.head, dropout(key_out, config.dropout_rate, xs))


def lm_log_probs(
    params: GeneratorParams | Mixture,
    config: LMConfig,
    inputs: Array,
    carry: tuple | None = None,
    *,
    lengths: Array | None = None,
) -> tuple[tuple, Array]:
    """Next-token log-probabilities after each input: (carry, log P (*batch, T, V)), float.

    For one model it is ``log_softmax`` of `lm_apply`'s logits; for a `Mixture` of K models,
    log((1/K) Σ_k P_k), with the carry of every member ((K, *batch, H) arrays, from
    `init_lm_carry` or a previous call). Inputs, carry and lengths are as in `lm_apply`.
    """
    check_params_fit("lm_log_probs", params, config)
    if isinstance(params, Mixture):
        carry_axis = None if carry is None else 0
        carry, log_probs = jax.vmap(
            lambda p, c: lm_log_probs(p, config, inputs, c, lengths=lengths),
            in_axes=(0, carry_axis),
        )(params.members, carry)
        return carry, _mean_of_probs(log_probs)
    carry, logits = lm_apply(params, config, inputs, carry, lengths=lengths)
    return carry, jax.nn.log_softmax(logits, axis=-1)


def _mean_of_probs(log_probs: Array) -> Array:
    """log((1/K) Σ_k exp(log_probs[k])) over the leading axis of K members' log-probabilities."""
    return jax.nn.logsumexp(log_probs, axis=0) - jnp.log(log_probs.shape[0])


def lm_loss(
    params: GeneratorParams,
    config: LMConfig,
    inputs: Array,
    targets: Array,
    *,
    lengths: Array | None = None,
    resets: Array | None = None,
    carry: tuple | None = None,
    reduce_time: Reduction = "mean",
    dropout_key: Array | None = None,
) -> tuple[Array, tuple]:
    """Softmax cross-entropy of the targets, averaged over the batch; returns (loss, last carry).

    With ``reduce_time="mean"`` the loss is in nats per token (each example's valid steps averaged,
    then the examples); with ``"sum"`` it is the course's Σ_t L⟨t⟩, averaged over examples. With
    ``resets`` (lines packed into rows, see `lm_apply`) each line, from one reset to the next, is
    an example: the loss is the one its lines would have, each alone in its own padded row.
    """
    check_params_fit("lm_loss", params, config)
    carry, logits = lm_apply(
        params, config, inputs, carry, lengths=lengths, resets=resets, dropout_key=dropout_key
    )
    if resets is None:
        per_example = softmax_cross_entropy(logits, targets, lengths, reduce_time=reduce_time)
        return per_example.mean(), carry
    # every step a sequence of its own: the per-step losses, checked as any others
    per_step = softmax_cross_entropy(logits[..., None, :], targets[..., None], reduce_time="sum")
    return _mean_over_lines(per_step, lengths, jnp.asarray(resets), reduce_time), carry


def _mean_over_lines(
    per_step: Array, lengths: Array | None, resets: Array, reduce_time: Reduction
) -> Array:
    """The mean over lines of each line's summed or averaged loss; a line runs from a reset (or
    its row's start) to the next reset (or its row's valid end)."""
    n_steps = per_step.shape[-1]
    per_step, resets = per_step.reshape(-1, n_steps), resets.reshape(-1, n_steps)
    valid = jnp.ones_like(resets)
    if lengths is not None:
        valid = sequence_mask(jnp.reshape(lengths, -1), n_steps)
    per_step = jnp.where(valid, per_step, 0.0)
    rows = jnp.arange(per_step.shape[0])[:, None]
    line = jnp.cumsum(resets & valid, axis=-1) + (n_steps + 1) * rows
    n_lines = per_step.shape[0] * (n_steps + 1)
    tokens = jax.ops.segment_sum(valid.ravel().astype(per_step.dtype), line.ravel(), n_lines)
    totals = jax.ops.segment_sum(per_step.ravel(), line.ravel(), n_lines)
    per_line = totals / jnp.maximum(tokens, 1) if reduce_time == "mean" else totals
    present = tokens > 0
    return jnp.where(present, per_line, 0.0).sum() / jnp.maximum(present.sum(), 1)


def token_log_probs(
    params: GeneratorParams | Mixture,
    config: LMConfig,
    targets: Array,
    lengths: Array | None = None,
) -> Array:
    """log P(y⟨t⟩ | y⟨1⟩ … y⟨t−1⟩) of every token, starting from a⟨0⟩ = 0 and x⟨1⟩ = 0.

    Args:
      params: one model's, or a `Mixture`'s (the log of the members' mean probability).
      targets: int ids (*batch, T) in [0, V), e.g. a sentence followed by ⟨EOS⟩.
      lengths: optional (*batch,) valid lengths; padded steps get log-probability 0.

    Returns:
      (*batch, T) natural-log probabilities; their sum over t is log P(sentence). Under ``jit``,
      an id outside [0, V) at a valid step makes its own and every later valid log-probability
      of its example NaN (known while tracing, it raises `jaxrnn.InputError`).
    """
    fn = "token_log_probs"
    check_params_fit(fn, params, config)
    targets = _check_ids(fn, "targets", config, targets)
    _, log_probs = lm_log_probs(params, config, teacher_forcing_inputs(targets), lengths=lengths)
    picked = jnp.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]
    # −1 would read as the zero input x⟨1⟩ in the steps after it, and index the last column here
    seen_bad = jnp.cumsum((targets < 0) | (targets >= config.vocab_size), axis=-1) > 0
    picked = jnp.where(seen_bad, jnp.nan, picked)
    if lengths is None:
        return picked
    return jnp.where(sequence_mask(lengths, picked.shape[-1]), picked, 0.0)


def sentence_log_prob(
    params: GeneratorParams | Mixture,
    config: LMConfig,
    targets: Array,
    lengths: Array | None = None,
) -> Array:
    """log P(y⟨1⟩ … y⟨T⟩) = Σ_t log P(y⟨t⟩ | y⟨<t⟩): targets (*batch, T) -> (*batch,) in nats."""
    check_params_fit("sentence_log_prob", params, config)
    return token_log_probs(params, config, targets, lengths).sum(-1)


def next_token_log_probs(
    params: GeneratorParams | Mixture, config: LMConfig, prefix: Array
) -> Array:
    """log P(next | prefix) over the vocabulary: prefix (*batch, T) ids (T may be 0) -> (*batch, V).

    With an empty prefix it is the distribution of the first token, P(y⟨1⟩). Prefix ids are in
    [0, V); under ``jit`` one outside makes its example's log-probabilities NaN (known while
    tracing, it raises `jaxrnn.InputError`).
    """
    check_params_fit("next_token_log_probs", params, config)
    prefix = _check_ids("next_token_log_probs", "prefix", config, prefix)
    start = jnp.full((*prefix.shape[:-1], 1), START, prefix.dtype)
    _, log_probs = lm_log_probs(params, config, jnp.concatenate([start, prefix], axis=-1))
    log_probs = log_probs[..., -1, :]
    # −1 in the prefix would read as the zero input x⟨1⟩
    bad = jnp.any(prefix < 0, axis=-1, keepdims=True)
    return jnp.where(bad, jnp.nan, log_probs)


def _step_all_layers(
    params: GeneratorParams | Mixture, config: LMConfig, carry: tuple, token: Array
):
    """One time step through every layer: (carry, token id ()) -> (carry, logits (V,)); for a
    `Mixture`, the log of its probabilities, which are logits of the same distribution."""
    if isinstance(params, Mixture):
        carry, logits = jax.vmap(lambda p, c: _step_all_layers(p, config, c, token))(
            params.members, carry
        )
        return carry, _mean_of_probs(jax.nn.log_softmax(logits, axis=-1))
    carry, h = lm_cell(config).step(params.recurrent, carry, embed(params, config, token))
    return carry, dense(params.head, h)


class Samples(NamedTuple):
    """Sampled sequences: ``ids`` (N, max_len), padded with ⟨EOS⟩ after the first one;
    ``lengths`` (N,) count the tokens up to and including the first ⟨EOS⟩ (max_len if none)."""

    ids: Array
    lengths: Array


def sample(
    params: GeneratorParams | Mixture,
    config: LMConfig,
    key: Array,
    *,
    num_samples: int = 1,
    max_len: int = 100,
    eos_id: int | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    exclude_ids: Sequence[int] = (),
    prompt: Sequence[int] = (),
) -> Samples:
    """Samples novel sequences as in the course: a⟨0⟩ = 0, x⟨1⟩ = 0, draw y⟨t⟩ ~ ŷ⟨t⟩, feed it back.

    Each sample stops at ⟨EOS⟩ or after ``max_len`` tokens. All samples are drawn at once
    (``jax.vmap`` over keys of `jaxrnn.decode.decode`), compiled once per number of samples,
    length, ⟨EOS⟩ id, excluded ids and prompt; temperature and ``top_k`` are traced, so that
    trying another one does not compile again.

    Args:
      params: one model's, or a `Mixture`'s (each token drawn from the members' mean
        distribution, every member reading the tokens drawn so far).
      key: a PRNG key; the same key gives the same samples.
      num_samples: N.
      max_len: the most tokens to draw per sample (the prompt not counted).
      eos_id: the ⟨EOS⟩ id where a sample stops; None draws exactly max_len tokens.
      temperature: logits are divided by it; 0 means greedy (always the most likely token).
      top_k: draw only among the k most likely tokens.
      exclude_ids: ids never drawn, e.g. ``[vocab.unk_id]`` to reject ⟨UNK⟩.
      prompt: ids that the samples continue (fed as x⟨2⟩, x⟨3⟩, … after x⟨1⟩ = 0). Ids, here and
        in ``exclude_ids``, are ints, a 1-d NumPy or JAX int array, or a sequence of either.

    Returns:
      `Samples` (ids (N, max_len) int32, lengths (N,) int32), without the prompt.

    Raises:
      jaxrnn.InputError: an option out of range, or params not built for ``config`` (the message
        names the `LMConfig` field, see `check_params_fit`).
    """
    fn = "sample"
    check_params_fit(fn, params, config)
    check_positive_int(fn, "num_samples", num_samples)
    check_positive_int(fn, "max_len", max_len)
    temperature = check_temperature(fn, temperature)
    vocab = config.vocab_size
    top_k = check_top_k(fn, top_k, vocab)
    if eos_id is not None:
        eos_id = check_int_in(fn, "eos_id", host_scalar(eos_id), 0, vocab)
    exclude_ids = _static_ids(fn, "exclude_ids", exclude_ids, vocab)
    prompt = _static_ids(fn, "prompt", prompt, vocab)
    if len(set(exclude_ids)) >= vocab:
        fail(fn, f"expected exclude_ids to leave a token to draw, got all {vocab} ids")
    return _sample(
        params,
        key,
        config=config,
        num_samples=num_samples,
        max_len=max_len,
        eos_id=eos_id,
        temperature=jnp.asarray(temperature, jnp.float32),
        top_k=jnp.asarray(vocab if top_k is None else top_k, jnp.int32),  # all V: no cut
        exclude_ids=tuple(sorted(set(exclude_ids))),
        prompt=prompt,
    )


def _static_ids(fn: str, name: str, ids, vocab_size: int) -> tuple[int, ...]:
    """Ids known before tracing (they are static arguments of `_sample`), each an int in [0, V):
    a sequence of ints or of 0-d arrays, or a 1-d NumPy or concrete JAX integer array."""
    if isinstance(ids, jax.core.Tracer):
        fail(
            fn,
            f"expected {name} to be known while tracing, got a traced array",
            f"sample compiles once for each {name}: pass it from outside jax.jit",
        )
    if isinstance(ids, jax.Array):
        ids = np.asarray(ids)  # its items would be jax.Arrays, which check_int_in refuses
    if (isinstance(ids, np.ndarray) and ids.ndim == 0) or not hasattr(ids, "__iter__"):
        fail(fn, f"expected {name} to be a sequence of ids, got {ids!r}")
    return tuple(check_int_in(fn, name, host_scalar(i), 0, vocab_size) for i in ids)


@functools.partial(
    jax.jit,
    static_argnames=("config", "num_samples", "max_len", "eos_id", "exclude_ids", "prompt"),
)
def _sample(
    params, key, *, config, num_samples, max_len, eos_id, temperature, top_k, exclude_ids, prompt
) -> Samples:
    # The prompt is read once, shared by all samples: its last token is the first input fed back.
    inputs = (START, *prompt)
    carry = init_lm_carry(params, config)
    if len(inputs) > 1:
        carry, _ = lm_log_probs(params, config, jnp.asarray(inputs[:-1], jnp.int32), carry)
    first = jnp.asarray(inputs[-1], jnp.int32)
    never = jnp.zeros(config.vocab_size, bool).at[jnp.asarray(exclude_ids, jnp.int32)].set(True)

    def one_sample(key: Array) -> Samples:
        def step(carry, token):
            return _step_all_layers(params, config, carry, token)

        options = dict(temperature=temperature, top_k=top_k, never=never)
        return Samples(*decode(step, carry, first, key, max_len=max_len, eos_id=eos_id, **options))

    return jax.vmap(one_sample)(jax.random.split(key, num_samples))
