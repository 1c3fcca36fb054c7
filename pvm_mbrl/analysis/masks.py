"""Ground-truth object masks of the manipulation tasks from the renderer's segmentation.

The ray caster (:mod:`pvm_mbrl.render`) returns, next to the image, the MuJoCo geom id seen
by every pixel (-1 for sky). :func:`render_output` renders an env state with
``ManipulationEnv.render_output``, the call behind its observation (same camera, scene
parameters ``info["scene"]`` and, for a shifted env, the shift in ``info["shift"]``: camera
offsets and distractors move the segmentation too), so its ``rgb`` is the observation.
:func:`object_masks` marks the pixels of the task object: the episode's object
``info["object"]`` where the task has one (``PickCube``, ``PickObject``, whose unused bodies are
parked out of view), else every object of the task (``Push``'s cube). Goal markers, the
gripper and distractors are not part of the object.

Both are pure JAX over ``state.data`` / ``state.info`` and accept a single state or a batch
(any leading dims, e.g. from ``BatchEnv``); they jit and vmap.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from pvm_mbrl import render as render_lib
from pvm_mbrl.envs import core
from pvm_mbrl.envs.visible import rendering_task


def object_geom_ids(env, extra: Sequence[str] = ()) -> np.ndarray:
    """int32 ``[num_objects + len(extra)]``: MuJoCo geom ids of the task's objects (in
    ``env.objects`` order), then of the geoms named in ``extra`` (e.g. ``"goal_geom"``)."""
    task = rendering_task(env)
    m = task.mj_model
    names = [f"{o.name}_geom" for o in task.objects] + list(extra)
    ids = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, n) for n in names]
    missing = [n for n, i in zip(names, ids) if i < 0]
    if missing:
        raise ValueError(f"the env's model has no geoms named {missing}")
    return np.asarray(ids, np.int32)


def _batched(fn, lead: int):
    for _ in range(lead):
        fn = jax.vmap(fn)
    return fn


def _lead(state: core.State) -> int:
    return jnp.ndim(state.data.qpos) - 1


def render_output(env, states: core.State) -> render_lib.RenderOutput:
    """The env camera's ``RenderOutput`` (rgb, depth, segmentation) of ``states`` (one state
    or a batch with leading dims); ``rgb`` equals ``env.render_pixels``'s observation."""
    task = rendering_task(env)
    if "scene" not in states.info:
        raise ValueError("states.info has no 'scene' entry: pass states from the env's reset/step")
    return _batched(lambda s: task.render_output(s.data, s.info), _lead(states))(states)


def object_masks(
    env,
    states: core.State,
    *,
    segmentation: jnp.ndarray | None = None,
    extra: Sequence[str] = (),
) -> jnp.ndarray:
    """bool ``[..., H, W]``: pixels showing the task object in ``states`` (module docs).

    ``segmentation`` (int32 ``[..., H, W]`` from :func:`render_output`) skips rendering again;
    ``extra`` names more geoms to count as object (e.g. ``("goal_geom",)``).
    """
    task = rendering_task(env)
    if not task.objects:
        raise ValueError(f"{type(task).__name__} has no task object to mask")
    all_ids = object_geom_ids(task, extra)
    ids, extra_ids = (
        jnp.asarray(all_ids[: len(task.objects)]),
        jnp.asarray(all_ids[len(task.objects) :]),
    )
    if segmentation is None:
        segmentation = render_output(task, states).segmentation
    lead = _lead(states)
    s = task.image_size
    if tuple(jnp.shape(segmentation)[lead:]) != (s, s):
        raise ValueError(
            f"segmentation must be int [..., {s}, {s}] matching the states, "
            f"got {jnp.shape(segmentation)}"
        )

    def one(seg, info):
        if "object" in info:
            mask = seg == ids[info["object"]]
        else:
            mask = jnp.isin(seg, ids)
        return mask | jnp.isin(seg, extra_ids)

    return _batched(one, lead)(segmentation, states.info)
