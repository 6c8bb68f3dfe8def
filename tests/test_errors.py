"""Bad input raises jaxrnn.InputError naming the argument, the expected and the actual value."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrnn

CELLS = [jaxrnn.rnn(), jaxrnn.simplified_gru(), jaxrnn.gru(), jaxrnn.gru("after"), jaxrnn.lstm()]


def _setup(cell, n_x=3, n_a=4):
    params = cell.init(jax.random.key(0), n_x, n_a, dtype=jnp.float32)
    return params, jnp.ones((2, 5, n_x), jnp.float32)


@pytest.mark.parametrize("cell", CELLS, ids=jaxrnn.cells.cell_name)
def test_errors_unroll_wrong_rank(cell):
    params, _ = _setup(cell)
    with pytest.raises(jaxrnn.InputError, match=r"unroll: expected xs with at least 2 dim"):
        jaxrnn.unroll(cell, params, jnp.ones(3, jnp.float32))


@pytest.mark.parametrize("cell", CELLS, ids=jaxrnn.cells.cell_name)
def test_errors_unroll_input_size_mismatch(cell):
    params, _ = _setup(cell)
    with pytest.raises(
        jaxrnn.InputError, match=r"expected xs of shape \(2, 5, 3\), got \(2, 5, 7\).*input_size=3"
    ):
        jaxrnn.unroll(cell, params, jnp.ones((2, 5, 7), jnp.float32))


@pytest.mark.parametrize("cell", CELLS, ids=jaxrnn.cells.cell_name)
def test_errors_unroll_carry_wrong_shape(cell):
    params, xs = _setup(cell)
    bad = jax.tree.map(lambda c: jnp.zeros((3, 4), c.dtype), cell.init_carry(params, (2,)))
    with pytest.raises(jaxrnn.InputError, match=r"expected carry of shape \(2, 4\), got \(3, 4\)"):
        jaxrnn.unroll(cell, params, xs, bad)


def test_errors_lstm_carry_must_be_an_lstm_state():
    cell = jaxrnn.lstm()
    params, xs = _setup(cell)
    with pytest.raises(jaxrnn.InputError, match="expected carry with the structure of lstm"):
        jaxrnn.unroll(cell, params, xs, jnp.zeros((2, 4), jnp.float32))


@pytest.mark.parametrize(
    ("lengths", "message"),
    [
        (np.array([5, -1]), r"expected lengths in \[0, 5\].*got \[-1\]"),
        (np.array([6, 2]), r"expected lengths in \[0, 5\].*got \[6\]"),
        (np.array([2.0, 3.0]), "expected lengths to have an integer dtype, got float"),
        (np.array([1, 2, 3]), r"expected lengths of shape \(2,\), got \(3,\)"),
    ],
)
def test_errors_unroll_bad_lengths(lengths, message):
    cell = jaxrnn.gru()
    params, xs = _setup(cell)
    with pytest.raises(jaxrnn.InputError, match=message):
        jaxrnn.unroll(cell, params, xs, lengths=lengths)


def test_errors_out_of_range_lengths_inside_jit_give_nan_not_wrong_numbers():
    cell = jaxrnn.lstm()
    params, xs = _setup(cell)
    run = jax.jit(lambda lengths: jaxrnn.unroll(cell, params, xs, lengths=lengths))
    carry, ys = run(jnp.array([7, 2]))
    assert np.isnan(np.asarray(ys[0])).all() and np.isnan(np.asarray(carry.h[0])).all()
    assert np.isfinite(np.asarray(ys[1])).all()
    carry_ok, ys_ok = jaxrnn.unroll(cell, params, xs[1:], lengths=np.array([2]))
    np.testing.assert_allclose(ys[1], ys_ok[0], rtol=1e-6)


@pytest.mark.parametrize("cell", CELLS, ids=jaxrnn.cells.cell_name)
def test_errors_unroll_mismatched_dtypes(cell):
    params, xs = _setup(cell)
    with pytest.raises(jaxrnn.InputError, match=r"expected xs of dtype float32.*got float64"):
        jaxrnn.unroll(cell, params, xs.astype(jnp.float64))
    with pytest.raises(
        jaxrnn.InputError, match="expected xs to have a floating-point dtype, got int"
    ):
        jaxrnn.unroll(cell, params, xs.astype(jnp.int32))
    carry = jax.tree.map(lambda c: c.astype(jnp.float64), cell.init_carry(params, (2,)))
    with pytest.raises(jaxrnn.InputError, match=r"expected carry of dtype float32.*got float64"):
        jaxrnn.unroll(cell, params, xs, carry)


@pytest.mark.parametrize("cell", CELLS, ids=jaxrnn.cells.cell_name)
def test_errors_step_names_the_cell_and_argument(cell):
    params, _ = _setup(cell)
    carry = cell.init_carry(params)
    with pytest.raises(
        jaxrnn.InputError,
        match=rf"{re.escape(jaxrnn.cells.cell_name(cell))}\.step: "
        r"expected x of shape \(3,\), got \(5,\)",
    ):
        cell.step(params, carry, jnp.ones(5, jnp.float32))
    with pytest.raises(jaxrnn.InputError, match=r"expected carry of shape \(2, 4\), got \(4,\)"):
        cell.step(params, carry, jnp.ones((2, 3), jnp.float32))


def test_errors_raised_at_trace_time_under_jit():
    cell = jaxrnn.lstm()
    params, _ = _setup(cell)
    with pytest.raises(jaxrnn.InputError, match=r"expected xs of shape \(2, 5, 3\)"):
        jax.jit(lambda xs: jaxrnn.unroll(cell, params, xs))(jnp.ones((2, 5, 4), jnp.float32))


def test_errors_bad_cell_options_and_sizes():
    with pytest.raises(jaxrnn.InputError, match="activation 'tanh' or 'relu', got 'sigmoid'"):
        jaxrnn.rnn("sigmoid")
    with pytest.raises(jaxrnn.InputError, match="reset 'before' or 'after', got 'middle'"):
        jaxrnn.gru("middle")
    with pytest.raises(jaxrnn.InputError, match="hidden_size to be a positive int, got 0"):
        jaxrnn.lstm().init(jax.random.key(0), 3, 0)


def test_errors_params_of_another_cell_are_rejected():
    gru_params = jaxrnn.gru().init(jax.random.key(0), 3, 4)
    with pytest.raises(jaxrnn.InputError, match=r"expected LSTMParams, the params of lstm\(\)"):
        jaxrnn.unroll(jaxrnn.lstm(), gru_params, jnp.ones((5, 3), jnp.float32))


def test_errors_params_know_their_variant():
    """PyTorch's GRU weights through the course's GRU and ReLU weights through tanh are refused,
    naming both variants; cell_for gives the cell that runs them."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    gru, relu = torch.nn.GRU(3, 4), torch.nn.RNN(3, 4, nonlinearity="relu")
    cases = [
        (jaxrnn.interop.gru_params_from_torch(gru), jaxrnn.gru(), jaxrnn.gru("after")),
        (jaxrnn.interop.rnn_params_from_torch(relu), jaxrnn.rnn(), jaxrnn.rnn("relu")),
        (jaxrnn.rnn("relu").init(jax.random.key(0), 3, 4), jaxrnn.rnn("tanh"), jaxrnn.rnn("relu")),
        (jaxrnn.gru().init(jax.random.key(0), 3, 4), jaxrnn.gru("after"), jaxrnn.gru()),
    ]
    xs = jnp.ones((5, 3), jnp.float32)
    for params, wrong, right in cases:
        assert jaxrnn.cells.cell_for(params) is right
        with pytest.raises(jaxrnn.InputError, match=r"expected \w+Params, the params of .* got"):
            jaxrnn.unroll(wrong, params, xs)
        jaxrnn.unroll(right, params, xs)
    with pytest.raises(jaxrnn.InputError, match="expected ResetAfterGRUParams .* got GRUParams"):
        jaxrnn.interop.params_to_torch(jaxrnn.gru().init(jax.random.key(0), 3, 4))


