"""The end-to-end benchmark still runs against the library as it is now.

The benchmarks are measured by hand, never in this suite (speed is not asserted here), so a rename
in the library could break them unnoticed. These tests run the Shakespeare benchmark's jaxrnn worker
for a moment on a little of the shipped text, with a small model, and check that the settings it
measures with are ones `train_lm` accepts. (Its PyTorch worker uses only PyTorch and
`stream_rows`; its first training step alone takes seconds, so it is left to the benchmark.) The
suite's GEMM floor, which its reports divide by, is checked against products counted by hand.
"""

import argparse
import functools
import importlib.util
import json
import os
import sys
from importlib import resources
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

import jaxrnn.lm
from jaxrnn import lm_settings
from jaxrnn.lm import LMConfig
from jaxrnn.lm_eval import evaluate_lm
from jaxrnn.lm_train import TrainConfig
from jaxrnn.text import make_corpus

ROOT = Path(__file__).resolve().parent.parent


def benchmarks_package():
    """The ``benchmarks`` package, importable by name as its scripts import each other, without
    putting the source tree's ``jaxrnn`` on sys.path ahead of the installed one."""
    if "benchmarks" not in sys.modules:
        folder = ROOT / "benchmarks"
        spec = importlib.util.spec_from_file_location(
            "benchmarks", folder / "__init__.py", submodule_search_locations=[str(folder)]
        )
        package = importlib.util.module_from_spec(spec)
        sys.modules["benchmarks"] = package
        spec.loader.exec_module(package)
    return sys.modules["benchmarks"]


def load_benchmark(name: str):
    benchmarks_package()
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


@pytest.mark.parametrize("minutes, gflops", [(5, 450.0), (10, 450.0), (5, 184.0), (10, 150.0)])
def test_the_measured_settings_are_ones_train_lm_accepts(shakespeare_quality, minutes, gflops):
    settings = shakespeare_quality.jaxrnn_model(minutes, gflops)
    model = LMConfig(vocab_size=65, **settings)
    train = TrainConfig(**shakespeare_quality.JAXRNN_TRAIN, minutes=minutes)
    lm_settings.check_settings(model, train, time_steps=train.seq_len)


def test_the_model_is_the_widest_that_fits_enough_steps(shakespeare_quality):
    sq = shakespeare_quality
    # The step's products, counted by hand for 768 units, batch 32 × 64, embedding 64, 65 chars.
    rows = 32 * 64
    assert sq.training_flops(768) == 3 * (2 * rows * 832 * 3072 + 2 * rows * 768 * 65)

    def steps(minutes, width, gflops):  # the rule restated: a step is 1.5 × its FLOPs' matmul time
        return 60 * minutes * gflops * 1e9 / (1.5 * sq.training_flops(width))

    for minutes, gflops in [(5, 450.0), (10, 450.0), (5, 184.0), (10, 184.0), (5, 60.0)]:
        settings = sq.jaxrnn_model(minutes, gflops)
        width = settings["hidden_size"]
        fits = [w for w in sq.WIDTHS if steps(minutes, w, gflops) >= sq.MIN_STEPS]
        assert width == (max(fits) if fits else min(sq.WIDTHS))
        many = steps(minutes, width, gflops) >= sq.LONG_RUN_STEPS
        assert settings["dropout_rate"] == (sq.LONG_RUN_DROPOUT if many else 0.1)
    # The CPUs the rule was fitted on: an AVX-512 EPYC (about 450 GFLOP/s) keeps 768 units,
    # dropout 0.1 for 5 minutes and 0.25 for 10; an AMX Xeon (280–335) takes 640 for 5 minutes
    # and 768 for 10; an AVX2 EPYC (175–190) 512 for 5 minutes and 768 for 10.
    assert sq.jaxrnn_model(5, 450.0) == {**sq.JAXRNN_MODEL, "hidden_size": 768}
    assert sq.jaxrnn_model(10, 450.0)["dropout_rate"] == sq.LONG_RUN_DROPOUT
    for gflops, five_minutes in [(175.0, 512), (190.0, 512), (280.0, 640), (335.0, 640)]:
        assert sq.jaxrnn_model(5, gflops)["hidden_size"] == five_minutes
        assert sq.jaxrnn_model(10, gflops)["hidden_size"] == 768
    assert sq.jaxrnn_model(5, 60.0)["hidden_size"] == 512


def check_curve(curve, *, vocab_size: int):
    rows = np.asarray(curve, float)
    assert rows.ndim == 2 and rows.shape[1] == 3 and len(rows) >= 1
    steps, seconds, nats = rows.T
    assert np.all(steps >= 1) and np.all(np.diff(steps) > 0)
    assert np.all(seconds > 0)
    # An untrained model scores about ln(vocabulary); a moment's training cannot be far from it.
    assert np.all(np.isfinite(nats)) and np.all((nats > 1.0) & (nats < 2 * np.log(vocab_size)))


@pytest.fixture
def tiny_worker(shakespeare_quality, monkeypatch):
    """The benchmark module with a 16-unit model, sized at 1 GFLOP/s: a worker runs in seconds."""
    sq = shakespeare_quality
    tiny = {**sq.JAXRNN_MODEL, "hidden_size": 16, "embedding_size": 8}
    monkeypatch.setattr(sq, "JAXRNN_MODEL", tiny)
    monkeypatch.setattr(sq, "WIDTHS", (16,))
    monkeypatch.setattr(sq, "matmul_gflops", lambda: 1.0)
    return sq


def tiny_run(sq, path, minutes: float, **options) -> dict:
    """The worker on ``path`` with rows small enough to train in seconds (``--train`` settings)."""
    small = {"batch_size": 4, "seq_len": 16}
    return sq.worker_jaxrnn(path, minutes, eval_every=2.0, seed=0, train_settings=small, **options)


def test_the_jaxrnn_worker_trains_and_evaluates(tiny_worker, little_text):
    curves = tiny_run(tiny_worker, little_text, 0.1)
    assert list(curves) == ["jaxrnn"]  # at 1 GFLOP/s half of 6 s fits no member's steps
    check_curve(curves["jaxrnn"], vocab_size=len(set(little_text.read_text())))


