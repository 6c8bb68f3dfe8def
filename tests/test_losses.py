"""Sequence losses against plain-numpy transcriptions of their definitions."""

import numpy as np
import pytest

import jaxrnn

RNG = np.random.default_rng(0)


def _np_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _np_reduce(per_step, lengths, reduce_time):
    out = []
    for row, length in zip(per_step, lengths, strict=True):
        total = row[:length].sum()
        out.append(total if reduce_time == "sum" else (total / length if length else 0.0))
    return np.array(out)


@pytest.mark.parametrize("reduce_time", ["sum", "mean"])
def test_softmax_cross_entropy_matches_numpy_with_lengths(reduce_time):
    logits = RNG.standard_normal((4, 6, 5))
    labels = RNG.integers(0, 5, (4, 6))
    lengths = np.array([6, 3, 0, 1])
    per_step = -np.take_along_axis(_np_log_softmax(logits), labels[..., None], -1)[..., 0]
    got = jaxrnn.softmax_cross_entropy(logits, labels, lengths, reduce_time=reduce_time)
    np.testing.assert_allclose(got, _np_reduce(per_step, lengths, reduce_time), rtol=1e-12)


@pytest.mark.parametrize("reduce_time", ["sum", "mean"])
def test_sigmoid_cross_entropy_matches_numpy_with_lengths(reduce_time):
    logits = RNG.standard_normal((3, 5, 2)) * 4
    labels = RNG.integers(0, 2, (3, 5, 2)).astype(float)
    lengths = np.array([5, 2, 0])
    sig = 1 / (1 + np.exp(-logits))
    per_step = -(labels * np.log(sig) + (1 - labels) * np.log(1 - sig)).sum(-1)
    got = jaxrnn.sigmoid_cross_entropy(logits, labels, lengths, reduce_time=reduce_time)
    np.testing.assert_allclose(got, _np_reduce(per_step, lengths, reduce_time), rtol=1e-10)


def test_losses_without_lengths_use_every_step():
    logits = RNG.standard_normal((2, 4, 3))
    labels = RNG.integers(0, 3, (2, 4))
    full = np.array([4, 4])
    np.testing.assert_allclose(
        jaxrnn.softmax_cross_entropy(logits, labels, reduce_time="sum"),
        jaxrnn.softmax_cross_entropy(logits, labels, full, reduce_time="sum"),
        rtol=1e-12,
    )


def test_losses_ignore_padded_steps():
    logits = RNG.standard_normal((2, 5, 3))
    labels = RNG.integers(0, 3, (2, 5))
    lengths = np.array([2, 4])
    changed = logits.copy()
    changed[0, 2:] = 1e3  # garbage in the padding
    changed[1, 4:] = -1e3
    np.testing.assert_array_equal(
        jaxrnn.softmax_cross_entropy(logits, labels, lengths),
        jaxrnn.softmax_cross_entropy(changed, labels, lengths),
    )


def test_sigmoid_cross_entropy_is_finite_for_large_logits():
    logits = np.array([[[1e4], [-1e4]]])
    labels = np.array([[[0.0], [1.0]]])
    np.testing.assert_allclose(
        jaxrnn.sigmoid_cross_entropy(logits, labels, reduce_time="sum"), [2e4]
    )


def test_sequence_mask_marks_valid_steps():
    np.testing.assert_array_equal(
        jaxrnn.sequence_mask(np.array([0, 2, 3]), 3),
        [[False, False, False], [True, True, False], [True, True, True]],
    )


def test_losses_reject_bad_arguments():
    logits = np.zeros((2, 3, 4))
    with pytest.raises(jaxrnn.InputError, match=r"expected labels of shape \(2, 3\), got \(2, 4\)"):
        jaxrnn.softmax_cross_entropy(logits, np.zeros((2, 4), int))
    with pytest.raises(jaxrnn.InputError, match="labels to have an integer dtype, got float"):
        jaxrnn.softmax_cross_entropy(logits, np.zeros((2, 3)))
    with pytest.raises(jaxrnn.InputError, match="reduce_time 'sum' or 'mean', got 'max'"):
        jaxrnn.softmax_cross_entropy(logits, np.zeros((2, 3), int), reduce_time="max")
    with pytest.raises(jaxrnn.InputError, match=r"expected lengths of shape \(2,\), got \(3,\)"):
        jaxrnn.softmax_cross_entropy(logits, np.zeros((2, 3), int), np.array([1, 2, 3]))


def test_softmax_cross_entropy_without_time_axis_is_one_loss_per_example():
    """Classifier logits (B, K) and labels (B,): per-example losses, not one sequence of B steps."""
    logits = RNG.standard_normal((4, 5))
    labels = RNG.integers(0, 5, 4)
    want = -np.take_along_axis(_np_log_softmax(logits), labels[:, None], -1)[:, 0]
    got = jaxrnn.softmax_cross_entropy(logits, labels, time_axis=False)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_array_equal(
        got, jaxrnn.softmax_cross_entropy(logits[:, None], labels[:, None])
    )
    # Two batch axes, and the default: the axis before the classes is time, (T, K) one sequence.
    deep = jaxrnn.softmax_cross_entropy(
        logits.reshape(2, 2, 5), labels.reshape(2, 2), time_axis=False
    )
    np.testing.assert_allclose(deep, want.reshape(2, 2), rtol=1e-12)
    np.testing.assert_allclose(
        jaxrnn.softmax_cross_entropy(logits, labels), want.mean(), rtol=1e-12
    )


def test_sigmoid_cross_entropy_without_time_axis_is_one_loss_per_example():
    logits = RNG.standard_normal((3, 2)) * 4
    labels = RNG.integers(0, 2, (3, 2)).astype(float)
    sig = 1 / (1 + np.exp(-logits))
    want = -(labels * np.log(sig) + (1 - labels) * np.log(1 - sig)).sum(-1)
    got = jaxrnn.sigmoid_cross_entropy(logits, labels, time_axis=False, reduce_time="sum")
    np.testing.assert_allclose(got, want, rtol=1e-10)
    np.testing.assert_allclose(
        jaxrnn.sigmoid_cross_entropy(logits, labels), want.mean(), rtol=1e-10
    )


def test_losses_without_time_axis_reject_lengths_and_mismatched_labels():
    logits = np.zeros((4, 5))
    with pytest.raises(
        jaxrnn.InputError,
        match=r"softmax_cross_entropy: expected labels of shape \(4,\), got \(4, 5\); "
        "time_axis=False",
    ):
        jaxrnn.softmax_cross_entropy(logits, np.zeros((4, 5), int), time_axis=False)
    with pytest.raises(
        jaxrnn.InputError,
        match="softmax_cross_entropy: expected lengths=None with time_axis=False: there are no "
        "steps to leave out",
    ):
        jaxrnn.softmax_cross_entropy(logits, np.zeros(4, int), np.ones(4, int), time_axis=False)
    with pytest.raises(
        jaxrnn.InputError,
        match=r"sigmoid_cross_entropy: expected labels of shape \(4, 5\), got \(4,\)",
    ):
        jaxrnn.sigmoid_cross_entropy(logits, np.zeros(4), time_axis=False)
    with pytest.raises(jaxrnn.InputError, match="expected labels to be an array, got list"):
        jaxrnn.softmax_cross_entropy(logits, [0, 1, 2, 3], time_axis=False)
