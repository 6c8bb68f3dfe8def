"""The RNN architectures of the course, as small pure functions over params NamedTuples.

    many-to-many, T_x = T_y   `tagger_init`, `tagger_apply`         ŷ⟨t⟩ from a⟨t⟩ at every step
    many-to-one               `classifier_init`, `classifier_apply` ŷ from the last (or pooled) a⟨t⟩
    one-to-many               `generator_init`, `generator_apply`,  ŷ⟨t⟩ drawn and fed back as
                              `generate`                            x⟨t+1⟩
    many-to-many, T_x ≠ T_y   `seq2seq_init`, `seq2seq_apply`,      an encoder reads x⟨1⟩…x⟨T_x⟩, a
                              `seq2seq_loss`, `seq2seq_decode`      decoder writes y⟨1⟩…y⟨T_y⟩

Every model takes the `Cell` as its first argument and its params second, so that
``functools.partial(tagger_apply, cell)`` is a pure function of arrays that ``jax.jit``,
``jax.vmap`` and ``jax.grad`` take as it is. Time loops over the inputs go through `jaxrnn.unroll`
(right-padded batches with ``lengths``); loops that feed a drawn token back as the next input are
`jaxrnn.decode.decode`, since each step needs the previous step's output.

Token inputs are int ids. An id becomes an input vector through a learned embedding (a (V, E) table
whose rows are token vectors) or, where the table is None, as the one-hot vector of size V, as in
the course. The id −1 stands for the zero vector x = 0 either way (the course's x⟨1⟩ = 0) where an
argument allows it. Ids out of range raise `jaxrnn.InputError` when they are known while tracing;
under ``jit`` they read as vectors of NaN, so every logit computed from them is NaN.

Heads return logits, never probabilities: ``jax.nn.sigmoid`` or ``jax.nn.softmax`` turns them into
ŷ, and the losses of `jaxrnn.losses` take them directly.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from jaxrnn._checks import (
    check_float_dtype,
    check_int_in,
    check_integer,
    check_lengths,
    check_positive_int,
    check_rank_at_least,
    check_shape,
    check_values_in,
    fail,
)
from jaxrnn.cells import Array, Carry, Cell, input_size
from jaxrnn.decode import Feed, check_temperature, decode
from jaxrnn.layers import DenseParams, dense, dense_init, embed_ids
from jaxrnn.losses import Reduction, sequence_mask, softmax_cross_entropy
from jaxrnn.scan import check_xs, unroll

Params = Any
Pool = Literal["last", "mean", "max"]

# ---------------------------------------------------------------------------------------- params


class SequenceParams(NamedTuple):
    """A recurrent layer and a dense head: the params of `tagger_init` and `classifier_init`."""

    recurrent: Params  # the cell's params, from cell.init(key, input_size, H)
    head: DenseParams  # (H, K): logits = a @ w + b


class GeneratorParams(NamedTuple):
    """Params of a one-to-many generator (`generator_init`), and of a language model
    (`jaxrnn.lm.init_lm`), which is a generator over a deep cell."""

    embedding: Array | None  # (K, E) input vectors of the K classes; None: one-hot inputs (E = K)
    recurrent: Params  # the cell's params, input size E (a deep cell's `StackedParams`)
    head: DenseParams  # (H, K)


class Seq2SeqParams(NamedTuple):
    """Params of the encoder–decoder of `seq2seq_init`. Encoder and decoder share the cell type and
    the hidden size H, since the encoder's last carry is the decoder's first."""

    encoder: Params  # the cell's params, input size E (or in_vocab with one-hot source ids)
    decoder: Params  # the cell's params, input size E
    embedding_in: Array | None  # (in_vocab, E) source token vectors; None: one-hot source ids
    embedding_out: Array  # (out_vocab, E) target token vectors, fed to the decoder
    head: DenseParams  # (H, out_vocab)


# --------------------------------------------------------------------------------------- helpers


def _embedding_init(key: Array, vocab: int, size: int, dtype) -> Array:
    """N(0, 1) rows, as `jaxrnn.lm.init_lm`."""
    check_float_dtype("init", dtype)
    return jax.random.normal(key, (vocab, size), dtype)


def _check_ids(fn: str, name: str, ids, vocab: int, *, allow_start: bool = False):
    """Integer ids; when their values are known at trace time, each in [0, vocab) (or −1)."""
    check_integer(fn, name, ids)
    ids = jnp.asarray(ids)
    hint = "−1 is the zero input x = 0; other ids index the vocabulary" if allow_start else ""
    check_values_in(fn, name, ids, -1 if allow_start else 0, vocab, hint=hint)
    return ids


# ----------------------------------------------------------------------- many-to-many, T_x = T_y


def tagger_init(
    cell: Cell, key: Array, input_size: int, hidden_size: int, num_classes: int, dtype=jnp.float32
) -> SequenceParams:
    """Params of a many-to-many model with one output per input step (T_y = T_x).

    Args:
      cell: a `Cell`, e.g. ``jaxrnn.gru()``.
      key: a PRNG key.
      input_size: n_x, the features of each x⟨t⟩.
      hidden_size: H.
      num_classes: K, the logits per step (K sigmoid units, or K classes of one softmax).
      dtype: the params' dtype.

    Returns:
      `SequenceParams` (the cell's params, a Glorot-uniform head (H, K) with zero bias).
    """
    check_positive_int("tagger_init", "num_classes", num_classes)
    key_rnn, key_head = jax.random.split(key)
    return SequenceParams(
        cell.init(key_rnn, input_size, hidden_size, dtype),
        dense_init(key_head, hidden_size, num_classes, dtype),
    )


def tagger_apply(
    cell: Cell, params: SequenceParams, xs: Array, *, lengths: Array | None = None
) -> Array:
    """Logits at every step: the course's named-entity recognition, ŷ⟨t⟩ = σ(W_ya a⟨t⟩ + b_y).

        a⟨t⟩ = cell(a⟨t−1⟩, x⟨t⟩),   a⟨0⟩ = 0
        z⟨t⟩ = W_ya a⟨t⟩ + b_y       (the logits; σ(z⟨t⟩) per unit, or softmax(z⟨t⟩) over K)

    Args:
      cell: the `Cell` the params were made for.
      params: `SequenceParams` from `tagger_init`.
      xs: (*batch, T, input_size) floating point, of the params' dtype.
      lengths: optional (*batch,) ints for right-padded batches. The outputs a⟨t⟩ past an example's
        length are zero, so its logits there are the head's bias b_y; mask them out of the loss
        (`jaxrnn.sigmoid_cross_entropy` and `jaxrnn.softmax_cross_entropy` take ``lengths``).

    Returns:
      logits (*batch, T, K).

    Raises:
      InputError: if xs or lengths do not fit the params.

    Example:
      >>> cell = jaxrnn.gru()
      >>> params = jaxrnn.models.tagger_init(
      ...     cell, jax.random.key(0), 3, hidden_size=8, num_classes=1
      ... )
      >>> jaxrnn.models.tagger_apply(cell, params, jnp.ones((4, 10, 3))).shape
      (4, 10, 1)
    """
    shape = check_xs("tagger_apply", params.recurrent, xs, time_major=False)
    check_lengths("tagger_apply", lengths, shape[:-2])
    _, hs = unroll(cell, params.recurrent, xs, lengths=lengths)
    return dense(params.head, hs)


# ---------------------------------------------------------------------------------- many-to-one


def classifier_init(
    cell: Cell, key: Array, input_size: int, hidden_size: int, num_classes: int, dtype=jnp.float32
) -> SequenceParams:
    """Params of a many-to-one model: the cell's params and a head (H, K) on one pooled state.

    Arguments as `tagger_init`, with ``num_classes`` K the logits per sequence.
    """
    check_positive_int("classifier_init", "num_classes", num_classes)
    key_rnn, key_head = jax.random.split(key)
    return SequenceParams(
        cell.init(key_rnn, input_size, hidden_size, dtype),
        dense_init(key_head, hidden_size, num_classes, dtype),
    )


def pool_over_time(hs: Array, lengths: Array | None = None, pool: Pool = "last") -> Array:
    """One vector per sequence from the outputs a⟨1⟩…a⟨T⟩, over the valid steps only.

        "last":  a⟨T_i⟩, the state after the last valid step (the carry `jaxrnn.unroll` returns)
        "mean":  (1 / T_i) Σ_{t ≤ T_i} a⟨t⟩
        "max":   max_{t ≤ T_i} a⟨t⟩, per feature

    An example of length 0 pools to a⟨0⟩ = 0.

    Args:
      hs: (*batch, T, H), as `jaxrnn.unroll` returns them (zero past each example's length).
      lengths: optional (*batch,) ints T_i; None means every step is valid.
      pool: ``"last"``, ``"mean"`` or ``"max"``.

    Returns:
      (*batch, H).
    """
    fn = "pool_over_time"
    if pool not in ("last", "mean", "max"):
        fail(fn, f"expected pool 'last', 'mean' or 'max', got {pool!r}")
    shape = check_rank_at_least(fn, "hs", hs, 2, "(*batch, time, hidden_size)")
    batch_shape, n_steps = shape[:-2], shape[-2]
    check_lengths(fn, lengths, batch_shape, of="hs")
    if lengths is None:
        lengths = jnp.full(batch_shape, n_steps, jnp.int32)
    lengths = jnp.asarray(lengths)
    if pool == "last":
        # Past its length an example's outputs are zero, so length 0 picks a zero vector.
        index = jnp.maximum(lengths - 1, 0)[..., None, None]
        return jnp.take_along_axis(hs, index, axis=-2)[..., 0, :]
    mask = sequence_mask(lengths, n_steps)[..., None]  # (*batch, T, 1)
    if pool == "mean":
        total = jnp.where(mask, hs, jnp.zeros((), hs.dtype)).sum(-2)
        return total / jnp.maximum(lengths, 1)[..., None].astype(hs.dtype)
    largest = jnp.where(mask, hs, jnp.array(-jnp.inf, hs.dtype)).max(-2)
    return jnp.where((lengths > 0)[..., None], largest, jnp.zeros((), hs.dtype))


def classifier_apply(
    cell: Cell,
    params: SequenceParams,
    xs: Array,
    *,
    lengths: Array | None = None,
    pool: Pool = "last",
) -> Array:
    """Logits of one label per sequence (sentiment classification in the course).

        a⟨t⟩ = cell(a⟨t−1⟩, x⟨t⟩),   a⟨0⟩ = 0
        z = W_ya pool(a⟨1⟩ … a⟨T_x⟩) + b_y

    Args:
      cell: the `Cell` the params were made for.
      params: `SequenceParams` from `classifier_init`.
      xs: (*batch, T, input_size) floating point, of the params' dtype.
      lengths: optional (*batch,) ints for right-padded batches; padding never reaches the pooling.
      pool: ``"last"`` (the hidden state after the last valid step), ``"mean"`` or ``"max"`` over
        the valid steps; see `pool_over_time`.

    Returns:
      logits (*batch, K).

    Raises:
      InputError: if xs or lengths do not fit the params, or pool is unknown.

    Example:
      >>> cell = jaxrnn.lstm()
      >>> params = jaxrnn.models.classifier_init(cell, jax.random.key(0), 3, 8, num_classes=2)
      >>> xs, lengths = jnp.ones((4, 10, 3)), jnp.array([10, 3, 7, 1])
      >>> jaxrnn.models.classifier_apply(cell, params, xs, lengths=lengths, pool="mean").shape
      (4, 2)
    """
    fn = "classifier_apply"
    if pool not in ("last", "mean", "max"):
        fail(fn, f"expected pool 'last', 'mean' or 'max', got {pool!r}")
    shape = check_xs(fn, params.recurrent, xs, time_major=False)
    check_lengths(fn, lengths, shape[:-2])
    _, hs = unroll(cell, params.recurrent, xs, lengths=lengths)
    return dense(params.head, pool_over_time(hs, lengths, pool))


# ---------------------------------------------------------------------------------- one-to-many


def generator_init(
    cell: Cell,
    key: Array,
    num_classes: int,
    hidden_size: int,
    embedding_size: int | None = None,
    dtype=jnp.float32,
) -> GeneratorParams:
    """Params of a one-to-many generator over K classes (music or name generation in the course).

    Args:
      cell: a `Cell`.
      key: a PRNG key.
      num_classes: K, the classes drawn at each step (and fed back as the next input).
      hidden_size: H.
      embedding_size: E for learned N(0, 1) input vectors; None feeds one-hot vectors (E = K).
      dtype: the params' dtype.

    Returns:
      `GeneratorParams`.
    """
    fn = "generator_init"
    check_positive_int(fn, "num_classes", num_classes)
    if embedding_size is not None:
        check_positive_int(fn, "embedding_size", embedding_size)
    key_embed, key_rnn, key_head = jax.random.split(key, 3)
    embed = None
    if embedding_size is not None:
        embed = _embedding_init(key_embed, num_classes, embedding_size, dtype)
    n_x = num_classes if embedding_size is None else embedding_size
    return GeneratorParams(
        embed,
        cell.init(key_rnn, n_x, hidden_size, dtype),
        dense_init(key_head, hidden_size, num_classes, dtype),
    )


def _num_classes(params: GeneratorParams | Seq2SeqParams) -> int:
    return params.head.w.shape[-1]


def generator_apply(
    cell: Cell,
    params: GeneratorParams,
    input_ids: Array,
    *,
    lengths: Array | None = None,
    carry: Carry | None = None,
) -> Array:
    """Logits of every step given the inputs, for training by teacher forcing.

    To train the generator to produce y⟨1⟩…y⟨T⟩ after the first input x⟨1⟩, feed
    ``input_ids = [x⟨1⟩, y⟨1⟩, …, y⟨T−1⟩]`` and take the softmax cross-entropy of the logits
    against ``[y⟨1⟩, …, y⟨T⟩]``: at step t the true y⟨t−1⟩ is fed instead of the drawn one.

    Args:
      cell: the `Cell` the params were made for.
      params: `GeneratorParams` from `generator_init`.
      input_ids: (*batch, T) ints in [−1, K); −1 is the zero input x = 0.
      lengths: optional (*batch,) ints for right-padded batches.
      carry: optional initial carry a⟨0⟩, each array (*batch, H); zeros if None.

    Returns:
      logits (*batch, T, K).
    """
    fn = "generator_apply"
    k = _num_classes(params)
    check_rank_at_least(fn, "input_ids", input_ids, 1, "(*batch, time)")
    input_ids = _check_ids(fn, "input_ids", input_ids, k, allow_start=True)
    check_lengths(fn, lengths, input_ids.shape[:-1], of="input_ids")
    xs = embed_ids(params.embedding, input_ids, k, params.head.w.dtype)
    _, hs = unroll(cell, params.recurrent, xs, carry, lengths=lengths)
    return dense(params.head, hs)


def generate(
    cell: Cell,
    params: GeneratorParams,
    key: Array,
    first: int | Array = -1,
    *,
    steps: int,
    temperature: float = 1.0,
    feed: Feed = "sample",
    carry: Carry | None = None,
) -> Array:
    """Draws a sequence of ``steps`` classes, each fed back as the next input (one-to-many).

        x⟨1⟩ = first,   a⟨0⟩ = carry (zeros if None)
        a⟨t⟩ = cell(a⟨t−1⟩, x⟨t⟩),   ŷ⟨t⟩ = softmax((W_ya a⟨t⟩ + b_y) / temperature)
        y⟨t⟩ ~ ŷ⟨t⟩   (argmax of ŷ⟨t⟩ with temperature 0: greedy)
        x⟨t+1⟩ = y⟨t⟩ (feed="sample") or argmax ŷ⟨t⟩ (feed="argmax"), as one-hot or embedded

    ``feed="argmax"`` is the course's music generator, which feeds back the most likely class;
    with temperature 0 the two coincide. For many sequences at once, ``jax.vmap`` over keys (and
    over ``first`` or ``carry``)::

        jax.vmap(lambda k: generate(cell, params, k, steps=20))(jax.random.split(key, 8))

    Args:
      cell: the `Cell` the params were made for.
      params: `GeneratorParams` from `generator_init`.
      key: a PRNG key; the same key gives the same sequence.
      first: the first input's class id, a scalar int in [−1, K); −1 (the default) is x⟨1⟩ = 0.
      steps: the number of classes to draw.
      temperature: logits are divided by it before the draw; 0 draws the argmax (greedy).
      feed: what becomes the next input: the drawn class (``"sample"``) or the argmax
        (``"argmax"``).
      carry: optional initial carry a⟨0⟩, each array (H,).

    Returns:
      ids (steps,) int32: y⟨1⟩ … y⟨steps⟩.

    Raises:
      InputError: if steps, temperature, feed or first is not valid.

    Example:
      >>> cell = jaxrnn.gru()
      >>> params = jaxrnn.models.generator_init(
      ...     cell, jax.random.key(0), num_classes=5, hidden_size=8
      ... )
      >>> jaxrnn.models.generate(cell, params, jax.random.key(1), steps=6, temperature=0.0).shape
      (6,)
    """
    fn = "generate"
    check_positive_int(fn, "steps", steps)
    temperature = check_temperature(fn, temperature)
    if feed not in ("sample", "argmax"):
        fail(fn, f"expected feed 'sample' or 'argmax', got {feed!r}")
    k = _num_classes(params)
    first = _check_ids(fn, "first", first, k, allow_start=True)
    check_shape(fn, "first", first, (), "one sequence per call; use jax.vmap for many")
    if carry is None:
        carry = cell.init_carry(params.recurrent)
    dtype = params.head.w.dtype

    def step(carry, x_id):
        carry, h = cell.step(params.recurrent, carry, embed_ids(params.embedding, x_id, k, dtype))
        return carry, dense(params.head, h)

    options = dict(max_len=steps, temperature=temperature, feed=feed)
    return decode(step, carry, first, key, **options).ids


# ----------------------------------------------------------------- encoder–decoder, T_x ≠ T_y


def seq2seq_init(
    cell: Cell,
    key: Array,
    in_vocab: int,
    out_vocab: int,
    hidden_size: int,
    embedding_size: int,
    *,
    one_hot_source: bool = False,
    dtype=jnp.float32,
) -> Seq2SeqParams:
    """Params of an encoder–decoder (machine translation in the course, Sutskever et al. 2014).

    Args:
      cell: a `Cell`, used for both the encoder and the decoder.
      key: a PRNG key.
      in_vocab: the source vocabulary size.
      out_vocab: the target vocabulary size, ⟨EOS⟩ (and ⟨BOS⟩, if it is a token) included.
      hidden_size: H, shared by the encoder and the decoder.
      embedding_size: E, the size of the learned N(0, 1) token vectors.
      one_hot_source: feed source ids to the encoder as one-hot vectors (``embedding_in`` None).
      dtype: the params' dtype.

    Returns:
      `Seq2SeqParams`.
    """
    fn = "seq2seq_init"
    check_positive_int(fn, "in_vocab", in_vocab)
    check_positive_int(fn, "out_vocab", out_vocab)
    check_positive_int(fn, "embedding_size", embedding_size)
    key_in, key_out, key_enc, key_dec, key_head = jax.random.split(key, 5)
    embedding_in = (
        None if one_hot_source else _embedding_init(key_in, in_vocab, embedding_size, dtype)
    )
    return Seq2SeqParams(
        encoder=cell.init(
            key_enc, in_vocab if one_hot_source else embedding_size, hidden_size, dtype
        ),
        decoder=cell.init(key_dec, embedding_size, hidden_size, dtype),
        embedding_in=embedding_in,
        embedding_out=_embedding_init(key_out, out_vocab, embedding_size, dtype),
        head=dense_init(key_head, hidden_size, out_vocab, dtype),
    )


def _in_vocab(params: Seq2SeqParams) -> int:
    if params.embedding_in is None:
        return input_size(params.encoder)
    return params.embedding_in.shape[0]


def _encode(fn: str, cell: Cell, params: Seq2SeqParams, src_ids, src_lengths) -> Carry:
    """The encoder's carry after each source's last valid token: each array (*batch, H)."""
    check_rank_at_least(fn, "src_ids", src_ids, 1, "(*batch, time)")
    vocab = _in_vocab(params)
    src_ids = _check_ids(fn, "src_ids", src_ids, vocab)
    check_lengths(fn, src_lengths, src_ids.shape[:-1], name="src_lengths", of="src_ids")
    xs = embed_ids(params.embedding_in, src_ids, vocab, params.head.w.dtype, start=False)
    carry, _ = unroll(cell, params.encoder, xs, lengths=src_lengths)
    return carry


def seq2seq_apply(
    cell: Cell,
    params: Seq2SeqParams,
    src_ids: Array,
    src_lengths: Array | None,
    tgt_ids: Array,
    tgt_lengths: Array | None,
    *,
    bos_id: int,
) -> Array:
    """Decoder logits under teacher forcing: the decoder reads the true previous target token.

        encoder:  e⟨t⟩ = cell_enc(e⟨t−1⟩, x⟨t⟩),  e⟨0⟩ = 0,  t = 1 … T_x (each source's length)
        decoder:  d⟨0⟩ = e⟨T_x⟩,  d⟨t⟩ = cell_dec(d⟨t−1⟩, y⟨t−1⟩),  y⟨0⟩ = ⟨BOS⟩
        logits⟨t⟩ = W_ya d⟨t⟩ + b_y,  t = 1 … T_y

    so the decoder's inputs are [⟨BOS⟩, y⟨1⟩, …, y⟨T_y−1⟩] and logits⟨t⟩ scores y⟨t⟩.

    Args:
      cell: the `Cell` the params were made for.
      params: `Seq2SeqParams` from `seq2seq_init`.
      src_ids: (*batch, T_x) ints in [0, in_vocab), right-padded.
      src_lengths: (*batch,) ints, or None when every source fills T_x.
      tgt_ids: (*batch, T_y) ints in [0, out_vocab), usually ending with ⟨EOS⟩, right-padded.
      tgt_lengths: (*batch,) ints (⟨EOS⟩ counted), or None when every target fills T_y.
      bos_id: the decoder's first input, an id in [0, out_vocab), or −1 for the zero vector.

    Returns:
      logits (*batch, T_y, out_vocab); past an example's target length they are the head's bias.
    """
    fn = "seq2seq_apply"
    out_vocab = _num_classes(params)
    bos_id = check_int_in(fn, "bos_id", bos_id, -1, out_vocab)
    carry = _encode(fn, cell, params, src_ids, src_lengths)
    check_rank_at_least(fn, "tgt_ids", tgt_ids, 1, "(*batch, time)")
    tgt_ids = _check_ids(fn, "tgt_ids", tgt_ids, out_vocab)
    src_batch = jnp.shape(src_ids)[:-1]
    check_shape(
        fn,
        "tgt_ids",
        tgt_ids,
        (*src_batch, None),
        "sources and targets need the same batch dimensions",
    )
    check_lengths(fn, tgt_lengths, src_batch, name="tgt_lengths", of="tgt_ids")
    bos = jnp.full((*src_batch, 1), bos_id, tgt_ids.dtype)
    dtype = params.head.w.dtype
    # ⟨BOS⟩ may be −1, the zero input; a target may not (under jit it reads as NaN)
    xs = jnp.concatenate(
        [
            embed_ids(params.embedding_out, bos, out_vocab, dtype),
            embed_ids(params.embedding_out, tgt_ids[..., :-1], out_vocab, dtype, start=False),
        ],
        axis=-2,
    )
    _, hs = unroll(cell, params.decoder, xs, carry, lengths=tgt_lengths)
    return dense(params.head, hs)


def seq2seq_loss(
    cell: Cell,
    params: Seq2SeqParams,
    src_ids: Array,
    src_lengths: Array | None,
    tgt_ids: Array,
    tgt_lengths: Array | None,
    *,
    bos_id: int,
    reduce_time: Reduction = "mean",
) -> Array:
    """Teacher-forced softmax cross-entropy of the targets, averaged over the batch.

    Arguments as `seq2seq_apply`. With ``reduce_time="mean"`` each example's loss is in nats per
    target token (⟨EOS⟩ counted), then the examples are averaged; ``"sum"`` gives the course's
    Σ_t L⟨t⟩ per example, averaged over examples.

    Returns:
      () the loss, a scalar for ``jax.grad`` and `jaxrnn.make_train_step`.
    """
    logits = seq2seq_apply(cell, params, src_ids, src_lengths, tgt_ids, tgt_lengths, bos_id=bos_id)
    return softmax_cross_entropy(logits, tgt_ids, tgt_lengths, reduce_time=reduce_time).mean()


def seq2seq_decode(
    cell: Cell,
    params: Seq2SeqParams,
    src_ids: Array,
    src_lengths: Array | None,
    *,
    max_len: int,
    bos_id: int,
    eos_id: int,
    key: Array | None = None,
    temperature: float = 1.0,
) -> tuple[Array, Array]:
    """Translates each source: greedy decoding (key None) or sampling, until ⟨EOS⟩ or max_len.

        d⟨0⟩ = e⟨T_x⟩,  ŷ⟨0⟩ = ⟨BOS⟩
        d⟨t⟩ = cell_dec(d⟨t−1⟩, ŷ⟨t−1⟩),  ŷ⟨t⟩ = argmax (or a draw from) softmax(W_ya d⟨t⟩ + b_y)

    Greedy decoding picks the most likely token at each step, which is not the most likely sentence
    (the course's beam search looks further). All examples are decoded together in one
    ``lax.scan`` of ``max_len`` steps; an example that has produced ⟨EOS⟩ keeps producing ⟨EOS⟩.

    Args:
      cell: the `Cell` the params were made for.
      params: `Seq2SeqParams` from `seq2seq_init`.
      src_ids: (*batch, T_x) ints in [0, in_vocab), right-padded.
      src_lengths: (*batch,) ints, or None when every source fills T_x.
      max_len: the most tokens to produce per example, ⟨EOS⟩ included.
      bos_id: the decoder's first input, an id in [0, out_vocab), or −1 for the zero vector; the
        same as in training.
      eos_id: the id that ends a translation, in [0, out_vocab).
      key: None for greedy decoding; a PRNG key to sample each token from softmax(logits / T).
      temperature: T, for sampling; 0 is greedy.

    Returns:
      ``(ids, lengths)``: ids (*batch, max_len) int32, ⟨EOS⟩ at and after each example's first
      ⟨EOS⟩; lengths (*batch,) int32, the tokens up to and including the first ⟨EOS⟩ (max_len
      where there is none).

    Raises:
      InputError: if an argument does not fit the params.

    Example:
      >>> cell = jaxrnn.lstm()
      >>> params = jaxrnn.models.seq2seq_init(
      ...     cell, jax.random.key(0), 8, 10, hidden_size=16, embedding_size=4
      ... )
      >>> src, src_lengths = jnp.zeros((2, 5), jnp.int32), jnp.array([5, 3])
      >>> ids, lengths = jaxrnn.models.seq2seq_decode(
      ...     cell, params, src, src_lengths, max_len=7, bos_id=9, eos_id=8
      ... )
      >>> ids.shape, lengths.shape
      ((2, 7), (2,))
    """
    fn = "seq2seq_decode"
    out_vocab = _num_classes(params)
    check_positive_int(fn, "max_len", max_len)
    bos_id = check_int_in(fn, "bos_id", bos_id, -1, out_vocab)
    eos_id = check_int_in(fn, "eos_id", eos_id, 0, out_vocab)
    temperature = check_temperature(fn, temperature)
    carry = _encode(fn, cell, params, src_ids, src_lengths)
    first = jnp.full(jnp.shape(src_ids)[:-1], bos_id, jnp.int32)
    dtype = params.head.w.dtype

    def step(carry, token):
        x = embed_ids(params.embedding_out, token, out_vocab, dtype)
        carry, h = cell.step(params.decoder, carry, x)
        return carry, dense(params.head, h)

    options = dict(max_len=max_len, eos_id=eos_id, temperature=temperature)
    ids, lengths = decode(step, carry, first, key, **options)
    return ids, lengths
