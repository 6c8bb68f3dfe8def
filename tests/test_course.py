"""jaxrnn.course against a numpy transcription of the course's functions (course_reference.py).

Every function on random inputs of several shapes, outputs and caches entry by entry; float64 to
1e-10 and float32 to float32 rounding; the character model's optimize step by step, in place, and
against autodiff through jaxrnn.unroll; the on-disk cache of its compiled programs; and the errors
for bad arguments.
"""

import functools
import hashlib
import json
import os
import pathlib
import subprocess
import sys
import threading

import course_reference as ref
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental.compilation_cache import compilation_cache as jax_cache
from jax.extend.random import threefry_2x32

import jaxrnn
from jaxrnn import _course_host as course_host
from jaxrnn import course

COMPILE_PROCESS = course._CompileProcess

SHAPES = [  # (n_x, n_a, n_y, m, T_x)
    (3, 5, 2, 10, 4),
    (1, 2, 3, 2, 3),
    (4, 3, 4, 3, 7),
]
F64 = {"rtol": 1e-10, "atol": 1e-10}
# float32 inputs are exact in float64, so the float32 results differ from the float64 reference by
# float32 rounding (eps ≈ 1.2e-7) accumulated over a few matmuls and T_x ≤ 7 steps.
F32 = {"rtol": 1e-5, "atol": 1e-5}


@pytest.fixture(autouse=True, scope="module")
def private_cache(tmp_path_factory):
    """optimize and sample keep compiled programs in a directory of this module's own, with
    jax's own persistent cache off (the suite's, on elsewhere, would keep them instead)."""
    folder = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", None)
    jax_cache.reset_cache()  # jax goes on with a cache it has opened until it is reset
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JAXRNN_CACHE_DIR", str(tmp_path_factory.mktemp("jaxrnn_cache")))
        yield
    jax.config.update("jax_compilation_cache_dir", folder)
    jax_cache.reset_cache()


def rnn_parameters(rng, n_x, n_a, n_y, scale=0.5):
    sizes = {"Wax": (n_a, n_x), "Waa": (n_a, n_a), "Wya": (n_y, n_a), "ba": (n_a, 1)}
    sizes["by"] = (n_y, 1)
    return {key: rng.normal(0.0, scale, size) for key, size in sizes.items()}


def lstm_parameters(rng, n_x, n_a, n_y, scale=0.5):
    p = {}
    for gate in "fico":
        p["W" + gate] = rng.normal(0.0, scale, (n_a, n_a + n_x))
        p["b" + gate] = rng.normal(0.0, scale, (n_a, 1))
    p["Wy"] = rng.normal(0.0, scale, (n_y, n_a))
    p["by"] = rng.normal(0.0, scale, (n_y, 1))
    return p


def cast(tree, dtype):
    if isinstance(tree, dict):
        return {key: cast(value, dtype) for key, value in tree.items()}
    return np.asarray(tree, dtype)


def assert_close(got, want, tol=F64, dtype=np.float64):
    assert isinstance(got, np.ndarray) and got.dtype == dtype
    assert got.shape == np.shape(want)
    np.testing.assert_allclose(got, want, **tol)


def assert_dict_close(got, want, tol=F64, dtype=np.float64):
    assert sorted(got) == sorted(want)
    for key in want:
        assert_close(got[key], want[key], tol, dtype)


def assert_cache_equal(got, want, parameters, tol=F64, dtype=np.float64):
    """Every array of a cell cache, and the parameters entry: the caller's dict itself."""
    assert isinstance(got, tuple) and len(got) == len(want)
    for entry, expected in zip(got[:-1], want[:-1], strict=True):
        assert_close(entry, expected, tol, dtype)
    assert got[-1] is parameters


# ------------------------------------------------------------------------------------- forward


@pytest.mark.parametrize("shape", SHAPES)
def test_rnn_cell_forward_matches_reference(shape):
    n_x, n_a, n_y, m, _ = shape
    rng = np.random.default_rng(1)
    p = rnn_parameters(rng, n_x, n_a, n_y)
    xt, a_prev = rng.normal(size=(n_x, m)), rng.normal(size=(n_a, m))
    a_next, yt, cache = course.rnn_cell_forward(xt, a_prev, p)
    want_a, want_y, want_cache = ref.rnn_cell_forward(xt, a_prev, p)
    assert_close(a_next, want_a)
    assert_close(yt, want_y)
    np.testing.assert_allclose(yt.sum(axis=0), 1.0, rtol=1e-12)
    assert_cache_equal(cache, want_cache, p)


@pytest.mark.parametrize("shape", SHAPES)
def test_rnn_forward_matches_reference(shape):
    n_x, n_a, n_y, m, n_steps = shape
    rng = np.random.default_rng(2)
    p = rnn_parameters(rng, n_x, n_a, n_y)
    x, a0 = rng.normal(size=(n_x, m, n_steps)), rng.normal(size=(n_a, m))
    a, y, (cell_caches, cached_x) = course.rnn_forward(x, a0, p)
    want_a, want_y, (want_caches, _) = ref.rnn_forward(x, a0, p)
    assert_close(a, want_a)
    assert_close(y, want_y)
    assert_close(cached_x, x)
    assert isinstance(cell_caches, list) and len(cell_caches) == n_steps
    for got, want in zip(cell_caches, want_caches, strict=True):
        assert_cache_equal(got, want, p)


@pytest.mark.parametrize("shape", SHAPES)
def test_lstm_cell_forward_matches_reference(shape):
    n_x, n_a, n_y, m, _ = shape
    rng = np.random.default_rng(3)
    p = lstm_parameters(rng, n_x, n_a, n_y)
    xt, a_prev, c_prev = (rng.normal(size=s) for s in [(n_x, m), (n_a, m), (n_a, m)])
    a_next, c_next, yt, cache = course.lstm_cell_forward(xt, a_prev, c_prev, p)
    want_a, want_c, want_y, want_cache = ref.lstm_cell_forward(xt, a_prev, c_prev, p)
    assert_close(a_next, want_a)
    assert_close(c_next, want_c)
    assert_close(yt, want_y)
    assert_cache_equal(cache, want_cache, p)  # ft, it, cct, ot included


