"""Backprop through time: ``jax.grad`` through `jaxrnn.unroll` and ``cell.step``, in float64.

Three independent references:

1. central finite differences (``jax.test_util.check_grads``) for every cell, with lengths,
   reverse and remat;
2. the hand-derived backward equations of the deeplearning.ai Sequence Models course (week 1,
   "Building a Recurrent Neural Network - Step by Step", optional backprop part), written below in
   plain numpy in the course's layout: column vectors, x (n_x, m, T_x), a (n_a, m, T_x);
3. for the vanilla RNN, the product of per-step Jacobians d a<t>/d a<t-1> computed in numpy, which
   shrinks or grows geometrically with the scale of an orthogonal recurrent matrix.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cells_under_test import CELLS
from cells_under_test import NAMES as CELL_NAMES
from jax.test_util import check_grads

import jaxrnn

N_X, N_A, BATCH, T = 3, 4, 3, 5
LENGTHS = (T, 2, 0)  # one full example, one padded, one empty


# check_grads compares a central-difference directional derivative with the VJP in one random
# direction. With eps 1e-5 the truncation error is ~1e-9 here (it scales as eps²; eps 1e-4 gives
# ~2e-7 at second order), so 1e-6 has margin.
FD_TOL = {"atol": 1e-6, "rtol": 1e-6, "eps": 1e-5}
# Course equations against jax.vjp: the same float64 arithmetic in a different order.
EXACT = {"rtol": 1e-10, "atol": 1e-12}


# ------------------------------------------------------------------------------------- problems


def random_params(name: str, rng: np.random.Generator, n_x: int = N_X, n_a: int = N_A):
    """The cell's params with every leaf random and non-zero (biases and peepholes included)."""
    params = CELLS[name].init(jax.random.key(0), n_x, n_a, dtype=jnp.float64)
    if name != "rnn_relu":
        return jax.tree.map(lambda leaf: jnp.asarray(rng.uniform(-1.0, 1.0, leaf.shape)), params)
    # ReLU has a kink at 0. Alternate units are biased to +2 (active) and -2 (dead), and the rest
    # is bounded so that no pre-activation comes within 0.9 of the kink: with |x| <= 1 and
    # |a<0>| <= 1, |x w_x| <= 0.3, |a| <= 3 by induction, |a w_h| <= 0.6 and |b_h| <= 0.1. A
    # finite-difference step of 1e-5 cannot cross it.
    sign = np.where(np.arange(n_a) % 2 == 0, 1.0, -1.0)
    return type(params)(  # ReLURNNParams: the type says they are a ReLU RNN's
        w_x=jnp.asarray(rng.uniform(-0.1, 0.1, (n_x, n_a))),
        w_h=jnp.asarray(rng.uniform(-0.05, 0.05, (n_a, n_a))),
        b_x=jnp.asarray(2.0 * sign + rng.uniform(-0.1, 0.1, n_a)),
        b_h=jnp.asarray(rng.uniform(-0.05, 0.05, n_a)),
    )


def random_carry(name: str, params, rng: np.random.Generator, batch_shape=(BATCH,)):
    zeros = CELLS[name].init_carry(params, batch_shape)
    return jax.tree.map(lambda leaf: jnp.asarray(rng.uniform(-1.0, 1.0, leaf.shape)), zeros)


def problem(name: str, seed: int = 0):
    """(params, xs, carry0, rng) for a batch of BATCH sequences of T steps."""
    rng = np.random.default_rng(seed)
    params = random_params(name, rng)
    xs = jnp.asarray(rng.uniform(-1.0, 1.0, (BATCH, T, N_X)))
    return params, xs, random_carry(name, params, rng), rng


def weighted_sum_loss(rng: np.random.Generator, ys_shape, carry):
    """A scalar loss sum(w_y * ys) + sum(w_c * carry) with fixed random weights."""
    w_y = jnp.asarray(rng.normal(size=ys_shape))
    w_c = jax.tree.map(lambda leaf: jnp.asarray(rng.normal(size=leaf.shape)), carry)

    def loss(carry, ys):
        per_leaf = jax.tree.map(lambda w, leaf: jnp.sum(w * leaf), w_c, carry)
        return jnp.sum(w_y * ys) + sum(jax.tree.leaves(per_leaf))

    return loss, w_y, w_c


# --------------------------------------------------------------- 1. against finite differences


