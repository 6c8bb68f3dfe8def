"""Autoregressive decoding: draw a token, feed it back, stop at ⟨EOS⟩. One loop for every model.

    token⟨0⟩ = first
    carry, logits⟨t⟩ = step(carry, token⟨t−1⟩)        the model: embed, recurrent step(s), head
    token⟨t⟩ ~ softmax(logits⟨t⟩ / temperature)         argmax where temperature is 0

`jaxrnn.models.generate` (one-to-many), `jaxrnn.models.seq2seq_decode` (the decoder of an
encoder–decoder) and `jaxrnn.lm.sample` (the language model) are this loop with their own
``step``. The temperature and ``top_k`` are traced values: a new temperature runs the same
compiled program.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrnn._checks import check_int_in, fail, is_number
from jaxrnn.cells import Array

Feed = Literal["sample", "argmax"]


class Decoded(NamedTuple):
    """Drawn sequences: ``ids`` (*batch, max_len) int32, ⟨EOS⟩ at and after each one's first
    ⟨EOS⟩; ``lengths`` (*batch,) int32, the tokens up to and including the first ⟨EOS⟩ (max_len
    where there is none, or without an ⟨EOS⟩ id)."""

    ids: Array
    lengths: Array


def host_scalar(value) -> Any:
    """A concrete 0-d JAX or NumPy array as its NumPy scalar (``jnp.int32(3)`` -> ``np.int32(3)``),
    which the checks of Python numbers accept; anything else, a tracer included, as it is."""
    concrete = not isinstance(value, jax.core.Tracer)
    if concrete and isinstance(value, jax.Array | np.ndarray) and value.ndim == 0:
        return np.asarray(value)[()]
    return value


def check_temperature(fn: str, temperature) -> Any:
    """A temperature ≥ 0: a number or concrete 0-d array (checked) or a traced scalar (used as it
    is)."""
    if isinstance(temperature, jax.core.Tracer):
        return temperature
    temperature = host_scalar(temperature)
    if not is_number(temperature) or not temperature >= 0:
        fail(fn, f"expected temperature to be a number >= 0, got {temperature!r}")
    return float(temperature)


def check_top_k(fn: str, top_k, vocab_size: int) -> Any:
    """None, an int or concrete 0-d int array in [1, V] (checked), or a traced int (used as it
    is)."""
    if top_k is None or isinstance(top_k, jax.core.Tracer):
        return top_k
    return check_int_in(fn, "top_k", host_scalar(top_k), 1, vocab_size + 1)


def draw(key: Array | None, logits: Array, temperature=1.0, top_k=None, never=None) -> Array:
    """A token id from logits (*batch, V): argmax with no key or at temperature 0, else a draw from
    softmax(logits / temperature) among the ``top_k`` most likely tokens (all if None), never one
    where the bool mask ``never`` (V,) is true. Returns (*batch,) int32."""
    if never is not None:
        logits = jnp.where(never, -jnp.inf, logits)
    greedy = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    if key is None:
        return greedy
    if isinstance(temperature, int | float) and temperature == 0:
        return greedy
    positive = temperature > 0
    scaled = logits / jnp.where(positive, temperature, 1).astype(logits.dtype)
    if top_k is not None:
        vocab_size = logits.shape[-1]
        kth = jnp.take(jnp.sort(scaled, axis=-1), vocab_size - top_k, axis=-1)
        scaled = jnp.where(scaled < kth[..., None], -jnp.inf, scaled)
    drawn = jax.random.categorical(key, scaled, axis=-1).astype(jnp.int32)
    return jnp.where(positive, drawn, greedy)


def decode(
    step: Callable[[Any, Array], tuple[Any, Array]],
    carry: Any,
    first: Array,
    key: Array | None,
    *,
    max_len: int,
    eos_id: int | None = None,
    temperature=1.0,
    top_k=None,
    never: Array | None = None,
    feed: Feed = "sample",
) -> Decoded:
    """Runs ``step`` for ``max_len`` steps, each fed the token drawn at the step before.

    Args:
      step: ``(carry, tokens (*batch,) int32) -> (carry, logits (*batch, V))``.
      carry: the model's carry before the first step.
      first: (*batch,) int ids, the first input (−1 for the zero input where the model allows).
      key: a PRNG key (one per step is split from it), or None for greedy decoding.
      max_len: the number of steps, a Python int.
      eos_id: the id after which an example is done and only repeats it; None never stops.
      temperature: as in `draw`; may be traced.
      top_k: as in `draw`; may be traced.
      never: as in `draw`.
      feed: what the next step reads: the drawn token (``"sample"``) or the argmax of the logits
        (``"argmax"``, the course's music generator).

    Returns:
      `Decoded`.
    """
    stop = -1 if eos_id is None else eos_id
    first = jnp.asarray(first, jnp.int32)

    def body(state, key_t):
        carry, token, done = state
        carry, logits = step(carry, token)
        drawn = draw(key_t, logits, temperature, top_k, never)
        drawn = jnp.where(done, jnp.int32(max(stop, 0)), drawn)
        fed = drawn if feed == "sample" else jnp.argmax(logits, axis=-1).astype(jnp.int32)
        return (carry, fed, done | (drawn == stop)), (drawn, done)

    keys = None if key is None else jax.random.split(key, max_len)
    init = (carry, first, jnp.zeros(first.shape, bool))
    _, (ids, was_done) = jax.lax.scan(body, init, keys, length=max_len)
    lengths = jnp.sum(~was_done, axis=0).astype(jnp.int32)
    return Decoded(jnp.moveaxis(ids, 0, -1), lengths)
