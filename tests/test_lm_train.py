"""Training a language model: exact resumption, interruption, evaluation, and non-finite runs."""

import errno
import json
import math
import re
import shutil
import signal
import types
from importlib import resources

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrnn import _checks, lm_settings, lm_train, runs
from jaxrnn import progress as progress_lib
from jaxrnn import text as text_lib
from jaxrnn._checks import InputError
from jaxrnn.checkpoint import CheckpointError, read_metadata, save_checkpoint
from jaxrnn.lm import LMConfig, init_lm, lm_apply, lm_loss, token_log_probs
from jaxrnn.lm_train import TrainConfig, evaluate_lm, load_lm, make_corpus, train_lm

NAMES = resources.files("jaxrnn").joinpath("data/names.txt").read_text()
# A stream of names: ~4,000 characters, newlines included.
STREAM_TEXT = "\n".join(NAMES.splitlines()[:600])

# Tiny models and short runs: each run costs about one compilation of the train step.
LINES_TRAIN = TrainConfig(
    steps=40, batch_size=16, eval_every=20, sample_every=25, checkpoint_every=15
)
STREAM_TRAIN = TrainConfig(
    steps=40,
    batch_size=8,
    seq_len=16,
    stateful=True,
    eval_every=20,
    eval_rows=4,
    sample_every=0,
    checkpoint_every=15,
)


@pytest.fixture(scope="module")
def lines_corpus():
    return make_corpus(NAMES, mode="lines")


@pytest.fixture(scope="module")
def stream_corpus():
    return make_corpus(STREAM_TEXT, mode="stream")


def lines_model(corpus):
    return LMConfig(corpus.vocab.size, cell_name="lstm", hidden_size=16, dropout_rate=0.2)


def run(corpus, model, train, out_dir=None, **kwargs):
    messages = []
    kwargs.setdefault("log", messages.append)
    result = train_lm(corpus, model, train, out_dir, progress=False, **kwargs)
    return result, messages


@pytest.fixture(scope="module")
def lines_run(lines_corpus, tmp_path_factory):
    """One uninterrupted run of LINES_TRAIN, with its output folder."""
    out_dir = tmp_path_factory.mktemp("lines_run")
    result, messages = run(lines_corpus, lines_model(lines_corpus), LINES_TRAIN, out_dir)
    return result, messages, out_dir


def assert_same_run(got, expected):
    """Bit for bit: every training loss, every validation loss, every parameter."""
    assert got.step == expected.step
    assert got.history.loss == expected.history.loss
    # validation rows are [step, training seconds, nats]; the seconds are wall-clock time
    assert [(s, nats) for s, _, nats in got.history.valid] == [
        (s, nats) for s, _, nats in expected.history.valid
    ]
    leaves = jax.tree.leaves(got.params), jax.tree.leaves(expected.params)
    assert len(leaves[0]) == len(leaves[1])
    for g, e in zip(*leaves, strict=True):
        assert np.array_equal(g, e)


def test_train_lm_uninterrupted_run_learns(lines_corpus, lines_run):
    result, messages, out_dir = lines_run
    assert result.step == LINES_TRAIN.steps and result.stopped_early is None
    assert len(result.history.loss) == LINES_TRAIN.steps
    assert [row[0] for row in result.history.valid] == [20, 40]
    first, last = result.history.valid[0].nats, result.history.valid[-1].nats
    # below the uniform guess over the vocabulary, and falling
    assert last < first < np.log(lines_corpus.vocab.size)
    assert any(m.startswith("samples after step 25") for m in messages)
    assert result.checkpoint == out_dir / "checkpoint.npz"
    assert read_metadata(result.checkpoint)["step"] == LINES_TRAIN.steps


def test_train_lm_resume_is_bit_exact_lines_lstm_dropout(lines_corpus, lines_run, tmp_path):
    full, _, _ = lines_run
    model = lines_model(lines_corpus)
    # 23: after the checkpoint at 15 and the evaluation at 20, not a multiple of either
    stopped, _ = run(lines_corpus, model, LINES_TRAIN, tmp_path, stop_after=23)
    assert stopped.step == 23 and stopped.stopped_early is None
    assert read_metadata(tmp_path / "checkpoint.npz")["step"] == 23
    assert stopped.history.loss == full.history.loss[:23]
    resumed, _ = run(lines_corpus, model, LINES_TRAIN, tmp_path, resume=True)
    assert_same_run(resumed, full)


def test_train_lm_resume_is_bit_exact_stream_stateful_gru(stream_corpus, tmp_path):
    model = LMConfig(stream_corpus.vocab.size, cell_name="gru", hidden_size=16, embedding_size=8)
    # the 40 steps go round the stream's chunks more than once, so the carry is reset in between
    (ids,) = stream_corpus.train
    assert (len(ids) - 1) // STREAM_TRAIN.batch_size // STREAM_TRAIN.seq_len < 40
    full, _ = run(stream_corpus, model, STREAM_TRAIN)
    run(stream_corpus, model, STREAM_TRAIN, tmp_path, stop_after=23)
    resumed, _ = run(stream_corpus, model, STREAM_TRAIN, tmp_path, resume=True)
    assert_same_run(resumed, full)


