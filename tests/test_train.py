"""Clipping, optimizers and the train step: values against numpy, and bad updates never applied."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxrnn

RNG = np.random.default_rng(0)


def _grads():
    return {"a": jnp.asarray(RNG.standard_normal((3, 4)) * 10), "b": jnp.asarray([7.0, -0.5])}


def test_clip_elementwise_clamps_each_entry():
    grads = _grads()
    clipped, _ = jaxrnn.train.clip_elementwise(5.0).update(grads, None)
    jax.tree.map(lambda c, g: np.testing.assert_array_equal(c, np.clip(g, -5, 5)), clipped, grads)


def test_clip_by_global_norm_rescales_all_leaves_together():
    grads = _grads()
    norm = np.sqrt(sum(float((g**2).sum()) for g in jax.tree.leaves(grads)))
    clipped, _ = jaxrnn.train.clip_by_global_norm(1.0).update(grads, None)
    jax.tree.map(
        lambda c, g: np.testing.assert_allclose(c, np.asarray(g) / norm, rtol=1e-12),
        clipped,
        grads,
    )
    small = jax.tree.map(lambda g: g * 1e-3 / norm, grads)
    unchanged, _ = jaxrnn.train.clip_by_global_norm(1.0).update(small, None)
    jax.tree.map(np.testing.assert_array_equal, unchanged, small)


def test_clipping_rejects_non_positive_bounds():
    with pytest.raises(jaxrnn.InputError, match="max_value > 0, got -1"):
        jaxrnn.train.clip_elementwise(-1)
    with pytest.raises(jaxrnn.InputError, match="max_norm > 0, got 0"):
        jaxrnn.train.clip_by_global_norm(0)


def test_make_optimizer_sgd_with_clipping_matches_numpy():
    params = {"w": jnp.asarray(RNG.standard_normal(5))}
    grads = {"w": jnp.asarray([10.0, -10.0, 0.5, 3.0, -0.1])}
    opt = jaxrnn.make_optimizer(0.1, name="sgd", clip_value=1.0)
    updates, _ = opt.update(grads, opt.init(params), params)
    new = optax.apply_updates(params, updates)
    np.testing.assert_allclose(new["w"], params["w"] - 0.1 * np.clip(grads["w"], -1, 1))


def _lm_problem(seed=0):
    """A tiny LSTM that must output the previous input's sign: learnable in a few dozen steps."""
    cell = jaxrnn.lstm()
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    params = {
        "cell": cell.init(k1, 1, 8, dtype=jnp.float64),
        "head": jaxrnn.dense_init(k2, 8, 2, dtype=jnp.float64),
    }
    xs = jax.random.normal(k3, (16, 12, 1), jnp.float64)
    labels = jnp.concatenate([jnp.zeros((16, 1), int), (xs[:, :-1, 0] > 0).astype(int)], axis=1)

    def loss_fn(params, xs, labels):
        _, hs = jaxrnn.unroll(cell, params["cell"], xs)
        logits = jaxrnn.dense(params["head"], hs)
        return jaxrnn.softmax_cross_entropy(logits, labels).mean()

    return params, xs, labels, loss_fn


def test_train_step_sgd_equals_manual_update():
    params, xs, labels, loss_fn = _lm_problem()
    opt = optax.sgd(0.3)
    step = jaxrnn.make_train_step(loss_fn, opt)
    new_params, _, metrics = step(params, opt.init(params), xs, labels)
    loss, grads = jax.jit(jax.value_and_grad(loss_fn))(params, xs, labels)
    expected = jax.tree.map(lambda p, g: p - 0.3 * g, params, grads)
    chex_close = np.testing.assert_allclose
    jax.tree.map(lambda a, b: chex_close(a, b, rtol=1e-10, atol=1e-12), new_params, expected)
    np.testing.assert_allclose(metrics.loss, loss, rtol=1e-12)
    np.testing.assert_allclose(metrics.grad_norm, optax.tree.norm(grads), rtol=1e-12)
    assert bool(metrics.finite)


