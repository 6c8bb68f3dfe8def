"""Flax NNX modules around the pure functions: the layers `RNN`, `Bidirectional` and
`StackedRNN`, and the ready models `Tagger`, `Classifier`, `Seq2Seq` and `LanguageModel`.

Each module holds a cell's weights as ``nnx.Param`` leaves, one per field of the cell's params
NamedTuple (``w_x``, ``w_h``, ``b_x``, ``b_h`` and, for a peephole LSTM, ``peephole``), and its
``__call__`` rebuilds the NamedTuple and calls the functional API (`jaxrnn.unroll`,
`jaxrnn.bidirectional`, `jaxrnn.stacked`). So the modules compute exactly what the functions
compute, and ``module.params`` gives the params pytree the functions take:

    import jaxrnn.nnx                                      # not imported by ``import jaxrnn``

    model = jaxrnn.nnx.RNN(jaxrnn.lstm(), 3, 8, rngs=nnx.Rngs(0))
    ys = model(xs, lengths=lengths)
    ys == jaxrnn.unroll(jaxrnn.lstm(), model.params, xs, lengths=lengths)[1]

Weights are initialised by the cell's own ``init`` with a key from ``rngs.params()``. Inputs are
(*batch, T, input_size), batch-first; the outputs (*batch, T, H).

Compared with ``flax.nnx.RNN(flax.nnx.LSTMCell(...))`` (as of flax 0.12.8):

- Weights. ``LSTMCell`` keeps eight ``Linear`` layers: ``ii, if_, ig, io`` (input side, no bias)
  and ``hi, hf, hg, ho`` (recurrent side, with bias), gates (i, f, g, o). That is jaxrnn's gate
  order (u, f, c̃, o), so ``w_x = concat([ii, if_, ig, io] kernels)``,
  ``w_h = concat([hi, hf, hg, ho] kernels)``, ``b_h = concat([hi, hf, hg, ho] biases)`` and
  ``b_x = 0`` give the same outputs (flax's carry is ``(c, h)``, jaxrnn's ``LSTMState(h, c)``);
  `jaxrnn.interop.params_from_nnx` and `jaxrnn.interop.params_to_nnx` do this, for the GRU and
  SimpleCell too.
  ``LSTMCell`` initialises all biases to zero; ``jaxrnn.lstm()`` sets the forget gate's ``b_x``
  to ``forget_bias`` = 1.
- Padding. With ``seq_lengths``, ``nnx.RNN`` keeps running the cell over the padded steps: its
  outputs there are the cell applied to the padding, not zeros (only the returned carry is
  taken at the last valid step). jaxrnn returns zero outputs at padded steps and the carry of
  the last valid step. On unpadded input the two agree.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from jaxrnn import lm, models
from jaxrnn._checks import check_positive_int, fail
from jaxrnn.cells import Cell
from jaxrnn.layers import (
    BidirectionalParams,
    Merge,
    StackedParams,
    bidirectional,
    stacked,
)
from jaxrnn.scan import unroll

Array = jax.Array

__all__ = [
    "RNN",
    "Bidirectional",
    "StackedRNN",
    "Tagger",
    "Classifier",
    "Seq2Seq",
    "LanguageModel",
]


class RNN(nnx.Module):
    """One recurrent layer: ``cell`` run over time by `jaxrnn.unroll`.

    Args:
      cell: a jaxrnn `Cell`, e.g. ``jaxrnn.lstm()`` or ``jaxrnn.gru()``.
      input_size: the number of input features.
      hidden_size: the number of hidden units H.
      rngs: ``nnx.Rngs``; one key from ``rngs.params()`` goes to ``cell.init``.
      dtype: the dtype of the weights (and of the inputs they accept).

    Attributes:
      cell: the cell.
      params: the weights as the cell's params NamedTuple (read-only; a fresh NamedTuple of the
        current ``nnx.Param`` values at each access).

    Example:
      >>> model = jaxrnn.nnx.RNN(jaxrnn.gru(), 3, 8, rngs=nnx.Rngs(0))
      >>> ys = model(jnp.ones((4, 10, 3)), lengths=jnp.array([10, 7, 1, 0]))
      >>> ys.shape
      (4, 10, 8)
    """

    def __init__(
        self, cell: Cell, input_size: int, hidden_size: int, *, rngs: nnx.Rngs, dtype=jnp.float32
    ):
        self.cell = cell
        params = cell.init(rngs.params(), input_size, hidden_size, dtype)
        self._params_type = type(params)
        self._fields = params._fields
        for name, value in zip(params._fields, params, strict=True):
            setattr(self, name, None if value is None else nnx.Param(value))

    @property
    def params(self) -> Any:
        values = (getattr(self, name) for name in self._fields)
        return self._params_type(*(None if v is None else v[...] for v in values))

    def __call__(
        self,
        xs: Array,
        *,
        lengths: Array | None = None,
        resets: Array | None = None,
        carry: Any = None,
        reset_carry: Any = None,
        reverse: bool = False,
        return_carry: bool = False,
    ) -> Array | tuple[Any, Array]:
        """Runs the layer over ``xs`` (*batch, T, input_size).

        Args:
          xs: inputs (*batch, T, input_size).
          lengths: optional int array of shape ``batch``; as in `jaxrnn.unroll`, padded steps give
            zero outputs and the carry is the last valid one.
          resets: optional bool (*batch, T), the steps that start a new segment from the
            initial carry (`jaxrnn.unroll`).
          carry: the initial carry; zeros if None.
          reset_carry: with ``resets``, the carry each segment after a reset starts from, if not
            ``carry`` (`jaxrnn.unroll`).
          reverse: read each sequence from its last valid step to its first.
          return_carry: also return the last carry.

        Returns:
          The outputs (*batch, T, H), or ``(carry, outputs)`` with ``return_carry``.
        """
        last, ys = unroll(
            self.cell,
            self.params,
            xs,
            carry,
            lengths=lengths,
            resets=resets,
            reset_carry=reset_carry,
            reverse=reverse,
        )
        return (last, ys) if return_carry else ys


class Bidirectional(nnx.Module):
    """A bidirectional layer: two `RNN` s of the same cell, run by `jaxrnn.bidirectional`.

    Args:
      cell: a jaxrnn `Cell`.
      input_size: the number of input features.
      hidden_size: the number of hidden units H of each direction.
      merge: how the two directions' outputs are combined, as in `jaxrnn.bidirectional`:
        ``"concat"`` (2H), ``"sum"``, ``"mean"``, ``"product"`` (H), or None for a pair.
      rngs: ``nnx.Rngs``; each direction draws its own key from ``rngs.params()``.
      dtype: the dtype of the weights.

    Attributes:
      forward, backward: the two `RNN` s.
      params: `jaxrnn.BidirectionalParams` of the current weights.

    Example:
      >>> model = jaxrnn.nnx.Bidirectional(jaxrnn.lstm(), 3, 8, rngs=nnx.Rngs(0))
      >>> model(jnp.ones((4, 10, 3)), lengths=jnp.array([10, 7, 1, 0])).shape
      (4, 10, 16)
    """

    def __init__(
        self,
        cell: Cell,
        input_size: int,
        hidden_size: int,
        *,
        merge: Merge = "concat",
        rngs: nnx.Rngs,
        dtype=jnp.float32,
    ):
        self.cell = cell
        self.merge = merge
        self.forward = RNN(cell, input_size, hidden_size, rngs=rngs, dtype=dtype)
        self.backward = RNN(cell, input_size, hidden_size, rngs=rngs, dtype=dtype)

    @property
    def params(self) -> BidirectionalParams:
        return BidirectionalParams(self.forward.params, self.backward.params)

    def __call__(
        self,
        xs: Array,
        *,
        lengths: Array | None = None,
        resets: Array | None = None,
        carry: tuple[Any, Any] | None = None,
        reset_carry: tuple[Any, Any] | None = None,
        return_carry: bool = False,
    ) -> Any:
        """Runs both directions over ``xs`` (*batch, T, input_size).

        Returns:
          The merged outputs (*batch, T, 2H) for ``"concat"``, or ``(carry, outputs)`` with
          ``return_carry``, the carry a `jaxrnn.layers.BidirectionalCarry`.
        """
        last, ys = bidirectional(
            self.cell,
            self.params,
            xs,
            lengths=lengths,
            resets=resets,
            merge=self.merge,
            carry=carry,
            reset_carry=reset_carry,
        )
        return (last, ys) if return_carry else ys


class StackedRNN(nnx.Module):
    """A deep RNN of ``num_layers`` layers, run by `jaxrnn.stacked`.

    Dropout follows ``nnx.Dropout``: with ``dropout_rate`` > 0 it acts between layers (on the
    outputs of every layer but the last, never on the carries) while ``deterministic`` is False,
    the default, with a key drawn from the ``"dropout"`` stream of the ``rngs`` given to the
    constructor (or to the call). ``model.eval()`` sets ``deterministic=True`` and turns it off,
    ``model.train()`` back on; the ``deterministic`` argument of the call overrides both.

    Args:
      cell: a jaxrnn `Cell`, the same for every layer.
      input_size: the number of input features of the bottom layer.
      hidden_size: the number of hidden units H of each layer (of each direction).
      num_layers: the number of layers L.
      bidirectional: whether each layer is a `Bidirectional` (passing [a→, a←], 2H, upwards).
      dropout_rate: in [0, 1).
      merge: how the top layer's two directions are combined when ``bidirectional``.
      deterministic: the initial mode; False is training (dropout on).
      rngs: ``nnx.Rngs``: ``params`` keys for the weights, the ``dropout`` stream for dropout.
      dtype: the dtype of the weights.

    Raises:
      InputError: if ``num_layers`` or ``dropout_rate`` is out of range.

    Attributes:
      layers: ``nnx.List`` of the layers, bottom first.
      params: `jaxrnn.StackedParams` of the current weights.

    Example:
      >>> model = jaxrnn.nnx.StackedRNN(
      ...     jaxrnn.lstm(), 3, 8, 2, bidirectional=True, dropout_rate=0.2, rngs=nnx.Rngs(0)
      ... )
      >>> model.eval()                                         # no dropout
      >>> model(jnp.ones((4, 10, 3)), lengths=jnp.array([10, 7, 1, 0])).shape
      (4, 10, 16)
    """

    def __init__(
        self,
        cell: Cell,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        *,
        bidirectional: bool = False,
        dropout_rate: float = 0.0,
        merge: Merge = "concat",
        deterministic: bool = False,
        rngs: nnx.Rngs,
        dtype=jnp.float32,
    ):
        check_positive_int("StackedRNN", "num_layers", num_layers)
        if not isinstance(dropout_rate, int | float) or not 0.0 <= dropout_rate < 1.0:
            fail("StackedRNN", f"expected dropout_rate a number in [0, 1), got {dropout_rate!r}")
        self.cell = cell
        self.dropout_rate = dropout_rate
        self.merge = merge
        self.deterministic = deterministic
        layer_type = Bidirectional if bidirectional else RNN
        layers, n_in = [], input_size
        for _ in range(num_layers):
            layers.append(layer_type(cell, n_in, hidden_size, rngs=rngs, dtype=dtype))
            n_in = 2 * hidden_size if bidirectional else hidden_size
        self.layers = nnx.List(layers)
        self.rngs = rngs["dropout"].fork() if dropout_rate > 0 else nnx.data(None)

    @property
    def params(self) -> StackedParams:
        return StackedParams(tuple(layer.params for layer in self.layers))

    def __call__(
        self,
        xs: Array,
        *,
        lengths: Array | None = None,
        resets: Array | None = None,
        carry: tuple | None = None,
        reset_carry: tuple | None = None,
        return_carry: bool = False,
        deterministic: bool | None = None,
        rngs: nnx.Rngs | nnx.RngStream | None = None,
    ) -> Any:
        """Runs the layers over ``xs`` (*batch, T, input_size).

        Args:
          xs: inputs (*batch, T, input_size).
          lengths: optional int array of shape ``batch`` of valid lengths.
          carry: optional tuple of initial carries, one per layer.
          reset_carry: with ``resets``, an optional tuple of the carries each layer starts again
            from at a reset (`jaxrnn.stacked`).
          return_carry: also return the tuple of every layer's last carry, bottom first.
          deterministic: overrides ``self.deterministic`` for this call.
          rngs: overrides the constructor's dropout stream for this call.

        Returns:
          The top layer's outputs (*batch, T, H or 2H), or ``(carries, outputs)``.
        """
        deterministic = self.deterministic if deterministic is None else deterministic
        key = None
        if not deterministic and self.dropout_rate > 0 and len(self.layers) > 1:
            stream = rngs if rngs is not None else self.rngs
            key = stream["dropout"]() if isinstance(stream, nnx.Rngs) else stream()
        last, ys = stacked(
            self.cell,
            self.params,
            xs,
            lengths=lengths,
            resets=resets,
            carry=carry,
            reset_carry=reset_carry,
            dropout_rate=self.dropout_rate,
            dropout_key=key,
            merge=self.merge,
        )
        return (last, ys) if return_carry else ys


# ------------------------------------------------------------------------------ the ready models


def _is_variable(leaf) -> bool:
    return isinstance(leaf, nnx.Variable)


class _Model(nnx.Module):
    """A model whose weights are a functional params pytree, held as ``nnx.Param`` leaves.

    ``params`` rebuilds that pytree (the NamedTuples of `jaxrnn.models` or `jaxrnn.lm`) from the
    current values, so each model's ``__call__`` is the functional call on ``params``.
    """

    def __init__(self, params: Any):
        self.weights = nnx.data(jax.tree.map(nnx.Param, params))

    @property
    def params(self) -> Any:
        return jax.tree.map(lambda v: v[...], self.weights, is_leaf=_is_variable)


class Tagger(_Model):
    """Many-to-many, one output per input step: `jaxrnn.models.tagger_apply` as a module.

    Args:
      cell: a jaxrnn `Cell`.
      input_size: n_x, features per input step.
      hidden_size: H.
      num_classes: K, the logits per step.
      rngs: ``nnx.Rngs``; one key from ``rngs.params()`` goes to `jaxrnn.models.tagger_init`.
      dtype: the weights' dtype.

    Example:
      >>> model = jaxrnn.nnx.Tagger(jaxrnn.gru(), 3, 8, 5, rngs=nnx.Rngs(0))
      >>> model(jnp.ones((4, 10, 3)), lengths=jnp.array([10, 7, 1, 0])).shape
      (4, 10, 5)
    """

    def __init__(
        self,
        cell: Cell,
        input_size: int,
        hidden_size: int,
        num_classes: int,
        *,
        rngs: nnx.Rngs,
        dtype=jnp.float32,
    ):
        self.cell = cell
        super().__init__(
            models.tagger_init(cell, rngs.params(), input_size, hidden_size, num_classes, dtype)
        )

    def __call__(self, xs: Array, *, lengths: Array | None = None) -> Array:
        """Logits (*batch, T, K) of xs (*batch, T, input_size); zero-state start."""
        return models.tagger_apply(self.cell, self.params, xs, lengths=lengths)


class Classifier(_Model):
    """Many-to-one, one label per sequence: `jaxrnn.models.classifier_apply` as a module.

    Args:
      cell: a jaxrnn `Cell`.
      input_size: n_x, features per input step.
      hidden_size: H.
      num_classes: K, the logits per sequence.
      pool: ``"last"``, ``"mean"`` or ``"max"`` over the valid steps
        (`jaxrnn.models.pool_over_time`).
      rngs: ``nnx.Rngs``; one key from ``rngs.params()`` goes to `jaxrnn.models.classifier_init`.
      dtype: the weights' dtype.

    Example:
      >>> model = jaxrnn.nnx.Classifier(jaxrnn.lstm(), 3, 8, 2, rngs=nnx.Rngs(0))
      >>> model(jnp.ones((4, 10, 3)), lengths=jnp.array([10, 7, 1, 0])).shape
      (4, 2)
    """

    def __init__(
        self,
        cell: Cell,
        input_size: int,
        hidden_size: int,
        num_classes: int,
        *,
        pool: str = "last",
        rngs: nnx.Rngs,
        dtype=jnp.float32,
    ):
        self.cell = cell
        self.pool = pool
        super().__init__(
            models.classifier_init(cell, rngs.params(), input_size, hidden_size, num_classes, dtype)
        )

    def __call__(self, xs: Array, *, lengths: Array | None = None) -> Array:
        """Logits (*batch, K) of xs (*batch, T, input_size)."""
        return models.classifier_apply(self.cell, self.params, xs, lengths=lengths, pool=self.pool)


class Seq2Seq(_Model):
    """An encoder–decoder: `jaxrnn.models.seq2seq_apply` (training) and ``decode``.

    Args:
      cell: a jaxrnn `Cell`, the same type for encoder and decoder.
      in_vocab: the source vocabulary's size.
      out_vocab: the target vocabulary's size.
      hidden_size: H.
      embedding_size: E.
      bos_id: the decoder's first input, an id in [0, out_vocab), or −1 for the zero vector.
      rngs: ``nnx.Rngs``; one key from ``rngs.params()`` goes to `jaxrnn.models.seq2seq_init`.
      dtype: the weights' dtype.

    Example:
      >>> model = jaxrnn.nnx.Seq2Seq(jaxrnn.gru(), 6, 7, 16, 8, bos_id=6, rngs=nnx.Rngs(0))
      >>> src, tgt = jnp.zeros((2, 5), int), jnp.zeros((2, 4), int)
      >>> model(src, None, tgt, None).shape
      (2, 4, 7)
    """

    def __init__(
        self,
        cell: Cell,
        in_vocab: int,
        out_vocab: int,
        hidden_size: int,
        embedding_size: int,
        *,
        bos_id: int,
        rngs: nnx.Rngs,
        dtype=jnp.float32,
    ):
        self.cell = cell
        self.bos_id = bos_id
        key = rngs.params()
        params = models.seq2seq_init(
            cell, key, in_vocab, out_vocab, hidden_size, embedding_size, dtype=dtype
        )
        super().__init__(params)

    def __call__(
        self,
        src_ids: Array,
        src_lengths: Array | None,
        tgt_ids: Array,
        tgt_lengths: Array | None,
    ) -> Array:
        """Decoder logits (*batch, T_y, out_vocab) under teacher forcing."""
        return models.seq2seq_apply(
            self.cell,
            self.params,
            src_ids,
            src_lengths,
            tgt_ids,
            tgt_lengths,
            bos_id=self.bos_id,
        )

    def decode(
        self,
        src_ids: Array,
        src_lengths: Array | None,
        *,
        max_len: int,
        eos_id: int,
        key: Array | None = None,
        temperature: float = 1.0,
    ) -> tuple[Array, Array]:
        """``(ids (*batch, max_len), lengths (*batch,))``: `jaxrnn.models.seq2seq_decode`."""
        return models.seq2seq_decode(
            self.cell,
            self.params,
            src_ids,
            src_lengths,
            max_len=max_len,
            bos_id=self.bos_id,
            eos_id=eos_id,
            key=key,
            temperature=temperature,
        )


class LanguageModel(_Model):
    """A word- or character-level language model: `jaxrnn.lm.lm_apply` and ``sample``.

    Args:
      config: a `jaxrnn.lm.LMConfig` (vocabulary, cell name, sizes, layers, dropout).
      rngs: ``nnx.Rngs``; one key from ``rngs.params()`` goes to `jaxrnn.lm.init_lm`, and, with
        ``dropout_rate`` > 0, the ``dropout`` stream gives each training call its dropout key.
      deterministic: turns dropout off (evaluation); a call's own ``deterministic`` overrides it.
      dtype: the weights' dtype.

    Example:
      >>> config = jaxrnn.lm.LMConfig(vocab_size=28, hidden_size=16, embedding_size=8)
      >>> model = jaxrnn.nnx.LanguageModel(config, rngs=nnx.Rngs(0))
      >>> model(jnp.zeros((2, 5), int)).shape
      (2, 5, 28)
    """

    def __init__(self, config, *, rngs: nnx.Rngs, deterministic: bool = False, dtype=jnp.float32):
        self.config = config
        self.deterministic = deterministic
        super().__init__(lm.init_lm(rngs.params(), config, dtype))
        self.rngs = rngs["dropout"].fork() if config.dropout_rate > 0 else nnx.data(None)

    def __call__(
        self,
        input_ids: Array,
        *,
        lengths: Array | None = None,
        carry: tuple | None = None,
        return_carry: bool = False,
        deterministic: bool | None = None,
    ) -> Any:
        """Logits (*batch, T, vocab_size) of input ids (*batch, T) (−1 is the zero start input);
        with ``return_carry``, ``(carries, logits)``."""
        deterministic = self.deterministic if deterministic is None else deterministic
        key = None
        if not deterministic and self.config.dropout_rate > 0:
            key = self.rngs()
        last, logits = lm.lm_apply(
            self.params, self.config, input_ids, carry, lengths=lengths, dropout_key=key
        )
        return (last, logits) if return_carry else logits

    def sample(self, key: Array, **options: Any):
        """Novel sequences: `jaxrnn.lm.sample` with these weights (``num_samples``, ``max_len``,
        ``eos_id``, ``temperature``, ``top_k``, …)."""
        return lm.sample(self.params, self.config, key, **options)
