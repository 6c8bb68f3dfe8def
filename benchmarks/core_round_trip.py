"""How far apart the machine's cores are, over time: a cache line's round trip between two of them.

    python -m benchmarks.core_round_trip [--seconds 20] [--cores 0,1] [--with-matmul]
        [--out benchmarks/results]

Two threads, one bound to each of ``--cores``, pass a counter back and forth on one cache line;
each window of 0.5 s gives the mean round trip. On a virtual machine the host may move the two
vCPUs between cores that share a cache (a round trip of some 70 ns on a Zen 4 EPYC) and cores that
do not (330–410 ns there), every few seconds; a team of threads that meets at every step of a
recurrence pays that round trip each time, and the GEMM rate moves with it (benchmarks/NOTES.md,
section 45). ``--with-matmul`` alternates each window with 0.5 s of a 1024³ float32 numpy matmul
on all cores and reports its rate beside the round trip.

The probe is a small C program, compiled at run time with the C compiler the kernels were built
with (``cc``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

PROBE_SOURCE = r"""
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static _Alignas(64) atomic_long ball;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static int bind_to(int core) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(core, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void* answer(void* core) {
  if (bind_to(*(int*)core) != 0) exit(3);
  for (long i = 1;; i += 2) {
    while (atomic_load_explicit(&ball, memory_order_acquire) != i) __builtin_ia32_pause();
    atomic_store_explicit(&ball, i + 1, memory_order_release);
  }
  return NULL;
}

/* usage: probe CORE_A CORE_B WINDOWS WINDOW_SECONDS; prints one mean round trip (ns) a window */
int main(int argc, char** argv) {
  if (argc != 5) return 2;
  int a = atoi(argv[1]), b = atoi(argv[2]), windows = atoi(argv[3]);
  double window = atof(argv[4]);
  if (bind_to(a) != 0) return 3;
  pthread_t other;
  pthread_create(&other, NULL, answer, &b);
  long sent = 0;
  for (int w = 0; w < windows; ++w) {
    double start = now();
    long trips = 0;
    while (now() - start < window) {
      for (int k = 0; k < 1000; ++k) {
        atomic_store_explicit(&ball, sent + 1, memory_order_release);
        while (atomic_load_explicit(&ball, memory_order_acquire) != sent + 2)
          __builtin_ia32_pause();
        sent += 2;
      }
      trips += 1000;
    }
    printf("%.1f\n", (now() - start) / trips * 1e9);
    fflush(stdout);
  }
  return 0;
}
"""


def build_probe(folder: Path) -> Path:
    """The probe compiled into ``folder``.

    Raises:
      RuntimeError: no C compiler (``cc``) on the PATH.
    """
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("core_round_trip: expected a C compiler (cc or gcc) on the PATH")
    source, binary = folder / "probe.c", folder / "probe"
    source.write_text(PROBE_SOURCE)
    subprocess.run([compiler, "-O2", "-pthread", "-o", str(binary), str(source)], check=True)
    return binary


def round_trips(probe: Path, cores: tuple[int, int], windows: int, window: float) -> list[float]:
    """The mean round trip (ns) between ``cores`` in each of ``windows`` windows of ``window`` s."""
    run = subprocess.run(
        [str(probe), str(cores[0]), str(cores[1]), str(windows), str(window)],
        capture_output=True,
        text=True,
    )
    if run.returncode == 3:
        raise ValueError(f"core_round_trip: could not bind a thread to cores {cores}")
    run.check_returncode()
    return [float(line) for line in run.stdout.split()]


def matmul_rate(seconds: float, n: int = 1024) -> float:
    """numpy's float32 n³ matmul rate over ``seconds``, in GFLOP/s."""
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    a @ a
    start, count = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        a @ a
        count += 1
    return 2 * n**3 * count / (time.perf_counter() - start) / 1e9


def measure(cores: tuple[int, int], seconds: float, with_matmul: bool, window: float = 0.5) -> dict:
    """Windows of round trips (ns) between ``cores`` over about ``seconds``, each followed by a
    window of the matmul's rate (GFLOP/s) with ``with_matmul``."""
    with tempfile.TemporaryDirectory() as folder:
        probe = build_probe(Path(folder))
        rows = []
        for _ in range(max(1, round(seconds / (2 * window if with_matmul else window)))):
            row = {"round_trip_ns": round_trips(probe, cores, 1, window)[0]}
            if with_matmul:
                row["matmul_gflops"] = matmul_rate(window)
            rows.append(row)
    return {"cores": list(cores), "window_seconds": window, "windows": rows}


def summary(windows: list[dict], split_ns: float) -> dict:
    """The windows below ``split_ns`` (near) and at or above it (far): how many, the median round
    trip and, where measured, the median matmul rate of each."""
    found = {}
    for name, chosen in (
        ("near", [w for w in windows if w["round_trip_ns"] < split_ns]),
        ("far", [w for w in windows if w["round_trip_ns"] >= split_ns]),
    ):
        found[name] = {"windows": len(chosen)}
        if chosen:
            found[name]["round_trip_ns"] = statistics.median(w["round_trip_ns"] for w in chosen)
            if "matmul_gflops" in chosen[0]:
                found[name]["matmul_gflops"] = statistics.median(w["matmul_gflops"] for w in chosen)
    return found


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--cores", default="0,1", help="two core numbers, e.g. 0,1")
    parser.add_argument("--with-matmul", action="store_true")
    parser.add_argument("--split-ns", type=float, default=150.0, help="near below, far above")
    parser.add_argument("--out", type=Path, default=None, help="write core_round_trip.json here")
    args = parser.parse_args(argv)
    cores = tuple(int(c) for c in args.cores.split(","))
    if len(cores) != 2 or cores[0] == cores[1] or min(cores) < 0:
        parser.error(f"--cores: expected two different core numbers, got {args.cores!r}")
    allowed = sorted(os.sched_getaffinity(0))
    if any(c not in allowed for c in cores):
        parser.error(f"--cores: expected two of this process's cores {allowed}, got {args.cores!r}")
    measured = measure(cores, args.seconds, args.with_matmul)
    measured["summary"] = summary(measured["windows"], args.split_ns)
    print(" ".join(f"{w['round_trip_ns']:.0f}" for w in measured["windows"]), "ns per round trip")
    for name, part in measured["summary"].items():
        print(name, json.dumps(part))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "core_round_trip.json").write_text(json.dumps(measured, indent=1))
    return measured


if __name__ == "__main__":
    main()
