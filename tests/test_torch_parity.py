"""PyTorch's nn.RNN, nn.GRU and nn.LSTM, given the same weights, compute what jaxrnn computes."""

import functools

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
        jaxrnn.interop.rnn_params_from_torch,
    ),
    "rnn_relu": (
        lambda d, h, **kw: torch.nn.RNN(d, h, nonlinearity="relu", **kw),
        jaxrnn.rnn("relu"),
        functools.partial(jaxrnn.interop.rnn_params_from_torch, nonlinearity="relu"),
    ),
    "gru": (torch.nn.GRU, jaxrnn.gru(reset="after"), jaxrnn.interop.gru_params_from_torch),
    "lstm": (torch.nn.LSTM, jaxrnn.lstm(), jaxrnn.interop.lstm_params_from_torch),
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
        {k: torch.from_numpy(v) for k, v in jaxrnn.interop.params_to_torch(params).items()}
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
        jaxrnn.interop.gru_params_from_torch(lstm_state)
    with pytest.raises(jaxrnn.InputError, match="expected keys 'weight_ih_l1'"):
        jaxrnn.interop.lstm_params_from_torch(lstm_state, layer=1)


# ------------------------------------------------------------- whole modules: every layer at once

CELL_NAMES = {"rnn_tanh": "rnn", "rnn_relu": "rnn", "gru": "gru", "lstm": "lstm"}


def _torch_initial_state(kind, num_states, shape):
    h0 = torch.from_numpy(_inputs((num_states, *shape), seed=2))
    return (h0, torch.from_numpy(_inputs((num_states, *shape), seed=3))) if kind == "lstm" else h0


@pytest.mark.parametrize("kind", PAIRS)
@pytest.mark.parametrize("num_layers, bidirectional", [(1, True), (2, False), (3, True)])
def test_torch_stacked_params_from_module_match_packed(kind, num_layers, bidirectional):
    """One call converts the module; packed batches are lengths, h_0 (and c_0) the carry."""
    module = _torch_module(kind, 4, 5, num_layers=num_layers, bidirectional=bidirectional)
    x, lengths = _inputs((3, 8, 4)), np.array([8, 5, 1])
    state0 = _torch_initial_state(kind, num_layers * (1 + bidirectional), (3, 5))
    packed = pack_padded_sequence(torch.from_numpy(x), torch.from_numpy(lengths), batch_first=True)
    with torch.no_grad():
        out, state = module(packed, state0)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=8)

    params = jaxrnn.interop.stacked_params_from_torch(module, CELL_NAMES[kind])
    assert len(params.layers) == num_layers
    assert all(isinstance(p, jaxrnn.BidirectionalParams) == bidirectional for p in params.layers)
    carry0 = jaxrnn.interop.stacked_carry_from_torch(state0, bidirectional=bidirectional)
    last, ys = jaxrnn.stacked(
        PAIRS[kind][1], params, jnp.asarray(x), lengths=jnp.asarray(lengths), carry=carry0
    )
    np.testing.assert_allclose(ys, out.numpy(), rtol=0, atol=ATOL)
    want = state if kind == "lstm" else (state,)
    got = jaxrnn.interop.stacked_carry_to_torch(last)
    got = got if kind == "lstm" else (got,)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w.numpy(), rtol=0, atol=ATOL)


@pytest.mark.parametrize("kind", PAIRS)
def test_torch_stacked_params_round_trip_state_dict_equal(kind):
    module = _torch_module(kind, 3, 4, num_layers=2, bidirectional=True)
    state_dict = module.state_dict()
    params = jaxrnn.interop.stacked_params_from_torch(
        state_dict, CELL_NAMES[kind], num_layers=2, bidirectional=True
    )
    back = jaxrnn.interop.params_to_torch(params)
    assert list(back) == list(state_dict)  # the same keys, in the module's order
    for key, value in state_dict.items():
        np.testing.assert_array_equal(back[key], value.numpy(), err_msg=key)
    module.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()}, strict=True)