@pytest.mark.parametrize("shape", SHAPES)
def test_lstm_forward_matches_reference(shape):
    n_x, n_a, n_y, m, n_steps = shape
    rng = np.random.default_rng(4)
    p = lstm_parameters(rng, n_x, n_a, n_y)
    x, a0 = rng.normal(size=(n_x, m, n_steps)), rng.normal(size=(n_a, m))
    a, y, c, (cell_caches, cached_x) = course.lstm_forward(x, a0, p)
    want_a, want_y, want_c, (want_caches, _) = ref.lstm_forward(x, a0, p)
    assert_close(a, want_a)
    assert_close(y, want_y)
    assert_close(c, want_c)
    assert_close(cached_x, x)
    assert isinstance(cell_caches, list) and len(cell_caches) == n_steps
    for got, want in zip(cell_caches, want_caches, strict=True):
        assert_cache_equal(got, want, p)


def test_lstm_gates_in_cache_saturated_values():
    """Gate values near 0 and 1 and a memory cell of 0 still come out of the cache exactly."""
    n_x, n_a, n_y, m = 2, 3, 2, 4
    rng = np.random.default_rng(5)
    p = lstm_parameters(rng, n_x, n_a, n_y, scale=8.0)
    xt, a_prev = rng.normal(size=(n_x, m)), rng.normal(size=(n_a, m))
    c_prev = np.zeros((n_a, m))
    cache = course.lstm_cell_forward(xt, a_prev, c_prev, p)[3]
    want = ref.lstm_cell_forward(xt, a_prev, c_prev, p)[3]
    assert_cache_equal(cache, want, p)


# ------------------------------------------------------------------------------------ backward


@pytest.mark.parametrize("shape", SHAPES)
def test_rnn_cell_backward_matches_reference(shape):
    n_x, n_a, n_y, m, _ = shape
    rng = np.random.default_rng(6)
    p = rnn_parameters(rng, n_x, n_a, n_y)
    xt, a_prev = rng.normal(size=(n_x, m)), rng.normal(size=(n_a, m))
    cache = course.rnn_cell_forward(xt, a_prev, p)[2]
    da_next = rng.normal(size=(n_a, m))
    got = course.rnn_cell_backward(da_next, cache)
    want = ref.rnn_cell_backward(da_next, ref.rnn_cell_forward(xt, a_prev, p)[2])
    assert_dict_close(got, want)


@pytest.mark.parametrize("shape", SHAPES)
def test_rnn_backward_matches_reference(shape):
    n_x, n_a, n_y, m, n_steps = shape
    rng = np.random.default_rng(7)
    p = rnn_parameters(rng, n_x, n_a, n_y)
    x, a0 = rng.normal(size=(n_x, m, n_steps)), rng.normal(size=(n_a, m))
    caches = course.rnn_forward(x, a0, p)[2]
    da = rng.normal(size=(n_a, m, n_steps))
    got = course.rnn_backward(da, caches)
    want = ref.rnn_backward(da, ref.rnn_forward(x, a0, p)[2])
    assert_dict_close(got, want)


@pytest.mark.parametrize("shape", SHAPES)
def test_lstm_cell_backward_matches_reference(shape):
    n_x, n_a, n_y, m, _ = shape
    rng = np.random.default_rng(8)
    p = lstm_parameters(rng, n_x, n_a, n_y)
    xt, a_prev, c_prev = (rng.normal(size=s) for s in [(n_x, m), (n_a, m), (n_a, m)])
    cache = course.lstm_cell_forward(xt, a_prev, c_prev, p)[3]
    da_next, dc_next = rng.normal(size=(n_a, m)), rng.normal(size=(n_a, m))
    got = course.lstm_cell_backward(da_next, dc_next, cache)
    want_cache = ref.lstm_cell_forward(xt, a_prev, c_prev, p)[3]
    assert_dict_close(got, ref.lstm_cell_backward(da_next, dc_next, want_cache))


@pytest.mark.parametrize("shape", SHAPES)
def test_lstm_backward_matches_reference(shape):
    n_x, n_a, n_y, m, n_steps = shape
    rng = np.random.default_rng(9)
    p = lstm_parameters(rng, n_x, n_a, n_y)
    x, a0 = rng.normal(size=(n_x, m, n_steps)), rng.normal(size=(n_a, m))
    caches = course.lstm_forward(x, a0, p)[3]
    da = rng.normal(size=(n_a, m, n_steps))
    got = course.lstm_backward(da, caches)
    assert_dict_close(got, ref.lstm_backward(da, ref.lstm_forward(x, a0, p)[3]))


def test_lstm_backward_da_with_fewer_steps_than_the_forward_pass():
    """The course's own check of lstm_backward: 7 forward steps, then a da of 4 steps.

    As in the course, T is read from da and the first T caches are walked back; the reference
    does the same by hand.
    """
    np.random.seed(1)
    x, a0 = np.random.randn(3, 10, 7), np.random.randn(5, 10)
    p = {}
    for gate in "fioc":
        p["W" + gate], p["b" + gate] = np.random.randn(5, 5 + 3), np.random.randn(5, 1)
    p["Wy"], p["by"] = np.random.randn(2, 5), np.random.randn(2, 1)
    caches = course.lstm_forward(x, a0, p)[3]
    da = np.random.randn(5, 10, 4)

    got = course.lstm_backward(da, caches)

    assert got["dx"].shape == (3, 10, 4)
    assert_dict_close(got, ref.lstm_backward(da, ref.lstm_forward(x, a0, p)[3]))
    padded = course.lstm_backward(np.concatenate([da, np.zeros((5, 10, 3))], axis=2), caches)
    np.testing.assert_array_equal(padded["dx"][:, :, 4:], 0.0)  # later steps get no gradient
    padded["dx"] = padded["dx"][:, :, :4]
    assert_dict_close(got, padded)


def test_backward_reads_the_inputs_not_the_recorded_states():
    """Only x, a⟨0⟩ and the parameters of the caches count: the gradient is of the forward pass."""
    n_x, n_a, n_y, m, n_steps = SHAPES[0]
    rng = np.random.default_rng(10)
    p = rnn_parameters(rng, n_x, n_a, n_y)
    x, a0 = rng.normal(size=(n_x, m, n_steps)), rng.normal(size=(n_a, m))
    cell_caches, cached_x = course.rnn_forward(x, a0, p)[2]
    da = rng.normal(size=(n_a, m, n_steps))
    want = course.rnn_backward(da, (cell_caches, cached_x))
    later = [(np.zeros_like(c[0]), c[1], c[2], c[3]) for c in cell_caches]
    assert_dict_close(course.rnn_backward(da, (later, cached_x)), want, tol={"rtol": 0, "atol": 0})


# ------------------------------------------------------------------------------------- dtypes


