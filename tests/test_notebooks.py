"""Each notebook in notebooks/ runs to the end at small size, draws a figure, ends in takeaways."""

import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
# Only a guard against a cell that never ends, far above any run time: speed is measured in
# benchmarks, and this suite passes on a busy machine, only slower. Each notebook's run time is
# in the printed durations (make test passes --durations).
HANG_GUARD_S = 1800


def test_there_are_notebooks():
    assert PATHS, f"no notebooks in {NOTEBOOKS}"


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_runs(path, monkeypatch):
    nb = nbformat.read(path, as_version=4)
    # A first cell that reports which Python the kernel runs: it must be this environment's.
    nb.cells.insert(0, nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"))
    monkeypatch.setenv("JAXRNN_NOTEBOOK_SIZE", "small")  # the kernel inherits the environment
    # At small size compiling is most of the time: XLA:CPU's cheapest optimisation level halves
    # it and leaves every printed result as it was.
    flags = os.environ.get("XLA_FLAGS", "")
    monkeypatch.setenv("XLA_FLAGS", f"{flags} {FAST_COMPILE}".strip())
    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout=HANG_GUARD_S,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()  # raises CellExecutionError on the first cell that fails

    kernel_python = nb.cells[0].outputs[0]["text"].strip()
    assert os.path.realpath(kernel_python) == os.path.realpath(sys.executable)

    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    assert any("image/png" in out.get("data", {}) for out in outputs), "no figure drawn"

    last = nb.cells[-1]
    assert last.cell_type == "markdown" and last.source.startswith("## Takeaways")
