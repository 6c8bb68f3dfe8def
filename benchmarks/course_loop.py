"""The course's character-level training loop on names: `jaxrnn.course` against plain numpy.

    python -m benchmarks.course_loop [--iterations 1500] [--sample-every 100] [--out DIR]

The loop of the course's "Character-level language model" assignment, on the shipped names
(``jaxrnn/data/names.txt``, lower-cased, shuffled once with seed 0): one name per step, X = [None,
ids of the name], Y = [ids of the name, "\\n"], hidden size n_a = 50, vocabulary the 26 letters and
"\\n" (27), parameters initialised as the course does (numpy seed 1: W ~ 0.01 N(0, 1), biases 0),
``optimize(X, Y, a_prev, parameters, learning_rate=0.01)`` each step with a⟨T⟩ carried on as the
next a_prev, and 7 names drawn with ``sample(parameters, char_to_ix, seed)`` every
``--sample-every`` steps. Both loops run in this one process, in float64 (``jax_enable_x64``, as
the course's numpy), on the same names in the same order from the same parameters; every step's
loss of `jaxrnn.course.optimize` must equal numpy's to 1e-9 relative (float64 rounding, summed in
another order, over every step of both passes, stays far below; the largest difference is
reported). The samples are not compared: jaxrnn draws with a JAX key, numpy with its own generator.

Two passes of ``--iterations`` steps each, the second continuing from where the first stopped:

- end to end: the first pass, from a fresh process (the library imported, nothing compiled), one
  loop after the other; jaxrnn's time includes every compilation it triggers;
- steady state: the second pass, in chunks of 100 steps, alternating between numpy and jaxrnn so
  that both see the same load on a shared machine.

Compilations are counted with a ``jax.monitoring`` listener on XLA compile events; ``sample``'s
first call (its compilation) and the median of its later calls are timed on their own.

Writes ``course_loop_cpu.md``, ``.json`` and ``.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--sample-every", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", True)
    from jaxrnn import course

    compiles = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, seconds, **_: compiles.append(seconds) if event == COMPILE_EVENT else None
    )
    load_before = os.getloadavg()[0]
    examples, char_to_ix, parameters = setup()
    reference = Loop(np_optimize, np_sample, parameters, char_to_ix, args.sample_every)
    jaxrnn = Loop(course.optimize, course.sample, parameters, char_to_ix, args.sample_every)

    # End to end: each loop from its first step, jaxrnn compiling as it goes.
    start = time.perf_counter()
    reference.run(examples, args.iterations, start)
    numpy_e2e = time.perf_counter() - start
    already = len(compiles)
    start = time.perf_counter()
    jaxrnn.run(examples, args.iterations, start)
    jaxrnn_e2e = time.perf_counter() - start
    e2e_compiles = compiles[already:]
    sample_first = jaxrnn.sample_seconds[0]

    # Steady state: alternating chunks, so that both loops meet the same load.
    seconds = {"numpy": 0.0, "jaxrnn": 0.0}
    already, done = len(compiles), 0
    while done < args.iterations:
        n = min(CHUNK, args.iterations - done)
        for name, loop in (("numpy", reference), ("jaxrnn", jaxrnn)):
            start = time.perf_counter()
            loop.run(examples, n, start)
            seconds[name] += time.perf_counter() - start
        done += n
    steady_compiles = len(compiles) - already

    losses = np.array(jaxrnn.losses)
    reference_losses = np.array(reference.losses)
    relative = np.abs(losses - reference_losses) / np.abs(reference_losses)
    assert relative.max() <= LOSS_RTOL, f"losses differ by {relative.max():.2e} relative"

    row = {
        "iterations": args.iterations,
        "sample_every": args.sample_every,
        "names_per_sample": NAMES_PER_SAMPLE,
        "numpy_e2e_it_s": args.iterations / numpy_e2e,
        "jaxrnn_e2e_it_s": args.iterations / jaxrnn_e2e,
        "numpy_steady_it_s": args.iterations / seconds["numpy"],
        "jaxrnn_steady_it_s": args.iterations / seconds["jaxrnn"],
        "compiles_e2e": len(e2e_compiles),
        "compile_seconds_e2e": sum(e2e_compiles),
        "compiles_steady": steady_compiles,
        "sample_first_call_s": sample_first,
        "sample_steady_ms": 1e3 * statistics.median(jaxrnn.sample_seconds[NAMES_PER_SAMPLE:]),
        "numpy_sample_ms": 1e3 * statistics.median(reference.sample_seconds),
        "max_loss_rel_diff": float(relative.max()),
        "final_loss_smoothed": float(np.mean(losses[-200:])),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
    }
    row["ratio_e2e"] = row["jaxrnn_e2e_it_s"] / row["numpy_e2e_it_s"]
    row["ratio_steady"] = row["jaxrnn_steady_it_s"] / row["numpy_steady_it_s"]

    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# The course's training loop on names: jaxrnn.course against numpy",
        "",
        f"{stamp}; jax {jax.__version__}; numpy {np.__version__}; Python "
        f"{platform.python_version()}; {os.cpu_count()} CPU cores, load average "
        f"{row['load_average_before']:.1f} before and {row['load_average_after']:.1f} after; "
        f"`python -m benchmarks.course_loop --iterations {args.iterations} --sample-every "
        f"{args.sample_every}`. n_a = {N_A}, vocabulary 27, SGD at {LEARNING_RATE}, float64, "
        f"{NAMES_PER_SAMPLE} samples every {args.sample_every} steps. Losses equal to "
        f"{row['max_loss_rel_diff']:.1e} relative (asserted ≤ {LOSS_RTOL:g}).",
        "",
        "| | numpy (it/s) | jaxrnn.course (it/s) | jaxrnn / numpy |",
        "|---|---|---|---|",
        f"| end to end, {args.iterations} steps, compilations included | "
        f"{row['numpy_e2e_it_s']:,.0f} | {row['jaxrnn_e2e_it_s']:,.0f} | {row['ratio_e2e']:.2f} |",
        f"| steady state, {args.iterations} more steps | {row['numpy_steady_it_s']:,.0f} | "
        f"{row['jaxrnn_steady_it_s']:,.0f} | {row['ratio_steady']:.2f} |",
        "",
        f"Compilations: {row['compiles_e2e']} in the first pass "
        f"({row['compile_seconds_e2e']:.2f} s of XLA compilation), {row['compiles_steady']} in "
        "the second. `sample`: first call "
        f"{row['sample_first_call_s']:.2f} s, then {row['sample_steady_ms']:.2f} ms a name "
        f"(median; numpy {row['numpy_sample_ms']:.2f} ms).",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "course_loop_cpu.md").write_text("\n".join(lines) + "\n")
    curves = {"numpy_elapsed_s": reference.elapsed, "jaxrnn_elapsed_s": jaxrnn.elapsed}
    first_pass = {name: values[: args.iterations] for name, values in curves.items()}
    (args.out / "course_loop_cpu.json").write_text(json.dumps({**row, **first_pass}) + "\n")
    plot(first_pass, args.out / "course_loop_cpu.png")
    print("\n".join(lines))


def plot(curves: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    for name, color in (("numpy", "tab:blue"), ("jaxrnn", "tab:red")):
        elapsed = curves[f"{name}_elapsed_s"]
        ax.plot(np.arange(1, len(elapsed) + 1), elapsed, color=color, label=name)
    ax.set_xlabel("training step (one name)")
    ax.set_ylabel("seconds since the first step")
    ax.set_title("The course's loop on names, end to end (compilations included)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