UNROLL_OPTIONS = {
    "plain": {},
    "lengths": {"lengths": jnp.array(LENGTHS)},
    "lengths_reverse": {"lengths": jnp.array(LENGTHS), "reverse": True},
    "remat_hoisted": {"remat": True, "implementation": "hoisted"},
}


@pytest.mark.parametrize("option", list(UNROLL_OPTIONS))
@pytest.mark.parametrize("name", CELL_NAMES)
def test_unroll_grads_match_finite_differences(name, option):
    params, xs, carry0, rng = problem(name, seed=1)
    cell, kwargs = CELLS[name], UNROLL_OPTIONS[option]
    loss, _, _ = weighted_sum_loss(rng, (BATCH, T, N_A), carry0)

    def f(params, xs, carry0):
        return loss(*jaxrnn.unroll(cell, params, xs, carry0, **kwargs))

    # jit only spares re-tracing the finite-difference evaluations; the VJPs are jaxrnn's.
    order = 2 if option == "plain" else 1
    check_grads(jax.jit(f), (params, xs, carry0), order=order, modes=["rev"], **FD_TOL)


@pytest.mark.parametrize("name", CELL_NAMES)
def test_unroll_grads_ignore_padded_steps(name):
    params, xs, carry0, rng = problem(name, seed=2)
    cell = CELLS[name]
    loss, _, w_c = weighted_sum_loss(rng, (BATCH, T, N_A), carry0)

    # lengths is a jit argument here, so unroll sees a tracer (its run-time NaN guard is traced
    # too); the finite-difference tests above close over concrete lengths.
    @jax.jit
    def grads_forward_and_reverse(xs, carry0, lengths):
        def f(xs, carry0, reverse):
            return loss(*jaxrnn.unroll(cell, params, xs, carry0, lengths=lengths, reverse=reverse))

        return [jax.grad(f, argnums=(0, 1))(xs, carry0, reverse) for reverse in (False, True)]

    for d_xs, d_carry0 in grads_forward_and_reverse(xs, carry0, jnp.array(LENGTHS)):
        for i, length in enumerate(LENGTHS):
            np.testing.assert_array_equal(d_xs[i, length:], 0.0)  # padding influences nothing
            assert np.all(np.any(d_xs[i, :length] != 0.0, axis=-1))  # valid steps all do
        # An empty example returns its initial carry unchanged: d loss / d a<0> = w_c exactly.
        assert LENGTHS[-1] == 0
        for got, want in zip(jax.tree.leaves(d_carry0), jax.tree.leaves(w_c), strict=True):
            np.testing.assert_array_equal(got[-1], want[-1])


# ------------------------------------------ 2. against the course's hand-derived backward pass
# Plain numpy in the course's layout: column vectors, x (n_x, m, T_x), a (n_a, m, T_x), W·x and
# W·a as in the assignment. The forward passes omit the course's output layer y = softmax(W_ya a +
# b_y), which is not part of a jaxrnn cell.


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def rnn_cell_forward(xt, a_prev, parameters):
    Wax, Waa, ba = parameters["Wax"], parameters["Waa"], parameters["ba"]
    a_next = np.tanh(Wax @ xt + Waa @ a_prev + ba)
    return a_next, (a_next, a_prev, xt, parameters)


def rnn_forward(x, a0, parameters):
    n_x, m, T_x = x.shape
    a = np.zeros((a0.shape[0], m, T_x))
    caches, a_next = [], a0
    for t in range(T_x):
        a_next, cache = rnn_cell_forward(x[:, :, t], a_next, parameters)
        a[:, :, t] = a_next
        caches.append(cache)
    return a, (caches, x)


def rnn_cell_backward(da_next, cache):
    a_next, a_prev, xt, parameters = cache
    Wax, Waa = parameters["Wax"], parameters["Waa"]
    dtanh = (1 - a_next**2) * da_next
    return {
        "dxt": Wax.T @ dtanh,
        "da_prev": Waa.T @ dtanh,
        "dWax": dtanh @ xt.T,
        "dWaa": dtanh @ a_prev.T,
        "dba": np.sum(dtanh, axis=1, keepdims=True),
    }


