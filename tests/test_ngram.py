"""The n-gram baseline against hand-computed fractions and a dict-and-loop copy of its formulas."""

import math
from collections import Counter
from fractions import Fraction
from importlib import resources

import numpy as np
import pytest

from jaxrnn._checks import InputError
from jaxrnn.ngram import (
    evaluate,
    fit_ngram,
    log_probs,
    per_token_log_probs,
    sample,
    sequence_log_prob,
)

EOS, A, B = 0, 1, 2
TINY = [np.array([A, B, EOS]), np.array([A, A, EOS]), np.array([B, EOS])]  # V = 3


def _random_corpus(seed, vocab_size=5, n_sentences=30):
    rng = np.random.default_rng(seed)
    # Skewed token frequencies so that counts, types and continuation counts all differ.
    p = rng.dirichlet(np.ones(vocab_size - 1) * 0.5)
    return [
        np.append(rng.choice(np.arange(1, vocab_size), rng.integers(0, 8), p=p), EOS)
        for _ in range(n_sentences)
    ]


def _names_split():
    names = resources.files("jaxrnn").joinpath("data/names.txt").read_text().split()
    char_ids = {c: i for i, c in enumerate("\nabcdefghijklmnopqrstuvwxyz")}  # '\n' is ⟨EOS⟩ = 0
    sentences = [np.array([char_ids[c] for c in name + "\n"]) for name in names]
    order = np.random.default_rng(0).permutation(len(sentences))
    cut = int(0.9 * len(sentences))
    return [sentences[i] for i in order[:cut]], [sentences[i] for i in order[cut:]], len(char_ids)


def test_ngram_add_one_bigram_matches_hand_computation():
    model = fit_ngram(TINY, vocab_size=3, order=2, smoothing="add_k", k=1.0)
    # With one ⟨s⟩ before each sentence, the bigram counts are
    #   c(⟨s⟩ a) = 2, c(⟨s⟩ b) = 1                    c(⟨s⟩) = 3
    #   c(a b) = 1, c(a a) = 1, c(a EOS) = 1          c(a) = 3
    #   c(b EOS) = 2                                   c(b) = 2
    # and add-1 gives P(w | h) = (c(h w) + 1) / (c(h) + 3):
    p_a_start = Fraction(2 + 1, 3 + 3)  # 1/2
    p_b_a = Fraction(1 + 1, 3 + 3)  # 1/3
    p_eos_b = Fraction(2 + 1, 2 + 3)  # 3/5
    p_sentence = p_a_start * p_b_a * p_eos_b
    assert p_sentence == Fraction(1, 10)
    # Perplexity of the sentence alone: P^(−1/3) over its 3 predicted tokens = 10^(1/3).
    perplexity = float(p_sentence) ** (-1 / 3)

    got = per_token_log_probs(model, [A, B, EOS])
    np.testing.assert_allclose(np.exp(got), [1 / 2, 1 / 3, 3 / 5], rtol=1e-12)
    assert math.isclose(sequence_log_prob(model, [A, B, EOS]), math.log(0.1), rel_tol=1e-12)
    result = evaluate(model, [np.array([A, B, EOS])])
    assert result.n_tokens == 3
    assert math.isclose(result.perplexity, perplexity, rel_tol=1e-12)
    assert math.isclose(result.perplexity, 10 ** (1 / 3), rel_tol=1e-12)


def test_ngram_add_k_tends_to_maximum_likelihood():
    model = fit_ngram(TINY, vocab_size=3, order=2, smoothing="add_k", k=1e-9)
    # Maximum likelihood: c(h w) / c(h) from the counts in the test above.
    np.testing.assert_allclose(np.exp(log_probs(model, [])), [0, 2 / 3, 1 / 3], atol=1e-8)
    np.testing.assert_allclose(np.exp(log_probs(model, [A])), [1 / 3, 1 / 3, 1 / 3], atol=1e-8)
    np.testing.assert_allclose(np.exp(log_probs(model, [A, B])), [1, 0, 0], atol=1e-8)


