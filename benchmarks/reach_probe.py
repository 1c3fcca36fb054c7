"""Probe of the Reach policy: does the trained agent steer towards the target?

Trains a small DreamerV3 agent on Reach from the state vector (no rendering) and, every
``--every`` chunks, runs its eval policy (the actor's mode) for one 50-step episode in 64 fresh
envs, printing the mean return and three measures of the arm's commanded displacement (action
x/y/z) against the direction from the tool to the target (the state's ``target - tcp``):

* ``cos0``: the cosine at the first step, from the start pose (targets lie all around it);
* ``cos``: the cosine averaged over the episode;
* ``bias``: ``|mean action| / mean |action|`` over envs and steps, 1 for a policy that sends
  every arm the same way whatever the target.

A policy that reaches has both cosines near +1 and a small bias. A target-blind policy that
pushes every arm in one direction also drives ``cos`` towards -1 (the arm passes the target and
leaves it behind), so ``cos`` alone cannot tell "steers away" from "ignores the target": read it
with ``cos0`` and ``bias``.

    python benchmarks/reach_probe.py --lr 4e-5 --chunks 16
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

from pvm_mbrl import envs
from pvm_mbrl.dreamer.agent import Dreamer
from pvm_mbrl.dreamer.config import DreamerConfig
from pvm_mbrl.dreamer.optim import OptimizerConfig
from pvm_mbrl.train import TrainConfig, Trainer

SMALL = dict(
    deter=128, hidden=32, stoch=8, classes=8, blocks=4, depth=2, mults=(1, 2), bspace=4, units=64
)
# Reach's state vector: proprio (tcp 3, velocity 3, fingers 2), target (3), target - tcp (3).
TO_TARGET = slice(11, 14)


def probe_fn(agent: Dreamer, episodes: int):
    """Jitted ``(agent_state, key) -> (mean return, cos0, cos, bias, mean |action|)``."""
    env = envs.make("Reach", obs_mode="state", render=False, num_envs=episodes, auto_reset=False)

    @jax.jit
    def run(agent_state, key):
        def body(c, k):
            s, carry, first = c
            obs = {"state": s.obs["state"], "is_first": first}
            act, carry = agent.policy(agent_state, carry, obs, k, mode="eval")
            out = (act[:, :3], s.obs["state"][:, TO_TARGET])
            s = env.step(s, act)
            return (s, carry, jnp.zeros_like(first)), (*out, s.reward)

        k_reset, k_steps = jax.random.split(key)
        init = (env.reset(k_reset), agent.initial_carry(episodes), jnp.ones(episodes, bool))
        keys = jax.random.split(k_steps, env.episode_length)
        _, (act, to_target, reward) = jax.lax.scan(body, init, keys)
        unit = to_target / (jnp.linalg.norm(to_target, axis=-1, keepdims=True) + 1e-6)
        cos = jnp.sum(act * unit, -1) / (jnp.linalg.norm(act, axis=-1) + 1e-6)
        bias = jnp.linalg.norm(act.mean((0, 1))) / (jnp.linalg.norm(act, axis=-1).mean() + 1e-6)
        return reward.sum(0).mean(), cos[0].mean(), cos.mean(), bias, jnp.abs(act).mean()

    return run


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lr", type=float, default=4e-5)
    ap.add_argument("--chunks", type=int, default=16, help="chunks of 400 env steps")
    ap.add_argument("--batch-length", type=int, default=16, help="100 updates per chunk at 16")
    ap.add_argument("--every", type=int, default=2)
    ap.add_argument("--episodes", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    config = DreamerConfig(
        **SMALL, obs_keys=("state",), optimizer=OptimizerConfig(lr=a.lr, warmup=0)
    )
    env = envs.make("Reach", obs_mode="state", render=False, num_envs=16, auto_reset=False)
    agent = Dreamer(config, env.observation_space, env.action_space)
    tc = TrainConfig(
        num_envs=16,
        train_ratio=64,
        batch_size=16,
        batch_length=a.batch_length,
        chunk_steps=25,
        prefill=50,
        replay_capacity=99_984,
        fused=False,
    )
    trainer = Trainer(env, agent, tc)
    probe = probe_fn(agent, a.episodes)
    state = trainer.prefill(trainer.init(jax.random.PRNGKey(a.seed)))
    print(f"Reach, state vector, {SMALL}, lr {a.lr:g}, train ratio 64, batch 16 x {a.batch_length}")
    t0 = time.perf_counter()
    for i in range(a.chunks + 1):
        if i:
            state, m = trainer.train_chunk(state)
        if i % a.every == 0:
            out = jax.device_get(probe(state.agent, jax.random.PRNGKey(1000 + i)))
            ret, cos0, cos, bias, mag = out
            updates = int(m["updates"]) if i else 0
            print(
                f"updates {updates:5d}  eval return {ret:6.2f}  cos0 {cos0:+.3f}  "
                f"cos {cos:+.3f}  bias {bias:.2f}  |action| {mag:.3f}  "
                f"({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
