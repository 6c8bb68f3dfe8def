"""Keras 3's recurrent layers, given the same weights, compute what jaxrnn computes.

Keras is not needed: tests/fixtures/keras_*.npz hold each layer's weights, input, outputs and final
states, written by tests/fixtures/make_keras_fixtures.py (see there for how to run it).
"""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn

ATOL = 1e-5  # float32 throughout
FIXTURES = pathlib.Path(__file__).parent / "fixtures"

# fixture -> (cell name, jaxrnn cell, reset_after, bidirectional)
CASES = {
    "lstm": ("lstm", jaxrnn.lstm(), True, False),
    "gru_reset_after": ("gru", jaxrnn.gru(reset="after"), True, False),
    "gru_reset_before": ("gru", jaxrnn.gru(reset="before"), False, False),
    "simple_rnn": ("rnn", jaxrnn.rnn("tanh"), True, False),
    "bidirectional_lstm": ("lstm", jaxrnn.lstm(), True, True),
    "bidirectional_gru": ("gru", jaxrnn.gru(reset="after"), True, True),
}


def _load(name):
    with np.load(FIXTURES / f"keras_{name}.npz") as data:
        fixture = {key: data[key] for key in data.files}

    def numbered(prefix):
        count = sum(key.startswith(prefix) for key in fixture)
        return [fixture[f"{prefix}{i}"] for i in range(count)]

    return fixture, numbered("weights_"), numbered("initial_state_"), numbered("state_")


def _carry(cell_name, states):
    """Keras's states [h] or [h, c] of one direction as jaxrnn's carry."""
    return jaxrnn.LSTMState(*states) if cell_name == "lstm" else states[0]


def test_keras_fixtures_are_small_and_versioned():
    files = sorted(FIXTURES.glob("keras_*.npz"))
    assert {f.name for f in files} == {f"keras_{name}.npz" for name in CASES}
    assert sum(f.stat().st_size for f in files) < 200_000
    for name in CASES:
        fixture, _, _, _ = _load(name)
        assert str(fixture["keras_version"]).startswith("3.")
        assert str(fixture["backend"]) == "jax"


@pytest.mark.parametrize("name", CASES)
def test_keras_outputs_and_final_states_match(name):
    cell_name, cell, reset_after, bidirectional = CASES[name]
    fixture, weights, initial, states = _load(name)
    assert int(fixture["reset_after"]) in (-1, int(reset_after))
    params = jaxrnn.interop.params_from_keras(
        weights, cell_name, reset_after=reset_after, bidirectional=bidirectional
    )
    xs = jnp.asarray(fixture["x"])
    if bidirectional:
        last, ys = jaxrnn.bidirectional(cell, params, xs)
        half = len(states) // 2
        want = jaxrnn.layers.BidirectionalCarry(
            _carry(cell_name, states[:half]), _carry(cell_name, states[half:])
        )
    else:
        last, ys = jaxrnn.unroll(cell, params, xs, _carry(cell_name, initial))
        want = _carry(cell_name, states)
    np.testing.assert_allclose(ys, fixture["outputs"], rtol=0, atol=ATOL)
    jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=0, atol=ATOL), last, want)


@pytest.mark.parametrize("name", CASES)
def test_keras_weights_round_trip_exactly(name):
    cell_name, _, reset_after, bidirectional = CASES[name]
    _, weights, _, _ = _load(name)
    params = jaxrnn.interop.params_from_keras(
        weights, cell_name, reset_after=reset_after, bidirectional=bidirectional
    )
    back = jaxrnn.interop.params_to_keras(params, reset_after=reset_after)
    assert len(back) == len(weights)
    for got, want in zip(back, weights, strict=True):
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("reset", ["before", "after"])
def test_keras_gru_update_gate_is_negated_and_reordered(reset):
    """jaxrnn (r, u, c̃) blocks are Keras's (r, −z, h), checked block by block."""
    cell = jaxrnn.gru(reset=reset)
    params = jax.tree.map(lambda p: p + 0.25, cell.init(jax.random.key(0), 2, 3))
    kernel, recurrent, bias = jaxrnn.interop.params_to_keras(params, reset_after=reset == "after")
    z, r, h = np.split(kernel, 3, axis=-1)
    w_r, w_u, w_c = np.split(np.asarray(params.w_x), 3, axis=-1)
    np.testing.assert_array_equal(z, -w_u)
    np.testing.assert_array_equal(r, w_r)
    np.testing.assert_array_equal(h, w_c)
    assert bias.shape == ((2, 9) if reset == "after" else (9,))


