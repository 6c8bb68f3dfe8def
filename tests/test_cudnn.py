"""cuDNN's LSTM behind `jaxrnn.unroll` (`jaxrnn._cudnn`) against the plain scan, the definition.

cuDNN runs on a CUDA GPU only. Without one its two calls are replaced by JAX's own reference
implementation of them (`jax.experimental.rnn.lstm_ref`, which JAX's tests hold cuDNN to), read
from the same flat weights: what is tested is everything jaxrnn adds around the calls (the weight
layout, lengths, reverse, batch shapes, vmap, the gradients mapped back, the automatic choice and
its errors). On a CUDA GPU the same tests run cuDNN itself. Values and gradients to 1e-5 in
float32 (the tests' products at "highest" precision, which cuDNN runs without TensorFloat-32)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import rnn
from kernel_checks import assert_trees_close, value_and_grads

import jaxrnn
from jaxrnn import _cudnn, _native, kernels


def _reference(x, h_0, c_0, weights, seq_lengths, input_size, hidden_size, both_ways):
    w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(weights, input_size, hidden_size, 1, both_ways)
    return rnn.lstm_ref(
        x, h_0, c_0, w_ih, w_hh, b_ih, b_hh, seq_lengths, input_size, hidden_size, 1, 0.0, both_ways
    )


def reference_calls():
    """``lstm_fwd`` and ``lstm_bwd`` of `jax.experimental.rnn`, with its calling convention and
    residuals of the reference's own."""

    def lstm_fwd(x, h_0, c_0, weights, seq_lengths, input_size, hidden_size, *settings):
        assert settings[:2] == (1, 0.0)  # one layer, no dropout
        assert seq_lengths.dtype == jnp.int32
        both_ways = settings[2]
        out = _reference(x, h_0, c_0, weights, seq_lengths, input_size, hidden_size, both_ways)
        # cuDNN reads at least one step of every sequence: a length 0 passed on would fail.
        out = jax.tree.map(lambda a: jnp.where(jnp.min(seq_lengths) >= 1, a, jnp.nan), out)
        return out, (x, h_0, c_0, weights, seq_lengths)

    def lstm_bwd(input_size, hidden_size, num_layers, dropout, bidirectional, precision, res, ct):
        x, h_0, c_0, weights, seq_lengths = res
        run = functools.partial(
            _reference,
            seq_lengths=seq_lengths,
            input_size=input_size,
            hidden_size=hidden_size,
            both_ways=bidirectional,
        )
        _, vjp = jax.vjp(run, x, h_0, c_0, weights)
        return (*vjp(ct), jnp.zeros_like(seq_lengths))

    return lstm_fwd, lstm_bwd


@pytest.fixture
def on_cuda(monkeypatch):
    """cuDNN's calls where this process has a CUDA GPU; elsewhere a process that looks like one,
    its cuDNN calls the reference's. As on a GPU, no native CPU kernels to choose."""
    if not _cudnn.available():
        monkeypatch.setattr(_cudnn, "available", lambda: True)
        monkeypatch.setattr(_cudnn, "_rnn_calls", reference_calls)
        monkeypatch.setattr(_cudnn, "placement_misfit", lambda **trees: None)
    monkeypatch.setattr(_native, "available", lambda: False)


@pytest.fixture
def cudnn_calls(on_cuda, monkeypatch):
    """The shapes of xs of every forward call of cuDNN (or of its reference), as traced."""
    calls = []
    lstm_fwd, lstm_bwd = _cudnn._rnn_calls()

    def counted_fwd(*args):
        calls.append(args[0].shape)
        return lstm_fwd(*args)

    monkeypatch.setattr(_cudnn, "_rnn_calls", lambda: (counted_fwd, lstm_bwd))
    return calls