def test_train_step_learns_a_task_that_needs_memory():
    params, xs, labels, loss_fn = _lm_problem()
    opt = jaxrnn.make_optimizer(0.05, clip_norm=1.0)
    step = jaxrnn.make_train_step(loss_fn, opt)
    opt_state = opt.init(params)
    first = None
    for _ in range(150):
        params, opt_state, metrics = step(params, opt_state, xs, labels)
        first = first if first is not None else float(metrics.loss)
    # Chance is log 2 = 0.69 nats; remembering one step back gets close to 0.
    assert first > 0.6
    assert float(metrics.loss) < 0.1


def test_train_step_skips_non_finite_updates():
    params, xs, labels, loss_fn = _lm_problem()
    opt = optax.adam(0.1)
    opt_state = opt.init(params)
    step = jaxrnn.make_train_step(loss_fn, opt)
    bad_xs = xs.at[3, 4, 0].set(jnp.nan)
    new_params, new_state, metrics = step(params, opt_state, bad_xs, labels)
    assert not bool(metrics.finite)
    assert np.isnan(float(metrics.loss))
    jax.tree.map(np.testing.assert_array_equal, new_params, params)
    jax.tree.map(np.testing.assert_array_equal, new_state, opt_state)
    # The next good batch trains normally from the untouched state.
    good_params, _, good = step(new_params, new_state, xs, labels)
    assert bool(good.finite)
    assert not np.allclose(good_params["head"].w, params["head"].w)


@pytest.mark.parametrize(
    "optimizer",
    [
        optax.sgd(float("nan")),
        optax.sgd(float("inf")),
        optax.chain(optax.scale(1e300), optax.scale(1e300)),  # finite factors, infinite product
    ],
    ids=["sgd-lr-nan", "sgd-lr-inf", "adam-update-overflows"],
)
def test_train_step_skips_updates_that_are_not_finite_though_the_gradients_are(optimizer):
    """Finite loss and gradients, but an update that makes params or optimizer state NaN or Inf
    (a NaN or infinite learning rate, an optimizer that overflows): the step is not applied."""
    params, xs, labels, loss_fn = _lm_problem()
    opt_state = optimizer.init(params)
    new_params, new_state, metrics = jaxrnn.make_train_step(loss_fn, optimizer)(
        params, opt_state, xs, labels
    )
    assert np.isfinite(float(metrics.loss)) and np.isfinite(float(metrics.grad_norm))
    assert not bool(metrics.finite)
    jax.tree.map(np.testing.assert_array_equal, new_params, params)
    jax.tree.map(np.testing.assert_array_equal, new_state, opt_state)


@pytest.mark.parametrize("rate", [float("nan"), float("inf"), 0.0, -1e-3])
def test_make_optimizer_refuses_a_learning_rate_no_step_can_use(rate):
    with pytest.raises(jaxrnn.InputError, match="expected learning_rate a finite number > 0"):
        jaxrnn.make_optimizer(rate)


@pytest.mark.parametrize("rate", ["1e-3", None, [1e-3], jnp.array([1e-3]), True])
def test_make_optimizer_refuses_a_learning_rate_that_is_not_a_number(rate):
    message = (
        "make_optimizer: expected learning_rate a finite number > 0 or an optax schedule, "
        f"got {rate!r}"
    )
    with pytest.raises(jaxrnn.InputError, match=re.escape(message)):
        jaxrnn.make_optimizer(rate)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"clip_value": "5"}, "expected clip_value a number > 0 or None, got '5'"),
        ({"clip_value": -1.0}, "expected clip_value a number > 0 or None, got -1.0"),
        ({"clip_norm": float("nan")}, "expected clip_norm a number > 0 or None, got nan"),
        ({"clip_norm": True}, "expected clip_norm a number > 0 or None, got True"),
        ({"name": ["adam"]}, "expected name in ['adam', 'adamw', 'rmsprop', 'sgd'], got ['adam']"),
    ],
)
def test_make_optimizer_refuses_other_bad_arguments(options, message):
    with pytest.raises(jaxrnn.InputError, match=re.escape(f"make_optimizer: {message}")):
        jaxrnn.make_optimizer(1e-3, **options)