def rnn_backward(da, caches):
    caches, x = caches
    n_a, m, T_x = da.shape
    n_x = x.shape[0]
    dx = np.zeros((n_x, m, T_x))
    dWax, dWaa, dba = np.zeros((n_a, n_x)), np.zeros((n_a, n_a)), np.zeros((n_a, 1))
    da_prevt = np.zeros((n_a, m))
    for t in reversed(range(T_x)):
        gradients = rnn_cell_backward(da[:, :, t] + da_prevt, caches[t])
        dx[:, :, t] = gradients["dxt"]
        da_prevt = gradients["da_prev"]
        dWax += gradients["dWax"]
        dWaa += gradients["dWaa"]
        dba += gradients["dba"]
    return {"dx": dx, "da0": da_prevt, "dWax": dWax, "dWaa": dWaa, "dba": dba}


def lstm_cell_forward(xt, a_prev, c_prev, parameters):
    p = parameters
    concat = np.concatenate([a_prev, xt], axis=0)
    ft = sigmoid(p["Wf"] @ concat + p["bf"])
    it = sigmoid(p["Wi"] @ concat + p["bi"])
    cct = np.tanh(p["Wc"] @ concat + p["bc"])
    c_next = ft * c_prev + it * cct
    ot = sigmoid(p["Wo"] @ concat + p["bo"])
    a_next = ot * np.tanh(c_next)
    return a_next, c_next, (a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters)


def lstm_forward(x, a0, parameters, c0=None):
    """The course's forward pass; c<0> is zero as in the course unless ``c0`` is given."""
    n_x, m, T_x = x.shape
    n_a = a0.shape[0]
    a, c = np.zeros((n_a, m, T_x)), np.zeros((n_a, m, T_x))
    a_next, c_next = a0, (np.zeros((n_a, m)) if c0 is None else c0)
    caches = []
    for t in range(T_x):
        a_next, c_next, cache = lstm_cell_forward(x[:, :, t], a_next, c_next, parameters)
        a[:, :, t], c[:, :, t] = a_next, c_next
        caches.append(cache)
    return a, c, (caches, x)


def lstm_cell_backward(da_next, dc_next, cache):
    a_next, c_next, a_prev, c_prev, ft, it, cct, ot, xt, parameters = cache
    p, n_a = parameters, a_next.shape[0]
    tanh_c = np.tanh(c_next)
    dot = da_next * tanh_c * ot * (1 - ot)
    dcct = (dc_next * it + ot * (1 - tanh_c**2) * it * da_next) * (1 - cct**2)
    dit = (dc_next * cct + ot * (1 - tanh_c**2) * cct * da_next) * it * (1 - it)
    dft = (dc_next * c_prev + ot * (1 - tanh_c**2) * c_prev * da_next) * ft * (1 - ft)
    concat = np.concatenate([a_prev, xt], axis=0)
    gates = {"f": dft, "i": dit, "c": dcct, "o": dot}
    gradients = {f"dW{g}": dg @ concat.T for g, dg in gates.items()}
    gradients.update({f"db{g}": np.sum(dg, axis=1, keepdims=True) for g, dg in gates.items()})
    gradients["da_prev"] = sum(p[f"W{g}"][:, :n_a].T @ dg for g, dg in gates.items())
    gradients["dc_prev"] = dc_next * ft + ot * (1 - tanh_c**2) * ft * da_next
    gradients["dxt"] = sum(p[f"W{g}"][:, n_a:].T @ dg for g, dg in gates.items())
    return gradients


def lstm_backward(da, caches):
    """The course's backward pass; also returns dc0, which the course (c<0> = 0) drops."""
    caches, x = caches
    n_a, m, T_x = da.shape
    n_x = x.shape[0]
    dx = np.zeros((n_x, m, T_x))
    sums = {f"dW{g}": np.zeros((n_a, n_a + n_x)) for g in "fico"}
    sums.update({f"db{g}": np.zeros((n_a, 1)) for g in "fico"})
    da_prevt, dc_prevt = np.zeros((n_a, m)), np.zeros((n_a, m))
    for t in reversed(range(T_x)):
        gradients = lstm_cell_backward(da[:, :, t] + da_prevt, dc_prevt, caches[t])
        dx[:, :, t] = gradients["dxt"]
        da_prevt, dc_prevt = gradients["da_prev"], gradients["dc_prev"]
        for key in sums:
            sums[key] += gradients[key]
    return {"dx": dx, "da0": da_prevt, "dc0": dc_prevt, **sums}


# The course's parameters, mapped explicitly onto jaxrnn's (the maps are linear, so the same
# functions map the course's gradients dW·, db· onto jaxrnn's gradient layout).


