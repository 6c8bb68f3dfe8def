"""Writes notebooks/*.ipynb from source/nbNN_*.py; with --execute, also runs them and keeps outputs.

    .venv/bin/python notebooks/build.py             # write notebooks/*.ipynb without outputs
    .venv/bin/python notebooks/build.py --execute   # write, run at full size, save with outputs

Each notebook reads JAXRNN_NOTEBOOK_SIZE; "small" (as the tests set it) shrinks every experiment.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_notebook

HERE = Path(__file__).resolve().parent

SOURCES = HERE / "source"  # one module per notebook, nbNN_name.py, each defining CELLS
sys.path.insert(0, str(SOURCES))


def sources() -> dict[str, Path]:
    """Maps each notebook's file name to the module that holds its cells, in order."""
    return {f"{p.stem[2:]}.ipynb": p for p in sorted(SOURCES.glob("nb[0-9][0-9]_*.py"))}


def cells_of(module_path: Path) -> list:
    spec = importlib.util.spec_from_file_location(module_path.stem, module_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CELLS


KERNEL = {"name": "python3", "display_name": "Python 3", "language": "python"}


def build(name: str) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells_of(sources()[name]))
    nb.metadata["kernelspec"] = KERNEL
    nb.metadata["language_info"] = {"name": "python"}
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"{Path(name).stem[:2]}-{i:02d}"  # stable ids: rebuilds diff cleanly
    return nb


def execute(nb: nbformat.NotebookNode, env: dict | None = None, timeout: int = 600):
    from nbclient import NotebookClient

    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=timeout,
        resources={"metadata": {"path": str(HERE)}},
    )
    saved = os.environ.copy()
    os.environ.update(env or {})
    try:
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return nb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execute", action="store_true", help="run at full size, keep outputs")
    parser.add_argument("names", nargs="*", help="only these notebooks (default: all)")
    args = parser.parse_args()
    for name in args.names or sources():
        nb = build(name)
        if args.execute:
            start = time.perf_counter()
            os.environ.pop("JAXRNN_NOTEBOOK_SIZE", None)  # full size
            execute(nb)
            for cell in nb.cells:
                cell.metadata.pop("execution", None)  # timestamps: noise in diffs
            print(f"{name}: executed in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        nbformat.write(nb, HERE / name)


if __name__ == "__main__":
    main()