@pytest.mark.parametrize(
    ("given", "wrong", "message"),
    [
        # the same type, other shapes: 3 gates through 2 and 2 through 3
        ("gru", "simplified_gru", r"simplified_gru.step: expected params.w_h of shape \(4, 8\)"),
        (
            "simplified_gru",
            "gru",
            r"gru\(reset=before\).step: expected params.w_h of shape \(4, 12",
        ),
        # the shapes that the min cells check, other types
        ("simplified_gru", "min_gru", r"min_gru\.\w+: expected MinGRUParams.* got GRUParams"),
        ("gru", "min_lstm", r"min_lstm\.\w+: expected MinLSTMParams.* got GRUParams"),
        (
            "min_gru",
            "simplified_gru",
            r"expected GRUParams.* got MinGRUParams.* jaxrnn.min_gru\(\)",
        ),
        ("min_lstm", "gru", r"expected GRUParams.* got MinLSTMParams.* jaxrnn.min_lstm\(\)"),
    ],
)
@pytest.mark.parametrize("implementation", [None, "scan"])
def test_errors_params_of_a_cell_of_the_same_kind_are_rejected(
    given, wrong, message, implementation
):
    """Weights that another cell's step could read without a shape error (min_gru reads w_x and
    b_x of simplified_gru's params) never run: every implementation checks them, the native
    kernels included, before any number is computed."""
    params = getattr(jaxrnn, given)().init(jax.random.key(0), 3, 4)
    xs = jnp.ones((2, 5, 3), jnp.float32)
    with pytest.raises(jaxrnn.InputError, match=message):
        jaxrnn.unroll(getattr(jaxrnn, wrong)(), params, xs, implementation=implementation)
    jaxrnn.unroll(jaxrnn.cells.cell_for(params), params, xs, implementation=implementation)


