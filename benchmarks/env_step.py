"""Env throughput: batched env steps/s of tasks with physics only, physics + render, and
physics + render under visual shifts, next to C MuJoCo physics on one thread (for the tasks
whose physics is MuJoCo's; ``Highway``'s is its own, in JAX).

Each configuration runs ``--steps`` env steps of ``--batch`` envs with random actions inside
one jitted ``lax.scan`` (compile excluded, best of ``--repeats``). The ratio of a shifted to an
unshifted step is the cost of the shift. Appends the table to benchmarks/RESULTS.md.

    python benchmarks/env_step.py --task PickCube Highway --batch 16 64 --size 64
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import jax
import mujoco
import numpy as np

import pvm_mbrl
from pvm_mbrl import envs

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import append_results, best_time

HEADING = "## Env steps (benchmarks/env_step.py)"


def bench_env(task, batch, size, steps, repeats, camera, **kwargs) -> float:
    env = envs.make(task, image_size=size, camera=camera, num_envs=batch, **kwargs)
    shape = (steps, batch, *env.action_space.shape)
    actions = jax.random.uniform(jax.random.PRNGKey(1), shape, minval=-1, maxval=1)

    @jax.jit
    def run(state):
        def body(s, a):
            s = env.step(s, a)
            return s, s.reward

        return jax.lax.scan(body, state, actions)

    state = jax.jit(env.reset)(jax.random.PRNGKey(0))
    return steps * batch / best_time(lambda: run(state), repeats)


def bench_c_mujoco(task, steps) -> float | None:
    """Control steps/s of C MuJoCo on one thread (same model, same substeps per control step);
    None for a task whose physics is not MuJoCo's."""
    task_env = envs.make(task, obs_mode="state", render=False).unwrapped
    if task_env.mjx_model is None:
        return None
    m = task_env.mj_model
    d = mujoco.MjData(m)
    mujoco.mj_forward(m, d)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(steps):
        d.ctrl[:] = m.actuator_ctrlrange[:, 0] + rng.random(m.nu) * np.ptp(
            m.actuator_ctrlrange, axis=1
        )
        for _ in range(task_env.substeps):
            mujoco.mj_step(m, d)
    return steps / (time.perf_counter() - t0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", nargs="+", default=["PickCube"])
    ap.add_argument("--camera", default=None, help="default: each task's (envs.make)")
    ap.add_argument("--batch", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--shifts", nargs="+", default=["strong", "dcs-0.5", "scene-hard"])
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)

    cols = ["physics only", "physics + render", *[f"+ shift {s}" for s in args.shifts]]
    header = "| task | batch | " + " | ".join(cols) + " | C MuJoCo physics (1 thread) |"
    rows = [header, "|" + "---|" * (len(cols) + 3)]
    print(header)
    for task in args.task:
        c_rate = bench_c_mujoco(task, 200)
        c_cell = "-" if c_rate is None else f"{c_rate:,.0f}"
        for batch in args.batch:
            common = dict(steps=args.steps, repeats=args.repeats, camera=args.camera)
            phys = bench_env(task, batch, args.size, obs_mode="state", render=False, **common)
            full = bench_env(task, batch, args.size, **common)
            shifted = [bench_env(task, batch, args.size, shift=s, **common) for s in args.shifts]
            cells = [f"{phys:,.0f}", f"{full:,.0f}"]
            cells += [f"{r:,.0f} ({full / r:.2f}x cost)" for r in shifted]
            row = f"| {task} | {batch} | " + " | ".join(cells) + f" | {c_cell} |"
            rows.append(row)
            print(row, flush=True)
    if not args.no_write:
        notes = [
            f"tasks: {', '.join(args.task)}, camera {args.camera or 'each task default'}, "
            f"{args.size}x{args.size} pixels, env steps/s (control steps), random actions, "
            f"batch sizes as listed (vmap), {args.steps} steps per jitted scan, "
            f"best of {args.repeats}",
        ]
        append_results(HEADING, notes, rows)


if __name__ == "__main__":
    pvm_mbrl.setup()  # host-memory reuse and the compilation cache, before any JAX work
    main()