def test_float32_in_float32_out():
    n_x, n_a, n_y, m, n_steps = SHAPES[2]
    rng = np.random.default_rng(11)
    p_rnn, p_lstm = rnn_parameters(rng, n_x, n_a, n_y), lstm_parameters(rng, n_x, n_a, n_y)
    x, a0 = rng.normal(size=(n_x, m, n_steps)), rng.normal(size=(n_a, m))
    da = rng.normal(size=(n_a, m, n_steps))
    p_rnn, p_lstm, x, a0, da = (cast(v, np.float32) for v in (p_rnn, p_lstm, x, a0, da))

    def f64(tree):
        return cast(tree, np.float64)

    a, y, caches = course.rnn_forward(x, a0, p_rnn)
    want_a, want_y, want_caches = ref.rnn_forward(f64(x), f64(a0), f64(p_rnn))
    assert_close(a, want_a, F32, np.float32)
    assert_close(y, want_y, F32, np.float32)
    for got, want in zip(caches[0], want_caches[0], strict=True):
        assert_cache_equal(got, want, p_rnn, F32, np.float32)
    got = course.rnn_backward(da, caches)
    assert_dict_close(got, ref.rnn_backward(f64(da), want_caches), F32, np.float32)

    a, y, c, caches = course.lstm_forward(x, a0, p_lstm)
    want_a, want_y, want_c, want_caches = ref.lstm_forward(f64(x), f64(a0), f64(p_lstm))
    for got, want in ((a, want_a), (y, want_y), (c, want_c)):
        assert_close(got, want, F32, np.float32)
    for got, want in zip(caches[0], want_caches[0], strict=True):
        assert_cache_equal(got, want, p_lstm, F32, np.float32)
    got = course.lstm_backward(da, caches)
    assert_dict_close(got, ref.lstm_backward(f64(da), want_caches), F32, np.float32)


def test_float32_without_x64():
    n_x, n_a, n_y, m, _ = SHAPES[0]
    rng = np.random.default_rng(12)
    p = lstm_parameters(rng, n_x, n_a, n_y)
    xt, a_prev, c_prev = (rng.normal(size=s) for s in [(n_x, m), (n_a, m), (n_a, m)])
    with jax.enable_x64(False):
        a_next, c_next, yt, cache = course.lstm_cell_forward(xt, a_prev, c_prev, p)
        grads = course.lstm_cell_backward(a_next, c_next, cache)
    want = ref.lstm_cell_forward(xt, a_prev, c_prev, p)
    for got, expected in zip((a_next, c_next, yt), want[:3], strict=True):
        assert_close(got, expected, F32, np.float32)
    want_grads = ref.lstm_cell_backward(want[0], want[1], want[3])
    assert_dict_close(grads, want_grads, F32, np.float32)


def test_mixed_dtypes_promote_as_numpy():
    n_x, n_a, n_y, m, _ = SHAPES[1]
    rng = np.random.default_rng(13)
    p = rnn_parameters(rng, n_x, n_a, n_y)
    xt, a_prev = rng.normal(size=(n_x, m)).astype(np.float32), rng.normal(size=(n_a, m))
    a_next, _, _ = course.rnn_cell_forward(xt, a_prev, p)
    assert_close(a_next, ref.rnn_cell_forward(xt.astype(np.float64), a_prev, p)[0])


def test_outputs_are_writable_numpy_arrays():
    n_x, n_a, n_y, m, n_steps = SHAPES[0]
    rng = np.random.default_rng(14)
    p = rnn_parameters(rng, n_x, n_a, n_y)
    a, y, caches = course.rnn_forward(rng.normal(size=(n_x, m, n_steps)), np.zeros((n_a, m)), p)
    grads = course.rnn_backward(np.ones_like(a), caches)
    for array in (a, y, caches[1], *caches[0][0][:3], *grads.values()):
        assert type(array) is np.ndarray and array.flags.writeable


# ---------------------------------------------------------------------------------- helpers


def test_softmax_over_axis_0():
    z = np.random.default_rng(15).normal(0.0, 3.0, (5, 4, 3))
    assert_close(course.softmax(z), ref.softmax(z))


def test_sigmoid():
    z = np.random.default_rng(16).normal(0.0, 3.0, (5, 4))
    assert_close(course.sigmoid(z), ref.sigmoid(z))


def test_clip_values_above_below_and_inside():
    gradients = {
        "dWaa": np.array([[10.0, -10.0], [4.99, -4.99]]),
        "dWax": np.array([[5.0, -5.0, 0.0]]),
        "dWya": np.array([[7.5], [-1e9]]),
        "db": np.array([[0.25], [-6.0]]),
        "dby": np.array([[np.inf], [-np.inf]]),
        "da_next": np.array([[100.0]]),
    }
    before = {key: value.copy() for key, value in gradients.items()}
    clipped = course.clip(gradients, 5)
    assert sorted(clipped) == ["dWaa", "dWax", "dWya", "db", "dby"]  # as in the course
    np.testing.assert_array_equal(clipped["dWaa"], [[5.0, -5.0], [4.99, -4.99]])
    np.testing.assert_array_equal(clipped["dWax"], [[5.0, -5.0, 0.0]])
    np.testing.assert_array_equal(clipped["dWya"], [[5.0], [-5.0]])
    np.testing.assert_array_equal(clipped["db"], [[0.25], [-5.0]])
    np.testing.assert_array_equal(clipped["dby"], [[5.0], [-5.0]])
    for key, value in gradients.items():  # a new dict; the arrays passed in are left alone
        np.testing.assert_array_equal(value, before[key])
    assert clipped is not gradients
    assert_dict_close(course.clip(gradients, 0.5), ref.clip(gradients, 0.5))


# ------------------------------------------------------------------ the character-level model


@pytest.fixture(params=["numpy", "compiled"])
def path(request, monkeypatch):
    """optimize and sample on one path for the whole test: the numpy version (nothing compiles)
    or the compiled program (each first call waits for its compilation)."""
    ready = course._ready
    if request.param == "numpy":
        monkeypatch.setattr(course, "_EXECUTABLES", {})
        monkeypatch.setattr(course, "_ready", lambda *args: None)
    else:

        def compiled_now(key, *args):
            if ready(key, *args) is None:
                course.wait_for_compilation()
            return course._EXECUTABLES[key]

        monkeypatch.setattr(course, "_ready", compiled_now)
    return request.param


def char_setup(seed, n_x=6, n_a=5, length=9, scale=1.0):
    rng = np.random.default_rng(seed)
    p = rnn_parameters(rng, n_x, n_a, n_x, scale)
    p["b"] = p.pop("ba")
    ids = list(rng.integers(0, n_x, length))
    X, Y = [None] + ids[:-1], ids  # x⟨1⟩ = 0, x⟨t⟩ = y⟨t−1⟩
    return p, X, Y, rng.normal(size=(n_a, 1))