@pytest.mark.parametrize("kind", PAIRS)
def test_torch_stacked_params_to_torch_loads_into_module(kind):
    """jaxrnn's own stacked params, exported, give a torch module that computes the same."""
    cell = PAIRS[kind][1]
    params = jaxrnn.stacked_init(cell, jax.random.key(4), 3, 5, num_layers=2, bidirectional=True)
    params = jax.tree.map(lambda p: p + 0.1, params)  # non-zero biases
    module = _torch_module(kind, 3, 5, seed=6, num_layers=2, bidirectional=True)
    module.load_state_dict(
        {k: torch.from_numpy(v) for k, v in jaxrnn.interop.params_to_torch(params).items()},
        strict=True,
    )
    x = _inputs((2, 6, 3))
    with torch.no_grad():
        out, _ = module(torch.from_numpy(x))
    _, ys = jaxrnn.stacked(cell, params, jnp.asarray(x))
    np.testing.assert_allclose(ys, out.numpy(), rtol=0, atol=ATOL)


def test_torch_stacked_carry_round_trips():
    h_n, c_n = _inputs((4, 2, 5)), _inputs((4, 2, 5), seed=2)
    carries = jaxrnn.interop.stacked_carry_from_torch((h_n, c_n), bidirectional=True)
    assert len(carries) == 2 and isinstance(carries[1], jaxrnn.layers.BidirectionalCarry)
    np.testing.assert_array_equal(carries[1].backward.c, c_n[3])
    back_h, back_c = jaxrnn.interop.stacked_carry_to_torch(carries)
    np.testing.assert_array_equal(back_h, h_n)
    np.testing.assert_array_equal(back_c, c_n)
    np.testing.assert_array_equal(
        jaxrnn.interop.stacked_carry_to_torch(jaxrnn.interop.stacked_carry_from_torch(h_n)), h_n
    )


def test_torch_stacked_converters_reject_bad_input():
    state_dict = _torch_module("gru", 3, 4, num_layers=2).state_dict()
    with pytest.raises(jaxrnn.InputError, match="expected num_layers=3, got a state_dict of 2"):
        jaxrnn.interop.stacked_params_from_torch(state_dict, "gru", num_layers=3)
    with pytest.raises(jaxrnn.InputError, match="expected bidirectional=True, got a state_dict"):
        jaxrnn.interop.stacked_params_from_torch(state_dict, "gru", bidirectional=True)
    with pytest.raises(jaxrnn.InputError, match=r"weight_hh_l0 of shape \(4·H, H\)"):
        jaxrnn.interop.stacked_params_from_torch(state_dict, "lstm")
    with pytest.raises(jaxrnn.InputError, match="expected cell 'lstm', 'gru' or 'rnn', got 'GRU'"):
        jaxrnn.interop.stacked_params_from_torch(state_dict, "GRU")
    cell = jaxrnn.gru(reset="after")
    mixed = jaxrnn.StackedParams(
        (
            jaxrnn.bidirectional_init(cell, jax.random.key(0), 3, 4),
            cell.init(jax.random.key(1), 8, 4),
        )
    )
    with pytest.raises(jaxrnn.InputError, match="every layer bidirectional or none"):
        jaxrnn.interop.params_to_torch(mixed)
    with pytest.raises(jaxrnn.InputError, match=r"h_n of shape \(num_layers·2, \*batch, H\)"):
        jaxrnn.interop.stacked_carry_from_torch(_inputs((3, 2, 4)), bidirectional=True)


# ------------------------------------------------------------ bias=False modules, modules as input