def test_train_lm_resume_with_other_model_is_checkpoint_error(lines_corpus, lines_run, tmp_path):
    _, _, out_dir = lines_run
    shutil.copy(out_dir / "checkpoint.npz", tmp_path / "checkpoint.npz")
    other = lines_model(lines_corpus)._replace(hidden_size=32)
    with pytest.raises(CheckpointError, match=r"model differs .*'hidden_size': \(16, 32\)"):
        run(lines_corpus, other, LINES_TRAIN, tmp_path, resume=True)


def test_train_lm_keyboard_interrupt_saves_and_resumes(lines_corpus, lines_run, tmp_path):
    full, _, _ = lines_run
    model = lines_model(lines_corpus)
    messages = []

    def log(message):  # Ctrl-C arriving while the step-20 evaluation is reported
        messages.append(message)
        if message.startswith("step 20: valid"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(lines_corpus, model, LINES_TRAIN, tmp_path, log=log)
    checkpoint = tmp_path / "checkpoint.npz"
    assert messages[-1] == f"interrupted at step 20; checkpoint saved to {checkpoint}"
    metadata = read_metadata(checkpoint)
    assert metadata["step"] == 20
    assert metadata["history"]["loss"] == full.history.loss[:20]
    resumed, _ = run(lines_corpus, model, LINES_TRAIN, tmp_path, resume=True)
    assert_same_run(resumed, full)


def test_load_lm_returns_trained_model(lines_corpus, lines_run):
    result, _, out_dir = lines_run
    params, config, vocab, metadata = load_lm(out_dir / "checkpoint.npz")
    assert config == lines_model(lines_corpus)
    assert vocab == lines_corpus.vocab
    assert metadata["step"] == LINES_TRAIN.steps
    assert metadata["train"] == LINES_TRAIN._asdict()
    assert metadata["history"]["loss"] == result.history.loss
    assert jax.tree.structure(params) == jax.tree.structure(result.params)
    for got, expected in zip(jax.tree.leaves(params), jax.tree.leaves(result.params), strict=True):
        assert got.dtype == expected.dtype and np.array_equal(got, expected)


def test_a_checkpoint_with_the_model_fields_old_names_loads_and_resumes(
    lines_corpus, lines_run, tmp_path
):
    """Files written while LMConfig's fields were called ``cell`` and ``dropout``, and before
    lines were packed, still load; resuming says that the lines are now packed."""
    from jaxrnn.checkpoint import load_checkpoint
    from jaxrnn.lm_state import init_train_state

    _, _, out_dir = lines_run
    model = lines_model(lines_corpus)
    template = jax.eval_shape(lambda: init_train_state(model, LINES_TRAIN, "lines")._asdict())
    state, metadata = load_checkpoint(out_dir / "checkpoint.npz", template)
    saved = metadata["model"]
    saved["cell"], saved["dropout"] = saved.pop("cell_name"), saved.pop("dropout_rate")
    del metadata["train"]["pack"]
    old = tmp_path / "old"
    old.mkdir()
    save_checkpoint(old / "checkpoint.npz", state, metadata)
    params, config, _, _ = load_lm(old / "checkpoint.npz")
    assert config == model and config.cell_name == "lstm" and config.dropout_rate == 0.2
    resumed, messages = run(
        lines_corpus, model, LINES_TRAIN._replace(steps=LINES_TRAIN.steps + 2), old, resume=True
    )
    assert resumed.step == LINES_TRAIN.steps + 2
    assert any(m.startswith(f"resuming from step {LINES_TRAIN.steps}") for m in messages)
    assert any(m.endswith(", pack False -> True") for m in messages)


def test_train_lm_whose_output_reader_has_gone_stops_and_saves(lines_corpus, lines_run, tmp_path):
    """A BrokenPipeError from the output (`jaxrnn train | head`) stops the run as SIGPIPE would:
    after the step, with its checkpoint saved, and `runs.Interrupted` raised."""
    full, _, _ = lines_run
    said = []

    def log(message):  # the reader goes while the step-20 evaluation is reported
        said.append(message)
        if message.startswith("step 20: valid"):
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    with pytest.raises(runs.Interrupted) as stopped:
        run(lines_corpus, lines_model(lines_corpus), LINES_TRAIN, tmp_path, log=log)
    assert stopped.value.signum == signal.SIGPIPE
    assert said[-1] == f"interrupted at step 20; checkpoint saved to {tmp_path / 'checkpoint.npz'}"
    metadata = read_metadata(tmp_path / "checkpoint.npz")
    assert metadata["step"] == 20 and metadata["history"]["loss"] == full.history.loss[:20]


def test_load_lm_reads_the_folder_of_a_run_as_its_checkpoint(lines_run, tmp_path):
    _, _, out_dir = lines_run
    from_folder, from_file = load_lm(out_dir), load_lm(out_dir / "checkpoint.npz")
    assert from_folder[1:] == from_file[1:]
    same = jax.tree.map(np.array_equal, from_folder[0], from_file[0])
    assert all(jax.tree.leaves(same))
    with pytest.raises(
        CheckpointError, match=re.escape(f"no checkpoint file at {tmp_path / 'checkpoint.npz'}")
    ):
        load_lm(tmp_path)
    with pytest.raises(
        CheckpointError, match=re.escape(f"no checkpoint file at {tmp_path}: it is a folder")
    ):
        read_metadata(tmp_path)


def test_load_lm_rejects_other_checkpoints(tmp_path):
    save_checkpoint(tmp_path / "other.npz", {"w": np.ones(2)}, {"kind": "something else"})
    with pytest.raises(CheckpointError, match="not a jaxrnn language-model checkpoint"):
        load_lm(tmp_path / "other.npz")


def test_train_lm_writes_loss_plot(lines_run):
    _, _, out_dir = lines_run
    data = (out_dir / "loss.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


# --------------------------------------------------------------------------------------- evaluate


def _random_params(model, seed=0):
    params = init_lm(jax.random.key(seed), model, dtype=jnp.float64)
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda p: p + rng.normal(0.0, 0.3, p.shape), params)


def _stream_nll_unchunked(params, model, ids):
    """Σ −log P(ids[t + 1] | ids[0 … t]) over one row, the whole row read in one call."""
    _, logits = lm_apply(params, model, jnp.asarray(ids[None, :-1]))
    log_probs = jax.nn.log_softmax(logits[0], axis=-1)
    return -float(np.take_along_axis(np.asarray(log_probs), ids[1:, None], axis=-1).sum())


def test_evaluate_lm_stream_equals_unchunked_computation(stream_corpus):
    model = LMConfig(stream_corpus.vocab.size, cell_name="lstm", hidden_size=8, num_layers=2)
    params = _random_params(model)
    (ids,) = stream_corpus.valid
    n_targets = len(ids) - 1
    # one row: every token predicted from all of the validation text before it
    whole = _stream_nll_unchunked(params, model, ids) / n_targets
    got = evaluate_lm(params, model, stream_corpus, rows=1, seq_len=50)
    np.testing.assert_allclose(got, whole, rtol=1e-12)
    # 4 rows read in chunks of 7 with the carry passed on: each row as if read in one go
    rows, row_len = 4, -(-n_targets // 4)
    assert n_targets % rows and row_len % 7  # the last row and the last chunk are partial
    total = sum(
        _stream_nll_unchunked(params, model, ids[r * row_len : (r + 1) * row_len + 1])
        for r in range(rows)
    )
    got = evaluate_lm(params, model, stream_corpus, rows=rows, seq_len=7)
    np.testing.assert_allclose(got, total / n_targets, rtol=1e-12)
    assert abs(got - whole) > 1e-6  # the rows start from a⟨0⟩ = 0: the two are not the same


@pytest.mark.parametrize("rows", [32, 7])
def test_evaluate_lm_lines_equals_mean_token_log_prob(lines_corpus, rows):
    model = LMConfig(lines_corpus.vocab.size, cell_name="gru", hidden_size=8, embedding_size=5)
    params = _random_params(model)
    targets, lengths = lines_corpus.valid
    assert len(targets) % rows  # a partial last batch
    log_probs = token_log_probs(params, model, targets, lengths)
    expected = -float(log_probs.sum()) / float(lengths.sum())
    got = evaluate_lm(params, model, lines_corpus, rows=rows)
    np.testing.assert_allclose(got, expected, rtol=1e-12)


# ------------------------------------------------------------------------------ non-finite losses


def _assert_stopped_for_non_finite(result, model, train):
    assert result.stopped_early is not None and "clipping" in result.stopped_early
    assert result.step < train.steps
    for leaf in jax.tree.leaves(result.params):
        assert np.all(np.isfinite(leaf))


def test_train_lm_stops_on_nan_loss_and_keeps_params(lines_corpus, monkeypatch):
    real = lm_train.make_train_step

    def make_nan_step(loss_fn, optimizer, **kwargs):
        def nan_loss(*args):
            loss, aux = loss_fn(*args)
            return loss * jnp.nan, aux

        return real(nan_loss, optimizer, **kwargs)

    monkeypatch.setattr(lm_train, "make_train_step", make_nan_step)
    model = LMConfig(lines_corpus.vocab.size, cell_name="gru", hidden_size=8)
    train = LINES_TRAIN._replace(max_nonfinite_steps=5, sample_every=0)
    result, messages = run(lines_corpus, model, train)
    _assert_stopped_for_non_finite(result, model, train)
    assert result.step == 5
    assert "5 steps in a row had a non-finite loss" in result.stopped_early
    assert result.stopped_early in messages
    assert np.isnan(result.history.loss).all()
    # every update was skipped: the params are the initial ones
    initial = init_lm(jax.random.key(train.seed), model)
    for got, expected in zip(jax.tree.leaves(result.params), jax.tree.leaves(initial), strict=True):
        assert np.array_equal(got, expected)


def test_train_lm_counts_and_reports_isolated_non_finite_steps(lines_corpus, monkeypatch):
    real = lm_train.make_train_step

    def make_flaky_step(loss_fn, optimizer, **kwargs):
        def flaky_loss(*args):
            loss, aux = loss_fn(*args)
            step = args[-1]
            return jnp.where(step % 3 == 1, jnp.inf, loss), aux  # the 2nd, 5th, 8th, ... step

        return real(flaky_loss, optimizer, **kwargs)

    monkeypatch.setattr(lm_train, "make_train_step", make_flaky_step)
    model = LMConfig(lines_corpus.vocab.size, cell_name="gru", hidden_size=8)
    train = LINES_TRAIN._replace(steps=12, max_nonfinite_steps=2, sample_every=0)
    result, messages = run(lines_corpus, model, train)
    assert result.stopped_early is None and result.step == 12  # never 2 in a row
    assert result.history.skipped_steps == 4
    skipped = [m for m in messages if "update skipped" in m]
    assert [m.split(":")[0] for m in skipped] == ["step 2", "step 5", "step 8", "step 11"]
    assert "(1 in a row, 4 in this run)" in skipped[-1]
    assert np.isinf(result.history.loss[1::3]).all()
    assert np.isfinite(result.history.loss[0::3]).all()
    for leaf in jax.tree.leaves(result.params):
        assert np.all(np.isfinite(leaf))


def test_train_lm_stops_on_absurd_learning_rate(lines_corpus):
    model = LMConfig(lines_corpus.vocab.size, cell_name="rnn_relu", hidden_size=8)
    train = LINES_TRAIN._replace(
        learning_rate=1e6, clip_value=None, max_nonfinite_steps=5, sample_every=0
    )
    result, messages = run(lines_corpus, model, train)
    _assert_stopped_for_non_finite(result, model, train)
    losses = np.asarray(result.history.loss)
    assert np.isfinite(losses[0]) and not np.isfinite(losses[-5:]).any()
    assert result.stopped_early in messages
    assert result.history.valid[-1].step == result.step  # evaluated where it stopped


def test_train_lm_reports_overflowing_perplexity_as_inf_and_stops_as_diverged(
    lines_corpus, monkeypatch, tmp_path
):
    """A validation loss of 1000 nats is reported with perplexity inf, and, being far above what
    token frequencies alone give, stops the run as diverged without overwriting its checkpoint."""
    model = LMConfig(lines_corpus.vocab.size, cell_name="rnn", hidden_size=4)
    train = LINES_TRAIN._replace(steps=4, eval_every=1, sample_every=0, checkpoint_every=1)
    first, _ = run(lines_corpus, model, train._replace(steps=2), tmp_path)
    saved = (tmp_path / "checkpoint.npz").read_bytes()
    monkeypatch.setattr(lm_train, "evaluate_lm", lambda *args, **kwargs: 1000.0)
    result, messages = run(lines_corpus, model, train, tmp_path, resume=True)
    assert result.step == 3 and result.failed
    assert "step 3: valid 1000.0000 nats/token, perplexity inf" in messages
    assert "the run diverged at step 3" in result.stopped_early
    assert "try a smaller learning rate (now 0.002)" in result.stopped_early
    assert "last checkpoint" in result.stopped_early
    assert (tmp_path / "checkpoint.npz").read_bytes() == saved  # step 2's, good, kept
    assert first.step == 2


def test_divergence_rules():
    rows = [[s, 0.0, v] for s, v in enumerate([3.3, 2.5, 2.2], start=1)]
    assert lm_settings.divergence(rows, baseline_nats=2.8) is None  # learning
    assert lm_settings.divergence([[1, 0.0, float("nan")]], 2.8) is not None
    assert lm_settings.divergence([[1, 0.0, 6.7]], 2.8) is not None  # > 2 × 2.8 + 1
    assert lm_settings.divergence([[1, 0.0, 6.5]], 2.8) is None
    rising = [[s, 0.0, v] for s, v in enumerate([2.5, 2.6, 2.9, 3.0], start=1)]
    assert "rose at each of the last 3" in lm_settings.divergence(rising, 2.8)
    # rising but still below what frequencies alone give: overfitting, not divergence
    assert lm_settings.divergence(rising, 3.1) is None


def test_train_lm_with_a_huge_learning_rate_stops_as_diverged(lines_corpus, tmp_path):
    """The run a user starts with --lr 1e6 ends early with a message, not 4e6 nats/token."""
    model = LMConfig(lines_corpus.vocab.size, cell_name="lstm", hidden_size=16)
    train = LINES_TRAIN._replace(
        steps=60, eval_every=5, sample_every=0, learning_rate=1e6, clip_value=None
    )
    result, messages = run(lines_corpus, model, train, tmp_path)
    assert result.failed and result.step < 60
    assert "smaller learning rate (now 1e+06)" in result.stopped_early
    checkpoint = tmp_path / "checkpoint.npz"
    if checkpoint.exists():  # only ever a checkpoint of finite parameters
        params, *_ = load_lm(checkpoint)
        assert all(np.isfinite(np.asarray(leaf)).all() for leaf in jax.tree.leaves(params))


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(learning_rate=float("nan")), "expected learning_rate to be a finite number > 0"),
        (dict(learning_rate=float("inf")), "expected learning_rate to be a finite number > 0"),
        (dict(learning_rate=0.0), "expected learning_rate to be a finite number > 0"),
        (dict(steps=0), "expected steps to be an int >= 1, got 0"),
        (dict(steps=-5), "expected steps to be an int >= 1, got -5"),
        (dict(warmup_steps=-5), "expected warmup_steps to be an int >= 0, got -5"),
        (dict(eval_every=0), "expected eval_every to be an int >= 1, got 0"),
        (dict(checkpoint_every=0), "expected checkpoint_every to be an int >= 1, got 0"),
        (dict(clip_value=float("nan")), "expected clip_value to be None or a finite number > 0"),
        (dict(final_learning_rate=-1.0), "expected final_learning_rate to be None or"),
        (dict(batch_size=10**9), "a training step would need about"),
        (dict(optimizer="adagrad"), "expected optimizer to be one of"),
        (dict(steps=True), "expected steps to be an int >= 1, got True"),
        (dict(pack=1), "expected pack to be True or False, got 1"),
        (
            dict(final_learning_rate=0.01),
            "expected final_learning_rate at most learning_rate = 0.002, got 0.01",
        ),
        (dict(warmup_steps=40), "expected warmup_steps below steps = 40, got 40"),
        (dict(stateful=True), "expected stateful=False for a lines-mode corpus, got True"),
        (dict(batch_size=5000, pack=False), "expected batch_size at most 4647 (the training"),
    ],
)
def test_train_lm_refuses_settings_no_run_can_use_before_touching_the_folder(
    lines_corpus, tmp_path, change, message
):
    out = tmp_path / "run"
    with pytest.raises(InputError, match=re.escape(message)):
        run(lines_corpus, lines_model(lines_corpus), LINES_TRAIN._replace(**change), out)
    assert not out.exists()


