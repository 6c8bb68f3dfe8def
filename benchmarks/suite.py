"""The benchmark suite: LSTM and GRU forward and training-step time, jaxrnn against its peers.

    python -m benchmarks [--quick | --full] [--configs c1,c2,c3,bi,cl] [--cells lstm,gru]
                         [--out benchmarks/results] [--pin] [--rounds N] [--lockstep]
    python -m benchmarks --merge RUN1/suite_gpu.json RUN2/suite_gpu.json ... [--out DIR]

For each configuration (batch B, length T, input D, hidden H) and cell it times, side by side,

- forward: the whole sequence from a zero state, all hidden states (B, T, H) returned;
- train: forward and backward of the sum of all hidden states, gradients for every parameter, no
  optimizer update;

for every implementation in the registry: jaxrnn's variants (``suite_jax.JAXRNN_VARIANTS``), flax
linen, equinox, PyTorch, a numpy loop and, on a GPU, cuDNN's LSTM through
``jax.experimental.rnn`` (``IMPLS`` in ``suite_jax``, ``suite_torch`` and ``suite_numpy``). "bi"
is a bidirectional 2-layer LSTM on c1's sizes; "cl" is c1's sizes as a right-padded batch, each
example with its own length (from T/4 to T, drawn once from the seed): outputs past an example's
length are zeros and the loss sums the valid ones, so every
implementation computes the same function whether it skips the padded steps (jaxrnn's
``lengths``, PyTorch's packed sequences, flax's ``seq_lengths``) or runs them and masks.

Method:

1. A numerics process imports every framework and checks, before any timing, that every
   implementation computes the same function as PyTorch in float64: the same weights (PyTorch
   layout, uniform in ±1/√H, from a seeded numpy generator) and inputs (standard normal), outputs
   within 1e-4 (max abs) and every gradient within 1e-4 of the largest entry of that gradient.
   An implementation that fails is not timed.
2. Each framework family is then timed in worker processes of its own, a fresh one for each
   case (torch never shares a process with XLA's thread pool, and no case inherits the state
   another left), with ``--pin`` under ``taskset -c 0``. The cases run one after another, each
   case's families one after another, so that the times a ratio compares are taken seconds
   apart, not minutes, on a machine whose speed drifts; ``--rounds N`` does it N times, the
   families' order reversed in every other round, and pools each case's timed calls (the report
   gives each round's ratio too). With ``--lockstep`` a case's families run side by side
   instead, each in a process of its own, one timed call at a time: every implementation's
   forward and train in turn, the order reversed in every other cycle, each timed call after an
   untimed one of the same function (its caches warm, as in a run of calls) and once the process
   that made the last call has gone quiet, so that every implementation of a case is timed
   through the same seconds. Per case: the first call
   (trace + compile + one run) is reported as compile time, one more call is a warm-up, then the
   median, min and max of repeated calls, each on a fresh random input, waiting for every output
   (``jax.block_until_ready`` on the loss and the whole gradient pytree).
3. The GEMM floor is FLOPs / the best float32 matmul rate measured in the run (numpy and jax,
   2048³), with forward FLOPs 2·B·T·(D_in + H)·G·H summed over layers and directions (G = 4 for
   the LSTM, 3 for the GRU; Σ lengths in place of B·T for "cl") and train FLOPs 3 × forward less
   the first layer's dL/dxs (the inputs are data: no implementation is asked for their gradient).
   jaxrnn's processes measure the rate again (XLA's matmul, best of 3) just before and just
   after each case's calls, and the report gives jaxrnn's ratio to the floor at the faster of
   the two as well: on a shared machine whose speed drifts, that floor moves with it.

Writes ``suite_cpu.md``, ``suite_cpu.json`` with every raw number, and one chart
``suite_<config>.png`` per configuration to ``--out`` (``suite_gpu.md``, ``suite_gpu.json`` and
``suite_gpu_<config>.png`` when JAX's backend is a GPU; PyTorch then runs on CUDA if it can).
``--merge`` writes the same files for several runs' reports together (`merge_reports`): one run
per configuration, say, where each has a time limit of its own (``benchmarks/gpu_checks.sh``).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import importlib.metadata
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from benchmarks.suite_types import Impl, Model

ROOT = Path(__file__).resolve().parents[1]

CONFIGS = {  # name: (B, T, D, H)
    "c1": (32, 128, 64, 256),
    "c2": (1, 512, 64, 128),  # latency: one sequence
    "c3": (128, 64, 128, 512),
    "bi": (32, 128, 64, 256),  # c1's sizes, bidirectional 2-layer LSTM
    "cl": (32, 128, 64, 256),  # c1's sizes, a right-padded batch of lengths T/4 … T
}
SMOKE_CONFIGS = {
    "c1": (4, 16, 8, 16),
    "c2": (1, 32, 8, 16),
    "c3": (8, 8, 16, 32),
    "bi": (4, 16, 8, 16),
    "cl": (4, 16, 8, 16),
}
QUICK_CONFIGS = ("c1", "c2")
CELLS = ("lstm", "gru")
METRICS = ("forward", "train")  # what is timed of each implementation
GATES = {"lstm": 4, "gru": 3}
TOLERANCE = 1e-4
JAX_REFERENCE = "jaxrnn"  # also compared against, for a check against jax.grad
SEED = 0
# The modules that hold the implementations, each importing only its own framework.
FAMILY_MODULES = ("benchmarks.suite_numpy", "benchmarks.suite_torch", "benchmarks.suite_jax")
GEMM_FAMILIES = ("numpy", "jaxrnn")  # the workers that also measure the matmul rate
BESIDE_FAMILY = "jaxrnn"  # its workers measure the matmul rate again beside each case
BESIDE_REPEATS = 3


# ----------------------------------------------------------------------------------------- types


class Case(NamedTuple):
    config: str
    cell: str
    sizes: tuple[int, int, int, int]  # (B, T, D, H)
    model: Model

    @property
    def key(self) -> str:
        return f"{self.config}/{self.cell}"

    def to_json(self) -> dict:
        return {"config": self.config, "cell": self.cell, "sizes": list(self.sizes)}

    @classmethod
    def from_json(cls, data: dict) -> Case:
        return make_case(data["config"], data["cell"], tuple(data["sizes"]))


def make_case(config: str, cell: str, sizes: tuple[int, ...]) -> Case:
    if config == "bi":
        model = Model("lstm", 2, True)
    elif config == "cl":
        model = Model(cell, lengths=sequence_lengths(sizes[0], sizes[1]))
    else:
        model = Model(cell)
    return Case(config, cell, tuple(sizes), model)


def sequence_lengths(batch: int, n_steps: int) -> tuple[int, ...]:
    """The "cl" configuration's lengths: uniform in [T/4, T], the first example full, the same in
    every process (drawn from the suite's seed)."""
    rng = np.random.default_rng([SEED, zlib.crc32(b"lengths")])
    lengths = rng.integers(max(1, n_steps // 4), n_steps + 1, batch)
    lengths[0] = n_steps
    return tuple(int(n) for n in lengths)


class Policy(NamedTuple):
    """How many timed calls: ``min_reps`` to ``max_reps``, aiming at ``target_s`` in all."""

    min_reps: int
    max_reps: int
    target_s: float
    cap_s: float  # time budget per function of a ``capped`` implementation

    def reps(self, estimate_s: float, capped: bool) -> tuple[int, bool]:
        n = self.min_reps
        if self.target_s > 0:
            n = min(self.max_reps, max(self.min_reps, int(self.target_s / max(estimate_s, 1e-9))))
        if capped and n * estimate_s > self.cap_s:
            return max(1, int(self.cap_s / estimate_s)), True
        return n, False


POLICIES = {
    "smoke": Policy(3, 3, 0.0, 2.0),
    "quick": Policy(7, 7, 0.0, 4.0),
    "full": Policy(7, 20, 1.5, 30.0),
}


# ------------------------------------------------------------------------------ weights and data


def make_weights(case: Case, seed: int = SEED) -> dict[str, np.ndarray]:
    """Float32 weights in PyTorch's layout, uniform in ±1/√H, biases included (never zeros)."""
    _, _, input_size, hidden_size = case.sizes
    gates = GATES[case.model.cell]
    rng = np.random.default_rng([seed, zlib.crc32(case.key.encode())])
    bound = 1.0 / math.sqrt(hidden_size)
    weights = {}
    for layer in range(case.model.layers):
        n_in = case.model.input_size(layer, input_size, hidden_size)
        for suffix, _ in case.model.directions(layer):
            shapes = {
                "weight_ih": (gates * hidden_size, n_in),
                "weight_hh": (gates * hidden_size, hidden_size),
                "bias_ih": (gates * hidden_size,),
                "bias_hh": (gates * hidden_size,),
            }
            for name, shape in shapes.items():
                weights[name + suffix] = rng.uniform(-bound, bound, shape).astype(np.float32)
    return weights


def make_input(case: Case, rng: np.random.Generator) -> np.ndarray:
    batch, n_steps, input_size, _ = case.sizes
    return rng.standard_normal((batch, n_steps, input_size), dtype=np.float32)


def forward_flops(case: Case) -> float:
    """2·B·T·(D_in + H)·G·H, summed over layers and directions (matmuls only); with lengths, the
    valid steps Σ lengths in place of B·T."""
    batch, n_steps, input_size, hidden_size = case.sizes
    steps = batch * n_steps if case.model.lengths is None else sum(case.model.lengths)
    total = 0
    for layer in range(case.model.layers):
        n_in = case.model.input_size(layer, input_size, hidden_size)
        per_direction = 2 * steps * (n_in + hidden_size) * GATES[case.model.cell]
        total += per_direction * hidden_size * len(case.model.directions(layer))
    return float(total)


def train_flops(case: Case) -> float:
    """The products a training step needs: the forward's, dL/dW's (as many) and dL/d(inputs)'s
    (as many again), less the first layer's dL/dxs, 2·B·T·D·G·H a direction, since the inputs
    are data and no implementation is asked for their gradient."""
    batch, n_steps, input_size, hidden_size = case.sizes
    steps = batch * n_steps if case.model.lengths is None else sum(case.model.lengths)
    first_layer_inputs = (
        2
        * steps
        * input_size
        * GATES[case.model.cell]
        * hidden_size
        * len(case.model.directions(0))
    )
    return 3 * forward_flops(case) - first_layer_inputs


# ---------------------------------------------------------------------------------------- timing


def _timer(fn, sync) -> Callable[[Any], float]:
    """``call(x)``: seconds from calling ``fn(x)`` until ``sync`` has its result."""

    def call(x) -> float:
        start = time.perf_counter()
        sync(fn(x))
        return time.perf_counter() - start

    return call


def _warm_up(call, inputs: list, policy: Policy, capped: bool) -> tuple[float, float]:
    """The first call's seconds (trace and compile included) and a call's, estimated by one
    warm-up call (for a slow uncompiled loop, by the first call)."""
    first = call(inputs[0])
    if capped and first * (policy.min_reps + 1) > policy.cap_s:
        return first, first  # a slow uncompiled loop: its first call is estimate enough
    return first, call(inputs[1])


def _timing(first: float, estimate: float, times_ms: list, capped: bool, cpu_per_wall) -> dict:
    return {
        "first_call_s": first,
        "estimate_ms": estimate * 1e3,
        "times_ms": times_ms,
        "median_ms": statistics.median(times_ms),
        "min_ms": min(times_ms),
        "max_ms": max(times_ms),
        "reps": len(times_ms),
        "capped": capped,
        "cpu_per_wall": cpu_per_wall,
    }


def measure(fn, sync, inputs: list, policy: Policy, capped: bool) -> dict:
    """First call, one warm-up call, then the timed calls, each on the next fresh input."""
    call = _timer(fn, sync)
    first, estimate = _warm_up(call, inputs, policy, capped)
    reps, was_capped = policy.reps(estimate, capped)
    cpu, wall = time.process_time(), time.perf_counter()
    times = [call(inputs[2 + k % (len(inputs) - 2)]) * 1e3 for k in range(reps)]
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return _timing(first, estimate, times, was_capped, cpu / wall if wall > 0 else float("nan"))


def _built(impl: Impl, case: Case, policy: Policy, rng: np.random.Generator) -> tuple:
    """``impl`` built for ``case`` and the fresh inputs its calls take (first call, warm-up, then
    the timed calls), each already in the framework's memory."""
    bench = impl.build(case.model, make_weights(case))
    inputs = [bench.to_input(make_input(case, rng)) for _ in range(policy.max_reps + 2)]
    for x in inputs:
        bench.sync(x)
    return bench, inputs


def _time_impl(impl: Impl, case: Case, policy: Policy, rng: np.random.Generator) -> dict:
    bench, inputs = _built(impl, case, policy, rng)
    forward = measure(bench.forward, bench.sync, inputs, policy, impl.capped)
    train = measure(bench.train, bench.sync, inputs, policy, impl.capped)
    return {"status": "ok", "forward": forward, "train": train}


def _load_impls(modules) -> dict[str, tuple[str, Impl]]:
    impls = {}
    for module in modules:
        for name, impl in module.IMPLS.items():
            impls[name] = (module.__name__, impl)
    return impls


def _start_worker(target: str, spec: dict) -> tuple:
    """A worker's start, ``target`` = "module:family": the family's module, set up for this
    process's cores, its info (with the GEMM rate where the spec asks for it), the timing policy
    and the family's own random generator."""
    module_name, family = target.split(":")
    module = importlib.import_module(module_name)
    affinity = sorted(os.sched_getaffinity(0))
    info = {"family": family, "affinity": affinity, **module.setup(len(affinity))}
    if spec["gemm"] and hasattr(module, "gemm_rate"):
        info["gemm_gflops"] = module.gemm_rate()
        print(f"[{family}] GEMM 2048^3: {info['gemm_gflops']:.1f} GFLOP/s", flush=True)
    rng = np.random.default_rng([spec["seed"], zlib.crc32(family.encode())])
    return family, module, info, Policy(**spec["policy"]), rng


def run_worker(target: str, spec_path: Path, result_path: Path) -> None:
    """Times one family's implementations on the cases of the spec; writes results as it goes."""
    spec = json.loads(spec_path.read_text())
    family, module, info, policy, rng = _start_worker(target, spec)
    output = {"info": info, "results": {}}
    beside = spec.get("gemm_beside") and hasattr(module, "gemm_rate")
    for case_data in spec["cases"]:
        case = Case.from_json(case_data)
        if beside:
            rates = output.setdefault("gemm_beside_gflops", {})
            rates[case.key] = [module.gemm_rate(repeats=BESIDE_REPEATS)]
        for name in case_data["impls"]:
            try:
                entry = _time_impl(module.IMPLS[name], case, policy, rng)
            except Exception as error:  # one broken implementation must not stop the rest
                entry = {"status": "error", "error": f"{type(error).__name__}: {error}"}
            output["results"].setdefault(case.key, {})[name] = entry
            result_path.write_text(json.dumps(output))
            print(f"[{family}] {case.key:9s} {name:28s} {_progress(entry)}", flush=True)
        if beside:
            rates[case.key].append(module.gemm_rate(repeats=BESIDE_REPEATS))
            print(f"[{family}] {case.key:9s} GEMM before / after: {_rates_text(rates[case.key])}")
    result_path.write_text(json.dumps(output))


def _rates_text(rates: list[float]) -> str:
    return " / ".join(f"{rate:.1f}" for rate in rates) + " GFLOP/s"


def _progress(entry: dict) -> str:
    if entry["status"] != "ok":
        return entry["status"] + " " + entry.get("error", "")
    fwd, trn = entry["forward"], entry["train"]
    return (
        f"fwd {format_ms(fwd['median_ms']):>8s} ms  train {format_ms(trn['median_ms']):>8s} ms  "
        f"first call {fwd['first_call_s']:.2f} / {trn['first_call_s']:.2f} s"
    )


# -------------------------------------------------------------------------------------- numerics


def run_numerics(spec_path: Path, result_path: Path) -> None:
    """Every implementation against PyTorch float64, on the cases' own sizes and weights."""
    spec = json.loads(spec_path.read_text())
    modules = [importlib.import_module(name) for name in FAMILY_MODULES]
    affinity = sorted(os.sched_getaffinity(0))
    info = {}
    for module in modules:
        info.update(module.setup(len(affinity)))
    import jax

    from benchmarks import suite_torch

    backend = jax.default_backend()
    if backend != "cpu":  # checked at full float32 precision; GPUs default to TF32 matmuls
        jax.config.update("jax_default_matmul_precision", "highest")
        suite_torch.full_precision()
    impls = _load_impls(modules)
    rng = np.random.default_rng([spec["seed"], 1])
    results = {}
    for case_data in spec["cases"]:
        case = Case.from_json(case_data)
        weights = make_weights(case)
        x = make_input(case, rng)
        reference = suite_torch.reference(case.model, weights, x)
        computed = {}
        for name, (_, impl) in impls.items():
            if not impl.supports(case.model):
                continue
            entry, out, grads = _check(impl, case.model, weights, x, reference)
            results.setdefault(case.key, {})[name] = entry
            if out is not None:
                computed[name] = (out, grads)
            print(
                f"[numerics] {case.key:9s} {name:28s} {entry['status']:6s} "
                f"out {entry.get('max_abs_out', float('nan')):.1e}  "
                f"grad {entry.get('max_rel_grad', float('nan')):.1e} {entry.get('error', '')}",
                flush=True,
            )
        if JAX_REFERENCE in computed:  # and against autodiff in JAX (jax.grad of jaxrnn)
            for name, (out, grads) in computed.items():
                if name != JAX_REFERENCE:
                    diff = _compare(out, grads, *computed[JAX_REFERENCE])
                    results[case.key][name]["vs_jax_grad"] = diff[:2]
    output = {
        "backend": backend,
        "device_kind": jax.devices()[0].device_kind,
        "info": info,
        "impls": {
            name: {
                "module": module_name,
                "family": impl.family,
                "peer": impl.peer,
                "capped": impl.capped,
                "note": impl.note,
            }
            for name, (module_name, impl) in impls.items()
        },
        "results": results,
    }
    result_path.write_text(json.dumps(output))


def _compare(out, grads: dict, ref_out, ref_grads: dict) -> tuple[float, float, str]:
    """(max |Δ out|, max over parameters of max |Δ grad| / max |reference grad|, worst one)."""
    if out.shape != ref_out.shape:
        raise ValueError(f"outputs of shape {out.shape}, expected {ref_out.shape}")
    if set(grads) != set(ref_grads):
        raise ValueError(f"gradients for {sorted(grads)}, expected {sorted(ref_grads)}")
    max_abs_out = float(np.max(np.abs(np.asarray(out, np.float64) - ref_out)))
    rel = {
        name: float(np.max(np.abs(np.asarray(grads[name], np.float64) - ref)))
        / float(np.max(np.abs(ref)))
        for name, ref in ref_grads.items()
    }
    worst = max(rel, key=rel.get)
    return max_abs_out, rel[worst], worst


def _check(impl: Impl, model: Model, weights: dict, x: np.ndarray, reference) -> tuple:
    """(numerics entry, outputs, gradients) of one implementation against the reference."""
    try:
        bench = impl.build(model, weights)
        out = bench.output(bench.forward(bench.to_input(x)))
        grads = {k: np.asarray(g) for k, g in bench.grads(bench.train(bench.to_input(x))).items()}
        max_abs_out, max_rel_grad, worst = _compare(out, grads, *reference)
    except Exception as error:
        return {"status": "error", "error": f"{type(error).__name__}: {error}"}, None, None
    ok = max_abs_out <= TOLERANCE and max_rel_grad <= TOLERANCE
    entry = {
        "status": "ok" if ok else "FAILED",
        "max_abs_out": max_abs_out,
        "max_rel_grad": max_rel_grad,
        "worst_grad": worst,
    }
    return entry, out, grads


# ---------------------------------------------------------------------------------------- parent


def _time_families(
    plans: dict, spec: dict, tmp: Path, pin: bool, rounds: int, lockstep: bool = False
) -> dict:
    """Times each family's cases, ``plans[family] = (module, work, gemm)``, each case in a fresh
    worker process, case by case: a case's families one after another (their order reversed in
    every other round), so that the implementations compared on a case are timed within seconds
    of each other, not minutes apart, as the machine's speed drifts; with ``lockstep``, side by
    side instead, one call at a time (`_time_case_lockstep`). Over ``rounds`` rounds a case's
    timed calls are pooled (`pool_rounds`). A family's first worker also measures the GEMM
    rate, and the workers of `BESIDE_FAMILY` measure it again before and after each case's calls
    (``gemm_beside_gflops``: a list of [before, after] a round, by case). A case's times must
    not depend on the cases run before it: in one process, the C
    allocator's state after the other cases made the padded GRU's training step 1.5x slower
    (page faults on the buffers XLA hands the kernels; benchmarks/NOTES.md, 21)."""
    keys = list(dict.fromkeys(item["key"] for _, work, _ in plans.values() for item in work))
    timed: dict = {family: {} for family in plans}
    workers = {
        family: {"info": {}, "results": {}, "returncode": 0, "wall_s": 0.0} for family in plans
    }
    beside: dict = {}
    for round_index in range(rounds):
        order = list(plans) if round_index % 2 == 0 else list(reversed(plans))
        for key_index, key in enumerate(keys or [None]):
            todo = {}
            for family in order:
                module_name, work, gemm = plans[family]
                cases = [item for item in work if item["key"] == key]
                measure_gemm = gemm and round_index == 0 and not workers[family]["info"]
                if cases or measure_gemm:
                    todo[family] = (module_name, cases, measure_gemm)
            name = f"{round_index}_{key_index}"
            if lockstep:
                outputs = _time_case_lockstep(todo, spec, tmp, name, pin)
            else:
                outputs = {
                    family: _time_in_worker(family, *todo[family], spec, tmp, name, pin)
                    for family in todo
                }
            for family, (result, code, wall_s) in outputs.items():
                worker = workers[family]
                worker["returncode"] = worker["returncode"] or code
                worker["wall_s"] += wall_s
                worker["info"] = worker["info"] or result.get("info", {})
                for case_key, entries in result.get("results", {}).items():
                    for impl, entry in entries.items():
                        timed[family].setdefault((case_key, impl), []).append(entry)
                for case_key, rates in result.get("gemm_beside_gflops", {}).items():
                    beside.setdefault(case_key, []).append(rates)
    for family, worker in workers.items():
        for (case_key, impl), entries in timed[family].items():
            worker["results"].setdefault(case_key, {})[impl] = pool_rounds(entries)
    if BESIDE_FAMILY in workers:
        workers[BESIDE_FAMILY]["gemm_beside_gflops"] = beside
    return workers


def _time_in_worker(
    family: str, module_name: str, cases: list, gemm: bool, spec: dict, tmp: Path, name: str, pin
) -> tuple[dict, int, float]:
    """One family's ``cases`` timed in a worker process of its own (`run_worker`): its output,
    exit code and wall time."""
    start = time.perf_counter()
    spec_path, result_path = tmp / f"{family}_{name}_spec.json", tmp / f"{family}_{name}.json"
    spec_path.write_text(
        json.dumps({**spec, "cases": cases, "gemm": gemm, "gemm_beside": family == BESIDE_FAMILY})
    )
    code = _subprocess(
        ["--worker", f"{module_name}:{family}", str(spec_path), str(result_path)], pin
    )
    return _read_json(result_path), code, time.perf_counter() - start


def pool_rounds(entries: list[dict]) -> dict:
    """One implementation's timings of one case over the rounds that ran it: the timed calls of
    every round together (median, min, max and reps over all of them), each round's median kept
    as ``round_medians_ms``; compile time and the warm-up estimate from the first round. A round
    that did not end "ok" stands for them all."""
    failed = [entry for entry in entries if entry.get("status") != "ok"]
    if failed:
        return failed[0]
    pooled: dict = {"status": "ok"}
    for metric in METRICS:
        runs = [entry[metric] for entry in entries]
        times = [t for run in runs for t in run["times_ms"]]
        pooled[metric] = {
            **runs[0],
            "times_ms": times,
            "median_ms": statistics.median(times),
            "min_ms": min(times),
            "max_ms": max(times),
            "reps": len(times),
            "capped": any(run["capped"] for run in runs),
            "cpu_per_wall": statistics.fmean(run["cpu_per_wall"] for run in runs),
            "round_medians_ms": [run["median_ms"] for run in runs],
        }
    return pooled


# ---------------------------------------------------------------------------------------- lockstep

# A process that made a call goes on running for a while: GNU OpenMP's threads spin for some
# milliseconds after a parallel region, OpenBLAS's for about 2^28 cycles (0.1 s). The next call,
# in another process, waits until it is quiet: its threads ran less than QUIET_SHARE of a core
# over QUIET_WINDOW_S (at most QUIET_CAP_S), or LOCKSTEP_GAP_S where the system does not say.
# Without it, the native kernels' teams, which meet at every step, waited for a core that a
# numpy process's spinning threads held: calls of 0.1 ms took 4-48 ms.
QUIET_WINDOW_S, QUIET_SHARE, QUIET_CAP_S = 0.005, 0.05, 1.0
LOCKSTEP_GAP_S = 0.25


def lockstep_worker(target: str, spec: dict, commands, reply: Callable[[dict], None]) -> None:
    """One family's side of a case timed in lockstep (`_time_case_lockstep`): builds its
    implementations of ``spec["case"]`` (None: none, only the GEMM rate), makes each function's
    first call and warm-up call as `measure` does, and replies with the family's info and, by
    implementation, each metric's first call, estimate and timed calls to make (``reps``,
    ``capped``: `Policy.reps`). Then for each line of ``commands``, a JSON object, it replies:
    ``{"op": "call", "impl", "metric"}`` with one timed call's ``ms`` and ``cpu_s``, made after an
    untimed call of the same function on another input (none for a capped loop), so that the
    caches hold that function's data as in a run of its calls; ``{"op": "gemm"}`` with the
    matmul rate (``gflops``); ``{"op": "end"}`` ends it. A call that raises replies ``error``."""
    _, module, info, policy, rng = _start_worker(target, spec)
    ready, calls = {}, {}
    case = Case.from_json(spec["case"]) if spec["case"] else None
    for name in spec["case"]["impls"] if case else []:
        try:
            impl = module.IMPLS[name]
            bench, inputs = _built(impl, case, policy, rng)
            state: dict = {"status": "ok"}
            for metric in METRICS:
                call = _timer(getattr(bench, metric), bench.sync)
                first, estimate = _warm_up(call, inputs, policy, impl.capped)
                reps, capped = policy.reps(estimate, impl.capped)
                state[metric] = dict(
                    first_call_s=first, estimate_ms=estimate * 1e3, reps=reps, capped=capped
                )
                calls[name, metric] = (call, inputs[2:], impl.capped)
            ready[name] = state
        except Exception as error:  # one broken implementation must not stop the rest
            ready[name] = {"status": "error", "error": f"{type(error).__name__}: {error}"}
    reply({"info": info, "ready": ready})
    made = dict.fromkeys(calls, 0)
    for line in commands:
        command = json.loads(line)
        if command["op"] == "gemm":
            reply({"gflops": module.gemm_rate(repeats=BESIDE_REPEATS)})
        elif command["op"] == "call":
            key = (command["impl"], command["metric"])
            call, inputs, capped = calls[key]
            k, made[key] = made[key], made[key] + 1
            try:
                if not capped:
                    call(inputs[(k + 1) % len(inputs)])
                cpu = time.process_time()
                seconds = call(inputs[k % len(inputs)])
                reply({"ms": seconds * 1e3, "cpu_s": time.process_time() - cpu})
            except Exception as error:
                reply({"error": f"{type(error).__name__}: {error}"})
        else:
            return


def _run_lockstep_worker(target: str, spec_path: Path) -> None:
    """`lockstep_worker` on this process's stdin and stdout; whatever else the process writes
    to stdout (a library's messages) goes to stderr, so that the replies stay readable."""
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    def reply(message: dict) -> None:
        replies.write(json.dumps(message) + "\n")
        replies.flush()

    lockstep_worker(target, json.loads(spec_path.read_text()), sys.stdin, reply)


class LockstepProcess:
    """A lockstep worker process (`lockstep_worker`), asked and answered in JSON lines."""

    def __init__(self, target: str, spec_path: Path, pin: bool):
        self.process = subprocess.Popen(
            _command(["--lockstep-worker", target, str(spec_path)], pin),
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def read(self) -> dict | None:
        """Its next reply; None where it has ended."""
        line = self.process.stdout.readline()
        return json.loads(line) if line.strip() else None

    def ask(self, command: dict) -> dict | None:
        try:
            self.process.stdin.write(json.dumps(command) + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):
            return None
        return self.read()

    def end(self) -> int:
        self.ask({"op": "end"})
        return self.process.wait()

    def cpu_ns(self) -> int | None:
        """Nanoseconds its threads have run, from Linux's per-thread scheduler statistics;
        None where they cannot be read."""
        total, read = 0, False
        for path in Path(f"/proc/{self.process.pid}/task").glob("*/schedstat"):
            try:
                total += int(path.read_text().split()[0])
                read = True
            except (OSError, ValueError, IndexError):  # a thread that just ended
                continue
        return total if read else None

    def wait_quiet(self) -> None:
        """Returns once its threads have stopped running (QUIET_WINDOW_S, QUIET_SHARE,
        QUIET_CAP_S), or after LOCKSTEP_GAP_S where that cannot be read."""
        before, deadline = self.cpu_ns(), time.perf_counter() + QUIET_CAP_S
        if before is None:
            time.sleep(LOCKSTEP_GAP_S)
            return
        while time.perf_counter() < deadline:
            time.sleep(QUIET_WINDOW_S)
            after = self.cpu_ns()
            if after is None or after - before < QUIET_SHARE * QUIET_WINDOW_S * 1e9:
                return
            before = after


def _time_case_lockstep(todo: dict, spec: dict, tmp: Path, name: str, pin: bool) -> dict:
    """One case timed side by side, ``todo[family] = (module, [the case's work], gemm)``: a worker
    process for each family (`lockstep_worker`), started one after another so that no compilation
    overlaps another, then one timed call at a time, every implementation's forward and train in
    turn (the order reversed in every other cycle; each once the process that made the last has
    gone quiet, `LockstepProcess.wait_quiet`), until each has the calls its worker's estimate
    gives it. Every implementation is timed through the same minutes of a machine whose speed
    drifts, so their ratios drift less; each call is still warm, after one of its own. The
    BESIDE_FAMILY worker measures the GEMM rate just before the first timed call and just after
    the last. Returns, by family, the output `run_worker` would give (info, results by case and
    implementation, ``gemm_beside_gflops``), its exit code and the wall time of its own work."""
    processes, ready, outputs, wall = {}, {}, {}, {}
    for family, (module_name, cases, gemm) in todo.items():
        start = time.perf_counter()
        spec_path = tmp / f"{family}_{name}_lockstep.json"
        case = cases[0] if cases else None
        spec_path.write_text(json.dumps({**spec, "case": case, "gemm": gemm}))
        processes[family] = LockstepProcess(f"{module_name}:{family}", spec_path, pin)
        hello = processes[family].read() or {}
        ready[family] = hello.get("ready", {})
        outputs[family] = {"info": hello.get("info", {}), "results": {}}
        wall[family] = time.perf_counter() - start
        if case and not hello:
            ended = "the worker process ended before it was ready"
            ready[family] = {impl: {"status": "error", "error": ended} for impl in case["impls"]}
    key = next((cases[0]["key"] for _, cases, _ in todo.values() if cases), None)
    items = [
        (family, impl, metric)
        for family, states in ready.items()
        for impl, state in states.items()
        if state["status"] == "ok"
        for metric in METRICS
    ]
    times: dict = {item: [] for item in items}
    cpu: dict = {item: 0.0 for item in items}
    errors: dict = {}
    beside = processes.get(BESIDE_FAMILY) if key else None
    rates = [(beside.ask({"op": "gemm"}) or {}).get("gflops")] if beside else []

    def pending(item) -> bool:
        family, impl, metric = item
        wanted = ready[family][impl][metric]["reps"]
        return (family, impl) not in errors and len(times[item]) < wanted

    last = None  # the process that made the last call
    cycle = 0
    while any(pending(item) for item in items):
        turn = [item for item in items if pending(item)]
        for item in turn if cycle % 2 == 0 else turn[::-1]:
            family, impl, metric = item
            if not pending(item):
                continue
            if last is not None:
                last.wait_quiet()
            last = processes[family]
            start = time.perf_counter()
            answer = last.ask({"op": "call", "impl": impl, "metric": metric})
            wall[family] += time.perf_counter() - start
            if answer is None:
                for other in ready[family]:
                    errors.setdefault((family, other), "the worker process ended")
            elif "error" in answer:
                errors[family, impl] = answer["error"]
            else:
                times[item].append(answer["ms"])
                cpu[item] += answer["cpu_s"]
        cycle += 1
    if beside:
        if last is not None:
            last.wait_quiet()
        rates.append((beside.ask({"op": "gemm"}) or {}).get("gflops"))
    for family, (_, cases, _) in todo.items():
        code = processes[family].end()
        results = {}
        for impl, state in ready[family].items():
            if state["status"] != "ok":
                results[impl] = state
            elif (family, impl) in errors:
                results[impl] = {"status": "error", "error": errors[family, impl]}
            else:
                results[impl] = {"status": "ok"}
                for metric in METRICS:
                    made, calls = state[metric], times[family, impl, metric]
                    seconds = sum(calls) / 1e3
                    results[impl][metric] = _timing(
                        made["first_call_s"],
                        made["estimate_ms"] / 1e3,
                        calls,
                        made["capped"],
                        cpu[family, impl, metric] / seconds if seconds > 0 else float("nan"),
                    )
        for impl, entry in results.items():
            print(f"[{family}] {key:9s} {impl:28s} {_progress(entry)} (lockstep)", flush=True)
        if cases:
            outputs[family]["results"] = {key: results}
        if processes[family] is beside and None not in rates:
            outputs[family]["gemm_beside_gflops"] = {key: rates}
        outputs[family] = (outputs[family], code, wall[family])
    return outputs


def _command(args: list[str], pin: bool) -> list[str]:
    command = [sys.executable, "-m", "benchmarks", *args]
    return ["taskset", "-c", "0", *command] if pin else command


def _subprocess(args: list[str], pin: bool, env: dict | None = None) -> int:
    return subprocess.run(_command(args, pin), cwd=ROOT, env=env, check=False).returncode


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def run(args: argparse.Namespace) -> dict:
    mode = "smoke" if args.smoke else "full" if args.full else "quick"
    policy = POLICIES[mode]
    sizes = SMOKE_CONFIGS if args.smoke else CONFIGS
    configs = args.configs or (list(CONFIGS) if mode == "full" else list(QUICK_CONFIGS))
    cells = args.cells or list(CELLS)
    cases = [
        make_case(config, cell, sizes[config])
        for config in configs
        for cell in (["lstm"] if config == "bi" else cells)
        if config != "bi" or "lstm" in cells
    ]
    if "bi" in configs and "lstm" not in cells:
        print("skipping 'bi': it is a bidirectional LSTM and --cells has no lstm", flush=True)
    if not cases:
        raise SystemExit("nothing to run")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="jaxrnn-suite-") as tmp:
        tmp = Path(tmp)
        spec = {"seed": SEED, "policy": policy._asdict(), "cases": [c.to_json() for c in cases]}
        (tmp / "numerics_spec.json").write_text(json.dumps(spec))
        print(f"== numerics check ({len(cases)} cases)", flush=True)
        env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}  # torch may share a GPU
        _subprocess(
            ["--numerics", str(tmp / "numerics_spec.json"), str(tmp / "numerics.json")],
            args.pin,
            env,
        )
        numerics = _read_json(tmp / "numerics.json")
        if not numerics:
            raise SystemExit("the numerics check did not finish; see its output above")
        numerics["wall_s"] = time.perf_counter() - started

        families: dict[str, str] = {}
        for meta in numerics["impls"].values():
            families.setdefault(meta["family"], meta["module"])
        plans = {}
        for family, module_name in families.items():
            work = []
            for case in cases:
                checked = numerics["results"].get(case.key, {})
                names = [
                    name
                    for name, meta in numerics["impls"].items()
                    if meta["family"] == family and checked.get(name, {}).get("status") == "ok"
                ]
                if names:
                    work.append({**case.to_json(), "key": case.key, "impls": names})
            gemm = family in GEMM_FAMILIES
            if work or gemm:
                plans[family] = (module_name, work, gemm)
        pin_text = ", pinned to core 0" if args.pin else ""
        lockstep = getattr(args, "lockstep", False)
        print(
            f"== timing {', '.join(plans)}: a process for each case and family, case by case"
            f"{', in lockstep' if lockstep else ''}{pin_text}; "
            f"{args.rounds} round{'s' if args.rounds > 1 else ''}",
            flush=True,
        )
        workers = _time_families(plans, spec, tmp, args.pin, args.rounds, lockstep)
    return _assemble(args, mode, policy, cases, numerics, workers, time.perf_counter() - started)


def _best_rate(gemm: dict[str, float]) -> float:
    """The best of the GEMM rates measured (GFLOP/s by family), NaN if none was."""
    return max(gemm.values()) if gemm else float("nan")


def _floors(forward: float, train: float, rate: float) -> dict:
    """A case's GEMM floors, its forward and training FLOPs at ``rate`` GFLOP/s, in ms."""
    return {
        "floor_forward_ms": forward / (rate * 1e9) * 1e3,
        "floor_train_ms": train / (rate * 1e9) * 1e3,
    }


def _assemble(args, mode, policy, cases, numerics, workers, wall_s) -> dict:
    gemm = {
        family: worker["info"]["gemm_gflops"]
        for family, worker in workers.items()
        if "gemm_gflops" in worker.get("info", {})
    }
    best_rate = _best_rate(gemm)
    report_cases = []
    for case in cases:
        flops = forward_flops(case)
        entry = {
            **case.to_json(),
            "model": case.model._asdict(),
            "forward_flops": flops,
            "train_flops": train_flops(case),
            **_floors(flops, train_flops(case), best_rate),
            "impls": {},
        }
        for name, meta in numerics["impls"].items():
            check = numerics["results"].get(case.key, {}).get(name)
            if check is None:
                continue  # does not apply to this model
            timed = workers.get(meta["family"], {}).get("results", {}).get(case.key, {}).get(name)
            if check["status"] != "ok":
                status = check["status"]
            elif timed is None:
                status = "not timed (worker crashed)"
            else:
                status = timed["status"]
            entry["impls"][name] = {**meta, **(timed or {}), "status": status, "numerics": check}
        for metric in METRICS:
            peers = [
                r[metric]["median_ms"]
                for r in entry["impls"].values()
                if r["peer"] and r["status"] == "ok"
            ]
            entry[f"fastest_peer_{metric}_ms"] = min(peers) if peers else float("nan")
        beside = workers.get(BESIDE_FAMILY, {}).get("gemm_beside_gflops", {}).get(case.key)
        if beside:
            entry["gemm_beside_gflops"] = beside
        report_cases.append(entry)
    return {
        "mode": mode,
        "policy": policy._asdict(),
        "pinned": args.pin,
        "rounds": getattr(args, "rounds", 1),
        "lockstep": getattr(args, "lockstep", False),
        **report_stamp(),
        "backend": numerics["backend"],
        "device_kind": numerics["device_kind"],
        "framework_info": numerics["info"],
        "gemm_gflops": gemm,
        "best_gemm_gflops": best_rate,
        "wall_s": wall_s,
        "numerics_wall_s": numerics["wall_s"],
        "workers": {
            family: {k: v for k, v in worker.items() if k not in ("results", "gemm_beside_gflops")}
            for family, worker in workers.items()
        },
        "cases": report_cases,
    }


def machine_info() -> dict:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": model,
        "cpu_count": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "allocator": allocator_settings(),
        "xla_flags": os.environ.get("XLA_FLAGS", "").strip(),
    }


# The environment variables that change how glibc's malloc keeps or returns freed memory. Where
# freed pages go back to the system (a virtual machine may hand them on to its host), XLA's
# large temporaries are fresh memory at every call, and the first write to each page pays for it.
ALLOCATOR_VARIABLES = (
    "GLIBC_TUNABLES",
    "MALLOC_ARENA_MAX",
    "MALLOC_MMAP_MAX_",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "LD_PRELOAD",
)


def allocator_text(settings: dict) -> str:
    """`allocator_settings` in words, for a report."""
    if not settings:
        return "the C library's defaults"
    return ", ".join(f"`{name}={value}`" for name, value in settings.items())


def xla_flags_text(flags: str) -> str:
    """``XLA_FLAGS`` as a report names it. XLA:CPU gives a call's temporaries one allocation
    unless ``--xla_multiheap_size_constraint_per_heap`` splits them, and glibc maps any block over
    32 MB afresh at every call (NOTES section 35)."""
    return f"`{flags}`" if flags else "none"


def allocator_settings() -> dict:
    """The allocator settings of this process's environment (ALLOCATOR_VARIABLES that are set),
    which every worker of a run inherits: {} for glibc's defaults."""
    return {name: os.environ[name] for name in ALLOCATOR_VARIABLES if name in os.environ}


def measured_in_own_process(module: str, worker_args: list[str], scratch: Path) -> dict:
    """What ``python -m module --worker-out FILE *worker_args`` wrote to FILE (JSON), run in a
    fresh process: each benchmark case starts from a clean allocator and thread pool."""
    worker_out = scratch / f".{module.rsplit('.', 1)[-1]}_worker.json"
    command = [sys.executable, "-m", module, *worker_args, "--worker-out", str(worker_out)]
    subprocess.run(command, check=True)
    measured = json.loads(worker_out.read_text())
    worker_out.unlink()
    return measured


def report_stamp() -> dict:
    """What every benchmark report starts with: the date (UTC), `machine_info`, `versions` and
    which jaxrnn ran (`benchmarks.kernels_stamp`)."""
    from benchmarks import kernels_stamp

    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "versions": versions(),
        "jaxrnn": kernels_stamp(),
    }


