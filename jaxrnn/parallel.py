"""Data parallelism on JAX's own machinery: a device mesh, the batch sharded, parameters replicated.

    mesh = jaxrnn.parallel.data_mesh(4)                        # one mesh axis, "data"
    params, opt_state = jaxrnn.parallel.replicate((params, opt_state), mesh)
    xs, ys = jaxrnn.parallel.shard_batch((xs, ys), mesh)       # rows split over the devices
    params, opt_state, metrics = train_step(params, opt_state, xs, ys)

The train step is the usual `jaxrnn.make_train_step`: ``jax.jit`` propagates the shardings of its
inputs, each device runs the forward and backward pass on its rows, and XLA inserts the
all-reduce that sums the gradients, so the updated parameters come back replicated and equal to
those of a one-device run up to float rounding.

In a run over several processes (`jax.distributed.initialize`), `data_mesh` spans the devices of
every process and each process passes `shard_batch` its own rows, its slice of the global batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxrnn._checks import fail

DATA_AXIS = "data"


def data_mesh(devices: int | Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh, axis ``"data"``, over which batches are split.

    Args:
      devices: None for every device (`jax.devices()`: all of this machine's, or with
        `jax.distributed.initialize` those of every process); an int n for the first n of them;
        or the devices themselves.
    """
    fn = "data_mesh"
    available = jax.devices()
    if devices is None:
        chosen = available
    elif isinstance(devices, int | np.integer) and not isinstance(devices, bool):
        if not 1 <= devices <= len(available):
            fail(
                fn,
                f"expected devices between 1 and jax.device_count() = {len(available)}, "
                f"got {devices}",
                "on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N simulates N devices",
            )
        chosen = available[:devices]
    else:
        chosen = list(devices)
        if not chosen or not all(isinstance(d, jax.Device) for d in chosen):
            fail(fn, f"expected devices None, an int or a list of jax devices, got {devices!r}")
        if len(set(chosen)) != len(chosen):
            fail(fn, f"expected distinct devices, got {chosen}")
    # Auto: jit works out the sharding of every intermediate from the inputs' (GSPMD), so the
    # train step needs no sharding annotations of its own.
    return Mesh(np.asarray(chosen), (DATA_AXIS,), axis_types=(AxisType.Auto,))


def _check_mesh(fn: str, mesh: Any) -> None:
    if not isinstance(mesh, Mesh) or mesh.axis_names != (DATA_AXIS,):
        fail(
            fn,
            f"expected mesh to be a jax.sharding.Mesh with one axis, {DATA_AXIS!r}, got {mesh!r}",
            "make it with jaxrnn.parallel.data_mesh",
        )


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Every array of ``tree`` (params, optimizer state) copied whole onto each device of ``mesh``.

    In a run over several processes every process must pass the same values.
    """
    _check_mesh("replicate", mesh)
    return jax.device_put(tree, NamedSharding(mesh, P()))


def shard_batch(tree: Any, mesh: Mesh) -> Any:
    """Every array of ``tree`` split along its leading (batch) axis over the ``"data"`` axis.

    Each of n devices holds B / n consecutive rows of a batch of B rows, so B must be a multiple
    of n. In a run over several processes each process passes its own rows, its slice of the
    global batch (with `data_mesh()`, process 0 the first rows), and gets the global arrays back.
    ``None`` leaves (an absent ``lengths``, say) stay None.

    Args:
      tree: a pytree of arrays with a common leading batch axis, e.g. ``(inputs, targets)``.
      mesh: from `data_mesh`.
    """
    fn = "shard_batch"
    _check_mesh(fn, mesh)
    sharding = NamedSharding(mesh, P(DATA_AXIS))
    # A process holds the rows of its own devices only: the batch it passes is split over those.
    local_devices = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)
    several_processes = local_devices != mesh.devices.size

    def place(x):
        shape = np.shape(x)
        if not shape:
            fail(fn, "expected every array of the batch to have a leading batch axis, got a scalar")
        is_global = isinstance(x, jax.Array) and not x.is_fully_addressable
        devices = mesh.devices.size if is_global else local_devices
        if shape[0] % devices:
            fail(
                fn,
                f"expected a batch size divisible by the {devices} devices, got {shape[0]}",
                "choose a batch size that is a multiple of the device count",
            )
        if several_processes and not is_global:
            return jax.make_array_from_process_local_data(sharding, np.asarray(x))
        return jax.device_put(x, sharding)

    return jax.tree.map(place, tree)
