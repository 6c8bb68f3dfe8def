"""The RNN architectures: values against Python loops of cell.step; each learns a toy task.

The learning tests train with `jaxrnn.make_train_step` on float32 params and score held-out data;
the value tests use float64 params moved by noise, so that zero biases take part.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxrnn
from jaxrnn.models import (
    classifier_apply,
    classifier_init,
    generate,
    generator_apply,
    generator_init,
    pool_over_time,
    seq2seq_apply,
    seq2seq_decode,
    seq2seq_init,
    seq2seq_loss,
    tagger_apply,
    tagger_init,
)

CELLS = {"rnn": jaxrnn.rnn(), "gru": jaxrnn.gru(), "lstm": jaxrnn.lstm()}


def noisy(params, seed=0, scale=0.3):
    """Every leaf moved by N(0, scale²) noise, in the leaf's dtype."""
    leaves, tree = jax.tree.flatten(params)
    rng = np.random.default_rng(seed)
    return jax.tree.unflatten(
        tree, [leaf + rng.normal(0.0, scale, leaf.shape).astype(leaf.dtype) for leaf in leaves]
    )


def hidden(carry):
    """a⟨t⟩ of a carry: the LSTM's h, the carry itself for the RNN and GRUs."""
    return carry.h if isinstance(carry, jaxrnn.LSTMState) else carry


def loop_unroll(cell, params, xs):
    """The outputs a⟨1⟩…a⟨T⟩ (T, H) and the last carry of one example, one cell.step at a time."""
    carry, hs = cell.init_carry(params), []
    for x in xs:
        carry, h = cell.step(params, carry, x)
        hs.append(np.asarray(h))
    return carry, np.stack(hs) if hs else np.zeros((0, jaxrnn.hidden_size(params)))


def head(params, h):
    return np.asarray(h) @ np.asarray(params.head.w) + np.asarray(params.head.b)


# The learning tests run hundreds of training steps in one program, so XLA's full optimisation,
# which conftest.py turns off for the suite's many run-once programs, pays for its longer compile
# several times over (the seq2seq test: 9 s against 24 s).
OPTIMIZED = {"xla_backend_optimization_level": 2, "xla_llvm_disable_expensive_passes": False}


def compile_optimized(fn, *args):
    """``jax.jit(fn)`` compiled for ``args`` with XLA's optimisations on."""
    return jax.jit(fn).lower(*args).compile(compiler_options=OPTIMIZED)


def stack(batches):
    """Equal-shaped batches (tuples of arrays) as one tuple of arrays with a leading step axis."""
    return jax.tree.map(lambda *leaves: np.stack(leaves), *batches)


def train(loss_fn, params, batches, learning_rate):
    """Adam with global-norm clipping over the given batches, in order; returns the trained params.

    The steps are one `lax.scan` over the stacked batches: a thousand small steps cost one
    dispatch instead of a thousand."""
    optimizer = jaxrnn.make_optimizer(learning_rate, clip_norm=1.0)
    step = jaxrnn.make_train_step(loss_fn, optimizer, jit=False)

    def run(params, stacked):
        def one_step(state, batch):
            params, opt_state, metrics = step(*state, *batch)
            return (params, opt_state), metrics.finite

        (params, _), finite = jax.lax.scan(one_step, (params, optimizer.init(params)), stacked)
        return params, finite

    stacked = stack(batches)
    params, finite = compile_optimized(run, params, stacked)(params, stacked)
    assert np.all(finite)
    return params


# ------------------------------------------------------------------------------------ many-to-many


@pytest.mark.parametrize("name", CELLS)
def test_tagger_apply_matches_python_loop(name):
    cell = CELLS[name]
    params = noisy(tagger_init(cell, jax.random.key(0), 3, 4, 2, dtype=jnp.float64))
    xs = jax.random.normal(jax.random.key(1), (3, 6, 3), jnp.float64)
    lengths = jnp.array([6, 2, 0])
    got = jax.jit(functools.partial(tagger_apply, cell))(params, xs, lengths=lengths)
    for i, length in enumerate(lengths):
        _, hs = loop_unroll(cell, params.recurrent, xs[i, :length])
        np.testing.assert_allclose(got[i, :length], head(params, hs), rtol=1e-10, atol=1e-12)
        # Past the length the outputs are zero and the logits are the head's bias.
        np.testing.assert_allclose(got[i, length:], np.broadcast_to(params.head.b, (6 - length, 2)))


