"""Runs every example the documentation shows, as a reader would, in a process of its own.

``python tests/docs_examples.py [pages] [docstrings]`` executes the ```python blocks of
``README.md`` and of every page under ``docs/`` (a page's blocks in order, in one namespace, from
an empty working folder) and the ``>>>`` examples of every docstring of the package (each in its
module's namespace, with ``jax``, ``jnp``, ``np``, ``optax``, ``nnx`` and ``jaxrnn`` imported),
with JAX's default numerics (float32), not the test suite's (programs compile as cheaply as
the suite's do); with no argument, both parts. It prints one JSON object: the failures, and how
many of each kind ran.
"""

from __future__ import annotations

import contextlib
import doctest
import importlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(
    r"^(?P<indent>[ ]*)```(?P<lang>[\w-]*)(?P<info>[^\n]*)\n(?P<body>.*?)^(?P=indent)```",
    re.M | re.S,
)
TITLE = re.compile(r'title="(?P<file>[\w.-]+\.py)"')


def code_blocks(page: Path, language: str, *, scripts: bool = False) -> list[tuple]:
    """(line number, source) of each fenced block of ``language`` on a Markdown page; with
    ``scripts``, (line number, file name, source) of the blocks titled with a script's file name
    (```python title="x.py"), which the others leave out."""
    text = page.read_text()
    blocks = []
    for match in FENCE.finditer(text):
        title = TITLE.search(match["info"])
        if match["lang"] != language or bool(title) != scripts:
            continue
        indent = len(match["indent"])
        body = "\n".join(line[indent:] for line in match["body"].splitlines())
        line = text[: match.start()].count("\n") + 1
        blocks.append((line, title["file"], body) if scripts else (line, body))
    return blocks


def run_script(where: str, name: str, source: str) -> list[dict]:
    """Runs a block shown as a script file in a process of its own, as the page says to. A
    script of a multi-process run (``jax.distributed``) runs alone: process 0 of 1."""
    Path(name).write_text(source)
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        port = probe.getsockname()[1]
    alone = {"COORDINATOR": f"localhost:{port}", "NUM_PROCESSES": "1", "RANK": "0"}
    ran = subprocess.run(
        [sys.executable, name], capture_output=True, text=True, env={**os.environ, **alone}
    )
    if ran.returncode != 0:
        return [{"where": where, "error": ran.stdout[-2000:] + ran.stderr[-4000:]}]
    return []


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def run_page(page: Path, root: Path = ROOT) -> list[dict]:
    """Runs a page's ```python blocks in order in one namespace; the first failure, if any."""
    namespace: dict = {"__name__": "__main__"}
    for line, source in code_blocks(page, "python"):
        where = f"{page.relative_to(root)}:{line}"
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                exec(compile(source, where, "exec"), namespace)
        except BaseException:  # noqa: BLE001 - a failing example is reported, whatever it raised
            return [{"where": where, "error": traceback.format_exc()}]
    failures = []
    for line, name, source in code_blocks(page, "python", scripts=True):
        failures += run_script(f"{page.relative_to(root)}:{line}", name, source)
    return failures


def run_docstrings(module_name: str) -> tuple[int, list[dict]]:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from flax import nnx

    import jaxrnn

    shared = {"jax": jax, "jnp": jnp, "np": np, "optax": optax, "nnx": nnx, "jaxrnn": jaxrnn}
    module = importlib.import_module(f"jaxrnn.{module_name}")
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    failures, examples = [], 0
    for test in finder.find(module, extraglobs=shared):
        if not test.name.startswith(f"jaxrnn.{module_name}"):
            continue  # imported from elsewhere: checked in its own module
        report = io.StringIO()
        result = runner.run(test, out=report.write)
        examples += result.attempted
        if result.failed:
            failures.append({"where": test.name, "error": report.getvalue()})
    return examples, failures


def main(parts: list[str]) -> int:
    """Runs the pages' examples ("pages"), the docstrings' ("docstrings"), or both (no part)."""
    from jaxrnn import SUBMODULES

    failures, blocks, docstring_examples = [], 0, 0
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        if not parts or "pages" in parts:
            for page in pages():
                blocks += len(code_blocks(page, "python"))
                blocks += len(code_blocks(page, "python", scripts=True))
                failures += run_page(page)
        if not parts or "docstrings" in parts:
            for module_name in SUBMODULES:
                examples, failed = run_docstrings(module_name)
                docstring_examples += examples
                failures += failed
        os.chdir(ROOT)
    print(
        json.dumps(
            {"failures": failures, "blocks": blocks, "docstring_examples": docstring_examples}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
