"""Data parallelism: on 4 simulated CPU devices, training equals the one-device run.

JAX fixes its device count when it starts, and this process has started with one CPU device, so
the 4-device side runs in one subprocess: this file run as a script with
``XLA_FLAGS=--xla_force_host_platform_device_count=4``. It writes its measurements (shardings,
losses, error messages) to JSON and its checkpoints to a shared folder; this process computes the
one-device references and the tests compare the two. Two more processes of 2 devices each, joined
by ``jax.distributed.initialize``, check the path for several hosts.

Tolerance: the 4 devices each sum the gradient over their own rows and XLA then adds the 4 partial
sums, another order of float32 additions than one device's, so losses and parameters agree to
float32 rounding, not bit for bit: rtol 1e-5, atol 1e-6.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import jaxrnn
from jaxrnn import cli, lm_state
from jaxrnn.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from jaxrnn.lm import LMConfig, init_lm, init_lm_carry, lm_loss
from jaxrnn.lm_train import (
    CHECKPOINT_NAME,
    History,
    TrainConfig,
    load_lm,
    make_corpus,
    train_lm,
)

DEVICES = 4
TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}
# Params after Adam steps: Adam divides each update by the root of its second moment, so a
# gradient entry near zero that differs in its last bits (another summation order) moves its
# parameter by a few 1e-6 more or less; the losses above are held to TOLERANCE.
PARAMS_TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}

NAMES = resources.files("jaxrnn").joinpath("data/names.txt").read_text().split()
LINES_TEXT = "\n".join(NAMES[:400]) + "\n"
# ~1,000 training characters: 7 chunks of 8 rows × 16, so 12 steps reset the carry once on the way.
STREAM_TEXT = "\n".join(NAMES[:160])

LINES_TRAIN = TrainConfig(
    steps=16, batch_size=16, eval_every=8, sample_every=0, checkpoint_every=100, devices=1
)
STOP_AT = 7  # where the runs that are resumed on the other device count stop
STREAM_TRAIN = TrainConfig(
    steps=12,
    batch_size=8,
    seq_len=16,
    stateful=True,
    eval_every=12,
    eval_rows=4,
    sample_every=0,
    checkpoint_every=100,
    devices=1,
)
# The same run as LINES_TRAIN through the command line (its defaults are TrainConfig's).
CLI_TRAIN = [
    "--hidden", "16", "--dropout", "0.2", "--steps", "16", "--batch", "16", "--eval-every", "8",
    "--sample-every", "0", "--checkpoint-every", "100", "--ngram", "0", "--no-progress",
]  # fmt: skip


def lines_model(corpus):
    return LMConfig(corpus.vocab.size, cell_name="lstm", hidden_size=16, dropout_rate=0.2)


def stream_model(corpus):
    return LMConfig(corpus.vocab.size, cell_name="gru", hidden_size=16, embedding_size=8)


def run(corpus, model, train, out_dir=None, **kwargs):
    kwargs.setdefault("log", lambda message: None)
    return train_lm(corpus, model, train, out_dir, progress=False, **kwargs)


def history_of(result_or_metadata) -> History:
    if isinstance(result_or_metadata, dict):
        return History.from_dict(result_or_metadata["history"])
    return result_or_metadata.history


def losses(result_or_metadata) -> np.ndarray:
    return np.asarray(history_of(result_or_metadata).loss)


def valid_nats(result_or_metadata) -> np.ndarray:
    return np.asarray([row.nats for row in history_of(result_or_metadata).valid])


# ------------------------------------------------------ the train step, shared by both processes

STEP_MODEL = LMConfig(30, cell_name="lstm", hidden_size=16, dropout_rate=0.2)
STEP_BATCH, STEP_LEN, STEP_COUNT = 16, 12, 6


def train_step_run(mesh, rows: slice = slice(None)) -> tuple[list[float], Any, dict]:
    """``STEP_COUNT`` Adam steps of a stateful language model, the carry passed on between steps;
    on ``mesh`` (batch and carry sharded, params replicated) or, for None, on one device. With
    several processes each passes ``rows``, its own slice of the batch.

    Returns the losses, the final params, and (on a mesh of one process) how everything was placed.
    """
    optimizer = jaxrnn.make_optimizer(1e-2)

    def loss_fn(params, inputs, targets, carry, step):
        key = jax.random.fold_in(jax.random.key(1), step)
        return lm_loss(params, STEP_MODEL, inputs, targets, carry=carry, dropout_key=key)

    train_step = jaxrnn.make_train_step(loss_fn, optimizer, has_aux=True)
    params = init_lm(jax.random.key(0), STEP_MODEL)
    opt_state = optimizer.init(params)
    ids = np.random.default_rng(0).integers(0, 30, (STEP_BATCH, STEP_COUNT * STEP_LEN + 1))
    ids = ids[rows].astype(np.int32)
    carry = init_lm_carry(params, STEP_MODEL, (len(ids),))
    placement = {}
    describe = mesh is not None and jax.process_count() == 1
    if mesh is not None:
        params, opt_state = jaxrnn.parallel.replicate((params, opt_state), mesh)
        carry = jaxrnn.parallel.shard_batch(carry, mesh)
    step_losses = []
    for step in range(STEP_COUNT):
        cols = slice(step * STEP_LEN, (step + 1) * STEP_LEN)
        batch = ids[:, cols], ids[:, cols.start + 1 : cols.stop + 1]
        if mesh is not None:
            batch = jaxrnn.parallel.shard_batch(batch, mesh)
        if describe and step == 0:
            placement["batch"] = describe_sharded(batch[0], mesh)
            placement["params_in"] = describe_replicated((params, opt_state), mesh)
            hlo = train_step.lower(params, opt_state, *batch, carry, step).compile().as_text()
            placement["all_reduce_in_compiled_step"] = "all-reduce" in hlo
        params, opt_state, metrics, carry = train_step(params, opt_state, *batch, carry, step)
        step_losses.append(float(metrics.loss))
    if describe:
        placement["params_out"] = describe_replicated((params, opt_state), mesh)
        placement["carry_out"] = [describe_sharded(leaf, mesh) for leaf in jax.tree.leaves(carry)]
    return step_losses, params, placement


def describe_sharded(x: jax.Array, mesh) -> dict:
    """How ``x`` is laid out: its spec, and per device the rows it holds."""
    rows = x.shape[0] // mesh.devices.size
    shards = sorted(x.addressable_shards, key=lambda s: s.device.id)
    return {
        "spec_is_data": x.sharding.is_equivalent_to(NamedSharding(mesh, P("data")), x.ndim),
        "devices": [s.device.id for s in shards],
        "rows": [[s.index[0].start, s.index[0].stop] for s in shards],
        "shard_shapes": [list(s.data.shape) for s in shards],
        "expected_rows": [[i * rows, (i + 1) * rows] for i in range(mesh.devices.size)],
        "shards_hold_their_rows": all(
            np.array_equal(np.asarray(s.data), np.asarray(x)[s.index]) for s in shards
        ),
    }


def describe_replicated(tree, mesh) -> dict:
    leaves = [leaf for leaf in jax.tree.leaves(tree) if isinstance(leaf, jax.Array)]
    return {
        "leaves": len(leaves),
        "fully_replicated": all(leaf.sharding.is_fully_replicated for leaf in leaves),
        "on_every_device": all(
            leaf.sharding.device_set == set(mesh.devices.flat) for leaf in leaves
        ),
        "every_copy_whole_and_equal": all(
            np.array_equal(np.asarray(s.data), np.asarray(leaf))
            for leaf in leaves
            for s in leaf.addressable_shards
        ),
    }


# ----------------------------------------------------------------------- the 4-device subprocess


def wait_for(path: Path, writer: subprocess.Popen | None = None, timeout: float = 1800) -> bool:
    """Waits until the other process has written ``path`` (a checkpoint appears whole: it is
    renamed into place); False if ``writer`` exited first. ``timeout`` only ends a wait that would
    otherwise hang: it is far above any run time, not a speed check."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if writer is not None and writer.poll() is not None:
            return False
        assert time.monotonic() < deadline, f"no {path} after {timeout} s"
        time.sleep(0.05)
    return True