def test_keras_from_jaxrnn_folds_the_two_biases():
    """jaxrnn -> Keras (one bias) -> jaxrnn: same outputs, the bias sum in b_x, b_h zero."""
    cell = jaxrnn.lstm()
    params = jax.tree.map(lambda p: p + 0.1, cell.init(jax.random.key(1), 4, 6))
    weights = jaxrnn.interop.params_to_keras(params)
    np.testing.assert_allclose(weights[2], params.b_x + params.b_h, rtol=0, atol=0)
    back = jaxrnn.interop.params_from_keras(weights, "lstm")
    np.testing.assert_array_equal(back.b_h, np.zeros(24, np.float32))
    xs = jax.random.normal(jax.random.key(2), (3, 5, 4), jnp.float32)
    np.testing.assert_allclose(
        jaxrnn.unroll(cell, back, xs)[1], jaxrnn.unroll(cell, params, xs)[1], rtol=0, atol=1e-6
    )


def test_keras_without_bias():
    _, weights, _, _ = _load("gru_reset_after")
    params = jaxrnn.interop.params_from_keras(weights[:2], "gru")
    np.testing.assert_array_equal(params.b_x, np.zeros(18, np.float32))
    np.testing.assert_array_equal(params.b_h, np.zeros(18, np.float32))


def test_keras_converters_reject_bad_input():
    _, lstm_weights, _, _ = _load("lstm")
    _, gru_weights, _, _ = _load("gru_reset_after")
    with pytest.raises(jaxrnn.InputError, match=r"list of 3 arrays .* got 4"):
        jaxrnn.interop.params_from_keras(lstm_weights + [lstm_weights[2]], "lstm")
    with pytest.raises(jaxrnn.InputError, match=r"list of 6 arrays .* per direction .* got 3"):
        jaxrnn.interop.params_from_keras(lstm_weights, "lstm", bidirectional=True)
    with pytest.raises(
        jaxrnn.InputError, match=r"weights\[1\] \(recurrent_kernel\) of shape \(H, 3·H\)"
    ):
        jaxrnn.interop.params_from_keras(lstm_weights, "gru")
    with pytest.raises(jaxrnn.InputError, match=r"weights\[2\] \(bias\) of shape \(18,\), got \(2"):
        jaxrnn.interop.params_from_keras(gru_weights, "gru", reset_after=False)
    with pytest.raises(jaxrnn.InputError, match=r"weights\[0\] \(kernel\) of shape \(D, 24\)"):
        jaxrnn.interop.params_from_keras([lstm_weights[0].T, *lstm_weights[1:]], "lstm")
    with pytest.raises(jaxrnn.InputError, match="expected cell 'lstm', 'gru' or 'rnn'"):
        jaxrnn.interop.params_from_keras(lstm_weights, "LSTM")
    gru_params = jaxrnn.interop.params_from_keras(gru_weights, "gru")
    inferred = jaxrnn.interop.params_to_keras(gru_params)  # the params say which GRU they are
    explicit = jaxrnn.interop.params_to_keras(gru_params, reset_after=True)
    for got, want in zip(inferred, explicit, strict=True):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(
        jaxrnn.InputError, match="expected reset_after=True for ResetAfterGRUParams"
    ):
        jaxrnn.interop.params_to_keras(gru_params, reset_after=False)
    simplified = jaxrnn.simplified_gru().init(jax.random.key(0), 2, 3)
    with pytest.raises(jaxrnn.InputError, match="simplified GRU has no Keras cell"):
        jaxrnn.interop.params_to_keras(simplified, reset_after=True)
    peephole = jaxrnn.lstm(peephole=True).init(jax.random.key(0), 2, 3)
    with pytest.raises(jaxrnn.InputError, match="without peepholes"):
        jaxrnn.interop.params_to_keras(peephole)
    with pytest.raises(jaxrnn.InputError, match="expected params of type RNNParams"):
        jaxrnn.interop.params_to_keras({"w_x": 1})