def test_a_bf16_run_is_sized_by_the_measured_bf16_step_rate(
    tiny_worker, little_text, monkeypatch, capsys
):
    sq = tiny_worker
    rates = []
    monkeypatch.setattr(sq, "bf16_step_speedup", lambda corpus: 1.75)
    monkeypatch.setattr(
        sq, "jaxrnn_members", lambda minutes, gflops, speedup: rates.append(speedup) or 1
    )
    sized = sq.jaxrnn_model
    monkeypatch.setattr(
        sq,
        "jaxrnn_model",
        lambda minutes, gflops, speedup: rates.append(speedup) or sized(minutes, gflops, speedup),
    )
    precision = jax.config.jax_default_matmul_precision
    try:
        curves = tiny_run(sq, little_text, 0.05, bf16=True)
    finally:  # the worker sets the precision for its whole process
        jax.config.update("jax_default_matmul_precision", precision)
    assert rates == [1.75, 1.75]  # both rules are given the measured speed-up
    assert '"bf16_step_speedup": 1.75' in capsys.readouterr().out
    check_curve(curves["jaxrnn"], vocab_size=len(set(little_text.read_text())))


def test_the_bf16_speedup_is_a_ratio_of_two_timed_steps(tiny_worker, little_text):
    corpus = make_corpus(little_text.read_text(), level="char", mode="stream", valid_fraction=0.1)
    precision = jax.config.jax_default_matmul_precision
    speedup = tiny_worker.bf16_step_speedup(corpus, hidden_size=8, trial_steps=4)
    assert np.isfinite(speedup) and 0.05 < speedup < 20
    assert jax.config.jax_default_matmul_precision == precision  # the precision was only lent


def test_the_jaxrnn_worker_mixes_the_members_it_trains(tiny_worker, little_text, monkeypatch):
    sq = tiny_worker
    finished = []
    mixture = jaxrnn.lm.mixture
    monkeypatch.setattr(
        jaxrnn.lm, "mixture", lambda members: finished.append(members) or mixture(members)
    )
    curves = tiny_run(sq, little_text, 0.2, members=2)
    assert list(curves) == ["jaxrnn", "jaxrnn, member 2 alone"]
    vocab = len(set(little_text.read_text()))
    for curve in curves.values():
        check_curve(curve, vocab_size=vocab)
    first, second, (last,) = (
        curves["jaxrnn"][:-1],
        curves["jaxrnn, member 2 alone"],
        curves["jaxrnn"][-1:],
    )
    # the second member runs on from the first: its steps and seconds continue the first's
    assert second[0][0] > first[-1][0] and second[0][1] > first[-1][1]
    # the last point is the mixture, scored when the second member finished
    assert last[0] == second[-1][0] and last[1] == pytest.approx(second[-1][1], abs=3.0)
    assert last[1] <= 60 * 0.2 + 3.0  # both shares within the budget
    (members,) = finished
    assert len(members) == 2
    corpus = make_corpus(little_text.read_text(), level="char", mode="stream", valid_fraction=0.1)
    model = LMConfig(vocab_size=corpus.vocab.size, **sq.JAXRNN_MODEL)  # the text's and ⟨EOS⟩
    alone = [
        evaluate_lm(p, model, corpus, rows=sq.EVAL_ROWS, seq_len=sq.EVAL_CHUNK) for p in members
    ]
    assert alone[1] == pytest.approx(second[-1][2], abs=1e-3)
    assert last[2] < np.mean(alone)  # the mixture's −log of a mean, below the mean of −logs


