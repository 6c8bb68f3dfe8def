"""The course's character-level training loop on names: `jaxrnn.course` against plain numpy.

    python -m benchmarks.course_loop [--iterations 1500] [--sample-every 100] [--out DIR]

The loop of the course's "Character-level language model" assignment, on the shipped names
(``jaxrnn/data/names.txt``, lower-cased, shuffled once with seed 0): one name per step, X = [None,
ids of the name], Y = [ids of the name, "\\n"], hidden size n_a = 50, vocabulary the 26 letters and
"\\n" (27), parameters initialised as the course does (numpy seed 1: W ~ 0.01 N(0, 1), biases 0),
``optimize(X, Y, a_prev, parameters, learning_rate=0.01)`` each step with a⟨T⟩ carried on as the
next a_prev, and 7 names drawn with ``sample(parameters, char_to_ix, seed)`` every
``--sample-every`` steps. Both loops run in float64 (``jax_enable_x64``, as the course's numpy),
on the same names in the same order from the same parameters; every step's loss of
`jaxrnn.course.optimize` must equal numpy's to 1e-9 relative (float64 rounding, summed in another
order, over every step of every pass, stays far below; the largest difference is reported). The
samples are not compared: jaxrnn draws with Threefry-2x32 uniforms, numpy with its own generator.

- end to end, twice: a new Python process (the libraries imported, nothing compiled) runs
  ``--iterations`` steps of numpy's loop, then of jaxrnn's, whose time includes compiling its
  programs (in the background, while its numpy versions run the calls; the table counts those)
  or loading them from the on-disk cache of `jaxrnn.course`. The first process starts
  from an empty ``JAXRNN_CACHE_DIR`` (cold: it compiles and stores), the second from what the first
  stored (warm: it loads);
- steady state, in this process: a first pass of ``--iterations`` steps of each loop, then a second
  in chunks of 100 steps alternating between numpy and jaxrnn, so that both see the same load on a
  shared machine;
- the same steady state in a third new process that turns XLA:CPU's asynchronous dispatch off
  (``jax_cpu_enable_async_dispatch``), so that each program runs in the calling thread instead of
  being handed to one of XLA's: what a user who sets it gets.

Compilations are counted with a ``jax.monitoring`` listener on XLA compile events; ``sample``'s
first call (compiling or loading its program) and the median of its later calls are timed on their
own. The machine's load average is recorded before and after.

Writes ``course_loop_cpu.md``, ``.json`` and ``.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np

N_A, LEARNING_RATE, NAMES_PER_SAMPLE, CHUNK = 50, 0.01, 7, 100
LOSS_RTOL = 1e-9
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


# --------------------------------------------------------------- the course's loop in plain numpy


def np_softmax(z):
    e = np.exp(z - np.max(z))
    return e / e.sum(axis=0)


def np_optimize(X, Y, a_prev, parameters, learning_rate):
    """Forward, backward by hand, clip at 5, SGD in place: the course's optimize in numpy."""
    Wax, Waa, Wya, b, by = (parameters[k] for k in ("Wax", "Waa", "Wya", "b", "by"))
    vocab_size = Wax.shape[1]
    x, a, y_hat, loss = {}, {-1: a_prev}, {}, 0.0
    for t in range(len(X)):
        x[t] = np.zeros((vocab_size, 1))
        if X[t] is not None:
            x[t][X[t]] = 1
        a[t] = np.tanh(Wax @ x[t] + Waa @ a[t - 1] + b)
        y_hat[t] = np_softmax(Wya @ a[t] + by)
        loss -= np.log(y_hat[t][Y[t], 0])
    gradients = {k: np.zeros_like(parameters[k[1:]]) for k in ("dWax", "dWaa", "dWya", "db", "dby")}
    da_next = np.zeros_like(a_prev)
    for t in reversed(range(len(X))):
        dy = np.copy(y_hat[t])
        dy[Y[t]] -= 1
        gradients["dWya"] += dy @ a[t].T
        gradients["dby"] += dy
        dz = (1 - a[t] * a[t]) * (Wya.T @ dy + da_next)
        gradients["db"] += dz
        gradients["dWax"] += dz @ x[t].T
        gradients["dWaa"] += dz @ a[t - 1].T
        da_next = Waa.T @ dz
    for gradient in gradients.values():
        np.clip(gradient, -5, 5, out=gradient)
    for key in ("Wax", "Waa", "Wya", "b", "by"):
        parameters[key] -= learning_rate * gradients["d" + key]
    return loss, gradients, a[len(X) - 1]