def problem(batch_shape=(5,), n_steps=7, n_x=3, n_a=6, seed=0):
    cell = jaxrnn.lstm()
    rng = np.random.default_rng(seed)
    params = cell.init(jax.random.key(seed), n_x, n_a)
    # Weights and biases away from their initial values, so that every gate and both biases
    # matter; scaled by fan-in so that float32 rounding is not amplified step after step.
    params = jax.tree.map(
        lambda a: jnp.asarray(
            rng.normal(0.0, 0.6 if a.ndim == 1 else 1.5 / np.sqrt(a.shape[0]), a.shape),
            jnp.float32,
        ),
        params,
    )
    xs = jnp.asarray(rng.normal(size=(*batch_shape, n_steps, n_x)), jnp.float32)
    carry = jax.tree.map(
        lambda a: jnp.asarray(rng.normal(0.0, 0.5, a.shape), jnp.float32),
        cell.init_carry(params, batch_shape),
    )
    weights = jnp.asarray(rng.normal(size=(*batch_shape, n_steps, n_a)), jnp.float32)
    return cell, params, xs, carry, weights


def test_flat_weights_are_cudnn_blocks_in_order():
    cell, params, *_ = problem(n_x=3, n_a=4)
    flat = _cudnn.flat_weights((params.w_x, params.w_h, params.b_x, params.b_h))
    assert flat.shape == (rnn.get_num_params_in_lstm(3, 4, 1, False),)
    w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(flat, 3, 4, 1, False)
    # cuDNN's W_ih row 4 + j is the forget gate's unit j: jaxrnn's column H + j of w_x.
    np.testing.assert_array_equal(w_ih[0][4 + 2], params.w_x[:, 4 + 2])
    np.testing.assert_array_equal(w_hh[0], params.w_h.T)
    np.testing.assert_array_equal(b_ih[0], params.b_x)
    np.testing.assert_array_equal(b_hh[0], params.b_h)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize(
    "batch_shape, n_steps, n_x, n_a",
    [((5,), 7, 3, 6), ((1,), 1, 1, 1), ((), 9, 4, 5), ((2, 3), 4, 2, 8)],
    ids=["small", "one-of-everything", "unbatched", "two-batch-dims"],
)
def test_values_and_gradients_equal_the_scan(on_cuda, reverse, batch_shape, n_steps, n_x, n_a):
    args = problem(batch_shape, n_steps, n_x, n_a)
    got = value_and_grads("cudnn", *args, reverse=reverse)
    want = value_and_grads("scan", *args, reverse=reverse)
    assert_trees_close(got, want)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_lengths_freeze_the_carry_and_zero_the_padding(on_cuda, reverse):
    cell, params, xs, carry, weights = problem((6,), 8, 3, 5, seed=1)
    lengths = jnp.array([8, 5, 1, 0, 3, 8])
    xs = xs.at[1, 5:].set(jnp.nan)  # padding is never read
    got = value_and_grads(
        "cudnn", cell, params, xs, carry, weights, lengths=lengths, reverse=reverse
    )
    want = value_and_grads(
        "scan", cell, params, xs, carry, weights, lengths=lengths, reverse=reverse
    )
    assert_trees_close(got, want)
    assert np.all(np.isfinite(got[1][1]))  # dL/dxs: zero at the padding, not NaN
    last, ys = jaxrnn.unroll(cell, params, xs, carry, lengths=lengths, implementation="cudnn")
    np.testing.assert_array_equal(ys[3], 0.0)  # length 0: no output, the carry as given
    np.testing.assert_array_equal(last.h[3], carry.h[3])
    np.testing.assert_array_equal(last.c[3], carry.c[3])
    np.testing.assert_array_equal(ys[1, 5:], 0.0)


def test_lengths_unknown_until_run_time_poison_as_the_scan_does(on_cuda):
    cell, params, xs, carry, _ = problem((3,), 4, 2, 3)

    @jax.jit
    def run(lengths):
        return jaxrnn.unroll(cell, params, xs, carry, lengths=lengths, implementation="cudnn")

    last, ys = run(jnp.array([4, 9, 2]))
    assert np.all(np.isnan(ys[1])) and np.all(np.isnan(last.h[1]))
    assert np.all(np.isfinite(ys[0])) and np.all(np.isfinite(ys[2]))


