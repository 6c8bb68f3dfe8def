"""The shape of jaxrnn's core, as figures: what a user must write and what they can call.

    python -m benchmarks.core_shape [--repo DIR]

For the jaxrnn in ``--repo`` (default: this checkout; another checkout, such as an older commit in
a ``git worktree``, gives the figures to compare): the fields of `jaxrnn.Cell` and how many are
required, the keyword options of `jaxrnn.unroll`, the public names at the top level and the
namespaces, the lines of the core modules and the longest function, ``import jaxrnn``'s time in a
fresh process, the median of 5 repeated eager `unroll` calls (LSTM, xs (4, 10, 3), H = 8), and
which of ``jax.jvp``, ``jax.jacfwd``, ``jax.hessian`` and ``jax.jvp`` of a jitted function
work through the default `unroll` of every built-in cell. Prints JSON.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

CORE = (
    "cells.py",
    "scan.py",
    "kernels.py",
    "layers.py",
    "models.py",
    "lm.py",
    "lm_train.py",
    "lm_state.py",
    "lm_eval.py",
)


def _sizes(repo: Path) -> dict:
    lines, longest = {}, (0, "")
    for path in sorted((repo / "jaxrnn").glob("*.py")):
        text = path.read_text()
        if path.name in CORE:
            lines[path.name] = len(text.splitlines())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                size = node.end_lineno - node.lineno + 1
                longest = max(longest, (size, f"{path.stem}.{node.name}"))
    return {"lines": lines, "longest_function": {"name": longest[1], "lines": longest[0]}}


def _transforms(jaxrnn, jax, cell) -> dict:
    params = cell.init(jax.random.key(0), 3, 8)
    xs = jax.random.normal(jax.random.key(1), (4, 10, 3))

    def outputs(p, xs=xs):
        return jaxrnn.unroll(cell, p, xs)[1]

    tries = {
        "jvp": lambda: jax.jvp(outputs, (params,), (params,)),
        "jacfwd": lambda: jax.jacfwd(lambda x: outputs(params, x).sum())(xs),
        "hessian": lambda: jax.hessian(lambda x: outputs(params, x).sum())(xs[0, :3]),
        "jvp of jit": lambda: jax.jvp(jax.jit(outputs), (params,), (params,)),
    }
    works = {}
    for name, attempt in tries.items():
        try:
            attempt()
            works[name] = True
        except Exception:  # any failure of the transform is what is being counted
            works[name] = False
    return works


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parent.parent)
    repo = parser.parse_args(argv).repo.resolve()
    timing = "import time; t = time.perf_counter(); import jaxrnn; print(time.perf_counter() - t)"
    run = subprocess.run([sys.executable, "-c", timing], cwd=repo, capture_output=True, text=True)
    sys.path.insert(0, str(repo))
    import jax
    import jax.numpy as jnp

    import jaxrnn

    signature = inspect.signature(jaxrnn.unroll)
    names = [name for name in jaxrnn.__all__ if name not in jaxrnn.SUBMODULES]
    cells = {
        "rnn": jaxrnn.rnn(),
        "rnn(relu)": jaxrnn.rnn("relu"),
        "simplified_gru": jaxrnn.simplified_gru(),
        "gru": jaxrnn.gru(),
        "gru(after)": jaxrnn.gru("after"),
        "lstm": jaxrnn.lstm(),
        "lstm(peephole)": jaxrnn.lstm(peephole=True),
        "min_gru": jaxrnn.min_gru(),
        "min_lstm": jaxrnn.min_lstm(),
    }
    cell = jaxrnn.lstm()
    params, xs = cell.init(jax.random.key(0), 3, 8), jnp.ones((4, 10, 3))
    jax.block_until_ready(jaxrnn.unroll(cell, params, xs))
    times = []
    for _ in range(5):
        start = time.perf_counter()
        jax.block_until_ready(jaxrnn.unroll(cell, params, xs))
        times.append(time.perf_counter() - start)
    report = {
        "repo": str(repo),
        "cell_fields": list(jaxrnn.Cell._fields),
        "cell_required": [f for f in jaxrnn.Cell._fields if f not in jaxrnn.Cell._field_defaults],
        "unroll_keyword_options": [
            name for name, p in signature.parameters.items() if p.kind == p.KEYWORD_ONLY
        ],
        "top_level_names": len(names),
        "namespaces": len(jaxrnn.SUBMODULES),
        **_sizes(repo),
        "import_jaxrnn_s": float(run.stdout.split()[-1]),
        "eager_unroll_repeat_ms": round(1e3 * statistics.median(times), 3),
        "transforms": {name: _transforms(jaxrnn, jax, c) for name, c in cells.items()},
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