def versions() -> dict:
    found = {"python": platform.python_version()}
    for package in ("jax", "jaxlib", "flax", "equinox", "torch", "numpy"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


# --------------------------------------------------------------------------------------- reports


def merge_reports(reports: list[dict]) -> dict:
    """One report from several runs of the suite on one machine, one after the other (a run per
    configuration, say, so that a run cut short by a time limit loses only its own): their cases
    in the order given, each floor again at the best GEMM rate any of the runs measured, the run
    times summed. Runs of another backend, device, mode, allocator setting or XLA flags, or a case
    that two runs both hold, are an error."""
    if not reports:
        raise ValueError("merge_reports: no reports given")
    first = reports[0]
    for report in reports[1:]:
        for key in ("backend", "device_kind", "mode"):
            if report[key] != first[key]:
                raise ValueError(
                    f"merge_reports: the runs differ in {key}: {first[key]!r} and {report[key]!r}"
                )
        # older reports ran one round, not in lockstep
        for key, default in (("rounds", 1), ("lockstep", False)):
            mine, theirs = first.get(key, default), report.get(key, default)
            if mine != theirs:
                raise ValueError(f"merge_reports: the runs differ in {key}: {mine} and {theirs}")
        for key in ("allocator", "xla_flags"):
            mine, theirs = first["machine"].get(key), report["machine"].get(key)
            if mine != theirs:
                raise ValueError(
                    f"merge_reports: the runs differ in {key}: {mine!r} and {theirs!r}"
                )
    cases, seen = [], set()
    for report in reports:
        for case in report["cases"]:
            key = (case["config"], case["cell"])
            if key in seen:
                raise ValueError(f"merge_reports: two runs both hold {key[0]}/{key[1]}")
            seen.add(key)
            cases.append(dict(case))
    gemm: dict[str, float] = {}
    for report in reports:
        for family, rate in report["gemm_gflops"].items():
            gemm[family] = max(rate, gemm.get(family, rate))
    best_rate = _best_rate(gemm)
    for case in cases:
        case.update(_floors(case["forward_flops"], case["train_flops"], best_rate))
    workers: dict[str, dict] = {}
    for report in reports:
        for family, worker in report["workers"].items():
            kept = workers.setdefault(family, {**worker, "wall_s": 0.0})
            kept["wall_s"] += worker["wall_s"]
            kept["returncode"] = kept["returncode"] or worker["returncode"]
    return {
        **first,
        "gemm_gflops": gemm,
        "best_gemm_gflops": best_rate,
        "wall_s": sum(r["wall_s"] for r in reports),
        "numerics_wall_s": sum(r["numerics_wall_s"] for r in reports),
        "workers": workers,
        "cases": cases,
        "merged_runs": sum(r.get("merged_runs", 1) for r in reports),
    }


def format_ms(value: float) -> str:
    if not math.isfinite(value):
        return "–"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def _ratio(value: float, base: float) -> str:
    if not (math.isfinite(base) and base > 0):
        return "–"
    ratio = value / base
    return f"{ratio:.0f}" if ratio >= 100 else f"{ratio:.1f}" if ratio >= 10 else f"{ratio:.2f}"


def _spread(m: dict) -> str:
    return f"{format_ms(m['median_ms'])} [{format_ms(m['min_ms'])}–{format_ms(m['max_ms'])}]"


def round_ratios(case: dict, metric: str, name: str = "jaxrnn") -> list[float]:
    """``name``'s median ÷ the fastest peer's median in each round, for one case's ``metric``
    ("forward" or "train"); empty where either was not timed in every round."""
    ok = {n: r[metric] for n, r in case["impls"].items() if r["status"] == "ok"}
    mine = ok.get(name, {}).get("round_medians_ms", [])
    peers = [m.get("round_medians_ms", []) for n, m in ok.items() if case["impls"][n]["peer"]]
    if not mine or not peers or any(len(p) != len(mine) for p in peers):
        return []
    return [value / min(p[k] for p in peers) for k, value in enumerate(mine)]


def beside_floor_ratios(case: dict, metric: str, name: str = "jaxrnn") -> tuple[float, list]:
    """``name``'s median ÷ its GEMM floor at the rate measured beside its calls (the faster of
    the rates before and after them), for one case's ``metric`` ("forward" or "train"): the
    pooled median at the median of the rounds' rates, and each round's median at its own rate;
    (NaN, []) where no rate was measured beside it."""
    rates = [max(pair) for pair in case.get("gemm_beside_gflops", [])]
    timed = case["impls"].get(name, {})
    if not rates or timed.get("status") != "ok":
        return float("nan"), []
    gflop = case[f"{metric}_flops"] / 1e9
    rounds = timed[metric].get("round_medians_ms", [])
    per_round = [ms * rate / gflop / 1e3 for ms, rate in zip(rounds, rates, strict=False)]
    return timed[metric]["median_ms"] * statistics.median(rates) / gflop / 1e3, per_round


def _beside_text(cases: list[dict]) -> str:
    parts = []
    for case in cases:
        forward, forward_rounds = beside_floor_ratios(case, "forward")
        train, train_rounds = beside_floor_ratios(case, "train")
        if not forward_rounds:
            continue
        rates = ", ".join(
            "–".join(f"{rate:.0f}" for rate in pair) for pair in case["gemm_beside_gflops"]
        )
        text = f"{case['cell']} {forward:.2f} / {train:.2f} ({rates} GFLOP/s"
        if len(forward_rounds) > 1:
            pairs = ", ".join(
                f"{f:.2f} / {t:.2f}" for f, t in zip(forward_rounds, train_rounds, strict=True)
            )
            text += f"; each round {pairs}"
        parts.append(text + ")")
    return (
        "jaxrnn ÷ the floor at the GEMM rate measured beside its calls (before–after), "
        "forward / train: " + "; ".join(parts) + "."
        if parts
        else ""
    )


def _round_ratios_text(cases: list[dict]) -> str:
    parts = []
    for case in cases:
        forward, train = round_ratios(case, "forward"), round_ratios(case, "train")
        if forward and train:
            pairs = ", ".join(f"{f:.2f} / {t:.2f}" for f, t in zip(forward, train, strict=True))
            parts.append(f"{case['cell']} {pairs}")
    return (
        "jaxrnn ÷ fastest peer in each round, forward / train: " + "; ".join(parts) + "."
        if parts
        else ""
    )


def write_markdown(report: dict, path: Path) -> None:
    version_text = ", ".join(f"{k} {v}" for k, v in report["versions"].items())
    info = report["framework_info"]
    machine = report["machine"]
    workers = report["workers"]
    threads = "; ".join(
        f"{family}: cores {w.get('info', {}).get('affinity', '?')}"
        + (
            f", torch threads {w['info']['torch_threads']}"
            if "torch_threads" in w.get("info", {})
            else ""
        )
        for family, w in workers.items()
    )
    gemm = ", ".join(f"{family} {rate:.1f}" for family, rate in report["gemm_gflops"].items())
    policy = report["policy"]
    reps = (
        f"median of {policy['min_reps']} timed calls"
        if policy["target_s"] == 0
        else f"median of {policy['min_reps']}–{policy['max_reps']} timed calls "
        f"(about {policy['target_s']} s per case)"
    )
    rounds = report.get("rounds", 1)
    together = (
        "families side by side, in lockstep: one timed call at a time, each implementation's "
        "forward and train in turn (the order reversed in every other cycle), each after an "
        "untimed call of its own"
        if report.get("lockstep")
        else "families one after another"
    )
    rounds_text = (
        f", in each of {rounds} rounds; a round times the cases one after another, each case's "
        f"{together} (the families' order reversed in every other round), and the median pools "
        "the timed calls of every round,"
        if rounds > 1
        else f", each case's {together},"
        if report.get("lockstep")
        else ""
    )
    lines = [
        f"# LSTM and GRU: jaxrnn against its peers ({report['backend'].upper()}, "
        f"{report['device_kind']})",
        "",
        f"{report['date']}; mode `{report['mode']}`"
        + (" (tiny smoke-test sizes, not a measurement)" if report["mode"] == "smoke" else "")
        + (
            f"; {report['merged_runs']} runs one after the other, together"
            if "merged_runs" in report
            else "; whole run"
        )
        + f" {report['wall_s'] / 60:.1f} min (numerics check "
        f"{report['numerics_wall_s']:.0f} s, "
        + ", ".join(f"{family} {w['wall_s']:.0f} s" for family, w in workers.items())
        + ").",
        "",
        f"- Machine: {machine['cpu']}, `os.cpu_count()` = {machine['cpu_count']}; "
        f"{machine['platform']}.",
        *(
            [f"- Allocator: {allocator_text(machine['allocator'])}, every framework's alike."]
            if "allocator" in machine  # reports before it was recorded say nothing
            else []
        ),
        *(
            [f"- XLA flags (JAX's processes): {xla_flags_text(machine['xla_flags'])}."]
            if "xla_flags" in machine
            else []
        ),
        f"- Versions: {version_text}.",
        *([f"- {report['jaxrnn']}."] if "jaxrnn" in report else []),
        f"- Threads: each framework family in processes of its own, a fresh one per case "
        f"({'pinned to core 0 with taskset' if report['pinned'] else 'not pinned'}); {threads}. "
        "`cpu/wall` in the tables is process CPU time over wall time during the timed calls: "
        "the cores actually busy.",
        f"- PyTorch: device {info.get('torch_device', '?')}, "
        f"`torch.backends.mkldnn.is_available()` = {info.get('mkldnn_available', '?')}, "
        f"enabled = {info.get('mkldnn_enabled', '?')}"
        + (f", oneDNN {info['onednn']}" if info.get("onednn") else "")
        + ".",
        f"- GEMM rate, float32 2048³, best of 5 (GFLOP/s): {gemm}. Floor = FLOPs / "
        f"{report['best_gemm_gflops']:.1f} GFLOP/s; forward FLOPs 2·B·T·(D_in+H)·G·H over layers "
        "and directions, train = 3 × forward less the first layer's dL/dxs (2·B·T·D·G·H a "
        "direction: the inputs are data); elementwise work ignored. Below each table, jaxrnn's "
        f"ratio to the floor at the rate its own process measured (best of {BESIDE_REPEATS}) "
        "just before and just after a case's calls, the faster of the two: a floor that moves "
        "with the machine's speed, where the one above holds its best.",
        f"- Timing: {reps}{rounds_text} after the first call (trace + compile + one run, reported "
        "as first call) and one warm-up call; a fresh random input for every call; JAX outputs "
        "waited for "
        "with `jax.block_until_ready` (loss and whole gradient pytree). Times in ms, "
        "median [min–max]. × floor = median / GEMM floor; × peer = median / fastest peer "
        "(peer = anything that is not jaxrnn). Differences under about 25% between processes "
        "are noise on a shared machine.",
        "- Forward = all hidden states (B,T,H) from a zero state (torch under "
        "`torch.inference_mode()`); train = forward + backward of the sum of all hidden states, "
        "gradients for all parameters, no optimizer update.",
        "",
    ]
    for config in dict.fromkeys(c["config"] for c in report["cases"]):
        cases = [c for c in report["cases"] if c["config"] == config]
        batch, n_steps, n_in, hidden = cases[0]["sizes"]
        what = "bidirectional 2-layer LSTM" if config == "bi" else "single layer"
        if config == "cl":
            lengths = sequence_lengths(batch, n_steps)
            what += (
                f", right-padded: lengths {min(lengths)}–{max(lengths)}, "
                f"{sum(lengths) / (batch * n_steps):.0%} of the steps valid"
            )
        lines += [
            f"## {config}: B={batch}, T={n_steps}, D={n_in}, H={hidden} ({what})",
            "",
            "| impl | cell | forward ms | train ms | compile (first call) s fwd / train "
            "| × floor fwd / train | × peer fwd / train | reps | cpu/wall | note |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for case in cases:
            for name, r in case["impls"].items():
                if r["status"] != "ok":
                    numerics = r["numerics"]
                    detail = numerics.get("error") or (
                        f"Δout {numerics.get('max_abs_out', float('nan')):.1e}, "
                        f"Δgrad {numerics.get('max_rel_grad', float('nan')):.1e}"
                    )
                    if r["status"] == "error" and "error" in r:
                        detail = r["error"]
                    if numerics["status"] != "ok":
                        detail = f"numerics check {numerics['status']}, not timed: {detail}"
                    lines.append(
                        f"| {name} | {case['cell']} | **{r['status']}** | | | | | | | "
                        f"{_cell_text(detail)} |"
                    )
                    continue
                fwd, trn = r["forward"], r["train"]
                note = r["note"]
                if fwd["capped"] or trn["capped"]:
                    note += (
                        f"{'; ' if note else ''}calls capped at ~{policy['cap_s']:.0f} s per "
                        "function (fewer timed calls)"
                    )
                lines.append(
                    f"| {name} | {case['cell']} | {_spread(fwd)} | {_spread(trn)} | "
                    f"{fwd['first_call_s']:.2f} / {trn['first_call_s']:.2f} | "
                    f"{_ratio(fwd['median_ms'], case['floor_forward_ms'])} / "
                    f"{_ratio(trn['median_ms'], case['floor_train_ms'])} | "
                    f"{_ratio(fwd['median_ms'], case['fastest_peer_forward_ms'])} / "
                    f"{_ratio(trn['median_ms'], case['fastest_peer_train_ms'])} | "
                    f"{fwd['reps']} / {trn['reps']} | "
                    f"{fwd['cpu_per_wall']:.2f} / {trn['cpu_per_wall']:.2f} | {_cell_text(note)} |"
                )
        lines.append("")
        if rounds > 1:
            lines += [_round_ratios_text(cases), ""]
        if _beside_text(cases):
            lines += [_beside_text(cases), ""]
        for case in cases:
            lines.append(
                f"Floor {case['cell']}: forward {format_ms(case['floor_forward_ms'])} ms "
                f"({case['forward_flops'] / 1e9:.2f} GFLOP), "
                f"train {format_ms(case['floor_train_ms'])} ms.  "
            )
        lines += ["", f"![{config}]({chart_name(report, config)})", ""]

    lines += [
        "## Numerics check",
        "",
        "Before any timing, in one process, every implementation against PyTorch float64 "
        "(`nn.LSTM` / `nn.GRU` with `.double()`) on each case's sizes, the same weights (PyTorch "
        "layout, uniform in ±1/√H, seeded numpy generator) and one standard-normal input. Out = "
        "max |Δ| of all hidden states; grad = max over parameters of max |Δ| / max |reference "
        f"gradient| of that parameter. Pass: both ≤ {TOLERANCE:g}. Gradients of peers whose "
        "parameters are laid out differently are mapped back to PyTorch's names (a summed bias "
        "gets the same gradient as each of its parts). The last column compares with "
        f"`{JAX_REFERENCE}`'s outputs and `jax.grad` gradients instead (for the numpy loop's "
        "hand-written backward pass, a check against JAX's autodiff). Every peer can express "
        "PyTorch's function exactly: flax's LSTM cells and equinox's `LSTMCell` keep one bias "
        "per gate (b_ih + b_hh); "
        "flax's `GRUCell` has biases on ir, iz, in and hn, so ir = b_ir + b_hr, iz = b_iz + b_hz, "
        "in = b_in, hn = b_hn (inside r * (…), as in PyTorch); equinox's `GRUCell` has bias = "
        "b_ih + [b_hr, b_hz, 0] and bias_n = b_hn; jaxrnn's `gru(reset='after')` gets the weights "
        "from `jaxrnn.interop` (update-gate rows negated)."
        + (
            " Checked at full float32 matmul precision; timed at the backend's default."
            if report["backend"] != "cpu"
            else ""
        ),
        "",
        "| case | impl | max abs Δ out | max rel Δ grad (worst parameter) | status "
        f"| vs {JAX_REFERENCE} (jax.grad): Δ out / rel Δ grad |",
        "|---|---|---|---|---|---|",
    ]
    for case in report["cases"]:
        for name, r in case["impls"].items():
            n = r["numerics"]
            if "max_abs_out" in n:
                vs_jax = n.get("vs_jax_grad")
                lines.append(
                    f"| {case['config']}/{case['cell']} | {name} | {n['max_abs_out']:.1e} | "
                    f"{n['max_rel_grad']:.1e} ({n['worst_grad']}) | {n['status']} | "
                    + (f"{vs_jax[0]:.1e} / {vs_jax[1]:.1e}" if vs_jax else "")
                    + " |"
                )
            else:
                lines.append(
                    f"| {case['config']}/{case['cell']} | {name} | | | {n['status']}: "
                    f"{_cell_text(n.get('error', ''))} | |"
                )
    path.write_text("\n".join(lines) + "\n")


def _cell_text(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")[:200]


def chart_name(report: dict, config: str) -> str:
    """suite_c1.png on the CPU, suite_gpu_c1.png on a GPU (so that the two can sit together)."""
    return f"suite_{config}.png" if report["backend"] == "cpu" else f"suite_gpu_{config}.png"


def write_charts(report: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for config in dict.fromkeys(c["config"] for c in report["cases"]):
        cases = [c for c in report["cases"] if c["config"] == config]
        n_bars = max(1, *(len(c["impls"]) for c in cases))
        fig, axes = plt.subplots(
            len(cases), 2, figsize=(12, 1.2 + 0.35 * n_bars * len(cases)), squeeze=False
        )
        for row, case in zip(axes, cases, strict=True):
            timed = {n: r for n, r in case["impls"].items() if r["status"] == "ok"}
            names = list(timed)[::-1]
            for ax, metric in zip(row, METRICS, strict=True):
                medians = np.array([timed[n][metric]["median_ms"] for n in names])
                low = medians - np.array([timed[n][metric]["min_ms"] for n in names])
                high = np.array([timed[n][metric]["max_ms"] for n in names]) - medians
                colors = ["tab:gray" if timed[n]["peer"] else "tab:blue" for n in names]
                bars = ax.barh(names, medians, xerr=[low, high], color=colors, capsize=3)
                labels = [format_ms(m) for m in medians]
                ax.bar_label(bars, labels, label_type="center", fontsize=7, color="white")
                floor = case[f"floor_{metric}_ms"]
                if math.isfinite(floor):
                    ax.axvline(
                        floor, color="black", linestyle="--", linewidth=1, label="GEMM floor"
                    )
                    ax.legend(loc="lower right", fontsize=8)
                ax.set_xscale("log")
                ax.set_xlabel("ms (median, whiskers min–max)")
                ax.set_title(f"{config} {case['cell']} {metric}", fontsize=10)
                ax.tick_params(axis="y", labelsize=8)
        fig.suptitle(
            f"{config} B,T,D,H = {tuple(cases[0]['sizes'])} — {report['backend']} "
            f"({report['machine']['cpu']}), {report['date']}",
            fontsize=10,
        )
        fig.tight_layout()
        path = out / chart_name(report, config)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


# ------------------------------------------------------------------------------------------- CLI


def default_out(smoke: bool) -> Path:
    """benchmarks/results, or a scratch folder for smoke tests, whose numbers mean nothing."""
    return Path(tempfile.gettempdir()) / "jaxrnn-smoke" if smoke else Path("benchmarks/results")


def _positive_int(text: str) -> int:
    value = int(text) if text.strip().isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _names(allowed) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in allowed]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list from {', '.join(allowed)}, got {text!r}"
            )
        return names

    return parse


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return run_worker(argv[1], Path(argv[2]), Path(argv[3]))
    if argv[:1] == ["--lockstep-worker"]:
        return _run_lockstep_worker(argv[1], Path(argv[2]))
    if argv[:1] == ["--numerics"]:
        return run_numerics(Path(argv[1]), Path(argv[2]))

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0]
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick", action="store_true", help="the default: c1 and c2, 7 timed calls (~2–3 min)"
    )
    size.add_argument(
        "--full", action="store_true", help="c1, c2, c3, bi and cl, 7–20 timed calls (~13–25 min)"
    )
    size.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--configs", type=_names(tuple(CONFIGS)), help="e.g. c1,c3,bi,cl")
    parser.add_argument("--cells", type=_names(CELLS), help="lstm,gru (default both)")
    parser.add_argument("--out", type=Path, help="default benchmarks/results")
    parser.add_argument(
        "--pin", action="store_true", help="run every worker on one core (taskset -c 0)"
    )
    parser.add_argument(
        "--rounds",
        type=_positive_int,
        default=1,
        help="time every case this many times over, the families' order reversed in every "
        "other round, and pool the timed calls (default 1)",
    )
    parser.add_argument(
        "--lockstep",
        action="store_true",
        help="time a case's implementations side by side, one call at a time, each after an "
        "untimed call of its own, instead of each framework's calls together (twice the calls): "
        "ratios that a machine whose speed drifts moves less",
    )
    parser.add_argument("--render", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        metavar="SUITE_JSON",
        help="write one report from the suite_*.json of several runs on this machine",
    )
    args = parser.parse_args(argv)
    args.out = (args.out or default_out(args.smoke)).resolve()

    if args.render:  # tables and charts again from a saved suite_*.json
        report = json.loads(args.render.read_text())
    elif args.merge:
        try:
            report = merge_reports([json.loads(path.read_text()) for path in args.merge])
        except (OSError, ValueError) as error:  # a missing file, not JSON, runs that differ
            raise SystemExit(f"--merge: {error}") from None
    else:
        from benchmarks import require_native_kernels

        require_native_kernels()
        report = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    raw = args.out / f"suite_{report['backend']}.json"  # suite_cpu.json or suite_gpu.json
    if not args.render:
        raw.write_text(json.dumps(report, indent=1))
    write_markdown(report, raw.with_suffix(".md"))
    charts = write_charts(report, args.out)
    written = [raw.with_suffix(".md").name] + ([] if args.render else [raw.name])
    print(f"wrote {', '.join(written)} and {len(charts)} charts to {args.out}")


if __name__ == "__main__":
    main()
