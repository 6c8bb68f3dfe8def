"""The Flax NNX modules against the functional API, under nnx.jit and nnx.grad, and against flax."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxrnn
from jaxrnn import nnx as jnnx

CELLS = {
    "rnn": jaxrnn.rnn(),
    "gru": jaxrnn.gru(),
    "lstm": jaxrnn.lstm(),
    "lstm_peephole": jaxrnn.lstm(peephole=True),
}
LENGTHS = jnp.array([6, 3, 0, 1])  # full, partial, empty and one step, over T = 6
TOL = dict(rtol=1e-6, atol=1e-6)


def inputs(batch=4, time=6, features=3, seed=1):
    return jax.random.normal(jax.random.key(seed), (batch, time, features), jnp.float32)


def assert_padding_zero(ys, lengths):
    padded = np.arange(ys.shape[1])[None, :] >= np.asarray(lengths)[:, None]
    np.testing.assert_array_equal(np.asarray(ys)[padded], 0.0)


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("reverse", [False, True])
def test_rnn_matches_unroll(name, reverse):
    cell, xs = CELLS[name], inputs()
    model = jnnx.RNN(cell, 3, 5, rngs=nnx.Rngs(0))
    if name == "lstm_peephole":  # initialised to zero: give them values that matter
        model.peephole[...] = jax.random.normal(jax.random.key(4), (3, 5), jnp.float32)
    carry0 = jax.tree.map(
        lambda z: jax.random.normal(jax.random.key(2), z.shape, z.dtype),
        cell.init_carry(model.params, (4,)),
    )
    got = model(xs, lengths=LENGTHS, carry=carry0, reverse=reverse, return_carry=True)
    want = jaxrnn.unroll(cell, model.params, xs, carry0, lengths=LENGTHS, reverse=reverse)
    chex.assert_trees_all_close(got, want, **TOL)
    assert_padding_zero(got[1], LENGTHS)


def test_rnn_params_are_nnx_params_of_the_cell_init():
    model = jnnx.RNN(jaxrnn.lstm(peephole=True), 3, 5, rngs=nnx.Rngs(0))
    assert isinstance(model.params, jaxrnn.LSTMParams)
    assert isinstance(model.w_x, nnx.Param) and isinstance(model.peephole, nnx.Param)
    state = nnx.state(model, nnx.Param)
    assert sorted(state.keys()) == ["b_h", "b_x", "peephole", "w_h", "w_x"]
    # the cell's own init: forget-gate input bias 1, the rest 0
    np.testing.assert_array_equal(model.params.b_x[5:10], 1.0)
    assert not hasattr(jnnx.RNN(jaxrnn.gru(), 3, 5, rngs=nnx.Rngs(0)), "peephole")


@pytest.mark.parametrize("merge", ["concat", "sum", None])
def test_bidirectional_matches_functional(merge):
    cell, xs = jaxrnn.gru(), inputs()
    model = jnnx.Bidirectional(cell, 3, 5, merge=merge, rngs=nnx.Rngs(0))
    assert isinstance(model.params, jaxrnn.BidirectionalParams)
    got = model(xs, lengths=LENGTHS, return_carry=True)
    want = jaxrnn.bidirectional(cell, model.params, xs, lengths=LENGTHS, merge=merge)
    chex.assert_trees_all_close(got, want, **TOL)
    assert not np.allclose(model.params.forward.w_x, model.params.backward.w_x)


STACKED = jax.jit(jaxrnn.stacked, static_argnums=0, static_argnames="dropout_rate")


@functools.partial(nnx.jit, static_argnames="deterministic")
def run_stacked(model, xs, rngs=None, deterministic=None):
    return model(xs, lengths=LENGTHS, return_carry=True, rngs=rngs, deterministic=deterministic)


def test_stacked_matches_functional():
    cell, xs = jaxrnn.lstm(), inputs()
    model = jnnx.StackedRNN(cell, 3, 5, 2, bidirectional=True, dropout_rate=0.5, rngs=nnx.Rngs(0))
    params = model.params
    assert isinstance(params, jaxrnn.StackedParams) and len(params.layers) == 2
    no_dropout = STACKED(cell, params, xs, lengths=LENGTHS)

    # training mode: the key comes from the "dropout" stream
    got = run_stacked(model, xs, rngs=nnx.Rngs(dropout=7))
    key = nnx.Rngs(dropout=7)["dropout"]()
    want = STACKED(cell, params, xs, lengths=LENGTHS, dropout_rate=0.5, dropout_key=key)
    chex.assert_trees_all_close(got, want, **TOL)
    assert not np.allclose(got[1], no_dropout[1])
    assert not np.allclose(run_stacked(model, xs)[1], run_stacked(model, xs)[1])  # stream advances

    # inference: model.eval() sets deterministic=True, which turns dropout off
    model.eval()
    chex.assert_trees_all_close(run_stacked(model, xs), no_dropout, **TOL)
    model.train()
    assert not model.deterministic


def test_modules_under_nnx_jit():
    xs = inputs()
    models = [
        jnnx.RNN(jaxrnn.lstm(), 3, 5, rngs=nnx.Rngs(0)),
        jnnx.Bidirectional(jaxrnn.lstm(), 3, 5, rngs=nnx.Rngs(0)),
        jnnx.StackedRNN(
            jaxrnn.gru(), 3, 5, 2, dropout_rate=0.5, deterministic=True, rngs=nnx.Rngs(0)
        ),
    ]
    apply = nnx.jit(lambda model, xs, lengths: model(xs, lengths=lengths))
    for model in models:
        chex.assert_trees_all_close(apply(model, xs, LENGTHS), model(xs, lengths=LENGTHS), **TOL)


def test_nnx_grad_equals_functional_grad():
    cell, xs = jaxrnn.lstm(), inputs()
    model = jnnx.RNN(cell, 3, 5, rngs=nnx.Rngs(0))

    def loss_fn(ys):
        return jnp.sum(jnp.sin(ys))

    grads = nnx.grad(lambda m: loss_fn(m(xs, lengths=LENGTHS)))(model)
    want = jax.grad(lambda p: loss_fn(jaxrnn.unroll(cell, p, xs, lengths=LENGTHS)[1]))(model.params)
    for field in ("w_x", "w_h", "b_x", "b_h"):
        np.testing.assert_allclose(grads[field][...], getattr(want, field), rtol=1e-5, atol=1e-6)


class Tagger(nnx.Module):
    def __init__(self, rngs):
        self.rnn = jnnx.StackedRNN(jaxrnn.gru(), 2, 8, 2, dropout_rate=0.1, rngs=rngs)
        self.head = nnx.Linear(8, 1, rngs=rngs)

    def __call__(self, xs, lengths):
        return self.head(self.rnn(xs, lengths=lengths))[..., 0]


def test_training_with_nnx_optimizer_reduces_loss():
    # tag each step with x1⟨t⟩ + x2⟨t−1⟩: needs the memory of the previous step
    xs = jax.random.normal(jax.random.key(3), (16, 8, 2), jnp.float32)
    targets = xs[:, :, 0] + jnp.concatenate([jnp.zeros((16, 1)), xs[:, :-1, 1]], axis=1)
    lengths = jnp.full((16,), 8)
    model = Tagger(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(2e-2), wrt=nnx.Param)

    def loss_fn(model):
        return jnp.mean((model(xs, lengths) - targets) ** 2)

    evaluate = nnx.jit(loss_fn)

    @nnx.jit
    def train_step(model, optimizer):
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    model.eval()
    before = evaluate(model)
    model.train()
    for _ in range(40):
        train_step(model, optimizer)
    model.eval()
    assert evaluate(model) < 0.5 * before


def lstm_params_from_flax(cell: nnx.LSTMCell) -> jaxrnn.LSTMParams:
    """Gates (i, f, g, o) = jaxrnn's (u, f, c̃, o); flax has only recurrent-side biases."""
    inputs_side = [cell.ii, cell.if_, cell.ig, cell.io]
    recurrent = [cell.hi, cell.hf, cell.hg, cell.ho]
    b_h = jnp.concatenate([dense.bias[...] for dense in recurrent])
    return jaxrnn.LSTMParams(
        w_x=jnp.concatenate([dense.kernel[...] for dense in inputs_side], axis=1),
        w_h=jnp.concatenate([dense.kernel[...] for dense in recurrent], axis=1),
        b_x=jnp.zeros_like(b_h),
        b_h=b_h,
    )