def test_train_lm_refuses_a_batch_the_data_cannot_fill_and_names_the_largest_that_can(
    tmp_path,
):
    corpus = make_corpus("\n".join(NAMES.split()[:40]))  # 36 training lines
    model = lines_model(corpus)
    message = r"expected batch_size at most (\d+), got 40: packed, the 36 training lines fill"
    with pytest.raises(InputError, match=message) as refused:
        run(corpus, model, LINES_TRAIN._replace(batch_size=40), tmp_path / "run")
    assert not (tmp_path / "run").exists()
    largest = int(re.search(message, str(refused.value))[1])
    targets, lengths = corpus.train
    text_lib.packed_batch(targets, lengths, 0, batch_size=largest, seed=0)  # it can
    with pytest.raises(InputError, match="expected lines for at least one full batch"):
        text_lib.packed_batch(targets, lengths, 0, batch_size=largest + 1, seed=0)
    with pytest.raises(InputError, match=r"expected batch_size at most 36 \(the training lines"):
        run(corpus, model, LINES_TRAIN._replace(batch_size=37, pack=False))
    stream = make_corpus("\n".join(NAMES.split()[:40]), mode="stream")
    n_ids = len(stream.train[0])
    stateful = STREAM_TRAIN._replace(batch_size=n_ids // 16 + 1)
    with pytest.raises(InputError, match=rf"expected batch_size at most {(n_ids - 1) // 16}, got"):
        run(stream, model._replace(vocab_size=stream.vocab.size), stateful)
    with pytest.raises(InputError, match=rf"expected seq_len at most {n_ids - 1} \(the training"):
        run(stream, model._replace(vocab_size=stream.vocab.size), stateful._replace(seq_len=n_ids))


def test_train_lm_refuses_a_model_too_big_for_memory(lines_corpus):
    model = LMConfig(lines_corpus.vocab.size, cell_name="lstm", hidden_size=10**6)
    with pytest.raises(InputError, match=r"would need about [\d,.]+ GiB .* use a smaller"):
        run(lines_corpus, model, LINES_TRAIN)


def test_make_corpus_names_the_bad_valid_fraction_and_refuses_huge_padding(monkeypatch):
    text = "anna\nbob\ncarl\ndora\n"
    with pytest.raises(InputError, match=r"valid_fraction strictly between 0 and 1, got 1\.5"):
        make_corpus(text, valid_fraction=1.5)
    with pytest.raises(InputError, match=r"valid_fraction strictly between 0 and 1, got 0"):
        make_corpus(text, valid_fraction=0)
    huge = "\n".join(["ab"] * 20_000 + ["x" * 200_000])  # 20,001 lines padded to 200,001
    monkeypatch.setattr(_checks, "MEMORY_LIMIT_BYTES", 4 * 2**30)
    with pytest.raises(InputError, match=r"would take about [\d.]+ GiB; pass max_len"):
        make_corpus(huge)
    assert make_corpus(huge, max_len=10).train[0].shape[1] == 10


def test_truncated_bptt_carry_flows_across_chunk_boundaries():
    """Triples (a, b, a) of random bits, cut into chunks of two tokens: predicting the third of a
    triple needs its first, which half the time lies in the previous chunk. A model that sees only
    its own chunk can do no better than (1 + 2/3)·ln 2 / 2 ≈ 0.578 nats per token; with the carry
    passed on between chunks the optimum is 2/3·ln 2 ≈ 0.462."""
    rng = np.random.default_rng(0)
    first, second = rng.integers(0, 2, 6000), rng.integers(0, 2, 6000)
    text = "".join("ab"[bit] for bit in np.stack([first, second, first], 1).ravel())
    corpus = make_corpus(text, level="char", mode="stream", valid_fraction=0.1)
    model = LMConfig(
        vocab_size=corpus.vocab.size, cell_name="gru", hidden_size=16, embedding_size=8
    )
    config = TrainConfig(
        steps=1500,
        batch_size=32,
        seq_len=2,
        stateful=True,
        learning_rate=1e-2,
        eval_every=10**9,
        sample_every=0,
        checkpoint_every=10**9,
    )
    result = train_lm(corpus, model, config, progress=False, log=lambda _: None)
    within_chunk_bound = (1 + 2 / 3) * math.log(2) / 2
    nats = evaluate_lm(result.params, model, corpus, rows=8, seq_len=64)
    assert nats < within_chunk_bound - 0.03, (nats, within_chunk_bound)


def test_ngram_baseline_uses_the_corpus_split_without_padding():
    from jaxrnn import ngram

    text = resources.files("jaxrnn").joinpath("data/names.txt").read_text()
    corpus = make_corpus(text, level="char", mode="lines")
    sentences = [
        [ids[:n] for ids, n in zip(*part, strict=True)] for part in (corpus.train, corpus.valid)
    ]
    direct = ngram.evaluate(ngram.fit_ngram(sentences[0], corpus.vocab.size, 3), sentences[1])
    got = lm_train.ngram_baseline(corpus, 3)
    assert got == direct
    assert got.n_tokens == int(corpus.valid[1].sum())  # every token and ⟨EOS⟩, no padding


def test_history_round_trips_through_a_checkpoints_json():
    from jaxrnn.runs import Evaluation, History

    history = History([3.0, 2.5], [Evaluation(2, 1.5, 2.25)], seconds=1.5, skipped_steps=1)
    saved = json.loads(json.dumps(history.to_dict()))
    assert saved == {"loss": [3.0, 2.5], "valid": [[2, 1.5, 2.25]], "seconds": 1.5,
                     "skipped_steps": 1}  # fmt: skip
    assert History.from_dict(saved) == history
    assert "skipped_steps" not in History().to_dict()  # as written before it was counted


def test_a_packed_batch_has_the_loss_and_gradients_of_its_lines_each_alone(lines_corpus):
    from jaxrnn.text import START, training_batch

    model = LMConfig(lines_corpus.vocab.size, cell_name="lstm", hidden_size=8, num_layers=2)
    params = init_lm(jax.random.key(0), model)
    batch = training_batch(lines_corpus, 5, batch_size=6, seq_len=0, seed=1, pack=True)
    segments = []  # (row, start, end) of each packed line: from one reset to the next
    for row, filled in enumerate(batch.lengths.tolist()):
        starts = np.flatnonzero(batch.resets[row, :filled]).tolist()
        segments += zip([row] * len(starts), starts, [*starts[1:], filled], strict=True)
    assert len(segments) > 6  # several lines share rows
    width = batch.targets.shape[1]
    alone = np.zeros((len(segments), width), np.int32)
    alone_lengths = np.array([end - start for _, start, end in segments], np.int32)
    for i, (row, start, end) in enumerate(segments):
        alone[i, : end - start] = batch.targets[row, start:end]

    for reduce_time in ("mean", "sum"):

        def packed_loss(params, reduce_time=reduce_time):
            arrays = (batch.inputs, batch.targets)
            loss, _ = lm_loss(
                params,
                model,
                *arrays,
                lengths=batch.lengths,
                resets=batch.resets,
                reduce_time=reduce_time,
            )
            return loss

        def loss_alone(params, reduce_time=reduce_time):
            inputs = np.concatenate([np.full((len(alone), 1), START), alone[:, :-1]], axis=1)
            loss, _ = lm_loss(
                params, model, inputs, alone, lengths=alone_lengths, reduce_time=reduce_time
            )
            return loss

        got, grad_packed = jax.jit(jax.value_and_grad(packed_loss))(params)
        expected, grad_alone = jax.jit(jax.value_and_grad(loss_alone))(params)
        np.testing.assert_allclose(got, expected, rtol=1e-5)
        for g, e in zip(jax.tree.leaves(grad_packed), jax.tree.leaves(grad_alone), strict=True):
            np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-6)


