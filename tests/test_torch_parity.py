"""PyTorch's nn.RNN, nn.GRU and nn.LSTM, given the same weights, compute what jaxrnn computes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import jaxrnn

torch.set_num_threads(1)
ATOL = 1e-5  # float32 throughout

# (torch module factory, jaxrnn cell, converter)
PAIRS = {
    "rnn_tanh": (
        lambda d, h, **kw: torch.nn.RNN(d, h, nonlinearity="tanh", **kw),
        jaxrnn.rnn("tanh"),
        jaxrnn.rnn_params_from_torch,
    ),
    "rnn_relu": (
        lambda d, h, **kw: torch.nn.RNN(d, h, nonlinearity="relu", **kw),
        jaxrnn.rnn("relu"),
        jaxrnn.rnn_params_from_torch,
    ),
    "gru": (torch.nn.GRU, jaxrnn.gru(reset="after"), jaxrnn.gru_params_from_torch),
    "lstm": (torch.nn.LSTM, jaxrnn.lstm(), jaxrnn.lstm_params_from_torch),
}


def _torch_module(kind, input_size, hidden_size, seed=0, **kwargs):
    torch.manual_seed(seed)
    module = PAIRS[kind][0](input_size, hidden_size, batch_first=True, **kwargs)
    with torch.no_grad():  # biases too, so that both bias vectors are exercised
        for p in module.parameters():
            p.uniform_(-0.5, 0.5)
    return module


def _inputs(shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _final_state(kind, torch_state, index):
    """Torch's (h_n[, c_n]) at layer/direction ``index`` in jaxrnn's carry type."""
    if kind == "lstm":
        h_n, c_n = torch_state
        return jaxrnn.LSTMState(h_n[index].numpy(), c_n[index].numpy())
    return torch_state[index].numpy()


def _assert_close(got, want):
    for g, w in zip(np.atleast_1d(got), np.atleast_1d(want), strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=0, atol=ATOL)


@pytest.mark.parametrize("kind", PAIRS)
def test_torch_single_layer_outputs_and_final_state_match(kind):
    module = _torch_module(kind, 6, 9)
    x = _inputs((4, 11, 6))
    with torch.no_grad():
        out, state = module(torch.from_numpy(x))
    _, cell, convert = PAIRS[kind]
    params = convert(module.state_dict())
    carry, ys = jaxrnn.unroll(cell, params, jnp.asarray(x))
    np.testing.assert_allclose(ys, out.numpy(), rtol=0, atol=ATOL)
    _assert_close(carry, _final_state(kind, state, 0))


@pytest.mark.parametrize("kind", PAIRS)
def test_torch_given_initial_state_matches(kind):
    module = _torch_module(kind, 3, 5)
    x = _inputs((2, 7, 3))
    h0 = _inputs((1, 2, 5), seed=2)
    c0 = _inputs((1, 2, 5), seed=3)
    torch_state = (torch.from_numpy(h0), torch.from_numpy(c0)) if kind == "lstm" else None
    carry0 = jaxrnn.LSTMState(h0[0], c0[0]) if kind == "lstm" else h0[0]
    with torch.no_grad():
        out, state = module(torch.from_numpy(x), torch_state or torch.from_numpy(h0))
    _, cell, convert = PAIRS[kind]
    carry, ys = jaxrnn.unroll(cell, convert(module.state_dict()), jnp.asarray(x), carry0)
    np.testing.assert_allclose(ys, out.numpy(), rtol=0, atol=ATOL)
    _assert_close(carry, _final_state(kind, state, 0))


@pytest.mark.parametrize("kind", PAIRS)
def test_torch_stacked_bidirectional_packed_matches(kind):
    """Two layers, both directions, variable lengths: layer/direction keys and length masking."""
    module = _torch_module(kind, 4, 5, num_layers=2, bidirectional=True)
    x = _inputs((3, 8, 4))
    lengths = np.array([8, 5, 1])
    packed = pack_padded_sequence(torch.from_numpy(x), torch.from_numpy(lengths), batch_first=True)
    with torch.no_grad():
        out, state = module(packed)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=8)

    _, cell, convert = PAIRS[kind]
    state_dict = module.state_dict()
    layer_input = jnp.asarray(x)
    for layer in range(2):
        directions = []
        for reverse in (False, True):
            params = convert(state_dict, layer=layer, reverse=reverse)
            carry, ys = jaxrnn.unroll(
                cell, params, layer_input, lengths=jnp.asarray(lengths), reverse=reverse
            )
            _assert_close(carry, _final_state(kind, state, 2 * layer + reverse))
            directions.append(ys)
        layer_input = jnp.concatenate(directions, axis=-1)
    np.testing.assert_allclose(layer_input, out.numpy(), rtol=0, atol=ATOL)


@pytest.mark.parametrize("kind", PAIRS)
def test_torch_params_to_torch_round_trips(kind):
    _, cell, convert = PAIRS[kind]
    params = jax.tree.map(lambda p: p + 0.1, cell.init(jax.random.key(3), 3, 4))  # biases ≠ 0
    module = _torch_module(kind, 3, 4, seed=5)
    module.load_state_dict(
        {k: torch.from_numpy(v) for k, v in jaxrnn.params_to_torch(params).items()}
    )
    x = _inputs((2, 6, 3))
    with torch.no_grad():
        out, _ = module(torch.from_numpy(x))
    _, ys = jaxrnn.unroll(cell, params, jnp.asarray(x))
    np.testing.assert_allclose(ys, out.numpy(), rtol=0, atol=ATOL)
    back = convert(module.state_dict())
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=1e-7), back, params)


def test_torch_converter_rejects_wrong_cell_kind():
    lstm_state = _torch_module("lstm", 3, 4).state_dict()
    with pytest.raises(jaxrnn.InputError, match=r"weight_hh_l0 of shape \(3·H, H\)"):
        jaxrnn.gru_params_from_torch(lstm_state)
    with pytest.raises(jaxrnn.InputError, match="expected keys 'weight_ih_l1'"):
        jaxrnn.lstm_params_from_torch(lstm_state, layer=1)