def four_device_checks(out: Path, one_device_checkpoint: Path) -> dict:
    """Everything measured on 4 devices; runs in the subprocess (see `main`)."""
    assert jax.device_count() == DEVICES, jax.devices()
    results = {"device_count": jax.device_count()}
    mesh = jaxrnn.parallel.data_mesh()
    results["mesh"] = {
        "axis_names": list(mesh.axis_names),
        "devices": [d.id for d in mesh.devices.flat],
        "first_two": [d.id for d in jaxrnn.parallel.data_mesh(2).devices.flat],
    }
    step_losses, params, placement = train_step_run(mesh)
    results["train_step"] = {"losses": step_losses, **placement}
    np.savez(out / "train_step_params.npz", *jax.tree.leaves(params))

    lines = make_corpus(LINES_TEXT, mode="lines")
    model = lines_model(lines)
    four = LINES_TRAIN._replace(devices=DEVICES)
    run(lines, model, four, out / "lines_four", stop_after=STOP_AT)
    # devices=None: as many of the 4 devices as divide the batch of 16, that is all 4
    automatic = LINES_TRAIN._replace(devices=None)
    resumed = out / "resumed_on_four"
    resumed.mkdir()
    wait_for(one_device_checkpoint)  # written by the one-device process meanwhile
    shutil.copy(one_device_checkpoint, resumed / CHECKPOINT_NAME)
    messages = []
    run(lines, model, automatic, resumed, resume=True, log=messages.append)
    results["automatic_batch_16"] = next(m for m in messages if m.startswith("data-parallel"))

    text_file = out / "names.txt"
    text_file.write_text(LINES_TEXT)
    cli_out = out / "cli_four"
    results["cli_code"] = cli.main(
        ["train", str(text_file), "--out", str(cli_out), *CLI_TRAIN, "--devices", str(DEVICES)]
    )

    stream = make_corpus(STREAM_TEXT, mode="stream")
    stream_four = STREAM_TRAIN._replace(devices=DEVICES)
    results["stream_losses"] = losses(run(stream, stream_model(stream), stream_four)).tolist()

    class Reported(Exception):
        """Raised by the log below: the run has said how many devices it uses; stop it there."""

    def first_message(batch_size):
        said = []

        def log(text):
            said.append(text)
            raise Reported

        with contextlib.suppress(Reported):
            run(lines, model, automatic._replace(batch_size=batch_size), log=log)
        return said[0]

    results["automatic_batch_6"] = first_message(6)

    def error(call):
        try:
            call()
        except jaxrnn.InputError as raised:
            return str(raised)
        return None

    results["errors"] = {
        "train_lm_batch": error(lambda: run(lines, model, four._replace(batch_size=30))),
        "train_lm_devices": error(lambda: run(lines, model, four._replace(devices=8))),
        "shard_batch": error(lambda: jaxrnn.parallel.shard_batch(np.zeros((30, 3)), mesh)),
        "data_mesh": error(lambda: jaxrnn.parallel.data_mesh(8)),
    }
    return results


