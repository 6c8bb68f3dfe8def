"""bfloat16 and float16: supported end to end, within stated tolerances of the float32 computation.

The policy (README, "Reliability"): params, inputs and carry share one dtype and each step computes
in it; XLA accumulates the matmuls of bfloat16/float16 operands in float32 before rounding; losses
upcast low-precision logits to float32 (the native CPU kernels keep their gates and carry in
float32 inside the call: closer still). The reference here is the same computation in float32 on
the same (rounded) params and inputs, so the differences measured are the compute precision alone.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn

CELLS = {
    "rnn": jaxrnn.rnn(),
    "simplified_gru": jaxrnn.simplified_gru(),
    "gru": jaxrnn.gru(),
    "lstm": jaxrnn.lstm(),
    "lstm_peephole": jaxrnn.lstm(peephole=True),
    "min_gru": jaxrnn.min_gru(),
    "min_lstm": jaxrnn.min_lstm(),
}
# Stated tolerances over T = 100 steps, H = 32: the largest |h − h_float32| of any output, and the
# largest relative L2 error of any gradient leaf. float16 has 3 more mantissa bits than bfloat16.
TOLERANCE = {"bfloat16": (0.05, 0.1), "float16": (0.01, 0.02)}


def _run(cell, params, xs):
    def loss(params, xs):
        _, hs = jaxrnn.unroll(cell, params, xs)
        return jnp.mean(hs.astype(jnp.float32) ** 2), hs

    return jax.jit(jax.value_and_grad(loss, has_aux=True))(params, xs)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("name", CELLS)
def test_low_precision_unroll_and_grads_within_tolerance_of_float32(name, dtype):
    cell = CELLS[name]
    params = cell.init(jax.random.key(0), input_size=8, hidden_size=32, dtype=dtype)
    xs = jax.random.normal(jax.random.key(1), (4, 100, 8)).astype(dtype)
    (loss, hs), grads = _run(cell, params, xs)
    assert hs.dtype == jnp.dtype(dtype)
    assert all(g.dtype == jnp.dtype(dtype) for g in jax.tree.leaves(grads))

    upcast = jax.tree.map(lambda a: a.astype(jnp.float32), (params, xs))
    (loss32, hs32), grads32 = _run(cell, *upcast)
    h_tol, g_tol = TOLERANCE[dtype]
    h_err = float(jnp.max(jnp.abs(hs.astype(jnp.float32) - hs32)))
    assert 0 < h_err < h_tol  # > 0: the computation really ran in low precision
    assert abs(float(loss) - float(loss32)) < h_tol * float(loss32)
    for g, g32 in zip(jax.tree.leaves(grads), jax.tree.leaves(grads32), strict=True):
        relative = jnp.linalg.norm(g.astype(jnp.float32) - g32) / jnp.linalg.norm(g32)
        assert float(relative) < g_tol


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("name", ["rnn", "gru", "lstm", "min_gru"])
def test_low_precision_init_is_the_rounded_float32_init(name, dtype):
    cell = CELLS[name]
    low = cell.init(jax.random.key(3), input_size=5, hidden_size=6, dtype=dtype)
    wide = cell.init(jax.random.key(3), input_size=5, hidden_size=6)
    for a, b in zip(jax.tree.leaves(low), jax.tree.leaves(wide), strict=True):
        assert a.dtype == jnp.dtype(dtype)
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b.astype(dtype)))


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_losses_accumulate_low_precision_logits_in_float32(dtype):
    key_logits, key_labels = jax.random.split(jax.random.key(0))
    logits = (4 * jax.random.normal(key_logits, (3, 500, 50))).astype(dtype)
    labels = jax.random.randint(key_labels, (3, 500), 0, 50)
    got = jaxrnn.softmax_cross_entropy(logits, labels, reduce_time="sum")
    assert got.dtype == jnp.float32
    expected = jaxrnn.softmax_cross_entropy(logits.astype(jnp.float32), labels, reduce_time="sum")
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    # Summing 500 steps in the logits' own dtype would be far off; float32 is not.
    in_own_dtype = -jnp.take_along_axis(
        jax.nn.log_softmax(logits, axis=-1), labels[..., None], axis=-1
    )[..., 0].sum(-1)
    assert float(jnp.max(jnp.abs(in_own_dtype.astype(jnp.float32) - expected))) > 1e-3

    binary = (jax.random.uniform(key_labels, (3, 500, 50)) > 0.5).astype(dtype)
    got = jaxrnn.sigmoid_cross_entropy(logits, binary)
    assert got.dtype == jnp.float32
    expected = jaxrnn.sigmoid_cross_entropy(logits.astype(jnp.float32), binary.astype(jnp.float32))
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_bfloat16_language_model_trains_like_float32():
    config = jaxrnn.lm.LMConfig(vocab_size=12, cell_name="lstm", hidden_size=32, embedding_size=8)
    targets = (jnp.arange(30) % 12)[None].repeat(16, 0)  # a cycle: learnable in a few steps
    inputs = jaxrnn.lm.teacher_forcing_inputs(targets)
    optimizer = jaxrnn.make_optimizer(1e-2)

    def train(dtype):
        params = jaxrnn.lm.init_lm(jax.random.key(0), config, dtype)
        step = jaxrnn.make_train_step(
            lambda p: jaxrnn.lm.lm_loss(p, config, inputs, targets)[0], optimizer
        )
        opt_state = optimizer.init(params)
        losses = []
        for _ in range(60):
            params, opt_state, metrics = step(params, opt_state)
            assert bool(metrics.finite)
            losses.append(float(metrics.loss))
        return np.array(losses), params

    losses16, params16 = train(jnp.bfloat16)
    losses32, _ = train(jnp.float32)
    assert all(leaf.dtype == jnp.bfloat16 for leaf in jax.tree.leaves(params16))
    assert losses16[-1] < 0.5 * losses16[0]  # it learns
    assert abs(losses16[-1] - losses32[-1]) < 0.1 * losses32[0]  # and about as well as float32
