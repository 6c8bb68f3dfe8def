"""The end-to-end benchmark still runs against the library as it is now.

The benchmarks are measured by hand, never in this suite (speed is not asserted here), so a rename
in the library could break them unnoticed. These tests run the Shakespeare benchmark's jaxrnn worker
for a moment on a little of the shipped text, with a small model, and check that the settings it
measures with are ones `train_lm` accepts. (Its PyTorch worker uses only PyTorch and
`stream_rows`; its first training step alone takes seconds, so it is left to the benchmark.)
"""

import importlib.util
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from jaxrnn import lm_settings
from jaxrnn.lm import LMConfig
from jaxrnn.lm_train import TrainConfig

ROOT = Path(__file__).resolve().parent.parent


def load_benchmark(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def shakespeare_quality():
    return load_benchmark("shakespeare_quality")


@pytest.fixture
def little_text(tmp_path):
    text = resources.files("jaxrnn").joinpath("data", "shakespeare.txt").read_text()[:30_000]
    path = tmp_path / "input.txt"
    path.write_text(text)
    return path


@pytest.mark.parametrize("minutes", [5, 10])
def test_the_measured_settings_are_ones_train_lm_accepts(shakespeare_quality, minutes):
    model = LMConfig(vocab_size=65, **shakespeare_quality.jaxrnn_model(minutes))
    train = TrainConfig(**shakespeare_quality.JAXRNN_TRAIN, minutes=minutes)
    lm_settings.check_settings(model, train, time_steps=train.seq_len)
    want = 0.1 if minutes <= 5 else shakespeare_quality.LONG_BUDGET_DROPOUT
    assert model.dropout_rate == want


def check_curve(curve, *, vocab_size: int):
    rows = np.asarray(curve, float)
    assert rows.ndim == 2 and rows.shape[1] == 3 and len(rows) >= 1
    steps, seconds, nats = rows.T
    assert np.all(steps >= 1) and np.all(np.diff(steps) > 0)
    assert np.all(seconds > 0)
    # An untrained model scores about ln(vocabulary); a moment's training cannot be far from it.
    assert np.all(np.isfinite(nats)) and np.all((nats > 1.0) & (nats < 2 * np.log(vocab_size)))


def test_the_jaxrnn_worker_trains_and_evaluates(shakespeare_quality, little_text, monkeypatch):
    monkeypatch.setattr(
        shakespeare_quality,
        "JAXRNN_MODEL",
        {**shakespeare_quality.JAXRNN_MODEL, "hidden_size": 16, "embedding_size": 8},
    )
    monkeypatch.setattr(
        shakespeare_quality,
        "JAXRNN_TRAIN",
        {**shakespeare_quality.JAXRNN_TRAIN, "batch_size": 4, "seq_len": 16},
    )
    curve = shakespeare_quality.worker_jaxrnn(little_text, minutes=0.1, eval_every=2.0, seed=0)
    check_curve(curve, vocab_size=len(set(little_text.read_text())))