@pytest.mark.parametrize("seed", [0, 1])
def test_optimize_matches_reference_and_updates_in_place(seed, path):
    p, X, Y, a_prev = char_setup(seed, length=12, scale=1.5)
    want_loss, want_grads, want_a, want_p = ref.optimize(X, Y, a_prev, p, 0.05)
    unclipped = ref.char_backward(Y, p, ref.char_forward(X, Y, a_prev, p)[1])
    assert max(np.abs(g).max() for g in unclipped.values()) > 5  # the clipping is exercised
    arrays = dict(p)

    loss, grads, a_last = course.optimize(X, Y, a_prev, p, learning_rate=0.05)

    assert isinstance(loss, np.float64)
    np.testing.assert_allclose(loss, want_loss, **F64)
    assert_dict_close(grads, want_grads)
    assert_close(a_last, want_a)
    for key, value in p.items():
        assert value is arrays[key]  # the same arrays, updated
        assert_close(value, want_p[key])


def test_optimize_in_the_course_loop():
    """The course's loop: parameters updated by each call, a⟨T⟩ passed on as the next a_prev."""
    p, _, _, a_prev = char_setup(17, scale=0.5)
    want_p, want_a = dict(p), a_prev
    rng = np.random.default_rng(18)
    for length in (5, 3, 8, 5):
        ids = list(rng.integers(0, 6, length))
        X, Y = [None, *ids[:-1]], ids
        want_loss, _, want_a, want_p = ref.optimize(X, Y, want_a, want_p, 0.01)
        loss, _, a_prev = course.optimize(X, Y, a_prev, p)
        np.testing.assert_allclose(loss, want_loss, **F64)
    for key in p:
        assert_close(p[key], want_p[key])
    assert_close(a_prev, want_a)


def test_optimize_replaces_read_only_parameters(path):
    p, X, Y, a_prev = char_setup(19)
    want_p = ref.optimize(X, Y, a_prev, p, 0.01)[3]
    for value in p.values():
        value.flags.writeable = False
    course.optimize(X, Y, a_prev, p)
    for key in p:
        assert_close(p[key], want_p[key])


def test_optimize_none_anywhere_is_the_zero_vector(path):
    p, X, Y, a_prev = char_setup(20)
    X = [None, X[1], None, *X[3:]]
    want_loss = ref.optimize(X, Y, a_prev, p, 0.01)[0]
    np.testing.assert_allclose(course.optimize(X, Y, a_prev, p)[0], want_loss, **F64)


class CountCompiles:
    """Counts XLA compilations while in the ``with`` block (jax's compile events)."""

    event = "/jax/core/compile/backend_compile_duration"

    def __enter__(self):
        self.count = 0
        jax.monitoring.register_event_duration_secs_listener(self._listen)
        return self

    def __exit__(self, *exc_info):
        jax.monitoring.unregister_event_duration_listener(self._listen)

    def _listen(self, event, seconds, **kwargs):
        self.count += event == self.event


def test_optimize_compiles_once_per_length_bucket():
    """Sequences of 20 lengths: padded to 8, 16 or 32 steps, three compilations at most, and the
    padding changes nothing (losses, parameters and a⟨T⟩ against the reference, step by step)."""
    p, _, _, a_prev = char_setup(27, n_x=7, n_a=3, scale=0.5)  # sizes no other test uses
    want_p, want_a = dict(p), a_prev
    rng = np.random.default_rng(28)
    course.wait_for_compilation()  # the programs earlier tests asked for are not counted
    with CountCompiles() as compiles:
        for length in rng.permutation(np.arange(1, 21)):
            ids = [int(i) for i in rng.integers(0, 7, length)]
            X, Y = [None, *ids[:-1]], ids
            want_loss, _, want_a, want_p = ref.optimize(X, Y, want_a, want_p, 0.01)
            loss, _, a_prev = course.optimize(X, Y, a_prev, p)
            np.testing.assert_allclose(loss, want_loss, **F64)
            assert_close(a_prev, want_a)
        course.wait_for_compilation()
    assert compiles.count <= 3
    for key in p:
        assert_close(p[key], want_p[key])


def test_sample_compiles_once():
    """Samples of many lengths (seeds) come from one compiled call."""
    p, char_to_ix = sample_parameters(n_a=6, by=(0.5, 0.0, 0.0))  # sizes no other test uses
    course.wait_for_compilation()  # the programs earlier tests asked for are not counted
    with CountCompiles() as compiles:
        drawn = [course.sample(p, char_to_ix, seed) for seed in range(20)]
        course.wait_for_compilation()
    assert len({len(indices) for indices in drawn}) > 3
    assert compiles.count <= 1


def sample_parameters(n_a=4, vocab=3, by=(0.0, 0.0, 0.0), seed=21):
    rng = np.random.default_rng(seed)
    p = {
        "Wax": rng.normal(0.0, 0.3, (n_a, vocab)),
        "Waa": rng.normal(0.0, 0.3, (n_a, n_a)),
        "Wya": rng.normal(0.0, 0.3, (vocab, n_a)),
        "b": rng.normal(0.0, 0.3, (n_a, 1)),
        "by": np.asarray(by, np.float64)[:, None],
    }
    return p, {"\n": 0, "a": 1, "b": 2}


def test_sample_is_reproducible_and_ends_with_newline(path):
    p, char_to_ix = sample_parameters(by=(1.0, 0.5, 0.5))
    drawn = [course.sample(p, char_to_ix, seed) for seed in range(5)]
    assert drawn == [course.sample(p, char_to_ix, seed) for seed in range(5)]
    assert len({tuple(d) for d in drawn}) > 1
    for indices in drawn:
        assert indices[-1] == 0 and 0 not in indices[:-1]
        assert all(isinstance(i, int) and 0 <= i < 3 for i in indices)


def test_sample_certain_outcomes(path):
    p, char_to_ix = sample_parameters(by=(60.0, 0.0, 0.0))
    assert course.sample(p, char_to_ix, 0) == [0]
    p, char_to_ix = sample_parameters(by=(-60.0, 60.0, 0.0))
    assert course.sample(p, char_to_ix, 0) == [1] * 50 + [0]  # 50 drawn, then "\n" appended