def test_the_report_reads_a_mixture_at_the_marks_and_says_how_it_was_made(
    shakespeare_quality, tmp_path, monkeypatch
):
    sq = shakespeare_quality
    monkeypatch.syspath_prepend(str(ROOT))  # the report reads the machine by `benchmarks.suite`
    curves = {
        "jaxrnn": [[100, 60.0, 1.70], [200, 119.0, 1.55], [300, 180.0, 1.50], [600, 361.0, 1.41]],
        "jaxrnn, member 2 alone": [[400, 240.0, 1.80], [600, 361.0, 1.52]],
        "torch": [[150, 60.0, 1.80], [300, 120.5, 1.62], [700, 360.0, 1.55]],
    }
    args = argparse.Namespace(
        minutes=6.0, seed=3, bf16=False, out=tmp_path, model_settings={}, train_settings={}
    )
    args.members = None
    sq.report(args, curves, {6: 1.5385}, {"hidden_size": 16, "members": 2})
    text = (tmp_path / "shakespeare_quality_6min.md").read_text()
    assert "jaxrnn trains 2 such models one after the other" in text
    assert "(seeds 3 to 4)" in text
    # the mark reads the last evaluation at or before it: the mixture only once it exists
    assert "| jaxrnn | 1.5500 | 1.5000 | 1.4100 (6.0) | 600 |" in text
    assert "| jaxrnn, member 2 alone | – | 1.8000 | 1.5200 (6.0) | 600 |" in text
    assert (tmp_path / "shakespeare_quality_6min.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "shakespeare_quality_6min.json").read_text())
    assert saved["curves"] == curves and saved["jaxrnn_model"]["members"] == 2


def test_bf16_steps_choose_the_width_and_the_members_and_float32_steps_the_dropout(
    shakespeare_quality,
):
    sq = shakespeare_quality
    for minutes, gflops, speedup in [(5, 305.0, 1.6), (10, 340.0, 1.65), (10, 450.0, 1.5)]:
        settings = sq.jaxrnn_model(minutes, gflops, speedup)
        assert settings["hidden_size"] == sq.jaxrnn_model(minutes, gflops * speedup)["hidden_size"]
        many = sq.predicted_steps(minutes, settings["hidden_size"], gflops) >= sq.LONG_RUN_STEPS
        assert settings["dropout_rate"] == (sq.LONG_RUN_DROPOUT if many else 0.1)
        members = sq.jaxrnn_members(minutes, gflops * speedup)
        assert sq.jaxrnn_members(minutes, gflops, speedup) == members
    # the AMX Xeon with bfloat16 products (1.5–1.65× as fast): two 640-unit models of 2.5
    # minutes, two 768-unit models of 5 minutes with dropout 0.1, where float32 trains one 640
    # and two 640s
    assert sq.jaxrnn_members(5, 305.0, 1.65) == 2 and sq.jaxrnn_members(5, 305.0) == 1
    assert sq.jaxrnn_model(2.5, 305.0, 1.65) == {**sq.JAXRNN_MODEL, "hidden_size": 640}
    assert sq.jaxrnn_model(5, 305.0, 1.65) == {**sq.JAXRNN_MODEL, "hidden_size": 768}
    assert sq.jaxrnn_model(5, 305.0)["hidden_size"] == 640


def test_two_members_where_half_the_budget_fits_enough_steps(shakespeare_quality):
    sq = shakespeare_quality
    for minutes, gflops in [(10, 197.0), (10, 180.0), (5, 197.0), (5, 450.0), (1, 450.0)]:
        half = sq.predicted_steps(minutes / 2, min(sq.WIDTHS), gflops)
        assert sq.jaxrnn_members(minutes, gflops) == (2 if half >= sq.MEMBER_STEPS else 1)
    # a Zen 4 EPYC (190–211 GFLOP/s): two for 10 minutes, one for 5
    assert [sq.jaxrnn_members(m, g) for m in (10, 5) for g in (190.0, 211.0)] == [2, 2, 1, 1]
    # an AMX Xeon (280–335): one for 5 minutes; an AVX-512 EPYC (450): two even for 5
    assert [sq.jaxrnn_members(5, g) for g in (280.0, 335.0, 450.0)] == [1, 1, 2]


def test_settings_from_the_command_line_are_typed_and_checked(shakespeare_quality):
    sq = shakespeare_quality
    model = sq.parse_settings(
        [
            "hidden_size=640",
            "cell_name=gru_reset_after",
            "dropout_rate=0.25",
            "embedding_size=None",
        ],
        sq.model_fields(),
        "--model",
    )
    assert model == {
        "hidden_size": 640,
        "cell_name": "gru_reset_after",
        "dropout_rate": 0.25,
        "embedding_size": None,
    }
    assert sq.parse_settings(["seq_len=32"], sq.train_fields(), "--train") == {"seq_len": 32}
    # The budget and the evaluations stay the benchmark's: its curves are compared at fixed marks.
    for pair, fields, flag in [
        ("minutes=20", sq.train_fields(), "--train"),
        ("vocab_size=10", sq.model_fields(), "--model"),
        ("hidden_size", sq.model_fields(), "--model"),
        ("width=640", sq.model_fields(), "--model"),
    ]:
        with pytest.raises(ValueError, match=f"{flag}: expected KEY=VALUE.*{pair!r}"):
            sq.parse_settings([pair], fields, flag)


def test_a_bad_setting_stops_the_benchmark_before_it_trains(shakespeare_quality, capsys):
    with pytest.raises(SystemExit):
        shakespeare_quality.main(["--input", "unused.txt", "--model", "hidden=640"])
    assert "--model: expected KEY=VALUE" in capsys.readouterr().err


@pytest.fixture(scope="module")
def suite():
    return load_benchmark("suite")


def test_the_training_floor_counts_the_products_a_training_step_needs(suite):
    # c1's LSTM by hand: forward [x, h] (32·128, 64 + 256) @ (320, 1024); backward dL/dW as
    # many, dL/dh = dz (4096, 1024) @ (1024, 256); no dL/dxs, since xs is data.
    rows, forward = 32 * 128, 2 * 32 * 128 * 320 * 1024
    c1 = suite.make_case("c1", "lstm", (32, 128, 64, 256))
    assert suite.forward_flops(c1) == forward
    assert suite.train_flops(c1) == forward + forward + 2 * rows * 1024 * 256
    # The bidirectional 2-layer stack: the second layer reads both directions (512 inputs) and
    # its dL/dxs is needed for the first layer's gradients.
    bi = suite.make_case("bi", "lstm", (32, 128, 64, 256))
    first, second = 2 * rows * 320 * 1024, 2 * rows * (512 + 256) * 1024
    assert suite.forward_flops(bi) == 2 * (first + second)
    d_hs = 2 * rows * 1024 * 256
    d_second_inputs = 2 * rows * 1024 * 512
    expected = 2 * (first + first + d_hs) + 2 * (second + second + d_hs + d_second_inputs)
    assert suite.train_flops(bi) == expected


def suite_run(suite, config: str, gemm_gflops: float, medians_ms: dict, backend="cpu", beside=None):
    """A report as one run of the suite assembles it, from made-up timings: ``medians_ms`` maps
    each timed implementation to its forward and train medians; ``beside``, the GEMM rates
    jaxrnn's worker measured before and after the case."""
    case = suite.make_case(config, "lstm", (4, 16, 8, 16))

    def timing(ms: float) -> dict:
        return dict(
            capped=False, cpu_per_wall=1.0, first_call_s=0.5, reps=7, times_ms=[ms],
            median_ms=ms, min_ms=ms, max_ms=ms, round_medians_ms=[ms],
        )  # fmt: skip

    checked = dict(status="ok", max_abs_out=1e-7, max_rel_grad=1e-6, worst_grad="w")
    numerics = dict(
        impls={
            name: dict(family=name, module=f"benchmarks.suite_{name}", peer=name != "jaxrnn")
            for name in medians_ms
        },
        results={case.key: {name: checked for name in medians_ms}},
        backend=backend, device_kind=backend, info={}, wall_s=10.0,
    )  # fmt: skip
    workers = {
        name: dict(
            info={"gemm_gflops": gemm_gflops} if name == "jaxrnn" else {},
            results={
                case.key: {
                    name: dict(status="ok", note="", forward=timing(fwd), train=timing(train))
                }
            },
            returncode=0,
            wall_s=20.0,
        )
        for name, (fwd, train) in medians_ms.items()
    }
    if beside:
        workers["jaxrnn"]["gemm_beside_gflops"] = {case.key: [beside]}
    args = argparse.Namespace(pin=False)
    return suite._assemble(args, "quick", suite.POLICIES["quick"], [case], numerics, workers, 60.0)


def test_rounds_time_each_case_family_after_family_and_pool_their_calls(
    suite, tmp_path, monkeypatch
):
    # Workers that answer without timing anything: each round's call of an implementation takes
    # as many ms as the workers started before it, so every round's median differs.
    started = []

    def fake_worker(args, pin, env=None):
        _, target, spec_path, result_path = args
        spec, family = json.loads(Path(spec_path).read_text()), target.split(":")[1]
        started.append((family, [case["key"] for case in spec["cases"]], spec["gemm"]))
        ms = float(len(started))
        timing = dict(
            capped=False, cpu_per_wall=1.0, first_call_s=ms, estimate_ms=ms, reps=2,
            times_ms=[ms, ms + 1], median_ms=ms + 0.5, min_ms=ms, max_ms=ms + 1,
        )  # fmt: skip
        results = {
            case["key"]: {name: dict(status="ok", forward=timing, train=timing)
                          for name in case["impls"]}
            for case in spec["cases"]
        }  # fmt: skip
        info = {"family": family, **({"gemm_gflops": 100.0} if spec["gemm"] else {})}
        output = {"info": info, "results": results}
        if spec["gemm_beside"]:  # before and after each case: 10·(workers started) and 1 more
            output["gemm_beside_gflops"] = {key: [10 * ms, 10 * ms + 1] for key in results}
        Path(result_path).write_text(json.dumps(output))
        return 0

    monkeypatch.setattr(suite, "_subprocess", fake_worker)
    work = [{"key": key, "impls": [key]} for key in ("c1/lstm", "c2/lstm")]
    plans = {
        "torch": ("benchmarks.suite_torch", [dict(w, impls=["torch"]) for w in work], False),
        "jaxrnn": ("benchmarks.suite_jax", [dict(w, impls=["jaxrnn"]) for w in work], True),
    }
    workers = suite._time_families(plans, {"seed": 0}, tmp_path, False, rounds=2)
    # case by case, the families' order reversed in the second round; one GEMM measurement
    assert started == [
        ("torch", ["c1/lstm"], False), ("jaxrnn", ["c1/lstm"], True),
        ("torch", ["c2/lstm"], False), ("jaxrnn", ["c2/lstm"], False),
        ("jaxrnn", ["c1/lstm"], False), ("torch", ["c1/lstm"], False),
        ("jaxrnn", ["c2/lstm"], False), ("torch", ["c2/lstm"], False),
    ]  # fmt: skip
    assert workers["jaxrnn"]["info"]["gemm_gflops"] == 100.0
    # jaxrnn's c1 ran as the 2nd and 5th worker: calls of 2, 3, 5 and 6 ms pooled
    pooled = workers["jaxrnn"]["results"]["c1/lstm"]["jaxrnn"]["forward"]
    assert pooled["times_ms"] == [2.0, 3.0, 5.0, 6.0] and pooled["reps"] == 4
    assert (pooled["median_ms"], pooled["min_ms"], pooled["max_ms"]) == (4.0, 2.0, 6.0)
    assert pooled["round_medians_ms"] == [2.5, 5.5] and pooled["first_call_s"] == 2.0
    # a round that failed stands for the case
    failed = {"status": "error", "error": "RuntimeError: out of memory"}
    ok = workers["torch"]["results"]["c1/lstm"]["torch"]
    assert suite.pool_rounds([ok, failed]) == failed
    # the report gives each round's ratio to the fastest peer: torch's c1 ran 1st and 6th
    timed = {family: workers[family]["results"]["c1/lstm"][family] for family in plans}
    case = dict(cell="lstm", impls={f: dict(r, peer=f == "torch") for f, r in timed.items()})
    assert suite.round_ratios(case, "forward") == pytest.approx([2.5 / 1.5, 5.5 / 6.5])
    assert suite._round_ratios_text([case]).endswith("lstm 1.67 / 1.67, 0.85 / 0.85.")
    # jaxrnn's workers measured the GEMM rate before and after each case, in each round
    assert workers["jaxrnn"]["gemm_beside_gflops"] == {
        "c1/lstm": [[20.0, 21.0], [50.0, 51.0]],
        "c2/lstm": [[40.0, 41.0], [70.0, 71.0]],
    }
    assert "gemm_beside_gflops" not in workers["torch"]
    # its floor ratio at the faster of each round's rates: 2.5 ms at 21 GFLOP/s, 5.5 at 51,
    # the pooled 4 ms at their median, 36; for 0.5 GFLOP forward and 1.5 GFLOP train
    case.update(forward_flops=0.5e9, train_flops=1.5e9, gemm_beside_gflops=[[20, 21], [50, 51]])
    pooled_ratio, per_round = suite.beside_floor_ratios(case, "train")
    assert pooled_ratio == pytest.approx(4.0 * 36 / 1.5e3)
    assert per_round == pytest.approx([2.5 * 21 / 1.5e3, 5.5 * 51 / 1.5e3])
    assert suite._beside_text([case]).endswith(
        "lstm 0.29 / 0.10 (20–21, 50–51 GFLOP/s; each round 0.10 / 0.04, 0.56 / 0.19)."
    )
    assert suite.beside_floor_ratios({**case, "gemm_beside_gflops": []}, "train") == (
        pytest.approx(float("nan"), nan_ok=True),
        [],
    )
    with pytest.raises(SystemExit):
        suite.main(["--rounds", "0"])


class FakeLockstepProcess:
    """Stands in for a lockstep worker process: replies as `lockstep_worker` would, without
    timing anything. Each timed call takes as many ms as calls were made before it, by any
    worker; every start, read and request goes into ``log``."""

    log: list = []
    plans: dict = {}  # family: {impl: reps} (None: the process ends before it is ready)

    def __init__(self, target, spec_path, pin):
        self.family = target.split(":")[1]
        self.spec = json.loads(Path(spec_path).read_text())
        self.log.append(("start", self.family, self.spec["gemm"]))
        self.ended = self.plans[self.family] is None
        failing = (self.spec["case"] or {}).get("failing")
        self.failing = tuple(failing) if failing else None
        self.made = 0

    def read(self):
        self.log.append(("ready", self.family))
        if self.ended:
            return None
        ready = {}
        for impl in (self.spec["case"] or {}).get("impls", []):
            reps = self.plans[self.family][impl]
            if reps is None:
                ready[impl] = {"status": "error", "error": "RuntimeError: cannot build"}
                continue
            made = dict(first_call_s=0.5, estimate_ms=2.0, reps=reps, capped=False)
            ready[impl] = {"status": "ok", "forward": made, "train": dict(made)}
        info = {"family": self.family, **({"gemm_gflops": 100.0} if self.spec["gemm"] else {})}
        return {"info": info, "ready": ready}

    def ask(self, command):
        if self.ended:
            return None
        if command["op"] == "gemm":
            self.log.append(("gemm", self.family))
            return {"gflops": 10.0 * len(self.log)}
        if command["op"] == "end":
            return None
        self.log.append((self.family, command["impl"], command["metric"]))
        self.made += 1
        if self.failing == (command["impl"], self.made):
            return {"error": "RuntimeError: out of memory"}
        if self.failing == ("the process", self.made):
            self.ended = True
            return None
        calls = sum(1 for entry in self.log if len(entry) == 3 and entry[0] != "start")
        return {"ms": float(calls), "cpu_s": calls / 1e3 * 1.5}

    def wait_quiet(self):
        self.log.append(("quiet", self.family))

    def end(self):
        return 0


def test_lockstep_times_a_cases_frameworks_one_call_at_a_time_in_turn(suite, tmp_path, monkeypatch):
    monkeypatch.setattr(suite, "LockstepProcess", FakeLockstepProcess)
    log = FakeLockstepProcess.log = []
    FakeLockstepProcess.plans = {"torch": {"torch": 2}, "jaxrnn": {"jaxrnn": 3, "eager": 1}}
    work = {"key": "c1/lstm"}
    plans = {
        "torch": ("benchmarks.suite_torch", [dict(work, impls=["torch"])], False),
        "jaxrnn": ("benchmarks.suite_jax", [dict(work, impls=["jaxrnn", "eager"])], True),
    }
    workers = suite._time_families(plans, {"seed": 0}, tmp_path, False, rounds=2, lockstep=True)
    calls = [entry for entry in log if entry[0] in ("torch", "jaxrnn")]
    round_one = [
        # cycle 1 in order, cycle 2 reversed (eager has its one call), cycle 3 in order
        ("torch", "torch", "forward"), ("torch", "torch", "train"),
        ("jaxrnn", "jaxrnn", "forward"), ("jaxrnn", "jaxrnn", "train"),
        ("jaxrnn", "eager", "forward"), ("jaxrnn", "eager", "train"),
        ("jaxrnn", "jaxrnn", "train"), ("jaxrnn", "jaxrnn", "forward"),
        ("torch", "torch", "train"), ("torch", "torch", "forward"),
        ("jaxrnn", "jaxrnn", "forward"), ("jaxrnn", "jaxrnn", "train"),
    ]  # fmt: skip
    assert calls[:12] == round_one and len(calls) == 24
    # the second round starts the families the other way round, so cycles start with jaxrnn's
    assert calls[12] == ("jaxrnn", "jaxrnn", "forward") and calls[16] == (
        "torch",
        "torch",
        "forward",
    )
    # each worker starts once the one before is ready; GEMM beside the calls, from jaxrnn's
    starts = [entry for entry in log if entry[0] in ("start", "ready", "gemm")]
    assert starts[:5] == [
        ("start", "torch", False), ("ready", "torch"),
        ("start", "jaxrnn", True), ("ready", "jaxrnn"), ("gemm", "jaxrnn"),
    ]  # fmt: skip
    at = [index for index, entry in enumerate(log) if entry[0] in ("torch", "jaxrnn")]
    assert log[at[11] + 1 : at[11] + 3] == [("quiet", "jaxrnn"), ("gemm", "jaxrnn")]
    # every call after the first waits for the last caller's process to go quiet
    assert log[at[0] + 1 : at[0] + 3] == [("quiet", "torch"), round_one[1]]
    # times pooled over the rounds: jaxrnn's forward was calls 3, 8, 11, then 13, 22, 23
    forward = workers["jaxrnn"]["results"]["c1/lstm"]["jaxrnn"]["forward"]
    assert forward["times_ms"] == [3.0, 8.0, 11.0, 13.0, 22.0, 23.0] and forward["reps"] == 6
    assert forward["round_medians_ms"] == [8.0, 22.0] and forward["first_call_s"] == 0.5
    assert forward["cpu_per_wall"] == pytest.approx(1.5)
    assert workers["jaxrnn"]["info"]["gemm_gflops"] == 100.0
    assert "gemm_gflops" not in workers["torch"]["info"]
    beside = workers["jaxrnn"]["gemm_beside_gflops"]["c1/lstm"]
    assert len(beside) == 2 and all(before < after for before, after in beside)
    # a report says how its cases were timed, with one round or several
    report = suite_run(suite, "c1", 100.0, {"jaxrnn": (2.0, 6.0), "torch": (4.0, 5.0)})
    for rounds in (1, 2):
        suite.write_markdown({**report, "lockstep": True, "rounds": rounds}, tmp_path / "r.md")
        text = (tmp_path / "r.md").read_text()
        assert "each case's families side by side, in lockstep: one timed call at a time" in text
    suite.write_markdown({**report, "rounds": 2}, tmp_path / "r.md")
    assert "each case's families one after another" in (tmp_path / "r.md").read_text()


def test_lockstep_goes_on_past_an_implementation_or_a_process_that_fails(
    suite, tmp_path, monkeypatch
):
    monkeypatch.setattr(suite, "LockstepProcess", FakeLockstepProcess)
    FakeLockstepProcess.log = []
    FakeLockstepProcess.plans = {
        "numpy": {"numpy": 3},
        "torch": {"torch": 3},
        "jaxrnn": {"jaxrnn": 3, "eager": 3, "broken": None},
        "flax": None,
    }
    todo = {
        "numpy": ("m", [{"key": "c1/gru", "impls": ["numpy"]}], False),
        # torch's process ends at its 3rd call; eager's first call, jaxrnn's 3rd, fails
        "torch": ("m", [{"key": "c1/gru", "impls": ["torch"], "failing": ["the process", 3]}],
                  False),
        "jaxrnn": ("m", [{"key": "c1/gru", "impls": ["jaxrnn", "eager", "broken"],
                          "failing": ["eager", 3]}], False),
        "flax": ("m", [{"key": "c1/gru", "impls": ["flax"]}], False),
    }  # fmt: skip
    outputs = suite._time_case_lockstep(todo, {"seed": 0}, tmp_path, "0_0", False)
    results = {family: output[0]["results"]["c1/gru"] for family, output in outputs.items()}
    assert results["numpy"]["numpy"]["forward"]["reps"] == 3
    assert results["jaxrnn"]["jaxrnn"]["train"]["reps"] == 3
    assert results["torch"]["torch"] == {"status": "error", "error": "the worker process ended"}
    assert results["jaxrnn"]["eager"]["error"] == "RuntimeError: out of memory"
    assert results["jaxrnn"]["broken"] == {"status": "error", "error": "RuntimeError: cannot build"}
    assert results["flax"]["flax"]["error"] == "the worker process ended before it was ready"
    assert all(output[1] == 0 for output in outputs.values())
    # jaxrnn's worker measured the GEMM rate before the first call and after the last
    assert [entry for entry in FakeLockstepProcess.log if entry[0] == "gemm"] == [
        ("gemm", "jaxrnn")
    ] * 2
    assert len(outputs["jaxrnn"][0]["gemm_beside_gflops"]["c1/gru"]) == 2
    assert "gemm_beside_gflops" not in outputs["numpy"][0]


def test_the_lockstep_worker_times_what_it_is_asked(suite, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))  # the worker imports its framework's module by name
    import benchmarks.suite_numpy as suite_numpy

    def broken(model, weights):
        raise RuntimeError("cannot build")

    forward_calls, numpy_impl = [], suite_numpy.IMPLS["numpy"]

    def counted(model, weights):  # numpy's, counting its forward calls
        bench = numpy_impl.build(model, weights)
        return bench._replace(forward=lambda x: forward_calls.append(1) or bench.forward(x))

    impls = {
        **suite_numpy.IMPLS,
        "numpy": numpy_impl._replace(build=counted),
        "broken": numpy_impl._replace(build=broken),
    }
    monkeypatch.setattr(suite_numpy, "IMPLS", impls)
    case = {**suite.make_case("c1", "gru", (2, 5, 3, 4)).to_json(), "impls": ["numpy", "broken"]}
    spec = {"seed": 0, "policy": suite.POLICIES["smoke"]._asdict(), "case": case, "gemm": False}
    commands = [
        json.dumps({"op": "call", "impl": "numpy", "metric": "train"}),
        json.dumps({"op": "call", "impl": "numpy", "metric": "forward"}),
        json.dumps({"op": "end"}),
        json.dumps({"op": "call", "impl": "numpy", "metric": "forward"}),  # never read
    ]
    replies = []
    suite.lockstep_worker("benchmarks.suite_numpy:numpy", spec, commands, replies.append)
    hello, *calls = replies
    assert hello["info"]["family"] == "numpy" and "gemm_gflops" not in hello["info"]
    assert hello["ready"]["broken"] == {"status": "error", "error": "RuntimeError: cannot build"}
    made = hello["ready"]["numpy"]["train"]
    assert made["reps"] == 3 and made["capped"] is False and made["first_call_s"] > 0
    assert len(calls) == 2 and all(reply["ms"] > 0 and reply["cpu_s"] >= 0 for reply in calls)
    # forward: the first call and the warm-up, then an untimed call before the timed one
    assert len(forward_calls) == 4