def test_train_lm_padded_lines_learn_no_better_than_packed(lines_corpus, lines_run):
    assert LINES_TRAIN.pack  # lines_run packs, the default
    padded, _ = run(lines_corpus, lines_model(lines_corpus), LINES_TRAIN._replace(pack=False))
    packed, _, _ = lines_run
    assert padded.step == packed.step
    # the same steps: packed rows hold more lines, and learn at least as much
    assert packed.history.valid[-1].nats < padded.history.valid[-1].nats + 0.05


class _Clock:
    """A stand-in for `time` in `jaxrnn.lm_train`: the first step takes ``first`` seconds (it
    compiles), every later one ``each``."""

    def __init__(self, first: float, each: float):
        self.now, self.calls, self.first, self.each = 0.0, 0, first, each

    def perf_counter(self) -> float:
        self.calls += 1
        if self.calls % 2 == 0:  # the end of a step: one call before it, one after
            self.now += self.first if self.calls == 2 else self.each
        return self.now


def test_steps_for_minutes_fits_the_budget_left_after_the_trial(stream_corpus, monkeypatch):
    model = LMConfig(stream_corpus.vocab.size, cell_name="gru", hidden_size=8)
    monkeypatch.setattr(lm_train, "time", _Clock(first=2.0, each=0.1))
    fit = lm_train.steps_for_minutes(stream_corpus, model, STREAM_TRAIN, 1.0, trial_steps=12)
    assert fit.seconds_per_step == pytest.approx(0.1)
    assert fit.trial_seconds == pytest.approx(2.0 + 11 * 0.1)
    # 60 s, less the trial (3.1 s) and the real run's compilation (2.0 - 0.1 s): 55 s of steps.
    assert fit.steps == 550