def test_errors_the_fused_backward_pass_checks_the_params_shapes_first():
    """The fused backward pass never calls the cell's step: the course GRU's weights (3 gates)
    through simplified_gru's (2) are refused by the step's own check, as the scan refuses them."""
    params = jaxrnn.gru().init(jax.random.key(0), 3, 4)
    xs = jnp.ones((2, 5, 3), jnp.float32)
    for implementation in ("fused", "scan"):
        with pytest.raises(jaxrnn.InputError, match=r"simplified_gru.step: expected params.w_h"):
            jaxrnn.unroll(jaxrnn.simplified_gru(), params, xs, implementation=implementation)
    simplified = jaxrnn.simplified_gru().init(jax.random.key(0), 3, 4)
    _, ys = jaxrnn.unroll(jaxrnn.simplified_gru(), simplified, xs, implementation="fused")
    _, want = jaxrnn.unroll(jaxrnn.simplified_gru(), simplified, xs, implementation="scan")
    np.testing.assert_allclose(ys, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["time_major", "reverse"])
@pytest.mark.parametrize("value", ["no", 1, None])
def test_errors_unroll_and_the_layers_take_only_bools_for_their_flags(name, value):
    cell = jaxrnn.lstm()
    params, xs = _setup(cell)
    expected = f"unroll: expected {name} to be True or False, got {value!r}"
    with pytest.raises(jaxrnn.InputError, match=re.escape(expected)):
        jaxrnn.unroll(cell, params, xs, **{name: value})
    if name == "time_major":
        both = jaxrnn.bidirectional_init(cell, jax.random.key(0), 3, 4)
        with pytest.raises(jaxrnn.InputError, match=r"bidirectional: expected time_major to be"):
            jaxrnn.bidirectional(cell, both, xs, time_major=value)
    assert jaxrnn.unroll(cell, params, xs, **{name: np.bool_(True)})[1].shape[-1] == 4


def test_errors_cell_for_and_deep_name_what_they_cannot_take():
    with pytest.raises(jaxrnn.InputError, match="cell_for: expected the params of a built-in cell"):
        jaxrnn.cells.cell_for({"w": jnp.ones(3)})
    with pytest.raises(jaxrnn.InputError, match="deep: expected num_layers to be a positive int"):
        jaxrnn.deep(jaxrnn.gru(), 0)
    with pytest.raises(jaxrnn.InputError, match=r"expected params to be StackedParams, got GRUP"):
        cell = jaxrnn.deep(jaxrnn.gru(), 1)
        cell.step(jaxrnn.gru().init(jax.random.key(0), 3, 4), None, jnp.ones(3, jnp.float32))