def test_runs_of_one_configuration_each_merge_into_one_report(suite, tmp_path):
    c1 = suite_run(suite, "c1", 100.0, {"jaxrnn": (2.0, 6.0), "torch": (4.0, 5.0)}, beside=[90, 80])
    bi = suite_run(suite, "bi", 200.0, {"jaxrnn": (3.0, 9.0), "torch": (6.0, 12.0)})
    assert c1["cases"][0]["gemm_beside_gflops"] == [[90, 80]] and "gemm_beside_gflops" not in bi
    assert "gemm_beside_gflops" not in c1["workers"]["jaxrnn"]
    merged = suite.merge_reports([c1, bi])
    assert [case["config"] for case in merged["cases"]] == ["c1", "bi"]
    # every floor at the best rate of either run: c1's halves, bi's stays
    assert merged["best_gemm_gflops"] == 200.0
    c1_case, bi_case = merged["cases"]
    assert c1_case["floor_train_ms"] == pytest.approx(c1["cases"][0]["floor_train_ms"] / 2)
    assert bi_case["floor_forward_ms"] == pytest.approx(bi["cases"][0]["floor_forward_ms"])
    assert c1_case["fastest_peer_train_ms"] == 5.0 and bi_case["fastest_peer_train_ms"] == 12.0
    assert merged["wall_s"] == 120.0 and merged["workers"]["torch"]["wall_s"] == 40.0
    assert merged["merged_runs"] == 2
    assert c1["cases"][0]["floor_train_ms"] > c1_case["floor_train_ms"]  # the runs stay as read
    suite.write_markdown(merged, tmp_path / "suite_cpu.md")
    text = (tmp_path / "suite_cpu.md").read_text()
    assert "2 runs one after the other, together 2.0 min" in text
    assert "## c1: B=4" in text and "## bi: B=4" in text
    assert "Floor = FLOPs / 200.0 GFLOP/s" in text
    # c1's floor ratio at the rate beside it, 90 GFLOP/s, below c1's table alone
    gflop = c1["cases"][0]["forward_flops"] / 1e9, c1["cases"][0]["train_flops"] / 1e9
    ratios = f"{2.0 * 90 / gflop[0] / 1e3:.2f} / {6.0 * 90 / gflop[1] / 1e3:.2f}"
    beside_lines = [line for line in text.splitlines() if "measured beside its calls" in line]
    assert beside_lines == [
        "jaxrnn ÷ the floor at the GEMM rate measured beside its calls (before–after), "
        f"forward / train: lstm {ratios} (90–80 GFLOP/s)."
    ]
    assert text.index(beside_lines[0]) < text.index("## bi")
    # a third run merges onto the two, and counts them
    c2 = suite_run(suite, "c2", 150.0, {"jaxrnn": (1.0, 2.0), "torch": (1.5, 3.0)})
    assert suite.merge_reports([merged, c2])["merged_runs"] == 3
    with pytest.raises(ValueError, match="two runs both hold c1/lstm"):
        suite.merge_reports([c1, merged])
    gpu = suite_run(suite, "c3", 100.0, {"jaxrnn": (1.0, 2.0)}, backend="gpu")
    with pytest.raises(ValueError, match="the runs differ in backend: 'cpu' and 'gpu'"):
        suite.merge_reports([c1, gpu])
    flagged = {**bi, "machine": {**bi["machine"], "xla_flags": "--xla_cpu_enable_fast_math=true"}}
    with pytest.raises(ValueError, match="the runs differ in xla_flags: '.*' and '--xla_cpu_ena"):
        suite.merge_reports([c1, flagged])
    with pytest.raises(ValueError, match="the runs differ in rounds: 1 and 2"):
        suite.merge_reports([c1, {**bi, "rounds": 2}])
    with pytest.raises(ValueError, match="the runs differ in lockstep: False and True"):
        suite.merge_reports([c1, {**bi, "lockstep": True}])
    assert suite.merge_reports([c1, {k: v for k, v in bi.items() if k != "lockstep"}])
    # on the command line, a one-line message that names the flag
    (tmp_path / "c1.json").write_text(json.dumps(c1))
    missing = tmp_path / "absent.json"
    with pytest.raises(SystemExit, match=rf"--merge: .*No such file.*{missing.name}"):
        suite.main(["--merge", str(tmp_path / "c1.json"), str(missing), "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="--merge: merge_reports: two runs both hold c1/lstm"):
        suite.main(["--merge", *[str(tmp_path / "c1.json")] * 2, "--out", str(tmp_path)])


def test_a_report_says_which_allocator_settings_and_xla_flags_its_processes_ran_with(
    suite, tmp_path, monkeypatch
):
    for name in (*suite.ALLOCATOR_VARIABLES, "XLA_FLAGS"):
        monkeypatch.delenv(name, raising=False)
    plain = suite_run(suite, "c1", 100.0, {"jaxrnn": (2.0, 6.0), "torch": (4.0, 5.0)})
    monkeypatch.setenv("MALLOC_ARENA_MAX", "1")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.mmap_max=0")
    monkeypatch.setenv("XLA_FLAGS", " --xla_multiheap_size_constraint_per_heap=30000000 ")
    tuned = suite_run(suite, "c1", 100.0, {"jaxrnn": (2.0, 6.0), "torch": (4.0, 5.0)})
    lines = []
    for report in (plain, tuned):
        suite.write_markdown(report, tmp_path / "suite_cpu.md")
        text = (tmp_path / "suite_cpu.md").read_text()
        lines += [line for line in text.splitlines() if line.startswith(("- Allocator:", "- XLA"))]
    assert lines == [
        "- Allocator: the C library's defaults, every framework's alike.",
        "- XLA flags (JAX's processes): none.",
        "- Allocator: `GLIBC_TUNABLES=glibc.malloc.mmap_max=0`, `MALLOC_ARENA_MAX=1`, every "
        "framework's alike.",
        "- XLA flags (JAX's processes): `--xla_multiheap_size_constraint_per_heap=30000000`.",
    ]
    del tuned["machine"]["xla_flags"]  # a report from before the flags were recorded
    suite.write_markdown(tuned, tmp_path / "suite_cpu.md")
    assert "- XLA flags" not in (tmp_path / "suite_cpu.md").read_text()


@pytest.mark.parametrize("framework", ["jaxrnn", "torch"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_bfloat16_benchmark_measures_every_variant_of_one_function(framework, cell):
    bf16_products = load_benchmark("bf16_products")
    case = getattr(bf16_products, f"{framework}_case")
    result = case(cell, (5, 6, 3, 8), rounds=1)
    variants = list(bf16_products.VARIANTS)
    if framework == "jaxrnn":
        variants.append("bfloat16 arrays, XLA")
    assert list(result["seconds"]) == [
        f"{v} {mode}" for v in variants for mode in ("forward", "train")
    ]
    assert all(seconds > 0 for seconds in result["seconds"].values())
    assert list(result["errors"]) == variants[1:]
    for variant, error in result["errors"].items():
        # bfloat16 keeps 8 significant bits: within a few percent. Only the arrays are rounded
        # where the CPU has no bfloat16 instructions, and jaxrnn's products of float32 stay so.
        assert 0 <= error["outputs"] < 0.05, variant
        assert 0 <= error["gradients"] < 0.1, variant
    # Rounded parameters and inputs differ from the float32 ones whatever the CPU.
    assert result["errors"]["bfloat16 arrays"]["outputs"] > 1e-4


@pytest.mark.parametrize("framework", ["native", "scan", "torch"])
def test_the_course_gru_benchmark_times_every_variant(framework, tmp_path):
    course_gru = load_benchmark("course_gru")
    sizes = {"tiny": (5, 6, 3, 8)}
    course_gru.CONFIGS.update(sizes)
    out = tmp_path / "worker.json"
    course_gru.run_worker("tiny", framework, 1, out)
    result = json.loads(out.read_text())
    variants = [v for v in course_gru.VARIANTS if v.endswith(framework)]
    assert list(result["seconds"]) == [f"{v} {m}" for v in variants for m in ("forward", "train")]
    assert all(seconds > 0 for seconds in result["seconds"].values())
    if framework != "torch":  # the native kernel against the scan, both float32
        assert 0 <= result["errors"]["outputs"] < 1e-5
        assert 0 <= result["errors"]["gradients"] < 1e-5


@pytest.mark.parametrize("config", ["c1", "bi", "cl"])
def test_the_suites_cudnn_lstm_peer_hands_pytorchs_weights_over_in_cudnns_order(
    config, monkeypatch
):
    # jax.experimental.rnn.lstm runs on a GPU only; its reference implementation reads the same
    # flat weights, so on a CPU the peer is checked against PyTorch through it, by the suite's
    # own check (outputs and every parameter's gradient).
    monkeypatch.syspath_prepend(str(ROOT))
    import jax
    from jax.experimental import rnn

    from benchmarks import suite, suite_jax, suite_torch

    def lstm_reference(xs, h0, c0, flat, lengths, input_size, hidden_size, layers, dropout, bi):
        unpacked = rnn.unpack_lstm_weights(flat, input_size, hidden_size, layers, bi)
        return rnn.lstm_ref(
            xs, h0, c0, *unpacked, lengths, input_size, hidden_size, layers, dropout, bi
        )

    case = suite.make_case(config, "lstm", (4, 6, 3, 5))
    weights = suite.make_weights(case)
    xs = suite.make_input(case, np.random.default_rng(0))
    reference = suite_torch.reference(case.model, weights, xs)
    build = functools.partial(suite_jax.build_jax_rnn, lstm=lstm_reference)
    entry, _, _ = suite._check(suite.Impl("jax", build), case.model, weights, xs, reference)
    assert entry["status"] == "ok", entry
    # In a suite run it is a peer where cuDNN is, and absent elsewhere.
    peer = suite_jax.IMPLS["jax.experimental.rnn"]
    assert peer.supports(case.model) == (jax.default_backend() == "gpu")


def test_a_benchmark_refuses_a_jaxrnn_whose_kernels_did_not_load(shakespeare_quality, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    import benchmarks
    from jaxrnn import _native

    monkeypatch.setattr(benchmarks.sys, "platform", "linux")
    monkeypatch.setattr(benchmarks.platform, "machine", lambda: "x86_64")
    assert _native.available()  # the suite runs the wheel, kernels included
    assert benchmarks.require_native_kernels() is None
    assert benchmarks.kernels_stamp().endswith("native kernels loaded")

    # A checkout never built: its jaxrnn would time the scan fallback, silently.
    monkeypatch.setattr(_native, "_load", lambda: "the native kernel was not built")
    with pytest.raises(SystemExit) as stopped:
        shakespeare_quality.main(["--input", "unused.txt", "--minutes", "1"])
    message = str(stopped.value)
    assert f"jaxrnn from {Path(jaxrnn.__file__).parent}, no native kernels: " in message
    assert "the native kernel was not built" in message
    assert "lax.scan fallback" in message and "make bench" in message

    # Where jaxrnn builds no kernels at all, the benchmark times what there is.
    monkeypatch.setattr(benchmarks.platform, "machine", lambda: "aarch64")
    assert benchmarks.require_native_kernels() is None


def test_the_small_calls_benchmark_times_both_paths_and_reports_them(tmp_path, monkeypatch):
    from jaxrnn import _native

    small_calls = load_benchmark("small_calls")
    monkeypatch.setattr(small_calls, "BUDGET_SECONDS", 0.01)
    monkeypatch.setattr(small_calls, "PAUSES", 1)
    monkeypatch.setattr(small_calls, "CELLS", ("lstm", "gru_before"))
    monkeypatch.setenv("JAXRNN_SMALL_CALLS", "caller")  # restored after the workers set it
    sizes = [[2, 3, 2, 4], [16, 32, 16, 64]]  # below and above the 4 MFLOP threshold
    measured = {}
    for setting in small_calls.SETTINGS:
        small_calls.run_worker(setting, sizes, tmp_path / "worker.json")
        assert os.environ["JAXRNN_SMALL_CALLS"] == setting
        measured[setting] = json.loads((tmp_path / "worker.json").read_text())
    slower = {
        s: {c: {m: 3 * t for m, t in v.items()} for c, v in r.items()} for s, r in measured.items()
    }
    rounds = [measured, slower, measured]
    cases = [f"{c} {'x'.join(map(str, s))}" for c in small_calls.CELLS for s in sizes]
    for measured in rounds:
        for setting in small_calls.SETTINGS:
            assert list(measured[setting]) == cases
            for case in cases:
                assert list(measured[setting][case]) == list(small_calls.MEASURES)
                assert all(0 < seconds < 5 for seconds in measured[setting][case].values())
    pooled = small_calls.pooled(rounds)
    case, measure = cases[0], small_calls.MEASURES[0]
    assert pooled["team"][case][measure] == measured["team"][case][measure]  # the median round
    # The tiny LSTM is below the threshold, the larger one above it, as the kernels count.
    assert small_calls.forward_flops("lstm", (2, 3, 2, 4)) < small_calls.THRESHOLD_FLOPS
    assert small_calls.forward_flops("lstm", (16, 32, 16, 64)) > small_calls.THRESHOLD_FLOPS
    assert "JAXRNN_SMALL_CALLS" in _native.__doc__ and "4 million" in _native.__doc__
    report = {"date": "d", "machine": {"cpu": "cpu", "cpu_count": 2}, "versions": {}}
    report.update(rounds=2, pooled=pooled)
    small_calls.write_markdown(report, tmp_path / "small.md")
    small_calls.write_chart(report, tmp_path / "small.png")
    table = (tmp_path / "small.md").read_text()
    assert "| lstm | 2·3·2·4 | 0.00 | alone |" in table
    assert "| lstm | 16·32·16·64 | 20.97 | team (both) |" in table
    assert (tmp_path / "small.png").stat().st_size > 10_000


def test_the_round_trip_probe_measures_each_window_and_splits_near_from_far():
    core_round_trip = load_benchmark("core_round_trip")
    cores = sorted(os.sched_getaffinity(0))
    measured = core_round_trip.measure((cores[0], cores[-1]), 0.2, True, window=0.05)
    assert len(measured["windows"]) == 2
    for window in measured["windows"]:
        assert 1 < window["round_trip_ns"] < 1e6  # a cache line's trip, not a sleep
        assert window["matmul_gflops"] > 0.1
    windows = [
        {"round_trip_ns": 70.0, "matmul_gflops": 200.0},
        {"round_trip_ns": 380.0, "matmul_gflops": 170.0},
        {"round_trip_ns": 66.0, "matmul_gflops": 196.0},
    ]
    assert core_round_trip.summary(windows, 150.0) == {
        "near": {"windows": 2, "round_trip_ns": 68.0, "matmul_gflops": 198.0},
        "far": {"windows": 1, "round_trip_ns": 380.0, "matmul_gflops": 170.0},
    }
    with pytest.raises(SystemExit):
        core_round_trip.main(["--cores", "0,0"])


def test_the_shakespeare_step_benchmark_times_the_step_its_gradients_and_no_dropout(
    tmp_path, monkeypatch
):
    monkeypatch.syspath_prepend(str(ROOT))  # it reads the model and the floor from its sibling
    shakespeare_step = load_benchmark("shakespeare_step")
    text = (ROOT / "jaxrnn" / "data" / "shakespeare.txt").read_text()[:20_000]
    calls = shakespeare_step.build(8, text)
    assert list(calls) == list(shakespeare_step.VARIANTS)
    # The same loss, parameters and dropout key: the step's loss is the gradients' call's, and
    # the step without dropout computes another.
    _, _, metrics, _ = calls["step"]()
    (loss, _), grads = calls["gradients"]()
    _, _, plain, _ = calls["no dropout"]()
    assert float(metrics.loss) == pytest.approx(float(loss), rel=1e-6)
    assert float(plain.loss) != pytest.approx(float(loss), rel=1e-6)
    assert float(metrics.grad_norm) == pytest.approx(float(optax.tree.norm(grads)), rel=1e-5)
    source = tmp_path / "input.txt"
    source.write_text(text)
    args = ["--input", str(source), "--hidden-size", "8", "--rounds", "2", "--steps", "1"]
    report = shakespeare_step.main([*args, "--out", str(tmp_path)])
    assert json.loads((tmp_path / "shakespeare_step.json").read_text()) == report
    assert report["floor_ms"] == pytest.approx(
        shakespeare_step.training_flops(8) / (max(report["matmul_gflops"]) * 1e6), abs=0.01
    )
    for name in shakespeare_step.VARIANTS:
        assert len(report["round_ms"][name]) == 2 and all(ms > 0 for ms in report["round_ms"][name])
        ratio = report["median_ms"][name] / report["floor_ms"]
        assert report["over_floor"][name] == pytest.approx(ratio, rel=0.02)
    median = report["median_ms"]
    assert report["update_ms"] == pytest.approx(median["step"] - median["gradients"], abs=0.02)
