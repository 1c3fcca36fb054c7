"""What a task's camera shows: pixel counts of named bodies from the renderer's segmentation.

    vis = envs.visibility(envs.make("Reach", camera="front"), ["goal", "gripper"], n=256)
    (vis["goal"].pixels >= 30).mean()      # share of reset states with the target well in view
    vis["gripper"].on_edge.any()           # did the frame cut the gripper in any of them?

A name is a body of the task's model and counts the drawn geoms of that body and of every body
below it (``"gripper"`` is the palm, wrist and both fingers), a geom of the model (``"car0"`` of
``Highway``), or ``"object"``: the episode's
task object (``info["object"]`` of ``PickCube`` / ``PickObject``, whose other bodies are parked
out of view; every object of tasks without that choice, such as ``Push``). Counts come from
the task's ``render_output``, the call behind the pixel observation, so the env's camera,
image size, scene parameters and visual shift all apply: what is counted is what the agent sees.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from pvm_mbrl.envs import core
from pvm_mbrl.envs.rendered import RenderedEnv

OBJECT = "object"


@dataclasses.dataclass(frozen=True)
class Visible:
    """Per state: ``pixels`` (int ``[n]``) showing the name, and ``on_edge`` (bool ``[n]``)
    whether any of them lies in the image's outer row or column (the frame may cut it)."""

    pixels: np.ndarray
    on_edge: np.ndarray

    @property
    def in_view(self) -> np.ndarray:
        """bool ``[n]``: at least one pixel shows the name."""
        return self.pixels > 0


def body_geom_ids(model: mujoco.MjModel, body: str) -> np.ndarray:
    """int32 ids of the geoms of ``body`` and of all bodies below it in the kinematic tree."""
    root = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, body)
    if root < 0:
        geom = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, body)
        if geom >= 0:
            return np.array([geom], np.int32)
        names = [model.body(i).name for i in range(1, model.nbody)]
        raise ValueError(f"no body or geom named {body!r}; bodies: {names} (or {OBJECT!r})")
    inside = np.zeros(model.nbody, bool)
    inside[root] = True
    for b in range(root + 1, model.nbody):  # parents come before their children
        inside[b] = inside[model.body_parentid[b]]
    return np.flatnonzero(inside[model.geom_bodyid]).astype(np.int32)


def rendering_task(env):
    """The ``RenderedEnv`` task inside ``env`` (a task or a wrapper of one); raises unless it
    renders."""
    task = env.unwrapped if isinstance(env, core.Env) else env
    if not isinstance(task, RenderedEnv):
        raise TypeError(f"expected a rendered env (or a wrapper of one), got {type(env).__name__}")
    if not task.render:
        raise ValueError("the env does not render: make it with an obs_mode including pixels")
    return task


def visibility(
    env,
    names: Sequence[str],
    n: int = 256,
    seed: int = 0,
    states: core.State | None = None,
) -> dict[str, Visible]:
    """:class:`Visible` of each name over ``n`` reset states drawn from ``PRNGKey(seed)``, or
    over ``states`` (a batch with one leading dimension, e.g. from a ``BatchEnv``)."""
    task = rendering_task(env)
    if isinstance(names, str):
        names = [names]
    if not names:
        raise ValueError("names must name at least one body (or 'object')")
    model = task.mj_model
    ids = {}
    for name in names:
        if name == OBJECT:
            if not getattr(task, "objects", ()):
                raise ValueError(f"{type(task).__name__} has no task object")
            ids[name] = [body_geom_ids(model, o.name) for o in task.objects]
        else:
            ids[name] = [body_geom_ids(model, name)]
    if states is None:
        if int(n) < 1:
            raise ValueError(f"n must be a positive number of reset states, got {n}")
        keys = jax.random.split(jax.random.PRNGKey(seed), int(n))
        states = jax.jit(jax.vmap(task.reset))(keys)
    elif jnp.ndim(states.reward) != 1:
        raise ValueError(
            f"states must be a batch with one leading dimension, got reward {states.reward.shape}"
        )
    out = jax.device_get(_count(task, ids, states))
    return {k: Visible(np.asarray(p), np.asarray(e)) for k, (p, e) in out.items()}


def _count(task, ids, states):
    # One geom-id row per object (padded with -2, which no pixel carries) for the traced choice.
    tables = {}
    for name, rows in ids.items():
        width = max(len(r) for r in rows)
        tables[name] = np.stack([np.pad(r, (0, width - len(r)), constant_values=-2) for r in rows])

    @jax.jit
    def run(states):
        seg = jax.vmap(task.render_output)(states.data, states.info).segmentation
        edge = jnp.ones(seg.shape[1:], bool).at[1:-1, 1:-1].set(False)
        out = {}
        for name, table in tables.items():
            table = jnp.asarray(table)
            if name == OBJECT and "object" in states.info:
                rows = table[states.info["object"]]  # [n, geoms]
                mask = jax.vmap(jnp.isin)(seg, rows)
            else:
                mask = jnp.isin(seg, table.ravel())
            out[name] = (mask.sum((1, 2)), (mask & edge).any((1, 2)))
        return out

    return run(states)