def np_sample(parameters, char_to_ix, seed):
    """The course's sample: a⟨0⟩ = 0, x⟨1⟩ = 0, draw, feed back, stop at "\\n" or 50 characters."""
    Wax, Waa, Wya, b, by = (parameters[k] for k in ("Wax", "Waa", "Wya", "b", "by"))
    vocab_size, rng, newline = by.shape[0], np.random.default_rng(seed), char_to_ix["\n"]
    x, a_prev, indices, idx = np.zeros((vocab_size, 1)), np.zeros((Waa.shape[0], 1)), [], -1
    while idx != newline and len(indices) != 50:
        a = np.tanh(Wax @ x + Waa @ a_prev + b)
        y = np_softmax(Wya @ a + by)
        idx = int(rng.choice(vocab_size, p=y.ravel()))
        indices.append(idx)
        x = np.zeros((vocab_size, 1))
        x[idx] = 1
        a_prev = a
    if len(indices) == 50:
        indices.append(newline)
    return indices


# ----------------------------------------------------------------------------------- the loop


def setup():
    names = resources.files("jaxrnn").joinpath("data/names.txt").read_text().lower().split()
    np.random.default_rng(0).shuffle(names)
    chars = sorted(set("".join(names)) | {"\n"})
    char_to_ix = {ch: i for i, ch in enumerate(chars)}
    examples = [
        ([None] + [char_to_ix[ch] for ch in name], [char_to_ix[ch] for ch in name] + [0])
        for name in names
    ]
    vocab_size, rng = len(chars), np.random.RandomState(1)
    parameters = {
        "Wax": rng.randn(N_A, vocab_size) * 0.01,
        "Waa": rng.randn(N_A, N_A) * 0.01,
        "Wya": rng.randn(vocab_size, N_A) * 0.01,
        "b": np.zeros((N_A, 1)),
        "by": np.zeros((vocab_size, 1)),
    }
    return examples, char_to_ix, parameters


class Loop:
    """One implementation's state in the course's loop: parameters, a_prev, losses, timings."""

    def __init__(self, optimize, sample, parameters, char_to_ix, sample_every):
        self.optimize, self.sample, self.char_to_ix = optimize, sample, char_to_ix
        self.parameters = {key: value.copy() for key, value in parameters.items()}
        self.a_prev = np.zeros((N_A, 1))
        self.sample_every, self.step = sample_every, 0
        self.losses, self.elapsed, self.sample_seconds = [], [], []

    def run(self, examples, n_steps, clock_start):
        for _ in range(n_steps):
            X, Y = examples[self.step % len(examples)]
            loss, _, self.a_prev = self.optimize(X, Y, self.a_prev, self.parameters, LEARNING_RATE)
            self.losses.append(float(loss))
            if self.step % self.sample_every == 0:
                for seed in range(NAMES_PER_SAMPLE):
                    start = time.perf_counter()
                    self.sample(self.parameters, self.char_to_ix, seed)
                    self.sample_seconds.append(time.perf_counter() - start)
            self.step += 1
            self.elapsed.append(time.perf_counter() - clock_start)


