"""The device mesh and how arrays are laid out on it.

Two axes: `data` (pure data parallelism) and `fsdp` (data parallelism whose replicas also split the
large parameters and their optimiser state). A batch is split over both axes; a parameter with at
least `fsdp_min_size` elements is split over `fsdp` along its largest divisible dimension, smaller
ones are replicated. With fsdp=1 this is plain data parallelism.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from vidmix.errors import ConfigError

BATCH_AXES = ("data", "fsdp")


def make_mesh(data: int = -1, fsdp: int = 1, devices=None) -> Mesh:
    """data=-1: every device not used by fsdp. devices: default all (of every process)."""
    devices = jax.devices() if devices is None else list(devices)
    n = len(devices)
    if fsdp < 1 or n % fsdp:
        raise ValueError(f"config.mesh.fsdp={fsdp} must divide the {n} devices")
    data = n // fsdp if data == -1 else data
    if data * fsdp != n:
        raise ValueError(f"config.mesh data={data} x fsdp={fsdp} = {data * fsdp} devices, but "
                         f"there are {n}; set config.mesh.data=-1 or make the product {n}")
    return Mesh(np.asarray(devices).reshape(data, fsdp), ("data", "fsdp"))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """A batch's sharding: the leading (batch) axis split over both mesh axes."""
    return NamedSharding(mesh, P(BATCH_AXES))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of `mesh`."""
    return NamedSharding(mesh, P())


def param_spec(shape, fsdp: int, min_size: int) -> P:
    """PartitionSpec of a parameter of `shape`: split over `fsdp` along its largest divisible
    dimension if it has at least `min_size` elements, otherwise replicated."""
    if fsdp == 1 or int(np.prod(shape, dtype=np.int64)) < min_size:
        return P()
    dims = sorted(range(len(shape)), key=lambda d: -shape[d])
    for d in dims:
        if shape[d] % fsdp == 0:
            return P(*[("fsdp" if i == d else None) for i in range(len(shape))])
    return P()


def _stacked(path) -> bool:
    """Is this a parameter (or optimiser state) of scanned layers, with a leading layer axis?"""
    from vidmix.models.stack import STACK_AXIS

    return any(getattr(k, "key", getattr(k, "name", None)) == STACK_AXIS for k in path)


def state_shardings(abstract_state, mesh: Mesh, min_size: int = 2**18):
    """NamedShardings for a pytree of abstract arrays (parameters and optimiser state alike).
    The layer axis of scanned layers is never split: each layer's slice is split as that layer's
    parameter would be (so the size threshold applies per layer)."""
    fsdp = mesh.shape["fsdp"]

    def one(path, x):
        shape = tuple(getattr(x, "shape", ()))
        if _stacked(path) and shape:
            return NamedSharding(mesh, P(None, *param_spec(shape[1:], fsdp, min_size)))
        return NamedSharding(mesh, param_spec(shape, fsdp, min_size))

    return jax.tree_util.tree_map_with_path(one, abstract_state)


def global_batch(batch: dict, mesh: Mesh) -> dict:
    """This process's numpy batch -> global arrays split over (data, fsdp) across all hosts."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
            for k, v in batch.items()}


def per_process_batch(batch_size: int, mesh, what: str) -> int:
    """This process's share of a global batch of `batch_size` over `mesh`, which must split it
    evenly over the devices (`what`: the config key, for the error)."""
    n, p = mesh.size, jax.process_count()
    if batch_size % n:
        raise ConfigError(f"{what}={batch_size} must be a multiple of the {n} devices "
                         f"({p} process(es)); e.g. {max(n, batch_size // n * n)}")
    return batch_size // p