def test_vmap_over_the_batch_and_over_params(on_cuda):
    cell, params, xs, carry, weights = problem((4, 3), 5, 2, 4)
    # An ensemble of 4: each member's weights scaled differently.
    scales = np.float32([1.0, 0.9, 1.1, 1.2])
    ensemble = jax.tree.map(lambda a: jnp.stack([a * s for s in scales]), params)

    def loss(implementation, params, xs, carry, weights):
        _, ys = jaxrnn.unroll(cell, params, xs, carry, implementation=implementation)
        return jnp.sum(ys * weights)

    for members, params_axis in [(params, None), (ensemble, 0)]:
        in_axes = (params_axis, 0, 0, 0)
        got, want = (
            jax.jit(jax.vmap(jax.value_and_grad(functools.partial(loss, name), (0, 1)), in_axes))(
                members, xs, carry, weights
            )
            for name in ("cudnn", "scan")
        )
        assert_trees_close(got, want)


def test_deep_and_bidirectional_layers_run_it(cudnn_calls):
    calls = cudnn_calls
    rng = np.random.default_rng(3)
    xs = jnp.asarray(rng.normal(size=(3, 6, 4)), jnp.float32)
    lengths = jnp.array([6, 4, 2])
    cell = jaxrnn.lstm()
    pair = jaxrnn.bidirectional_init(cell, jax.random.key(1), 4, 5)
    deep = jaxrnn.layers.deep(cell, 2)
    stack = deep.init(jax.random.key(2), 4, 5)

    def loss(params, implementation):
        pair, stack = params
        options = dict(lengths=lengths, implementation=implementation)
        _, ys = jaxrnn.bidirectional(cell, pair, xs, **options)
        _, zs = jaxrnn.unroll(deep, stack, xs, **options)
        return jnp.sum(jnp.sin(ys)) + jnp.sum(jnp.cos(zs))

    got = jax.value_and_grad(loss)((pair, stack), None)
    assert len(calls) == 3  # both directions in one call, then one a layer
    want = jax.value_and_grad(loss)((pair, stack), "scan")
    assert_trees_close(got, want)


def test_automatic_choice_takes_cudnn_where_it_can_run(on_cuda):
    cell, params, xs, carry, _ = problem()
    args = (params, xs, carry, None, None, None)
    assert "cudnn" in kernels.available(cell)
    assert kernels.choose(cell, None, remat=False, traced_args=args) == "cudnn"
    assert "cudnn" not in kernels.available(jaxrnn.lstm(peephole=True))
    assert "cudnn" not in kernels.available(jaxrnn.gru())
    resets = jnp.zeros(xs.shape[:-1], bool)
    with_resets = (params, xs, carry, None, resets, None)
    assert kernels.choose(cell, None, remat=False, traced_args=with_resets) != "cudnn"
    bf16 = jax.tree.map(lambda a: a.astype(jnp.bfloat16), args[:3])
    assert kernels.choose(cell, None, remat=False, traced_args=(*bf16, None, None, None)) != "cudnn"
    with jax.default_matmul_precision("bfloat16"):  # cuDNN's TensorFloat-32 then
        assert kernels.choose(cell, None, remat=False, traced_args=args) == "cudnn"
    assert kernels.choose(cell, None, remat=True, traced_args=args) == "scan"