def test_lstm_matches_flax_nnx_rnn_lstmcell():
    xs = inputs()
    flax_cell = nnx.LSTMCell(3, 5, bias_init=nnx.initializers.normal(1.0), rngs=nnx.Rngs(0))
    flax_rnn = nnx.RNN(flax_cell, return_carry=True)
    model = jnnx.RNN(jaxrnn.lstm(), 3, 5, rngs=nnx.Rngs(1))
    for field, value in lstm_params_from_flax(flax_cell)._asdict().items():
        if value is not None:
            getattr(model, field)[...] = value

    (c, h), ys_flax = flax_rnn(xs)
    last, ys = model(xs, return_carry=True)
    chex.assert_trees_all_close(ys, ys_flax, **TOL)
    chex.assert_trees_all_close(last, jaxrnn.LSTMState(h, c), **TOL)

    # padded steps: flax runs the cell over the padding, jaxrnn gives zeros; carries agree
    (c, h), ys_flax = flax_rnn(xs, seq_lengths=jnp.array([6, 3, 2, 1]))
    last, ys = model(xs, lengths=jnp.array([6, 3, 2, 1]), return_carry=True)
    chex.assert_trees_all_close(ys_flax, model(xs), **TOL)  # as if unpadded
    assert_padding_zero(ys, jnp.array([6, 3, 2, 1]))
    chex.assert_trees_all_close(last, jaxrnn.LSTMState(h, c), **TOL)


