"""The tasks show what they are about: visibility of targets, objects and the gripper from the
renderer's segmentation (``envs.visibility``), on many reset states and at the workspace's
corners."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

from pvm_mbrl import envs
from pvm_mbrl.envs.manipulation import scene
from pvm_mbrl.envs.mjx import mjx


@pytest.fixture(scope="module")
def reach():
    return envs.make("Reach", camera="front")


def test_reach_front_view_shows_target_and_gripper(reach):
    vis = envs.visibility(reach, ["goal", "gripper"], n=256)
    goal, grip = vis["goal"], vis["gripper"]
    assert goal.pixels.shape == (256,)
    assert np.mean(goal.pixels >= 30) >= 0.95, np.percentile(goal.pixels, [1, 5, 50])
    assert grip.in_view.all() and not grip.on_edge.any()


@pytest.mark.slow  # 30-40 s cold each; the Reach views stay in make test
@pytest.mark.parametrize("task", ["PickCube", "PickObject"])
def test_pick_object_in_wrist_view_at_reset(task):
    vis = envs.visibility(envs.make(task, camera="wrist"), ["object"], n=256)
    assert np.mean(vis["object"].in_view) >= 0.9


@pytest.mark.slow  # about 2 min cold
def test_gripper_in_view_across_the_workspace_and_counts_match_segmentation(reach):
    """At every corner of the gripper's reachable box (fingers open and closed) the whole
    gripper is in the front view: some pixels, none on the image's border. On the same batch
    the counts equal a direct count of the segmentation, and a target moved below the floor
    is seen by no pixel."""
    task = reach.unwrapped
    corners = list(
        itertools.product(
            (-scene.WORKSPACE, scene.WORKSPACE),
            (-scene.WORKSPACE, scene.WORKSPACE),
            (scene.Z_MIN, scene.Z_MAX),
            (0.0, scene.FINGER_OPEN),
        )
    )
    n = len(corners)
    s = jax.vmap(task.reset)(jax.random.split(jax.random.PRNGKey(0), n))
    arm = jnp.asarray([[x, y, z, f, f] for x, y, z, f in corners], jnp.float32)
    goal = jnp.where(jnp.arange(n)[:, None] % 2 == 0, s.data.mocap_pos[:, 0], -2.0)
    data = s.data.replace(qpos=s.data.qpos.at[:, :5].set(arm), mocap_pos=goal[:, None])
    data = jax.jit(jax.vmap(lambda d: mjx.forward(task.mjx_model, d)))(data)
    s = s.replace(data=data)
    vis = envs.visibility(reach, ["gripper", "goal"], states=s)
    grip = vis["gripper"]
    assert grip.in_view.all(), grip.pixels
    assert not grip.on_edge.any(), [c for c, e in zip(corners, grip.on_edge) if e]

    seg = np.asarray(jax.jit(jax.vmap(task.render_output))(s.data, s.info).segmentation)
    goal_geom = mujoco.mj_name2id(task.mj_model, mujoco.mjtObj.mjOBJ_GEOM, "goal_geom")
    np.testing.assert_array_equal(vis["goal"].pixels, (seg == goal_geom).sum((1, 2)))
    assert (vis["goal"].pixels[1::2] == 0).all()


def test_bad_names_and_envs_are_refused(reach):
    with pytest.raises(ValueError, match="no body or geom named 'gol'"):
        envs.visibility(reach, ["gol"], n=2)
    with pytest.raises(ValueError, match="no task object"):
        envs.visibility(reach, ["object"], n=2)
    with pytest.raises(ValueError, match="does not render"):
        envs.visibility(envs.make("Reach", obs_mode="state", render=False), ["goal"], n=2)