def test_make_optimizer_takes_schedules_and_scalar_arrays_as_learning_rates():
    """optax.inject_hyperparams passes the rate as an array, traced in the step and possibly 0
    during a warm-up: such a rate is taken as it is."""
    params, xs, labels, loss_fn = _lm_problem()
    for rate in (optax.linear_schedule(0.1, 0.0, 10), np.float32(0.1), jnp.float32(0.1)):
        jaxrnn.make_optimizer(rate)
    opt = optax.inject_hyperparams(jaxrnn.make_optimizer)(learning_rate=0.1)
    state = opt.init(params)
    state = state._replace(hyperparams={**state.hyperparams, "learning_rate": jnp.float32(0.0)})
    new_params, _, metrics = jaxrnn.make_train_step(loss_fn, opt)(params, state, xs, labels)
    assert bool(metrics.finite)
    jax.tree.map(np.testing.assert_array_equal, new_params, params)  # a step at rate 0


@pytest.mark.parametrize("jit", [True, False])
def test_train_step_rejects_an_opt_state_made_for_other_params(jit):
    params, xs, labels, loss_fn = _lm_problem()
    opt = jaxrnn.make_optimizer(0.1, clip_norm=1.0)
    step = jaxrnn.make_train_step(loss_fn, opt, jit=jit)
    other = {**params, "head": jaxrnn.dense_init(jax.random.key(1), 8, 3, dtype=jnp.float64)}
    message = (
        "train_step: expected opt_state made by optimizer.init for these params, got one made for "
        "other params (or by another optimizer): at [1][0].mu['head'].w it has an array of shape "
        "(8, 3), where optimizer.init(params) has an array of shape (8, 2); make it with "
        "optimizer.init(params) of the params passed to the step"
    )
    with pytest.raises(jaxrnn.InputError, match=re.escape(message)):
        step(params, opt.init(other), xs, labels)
    with pytest.raises(jaxrnn.InputError, match=r"at \[1\]\[0\]\.count it has no array"):
        step(params, jaxrnn.make_optimizer(0.1, name="sgd", clip_norm=1.0).init(params), xs, labels)
    with pytest.raises(jaxrnn.InputError, match="it has no array, where optimizer.init"):
        step(params, opt.init({"cell": params["cell"]}), xs, labels)


def test_train_step_rejects_non_scalar_loss():
    params, xs, labels, _ = _lm_problem()

    def per_example(params, xs, labels):
        return jnp.sum(params["head"].w) * jnp.ones(3)

    step = jaxrnn.make_train_step(per_example, optax.sgd(0.1))
    with pytest.raises((jaxrnn.InputError, TypeError), match="scalar"):
        step(params, optax.sgd(0.1).init(params), xs, labels)


def test_learning_rate_schedule_warms_up_then_decays_to_final():
    from jaxrnn.train import learning_rate_schedule

    assert learning_rate_schedule(0.1, steps=100) == 0.1  # a constant rate stays a number
    schedule = learning_rate_schedule(0.1, steps=100, warmup_steps=10, final=0.001)
    rates = np.asarray([schedule(step) for step in (0, 5, 10, 55, 100)])
    np.testing.assert_allclose(rates[:3], [0.0, 0.05, 0.1], rtol=1e-6)
    np.testing.assert_allclose(rates[3], 0.001 + (0.1 - 0.001) * 0.5, rtol=1e-6)  # cosine halfway
    np.testing.assert_allclose(rates[4], 0.001, rtol=1e-6)
    no_warmup = learning_rate_schedule(0.1, steps=100, final=0.01)
    np.testing.assert_allclose([no_warmup(0), no_warmup(100)], [0.1, 0.01], rtol=1e-6)
