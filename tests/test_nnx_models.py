"""The ready NNX models: outputs equal the functional calls, and each learns its task.

Every model is trained with ``nnx.Optimizer`` and ``nnx.jit`` as a Flax user would, on the same
tasks as the functional models in test_models.py (and the names corpus for the language model).
"""

from importlib import resources

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from test_models import compile_optimized, parity_batch, repeats_batch, reversal_batch, stack

import jaxrnn
from jaxrnn import lm, models
from jaxrnn import nnx as jnnx


def train(model, loss_fn, batches, learning_rate=1e-2):
    """Adam with global-norm clipping over the given batches, in order, updating ``model`` in
    place; returns the losses. The steps are one `lax.scan` over the stacked batches, the model
    and optimizer split into their graph and state around it."""
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(learning_rate))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    graph, state = nnx.split((model, optimizer))

    def run(state, stacked):
        def one_step(state, batch):
            model, optimizer = nnx.merge(graph, state)
            loss, grads = nnx.value_and_grad(loss_fn)(model, *batch)
            optimizer.update(model, grads)
            return nnx.state((model, optimizer)), loss

        return jax.lax.scan(one_step, state, stacked)

    stacked = stack(batches)
    state, losses = compile_optimized(run, state, stacked)(state, stacked)
    nnx.update((model, optimizer), state)
    assert np.all(np.isfinite(losses))
    return losses


def test_every_model_equals_its_functional_call_with_the_same_key():
    xs = jax.random.normal(jax.random.key(1), (3, 6, 4), jnp.float32)
    lengths = jnp.array([6, 2, 0])
    cell = jaxrnn.gru("after")

    tagger = jnnx.Tagger(cell, 4, 8, 5, rngs=nnx.Rngs(0))
    params = models.tagger_init(cell, nnx.Rngs(0).params(), 4, 8, 5)
    np.testing.assert_array_equal(
        tagger(xs, lengths=lengths), models.tagger_apply(cell, params, xs, lengths=lengths)
    )

    classifier = jnnx.Classifier(cell, 4, 8, 3, pool="mean", rngs=nnx.Rngs(0))
    params = models.classifier_init(cell, nnx.Rngs(0).params(), 4, 8, 3)
    np.testing.assert_array_equal(
        classifier(xs, lengths=lengths),
        models.classifier_apply(cell, params, xs, lengths=lengths, pool="mean"),
    )

    seq2seq = jnnx.Seq2Seq(cell, 6, 7, 8, 5, bos_id=6, rngs=nnx.Rngs(0))
    params = models.seq2seq_init(cell, nnx.Rngs(0).params(), 6, 7, 8, 5)
    src, tgt = jnp.array([[1, 2, 3], [4, 0, 0]]), jnp.array([[2, 1, 5, 3], [3, 5, 0, 0]])
    src_lengths, tgt_lengths = jnp.array([3, 1]), jnp.array([4, 2])
    np.testing.assert_array_equal(
        seq2seq(src, src_lengths, tgt, tgt_lengths),
        models.seq2seq_apply(cell, params, src, src_lengths, tgt, tgt_lengths, bos_id=6),
    )
    ids, decoded_lengths = seq2seq.decode(src, src_lengths, max_len=5, eos_id=5)
    want = models.seq2seq_decode(cell, params, src, src_lengths, max_len=5, bos_id=6, eos_id=5)
    np.testing.assert_array_equal(ids, want[0])
    np.testing.assert_array_equal(decoded_lengths, want[1])

    config = lm.LMConfig(vocab_size=9, cell_name="lstm", hidden_size=8, num_layers=2)
    model = jnnx.LanguageModel(config, rngs=nnx.Rngs(0))
    params = lm.init_lm(nnx.Rngs(0).params(), config)
    inputs = jnp.array([[-1, 3, 4, 8], [-1, 2, 0, 0]])
    np.testing.assert_array_equal(model(inputs), lm.lm_apply(params, config, inputs)[1])
    drawn = model.sample(jax.random.key(2), num_samples=3, max_len=6, eos_id=0)
    want = lm.sample(params, config, jax.random.key(2), num_samples=3, max_len=6, eos_id=0)
    np.testing.assert_array_equal(drawn.ids, want.ids)


def test_language_model_dropout_draws_from_its_stream_and_turns_off_for_evaluation():
    config = lm.LMConfig(vocab_size=9, hidden_size=8, num_layers=2, dropout_rate=0.5)
    model = jnnx.LanguageModel(config, rngs=nnx.Rngs(0, dropout=1))
    inputs = jnp.array([[-1, 3, 4, 8]])
    first, second = model(inputs), model(inputs)
    assert not np.allclose(first, second)  # a fresh dropout key per call
    evaluation = model(inputs, deterministic=True)
    np.testing.assert_array_equal(evaluation, lm.lm_apply(model.params, config, inputs)[1])


