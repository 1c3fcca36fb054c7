"""Highway baselines: the scripted driver and the uniform random policy, per split, and the
speed of the task's physics and of its rendered steps.

For each split it plays ``--episodes`` whole episodes (1,000 control steps, 100 s; ``Highway``
from the state, physics only) with the scripted driver (``envs.driving.scripted``: pure
pursuit on the lane centre, IDM speed control) and with uniform random actions, and prints the
mean return, the share of clean episodes (no collision, no road exit) and the mean episode
length. Then it times jitted ``lax.scan`` rollouts: physics-only steps per second over
``--episodes`` envs, and rendered steps per second at ``--image`` px over ``--render-envs``
envs (compile excluded, best of 3). ``--write`` appends the tables to benchmarks/RESULTS.md.

    python benchmarks/driving.py [--episodes 64] [--image 64] [--write]
    python benchmarks/driving.py --quick
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import pvm_mbrl
from pvm_mbrl import envs
from pvm_mbrl.envs.driving import scripted
from pvm_mbrl.envs.driving.sim import SPLITS

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import append_results

HEADING = "## Highway baselines (benchmarks/driving.py)"


def play(split: str, episodes: int, policy: str, steps: int | None, seed: int = 0) -> dict:
    """Return, clean share and length of ``episodes`` episodes of ``policy`` on ``split``."""
    env = envs.make(
        "Highway",
        obs_mode="state",
        render=False,
        split=split,
        num_envs=episodes,
        auto_reset=False,
        episode_length=steps,
    )
    config, space = env.unwrapped.config, env.action_space

    def act(state, key):
        if policy == "scripted":
            return jax.vmap(lambda d: scripted.policy(d, config))(state.data)
        return jax.vmap(space.sample)(jax.random.split(key, episodes))

    @jax.jit
    def run(key):
        k_reset, k_act = jax.random.split(key)
        _, traj = envs.rollout(env, act, env.reset(k_reset), env.episode_length, k_act)
        ep = traj["episode"]
        first = jnp.argmax(ep["ended"], 0)  # every episode ends by the time limit at the latest
        pick = lambda x: jnp.take_along_axis(x, first[None], 0)[0]  # noqa: E731
        return pick(ep["return"]), pick(ep["success_end"]), first + 1

    ret, clean, length = jax.device_get(run(jax.random.PRNGKey(seed)))
    return {"return": ret.mean(), "clean": clean.mean(), "length": length.mean()}


def steps_per_second(num_envs: int, steps: int, image: int | None) -> float:
    """Env steps per second of a jitted scan of ``steps`` batched steps (best of 3)."""
    kwargs = dict(obs_mode="state", render=False) if image is None else dict(image_size=image)
    env = envs.make("Highway", num_envs=num_envs, **kwargs)
    action = jnp.tile(jnp.array([[0.0, 0.2]]), (num_envs, 1))

    @jax.jit
    def run(state):
        return jax.lax.scan(lambda s, _: (env.step(s, action), None), state, None, length=steps)[0]

    state = jax.jit(env.reset)(jax.random.PRNGKey(0))
    jax.block_until_ready(run(state))
    best = np.inf
    for _ in range(3):
        t = time.perf_counter()
        jax.block_until_ready(run(state))
        best = min(best, time.perf_counter() - t)
    return num_envs * steps / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--episodes", type=int, default=64)
    ap.add_argument("--image", type=int, default=64)
    ap.add_argument("--render-envs", type=int, default=16)
    ap.add_argument("--quick", action="store_true", help="4 short episodes, writes nothing")
    ap.add_argument("--write", action="store_true", help="append to benchmarks/RESULTS.md")
    a = ap.parse_args()
    episodes, steps = (4, 50) if a.quick else (a.episodes, None)
    rows = [
        "| split | policy | return | clean episodes | mean length (steps) |",
        "|---|---|---|---|---|",
    ]
    for split in SPLITS:
        for policy in ("scripted", "random"):
            r = play(split, episodes, policy, steps)
            rows.append(
                f"| {split} | {policy} | {r['return']:.1f} | {r['clean']:.2f} | {r['length']:.0f} |"
            )
            print(rows[-1], flush=True)
    n_render = 2 if a.quick else a.render_envs
    speed = [
        f"| physics only | {episodes} | {steps_per_second(episodes, 100, None):,.0f} |",
        f"| {a.image} px | {n_render} | {steps_per_second(n_render, 20, a.image):,.0f} |",
    ]
    speed = ["| steps | envs | env steps/s |", "|---|---|---|", *speed]
    print("\n".join(["", *rows, "", *speed]))
    if a.write and not a.quick:
        notes = [
            f"{episodes} episodes per row, 1,000 control steps (100 s) at most; clean: no "
            "collision and no road exit; speed: jitted lax.scan, compile excluded, best of 3",
        ]
        append_results(HEADING, notes, [*rows, "", *speed])


if __name__ == "__main__":
    pvm_mbrl.setup()
    main()