def test_learning_rate_at_decays_over_the_time_budget():
    peak, final = 4e-3, 1e-4
    config = TrainConfig(
        learning_rate=peak, final_learning_rate=final, minutes=2.0, decay_over="minutes"
    )
    rate = lm_settings.learning_rate_at
    assert rate(config, 0, 0.0) == pytest.approx(peak, rel=1e-12)
    half = (peak + final) / 2  # half the budget
    assert rate(config, 500, 60.0) == pytest.approx(half, rel=1e-12)
    assert rate(config, 700, 90.0) == pytest.approx(final + (peak - final) * (1 - 0.5**0.5) / 2)
    assert rate(config, 900, 120.0) == pytest.approx(final, rel=1e-12)
    assert rate(config, 999, 500.0) == pytest.approx(final, rel=1e-12)  # flat past the budget
    warm = config._replace(warmup_steps=10)
    assert rate(warm, 0, 0.0) == 0.0
    assert rate(warm, 5, 60.0) == pytest.approx((peak + final) / 4, rel=1e-12)
    assert rate(warm, 10, 60.0) == pytest.approx((peak + final) / 2, rel=1e-12)
    assert rate(config._replace(final_learning_rate=None), 3, 100.0) == peak


def test_train_lm_decay_over_minutes_sets_each_steps_rate_from_training_time(
    stream_corpus, monkeypatch
):
    model = LMConfig(stream_corpus.vocab.size, cell_name="gru", hidden_size=8)
    config = STREAM_TRAIN._replace(
        steps=10**6, minutes=0.5, decay_over="minutes", final_learning_rate=1e-5, eval_every=10**6
    )
    seen = []

    def recorded(train, step, seconds):
        seen.append((step, seconds))
        return lm_settings.learning_rate_at(train, step, seconds)

    monkeypatch.setattr(lm_train, "learning_rate_at", recorded)
    monkeypatch.setattr(lm_train, "time", _Clock(first=1.0, each=1.0))
    result, _ = run(stream_corpus, model, config)
    # 1 s a step: the 30 s budget is spent after step 30, each step's rate read at its start
    assert result.step == 30 and result.stopped_early == "time budget of 0.5 min reached"
    assert seen == [(step, float(step)) for step in range(30)]