@pytest.mark.parametrize("kind", PAIRS)
@pytest.mark.parametrize("bias", [True, False])
def test_torch_params_to_torch_round_trips_bias_free_modules_strictly(kind, bias):
    """A bias=False module comes in with zero biases and goes back out without bias entries."""
    module = _torch_module(kind, 3, 4, num_layers=2, bidirectional=True, bias=bias)
    params = jaxrnn.interop.stacked_params_from_torch(module, CELL_NAMES[kind])
    back = jaxrnn.interop.params_to_torch(params, bias=bias)
    state_dict = module.state_dict()
    assert list(back) == list(state_dict)
    for key, value in state_dict.items():
        np.testing.assert_array_equal(back[key], value.numpy(), err_msg=key)
    fresh = _torch_module(kind, 3, 4, seed=7, num_layers=2, bidirectional=True, bias=bias)
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()}, strict=True)
    x = torch.from_numpy(_inputs((2, 6, 3)))
    with torch.no_grad():
        np.testing.assert_array_equal(fresh(x)[0].numpy(), module(x)[0].numpy())
    _, ys = jaxrnn.stacked(PAIRS[kind][1], params, jnp.asarray(x.numpy()))
    np.testing.assert_allclose(ys, module(x)[0].detach().numpy(), rtol=0, atol=ATOL)

    one_layer = _torch_module(kind, 3, 4, bias=bias)
    layer_dict = jaxrnn.interop.params_to_torch(PAIRS[kind][2](one_layer), bias=bias)
    assert sorted(layer_dict) == sorted(one_layer.state_dict())
    fresh = _torch_module(kind, 3, 4, seed=8, bias=bias)
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in layer_dict.items()}, strict=True)
    for key, value in one_layer.state_dict().items():
        np.testing.assert_array_equal(fresh.state_dict()[key].numpy(), value.numpy(), err_msg=key)


def test_torch_params_to_torch_bias_false_refuses_to_drop_non_zero_biases():
    params = jaxrnn.gru(reset="after").init(jax.random.key(0), 3, 4)
    zero = params._replace(b_x=jnp.zeros_like(params.b_x), b_h=jnp.zeros_like(params.b_h))
    assert "bias_ih_l0" not in jaxrnn.interop.params_to_torch(zero, bias=False)
    with pytest.raises(
        jaxrnn.InputError,
        match=r"^params_to_torch: expected params.b_h all zero with bias=False, got values in "
        r"\[0.0, 0.25\]; a bias=False module has no biases to hold them: export for one with "
        r"bias=True$",
    ):
        jaxrnn.interop.params_to_torch(zero._replace(b_h=zero.b_h.at[5].set(0.25)), bias=False)
    deep = jaxrnn.StackedParams(
        (jaxrnn.BidirectionalParams(zero, zero._replace(b_x=zero.b_x + 1)),)
    )
    with pytest.raises(jaxrnn.InputError, match=r"expected params.layers\[0\].backward.b_x all"):
        jaxrnn.interop.params_to_torch(deep, bias=False)
    with pytest.raises(jaxrnn.InputError, match="expected bias to be True or False, got 'no'"):
        jaxrnn.interop.params_to_torch(params, bias="no")


@pytest.mark.parametrize("kind", PAIRS)
def test_torch_one_layer_converters_take_a_module(kind):
    module = _torch_module(kind, 3, 4)
    x = _inputs((2, 6, 3))
    with torch.no_grad():
        out, _ = module(torch.from_numpy(x))
    _, cell, convert = PAIRS[kind]
    _, ys = jaxrnn.unroll(cell, convert(module), jnp.asarray(x))
    np.testing.assert_allclose(ys, out.numpy(), rtol=0, atol=ATOL)
    deep = _torch_module(kind, 3, 4, num_layers=2, bidirectional=True)
    jax.tree.map(
        np.testing.assert_array_equal,
        convert(deep, layer=1, reverse=True),
        convert(deep.state_dict(), layer=1, reverse=True),
    )


@pytest.mark.parametrize(
    "convert",
    [
        jaxrnn.interop.rnn_params_from_torch,
        jaxrnn.interop.gru_params_from_torch,
        jaxrnn.interop.lstm_params_from_torch,
    ],
)
def test_torch_one_layer_converters_reject_what_is_neither_module_nor_mapping(convert):
    with pytest.raises(
        jaxrnn.InputError,
        match=rf"^{convert.__name__}: expected state_dict to be a torch module or its "
        r"state_dict\(\) \(a mapping of names to arrays or tensors\), got list$",
    ):
        convert([np.zeros((4, 3))])
    with pytest.raises(
        jaxrnn.InputError,
        match=r"stacked_params_from_torch: expected module_or_state_dict to be a torch module .*"
        r"got ndarray",
    ):
        jaxrnn.interop.stacked_params_from_torch(np.zeros((4, 3)), "rnn")