def loops(sample_every: int, async_dispatch: bool = True) -> tuple[list, Loop, Loop, list]:
    """(names, numpy's loop, jaxrnn's loop, the durations of XLA compilations from now on), both
    loops from the same parameters, in float64; with async_dispatch False, XLA:CPU runs each
    program in the calling thread (a setting of the process, taken before jax's first
    computation)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    if not async_dispatch:
        jax.config.update("jax_cpu_enable_async_dispatch", False)
    from jaxrnn import course

    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, seconds, **_: compiles.append(seconds) if event == COMPILE_EVENT else None
    )
    examples, char_to_ix, parameters = setup()
    reference = Loop(np_optimize, np_sample, parameters, char_to_ix, sample_every)
    jaxrnn = Loop(course.optimize, course.sample, parameters, char_to_ix, sample_every)
    jaxrnn.numpy_path = count_numpy_path_calls()
    return examples, reference, jaxrnn, compiles


def count_numpy_path_calls() -> dict[str, int]:
    """How many calls of optimize ("step") and sample ("sample") ran the numpy versions that
    `jaxrnn.course` runs while their programs compile, counted from now on."""
    from jaxrnn import _course_host

    calls = {"step": 0, "sample": 0}
    for name, function in (("step", "char_step"), ("sample", "char_sample")):
        original = getattr(_course_host, function)

        def counted(*args, _original=original, _name=name):
            calls[_name] += 1
            return _original(*args)

        setattr(_course_host, function, counted)
    return calls


def end_to_end(iterations: int, sample_every: int) -> dict:
    """The first pass from a fresh process: numpy's loop, then jaxrnn's, compilations included."""
    examples, reference, jaxrnn, compiles = loops(sample_every)
    start = time.perf_counter()
    reference.run(examples, iterations, start)
    numpy_seconds = time.perf_counter() - start
    start = time.perf_counter()
    jaxrnn.run(examples, iterations, start)
    jaxrnn_seconds = time.perf_counter() - start
    from jaxrnn import course

    course.wait_for_compilation()  # the programs stored on disk, for the warm run that follows
    return {
        "numpy_path_steps": jaxrnn.numpy_path["step"],
        "numpy_path_samples": jaxrnn.numpy_path["sample"],
        "numpy_it_s": iterations / numpy_seconds,
        "jaxrnn_it_s": iterations / jaxrnn_seconds,
        "compiles": len(compiles),
        "compile_seconds": sum(compiles),
        "sample_first_call_s": jaxrnn.sample_seconds[0],
        "max_loss_rel_diff": max_relative_difference(jaxrnn.losses, reference.losses),
        "numpy_elapsed_s": reference.elapsed,
        "jaxrnn_elapsed_s": jaxrnn.elapsed,
    }


def max_relative_difference(losses: list, reference_losses: list) -> float:
    """The largest relative difference of jaxrnn's losses from numpy's; asserted ≤ LOSS_RTOL."""
    relative = np.abs(np.subtract(losses, reference_losses)) / np.abs(reference_losses)
    assert relative.max() <= LOSS_RTOL, f"losses differ by {relative.max():.2e} relative"
    return float(relative.max())


def in_a_fresh_process(args: argparse.Namespace, cache_dir: str, part: str) -> dict:
    """`end_to_end` (part "--end-to-end") or `steady_state` with XLA's async dispatch off (part
    "--steady-in-the-calling-thread") in a new Python process whose jaxrnn.course keeps programs
    in cache_dir."""
    command = [sys.executable, "-m", "benchmarks.course_loop", part]
    command += ["--iterations", str(args.iterations), "--sample-every", str(args.sample_every)]
    env = {**os.environ, "JAXRNN_CACHE_DIR": cache_dir}
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(command, env=env, cwd=root, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--sample-every", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--end-to-end", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--steady-in-the-calling-thread", action="store_true", help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    from benchmarks import require_native_kernels

    require_native_kernels()
    if args.end_to_end:  # child processes of in_a_fresh_process
        print(json.dumps(end_to_end(args.iterations, args.sample_every)))
        return
    if args.steady_in_the_calling_thread:
        steady = steady_state(args.iterations, args.sample_every, async_dispatch=False)
        print(json.dumps(steady))
        return

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="jaxrnn_cache_") as cache_dir:
        cold = in_a_fresh_process(args, cache_dir, "--end-to-end")  # an empty cache: compiles
        warm = in_a_fresh_process(args, cache_dir, "--end-to-end")  # the programs cold stored
        inline = in_a_fresh_process(args, cache_dir, "--steady-in-the-calling-thread")
        os.environ["JAXRNN_CACHE_DIR"] = cache_dir
        steady = steady_state(args.iterations, args.sample_every)

    row = {
        "iterations": args.iterations,
        "sample_every": args.sample_every,
        "names_per_sample": NAMES_PER_SAMPLE,
        **{f"{key}_cold": value for key, value in cold.items() if "elapsed" not in key},
        **{f"{key}_warm": value for key, value in warm.items() if "elapsed" not in key},
        **steady,
        **{f"{key}_inline": value for key, value in inline.items()},
        "max_loss_rel_diff": max(
            cold["max_loss_rel_diff"],
            warm["max_loss_rel_diff"],
            steady["max_loss_rel_diff"],
            inline["max_loss_rel_diff"],
        ),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
    }
    for key in ("cold", "warm"):
        row[f"ratio_{key}"] = row[f"jaxrnn_it_s_{key}"] / row[f"numpy_it_s_{key}"]
    row["ratio_steady"] = row["jaxrnn_steady_it_s"] / row["numpy_steady_it_s"]
    row["ratio_steady_inline"] = row["jaxrnn_steady_it_s_inline"] / row["numpy_steady_it_s_inline"]

    import jax

    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    n = args.iterations
    lines = [
        "# The course's training loop on names: jaxrnn.course against numpy",
        "",
        f"{stamp}; jax {jax.__version__}; numpy {np.__version__}; Python "
        f"{platform.python_version()}; {os.cpu_count()} CPU cores, load average "
        f"{row['load_average_before']:.1f} before and {row['load_average_after']:.1f} after; "
        f"`python -m benchmarks.course_loop --iterations {n} --sample-every "
        f"{args.sample_every}`. n_a = {N_A}, vocabulary 27, SGD at {LEARNING_RATE}, float64, "
        f"{NAMES_PER_SAMPLE} samples every {args.sample_every} steps. Losses equal to "
        f"{row['max_loss_rel_diff']:.1e} relative (asserted ≤ {LOSS_RTOL:g}).",
        "",
        "| | numpy (it/s) | jaxrnn.course (it/s) | jaxrnn / numpy | compilations (s) "
        "| `sample`'s first call | steps on the numpy path |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, what in (
        ("cold", "end to end, a fresh process, empty cache"),
        ("warm", "end to end, a fresh process, programs cached on disk"),
    ):
        lines.append(
            f"| {what}, {n} steps | {row[f'numpy_it_s_{key}']:,.0f} | "
            f"{row[f'jaxrnn_it_s_{key}']:,.0f} | {row[f'ratio_{key}']:.2f} | "
            f"{row[f'compiles_{key}']} ({row[f'compile_seconds_{key}']:.2f} s) | "
            f"{1e3 * row[f'sample_first_call_s_{key}']:.1f} ms | "
            f"{row[f'numpy_path_steps_{key}']:,} |"
        )
    lines += [
        f"| steady state, {n} steps after {n} | {row['numpy_steady_it_s']:,.0f} | "
        f"{row['jaxrnn_steady_it_s']:,.0f} | {row['ratio_steady']:.2f} | "
        f"{row['compiles_steady']} | | {row['numpy_path_steps_steady']:,} |",
        f"| steady state, XLA's async dispatch off, {n} steps after {n} | "
        f"{row['numpy_steady_it_s_inline']:,.0f} | {row['jaxrnn_steady_it_s_inline']:,.0f} | "
        f"{row['ratio_steady_inline']:.2f} | {row['compiles_steady_inline']} | | "
        f"{row['numpy_path_steps_steady_inline']:,} |",
        "",
        "End to end: each loop from its first step in a new process (the libraries imported), "
        "compilations or loading from the on-disk cache included; the cold run starts from an "
        "empty `JAXRNN_CACHE_DIR`, the warm run from what the cold one stored; while a "
        "program compiles (in the background, in a process of its own, so that the "
        "compilations column, which counts this process's, shows none), its calls run the "
        "numpy version of the same step, counted in the last column. Steady state: "
        f"chunks of {CHUNK} steps alternating between the loops. `sample` in the steady state: "
        f"{row['sample_steady_ms']:.2f} ms a name (median; numpy {row['numpy_sample_ms']:.2f} ms), "
        f"{row['sample_steady_ms_inline']:.2f} ms with XLA's async dispatch off (numpy "
        f"{row['numpy_sample_ms_inline']:.2f} ms).",
        "",
        "XLA:CPU hands a program of more than about a thousand operations to a thread of its "
        "own and the caller waits for it, which costs tens of microseconds a call on a busy "
        "machine; the last row runs the steady state in a fresh process that first sets "
        '`jax.config.update("jax_cpu_enable_async_dispatch", False)`, so that each program '
        "runs in the calling thread (a setting of the whole process, which a library does not "
        "change for its user).",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "course_loop_cpu.md").write_text("\n".join(lines) + "\n")
    curves = {
        "numpy_elapsed_s": cold["numpy_elapsed_s"],
        "jaxrnn_cold_elapsed_s": cold["jaxrnn_elapsed_s"],
        "jaxrnn_warm_elapsed_s": warm["jaxrnn_elapsed_s"],
    }
    (args.out / "course_loop_cpu.json").write_text(json.dumps({**row, **curves}) + "\n")
    plot(curves, args.out / "course_loop_cpu.png")
    print("\n".join(lines))


def steady_state(iterations: int, sample_every: int, async_dispatch: bool = True) -> dict:
    """A first pass to warm up, then a second in alternating chunks, in this process."""
    examples, reference, jaxrnn, compiles = loops(sample_every, async_dispatch)
    for loop in (reference, jaxrnn):
        loop.run(examples, iterations, time.perf_counter())
    first_samples = {id(loop): len(loop.sample_seconds) for loop in (reference, jaxrnn)}
    seconds = {"numpy": 0.0, "jaxrnn": 0.0}
    already, done = len(compiles), 0
    numpy_path_before = dict(jaxrnn.numpy_path)
    while done < iterations:
        n = min(CHUNK, iterations - done)
        for name, loop in (("numpy", reference), ("jaxrnn", jaxrnn)):
            start = time.perf_counter()
            loop.run(examples, n, start)
            seconds[name] += time.perf_counter() - start
        done += n
    samples = {
        name: loop.sample_seconds[first_samples[id(loop)] :]
        for name, loop in (("numpy", reference), ("jaxrnn", jaxrnn))
    }
    return {
        "numpy_steady_it_s": iterations / seconds["numpy"],
        "jaxrnn_steady_it_s": iterations / seconds["jaxrnn"],
        "compiles_steady": len(compiles) - already,
        "numpy_path_steps_steady": jaxrnn.numpy_path["step"] - numpy_path_before["step"],
        "sample_steady_ms": 1e3 * statistics.median(samples["jaxrnn"]),
        "numpy_sample_ms": 1e3 * statistics.median(samples["numpy"]),
        "max_loss_rel_diff": max_relative_difference(jaxrnn.losses, reference.losses),
        "final_loss_smoothed": float(np.mean(jaxrnn.losses[-200:])),
    }


def plot(curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for key, label, color in (
        ("numpy_elapsed_s", "numpy", "tab:blue"),
        ("jaxrnn_cold_elapsed_s", "jaxrnn, empty cache (compiles)", "tab:red"),
        ("jaxrnn_warm_elapsed_s", "jaxrnn, programs cached on disk", "tab:orange"),
    ):
        elapsed = curves[key]
        ax.plot(np.arange(1, len(elapsed) + 1), elapsed, color=color, label=label)
    ax.set_xlabel("training step (one name)")
    ax.set_ylabel("seconds since the first step")
    ax.set_title("The course's loop on names, end to end in a fresh process")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
