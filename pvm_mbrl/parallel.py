"""Device mesh and shardings for data-parallel training over envs and the training batch.

One mesh axis, ``data``. Leaves of the train state with a leading env axis (env states, policy
carries, per-env flags and stats, the replay buffer) are split over it; the agent (parameters,
optimiser state) is replicated; the sampled training batch is split along its batch axis. XLA's
SPMD partitioner inserts the collectives (the gradient all-reduce among them), so the same
``jit`` program runs on one device or many. Multi-host start-up: call
``jax.distributed.initialize()`` before building the mesh from ``jax.devices()``.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA = "data"


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh named ``data`` over ``devices`` (default: all)."""
    devices = np.asarray(devices if devices is not None else jax.devices())
    return Mesh(devices.reshape(-1), (DATA,))


def _check_divisible(n: int, mesh: Mesh, what: str) -> None:
    if n % mesh.size:
        raise ValueError(f"{what} ({n}) must be divisible by the number of devices ({mesh.size})")


def train_state_shardings(mesh: Mesh, state, config):
    """Shardings for a ``train.TrainState``: env-axis leaves split, the rest replicated."""
    _check_divisible(config.num_envs, mesh, "num_envs")
    _check_divisible(config.batch_size, mesh, "batch_size")
    split = NamedSharding(mesh, PartitionSpec(DATA))
    replicated = NamedSharding(mesh, PartitionSpec())

    def per_env(x):
        return split if len(x.shape) >= 1 and x.shape[0] == config.num_envs else replicated

    return state.replace(
        agent=jax.tree.map(lambda _: replicated, state.agent),
        env=jax.tree.map(per_env, state.env),
        carry=jax.tree.map(lambda _: split, state.carry),
        flags=jax.tree.map(lambda _: split, state.flags),
        reward=split,
        replay=jax.tree.map(per_env, state.replay),
        key=replicated,
        env_steps=replicated,
        updates=replicated,
        episode=jax.tree.map(lambda _: split, state.episode),
    )


def constrain_batch(mesh: Mesh, batch):
    """Split a sampled training batch ``[B, T, ...]`` along ``B`` over the mesh."""
    spec = NamedSharding(mesh, PartitionSpec(DATA))
    return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, spec), batch)