def rnn_params_from_course(p) -> jaxrnn.RNNParams:
    """w_x = W_axᵀ, w_h = W_aaᵀ, b_x = b_a, b_h = 0."""
    n_a = p["Waa"].shape[0]
    return jaxrnn.RNNParams(
        w_x=jnp.asarray(p["Wax"].T),
        w_h=jnp.asarray(p["Waa"].T),
        b_x=jnp.asarray(p["ba"][:, 0]),
        b_h=jnp.zeros(n_a),
    )


LSTM_GATES = ("i", "f", "c", "o")  # the course's names for jaxrnn's stacking (u, f, c̃, o)


def lstm_params_from_course(p) -> jaxrnn.LSTMParams:
    """Gates stacked along the last axis; W· = [W·a | W·x] split at column n_a; b_h = 0."""
    n_a = p["Wf"].shape[0]
    return jaxrnn.LSTMParams(
        w_x=jnp.asarray(np.concatenate([p[f"W{g}"][:, n_a:].T for g in LSTM_GATES], axis=1)),
        w_h=jnp.asarray(np.concatenate([p[f"W{g}"][:, :n_a].T for g in LSTM_GATES], axis=1)),
        b_x=jnp.asarray(np.concatenate([p[f"b{g}"][:, 0] for g in LSTM_GATES])),
        b_h=jnp.zeros(4 * n_a),
    )


def strip_d(gradients):
    """{"dWax": …, "dba": …} -> {"Wax": …, "ba": …}, for the params maps above."""
    return {key[1:]: value for key, value in gradients.items() if key[:2] in ("dW", "db")}


def course_rnn_problem(seed, n_x=3, n_a=5, m=10, T_x=4):
    rng = np.random.default_rng(seed)
    parameters = {
        "Wax": rng.normal(size=(n_a, n_x)),
        "Waa": rng.normal(size=(n_a, n_a)),
        "ba": rng.normal(size=(n_a, 1)),
    }
    x, a0 = rng.normal(size=(n_x, m, T_x)), rng.normal(size=(n_a, m))
    return parameters, x, a0, rng.normal(size=(n_a, m, T_x))


def course_lstm_problem(seed, n_x=3, n_a=5, m=10, T_x=7):
    rng = np.random.default_rng(seed)
    parameters = {f"W{g}": rng.normal(size=(n_a, n_a + n_x)) for g in LSTM_GATES}
    parameters.update({f"b{g}": rng.normal(size=(n_a, 1)) for g in LSTM_GATES})
    x, a0, c0 = (rng.normal(size=s) for s in ((n_x, m, T_x), (n_a, m), (n_a, m)))
    return parameters, x, a0, c0, rng.normal(size=(n_a, m, T_x))


def assert_params_grads_equal(got, course_grads, params_from_course):
    want = params_from_course(strip_d(course_grads))
    np.testing.assert_allclose(got.w_x, want.w_x, **EXACT)
    np.testing.assert_allclose(got.w_h, want.w_h, **EXACT)
    np.testing.assert_allclose(got.b_x, want.b_x, **EXACT)
    np.testing.assert_allclose(got.b_h, want.b_x, **EXACT)  # b = b_x + b_h: same gradient


def test_rnn_cell_backward_matches_course():
    parameters, x, a0, da = course_rnn_problem(seed=10)
    xt, a_prev, da_next = x[:, :, 0], a0, da[:, :, 0]
    a_next, cache = rnn_cell_forward(xt, a_prev, parameters)
    course = rnn_cell_backward(da_next, cache)

    cell, params = jaxrnn.rnn(), rnn_params_from_course(parameters)
    (_, y), vjp = jax.vjp(cell.step, params, jnp.asarray(a_prev.T), jnp.asarray(xt.T))
    np.testing.assert_allclose(y, a_next.T, **EXACT)
    # y and the new carry are both a<t>; the cotangent goes on y, zero on the carry.
    d_params, d_a_prev, d_xt = vjp((jnp.zeros_like(y), jnp.asarray(da_next.T)))

    np.testing.assert_allclose(d_xt, course["dxt"].T, **EXACT)
    np.testing.assert_allclose(d_a_prev, course["da_prev"].T, **EXACT)
    assert_params_grads_equal(d_params, course, rnn_params_from_course)