def repeats_batch(rng, n, n_steps=15, vocab=4):
    """Tag each position whose token equals the previous one; padding is random tokens."""
    lengths = rng.integers(1, n_steps + 1, n)
    tokens = rng.integers(0, vocab, (n, n_steps))
    tags = np.zeros((n, n_steps, 1), np.float32)
    tags[:, 1:, 0] = tokens[:, 1:] == tokens[:, :-1]
    return np.eye(vocab, dtype=np.float32)[tokens], lengths.astype(np.int32), tags


def test_tagger_learns_to_tag_repeated_tokens():
    cell = jaxrnn.gru()
    params = tagger_init(cell, jax.random.key(0), input_size=4, hidden_size=32, num_classes=1)

    def loss_fn(params, xs, lengths, tags):
        logits = tagger_apply(cell, params, xs, lengths=lengths)
        return jaxrnn.sigmoid_cross_entropy(logits, tags, lengths).mean()

    rng = np.random.default_rng(0)
    params = train(loss_fn, params, [repeats_batch(rng, 64) for _ in range(300)], 1e-2)

    xs, lengths, tags = repeats_batch(np.random.default_rng(1), 1000)
    logits = jax.jit(functools.partial(tagger_apply, cell))(params, xs, lengths=lengths)
    valid = np.arange(15) < lengths[:, None]
    correct = (np.asarray(logits[..., 0]) > 0) == (tags[..., 0] > 0.5)
    assert tags[..., 0][valid].mean() < 0.3  # tagging nothing would score about 0.79
    assert correct[valid].mean() >= 0.95


# ------------------------------------------------------------------------------------- many-to-one


def classifier_setup(name, n_x=3, n_a=4, k=2):
    cell = CELLS[name]
    params = noisy(classifier_init(cell, jax.random.key(0), n_x, n_a, k, dtype=jnp.float64))
    xs = jax.random.normal(jax.random.key(1), (4, 7, n_x), jnp.float64)
    return cell, params, xs, jnp.array([7, 3, 1, 0])


