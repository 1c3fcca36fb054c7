"""Shared by the dmc/ tests: the task envs (cached per name) and dm-control as the oracle."""

from __future__ import annotations

import functools

import jax
import numpy as np

from pvm_mbrl.envs import dmc


def split_name(name: str) -> tuple[str, str]:
    domain = dmc.TASKS[name][0]
    return domain, name[len(domain) + 1 :]


@functools.cache
def task_env(name: str):
    return dmc.make_task(name, obs_mode="state", render=False)


def oracle(name: str, seed: int = 0):
    from dm_control import suite

    domain, task = split_name(name)
    return suite.load(domain, task, task_kwargs={"random": seed})


def set_oracle(env, physics, qpos, qvel, ctrl, info) -> None:
    with physics.reset_context():
        physics.data.qpos[:] = qpos
        physics.data.qvel[:] = qvel
        env.sync_oracle(physics, info)
    physics.data.ctrl[:] = ctrl
    physics.forward()


def row(tree, i):
    """Element ``i`` of a batched pytree, as numpy."""
    return jax.tree.map(lambda x: np.asarray(x)[i], tree)