def test_sample_first_index_follows_the_softmax(path):
    p, char_to_ix = sample_parameters(by=(0.3, -0.4, 0.8))
    a1 = np.tanh(p["b"])  # a⟨1⟩ from a⟨0⟩ = 0 and x⟨1⟩ = 0
    probs = ref.softmax(p["Wya"] @ a1 + p["by"])[:, 0]
    first = [course.sample(p, char_to_ix, seed)[0] for seed in range(400)]
    counts = np.bincount(first, minlength=3) / len(first)
    np.testing.assert_allclose(counts, probs, atol=0.08)


def test_threefry_of_the_numpy_sampler_is_jax_s():
    """On Python ints (the numpy sampler) and elementwise on uint32 arrays in a compiled program
    (the compiled sampler's uniforms), with and without x64."""
    rng = np.random.default_rng(31)
    words = rng.integers(0, 2**32, (20, 4), dtype=np.uint64)
    for k0, k1, c0, c1 in words.tolist():
        want = threefry_2x32((np.uint32(k0), np.uint32(k1)), jnp.asarray([c0, c1], jnp.uint32))
        assert course_host.threefry2x32((k0, k1), (c0, c1)) == tuple(int(w) for w in want)
    keys, counts = jnp.asarray(words[:, :2], jnp.uint32), jnp.asarray(words[:, 2:], jnp.uint32)
    want = jax.vmap(threefry_2x32)(keys, counts)
    for x64 in (True, False):
        with jax.enable_x64(x64):
            got = jax.jit(course_host.threefry2x32)(tuple(keys.T), tuple(counts.T))
        np.testing.assert_array_equal(np.stack(got, axis=1), want)


def packed_step_arguments(rng, dtype, length, sizes=(6, 5, 6), bucket=16):
    layout = course._char_layout(sizes)
    p = {key: rng.normal(0.0, 1.5, shape).astype(dtype) for key, shape in layout.items()}
    a_prev = rng.normal(size=sizes[1]).astype(dtype)
    floats = np.concatenate([v.ravel() for v in p.values()] + [a_prev, [0.05]], dtype=dtype)
    ids = [-1 if t % 4 == 0 else int(i) for t, i in enumerate(rng.integers(0, sizes[0], length))]
    targets = [int(i) for i in rng.integers(0, sizes[2], length)]
    padding = [0] * (bucket - length)
    return floats, np.array(ids + padding + targets + padding + [length], np.int32)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 2e-4)])
def test_the_numpy_step_and_sampler_compute_what_the_compiled_programs_do(dtype, rtol):
    """Every output of the optimize step (loss, a⟨T⟩, clipped gradients, updated parameters) at
    lengths 1 to a full bucket, and the indices of 200 samples, on both paths."""
    rng, sizes = np.random.default_rng(32), (6, 5, 6)
    layout = course._char_layout(sizes)
    step = jax.jit(functools.partial(course._char_step, sizes=sizes))
    for length in (1, 7, 16):
        floats, ints = packed_step_arguments(rng, dtype, length, sizes)
        want = np.asarray(step(floats, ints))
        got = course_host.char_step(floats, ints, layout, course._CHAR_KEYS)
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol)
    sample = jax.jit(functools.partial(course._char_sample, sizes=sizes))
    floats = floats[: -sizes[1] - 1]  # the parameters only
    lengths = []
    for seed in range(200):
        ints = np.array([seed >> 2, seed * 7919, 2], np.uint32)
        want = np.asarray(sample(floats, ints))
        np.testing.assert_array_equal(course_host.char_sample(floats, ints, layout, 50), want)
        lengths.append(want[0])
    assert len(set(lengths)) > 10  # samples of many lengths checked


def test_the_first_calls_run_numpy_while_the_program_compiles_then_the_program(monkeypatch):
    """A new size: the first call starts compiling and runs the numpy step at once; calls while
    it compiles run numpy too; once it is ready, calls run the program. The loop's losses are
    the reference's throughout."""
    forget_programs(monkeypatch)
    monkeypatch.setenv("JAXRNN_CACHE_DIR", "off")
    release, compile_ = threading.Event(), course._compile
    monkeypatch.setattr(course, "_compile", lambda *args: release.wait(60) and compile_(*args))
    host_steps = []
    char_step = course_host.char_step
    monkeypatch.setattr(
        course_host, "char_step", lambda *args: host_steps.append(1) or char_step(*args)
    )
    p, _, _, a_prev = char_setup(33, n_x=5, n_a=7, scale=0.5)  # sizes no other test uses
    want_p, want_a = dict(p), a_prev
    rng = np.random.default_rng(34)
    for step in range(6):
        if step == 3:
            release.set()
            course.wait_for_compilation()
        ids = [int(i) for i in rng.integers(0, 5, 6)]
        X, Y = [None, *ids[:-1]], ids
        want_loss, _, want_a, want_p = ref.optimize(X, Y, want_a, want_p, 0.01)
        loss, _, a_prev = course.optimize(X, Y, a_prev, p)
        np.testing.assert_allclose(loss, want_loss, **F64)
        assert len(host_steps) == min(step + 1, 3)
        assert len(course._COMPILING) == (step < 3)
    assert_close(a_prev, want_a)


def _autodiff_step(p, X, Y, a_prev, learning_rate):
    """The character model's step by ``jax.value_and_grad`` through jaxrnn's RNN cell,
    `jaxrnn.unroll` and the library's loss: what optimize's written-out backward pass must equal."""
    ids = jnp.asarray([-1 if v is None else v for v in X])
    n_x = p["Wax"].shape[1]

    def loss_fn(p, a_prev):
        params = jaxrnn.RNNParams(
            p["Wax"].T, p["Waa"].T, p["b"][:, 0], jnp.zeros_like(p["b"][:, 0])
        )
        xs = jax.nn.one_hot(ids, n_x, dtype=p["Wax"].dtype)  # id −1: the zero vector
        last, a = jaxrnn.unroll(jaxrnn.rnn("tanh"), params, xs, a_prev[:, 0])
        logits = a @ p["Wya"].T + p["by"].T
        loss = jaxrnn.softmax_cross_entropy(logits, jnp.asarray(Y), reduce_time="sum")
        return loss, last[:, None]

    (loss, a_last), grads = jax.value_and_grad(loss_fn, has_aux=True)(p, a_prev)
    clipped = {"d" + key: np.clip(np.asarray(g), -5, 5) for key, g in grads.items()}
    updated = {key: p[key] - learning_rate * clipped["d" + key] for key in p}
    return float(loss), clipped, np.asarray(a_last), updated