@pytest.mark.parametrize("name", CELLS)
def test_classifier_last_pool_is_the_hidden_state_at_length_minus_one(name):
    cell, params, xs, lengths = classifier_setup(name)
    got = jax.jit(functools.partial(classifier_apply, cell, pool="last"))(
        params, xs, lengths=lengths
    )
    _, hs = jaxrnn.unroll(cell, params.recurrent, xs)  # no lengths: every step computed
    carry, _ = jaxrnn.unroll(cell, params.recurrent, xs, lengths=lengths)
    for i, length in enumerate(lengths):
        h = hs[i, length - 1] if length > 0 else np.zeros(4)  # a⟨0⟩ = 0
        np.testing.assert_allclose(got[i], head(params, h), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(got[i], head(params, hidden(carry)[i]), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("pool", ["last", "mean", "max"])
@pytest.mark.parametrize("name", CELLS)
def test_classifier_pooling_ignores_padding(name, pool):
    cell, params, xs, lengths = classifier_setup(name)
    apply = functools.partial(classifier_apply, cell, pool=pool)
    got = apply(params, xs, lengths=lengths)  # padding is random numbers, not zeros
    for i, length in enumerate(lengths):
        alone = apply(params, xs[i, :length]) if length > 0 else head(params, np.zeros(4))
        np.testing.assert_allclose(got[i], alone, rtol=1e-10, atol=1e-12)


def test_pool_over_time_against_numpy():
    hs = np.random.default_rng(0).normal(size=(2, 3, 5, 4))
    lengths = np.array([[5, 2, 1], [0, 4, 3]])
    hs = np.where(np.arange(5)[:, None] < lengths[..., None, None], hs, 0.0)  # as unroll pads
    expected = {
        "last": np.zeros((2, 3, 4)),
        "mean": np.zeros((2, 3, 4)),
        "max": np.zeros((2, 3, 4)),
    }
    for i, j in np.ndindex(2, 3):
        valid = hs[i, j, : lengths[i, j]]
        if len(valid):
            expected["last"][i, j] = valid[-1]
            expected["mean"][i, j] = valid.mean(0)
            expected["max"][i, j] = valid.max(0)
    for pool, want in expected.items():
        np.testing.assert_allclose(pool_over_time(jnp.asarray(hs), lengths, pool), want)
    np.testing.assert_allclose(pool_over_time(jnp.asarray(hs[0, 0]), pool="mean"), hs[0, 0].mean(0))


@pytest.mark.parametrize("pool", ["last", "mean", "max"])
def test_classifier_gradients_match_finite_differences(pool):
    cell, params, xs, lengths = classifier_setup("lstm")

    def total(params):
        return classifier_apply(cell, params, xs, lengths=lengths, pool=pool).sum()

    check_grads(jax.jit(total), (params,), order=1, modes=["rev"])


def parity_batch(rng, n, n_steps=20):
    """Bits (one-hot) of random lengths 1…n_steps, label = parity; padding is random bits."""
    lengths = rng.integers(1, n_steps + 1, n)
    bits = rng.integers(0, 2, (n, n_steps))
    parity = np.where(np.arange(n_steps) < lengths[:, None], bits, 0).sum(1) % 2
    return np.eye(2, dtype=np.float32)[bits], lengths.astype(np.int32), parity.astype(np.int32)


def test_classifier_learns_parity_of_variable_length_bit_strings():
    cell = jaxrnn.gru()
    params = classifier_init(cell, jax.random.key(0), input_size=2, hidden_size=32, num_classes=2)

    def loss_fn(params, xs, lengths, labels):
        logits = classifier_apply(cell, params, xs, lengths=lengths, pool="last")
        return jaxrnn.softmax_cross_entropy(logits[:, None], labels[:, None]).mean()

    rng = np.random.default_rng(0)
    batches = [parity_batch(rng, 64) for _ in range(400)]
    params = train(loss_fn, params, batches, 1e-2)

    xs, lengths, labels = parity_batch(np.random.default_rng(1), 1000)
    seen = {tuple(x[:n, 1]) for x_b, l_b, _ in batches for x, n in zip(x_b, l_b, strict=True)}
    held_out = np.array([tuple(x[:n, 1]) not in seen for x, n in zip(xs, lengths, strict=True)])
    logits = jax.jit(functools.partial(classifier_apply, cell))(params, xs, lengths=lengths)
    correct = np.asarray(logits).argmax(-1) == labels
    assert held_out.sum() >= 400
    assert correct[held_out].mean() >= 0.95


# ------------------------------------------------------------------------------------- one-to-many


def generator_setup(name, embedding_size):
    cell = CELLS[name]
    params = generator_init(cell, jax.random.key(0), 5, 4, embedding_size, dtype=jnp.float64)
    return cell, noisy(params, scale=0.5)


@pytest.mark.parametrize(
    ("feed", "embedding_size"),
    [("sample", None), ("argmax", 3)],
    ids=["sample_one_hot", "argmax_embed"],
)
@pytest.mark.parametrize("name", CELLS)
def test_generate_matches_python_loop(name, feed, embedding_size):
    cell, params = generator_setup(name, embedding_size)
    key, steps, temperature = jax.random.key(3), 9, 0.7
    got = jax.jit(
        functools.partial(generate, cell, steps=steps, temperature=temperature, feed=feed)
    )(params, key, 2)
    carry, token, expected = cell.init_carry(params.recurrent), 2, []
    for key_t in jax.random.split(key, steps):
        x = np.eye(5)[token] if params.embedding is None else params.embedding[token]
        carry, h = cell.step(params.recurrent, carry, x)
        logits = head(params, h)
        drawn = int(jax.random.categorical(key_t, jnp.asarray(logits) / temperature))
        expected.append(drawn)
        token = drawn if feed == "sample" else int(np.argmax(logits))
    np.testing.assert_array_equal(got, expected)


def test_generate_is_reproducible_and_vmaps_over_keys():
    cell, params = generator_setup("gru", 3)
    draw = jax.jit(functools.partial(generate, cell, steps=12))
    keys = jax.random.split(jax.random.key(0), 4)
    many = jax.vmap(draw, in_axes=(None, 0))(params, keys)
    assert many.shape == (4, 12) and many.dtype == jnp.int32
    for key, row in zip(keys, many, strict=True):
        np.testing.assert_array_equal(draw(params, key), row)
        np.testing.assert_array_equal(draw(params, key), draw(params, key))
    assert len({tuple(row) for row in np.asarray(many)}) > 1  # different keys, different draws


@pytest.mark.parametrize("name", CELLS)
def test_generator_apply_scores_greedy_generation_as_its_argmax(name):
    cell, params = generator_setup(name, None)
    ids = generate(cell, params, jax.random.key(0), steps=10, temperature=0.0)
    inputs = jnp.concatenate([jnp.array([-1], jnp.int32), ids[:-1]])  # teacher forcing
    np.testing.assert_array_equal(generator_apply(cell, params, inputs).argmax(-1), ids)


def test_generator_learns_a_periodic_sequence():
    cell = jaxrnn.gru()
    period, n_steps = [0, 1, 2, 1, 3], 20  # after a 1 comes 2 or 3: the next token needs memory
    target = np.array(period * (n_steps // len(period)), np.int32)
    inputs = np.concatenate([[-1], target[:-1]]).astype(np.int32)  # x⟨1⟩ = 0, then y⟨t−1⟩
    params = generator_init(cell, jax.random.key(0), num_classes=4, hidden_size=16)

    def loss_fn(params, inputs, target):
        return jaxrnn.softmax_cross_entropy(generator_apply(cell, params, inputs), target)

    params = train(loss_fn, params, [(inputs, target)] * 200, 2e-2)
    greedy = generate(cell, params, jax.random.key(0), steps=n_steps, temperature=0.0)
    np.testing.assert_array_equal(greedy, target)


# --------------------------------------------------------------------------------- encoder–decoder

IN_VOCAB, OUT_VOCAB, BOS, EOS = 6, 5, 0, 4


def seq2seq_setup(name, one_hot_source):
    cell = CELLS[name]
    params = seq2seq_init(
        cell, jax.random.key(0), IN_VOCAB, OUT_VOCAB, 4, 3, one_hot_source=one_hot_source
    )
    params = noisy(jax.tree.map(lambda p: p.astype(jnp.float64), params), scale=0.5)
    # A higher ⟨EOS⟩ bias, so that some translations end before max_len and some do not.
    params = params._replace(head=params.head._replace(b=params.head.b.at[EOS].add(0.8)))
    rng = np.random.default_rng(1)
    src = jnp.asarray(rng.integers(0, IN_VOCAB, (8, 5)), jnp.int32)
    return cell, params, src, jnp.array([5, 4, 3, 2, 1, 5, 3, 0], jnp.int32)


def loop_encode(cell, params, src):
    carry = cell.init_carry(params.encoder)
    for token in np.asarray(src):
        x = np.eye(IN_VOCAB)[token] if params.embedding_in is None else params.embedding_in[token]
        carry, _ = cell.step(params.encoder, carry, x)
    return carry


def loop_decode(cell, params, src, src_lengths, max_len, key, temperature):
    """Decoding by a Python loop of cell.step calls: every source encoded alone, then the batch
    decoded for max_len steps without stopping, then each row cut after its first ⟨EOS⟩."""
    carries = [loop_encode(cell, params, s[:n]) for s, n in zip(src, src_lengths, strict=True)]
    carry = jax.tree.map(lambda *leaves: jnp.stack(leaves), *carries)
    tokens, raw = np.full(len(src), BOS), []
    for t in range(max_len):
        carry, h = cell.step(params.decoder, carry, params.embedding_out[tokens])
        logits = head(params, h)
        if key is None:
            tokens = logits.argmax(-1)
        else:
            key_t = jax.random.split(key, max_len)[t]
            tokens = np.asarray(jax.random.categorical(key_t, logits / temperature, axis=-1))
        raw.append(tokens)
    ids, lengths = [], []
    for row in np.stack(raw, axis=1).tolist():
        length = row.index(EOS) + 1 if EOS in row else max_len
        ids.append(row[:length] + [EOS] * (max_len - length))
        lengths.append(length)
    return np.array(ids), np.array(lengths)


@pytest.mark.parametrize(
    ("one_hot_source", "sampled"),
    [(False, False), (True, True)],
    ids=["embed_greedy", "one_hot_sampled"],
)
@pytest.mark.parametrize("name", CELLS)
def test_seq2seq_decode_matches_python_loop(name, one_hot_source, sampled):
    cell, params, src, src_lengths = seq2seq_setup(name, one_hot_source)
    key, max_len, temperature = (jax.random.key(0) if sampled else None), 7, 1.5
    decode = functools.partial(
        seq2seq_decode, cell, max_len=max_len, bos_id=BOS, eos_id=EOS, temperature=temperature
    )
    ids, lengths = jax.jit(decode)(params, src, src_lengths, key=key)
    want_ids, want_lengths = loop_decode(cell, params, src, src_lengths, max_len, key, temperature)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(lengths, want_lengths)
    assert ids.dtype == lengths.dtype == jnp.int32
    # Each row stops at its first ⟨EOS⟩, counts it, and is padded with ⟨EOS⟩ after it.
    for row, length in zip(np.asarray(ids), np.asarray(lengths), strict=True):
        assert EOS not in row[: length - 1]
        assert length == max_len or (row[length - 1 :] == EOS).all()
    if sampled:
        assert lengths.min() < max_len and lengths.max() == max_len  # both endings exercised
        np.testing.assert_array_equal(jax.jit(decode)(params, src, src_lengths, key=key)[0], ids)
    else:  # one example alone, without a batch dimension, decodes as in the batch
        alone_ids, alone_length = decode(params, src[1, : src_lengths[1]], None)
        np.testing.assert_array_equal(alone_ids, ids[1])
        assert int(alone_length) == int(lengths[1])


@pytest.mark.parametrize("name", CELLS)
def test_seq2seq_loss_matches_python_loop(name):
    cell, params, src, src_lengths = seq2seq_setup(name, False)
    rng = np.random.default_rng(2)
    tgt = jnp.asarray(rng.integers(0, OUT_VOCAB, (8, 4)), jnp.int32)
    tgt_lengths = jnp.array([4, 1, 2, 3, 4, 2, 1, 3], jnp.int32)
    losses = []
    for s, n_s, y, n_y in zip(src, src_lengths, tgt, tgt_lengths, strict=True):
        carry, token, nll = loop_encode(cell, params, s[:n_s]), BOS, 0.0
        for target in np.asarray(y[:n_y]):  # teacher forcing: the true token is fed back
            carry, h = cell.step(params.decoder, carry, params.embedding_out[token])
            logits = head(params, h)
            nll -= logits[target] - np.log(np.exp(logits).sum())
            token = target
        losses.append(nll / int(n_y))
    loss = jax.jit(functools.partial(seq2seq_loss, cell, bos_id=BOS))
    np.testing.assert_allclose(
        loss(params, src, src_lengths, tgt, tgt_lengths), np.mean(losses), rtol=1e-10
    )


def test_seq2seq_loss_gradients_match_finite_differences():
    cell, params, src, src_lengths = seq2seq_setup("gru", False)
    tgt = jnp.asarray(np.random.default_rng(2).integers(0, OUT_VOCAB, (8, 3)), jnp.int32)
    tgt_lengths = jnp.array([3, 1, 2, 3, 3, 2, 1, 2], jnp.int32)

    def loss(params):
        return seq2seq_loss(cell, params, src, src_lengths, tgt, tgt_lengths, bos_id=BOS)

    check_grads(jax.jit(loss), (params,), order=1, modes=["rev"])


def reversal_batch(rng, n, *, held_out, symbols=8, max_len=6):
    """Sources of 3…max_len symbols; targets are the sources reversed, then ⟨EOS⟩ = symbols.

    The sources whose symbols sum to a multiple of 5 (about one in five, of every length) are held
    out: only ``held_out=True`` batches contain them, and only they.
    """
    lengths = rng.integers(3, max_len + 1, 8 * n)
    src = rng.integers(0, symbols, (8 * n, max_len))
    total = np.where(np.arange(max_len) < lengths[:, None], src, 0).sum(1)
    keep = np.flatnonzero((total % 5 == 0) == held_out)[:n]
    lengths, src = lengths[keep], src[keep]
    steps = np.arange(max_len + 1)
    backwards = np.clip(lengths[:, None] - 1 - steps, 0, max_len - 1)
    tgt = np.where(steps < lengths[:, None], np.take_along_axis(src, backwards, 1), symbols)
    return tuple(a.astype(np.int32) for a in (src, lengths, tgt, lengths + 1))


def test_seq2seq_learns_to_reverse_sequences():
    symbols, eos, bos = 8, 8, 9  # the target vocabulary: the symbols, ⟨EOS⟩ and ⟨BOS⟩
    cell = jaxrnn.lstm()
    params = seq2seq_init(cell, jax.random.key(0), symbols, symbols + 2, 64, 16)
    rng = np.random.default_rng(0)
    batches = [reversal_batch(rng, 64, held_out=False) for _ in range(1000)]
    params = train(functools.partial(seq2seq_loss, cell, bos_id=bos), params, batches, 1e-2)

    src, src_lengths, tgt, tgt_lengths = reversal_batch(
        np.random.default_rng(1), 500, held_out=True
    )
    decode = functools.partial(seq2seq_decode, cell, max_len=7, bos_id=bos, eos_id=eos)
    ids, lengths = jax.jit(decode)(params, src, src_lengths)
    valid = np.arange(7) < tgt_lengths[:, None]  # the reversed symbols and the ⟨EOS⟩
    assert ((np.asarray(ids) == tgt) & valid).sum() / valid.sum() >= 0.95
    assert (np.asarray(lengths) == tgt_lengths).mean() >= 0.95


# ------------------------------------------------------------------- out-of-range ids under jit


@pytest.mark.parametrize("embedding_size", [None, 3], ids=["one_hot", "embed"])
@pytest.mark.parametrize("bad", [5, -2])
def test_generator_apply_ids_out_of_range_give_nan_under_jit(bad, embedding_size):
    cell, params = generator_setup("gru", embedding_size)
    apply = jax.jit(functools.partial(generator_apply, cell))
    good = jnp.array([[-1, 2, 3, 1], [-1, 4, 0, 2]], jnp.int32)
    want = apply(params, good)
    got = np.asarray(apply(params, good.at[0, 2].set(bad)))
    assert np.all(np.isnan(got[0, 2:]))  # the steps that read the bad id, and every later one
    np.testing.assert_array_equal(got[0, :2], want[0, :2])
    np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("one_hot_source", [True, False], ids=["one_hot", "embed"])
@pytest.mark.parametrize(
    "where, bad",
    [("src", IN_VOCAB), ("src", -1), ("tgt", OUT_VOCAB), ("tgt", -1)],
)
def test_seq2seq_apply_ids_out_of_range_give_nan_under_jit(where, bad, one_hot_source):
    # −1 is allowed as bos_id (the zero input), never as a source or target token
    cell, params, src, src_lengths = seq2seq_setup("lstm", one_hot_source)
    tgt = jnp.asarray(np.random.default_rng(2).integers(0, OUT_VOCAB, (8, 4)), jnp.int32)
    apply = jax.jit(functools.partial(seq2seq_apply, cell, bos_id=-1))
    want = apply(params, src, src_lengths, tgt, None)
    if where == "src":
        got, first_bad = apply(params, src.at[0, 1].set(bad), src_lengths, tgt, None), 0
    else:
        got, first_bad = apply(params, src, src_lengths, tgt.at[0, 1].set(bad), None), 2
    got = np.asarray(got)
    assert np.all(np.isnan(got[0, first_bad:]))
    np.testing.assert_array_equal(got[0, :first_bad], want[0, :first_bad])
    np.testing.assert_array_equal(got[1:], want[1:])


# ------------------------------------------------------------------------------------------ errors


def test_errors_classifier_unknown_pool():
    cell, params, xs, lengths = classifier_setup("gru")
    with pytest.raises(
        jaxrnn.InputError,
        match=r"classifier_apply: expected pool 'last', 'mean' or 'max', got 'sum'",
    ):
        classifier_apply(cell, params, xs, lengths=lengths, pool="sum")
    with pytest.raises(jaxrnn.InputError, match=r"pool_over_time: expected pool .* got 'first'"):
        pool_over_time(xs, lengths, "first")


@pytest.mark.parametrize(
    ("fn", "xs", "kwargs", "message"),
    [
        (classifier_apply, np.ones((4, 7, 5)), {}, r"classifier_apply: expected xs of shape "
         r"\(4, 7, 3\), got \(4, 7, 5\); .* the params expect input_size=3"),
        (tagger_apply, np.ones(3), {}, r"tagger_apply: expected xs with at least 2 dimensions"),
        (tagger_apply, np.ones((4, 7, 3), np.float32), {},
         r"tagger_apply: expected xs of dtype float64 \(the dtype of params\), got float32"),
        (tagger_apply, np.ones((4, 7, 3)), {"lengths": np.array([1, 2])},
         r"tagger_apply: expected lengths of shape \(4,\), got \(2,\)"),
        (classifier_apply, np.ones((4, 7, 3)), {"lengths": np.ones(4)},
         r"classifier_apply: expected lengths to have an integer dtype, got float64"),
    ],
    ids=["input_size", "rank", "dtype", "lengths_shape", "lengths_dtype"],
)  # fmt: skip
def test_errors_sequence_models_bad_inputs(fn, xs, kwargs, message):
    cell, params, _, _ = classifier_setup("lstm")
    with pytest.raises(jaxrnn.InputError, match=message):
        fn(cell, params, xs, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"feed": "best"}, r"generate: expected feed 'sample' or 'argmax', got 'best'"),
        ({"steps": 0}, r"generate: expected steps to be a positive int, got 0"),
        ({"temperature": -1.0}, r"generate: expected temperature to be a number >= 0, got -1.0"),
        ({"first": 5}, r"generate: expected first in \[-1, 5\), got values in \[5, 5\]"),
        ({"first": np.array([1, 2])}, r"generate: expected first of shape \(\), got \(2,\)"),
    ],
    ids=["feed", "steps", "temperature", "first_range", "first_shape"],
)
def test_errors_generate_bad_arguments(kwargs, message):
    cell, params = generator_setup("gru", None)
    kwargs = {"steps": 3, **kwargs}
    with pytest.raises(jaxrnn.InputError, match=message):
        generate(cell, params, jax.random.key(0), **kwargs)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"eos_id": 5}, r"seq2seq_decode: expected eos_id to be an int in \[0, 5\), got 5"),
        ({"bos_id": -2}, r"seq2seq_decode: expected bos_id to be an int in \[-1, 5\), got -2"),
        ({"max_len": 0}, r"seq2seq_decode: expected max_len to be a positive int, got 0"),
        ({"src_ids": np.ones((8, 5))},
         r"seq2seq_decode: expected src_ids to have an integer dtype, got float64"),
        ({"src_ids": np.full((8, 5), 6)},
         r"seq2seq_decode: expected src_ids in \[0, 6\), got values in \[6, 6\]"),
        ({"src_lengths": np.array([5, 5])},
         r"seq2seq_decode: expected src_lengths of shape \(8,\), got \(2,\)"),
    ],
    ids=["eos_id", "bos_id", "max_len", "src_dtype", "src_range", "src_lengths"],
)  # fmt: skip
def test_errors_seq2seq_decode_bad_arguments(change, message):
    cell, params, src, src_lengths = seq2seq_setup("gru", False)
    arguments = {"src_ids": src, "src_lengths": src_lengths, "max_len": 4, "bos_id": BOS}
    arguments = {**arguments, "eos_id": EOS, **change}
    with pytest.raises(jaxrnn.InputError, match=message):
        seq2seq_decode(cell, params, **arguments)


