"""A mixture of language models: each step's distribution is the mean of the members'."""

import itertools
from importlib import resources

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import jaxrnn
from jaxrnn import lm
from jaxrnn.lm import LMConfig, Mixture, init_lm, mixture
from jaxrnn.lm_eval import evaluate_lm
from jaxrnn.text import make_corpus

LSTM = LMConfig(6, cell_name="lstm", hidden_size=5, num_layers=2, embedding_size=3)
GRU = LMConfig(6, cell_name="gru", hidden_size=4)

lm_log_probs, next_token_log_probs, sentence_log_prob, token_log_probs = (
    jax.jit(fn, static_argnums=1)
    for fn in (lm.lm_log_probs, lm.next_token_log_probs, lm.sentence_log_prob, lm.token_log_probs)
)


def random_lm(config, seed, scale=0.5, dtype=jnp.float64):
    """Params from init_lm, every leaf moved by noise so that the members differ everywhere."""
    params = init_lm(jax.random.key(seed), config, dtype=dtype)
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda p: (p + rng.normal(0.0, scale, p.shape)).astype(dtype), params)


def mean_of_probs(*log_probs):
    """The reference: log of the plain mean of the members' probabilities."""
    return np.log(np.mean([np.exp(np.asarray(lp)) for lp in log_probs], axis=0))


@pytest.mark.parametrize("config", [LSTM, GRU], ids=["lstm", "gru"])
def test_token_log_probs_are_the_log_of_the_members_mean(config):
    members = [random_lm(config, seed) for seed in (0, 1, 2)]
    targets = jnp.asarray([[3, 1, 4, 1, 5], [2, 0, 5, 5, 0]], jnp.int32)
    lengths = jnp.asarray([5, 3])
    each = [token_log_probs(p, config, targets, lengths) for p in members]
    got = token_log_probs(mixture(members), config, targets, lengths)
    expected = np.where(np.arange(5) < np.asarray(lengths)[:, None], mean_of_probs(*each), 0.0)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert np.ptp(np.asarray(each)[:, 0, :3], axis=0).min() > 0.01  # the members differ
    # a per-step mixture, not a mixture of whole sentences: P(sentence) is no mean of the members'
    sentence = sentence_log_prob(mixture(members), config, targets, lengths)
    np.testing.assert_allclose(sentence, expected.sum(-1), rtol=1e-12)


def test_a_mixture_of_one_model_is_that_model():
    params = random_lm(LSTM, 0)
    inputs = jnp.asarray([[-1, 3, 0, 2], [-1, 5, 5, 1]], jnp.int32)
    carry, log_probs = lm_log_probs(params, LSTM, inputs)
    mixed_carry, mixed = lm_log_probs(mixture([params]), LSTM, inputs)
    np.testing.assert_allclose(mixed, log_probs, rtol=1e-12, atol=1e-12)
    for ours, theirs in zip(jax.tree.leaves(mixed_carry), jax.tree.leaves(carry), strict=True):
        np.testing.assert_allclose(ours[0], theirs, rtol=1e-12, atol=1e-12)


def test_lm_log_probs_carries_every_member_across_calls():
    members = mixture([random_lm(LSTM, seed) for seed in (3, 4)])
    inputs = jnp.asarray([[-1, 3, 0, 2, 4, 4, 1], [-1, 5, 5, 1, 0, 2, 3]], jnp.int32)
    _, whole = lm_log_probs(members, LSTM, inputs)
    carry = lm.init_lm_carry(members, LSTM, (2,))
    assert jax.tree.leaves(carry)[0].shape == (2, 2, LSTM.hidden_size)  # (K, batch, H)
    carry, first = lm_log_probs(members, LSTM, inputs[:, :3], carry)
    _, second = lm_log_probs(members, LSTM, inputs[:, 3:], carry)
    np.testing.assert_allclose(np.concatenate([first, second], 1), whole, rtol=1e-12)