def test_rnn_backward_matches_course():
    parameters, x, a0, da = course_rnn_problem(seed=11)
    a, caches = rnn_forward(x, a0, parameters)
    course = rnn_backward(da, caches)

    cell, params = jaxrnn.rnn(), rnn_params_from_course(parameters)
    xs = jnp.asarray(x.transpose(1, 2, 0))  # (n_x, m, T_x) -> (m, T_x, n_x)

    def loss(params, xs, a0):  # d loss / d a<t> = da[:, :, t] for every t
        _, ys = jaxrnn.unroll(cell, params, xs, a0)
        return jnp.sum(ys * jnp.asarray(da.transpose(1, 2, 0))), ys

    (d_params, d_xs, d_a0), ys = jax.grad(loss, argnums=(0, 1, 2), has_aux=True)(
        params, xs, jnp.asarray(a0.T)
    )
    np.testing.assert_allclose(ys, a.transpose(1, 2, 0), **EXACT)
    np.testing.assert_allclose(d_xs, course["dx"].transpose(1, 2, 0), **EXACT)
    np.testing.assert_allclose(d_a0, course["da0"].T, **EXACT)
    assert_params_grads_equal(d_params, course, rnn_params_from_course)


def test_lstm_cell_backward_matches_course():
    parameters, x, a0, c0, da = course_lstm_problem(seed=12)
    rng = np.random.default_rng(13)
    xt, da_next, dc_next = x[:, :, 0], da[:, :, 0], rng.normal(size=c0.shape)
    a_next, c_next, cache = lstm_cell_forward(xt, a0, c0, parameters)
    course = lstm_cell_backward(da_next, dc_next, cache)

    cell, params = jaxrnn.lstm(), lstm_params_from_course(parameters)
    carry = jaxrnn.LSTMState(h=jnp.asarray(a0.T), c=jnp.asarray(c0.T))
    (new_carry, y), vjp = jax.vjp(cell.step, params, carry, jnp.asarray(xt.T))
    np.testing.assert_allclose(y, a_next.T, **EXACT)
    np.testing.assert_allclose(new_carry.c, c_next.T, **EXACT)
    d_new_carry = jaxrnn.LSTMState(h=jnp.zeros_like(y), c=jnp.asarray(dc_next.T))
    d_params, d_carry, d_xt = vjp((d_new_carry, jnp.asarray(da_next.T)))

    np.testing.assert_allclose(d_xt, course["dxt"].T, **EXACT)
    np.testing.assert_allclose(d_carry.h, course["da_prev"].T, **EXACT)
    np.testing.assert_allclose(d_carry.c, course["dc_prev"].T, **EXACT)
    assert d_params.peephole is None
    assert_params_grads_equal(d_params, course, lstm_params_from_course)


def test_lstm_backward_matches_course():
    parameters, x, a0, c0, da = course_lstm_problem(seed=14)
    a, c, caches = lstm_forward(x, a0, parameters, c0)
    course = lstm_backward(da, caches)

    cell, params = jaxrnn.lstm(), lstm_params_from_course(parameters)
    xs = jnp.asarray(x.transpose(1, 2, 0))  # (n_x, m, T_x) -> (m, T_x, n_x)
    carry0 = jaxrnn.LSTMState(h=jnp.asarray(a0.T), c=jnp.asarray(c0.T))

    def loss(params, xs, carry0):  # d loss / d a<t> = da[:, :, t]; nothing on the last c<T_x>
        last, ys = jaxrnn.unroll(cell, params, xs, carry0)
        return jnp.sum(ys * jnp.asarray(da.transpose(1, 2, 0))), (last, ys)

    (d_params, d_xs, d_carry0), (last, ys) = jax.grad(loss, argnums=(0, 1, 2), has_aux=True)(
        params, xs, carry0
    )
    np.testing.assert_allclose(ys, a.transpose(1, 2, 0), **EXACT)
    np.testing.assert_allclose(last.c, c[:, :, -1].T, **EXACT)
    np.testing.assert_allclose(d_xs, course["dx"].transpose(1, 2, 0), **EXACT)
    np.testing.assert_allclose(d_carry0.h, course["da0"].T, **EXACT)
    np.testing.assert_allclose(d_carry0.c, course["dc0"].T, **EXACT)
    assert_params_grads_equal(d_params, course, lstm_params_from_course)


# --------------------------------------------------- 3. vanishing and exploding, with real values


