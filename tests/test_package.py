"""The package's face: every documented name and submodule is reachable from ``import jaxrnn``."""

import importlib
import pkgutil
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