def test_tagger_module_learns_to_tag_repeated_tokens():
    model = jnnx.Tagger(jaxrnn.gru(), 4, 32, 1, rngs=nnx.Rngs(0))

    def loss_fn(model, xs, lengths, tags):
        return jaxrnn.sigmoid_cross_entropy(model(xs, lengths=lengths), tags, lengths).mean()

    rng = np.random.default_rng(0)
    train(model, loss_fn, [repeats_batch(rng, 64) for _ in range(300)])
    xs, lengths, tags = repeats_batch(np.random.default_rng(1), 1000)
    logits = nnx.jit(lambda m, xs, lengths: m(xs, lengths=lengths))(model, xs, lengths)
    valid = np.arange(15) < lengths[:, None]
    correct = (np.asarray(logits[..., 0]) > 0) == (tags[..., 0] > 0.5)
    assert correct[valid].mean() >= 0.95


def test_classifier_module_learns_parity_of_variable_length_bit_strings():
    model = jnnx.Classifier(jaxrnn.gru(), 2, 32, 2, rngs=nnx.Rngs(0))

    def loss_fn(model, xs, lengths, labels):
        logits = model(xs, lengths=lengths)
        return jaxrnn.softmax_cross_entropy(logits, labels, time_axis=False).mean()

    rng = np.random.default_rng(0)
    train(model, loss_fn, [parity_batch(rng, 64) for _ in range(400)])
    xs, lengths, labels = parity_batch(np.random.default_rng(1), 1000)
    logits = nnx.jit(lambda m, xs, lengths: m(xs, lengths=lengths))(model, xs, lengths)
    assert (np.asarray(logits).argmax(-1) == labels).mean() >= 0.95


def test_seq2seq_module_learns_to_reverse_sequences():
    symbols, eos, bos = 8, 8, 9
    model = jnnx.Seq2Seq(jaxrnn.lstm(), symbols, symbols + 2, 64, 16, bos_id=bos, rngs=nnx.Rngs(0))

    def loss_fn(model, src, src_lengths, tgt, tgt_lengths):
        logits = model(src, src_lengths, tgt, tgt_lengths)
        return jaxrnn.softmax_cross_entropy(logits, tgt, tgt_lengths).mean()

    rng = np.random.default_rng(0)
    train(model, loss_fn, [reversal_batch(rng, 64, held_out=False) for _ in range(1000)])
    src, src_lengths, tgt, tgt_lengths = reversal_batch(
        np.random.default_rng(1), 500, held_out=True
    )
    decode = nnx.jit(lambda m, s, n: m.decode(s, n, max_len=7, eos_id=eos))
    ids, lengths = decode(model, src, src_lengths)
    valid = np.arange(7) < tgt_lengths[:, None]
    assert ((np.asarray(ids) == tgt) & valid).sum() / valid.sum() >= 0.95
    assert (np.asarray(lengths) == tgt_lengths).mean() >= 0.95


def names_batch(ids_of_names, rng, n):
    """Targets: n names' character ids then ⟨EOS⟩ = 0, right-padded to the longest name of
    ``ids_of_names`` (so that every batch has one shape); with their lengths."""
    chosen = [ids_of_names[i] for i in rng.integers(0, len(ids_of_names), n)]
    lengths = np.array([len(ids) + 1 for ids in chosen], np.int32)
    targets = np.zeros((n, max(map(len, ids_of_names)) + 1), np.int32)
    for row, ids in zip(targets, chosen, strict=True):
        row[: len(ids)] = ids
    return targets, lengths


def test_language_model_module_learns_names_beyond_the_unigram_baseline():
    names = resources.files("jaxrnn").joinpath("data/names.txt").read_text().split()
    letters = sorted(set("".join(names)))
    index = {c: i + 1 for i, c in enumerate(letters)}  # 0 is ⟨EOS⟩
    ids_of_names = [[index[c] for c in name] for name in names]
    train_names, held_out = ids_of_names[:-500], ids_of_names[-500:]
    config = lm.LMConfig(len(letters) + 1, "lstm", hidden_size=64, embedding_size=16)
    model = jnnx.LanguageModel(config, rngs=nnx.Rngs(0))

    def nats(model, targets, lengths):
        logits = model(lm.teacher_forcing_inputs(targets), lengths=lengths)
        total = jaxrnn.softmax_cross_entropy(logits, targets, lengths, reduce_time="sum")
        return total.sum() / lengths.sum()

    rng = np.random.default_rng(0)
    train(model, nats, [names_batch(train_names, rng, 64) for _ in range(300)])
    targets, lengths = names_batch(held_out, np.random.default_rng(1), 500)
    counts = np.bincount(
        np.concatenate([ids + [0] for ids in train_names]), minlength=config.vocab_size
    )
    probabilities = counts / counts.sum()
    valid = np.arange(targets.shape[1]) < lengths[:, None]
    unigram = -np.log(probabilities[targets[valid]]).mean()
    assert float(nnx.jit(nats)(model, targets, lengths)) < unigram - 0.4
