"""Adapter exposing a state-observation task as a ``brax.envs.Env`` (e.g. for brax PPO).

The brax observation is ``obs["state"]`` (flat float32). Our per-episode ``info`` rides along
in brax's ``State.info``; goals and object positions live in ``mjx.Data`` (``pipeline_state``),
so brax's own auto-reset (which restores the first ``pipeline_state``) keeps them consistent.
Use ``obs_mode="state"`` and no wrappers: brax adds its own episode and batching wrappers.

brax 0.14.2's PPO calls ``jax.device_put_replicated``, which the pinned JAX no longer has:
call :func:`install_device_put_replicated` once before ``brax.training`` runs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from brax.envs import base as brax_base

from pvm_mbrl.envs import core


class BraxAdapter(brax_base.Env):
    """Wrap an unwrapped task env with ``obs_mode`` including "state" as a brax ``Env``."""

    def __init__(self, env: core.Env):
        if "state" not in env.observation_space:
            raise ValueError("BraxAdapter needs an env built with obs_mode='state'")
        self._env = env

    def reset(self, rng) -> brax_base.State:
        s = self._env.reset(rng)
        return brax_base.State(
            pipeline_state=s.data,
            obs=s.obs["state"],
            reward=s.reward,
            done=s.done,
            metrics=dict(s.metrics),
            info=dict(s.info),
        )

    def step(self, state: brax_base.State, action) -> brax_base.State:
        ours = core.State(
            data=state.pipeline_state,
            obs={},
            reward=state.reward,
            done=state.done,
            metrics=state.metrics,
            info=state.info,
        )
        s = self._env.step(ours, action)
        return state.replace(
            pipeline_state=s.data,
            obs=s.obs["state"],
            reward=s.reward,
            done=jnp.maximum(s.done, 0.0),
            metrics={**state.metrics, **s.metrics},
        )

    @property
    def observation_size(self) -> int:
        return int(self._env.observation_space["state"].shape[0])

    @property
    def action_size(self) -> int:
        return int(self._env.action_space.shape[0])

    @property
    def backend(self) -> str:
        return "mjx"

    @property
    def unwrapped(self):
        return self


def device_put_replicated(x, devices):
    """What ``jax.device_put_replicated`` did: ``len(devices)`` copies stacked on a new leading
    axis (placed on the default device; brax's PPO then shards it itself)."""
    n = len(devices)
    return jax.tree.map(lambda a: jax.device_put(jnp.stack([jnp.asarray(a)] * n)), x)


def install_device_put_replicated() -> None:
    """Gives ``jax`` back ``device_put_replicated`` (for brax 0.14.2's PPO) if it is missing."""
    if not hasattr(jax, "device_put_replicated"):
        jax.device_put_replicated = device_put_replicated