def orthogonal(rng: np.random.Generator, n: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(n, n)))
    return q * np.sign(np.diag(r))


def rnn_jacobians_through_time(scale: float, input_scale: float, n_x=3, n_a=6, T_x=16):
    """d a<t> / d x<1> for t = 1…T_x, by jax (reverse mode) and by numpy's product of Jacobians.

    The recurrent matrix is ``scale`` times an orthogonal matrix; the inputs are ``input_scale``
    times standard normal, so small inputs keep tanh in its linear regime.
    """
    rng = np.random.default_rng(20)
    w_x = rng.normal(size=(n_x, n_a)) / np.sqrt(n_x)
    w_h = scale * orthogonal(rng, n_a)
    b_x = input_scale * rng.normal(size=n_a)
    params = jaxrnn.RNNParams(*map(jnp.asarray, (w_x, w_h, b_x, np.zeros(n_a))))
    xs = jnp.asarray(input_scale * rng.normal(size=(T_x, n_x)))

    def outputs(x1):  # a<1>…a<T_x> as a function of x<1>, the other inputs fixed
        return jaxrnn.unroll(jaxrnn.rnn(), params, xs.at[0].set(x1))[1]

    jac = jax.jacrev(outputs)(xs[0])  # (T_x, n_a, n_x): vmap of the VJP, i.e. of jax.grad
    a = np.asarray(outputs(xs[0]))

    # Column-vector chain rule: d a<1>/d x<1> = diag(1 - a<1>²) W_ax, and each later step
    # multiplies on the left by d a<t>/d a<t-1> = diag(1 - a<t>²) W_aa, with W_aa = w_hᵀ.
    expected = np.zeros((T_x, n_a, n_x))
    expected[0] = (1 - a[0] ** 2)[:, None] * w_x.T
    for t in range(1, T_x):
        expected[t] = (1 - a[t] ** 2)[:, None] * (w_h.T @ expected[t - 1])
    return np.asarray(jac), expected


@pytest.mark.parametrize("input_scale", [1e-6, 1.0], ids=["linear", "saturating"])
@pytest.mark.parametrize("scale", [0.5, 1.5])
def test_rnn_jacobian_through_time_is_product_of_step_jacobians(scale, input_scale):
    jac, expected = rnn_jacobians_through_time(scale, input_scale)
    for t in range(len(jac)):
        error = np.linalg.norm(jac[t] - expected[t])
        assert error <= 1e-10 * np.linalg.norm(expected[t]), (t, error)
    # ‖diag(tanh') s Qᵀ M‖_F <= s ‖M‖_F since 0 < tanh' <= 1: each step shrinks by at most s,
    # by strictly more where tanh saturates.
    norms = np.linalg.norm(jac, axis=(1, 2))
    ratios = norms[1:] / norms[:-1]
    assert np.all(ratios <= scale * (1 + 1e-12))
    if input_scale == 1.0:  # saturated: far below the linear regime's s^(T-1)
        assert np.all(ratios < scale)
        assert norms[-1] / norms[0] < 1e-3 * scale ** (len(norms) - 1)


@pytest.mark.parametrize(
    ("scale", "shrinks"), [(0.5, True), (1.5, False)], ids=["vanishing", "exploding"]
)
def test_rnn_gradient_norm_through_time_is_geometric_in_recurrent_scale(scale, shrinks):
    jac, expected = rnn_jacobians_through_time(scale, input_scale=1e-6)
    norms = np.linalg.norm(jac, axis=(1, 2))
    expected_norms = np.linalg.norm(expected, axis=(1, 2))
    np.testing.assert_allclose(norms, expected_norms, rtol=1e-10)
    # Each step multiplies by (nearly) scale·orthogonal: ‖s Q M‖_F = s ‖M‖_F. tanh' = 1 - a² stays
    # within ~1e-6 of 1 at these inputs, so the per-step ratio is scale to ~1e-6.
    ratios = norms[1:] / norms[:-1]
    np.testing.assert_allclose(ratios, expected_norms[1:] / expected_norms[:-1], rtol=1e-10)
    np.testing.assert_allclose(ratios, scale, rtol=1e-5)
    assert np.all(ratios < 1) if shrinks else np.all(ratios > 1)
    growth = norms[-1] / norms[0]
    np.testing.assert_allclose(growth, scale ** (len(norms) - 1), rtol=1e-5)
    assert (growth < 1e-4) if shrinks else (growth > 1e2)
