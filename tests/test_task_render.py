"""The task scenes themselves render like MuJoCo's own renderers: segmentation against
``mujoco.Renderer`` and depth/ids against ``mjx.ray`` for the front and wrist cameras."""

import functools

import gl_oracle
import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest
from mujoco import mjx

from pvm_mbrl import envs, render

H = W = 48


@pytest.fixture(scope="module")
def pick():
    """PickCube's model in a sampled episode (C MuJoCo forward), its render geometry."""
    task = envs.make("PickCube", image_size=H).unwrapped
    m = task.mj_model
    d = mujoco.MjData(m)
    qpos, mocap_pos, _ = task.sample_task(jax.random.PRNGKey(3))
    d.qpos[:] = np.asarray(qpos)
    d.qpos[:3] = (0.05, -0.03, 0.12)  # gripper above the table, in both cameras' view
    d.mocap_pos[:] = np.asarray(mocap_pos)
    mujoco.mj_forward(m, d)
    return m, d, task._geometry


def _ours(m, d, geom, camera):
    i = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, camera)
    params = render.SceneParams.default(geom, camera)
    fn = jax.jit(functools.partial(render.render, geom, height=H, width=W))
    out = fn(
        params,
        jnp.asarray(d.geom_xpos, jnp.float32),
        jnp.asarray(d.geom_xmat, jnp.float32).reshape(-1, 3, 3),
        jnp.asarray(d.cam_xpos[i], jnp.float32),
        jnp.asarray(d.cam_xmat[i], jnp.float32).reshape(3, 3),
    )
    return params, jax.tree.map(np.asarray, out)


@pytest.mark.parametrize("camera", ["front", "wrist"])
def test_task_segmentation_matches_mujoco_renderer(pick, camera):
    m, d, geom = pick
    r = gl_oracle.renderer(m, H, W)
    try:
        r.enable_segmentation_rendering()
        opt = mujoco.MjvOption()
        opt.sitegroup[:] = 0  # sites are not drawn by the ray caster
        r.update_scene(d, camera=camera, scene_option=opt)
        seg = r.render()
    finally:
        r.close()
    ref = np.where(seg[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM), seg[..., 0], -1)
    _, out = _ours(m, d, geom, camera)
    cube = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "cube_geom")
    assert (ref == cube).sum() > 5 and (out.segmentation == cube).sum() > 5
    assert (out.segmentation == ref).mean() >= 0.97


@pytest.mark.parametrize("camera", ["front", "wrist"])
def test_task_depth_matches_mjx_ray(pick, camera):
    m, d, geom = pick
    params, out = _ours(m, d, geom, camera)
    i = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, camera)
    o, v = render.camera_rays(d.cam_xpos[i], d.cam_xmat[i], None, height=H, width=W, params=params)
    mm, md = mjx.put_model(m), mjx.put_data(m, d)
    dist, ids = jax.jit(jax.vmap(lambda p, u: mjx.ray(mm, md, p, u, (1, 1, 0, 0, 0, 0))))(
        o.reshape(-1, 3), v.reshape(-1, 3)
    )
    dist, ids = np.asarray(dist).reshape(H, W), np.asarray(ids).reshape(H, W)
    # mjx.ray has no cylinder kernel: leave out the pixels where the wrist cylinder is seen.
    wrist = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "wrist")
    keep = out.segmentation != wrist
    assert (out.segmentation[keep] == ids[keep]).mean() >= 0.99
    both = keep & (ids >= 0)
    assert np.median(np.abs(out.depth[both] - dist[both])) < 1e-3