def test_train_lm_decay_over_minutes_at_a_flat_rate_trains_as_decay_over_steps(stream_corpus):
    # the rate injected into the optimizer's state steps the parameters as the plain optimizer does
    model = LMConfig(stream_corpus.vocab.size, cell_name="gru", hidden_size=8)
    flat = STREAM_TRAIN._replace(steps=12, final_learning_rate=None, eval_every=10**6)
    by_steps, _ = run(stream_corpus, model, flat)
    by_minutes, _ = run(stream_corpus, model, flat._replace(minutes=60.0, decay_over="minutes"))
    assert by_minutes.step == by_steps.step == 12
    for got, expected in zip(
        jax.tree.leaves(by_minutes.params), jax.tree.leaves(by_steps.params), strict=True
    ):
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)


def test_train_lm_decay_over_minutes_resumes_bit_exact_on_the_same_clock(
    stream_corpus, tmp_path, monkeypatch
):
    model = LMConfig(stream_corpus.vocab.size, cell_name="gru", hidden_size=16, embedding_size=8)
    config = STREAM_TRAIN._replace(
        steps=10**6, minutes=0.5, decay_over="minutes", final_learning_rate=1e-4
    )
    monkeypatch.setattr(lm_train, "time", _Clock(first=1.0, each=1.0))
    full, _ = run(stream_corpus, model, config)
    run(stream_corpus, model, config, tmp_path, stop_after=13)
    resumed, _ = run(stream_corpus, model, config, tmp_path, resume=True)
    assert full.step == 30
    assert_same_run(resumed, full)


