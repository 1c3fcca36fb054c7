"""Render a random and a scripted rollout of every task to runs/tasks/.

For each task it writes ``<task>_scripted.gif`` and ``<task>_random.gif`` (front camera) and a
``contact_sheet.png`` with frames over time of the scripted rollouts from the front and wrist
cameras, then prints where they are and each rollout's return and success.

    python examples/task_gallery.py [--out runs/tasks] [--size 64] [--tasks Reach PickCube]
"""

from __future__ import annotations

import argparse
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

import pvm_mbrl
from pvm_mbrl import envs, media
from pvm_mbrl.envs.manipulation import scripted

TASKS = ("Reach", "Push", "PickCube", "PickObject")
SHEET_FRAMES = 8


def rollouts(task: str, camera: str, size: int, seed: int = 0):
    """Scripted and random rollout of one episode each, batched in one compiled scan.

    Returns (frames [2, T, H, W, 3], returns [2], success [2]); row 0 scripted, row 1 random."""
    env = envs.make(task, image_size=size, camera=camera, num_envs=2, auto_reset=False)
    task_env = env.unwrapped
    controller = scripted.POLICIES[task]

    def policy(state, key):
        expert = jax.vmap(lambda s: controller(task_env, s))(state)
        noise = jax.random.uniform(key, expert.shape, minval=-1.0, maxval=1.0)
        return jnp.stack([expert[0], noise[1]])

    @jax.jit
    def run(key):
        state = env.reset(key)
        final, traj = envs.rollout(env, policy, state, env.episode_length, key)
        frames = jnp.concatenate([traj["obs"]["pixels"], final.obs["pixels"][None]])
        return frames.swapaxes(0, 1), traj["reward"].sum(0), traj["metrics"]["success"].max(0)

    return jax.device_get(run(jax.random.PRNGKey(seed)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/tasks")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    sheet, rows = [], []
    for task in args.tasks:
        for camera in ("front", "wrist"):
            t0 = time.time()
            frames, ret, success = rollouts(task, camera, args.size)
            idx = np.linspace(0, frames.shape[1] - 1, SHEET_FRAMES).round().astype(int)
            sheet.append(frames[0, idx])
            rows.append(f"{task}\n{camera}")
            if camera == "front":
                media.save_gif(frames[0], out / f"{task}_scripted.gif")
                media.save_gif(frames[1], out / f"{task}_random.gif")
            print(
                f"{task:10s} {camera:5s}  scripted: return {ret[0]:6.2f} success {success[0]:.0f}"
                f"  | random: return {ret[1]:6.2f} success {success[1]:.0f}"
                f"  ({time.time() - t0:.0f} s incl. compile)"
            )
    cols = [f"t={i}" for i in np.linspace(0, frames.shape[1] - 1, SHEET_FRAMES).round().astype(int)]
    path = media.labelled_grid(
        np.stack(sheet), rows, cols, out / "contact_sheet.png", title="scripted rollouts"
    )
    print(f"wrote {path} and {len(args.tasks) * 2} GIFs to {out}/")


if __name__ == "__main__":
    pvm_mbrl.setup()  # host-memory reuse and the compilation cache, before any JAX work
    main()