def test_next_token_log_probs_of_a_mixture_is_the_mean_distribution():
    members = [random_lm(GRU, seed) for seed in (0, 1)]
    prefix = jnp.asarray([[3, 1, 4], [0, 5, 2]], jnp.int32)
    got = next_token_log_probs(mixture(members), GRU, prefix)
    expected = mean_of_probs(*(next_token_log_probs(p, GRU, prefix) for p in members))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.exp(got).sum(-1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("cell, length", [("gru", 2), ("lstm", 3)])
def test_a_mixture_is_a_distribution_over_sequences(cell, length):
    config = LMConfig(3, cell_name=cell, hidden_size=4, num_layers=2)
    members = mixture([random_lm(config, seed, scale=1.0) for seed in (5, 6)])
    every = np.array(list(itertools.product(range(3), repeat=length)), np.int32)  # (3^T, T)
    log_probs = sentence_log_prob(members, config, every)
    np.testing.assert_allclose(np.exp(log_probs).sum(), 1.0, rtol=1e-12)


# ------------------------------------------------------------------------------------ evaluation

STREAM_TEXT = "\n".join(
    resources.files("jaxrnn").joinpath("data/names.txt").read_text().splitlines()[:300]
)


def test_evaluate_lm_of_a_mixture_reads_each_row_through_every_member():
    corpus = make_corpus(STREAM_TEXT, mode="stream")
    config = LMConfig(corpus.vocab.size, cell_name="lstm", hidden_size=8, embedding_size=4)
    members = [random_lm(config, seed, scale=0.3) for seed in (0, 1)]
    (ids,) = corpus.valid
    n_targets, rows = len(ids) - 1, 3
    row_len = -(-n_targets // rows)
    total = 0.0
    for r in range(rows):  # each row whole, through each member alone, then mixed
        row = jnp.asarray(ids[r * row_len : (r + 1) * row_len + 1])
        each = [lm_log_probs(p, config, row[None, :-1])[1][0] for p in members]
        total -= np.take_along_axis(mean_of_probs(*each), row[1:, None], axis=-1).sum()
    got = evaluate_lm(mixture(members), config, corpus, rows=rows, seq_len=7)
    np.testing.assert_allclose(got, total / n_targets, rtol=1e-12)
    alone = [evaluate_lm(p, config, corpus, rows=rows, seq_len=7) for p in members]
    assert got < np.mean(alone)  # −log of a mean is below the mean of −logs (Jensen)


def test_evaluate_lm_of_a_mixture_in_lines_mode():
    names = resources.files("jaxrnn").joinpath("data/names.txt").read_text()
    corpus = make_corpus(names, mode="lines")
    config = LMConfig(corpus.vocab.size, cell_name="gru", hidden_size=8, embedding_size=5)
    members = [random_lm(config, seed, scale=0.3) for seed in (0, 1)]
    targets, lengths = corpus.valid
    each = [token_log_probs(p, config, targets, lengths) for p in members]
    valid = np.arange(targets.shape[1]) < lengths[:, None]
    expected = -mean_of_probs(*each)[valid].sum() / lengths.sum()
    got = evaluate_lm(mixture(members), config, corpus, rows=7)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_the_native_kernel_runs_each_member_of_a_float32_mixture():
    config = LMConfig(6, cell_name="lstm", hidden_size=32, embedding_size=8)
    members = [random_lm(config, seed, scale=0.1, dtype=jnp.float32) for seed in (0, 1)]
    inputs = jax.random.randint(jax.random.key(0), (16, 20), 0, 6)
    each = [lm_log_probs(p, config, inputs)[1] for p in members]
    _, got = lm_log_probs(mixture(members), config, inputs)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, mean_of_probs(*each), rtol=1e-5, atol=1e-5)


# -------------------------------------------------------------------------------------- sampling


@pytest.fixture(scope="module")
def two_samplers():
    return [random_lm(LSTM, seed, scale=1.0) for seed in (11, 12)]


def test_sample_greedy_from_a_mixture_follows_its_most_likely_tokens(two_samplers):
    members = mixture(two_samplers)
    drawn = lm.sample(members, LSTM, jax.random.key(0), max_len=8, temperature=0.0, prompt=(2,))
    prefix, expected = [2], []
    for _ in range(8):  # a Python loop of argmax over the whole prefix each time
        token = int(np.argmax(next_token_log_probs(members, LSTM, jnp.asarray(prefix))))
        expected.append(token)
        prefix.append(token)
    np.testing.assert_array_equal(drawn.ids[0], expected)
    alone = [
        lm.sample(p, LSTM, jax.random.key(0), max_len=8, temperature=0.0, prompt=(2,))
        for p in two_samplers
    ]
    assert not all(np.array_equal(a.ids[0], expected) for a in alone)  # neither member alone


def test_sample_first_token_frequencies_match_the_mixture(two_samplers):
    n = 4000
    members = mixture(two_samplers)
    probs = np.exp(next_token_log_probs(members, LSTM, jnp.asarray([1, 4], jnp.int32)))
    drawn = lm.sample(members, LSTM, jax.random.key(3), num_samples=n, max_len=1, prompt=(1, 4))
    counts = np.bincount(np.asarray(drawn.ids[:, 0]), minlength=LSTM.vocab_size)
    expected = n * probs
    assert expected.min() > 20  # the chi-square approximation holds
    statistic = ((counts - expected) ** 2 / expected).sum()
    assert stats.chi2.sf(statistic, df=LSTM.vocab_size - 1) > 1e-3, (counts, expected)


# ------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "members, message",
    [
        ([], "expected at least one member, got an empty sequence"),
        ("params", "expected a sequence of GeneratorParams, got str"),
        (lambda: [random_lm(GRU, 0), "params"], r"expected members\[1\] to be GeneratorParams"),
        (
            lambda: random_lm(GRU, 0),
            "expected a sequence of GeneratorParams, got GeneratorParams",
        ),
        (
            lambda: [random_lm(GRU, 0), random_lm(GRU._replace(hidden_size=5), 1)],
            r"expected members\[1\]\.recurrent\.layers\[0\]\.w_x shaped as "
            r"members\[0\]\.recurrent\.layers\[0\]\.w_x, \(6, 12\) float64; got \(6, 15\) float64",
        ),
        (
            lambda: [random_lm(GRU, 0), random_lm(GRU, 1, dtype=jnp.float32)],
            r"\(6, 12\) float64; got \(6, 12\) float32",
        ),
        (
            lambda: [random_lm(GRU, 0), random_lm(GRU._replace(embedding_size=3), 1)],
            r"expected members\[1\] to hold members\[0\]'s arrays",
        ),
    ],
    ids=["empty", "a_string", "not_params", "one_model", "other_width", "other_dtype", "embedding"],
)
def test_mixture_rejects_members_that_do_not_match(members, message):
    members = members() if callable(members) else members
    with pytest.raises(jaxrnn.InputError, match=message):
        mixture(members)


def test_a_mixture_is_a_pytree_of_stacked_members():
    members = [random_lm(GRU, seed) for seed in (0, 1, 2)]
    stacked = mixture(members)
    assert isinstance(stacked, Mixture)
    np.testing.assert_array_equal(stacked.members.head.w[1], members[1].head.w)
    assert stacked.members.embedding is None  # one-hot inputs stay one-hot


def test_lm_apply_refuses_a_mixture_whose_logits_do_not_mix():
    members = mixture([random_lm(GRU, 0), random_lm(GRU, 1)])
    with pytest.raises(jaxrnn.InputError, match="lm_apply: expected one model's.*use lm_log_probs"):
        lm.lm_apply(members, GRU, jnp.asarray([[1, 2]], jnp.int32))