def test_train_lm_progress_shows_the_time_budget_left(stream_corpus, monkeypatch, capsys):
    model = LMConfig(stream_corpus.vocab.size, cell_name="gru", hidden_size=8)
    config = STREAM_TRAIN._replace(steps=10**6, minutes=1.5, eval_every=10**6)
    monkeypatch.setattr(lm_train, "time", _Clock(first=10.0, each=10.0))
    # a clock that stands still: the plain-line progress prints once, when it closes
    monkeypatch.setattr(progress_lib, "time", types.SimpleNamespace(monotonic=lambda: 0.0))
    result = train_lm(stream_corpus, model, config, progress="lines", log=lambda message: None)
    assert result.step == 9  # 90 s of 10-s steps
    # the last line the bar prints, at close: after step 9, the budget's 90 s are spent
    assert "budget left 0:00" in capsys.readouterr().err.splitlines()[-1]
    run_ = lm_train._Run(stream_corpus, model, config, None, 0, 1)
    run_.place(1)
    assert run_.train_one_step()["budget left"] == "1:20"  # 90 - 10 s


@pytest.mark.parametrize(
    "change, named",
    [
        ({"decay_over": "minutes", "minutes": 1.0}, r"'decay_over': \('steps', 'minutes'\)"),
        ({"optimizer": "sgd"}, r"'optimizer': \('adam', 'sgd'\)"),
        ({"clip_value": None}, r"'clip_value': \(5.0, None\)"),
    ],
)
def test_train_lm_resume_with_another_optimizer_layout_names_the_setting(
    stream_corpus, tmp_path, change, named
):
    model = LMConfig(stream_corpus.vocab.size, cell_name="gru", hidden_size=8)
    run(stream_corpus, model, STREAM_TRAIN, tmp_path, stop_after=10)
    before = (tmp_path / "checkpoint.npz").read_bytes()
    with pytest.raises(CheckpointError, match=r"optimizer state was made with other .*" + named):
        run(stream_corpus, model, STREAM_TRAIN._replace(**change), tmp_path, resume=True)
    assert (tmp_path / "checkpoint.npz").read_bytes() == before


