"""The language model: forward pass against numpy, sentence probabilities, and sampling."""

import itertools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import STEPS
from scipy import stats

import jaxrnn
from jaxrnn import LSTMState, lm
from jaxrnn.lm import LMConfig, init_lm, sample, teacher_forcing_inputs

# The reference step function that transcribes each cell name's equations.
REFERENCE_STEP = {"rnn": "rnn_tanh", "gru": "gru_before", "lstm": "lstm"}


def random_lm(config, seed=0, scale=0.5):
    """float64 params from init_lm, every leaf moved by noise so that the zero biases count too."""
    params = init_lm(jax.random.key(seed), config, dtype=jnp.float64)
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda p: p + rng.normal(0.0, scale, p.shape), params)


def ids(values):
    return jnp.asarray(values, jnp.int32)


# Compiled with the config static: each shape compiles once and is reused across tests, where an
# eager call would compile its scans again on every call. The error tests call the eager functions.
lm_apply, next_token_log_probs, sentence_log_prob, token_log_probs = (
    jax.jit(fn, static_argnums=1)
    for fn in (lm.lm_apply, lm.next_token_log_probs, lm.sentence_log_prob, lm.token_log_probs)
)


# --------------------------------------------------------------------------- forward against numpy


def numpy_forward(params, config, inputs):
    """logits (B, T, V) and each layer's last carry, one example, one step, one layer at a time."""
    step = STEPS[REFERENCE_STEP[config.cell_name]]
    vocab, hidden = config.vocab_size, config.hidden_size
    embedding = None if params.embedding is None else np.asarray(params.embedding)
    w, b = np.asarray(params.head.w), np.asarray(params.head.b)
    n_in = vocab if embedding is None else embedding.shape[1]
    logits = np.zeros((*inputs.shape, vocab))
    last = []
    for row, tokens in enumerate(np.asarray(inputs)):
        zero = np.zeros(hidden)
        layers = params.recurrent.layers
        carries = [(zero, zero) if config.cell_name == "lstm" else zero for _ in layers]
        for t, token in enumerate(tokens):
            if token == -1:
                x = np.zeros(n_in)  # x⟨1⟩ = 0
            elif embedding is None:
                x = np.eye(vocab)[token]  # one-hot
            else:
                x = embedding[token]
            for depth, layer in enumerate(layers):
                carries[depth], x = step(layer, carries[depth], x)
            logits[row, t] = x @ w + b
        last.append(carries)
    return logits, last


def carry_to_numpy(carry, row):
    if isinstance(carry, LSTMState):
        return (np.asarray(carry.h[row]), np.asarray(carry.c[row]))
    return np.asarray(carry[row])


@pytest.mark.parametrize("embedding_size", [None, 4], ids=["one_hot", "embedding"])
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_lm_apply_matches_numpy_forward(cell, embedding_size):
    config = LMConfig(7, cell_name=cell, hidden_size=5, num_layers=2, embedding_size=embedding_size)
    params = random_lm(config)
    # −1 (the zero input) first, as teacher forcing feeds it, and once more in the middle.
    inputs = np.array([[-1, 3, 0, 6, 2, 2], [-1, 1, -1, 5, 4, 0], [-1, 6, 6, 6, 1, 3]])
    expected_logits, expected_last = numpy_forward(params, config, inputs)
    last, logits = lm_apply(params, config, inputs)
    np.testing.assert_allclose(logits, expected_logits, rtol=1e-10, atol=1e-12)
    for depth in range(config.num_layers):
        for row in range(len(inputs)):
            np.testing.assert_allclose(
                carry_to_numpy(last[depth], row), expected_last[row][depth], rtol=1e-10, atol=1e-12
            )


def test_teacher_forcing_inputs_shifts_targets_behind_the_zero_input():
    got = teacher_forcing_inputs(np.array([[4, 2, 0], [1, 1, 3]], np.int32))
    np.testing.assert_array_equal(got, [[-1, 4, 2], [-1, 1, 1]])


# ------------------------------------------------------------------------ sentence probabilities