@pytest.mark.parametrize("length", [1, 8, 9, 16, 17, 20])
def test_optimize_backward_pass_equals_autodiff_through_unroll(length, path):
    """optimize writes backpropagation through time out; jax.grad through jaxrnn.unroll agrees,
    at lengths on both sides of the padded lengths 8 and 16, with None inputs inside."""
    p, X, Y, a_prev = char_setup(40 + length, length=length, scale=1.5)
    X = [None if t % 3 == 0 else v for t, v in enumerate(X)]
    want_loss, want_grads, want_a, want_p = _autodiff_step(p, X, Y, a_prev, 0.05)
    loss, grads, a_last = course.optimize(X, Y, a_prev, p, learning_rate=0.05)
    np.testing.assert_allclose(loss, want_loss, **F64)
    assert_dict_close(grads, want_grads)
    assert_close(a_last, want_a)
    assert_dict_close(p, want_p)


# ------------------------------------------------- compiled programs kept on disk between processes


@pytest.fixture(autouse=True)
def compiles_in_this_process(monkeypatch):
    """Programs compile on a thread of the test's process, which is quicker in a test (a
    compiling process first imports jax): the cache and its files are the same either way.
    The tests of the compiling processes put them back."""
    monkeypatch.setattr(course, "_CompileProcess", no_process)


def no_process(*args):
    raise OSError("no process can be started here")


@pytest.fixture
def fresh_process(monkeypatch):
    """As in a new process: no compiled program in memory (those of other tests come back after)."""
    forget_programs(monkeypatch)


def forget_programs(monkeypatch):
    course.wait_for_compilation()
    monkeypatch.setattr(course, "_EXECUTABLES", {})
    monkeypatch.setattr(course, "_COMPILING", {})
    monkeypatch.setattr(course, "_ORDERS", {})


def char_calls(n_a=4):
    """One optimize (8 steps) and one sample, on their compiled programs (which are in the cache,
    if it is on, when it returns); their results, to compare between runs."""
    p, X, Y, a_prev = char_setup(50, n_x=3, n_a=n_a, length=6)
    course.optimize(X, Y, a_prev, {key: value.copy() for key, value in p.items()})
    course.sample(p, {"\n": 0, "a": 1, "b": 2}, seed=3)
    course.wait_for_compilation()
    loss, grads, a_last = course.optimize(X, Y, a_prev, p)
    sampled = course.sample(p, {"\n": 0, "a": 1, "b": 2}, seed=3)
    return loss, grads, a_last, p, sampled


def assert_same_calls(got, want):
    loss, grads, a_last, p, sampled = got
    np.testing.assert_allclose(loss, want[0], **F64)
    assert_dict_close(grads, want[1])
    assert_close(a_last, want[2])
    assert_dict_close(p, want[3])
    assert sampled == want[4]


def cache_files(directory):
    return sorted(path.name for path in directory.rglob("*") if path.is_file())


FRESH_PROCESS = """
import json, jax, numpy as np
jax.config.update("jax_enable_x64", True)
from jaxrnn import course
compiles = []
jax.monitoring.register_event_duration_secs_listener(
    lambda event, seconds, **_: compiles.append(event)
    if event == "/jax/core/compile/backend_compile_duration" else None
)
rng = np.random.default_rng(0)
p = {"Wax": rng.normal(size=(4, 3)), "Waa": rng.normal(size=(4, 4)), "Wya": rng.normal(size=(3, 4)),
     "b": rng.normal(size=(4, 1)), "by": rng.normal(size=(3, 1))}
course.optimize([None, 1], [1, 2], np.zeros((4, 1)), {k: v.copy() for k, v in p.items()})
course.sample(p, {"\\n": 0, "a": 1, "b": 2}, 0)
course.wait_for_compilation()  # the calls below run the compiled programs
loss, _, a_last = course.optimize([None, 1, 2, 0, 1], [1, 2, 0, 1, 2], np.zeros((4, 1)), p)
sampled = [course.sample(p, {"\\n": 0, "a": 1, "b": 2}, seed) for seed in range(5)]
print(json.dumps({"compiles": len(compiles), "compiled": len(course._ORDERS),
                  "loss": float(loss), "a_last": a_last.tolist(),
                  "Waa": p["Waa"].tolist(), "sampled": sampled}))
"""