@pytest.mark.parametrize("smoothing", ["add_k", "interpolated"])
@pytest.mark.parametrize("order", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("pad_start", [True, False])
def test_ngram_distribution_sums_to_one(order, smoothing, pad_start):
    vocab_size = 6
    model = fit_ngram(
        _random_corpus(order, vocab_size),
        vocab_size,
        order,
        smoothing=smoothing,
        pad_start=pad_start,
    )
    rng = np.random.default_rng(100 + order)
    for _ in range(40):
        # Random lengths (0 = a sequence start) and ids: a mix of seen and unseen contexts.
        context = rng.integers(0, vocab_size, rng.integers(0, order + 2))
        probs = np.exp(log_probs(model, context))
        assert probs.shape == (vocab_size,)
        assert math.isclose(probs.sum(), 1.0, rel_tol=1e-12)
        assert np.all(probs > 0)


def _kneser_ney_reference(sentences, vocab_size, order, discount, pad_start):
    """P(w | h) of interpolated Kneser–Ney written directly with dicts and loops.

    Every sentence is preceded by order−1 start symbols S. Without padding, the j-grams that contain
    S do not exist, but S still counts as the symbol preceding a j-gram at a sentence start.
    """
    S = vocab_size
    every = {j: Counter() for j in range(1, order + 1)}  # j-grams ending at each token, S included
    for sentence in sentences:
        padded = (S,) * (order - 1) + tuple(int(t) for t in sentence)
        for t in range(order - 1, len(padded)):
            for j in range(1, order + 1):
                every[j][padded[t - j + 1 : t + 1]] += 1
    raw = {
        j: Counter({g: c for g, c in every[j].items() if pad_start or S not in g}) for j in every
    }
    kn = {order: raw[order]}
    for j in range(1, order):
        kn[j] = Counter()
        for g, c in raw[j].items():
            preceding = {longer[0] for longer in every[j + 1] if longer[1:] == g}
            kn[j][g] = c if g[0] == S else len(preceding)  # nothing precedes S: keep the raw count

    def prob(history, w):
        history = ((S,) * (order - 1) + tuple(history))[len(history) :]  # the last order−1
        p = 1 / vocab_size
        for j in range(1, order + 1):
            context = history[len(history) - (j - 1) :]
            if not pad_start and S in context:
                break  # the context reaches back before the sentence
            total = sum(kn[j][context + (v,)] for v in range(vocab_size))
            if total == 0:
                continue  # unseen context: back off entirely
            types = sum(kn[j][context + (v,)] > 0 for v in range(vocab_size))
            p = (max(kn[j][context + (w,)] - discount, 0) + discount * types * p) / total
        return p

    return prob


@pytest.mark.parametrize("pad_start", [True, False])
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_ngram_kneser_ney_matches_reference(order, pad_start):
    vocab_size, discount = 4, 0.6
    corpus = _random_corpus(7 + order, vocab_size, n_sentences=25)
    model = fit_ngram(corpus, vocab_size, order, discount=discount, pad_start=pad_start)
    reference = _kneser_ney_reference(corpus, vocab_size, order, discount, pad_start)
    rng = np.random.default_rng(order)
    histories = [()] + [
        tuple(rng.integers(0, vocab_size, rng.integers(1, order + 1))) for _ in range(30)
    ]
    histories += [tuple(s[:cut]) for s in corpus[:10] for cut in range(len(s))]  # seen contexts
    for history in histories:
        expected = [reference(history, w) for w in range(vocab_size)]
        np.testing.assert_allclose(np.exp(log_probs(model, history)), expected, rtol=1e-12)


def test_ngram_kneser_ney_gives_unseen_events_probability():
    model = fit_ngram(TINY, vocab_size=3, order=3)
    # No sentence starts with EOS, and a is never followed by b then a; both still get mass.
    p_first = np.exp(log_probs(model, []))
    assert 0 < p_first[EOS] < p_first[B] < p_first[A]
    assert np.exp(log_probs(model, [A, B]))[A] > 0
    # An unseen context (b b) backs off to the bigram distribution after b.
    np.testing.assert_allclose(log_probs(model, [B, B]), log_probs(model, [EOS, B]), rtol=1e-12)


@pytest.mark.parametrize("smoothing", ["add_k", "interpolated"])
def test_ngram_sequence_log_prob_is_sum_of_per_token(smoothing):
    corpus = _random_corpus(3)
    model = fit_ngram(corpus, 5, 3, smoothing=smoothing)
    sentence = np.array([3, 1, 4, 1, EOS])
    per_token = per_token_log_probs(model, sentence)
    # Chain rule: each token from log_probs of the prefix before it.
    by_prefix = [log_probs(model, sentence[:t])[sentence[t]] for t in range(len(sentence))]
    np.testing.assert_allclose(per_token, by_prefix, rtol=1e-12)
    assert math.isclose(sequence_log_prob(model, sentence), per_token.sum(), rel_tol=1e-12)
    # evaluate averages the same per-token values over all sequences.
    held_out = corpus[:5]
    total = sum(sequence_log_prob(model, s) for s in held_out)
    result = evaluate(model, held_out)
    assert result.n_tokens == sum(len(s) for s in held_out)
    assert math.isclose(result.nats_per_token, -total / result.n_tokens, rel_tol=1e-12)


def test_ngram_uniform_model_perplexity_is_vocab_size():
    vocab_size = 7
    model = fit_ngram(_random_corpus(0, vocab_size), vocab_size, 1, smoothing="add_k", k=1e12)
    result = evaluate(model, _random_corpus(1, vocab_size))
    assert math.isclose(result.perplexity, vocab_size, rel_tol=1e-9)
    assert math.isclose(result.nats_per_token, math.log(vocab_size), rel_tol=1e-9)


def test_ngram_stream_predicts_first_tokens_from_shorter_contexts():
    stream = np.array([1, 2, 1, 2, 1, 2, 0, 1, 2])
    model = fit_ngram(stream, vocab_size=3, order=3, smoothing="add_k", k=1.0)
    assert not model.pad_start
    # Without start symbols, token 1 uses the unigram counts, token 2 the bigram counts:
    #   c(0) = 1, c(1) = 4, c(2) = 4 of 9             P(1) = (4 + 1) / (9 + 3) = 5/12
    #   c(1 2) = 4 of c(1) = 4                        P(2 | 1) = (4 + 1) / (4 + 3) = 5/7
    #   c(1 2 1) = 2, c(1 2 0) = 1 of c(1 2) = 3      P(0 | 1 2) = (1 + 1) / (3 + 3) = 1/3
    got = np.exp(per_token_log_probs(model, [1, 2, 0]))
    np.testing.assert_allclose(got, [5 / 12, 5 / 7, 1 / 3], rtol=1e-12)
    result = evaluate(model, stream)
    assert result.n_tokens == len(stream)
    assert math.isclose(result.nats_per_token, -sequence_log_prob(model, stream) / 9, rel_tol=1e-12)


def test_ngram_higher_order_lowers_names_perplexity():
    train, valid, vocab_size = _names_split()
    perplexity = {n: evaluate(fit_ngram(train, vocab_size, n), valid).perplexity for n in (1, 2, 3)}
    # Measured on this split: 16.6 (unigram), 10.3 (bigram), 8.1 (trigram).
    assert perplexity[1] > perplexity[2] > perplexity[3]
    assert perplexity[3] < 9.0


def test_ngram_sample_reproducible_and_stops():
    train, _, vocab_size = _names_split()
    model = fit_ngram(train, vocab_size, 4)
    first = sample(model, np.random.default_rng(5), eos_id=EOS, max_len=40)
    again = sample(model, np.random.default_rng(5), eos_id=EOS, max_len=40)
    np.testing.assert_array_equal(first, again)
    # Stops right after ⟨EOS⟩: exactly one, at the end.
    assert first[-1] == EOS and np.count_nonzero(first == EOS) == 1
    assert not np.array_equal(
        first, sample(model, np.random.default_rng(6), eos_id=EOS, max_len=40)
    )
    # Stops at max_len when ⟨EOS⟩ is not drawn (or not given).
    assert len(sample(model, np.random.default_rng(5), eos_id=EOS, max_len=2)) <= 2
    assert len(sample(model, np.random.default_rng(5), eos_id=None, max_len=25)) == 25
    # A prompt is continued, not returned: names that start with q go on with u.
    q, u = 17, 21
    rng = np.random.default_rng(0)
    after_q = Counter(
        int(sample(model, rng, eos_id=EOS, max_len=1, prompt=[q])[0]) for _ in range(50)
    )
    assert after_q.most_common(1)[0][0] == u


def test_ngram_errors():
    with pytest.raises(InputError, match=r"fit_ngram: expected order ≥ 1 .*got 0"):
        fit_ngram(TINY, 3, 0)
    with pytest.raises(
        InputError, match=r"fit_ngram: expected sequences\[1\] ids in \[0, 3\).*to 5"
    ):
        fit_ngram([np.array([1, 0]), np.array([5, 0])], 3, 2)
    with pytest.raises(InputError, match=r"fit_ngram: expected sequences ids in \[0, 3\).*from -1"):
        fit_ngram(np.array([1, -1, 0]), 3, 2)
    with pytest.raises(InputError, match=r"fit_ngram: expected at least one token.*empty corpus"):
        fit_ngram([], 3, 2)
    with pytest.raises(InputError, match=r"fit_ngram: expected at least one token"):
        fit_ngram([np.array([], np.int64)], 3, 2)
    with pytest.raises(InputError, match=r"fit_ngram: expected smoothing .*got 'kn'"):
        fit_ngram(TINY, 3, 2, smoothing="kn")
    with pytest.raises(InputError, match=r"fit_ngram: expected k > 0, got 0"):
        fit_ngram(TINY, 3, 2, smoothing="add_k", k=0)
    with pytest.raises(InputError, match=r"fit_ngram: expected discount in \(0, 1\], got 1.5"):
        fit_ngram(TINY, 3, 2, discount=1.5)
    with pytest.raises(InputError, match=r"fit_ngram: expected sequences\[0\] to have an integer"):
        fit_ngram([np.array([1.0, 0.0])], 3, 2)
    with pytest.raises(InputError, match=r"fit_ngram: expected \(vocab_size \+ 1\)\^order < 2\^63"):
        fit_ngram(TINY, 50_000, 5)
    model = fit_ngram(TINY, 3, 2)
    with pytest.raises(InputError, match=r"log_probs: expected context_ids ids in \[0, 3\).*to 3"):
        log_probs(model, [1, 3])
    with pytest.raises(InputError, match=r"per_token_log_probs: expected ids to be a 1-D array"):
        per_token_log_probs(model, np.zeros((2, 2), np.int64))
    with pytest.raises(InputError, match=r"evaluate: expected at least one token"):
        evaluate(model, [])
    with pytest.raises(InputError, match=r"sample: expected eos_id in \[0, 3\).*got 4"):
        sample(model, np.random.default_rng(0), eos_id=4, max_len=5)