def test_errors_seq2seq_loss_bad_targets():
    cell, params, src, src_lengths = seq2seq_setup("gru", False)
    tgt, tgt_lengths = jnp.zeros((8, 3), jnp.int32), jnp.full((8,), 3, jnp.int32)
    loss = functools.partial(seq2seq_loss, cell, params, src, src_lengths, bos_id=BOS)
    with pytest.raises(
        jaxrnn.InputError, match=r"seq2seq_apply: expected tgt_ids of shape \(8, …\)"
    ):
        loss(jnp.zeros((3, 3), jnp.int32), tgt_lengths)
    with pytest.raises(jaxrnn.InputError, match=r"expected tgt_ids in \[0, 5\), got .*\[0, 7\]"):
        loss(tgt.at[0, 0].set(7), tgt_lengths)
    with pytest.raises(
        jaxrnn.InputError, match=r"expected tgt_lengths of shape \(8,\), got \(3,\)"
    ):
        loss(tgt, tgt_lengths[:3])
    with pytest.raises(jaxrnn.InputError, match=r"seq2seq_apply: expected bos_id to be an int"):
        seq2seq_loss(cell, params, src, src_lengths, tgt, tgt_lengths, bos_id=9)


def test_errors_init_bad_sizes():
    cell = jaxrnn.gru()
    with pytest.raises(jaxrnn.InputError, match="tagger_init: expected num_classes to be a posi"):
        tagger_init(cell, jax.random.key(0), 3, 4, 0)
    with pytest.raises(
        jaxrnn.InputError, match="seq2seq_init: expected embedding_size to be a posi"
    ):
        seq2seq_init(cell, jax.random.key(0), 3, 4, 8, embedding_size=None)
    with pytest.raises(
        jaxrnn.InputError, match="generator_init: expected embedding_size to be a po"
    ):
        generator_init(cell, jax.random.key(0), 3, 4, embedding_size=0)