def one_of_two_processes(process_id: int, port: int, out: Path) -> None:
    """One of two processes of 2 devices each, joined by `jax.distributed.initialize` into one
    mesh of 4, each feeding its own half of the batch; runs in a subprocess (see `main`)."""
    jax.distributed.initialize(f"localhost:{port}", num_processes=2, process_id=process_id)
    assert (jax.process_count(), jax.device_count(), jax.local_device_count()) == (2, 4, 2)
    half = STEP_BATCH // 2
    rows = slice(process_id * half, (process_id + 1) * half)
    step_losses, params, _ = train_step_run(jaxrnn.parallel.data_mesh(), rows)
    leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(params)]  # replicated: whole here
    np.savez(out / f"process_{process_id}.npz", np.asarray(step_losses), *leaves)
    jax.distributed.shutdown()


def main() -> None:
    """The subprocesses: ``python test_parallel.py OUT ONE_DEVICE_CHECKPOINT`` on 4 devices, and
    ``python test_parallel.py --process ID PORT OUT`` for each of two processes of 2 devices."""
    # The settings conftest.py gives the tests of this process.
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_numpy_rank_promotion", "raise")
    jax.config.update("jax_default_matmul_precision", "highest")
    if sys.argv[1] == "--process":
        one_of_two_processes(int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
        return
    out, checkpoint = Path(sys.argv[1]), Path(sys.argv[2])
    results = four_device_checks(out, checkpoint)
    (out / "results.json").write_text(json.dumps(results, indent=1))


# --------------------------------------------------------------------- this process: one device


def start(devices: int, *args) -> subprocess.Popen:
    """This file run as a script, on ``devices`` simulated CPU devices."""
    flags = os.environ.get("XLA_FLAGS", "")
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count={devices}".strip(),
    }
    return subprocess.Popen(
        [sys.executable, __file__, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


@pytest.fixture(scope="module")
def corpora():
    return make_corpus(LINES_TEXT, mode="lines"), make_corpus(STREAM_TEXT, mode="stream")


@pytest.fixture(scope="module")
def both(tmp_path_factory, corpora):
    """(4-device results, their folder, one-device references). The two processes run side by
    side, and each resumes the checkpoint the other writes at step ``STOP_AT`` once it appears."""
    if jax.default_backend() != "cpu":
        pytest.skip("the 4 simulated devices are CPUs: the one-device references must be too")
    lines, stream = corpora
    model = lines_model(lines)
    one, out = tmp_path_factory.mktemp("one_device"), tmp_path_factory.mktemp("four_devices")
    stopped = one / "stopped"
    process = start(DEVICES, out, stopped / CHECKPOINT_NAME)
    try:
        reference = {"stopped": run(lines, model, LINES_TRAIN, stopped, stop_after=STOP_AT)}
        reference["train_step_losses"], reference["train_step_params"], _ = train_step_run(None)
        reference["lines"] = run(lines, model, LINES_TRAIN)
        reference["stream"] = run(stream, stream_model(stream), STREAM_TRAIN)
        four_checkpoint = out / "lines_four" / CHECKPOINT_NAME
        if wait_for(four_checkpoint, process):
            resumed = one / "resumed_from_four"
            resumed.mkdir()
            shutil.copy(four_checkpoint, resumed / CHECKPOINT_NAME)
            reference["resumed_from_four"] = run(lines, model, LINES_TRAIN, resumed, resume=True)
    except BaseException:
        process.kill()
        raise
    finally:
        output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output
    return json.loads((out / "results.json").read_text()), out, reference


def checkpoint_header(path: Path) -> dict:
    """The JSON document of a checkpoint: every array's path, shape and dtype, and the metadata."""
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("metadata.json"))


def test_data_mesh_spans_the_devices(both):
    four, _, _ = both
    assert four["device_count"] == DEVICES
    assert four["mesh"] == {"axis_names": ["data"], "devices": [0, 1, 2, 3], "first_two": [0, 1]}


def test_batch_is_split_by_rows_and_params_replicated_on_every_device(both):
    four, _, _ = both
    placement = four["train_step"]
    batch = placement["batch"]
    assert batch["spec_is_data"] and batch["shards_hold_their_rows"]
    assert batch["devices"] == [0, 1, 2, 3]
    assert batch["rows"] == batch["expected_rows"] == [[0, 4], [4, 8], [8, 12], [12, 16]]
    assert batch["shard_shapes"] == [[STEP_BATCH // DEVICES, STEP_LEN]] * DEVICES
    for where in ("params_in", "params_out"):  # what the step returns is replicated too
        assert placement[where] == {
            "leaves": 19,  # LSTM and head params, Adam's two moments of each, its step count
            "fully_replicated": True,
            "on_every_device": True,
            "every_copy_whole_and_equal": True,
        }, where
    # the carry the step passes on stays split by rows, like the batch it came from
    assert len(placement["carry_out"]) == 2  # the LSTM's (c, a)
    for carry in placement["carry_out"]:
        assert carry["spec_is_data"] and carry["shards_hold_their_rows"]
        assert carry["rows"] == carry["expected_rows"]
    assert placement["all_reduce_in_compiled_step"]  # the compiler sums the gradients


def test_train_step_on_four_devices_equals_one_device(both):
    four, out, reference = both
    got, expected = four["train_step"]["losses"], reference["train_step_losses"]
    assert len(got) == STEP_COUNT
    np.testing.assert_allclose(got, expected, **TOLERANCE)
    saved = np.load(out / "train_step_params.npz")
    expected_params = jax.tree.leaves(reference["train_step_params"])
    assert len(saved.files) == len(expected_params)
    for i, leaf in enumerate(expected_params):
        np.testing.assert_allclose(saved[f"arr_{i}"], leaf, **PARAMS_TOLERANCE)


def test_train_lm_lines_through_cli_on_four_devices_equals_one_device(both):
    four, out, reference = both
    assert four["cli_code"] == 0
    params, _, _, metadata = load_lm(out / "cli_four" / CHECKPOINT_NAME)
    # the command line built the same configuration as LINES_TRAIN but for the device count
    assert metadata["train"] == LINES_TRAIN._replace(devices=DEVICES)._asdict()
    expected = reference["lines"]
    assert len(losses(metadata)) == LINES_TRAIN.steps
    np.testing.assert_allclose(losses(metadata), losses(expected), **TOLERANCE)
    np.testing.assert_allclose(valid_nats(metadata), valid_nats(expected), **TOLERANCE)
    for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(expected.params), strict=True):
        np.testing.assert_allclose(got, want, **PARAMS_TOLERANCE)


def test_train_lm_stream_stateful_on_four_devices_equals_one_device(both):
    four, _, reference = both
    assert len(four["stream_losses"]) == STREAM_TRAIN.steps
    np.testing.assert_allclose(four["stream_losses"], losses(reference["stream"]), **TOLERANCE)


def test_one_device_checkpoint_resumes_on_four_devices(both):
    four, out, reference = both
    # devices=None on 4 devices with a batch of 16: all 4
    assert four["automatic_batch_16"] == (
        "data-parallel training on 4 of 4 local devices, 4 rows of each batch on each"
    )
    metadata = read_metadata(out / "resumed_on_four" / CHECKPOINT_NAME)
    assert metadata["step"] == LINES_TRAIN.steps and metadata["train"]["devices"] is None
    got, expected = losses(metadata), losses(reference["lines"])
    assert got[:STOP_AT].tolist() == expected[:STOP_AT].tolist()  # the part trained on one device
    np.testing.assert_allclose(got, expected, **TOLERANCE)


def test_four_device_checkpoint_is_the_same_file_and_resumes_on_one_device(both):
    _, out, reference = both
    four_header, one_header = (
        checkpoint_header(path)
        for path in (out / "lines_four" / CHECKPOINT_NAME, reference["stopped"].checkpoint)
    )
    # the same arrays, whole, of the same shapes and dtypes; the same metadata but the devices
    assert four_header["leaves"] == one_header["leaves"]
    assert four_header["metadata"].keys() == one_header["metadata"].keys()
    assert four_header["metadata"]["train"] == LINES_TRAIN._replace(devices=DEVICES)._asdict()
    assert four_header["metadata"]["step"] == one_header["metadata"]["step"] == STOP_AT
    resumed, expected = reference["resumed_from_four"], reference["lines"]
    assert resumed.step == LINES_TRAIN.steps
    np.testing.assert_allclose(losses(resumed), losses(expected), **TOLERANCE)
    for got, want in zip(
        jax.tree.leaves(resumed.params), jax.tree.leaves(expected.params), strict=True
    ):
        np.testing.assert_allclose(got, want, **PARAMS_TOLERANCE)


def test_automatic_device_count_and_bad_device_counts(both):
    four, _, _ = both
    # devices=None with a batch of 6 on 4 devices: the most devices that divide 6
    assert four["automatic_batch_6"] == (
        "data-parallel training on 3 of 4 local devices, 2 rows of each batch on each"
    )
    hint = "on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N simulates N devices"
    assert four["errors"] == {
        "train_lm_batch": "train_lm: expected batch_size divisible by the 4 devices, got 30; "
        "choose a batch size that is a multiple of the device count",
        "train_lm_devices": "train_lm: expected devices between 1 and 4 (the local device "
        f"count), got 8; None uses as many as divide batch_size; {hint}",
        "shard_batch": "shard_batch: expected a batch size divisible by the 4 devices, got 30; "
        "choose a batch size that is a multiple of the device count",
        "data_mesh": "data_mesh: expected devices between 1 and jax.device_count() = 4, got 8; "
        + hint,
    }


def test_two_processes_joined_by_jax_distributed_train_like_one_device(both, tmp_path):
    """The several-hosts path on one machine: two processes, each with its own devices and its own
    half of every batch, make one data-parallel run."""
    _, _, reference = both
    with socket.socket() as free:  # a port for the coordinator that process 0 starts
        free.bind(("localhost", 0))
        port = free.getsockname()[1]
    processes = [start(2, "--process", i, port, tmp_path) for i in range(2)]
    # One that fails leaves the other waiting for it: stop waiting then, and end both.
    deadline = time.monotonic() + 1800  # a hang guard, not a speed check
    while time.monotonic() < deadline:
        codes = [process.poll() for process in processes]
        if None not in codes or any(code not in (None, 0) for code in codes):
            break
        time.sleep(0.05)
    for process in processes:
        if process.poll() is None:
            process.kill()
        output, _ = process.communicate()
        assert process.returncode == 0, output
    expected = jax.tree.leaves(reference["train_step_params"])
    for i in range(2):
        saved = np.load(tmp_path / f"process_{i}.npz")
        got = [saved[f"arr_{k}"] for k in range(len(saved.files))]
        np.testing.assert_allclose(got[0], reference["train_step_losses"], **TOLERANCE)
        assert len(got[1:]) == len(expected)
        for leaf, want in zip(got[1:], expected, strict=True):
            np.testing.assert_allclose(leaf, want, **PARAMS_TOLERANCE)


# ------------------------------------------------------------------- one device, in this process


def test_data_mesh_of_one_device():
    for devices in (None, 1, jax.devices()[:1]):
        mesh = jaxrnn.parallel.data_mesh(devices)
        assert mesh.axis_names == ("data",) and list(mesh.devices.flat) == jax.devices()[:1]
    with pytest.raises(jaxrnn.InputError, match="data_mesh: expected distinct devices, got"):
        jaxrnn.parallel.data_mesh(jax.devices() * 2)


@pytest.mark.parametrize(
    "devices, expected",
    [
        (2, "data_mesh: expected devices between 1 and jax.device_count() = 1, got 2"),
        (0, "data_mesh: expected devices between 1 and jax.device_count() = 1, got 0"),
        ([], "data_mesh: expected devices None, an int or a list of jax devices, got []"),
        ("cpu", "data_mesh: expected devices None, an int or a list of jax devices, got 'cpu'"),
    ],
)
def test_data_mesh_rejects_bad_devices(devices, expected):
    with pytest.raises(jaxrnn.InputError) as error:
        jaxrnn.parallel.data_mesh(devices)
    assert str(error.value).startswith(expected)


def test_shard_batch_and_replicate_on_one_device_keep_the_values():
    mesh = jaxrnn.parallel.data_mesh(1)
    inputs = np.arange(12, dtype=np.int32).reshape(3, 4)
    placed, lengths, absent = jaxrnn.parallel.shard_batch(
        (inputs, np.ones(3, np.int32), None), mesh
    )
    assert absent is None
    assert placed.sharding == NamedSharding(mesh, P("data")) and placed.dtype == np.int32
    assert np.array_equal(placed, inputs) and np.array_equal(lengths, np.ones(3))
    params = {"w": jnp.ones((2, 3), jnp.float32), "b": jnp.zeros(3, jnp.float32)}
    replicated = jaxrnn.parallel.replicate(params, mesh)
    assert replicated["w"].sharding == NamedSharding(mesh, P())
    assert jax.tree.map(np.array_equal, replicated, params) == {"w": True, "b": True}


def test_shard_batch_and_replicate_reject_scalars_and_other_meshes():
    mesh = jaxrnn.parallel.data_mesh(1)
    with pytest.raises(jaxrnn.InputError, match="shard_batch: expected every array of the batch"):
        jaxrnn.parallel.shard_batch((np.zeros(3), np.float32(1.0)), mesh)
    with pytest.raises(jaxrnn.InputError, match="shard_batch: expected mesh to be a jax.sharding"):
        jaxrnn.parallel.shard_batch(np.zeros(3), jax.devices())
    other = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("batch",))
    with pytest.raises(
        jaxrnn.InputError, match="replicate: expected mesh .* with one axis, .data."
    ):
        jaxrnn.parallel.replicate(np.zeros(3), other)


def test_train_lm_with_more_devices_than_there_are_is_input_error(corpora):
    lines, _ = corpora
    with pytest.raises(jaxrnn.InputError, match=r"train_lm: expected devices between 1 and 1 "):
        run(lines, lines_model(lines), LINES_TRAIN._replace(devices=2))
    with pytest.raises(jaxrnn.InputError, match=r"train_lm: expected devices .* got 0"):
        run(lines, lines_model(lines), LINES_TRAIN._replace(devices=0))


def test_checkpoint_written_before_the_devices_field_still_loads(both, corpora, tmp_path):
    _, _, reference = both
    lines, _ = corpora
    template = jax.eval_shape(
        lambda: lm_state.init_train_state(lines_model(lines), LINES_TRAIN, "lines")._asdict()
    )
    state, metadata = load_checkpoint(reference["stopped"].checkpoint, template)
    del metadata["train"]["devices"]
    save_checkpoint(tmp_path / CHECKPOINT_NAME, state, metadata)
    params, model, _, loaded = load_lm(tmp_path / CHECKPOINT_NAME)
    assert "devices" not in loaded["train"] and model == lines_model(lines)
    for got, want in zip(jax.tree.leaves(params), jax.tree.leaves(state["params"]), strict=True):
        assert np.array_equal(got, want)


if __name__ == "__main__":
    main()