def test_stacked_rejects_bad_arguments():
    with pytest.raises(jaxrnn.InputError, match="StackedRNN: expected num_layers"):
        jnnx.StackedRNN(jaxrnn.gru(), 3, 5, 0, rngs=nnx.Rngs(0))
    with pytest.raises(jaxrnn.InputError, match=r"dropout_rate a number in \[0, 1\), got 1.0"):
        jnnx.StackedRNN(jaxrnn.gru(), 3, 5, 2, dropout_rate=1.0, rngs=nnx.Rngs(0))


def test_layers_pass_resets_and_reset_carry_to_the_functional_calls():
    """A rollout that goes on from the last one's carry and starts each episode from zeros."""
    cell, xs = jaxrnn.gru(), inputs()
    resets = np.zeros((4, 6), bool)
    resets[0, 3] = resets[1, 1] = resets[3, 0] = True
    rnn = jnnx.RNN(cell, 3, 5, rngs=nnx.Rngs(0))
    carry = jax.random.normal(jax.random.key(2), (4, 5), jnp.float32)
    zeros = jnp.zeros((4, 5), jnp.float32)
    got = rnn(xs, resets=resets, carry=carry, reset_carry=zeros, return_carry=True)
    want = jaxrnn.unroll(cell, rnn.params, xs, carry, resets=resets, reset_carry=zeros)
    chex.assert_trees_all_close(got, want, **TOL)
    after_reset = jaxrnn.unroll(cell, rnn.params, xs[0:1, 3:])[1]
    np.testing.assert_allclose(got[1][0:1, 3:], after_reset, **TOL)  # the episode alone

    bi = jnnx.Bidirectional(cell, 3, 5, rngs=nnx.Rngs(1))
    pair = (carry, carry)
    got = bi(xs, lengths=LENGTHS, resets=resets, carry=pair, reset_carry=(zeros, zeros))
    want = jaxrnn.bidirectional(
        cell, bi.params, xs, lengths=LENGTHS, resets=resets, carry=pair, reset_carry=(zeros, zeros)
    )[1]
    chex.assert_trees_all_close(got, want, **TOL)

    deep = jnnx.StackedRNN(cell, 3, 5, 2, rngs=nnx.Rngs(2))
    got = deep(xs, resets=resets, carry=(carry, carry), reset_carry=(zeros, None))
    want = jaxrnn.stacked(
        cell, deep.params, xs, resets=resets, carry=(carry, carry), reset_carry=(zeros, None)
    )[1]
    chex.assert_trees_all_close(got, want, **TOL)
