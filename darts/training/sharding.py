"""Data-parallel device mesh: the batch is split over devices, parameters are replicated."""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

DATA_AXIS = "data"


def make_mesh(num_devices: int | None = None) -> jax.sharding.Mesh:
  """A 1-D mesh over the first `num_devices` devices (all by default), across hosts too."""
  num_devices = num_devices or jax.device_count()
  # Auto axes: with the Explicit default, embedding gathers on sharded batches fail to lower.
  return jax.make_mesh((num_devices,), (DATA_AXIS,),
                       axis_types=(jax.sharding.AxisType.Auto,),
                       devices=jax.devices()[:num_devices])


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def shard_batch(batch: dict[str, np.ndarray], mesh: jax.sharding.Mesh) -> dict[str, jax.Array]:
  """Places a host batch on the mesh, split along its leading (example) axis."""
  size = mesh.shape[DATA_AXIS]
  for key, value in batch.items():
    if value.shape[0] % size:
      raise ValueError(f"Batch field {key!r} has {value.shape[0]} rows, not divisible by the "
                       f"{size} devices of the mesh; choose a batch size that is.")
  return jax.device_put(batch, batch_sharded(mesh))
