"""Every dmc/ task in our renderer next to MuJoCo's own OpenGL renderer, same state and camera.

For each task it draws one start state of the task's initial distribution from camera 0, ours
(the ray caster behind the pixel observations, default look) beside ``mujoco.Renderer``'s image
(the suite's skybox, grid floor and lights), and prints the share of pixels whose geom ids
agree between the two segmentations.

    python examples/dmc_gallery.py [--out docs/dmc_tasks.png] [--size 96]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import jax
import mujoco
import numpy as np

import pvm_mbrl
from pvm_mbrl.envs import dmc
from pvm_mbrl.envs.mjx import mjx


def both(name: str, size: int, seed: int):
    """(ours rgb, MuJoCo rgb, share of agreeing segmentation pixels) of one start state."""
    env = dmc.make_task(name, image_size=size)
    qpos, qvel, info = jax.device_get(jax.jit(env._init_episode)(jax.random.PRNGKey(seed)))
    d = env.host_data(qpos, qvel, info)
    cam = env._camera_id
    info = {"scene": env.scene_params(jax.random.PRNGKey(0))}
    out = jax.jit(env.render_output)(mjx.put_data(env.mj_model, d), info)
    r = mujoco.Renderer(env.mj_model, size, size)
    try:
        opt = mujoco.MjvOption()
        opt.sitegroup[:] = 0
        opt.flags[mujoco.mjtVisFlag.mjVIS_TENDON] = 0
        r.update_scene(d, camera=cam, scene_option=opt)
        rgb = r.render().copy()
        r.enable_segmentation_rendering()
        r.update_scene(d, camera=cam, scene_option=opt)
        seg = r.render()
    finally:
        r.close()
    ref = np.where(seg[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM), seg[..., 0], -1)
    agree = float((np.asarray(out.segmentation) == ref).mean())
    return np.asarray(out.rgb), rgb, agree


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/dmc_tasks.png")
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--columns", type=int, default=4, help="task pairs per row")
    a = ap.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(dmc.TASKS)
    rows = -(-len(names) // a.columns)
    fig, axes = plt.subplots(rows, 2 * a.columns, figsize=(2 * a.columns * 1.3, rows * 1.45))
    for ax in axes.ravel():
        ax.axis("off")
    for i, name in enumerate(names):
        ours, theirs, agree = both(name, a.size, a.seed)
        print(f"{name:26s} segmentation agreement {agree:.4f}", flush=True)
        r, c = divmod(i, a.columns)
        for j, (img, who) in enumerate(((ours, "ours"), (theirs, "MuJoCo"))):
            ax = axes[r, 2 * c + j]
            ax.imshow(img)
            ax.set_title(
                f"{name}\n{who}" if j == 0 else f"seg. {100 * agree:.1f}%\n{who}", fontsize=6
            )
    fig.tight_layout(pad=0.3)
    fig.savefig(a.out, dpi=110)
    print(f"saved {a.out}")


if __name__ == "__main__":
    pvm_mbrl.setup()  # host-memory reuse and the compilation cache, before any JAX work
    main()