CONFIGS = {
    "lstm_embedding": LMConfig(6, cell_name="lstm", hidden_size=5, num_layers=2, embedding_size=3),
    "gru_one_hot": LMConfig(6, cell_name="gru", hidden_size=4),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_next_token_log_probs_is_a_distribution(name):
    config = CONFIGS[name]
    params = random_lm(config)
    prefixes = ids([[3, 1, 4], [0, 5, 2]])
    for prefix in (prefixes, prefixes[:, :0], prefixes[0, :0], prefixes[1]):
        log_probs = next_token_log_probs(params, config, prefix)
        assert log_probs.shape == (*prefix.shape[:-1], config.vocab_size)
        np.testing.assert_allclose(np.exp(log_probs).sum(-1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("name", CONFIGS)
def test_next_token_log_probs_empty_prefix_is_first_token_distribution(name):
    config = CONFIGS[name]
    params = random_lm(config)
    first = next_token_log_probs(params, config, ids([]))
    # token_log_probs of the one-token sentence v is log P(y⟨1⟩ = v), for every v.
    each = token_log_probs(params, config, ids(np.arange(config.vocab_size)[:, None]))[:, 0]
    np.testing.assert_allclose(first, each, rtol=1e-12, atol=1e-12)
    # the course's ŷ⟨1⟩ = softmax(logits of the step that reads x⟨1⟩ = 0)
    _, logits = lm_apply(params, config, ids([-1]))
    np.testing.assert_allclose(first, jax.nn.log_softmax(logits[0]), rtol=1e-12, atol=1e-12)


def test_sentence_log_prob_is_the_chain_rule():
    config = CONFIGS["lstm_embedding"]
    params = random_lm(config)
    sentence = [2, 5, 5, 0, 3, 1]
    per_token = token_log_probs(params, config, ids(sentence))
    # P(y⟨1⟩ … y⟨T⟩) = Π_t P(y⟨t⟩ | y⟨<t⟩), each factor from the prefix alone.
    chain = [
        float(next_token_log_probs(params, config, ids(sentence[:t]))[sentence[t]])
        for t in range(len(sentence))
    ]
    np.testing.assert_allclose(per_token, chain, rtol=1e-12, atol=1e-12)
    total = sentence_log_prob(params, config, ids(sentence))
    np.testing.assert_allclose(total, sum(chain), rtol=1e-12)
    np.testing.assert_allclose(total, np.sum(per_token), rtol=1e-12)
    assert float(total) < 0.0


def test_sentence_log_prob_lengths_mask_padding():
    config = CONFIGS["lstm_embedding"]
    params = random_lm(config)
    sentences = [[4, 1, 0, 2, 5], [3, 3], [0, 1, 2, 3]]
    lengths = np.array([len(s) for s in sentences], np.int32)
    # padding with ids that would change the result if they were counted
    batch = np.array([s + [5, 4, 3, 2, 1][: 5 - len(s)] for s in sentences], np.int32)
    alone = [float(sentence_log_prob(params, config, ids(s))) for s in sentences]
    np.testing.assert_allclose(
        sentence_log_prob(params, config, batch, lengths), alone, rtol=1e-12, atol=1e-12
    )
    per_token = np.asarray(token_log_probs(params, config, batch, lengths))
    np.testing.assert_array_equal(per_token[np.arange(5) >= lengths[:, None]], 0.0)
    unmasked = np.asarray(sentence_log_prob(params, config, batch))
    assert not np.allclose(unmasked[1:], alone[1:])  # the padding would have counted


@pytest.mark.parametrize("cell, length", [("rnn", 2), ("gru", 2), ("lstm", 3)])
def test_sentence_log_prob_sums_to_one_over_all_sequences(cell, length):
    config = LMConfig(3, cell_name=cell, hidden_size=4, num_layers=2)
    params = random_lm(config, scale=1.0)
    every = np.array(list(itertools.product(range(3), repeat=length)), np.int32)  # (3^T, T)
    log_probs = sentence_log_prob(params, config, every)
    np.testing.assert_allclose(np.exp(log_probs).sum(), 1.0, rtol=1e-12)
    assert np.ptp(log_probs) > 0.1  # not a uniform model, where this would be trivial


# ---------------------------------------------------------------------------------------- sampling

SAMPLER = LMConfig(6, cell_name="lstm", hidden_size=8, num_layers=2, embedding_size=4)
EOS = 0


@pytest.fixture(scope="module")
def sampler_params():
    # greedy decoding of this model reaches ⟨EOS⟩ after 5 tokens, and its top two log-probs
    # differ by more than 0.01 at every step
    return random_lm(SAMPLER, seed=11, scale=1.0)


def greedy(params, config, max_len, *, eos_id=None, prompt=(), exclude=()):
    """argmax decoding written as a Python loop over next_token_log_probs on growing prefixes;
    returns (ids padded with ⟨EOS⟩ to max_len, length, smallest gap between the top two)."""
    prefix, out, gap = list(prompt), [], np.inf
    while len(out) < max_len:
        log_probs = np.array(next_token_log_probs(params, config, ids(prefix)))
        log_probs[list(exclude)] = -np.inf
        top_two = np.sort(log_probs)[-2:]
        gap = min(gap, top_two[1] - top_two[0])
        token = int(np.argmax(log_probs))
        out.append(token)
        prefix.append(token)
        if token == eos_id:
            break
    length = len(out)
    return out + [eos_id] * (max_len - length), length, gap


def test_sample_same_key_same_samples_other_key_other_samples(sampler_params):
    draw = lambda seed: sample(  # noqa: E731
        sampler_params, SAMPLER, jax.random.key(seed), num_samples=16, max_len=10, eos_id=EOS
    )
    first, again, other = draw(0), draw(0), draw(1)
    np.testing.assert_array_equal(first.ids, again.ids)
    np.testing.assert_array_equal(first.lengths, again.lengths)
    assert not np.array_equal(first.ids, other.ids)
    assert len({tuple(row) for row in np.asarray(first.ids).tolist()}) > 1  # samples differ


def test_sample_stops_at_eos(sampler_params):
    max_len = 8
    drawn = sample(
        sampler_params, SAMPLER, jax.random.key(5), num_samples=64, max_len=max_len, eos_id=EOS
    )
    got_ids, got_lengths = np.asarray(drawn.ids), np.asarray(drawn.lengths)
    assert got_ids.shape == (64, max_len)
    assert got_ids.dtype == np.int32 and got_lengths.dtype == np.int32
    assert got_ids.min() >= 0 and got_ids.max() < SAMPLER.vocab_size
    for row, length in zip(got_ids, got_lengths, strict=True):
        hits = np.flatnonzero(row == EOS)
        expected = hits[0] + 1 if hits.size else max_len
        assert length == expected
        np.testing.assert_array_equal(row[expected:], EOS)  # ⟨EOS⟩ after the first ⟨EOS⟩
    stopped = got_lengths < max_len
    assert stopped.any() and not stopped.all()  # both cases seen


def test_sample_without_eos_draws_max_len_tokens(sampler_params):
    drawn = sample(sampler_params, SAMPLER, jax.random.key(2), num_samples=8, max_len=5)
    assert drawn.ids.shape == (8, 5)
    np.testing.assert_array_equal(drawn.lengths, 5)
    assert (np.asarray(drawn.ids) == EOS).any()  # EOS is an ordinary token without eos_id


@pytest.mark.parametrize("max_len", [3, 8])
def test_sample_temperature_zero_is_greedy(sampler_params, max_len):
    expected, length, _ = greedy(sampler_params, SAMPLER, max_len, eos_id=EOS)
    drawn = sample(
        sampler_params,
        SAMPLER,
        jax.random.key(0),
        num_samples=3,
        max_len=max_len,
        eos_id=EOS,
        temperature=0.0,
    )
    np.testing.assert_array_equal(drawn.ids, [expected] * 3)
    np.testing.assert_array_equal(drawn.lengths, [length] * 3)


@pytest.mark.parametrize("options", [{"temperature": 1e-4}, {"top_k": 1}], ids=str)
def test_sample_near_greedy_options_give_greedy(sampler_params, options):
    expected, length, gap = greedy(sampler_params, SAMPLER, 8, eos_id=EOS)
    assert gap > 1e-2  # so that at temperature 1e-4 the runner-up has odds below e^−100
    drawn = sample(
        sampler_params,
        SAMPLER,
        jax.random.key(7),
        num_samples=16,
        max_len=8,
        eos_id=EOS,
        **options,
    )
    np.testing.assert_array_equal(drawn.ids, [expected] * 16)
    np.testing.assert_array_equal(drawn.lengths, [length] * 16)


def test_sample_exclude_ids_never_drawn(sampler_params):
    first_choice = int(np.argmax(next_token_log_probs(sampler_params, SAMPLER, ids([]))))
    excluded = [first_choice, 4] if first_choice != 4 else [4, 5]
    drawn = sample(
        sampler_params,
        SAMPLER,
        jax.random.key(1),
        num_samples=200,
        max_len=8,
        exclude_ids=excluded,
    )
    seen = set(np.unique(drawn.ids).tolist())
    assert seen == set(range(SAMPLER.vocab_size)) - set(excluded)
    # greedy with exclusions is argmax over the remaining tokens
    expected, length, _ = greedy(sampler_params, SAMPLER, 8, eos_id=EOS, exclude=excluded)
    greedy_drawn = sample(
        sampler_params,
        SAMPLER,
        jax.random.key(1),
        max_len=8,
        eos_id=EOS,
        temperature=0.0,
        exclude_ids=excluded,
    )
    np.testing.assert_array_equal(greedy_drawn.ids, [expected])
    assert expected[0] != first_choice


def test_sample_with_prompt_continues_the_prompt(sampler_params):
    prompt = [3, 1]
    expected, length, _ = greedy(sampler_params, SAMPLER, 6, eos_id=EOS, prompt=prompt)
    without, _, _ = greedy(sampler_params, SAMPLER, 6, eos_id=EOS)
    assert expected != without  # the prompt matters
    drawn = sample(
        sampler_params,
        SAMPLER,
        jax.random.key(0),
        num_samples=2,
        max_len=6,
        eos_id=EOS,
        temperature=0.0,
        prompt=prompt,
    )
    np.testing.assert_array_equal(drawn.ids, [expected] * 2)
    np.testing.assert_array_equal(drawn.lengths, [length] * 2)


@pytest.mark.parametrize(
    "as_ids",
    [
        jnp.asarray,
        np.asarray,
        lambda v: [np.int64(i) for i in v],
        lambda v: [jnp.int32(i) for i in v],
    ],
    ids=["jax_array", "numpy_array", "numpy_scalars", "jax_scalars"],
)
def test_sample_takes_ids_as_jax_or_numpy_arrays(sampler_params, as_ids):
    options = dict(num_samples=2, max_len=6, temperature=0.0)
    want = sample(sampler_params, SAMPLER, jax.random.key(0), **options, eos_id=EOS,
                  prompt=[3, 1], exclude_ids=[2, 5])  # fmt: skip
    got = sample(sampler_params, SAMPLER, jax.random.key(0), **options, eos_id=jnp.int32(EOS),
                 prompt=as_ids([3, 1]), exclude_ids=as_ids([2, 5]))  # fmt: skip
    np.testing.assert_array_equal(got.ids, want.ids)
    np.testing.assert_array_equal(got.lengths, want.lengths)


def _target_distribution(log_probs, temperature, top_k):
    """P(next) after the temperature and top-k rules: softmax(log p / T) over the k most likely."""
    scaled = np.asarray(log_probs) / temperature
    if top_k is not None:
        scaled[np.argsort(scaled)[:-top_k]] = -np.inf
    probs = np.exp(scaled - scaled.max())
    return probs / probs.sum()


@pytest.mark.parametrize(
    "prompt, temperature, top_k",
    [((), 1.0, None), ((2, 5), 1.0, None), ((), 2.0, None), ((1,), 0.7, 3)],
)
def test_sample_first_token_frequencies_match_model(sampler_params, prompt, temperature, top_k):
    n = 4000
    log_probs = next_token_log_probs(sampler_params, SAMPLER, ids(prompt))
    probs = _target_distribution(log_probs, temperature, top_k)
    drawn = sample(
        sampler_params,
        SAMPLER,
        jax.random.key(11),
        num_samples=n,
        max_len=1,
        temperature=temperature,
        top_k=top_k,
        prompt=prompt,
    )
    counts = np.bincount(np.asarray(drawn.ids[:, 0]), minlength=SAMPLER.vocab_size)
    support = probs > 0
    assert counts[~support].sum() == 0  # nothing outside the top k
    expected = n * probs[support]
    assert expected.min() > 20  # the chi-square approximation holds
    statistic = ((counts[support] - expected) ** 2 / expected).sum()
    assert stats.chi2.sf(statistic, df=support.sum() - 1) > 1e-3, (counts, expected)


# -------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "options, message",
    [
        ({"max_len": 0}, "sample: expected max_len to be a positive int, got 0"),
        ({"top_k": 0}, "sample: expected top_k to be an int in [1, 7), got 0"),
        ({"top_k": 7}, "sample: expected top_k to be an int in [1, 7), got 7"),
        ({"temperature": -1.0}, "sample: expected temperature to be a number >= 0, got -1.0"),
        ({"num_samples": 0}, "sample: expected num_samples to be a positive int, got 0"),
        ({"exclude_ids": [2, 6]}, "sample: expected exclude_ids to be an int in [0, 6), got 6"),
        (
            {"exclude_ids": range(6)},
            "sample: expected exclude_ids to leave a token to draw, got all 6",
        ),
        ({"eos_id": -1}, "sample: expected eos_id to be an int in [0, 6), got -1"),
        ({"prompt": [1, 9]}, "sample: expected prompt to be an int in [0, 6), got 9"),
        ({"prompt": jnp.array([1, 9])}, "sample: expected prompt to be an int in [0, 6), got 9"),
        (
            {"prompt": jnp.array([1.0], jnp.float32)},
            "sample: expected prompt to be an int in [0, 6), got np.float32(1.0)",
        ),
        (
            {"prompt": jnp.array([[1, 2]], jnp.int32)},
            "sample: expected prompt to be an int in [0, 6), got array([1, 2], dtype=int32)",
        ),
        ({"prompt": jnp.int32(3)}, "sample: expected prompt to be a sequence of ids, got array(3"),
        ({"eos_id": jnp.int32(6)}, "sample: expected eos_id to be an int in [0, 6), got 6"),
    ],
)
def test_sample_rejects_bad_options(sampler_params, options, message):
    with pytest.raises(jaxrnn.InputError, match=re.escape(message)):
        sample(sampler_params, SAMPLER, jax.random.key(0), **options)


@pytest.mark.parametrize("bad", [6, -2])
def test_lm_apply_rejects_ids_out_of_range(sampler_params, bad):
    inputs = np.array([[-1, 2, bad]], np.int32)
    low, high = min(-1, bad), max(2, bad)
    message = f"lm_apply: expected inputs ids in [-1, 6), got values in [{low}, {high}]"
    with pytest.raises(jaxrnn.InputError, match=re.escape(message)):
        lm.lm_apply(sampler_params, SAMPLER, inputs)


def test_lm_apply_rejects_float_inputs(sampler_params):
    with pytest.raises(jaxrnn.InputError, match="lm_apply: expected inputs"):
        lm.lm_apply(sampler_params, SAMPLER, np.zeros((1, 3), np.float32))


@pytest.mark.parametrize(
    "config, message",
    [
        (
            LMConfig(5, cell_name="transformer"),
            "cell_from_name: expected cell in ['gru', 'gru_reset_after', 'lstm', 'lstm_peephole', "
            "'min_gru', 'min_lstm', 'rnn', 'rnn_relu', 'simplified_gru'], got 'transformer'",
        ),
        (LMConfig(0), "LMConfig: expected vocab_size to be a positive int, got 0"),
        (LMConfig(5, dropout_rate=1.0), "LMConfig: expected dropout_rate in [0, 1), got 1.0"),
        (LMConfig(5, embedding_size=0), "expected embedding_size None or a positive int, got 0"),
    ],
)
def test_lm_config_rejects_bad_values(config, message):
    with pytest.raises(jaxrnn.InputError, match=re.escape(message)):
        init_lm(jax.random.key(0), config)
    with pytest.raises(jaxrnn.InputError, match=re.escape(message)):
        sample({}, config, jax.random.key(0))


# Each LMConfig field the params can disagree with, and the message that names it.
MISMATCHES = {
    "vocab_size": (
        SAMPLER._replace(vocab_size=7),
        "expected params built for LMConfig.vocab_size=7, got params of vocab_size 6",
    ),
    "cell_name": (
        SAMPLER._replace(cell_name="gru"),
        "expected params built for LMConfig.cell_name='gru', got params of cell_name 'lstm'",
    ),
    "hidden_size": (
        SAMPLER._replace(hidden_size=9, num_layers=1),
        "expected params built for LMConfig.hidden_size=9, got params of hidden_size 8",
    ),
    "num_layers": (
        SAMPLER._replace(num_layers=1),
        "expected params built for LMConfig.num_layers=1, got params of num_layers 2",
    ),
    "embedding_size": (
        SAMPLER._replace(embedding_size=5),
        "expected params built for LMConfig.embedding_size=5, got params of embedding_size 4",
    ),
    "one_hot": (
        SAMPLER._replace(embedding_size=None),
        "expected params built for LMConfig.embedding_size=None, got params of embedding_size 4",
    ),
}


@pytest.mark.parametrize("field", MISMATCHES)
def test_sample_rejects_params_built_for_another_config(sampler_params, field):
    config, message = MISMATCHES[field]
    hint = (
        "; pass the LMConfig they were built with; they fit LMConfig(vocab_size=6, "
        "cell_name='lstm', hidden_size=8, num_layers=2, embedding_size=4, …)"
    )
    with pytest.raises(jaxrnn.InputError, match=re.escape(f"sample: {message}{hint}")):
        sample(sampler_params, config, jax.random.key(0))


TARGETS = ids([[1, 2, 0]])
ENTRY_POINTS = {
    "lm_apply": lambda p, c: lm.lm_apply(p, c, teacher_forcing_inputs(TARGETS)),
    "lm_log_probs": lambda p, c: lm.lm_log_probs(p, c, teacher_forcing_inputs(TARGETS)),
    "lm_loss": lambda p, c: lm.lm_loss(p, c, teacher_forcing_inputs(TARGETS), TARGETS),
    "token_log_probs": lambda p, c: lm.token_log_probs(p, c, TARGETS),
    "sentence_log_prob": lambda p, c: lm.sentence_log_prob(p, c, TARGETS),
    "next_token_log_probs": lambda p, c: lm.next_token_log_probs(p, c, TARGETS),
    "init_lm_carry": lambda p, c: lm.init_lm_carry(p, c),
    "embed": lambda p, c: lm.embed(p, c, TARGETS),
}


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("fn", ENTRY_POINTS)
def test_every_entry_point_checks_params_against_config(sampler_params, fn, jit):
    call = jax.jit(ENTRY_POINTS[fn], static_argnums=1) if jit else ENTRY_POINTS[fn]
    config, message = MISMATCHES["hidden_size"]
    with pytest.raises(jaxrnn.InputError, match=re.escape(f"{fn}: {message}")):
        call(sampler_params, config)
    mixed = lm.mixture([sampler_params, sampler_params])
    if fn not in ("lm_apply", "lm_loss", "embed"):  # those take one model's params
        with pytest.raises(jaxrnn.InputError, match=re.escape(f"{fn}: {message}")):
            call(mixed, config)


@pytest.mark.parametrize("name", lm.CELL_NAMES)
def test_params_check_names_the_cell_the_params_were_built_for(name):
    config = LMConfig(5, cell_name=name, hidden_size=3, num_layers=2)
    params = init_lm(jax.random.key(0), config)
    lm.check_params_fit("f", params, config)
    lm.check_params_fit("f", lm.mixture([params, params]), config)
    names = list(lm.CELL_NAMES)
    other = names[(names.index(name) + 1) % len(names)]
    message = (
        f"f: expected params built for LMConfig.cell_name={other!r}, "
        f"got params of cell_name {name!r}"
    )
    with pytest.raises(jaxrnn.InputError, match=re.escape(message)):
        lm.check_params_fit("f", params, config._replace(cell_name=other))


def test_params_check_names_an_array_that_differs_from_its_config():
    config = LMConfig(5, hidden_size=3, num_layers=2)
    params = init_lm(jax.random.key(0), config)
    wider = init_lm(jax.random.key(0), config._replace(hidden_size=4)).recurrent.layers[1]
    params = params._replace(recurrent=jaxrnn.StackedParams((params.recurrent.layers[0], wider)))
    message = (
        f"lm_apply: expected params.recurrent.layers[1].w_x of shape (3, 12) for {config}, "
        "got (4, 16)"
    )
    with pytest.raises(jaxrnn.InputError, match=re.escape(message)):
        lm.lm_apply(params, config, ids([[-1, 2]]))
    with pytest.raises(jaxrnn.InputError, match="lm_apply: expected params to be GeneratorParams"):
        lm.lm_apply({"head": params.head}, config, ids([[-1, 2]]))


# Under jit the ids are tracers: nothing can raise, so an out-of-range id must turn what depends on
# it into NaN. The bad example's steps before the bad id and the other examples stay as they were.
@pytest.mark.parametrize("bad", [6, 100, -2])
@pytest.mark.parametrize("embedding_size", [None, 4], ids=["one_hot", "embedding"])
def test_lm_apply_ids_out_of_range_give_nan_under_jit(embedding_size, bad):
    config = LMConfig(
        6, cell_name="gru", hidden_size=5, num_layers=2, embedding_size=embedding_size
    )
    params = random_lm(config)
    good = np.array([[-1, 2, 3, 1], [-1, 4, 0, 5]], np.int32)
    inputs = good.copy()
    inputs[0, 2] = bad
    carry, logits = lm_apply(params, config, ids(inputs))
    want, want_carry = numpy_forward(params, config, good)
    assert np.all(np.isnan(np.asarray(logits)[0, 2:]))
    assert all(np.all(np.isnan(np.asarray(layer[0]))) for layer in carry)
    np.testing.assert_allclose(logits[0, :2], want[0, :2], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(logits[1], want[1], rtol=1e-12, atol=1e-12)
    for layer, want_layer in zip(carry, want_carry[1], strict=True):
        np.testing.assert_allclose(layer[1], want_layer, rtol=1e-12, atol=1e-12)


def test_lm_apply_ids_out_of_range_in_padding_are_not_read_under_jit():
    config = CONFIGS["lstm_embedding"]
    params = random_lm(config)
    inputs, lengths = ids([[-1, 2, 3, 1], [-1, 4, 99, -7]]), ids([4, 2])
    _, logits = lm_apply(params, config, inputs, lengths=lengths)
    _, want = lm_apply(params, config, jnp.clip(inputs, -1, 5), lengths=lengths)
    np.testing.assert_array_equal(logits, want)
    assert np.all(np.isfinite(logits))


def test_lm_loss_is_nan_with_an_out_of_range_input_id_under_jit():
    # valid targets: only the input id can make the loss NaN, and with it the training step skipped
    config = CONFIGS["lstm_embedding"]
    params = random_lm(config)
    inputs, targets = ids([[-1, 1, 2], [-1, 9, 5]]), ids([[1, 2, 3], [4, 0, 5]])
    loss = jax.jit(lambda p, x, y: lm.lm_loss(p, config, x, y)[0])
    assert np.isfinite(loss(params, inputs.at[1, 1].set(4), targets))
    assert np.isnan(loss(params, inputs, targets))


@pytest.mark.parametrize("bad", [6, -1, -3])
def test_token_log_probs_ids_out_of_range_give_nan_under_jit(bad):
    # −1 is the zero input x⟨1⟩ for lm_apply, but never a target: it must not read as x = 0
    config = CONFIGS["lstm_embedding"]
    params = random_lm(config)
    good = np.array([[4, 1, 0, 2, 5], [3, 3, 2, 1, 0]], np.int32)
    targets = good.copy()
    targets[0, 2] = bad
    got = np.asarray(token_log_probs(params, config, ids(targets)))
    want = np.asarray(token_log_probs(params, config, ids(good)))
    assert np.all(np.isnan(got[0, 2:]))
    np.testing.assert_array_equal(got[0, :2], want[0, :2])
    np.testing.assert_array_equal(got[1], want[1])
    assert np.isnan(sentence_log_prob(params, config, ids(targets))[0])

    # in the padding the bad id is not read: the valid steps keep their values
    got = np.asarray(token_log_probs(params, config, ids(targets), ids([2, 5])))
    np.testing.assert_array_equal(got[0], [*want[0, :2], 0.0, 0.0, 0.0])


@pytest.mark.parametrize("bad", [6, -1, -3])
def test_next_token_log_probs_ids_out_of_range_give_nan_under_jit(bad):
    config = CONFIGS["lstm_embedding"]
    params = random_lm(config)
    prefix = np.array([[4, 1, 0], [3, 3, 2]], np.int32)
    want = np.asarray(next_token_log_probs(params, config, ids(prefix)))
    prefix[0, 1] = bad
    got = np.asarray(next_token_log_probs(params, config, ids(prefix)))
    assert np.all(np.isnan(got[0]))
    np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize(
    "fn, name, values",
    [
        (lm.token_log_probs, "targets", [[1, 2, -1]]),
        (lm.token_log_probs, "targets", [[1, 6, 2]]),
        (lm.sentence_log_prob, "targets", [[1, -1, 2]]),
        (lm.next_token_log_probs, "prefix", [[1, -1]]),
        (lm.next_token_log_probs, "prefix", [[1, 7]]),
    ],
)
def test_scoring_rejects_ids_out_of_range(sampler_params, fn, name, values):
    known = np.asarray(values)
    message = (
        f"{fn.__name__.replace('sentence_log_prob', 'token_log_probs')}: expected {name} in "
        f"[0, 6), got values in [{known.min()}, {known.max()}]"
    )
    with pytest.raises(jaxrnn.InputError, match=re.escape(message)):
        fn(sampler_params, SAMPLER, ids(values))


def test_lm_dropout_acts_on_the_inputs_between_layers_and_on_the_head_input():
    config = LMConfig(vocab_size=7, cell_name="gru", hidden_size=6, num_layers=2, dropout_rate=0.3)
    params = init_lm(jax.random.key(0), config)
    inputs = jnp.array([[-1, 3, 1, 4], [-1, 2, 2, 0]])
    key = jax.random.key(5)
    _, logits = jaxrnn.lm.lm_apply(params, config, inputs, dropout_key=key)

    key_in, key_layers, key_out = jax.random.split(key, 3)
    xs = jaxrnn.layers.dropout(key_in, 0.3, jaxrnn.lm.embed(params, config, inputs))
    _, hs = jaxrnn.stacked(
        jaxrnn.gru(),
        params.recurrent,
        xs,
        dropout_rate=0.3,
        dropout_key=key_layers,
    )
    want = jaxrnn.dense(params.head, jaxrnn.layers.dropout(key_out, 0.3, hs))
    np.testing.assert_allclose(logits, want, rtol=1e-6, atol=1e-6)
    _, plain = jaxrnn.lm.lm_apply(params, config, inputs)
    assert not np.allclose(logits, plain)


@pytest.mark.parametrize("num_layers", [1, 3])
def test_a_language_model_is_a_generator_over_its_deep_cell(num_layers):
    config = LMConfig(vocab_size=7, cell_name="gru", hidden_size=6, num_layers=num_layers,
                      embedding_size=4)  # fmt: skip
    params = jaxrnn.lm.init_lm(jax.random.key(0), config)
    assert isinstance(params, jaxrnn.models.GeneratorParams)
    assert isinstance(params.recurrent, jaxrnn.StackedParams)
    assert len(params.recurrent.layers) == num_layers
    inputs = jax.random.randint(jax.random.key(1), (3, 5), -1, 7)
    _, logits = jaxrnn.lm.lm_apply(params, config, inputs)
    cell = jaxrnn.lm.lm_cell(config)
    expected = jaxrnn.models.generator_apply(cell, params, inputs)
    np.testing.assert_allclose(logits, expected, rtol=1e-6, atol=1e-6)
    greedy = jaxrnn.lm.sample(params, config, jax.random.key(2), num_samples=1, max_len=6,
                              temperature=0.0).ids[0]  # fmt: skip
    drawn = jaxrnn.models.generate(cell, params, jax.random.key(2), steps=6, temperature=0.0)
    np.testing.assert_array_equal(greedy, drawn)