def test_forward_mode_and_second_derivatives_leave_cudnn(on_cuda):
    cell, params, xs, carry, _ = problem((2,), 3, 2, 3)

    def out(xs, implementation=None):
        return jaxrnn.unroll(cell, params, xs, carry, implementation=implementation)[1].sum()

    tangent = jnp.ones_like(xs)
    np.testing.assert_allclose(
        jax.jvp(out, (xs,), (tangent,))[1],
        jax.jvp(functools.partial(out, implementation="scan"), (xs,), (tangent,))[1],
        rtol=1e-5,
    )
    hessian_vector = jax.grad(lambda xs: jnp.vdot(jax.grad(out)(xs), tangent))(xs)
    want = jax.grad(
        lambda xs: jnp.vdot(jax.grad(functools.partial(out, implementation="scan"))(xs), tangent)
    )(xs)
    assert_trees_close(hessian_vector, want)
    with pytest.raises(jaxrnn.InputError, match="no forward-mode derivative"):
        jax.jvp(functools.partial(out, implementation="cudnn"), (xs,), (tangent,))


def test_a_hidden_second_derivative_stops_with_a_clear_error(on_cuda):
    cell, params, xs, carry, _ = problem((2,), 3, 2, 3)
    inner = jax.jit(
        lambda xs: jaxrnn.unroll(cell, params, xs, carry, implementation="cudnn")[1].sum()
    )
    with pytest.raises(jaxrnn.InputError, match="cuDNN's LSTM backward pass has no derivative"):
        jax.hessian(inner)(xs)


def test_asking_for_cudnn_where_it_cannot_run_names_the_reason(on_cuda):
    cell, params, xs, carry, _ = problem()
    with pytest.raises(jaxrnn.InputError, match="no peepholes"):
        peep = jaxrnn.lstm(peephole=True)
        p = peep.init(jax.random.key(0), 3, 6)
        jaxrnn.unroll(peep, p, xs, implementation="cudnn")
    with pytest.raises(jaxrnn.InputError, match="resets"):
        resets = jnp.zeros(xs.shape[:-1], bool)
        jaxrnn.unroll(cell, params, xs, carry, resets=resets, implementation="cudnn")
    with pytest.raises(jaxrnn.InputError, match="float32"):
        bf16 = jax.tree.map(lambda a: a.astype(jnp.bfloat16), (params, xs))
        jaxrnn.unroll(cell, *bf16, implementation="cudnn")
    with pytest.raises(jaxrnn.InputError, match="remat"):
        jaxrnn.unroll(cell, params, xs, remat=True, implementation="cudnn")


def test_without_a_cuda_gpu_asking_for_cudnn_says_so(monkeypatch):
    monkeypatch.setattr(_cudnn, "available", lambda: False)
    cell, params, xs, carry, _ = problem()
    assert "cudnn" not in kernels.available(cell)
    backend = jax.default_backend()
    with pytest.raises(
        jaxrnn.InputError, match=f"runs on a CUDA GPU.*default backend is {backend}"
    ):
        jaxrnn.unroll(cell, params, xs, carry, implementation="cudnn")
    with pytest.raises(jaxrnn.InputError, match="does not compute"):
        jaxrnn.unroll(
            jaxrnn.gru(), jaxrnn.gru().init(jax.random.key(0), 3, 6), xs, implementation="cudnn"
        )


def test_under_vmap_the_automatic_choice_batches_in_xla_instead(cudnn_calls):
    calls = cudnn_calls
    cell, params, xs, carry, weights = problem((6,), 5, 2, 4)

    def loss(params, x, carry, weight, implementation=None):
        _, ys = jaxrnn.unroll(cell, params, x, carry, implementation=implementation)
        return jnp.sum(ys * weight)

    # One example at a time, mapped: cuDNN would run once per example.
    per_example = jax.vmap(jax.value_and_grad(loss), (None, 0, 0, 0))
    got = jax.jit(per_example)(params, xs, carry, weights)
    assert calls == []
    want = jax.vmap(
        jax.value_and_grad(functools.partial(loss, implementation="scan")), (None, 0, 0, 0)
    )
    assert_trees_close(got, jax.jit(want)(params, xs, carry, weights))
    jax.jit(jax.value_and_grad(loss))(params, xs, carry, weights)  # the batch as xs's axis
    assert calls == [(6, 5, 2)]  # one call over the whole batch