def test_decay_over_minutes_needs_a_budget_and_names_bad_values(stream_corpus):
    model = LMConfig(stream_corpus.vocab.size, cell_name="gru", hidden_size=8)
    with pytest.raises(InputError, match=r'minutes to be set when decay_over is "minutes"'):
        run(stream_corpus, model, STREAM_TRAIN._replace(decay_over="minutes"))
    with pytest.raises(InputError, match=r'decay_over to be "steps" or "minutes", got \'hours\''):
        run(stream_corpus, model, STREAM_TRAIN._replace(decay_over="hours", minutes=1.0))


def test_steps_for_minutes_runs_real_steps_and_names_bad_arguments(stream_corpus):
    model = LMConfig(stream_corpus.vocab.size, cell_name="gru", hidden_size=8)
    fit = lm_train.steps_for_minutes(stream_corpus, model, STREAM_TRAIN, 0.5, trial_steps=4)
    assert 0 < fit.seconds_per_step <= fit.trial_seconds / 2
    assert fit.steps >= 1
    assert fit.steps * fit.seconds_per_step <= 30.0 - fit.trial_seconds + 1e-9
    with pytest.raises(InputError, match=r"steps_for_minutes.*minutes a number > 0, got 0"):
        lm_train.steps_for_minutes(stream_corpus, model, STREAM_TRAIN, 0)
    with pytest.raises(InputError, match=r"trial_steps an int >= 4, got 3"):
        lm_train.steps_for_minutes(stream_corpus, model, STREAM_TRAIN, 1.0, trial_steps=3)
    with pytest.raises(InputError, match=r"steps_for_minutes.*learning_rate"):
        lm_train.steps_for_minutes(stream_corpus, model, STREAM_TRAIN._replace(learning_rate=0), 1)