def run_fresh_processes(environment: dict, count: int = 2) -> list[dict]:
    """FRESH_PROCESS's report from each of ``count`` processes run one after the other."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("JAX_PERSISTENT_CACHE")}
    inherited.pop("JAX_COMPILATION_CACHE_DIR", None)  # each test says which caches it means
    reports = []
    for _ in range(count):
        done = subprocess.run(
            [sys.executable, "-c", FRESH_PROCESS],
            env={**inherited, **environment},
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        reports.append(json.loads(done.stdout.splitlines()[-1]))
    return reports


def test_cache_a_fresh_process_with_a_warm_cache_compiles_nothing(tmp_path):
    """The first process compiles optimize's and sample's programs and stores them; the next one
    loads them, compiles nothing, and computes the same."""
    cold, warm = run_fresh_processes({"JAXRNN_CACHE_DIR": str(tmp_path / "cache")})
    assert cold["compiled"] == 2  # in processes of their own
    assert len(cache_files(tmp_path / "cache")) == 2  # one optimize bucket, one sampler
    assert warm["compiled"] == warm["compiles"] == 0
    assert warm == {**cold, "compiled": 0, "compiles": 0}


def test_with_jax_s_own_persistent_cache_on_that_cache_keeps_the_programs(tmp_path):
    """An executable jax loaded from its cache does not serialise intact ("Function ... not
    found" when a later process runs it), so with jax's cache on the course's stays unused; a
    second process loads from jax's cache and computes the same."""
    environment = {
        "JAXRNN_CACHE_DIR": str(tmp_path / "course"),
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }
    cold, warm = run_fresh_processes(environment)
    assert not cache_files(tmp_path / "course")
    assert any((tmp_path / "jax").iterdir())
    assert {**warm, "compiles": 0} == {**cold, "compiles": 0}


def test_with_the_cache_on_programs_compile_one_at_a_time_in_processes_of_their_own(
    tmp_path, monkeypatch, fresh_process
):
    """Each program compiles in a process of its own, which stores it in the cache, and comes
    back from there; one compiles at a time, the next waiting its turn."""
    monkeypatch.setattr(course, "_CompileProcess", COMPILE_PROCESS)
    monkeypatch.setenv("JAXRNN_CACHE_DIR", str(tmp_path))
    p, X, Y, a_prev = char_setup(50, n_x=3, n_a=4, length=6)
    with CountCompiles() as compiles:
        course.optimize(X, Y, a_prev, p)
        course.sample(p, {"\n": 0, "a": 1, "b": 2}, seed=3)
        assert len(course._ORDERS) == 2
        running = [job for job in course._COMPILING.values() if not job.done()]
        assert len(running) <= 1 and all(isinstance(job, course._CompileProcess) for job in running)
        course.wait_for_compilation()
    assert compiles.count == 0
    assert len(cache_files(tmp_path)) == 2
    assert not course._COMPILING and len(course._EXECUTABLES) == 2


def test_cache_files_are_written_atomically_into_the_directory_given(
    tmp_path, monkeypatch, fresh_process
):
    """Each file is written beside its final name and renamed over it (`os.replace`), so that a
    reader sees a whole file or none; nothing else is left in the directory."""
    directory = tmp_path / "given"
    monkeypatch.setenv("JAXRNN_CACHE_DIR", str(directory))
    renames, replace = [], os.replace
    monkeypatch.setattr(
        os, "replace", lambda src, dst: renames.append((src, dst)) or replace(src, dst)
    )
    char_calls()
    written = cache_files(directory)
    assert len(written) == 2 and all(name.startswith("course_char_") for name in written)
    assert sorted(pathlib.Path(dst).name for _, dst in renames) == written
    for src, dst in renames:
        assert pathlib.Path(src).parent == pathlib.Path(dst).parent == directory
        assert pathlib.Path(src).name != pathlib.Path(dst).name


def test_cache_a_corrupt_file_means_compiling_and_correct_results(tmp_path, monkeypatch):
    """Truncated files, and files whose payload is not a program, are compiled anew (and
    rewritten); the results stay those of the compiled programs."""
    monkeypatch.setenv("JAXRNN_CACHE_DIR", str(tmp_path))
    forget_programs(monkeypatch)
    want = char_calls()
    for damage in ("truncate", "garbage"):
        for path in tmp_path.iterdir():
            data = path.read_bytes()
            if damage == "truncate":
                path.write_bytes(data[: len(data) // 2])
            else:  # the header and a matching digest, so that only loading the payload fails
                payload = b"not a compiled program"
                header = data[: len(course._CACHE_HEADER)]
                path.write_bytes(header + hashlib.sha256(payload).digest() + payload)
        forget_programs(monkeypatch)
        damaged = {path.name: path.read_bytes() for path in tmp_path.iterdir()}
        assert_same_calls(char_calls(), want)
        assert all(path.read_bytes() != damaged[path.name] for path in tmp_path.iterdir())
    forget_programs(monkeypatch)
    with CountCompiles() as compiles:  # rewritten whole: loaded again
        assert_same_calls(char_calls(), want)
    assert compiles.count == 0


def test_cache_off_writes_nothing(tmp_path, monkeypatch, fresh_process):
    monkeypatch.setenv("JAXRNN_CACHE_DIR", "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with CountCompiles() as compiles:
        char_calls()
    assert compiles.count >= 2
    assert cache_files(tmp_path) == []


def test_cache_default_directory_is_under_xdg_cache_home(tmp_path, monkeypatch, fresh_process):
    monkeypatch.delenv("JAXRNN_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    char_calls()
    assert len(cache_files(tmp_path / "jaxrnn")) == 2


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
def test_cache_a_directory_others_can_write_to_is_not_used(tmp_path, monkeypatch, fresh_process):
    """A file in the cache is loaded as code: a directory writable by others is neither read nor
    written."""
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(0o777)
    monkeypatch.setenv("JAXRNN_CACHE_DIR", str(directory))
    char_calls()
    assert cache_files(directory) == []


def test_cache_keys_by_sizes(tmp_path, monkeypatch, fresh_process):
    """Another hidden size is another program, in another file, and the first one still loads."""
    monkeypatch.setenv("JAXRNN_CACHE_DIR", str(tmp_path))
    want = char_calls(n_a=4)
    char_calls(n_a=5)
    assert len(cache_files(tmp_path)) == 4
    forget_programs(monkeypatch)
    with CountCompiles() as compiles:
        assert_same_calls(char_calls(n_a=4), want)
    assert compiles.count == 0


def test_cache_compiles_without_options_this_xla_lacks(monkeypatch, fresh_process):
    """The programs are compiled with XLA options for speed of compilation; an XLA that does not
    know one compiles them without, to the same results."""
    want = char_calls()
    forget_programs(monkeypatch)
    monkeypatch.setenv("JAXRNN_CACHE_DIR", "off")
    monkeypatch.setattr(course, "_COMPILER_OPTIONS", {"xla_no_such_option_anywhere": 1})
    assert_same_calls(char_calls(), want)


# -------------------------------------------------------------------------------------- errors


def _rnn_call(**change):
    rng = np.random.default_rng(22)
    p = rnn_parameters(rng, 3, 5, 2)
    args = {"xt": rng.normal(size=(3, 4)), "a_prev": rng.normal(size=(5, 4)), "parameters": p}
    for key, value in change.items():
        if key in p:
            p[key] = value
        else:
            args[key] = value
    return lambda: course.rnn_cell_forward(**args)


def _missing(key):
    p = rnn_parameters(np.random.default_rng(0), 3, 5, 2)
    del p[key]
    return lambda: course.rnn_cell_forward(np.ones((3, 4)), np.ones((5, 4)), p)


def _lstm_forward_call(**change):
    rng = np.random.default_rng(23)
    p = lstm_parameters(rng, 3, 5, 2)
    p.update({key: value for key, value in change.items() if key in p})
    x = change.get("x", rng.normal(size=(3, 4, 6)))
    return lambda: course.lstm_forward(x, rng.normal(size=(5, 4)), p)


def _backward_call(kind, da_shape=None, cache_change=None):
    rng = np.random.default_rng(24)
    if kind == "rnn":
        p, forward, backward = rnn_parameters(rng, 3, 5, 2), course.rnn_forward, course.rnn_backward
        _, _, caches = forward(rng.normal(size=(3, 4, 6)), rng.normal(size=(5, 4)), p)
    else:
        p, forward, backward = (
            lstm_parameters(rng, 3, 5, 2),
            course.lstm_forward,
            course.lstm_backward,
        )
        caches = forward(rng.normal(size=(3, 4, 6)), rng.normal(size=(5, 4)), p)[3]
    if cache_change is not None:
        caches = cache_change(caches)
    return lambda: backward(np.ones(da_shape or (5, 4, 6)), caches)


def _char_call(X=(None, 1, 2), Y=(1, 2, 0), a_prev_shape=(5, 1), rename=None):
    p, _, _, _ = char_setup(25, n_x=6, n_a=5)
    if rename:
        p[rename[1]] = p.pop(rename[0])
    return lambda: course.optimize(list(X), list(Y), np.zeros(a_prev_shape), p)


ERRORS = {
    "missing key": (
        _missing("Wya"),
        r"rnn_cell_forward: expected parameters to have the keys .*"
        r"missing \['Wya'\]",
    ),
    "xt features": (
        _rnn_call(xt=np.ones((4, 4))),
        r"rnn_cell_forward: expected xt of shape \(3, 4\), got \(4, 4\); xt is \(n_x, m\) "
        r"with n_x=3 from parameters\['Wax'\]",
    ),
    "a_prev batch": (
        _rnn_call(a_prev=np.ones((5, 3))),
        r"expected a_prev of shape \(5, 4\), got \(5, 3\); a_prev is \(n_a, m\) with "
        r"n_a=5 from parameters\['Wax'\], m=4 from xt",
    ),
    "Waa shape": (
        _rnn_call(Waa=np.ones((5, 4))),
        r"expected parameters\['Waa'\] of shape \(5, 5\), got \(5, 4\)",
    ),
    "ba as a vector": (
        _rnn_call(ba=np.ones(5)),
        r"expected parameters\['ba'\] of shape \(5, 1\), got \(5,\)",
    ),
    "not numbers": (_rnn_call(xt=np.full((3, 4), "a")), r"expected xt to hold real numbers"),
    "parameters not a dict": (
        lambda: course.rnn_forward(np.ones((3, 4, 2)), np.ones((5, 4)), [1, 2]),
        r"rnn_forward: expected parameters to be a dict of numpy arrays, got list",
    ),
    "lstm gate weights without the x part": (
        _lstm_forward_call(Wf=np.ones((5, 5))),
        r"lstm_forward: expected parameters\['Wf'\] of shape \(n_a, n_a\+n_x\) with n_x ≥ 1",
    ),
    "lstm gate weights of different widths": (
        _lstm_forward_call(Wo=np.ones((5, 9))),
        r"expected parameters\['Wo'\] of shape \(5, 8\), got \(5, 9\)",
    ),
    "lstm x features": (
        _lstm_forward_call(x=np.ones((2, 4, 6))),
        r"expected x of shape \(3, 4, 6\), got \(2, 4, 6\)",
    ),
    "lstm no time steps": (
        _lstm_forward_call(x=np.ones((3, 4, 0))),
        r"lstm_forward: expected x with at least one time step",
    ),
    "rnn_backward da time steps": (
        _backward_call("rnn", da_shape=(5, 4, 5)),
        r"rnn_backward: expected da of shape \(5, 4, 6\), got \(5, 4, 5\)",
    ),
    "lstm_backward da hidden size": (
        _backward_call("lstm", da_shape=(4, 4, 6)),
        r"lstm_backward: expected da of shape \(5, 4, 6\), got \(4, 4, 6\)",
    ),
    "lstm_backward da with more steps than caches": (
        _backward_call("lstm", da_shape=(5, 4, 7)),
        r"lstm_backward: expected da with 1 to T_x = 6 time steps \(one per cell cache\), got 7",
    ),
    "rnn_backward given the list of caches only": (
        _backward_call("rnn", cache_change=lambda caches: caches[0]),
        r"rnn_backward: expected caches to be the pair \(list of cell caches, x\)",
    ),
    "lstm_backward given rnn caches": (
        lambda: course.lstm_backward(np.ones((5, 4, 6)), _rnn_caches()),
        r"lstm_backward: expected caches\[0\]\[0\] to be the 10-tuple \(a_next, c_next",
    ),
    "lstm_cell_backward given an rnn cache": (
        lambda: course.lstm_cell_backward(np.ones((5, 4)), np.ones((5, 4)), _rnn_caches()[0][0]),
        r"lstm_cell_backward: expected cache to be the 10-tuple .* got a tuple of length 4",
    ),
    "rnn_cell_backward da_next": (
        lambda: course.rnn_cell_backward(np.ones((5, 3)), _rnn_caches()[0][0]),
        r"rnn_cell_backward: expected da_next of shape \(5, 4\), got \(5, 3\)",
    ),
    "rnn_backward fewer caches than steps": (
        _backward_call("rnn", cache_change=lambda caches: (caches[0][:5], caches[1])),
        r"rnn_backward: expected caches\[0\] to hold T_x = 6 cell caches, .* got 5",
    ),
    "optimize X out of range": (
        _char_call(X=(None, 1, 6)),
        r"optimize: expected X\[2\] to be an index in \[0, 6\) or None \(the zero vector\), got 6",
    ),
    "optimize None in Y": (
        _char_call(Y=(None, 1, 2)),
        r"optimize: expected Y\[0\] to be an index in \[0, 6\), got None",
    ),
    "optimize lengths": (
        _char_call(Y=(1, 2)),
        r"optimize: expected X and Y of the same length, got 3 and 2",
    ),
    "optimize ba for b": (
        _char_call(rename=("b", "ba")),
        r"optimize: expected parameters to have the keys .* missing \['b'\]",
    ),
    "optimize a_prev batch": (
        _char_call(a_prev_shape=(5, 2)),
        r"optimize: expected a_prev of shape \(5, 1\), got \(5, 2\)",
    ),
    "clip missing key": (
        lambda: course.clip({"dWaa": 1.0, "dWax": 1.0, "dWya": 1.0, "db": 1.0}, 5),
        r"clip: expected gradients to have the keys .* missing \['dby'\]",
    ),
    "clip bound": (
        lambda: course.clip({k: 1.0 for k in ("dWaa", "dWax", "dWya", "db", "dby")}, -1),
        r"clip: expected maxValue to be a number > 0, got -1",
    ),
    "sample without newline": (
        lambda: course.sample(sample_parameters()[0], {"a": 1, "b": 2}, 0),
        r"sample: expected char_to_ix to be a dict with the key '\\n'",
    ),
    "softmax scalar": (lambda: course.softmax(3.0), r"softmax: expected x with at least one"),
}


def _rnn_caches():
    rng = np.random.default_rng(26)
    p = rnn_parameters(rng, 3, 5, 2)
    return course.rnn_forward(rng.normal(size=(3, 4, 6)), rng.normal(size=(5, 4)), p)[2]


@pytest.mark.parametrize("case", ERRORS)
def test_bad_arguments_raise_input_error(case):
    call, message = ERRORS[case]
    with pytest.raises(jaxrnn.InputError, match=message):
        call()
