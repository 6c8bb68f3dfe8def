"""The one decode loop: draws against their definition, traced temperature and top_k, one program
for every temperature, and the three models that decode through it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn
from jaxrnn import lm as lm_lib
from jaxrnn.decode import decode, draw

LOGITS = jnp.asarray(np.random.default_rng(0).normal(size=(4, 7)), jnp.float32)


@pytest.mark.parametrize("temperature", [0.0, jnp.float32(0.0)])
def test_temperature_zero_draws_the_argmax_python_or_traced(temperature):
    got = draw(jax.random.key(0), LOGITS, temperature)
    np.testing.assert_array_equal(got, np.argmax(LOGITS, axis=-1))


def test_a_draw_is_categorical_of_logits_over_temperature():
    key = jax.random.key(3)
    got = jax.jit(draw)(key, LOGITS, jnp.float32(0.7))
    want = jax.random.categorical(key, LOGITS / 0.7, axis=-1)
    np.testing.assert_array_equal(got, want)


def test_top_k_and_never_restrict_the_draws():
    keys = jax.random.split(jax.random.key(1), 400)
    never = jnp.zeros(7, bool).at[int(np.argmax(LOGITS[0]))].set(True)
    drawn = jax.vmap(lambda k: draw(k, LOGITS[0], 2.0, jnp.int32(3), never))(keys)
    allowed = set(np.argsort(np.where(never, -np.inf, LOGITS[0]))[-3:].tolist())
    assert set(np.asarray(drawn).tolist()) == allowed  # the 3 most likely of those allowed
    top_1 = jax.vmap(lambda k: draw(k, LOGITS[0], 5.0, 1))(keys)
    assert set(np.asarray(top_1).tolist()) == {int(np.argmax(LOGITS[0]))}


def test_decode_stops_at_eos_and_feeds_back_what_it_drew():
    # a model whose logits favour token (previous + 1) mod 5, with 4 as ⟨EOS⟩
    def step(count, token):
        return count + 1, 20.0 * jax.nn.one_hot((token + 1) % 5, 5)

    ids, lengths = decode(
        step, jnp.zeros(2, jnp.int32), jnp.array([0, 2]), None, max_len=6, eos_id=4
    )
    np.testing.assert_array_equal(ids, [[1, 2, 3, 4, 4, 4], [3, 4, 4, 4, 4, 4]])
    np.testing.assert_array_equal(lengths, [4, 2])


def test_lm_sample_compiles_once_for_every_temperature_and_top_k():
    config = lm_lib.LMConfig(vocab_size=6, cell_name="gru", hidden_size=8)
    params = lm_lib.init_lm(jax.random.key(0), config)
    before = lm_lib._sample._cache_size()
    samples = {}
    for temperature, top_k in [(0.5, None), (1.0, 3), (1.5, 2), (0.0, None)]:
        samples[temperature] = lm_lib.sample(
            params,
            config,
            jax.random.key(1),
            num_samples=3,
            max_len=5,
            temperature=temperature,
            top_k=top_k,
            eos_id=0,
        )
    assert lm_lib._sample._cache_size() - before == 1
    greedy = samples[0.0].ids
    assert (greedy == greedy[:1]).all()  # at temperature 0 every sample is the same


def test_generate_takes_a_traced_temperature_under_jit():
    cell = jaxrnn.gru()
    params = jaxrnn.models.generator_init(cell, jax.random.key(0), num_classes=5, hidden_size=8)
    run = jax.jit(
        lambda t: jaxrnn.models.generate(cell, params, jax.random.key(1), steps=6, temperature=t)
    )
    np.testing.assert_array_equal(
        run(1.3), jaxrnn.models.generate(cell, params, jax.random.key(1), steps=6, temperature=1.3)
    )
    np.testing.assert_array_equal(
        run(0.0), jaxrnn.models.generate(cell, params, jax.random.key(1), steps=6, temperature=0.0)
    )


def test_temperature_and_top_k_may_be_concrete_jax_or_numpy_scalars():
    config = lm_lib.LMConfig(vocab_size=6, cell_name="gru", hidden_size=8)
    params = lm_lib.init_lm(jax.random.key(0), config)
    options = dict(num_samples=3, max_len=5, eos_id=0)
    want = lm_lib.sample(params, config, jax.random.key(1), temperature=0.7, top_k=3, **options)
    for temperature, top_k in [(jnp.float32(0.7), jnp.int32(3)), (np.float32(0.7), np.int64(3))]:
        got = lm_lib.sample(
            params, config, jax.random.key(1), temperature=temperature, top_k=top_k, **options
        )
        np.testing.assert_array_equal(got.ids, want.ids)
    with pytest.raises(jaxrnn.InputError, match=r"expected temperature to be a number >= 0, got"):
        lm_lib.sample(params, config, jax.random.key(1), temperature=jnp.float32(-1.0))
    with pytest.raises(jaxrnn.InputError, match=r"expected top_k to be an int in \[1, 7\), got 7"):
        lm_lib.sample(params, config, jax.random.key(1), top_k=jnp.int32(7))