def test_the_precision_setting_chooses_cudnns_math():
    for setting in ("highest", "float32", "F32_F32_F32", "TF32_TF32_F32_X3", "BF16_BF16_F32_X6"):
        assert _cudnn.math_precision(setting) == "highest"  # float32 products or better
    for setting in (None, "high", "tensorfloat32", "TF32_TF32_F32", "bfloat16", "default"):
        assert _cudnn.math_precision(setting) == "high"  # TensorFloat-32


def test_arrays_off_the_gpu_are_not_sent_to_cudnn():
    cell, params, xs, carry, _ = problem()
    assert _cudnn.placement_misfit(xs=xs) == "it runs on a CUDA GPU, and xs lies on cpu"
    with jax.default_device(jax.devices("cpu")[0]):
        assert "jax.default_device is" in _cudnn.placement_misfit(xs=xs)
    seen = []  # traced, an array's placement is not known: the default backend's is assumed
    jax.jit(lambda xs: seen.append(_cudnn.placement_misfit(xs=xs)) or xs)(xs)
    assert seen == [None]


def test_grad_of_a_vmap_sums_the_members_weight_gradients(on_cuda):
    cell, params, xs, carry, weights = problem((3, 2), 4, 2, 3)

    def loss(params, implementation):
        def one(xs, carry, weights):
            _, ys = jaxrnn.unroll(cell, params, xs, carry, implementation=implementation)
            return jnp.sum(ys * weights)

        return jnp.sum(jax.vmap(one)(xs, carry, weights))

    got = jax.jit(jax.value_and_grad(functools.partial(loss, implementation="cudnn")))(params)
    want = jax.jit(jax.value_and_grad(functools.partial(loss, implementation="scan")))(params)
    assert_trees_close(got, want)


@pytest.mark.parametrize("time_major", [False, True])
def test_a_bidirectional_layer_is_one_cudnn_call(cudnn_calls, time_major):
    cell = jaxrnn.lstm()
    rng = np.random.default_rng(4)
    pair = jaxrnn.bidirectional_init(cell, jax.random.key(3), 3, 5)
    pair = jax.tree.map(lambda a: jnp.asarray(rng.normal(0, 0.5, a.shape), jnp.float32), pair)
    shape = (7, 4, 3) if time_major else (4, 7, 3)
    xs = jnp.asarray(rng.normal(size=shape), jnp.float32)
    lengths = jnp.array([7, 3, 0, 1])
    carries = tuple(
        jax.tree.map(lambda a: jnp.asarray(rng.normal(0, 0.5, a.shape), jnp.float32), c)
        for c in (cell.init_carry(pair.forward, (4,)), cell.init_carry(pair.backward, (4,)))
    )

    def loss(pair, xs, carries, implementation):
        last, ys = jaxrnn.bidirectional(
            cell,
            pair,
            xs,
            lengths=lengths,
            carry=carries,
            merge=None,
            time_major=time_major,
            implementation=implementation,
        )
        weights = jnp.arange(1.0, 1.0 + ys[0].size).reshape(ys[0].shape) / ys[0].size
        return (
            jnp.sum(ys[0] * weights)
            - jnp.sum(ys[1] * weights**2)
            + sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree.leaves(last))
        )

    got = jax.jit(jax.value_and_grad(loss, (0, 1, 2)), static_argnums=3)(pair, xs, carries, None)
    assert len(cudnn_calls) == 1 and cudnn_calls[0][0] == 4  # one call, batch-major
    want = jax.jit(jax.value_and_grad(loss, (0, 1, 2)), static_argnums=3)(pair, xs, carries, "scan")
    assert_trees_close(got, want)
    last, _ = jaxrnn.bidirectional(
        cell, pair, xs, lengths=lengths, carry=carries, time_major=time_major
    )
    np.testing.assert_array_equal(last.backward.c[2], carries[1].c[2])  # length 0