# ---------------------------------------------------------------- h0 of a bidirectional module


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_torch_stacked_carry_from_torch_infers_bidirectional_from_num_layers(kind):
    module = _torch_module(kind, 4, 5, num_layers=2, bidirectional=True)
    x = _inputs((3, 7, 4))
    state0 = _torch_initial_state(kind, 4, (3, 5))
    with torch.no_grad():
        out, _ = module(torch.from_numpy(x), state0)
    carry0 = jaxrnn.interop.stacked_carry_from_torch(state0, num_layers=2)
    assert len(carry0) == 2 and all(isinstance(c, jaxrnn.layers.BidirectionalCarry) for c in carry0)
    given = jaxrnn.interop.stacked_carry_from_torch(state0, num_layers=2, bidirectional=True)
    jax.tree.map(np.testing.assert_array_equal, carry0, given)
    params = jaxrnn.interop.stacked_params_from_torch(module, kind)
    _, ys = jaxrnn.stacked(PAIRS[kind][1], params, jnp.asarray(x), carry=carry0)
    np.testing.assert_allclose(ys, out.numpy(), rtol=0, atol=ATOL)
    # The same four entries are four layers of a unidirectional module.
    four = jaxrnn.interop.stacked_carry_from_torch(state0, num_layers=4)
    assert len(four) == 4 and not any(isinstance(c, jaxrnn.layers.BidirectionalCarry) for c in four)


def test_torch_stacked_carry_from_torch_checks_num_layers():
    h0 = _inputs((4, 3, 5))
    with pytest.raises(
        jaxrnn.InputError,
        match=r"stacked_carry_from_torch: expected h_n with 2 entries along axis 0 "
        r"\(num_layers=2, bidirectional=False\), got shape \(4, 3, 5\); a bidirectional "
        r"module's h_n has two entries per layer: bidirectional=True",
    ):
        jaxrnn.interop.stacked_carry_from_torch(h0, num_layers=2, bidirectional=False)
    with pytest.raises(
        jaxrnn.InputError,
        match=r"expected h_n with 3 or 6 entries along axis 0 \(num_layers=3\), got shape "
        r"\(4, 3, 5\)$",
    ):
        jaxrnn.interop.stacked_carry_from_torch(h0, num_layers=3)
    with pytest.raises(jaxrnn.InputError, match="expected num_layers to be a positive int, got 0"):
        jaxrnn.interop.stacked_carry_from_torch(h0, num_layers=0)


def test_torch_stacked_names_the_fix_for_a_bidirectional_h0_read_as_unidirectional():
    module = _torch_module("lstm", 4, 5, num_layers=2, bidirectional=True)
    params = jaxrnn.interop.stacked_params_from_torch(module, "lstm")
    carry0 = jaxrnn.interop.stacked_carry_from_torch(_torch_initial_state("lstm", 4, (3, 5)))
    assert len(carry0) == 4  # without bidirectional=True: one carry per entry of h0
    with pytest.raises(
        jaxrnn.InputError,
        match=r"stacked: expected carry to be a tuple of 2 carries, one per layer, or None, got 4 "
        r"carries for 2 layers; a bidirectional PyTorch h0 needs "
        r"stacked_carry_from_torch\(\.\.\., bidirectional=True\)",
    ):
        jaxrnn.stacked(jaxrnn.lstm(), params, jnp.asarray(_inputs((3, 7, 4))), carry=carry0)
    with pytest.raises(jaxrnn.InputError, match=r"2 carries, one per layer, or None, got list$"):
        jaxrnn.stacked(jaxrnn.lstm(), params, jnp.asarray(_inputs((3, 7, 4))), carry=[None, None])
