"""Probe of the Reach agent: does it steer towards the target, and does its world model know why?

Trains a small DreamerV3 agent on Reach from the state vector (no rendering) or from 64 px
pixels (``--obs pixels``, ``--camera front|wrist``; ``pixels+proprio`` adds the arm's own state)
and, every ``--every`` chunks, runs its eval policy (the actor's mode) for one 50-step episode
in ``--episodes`` fresh envs. The env's state vector is read alongside whatever the agent sees,
to measure:

* ``return``: mean episode return (a random policy gets about 14);
* ``cos0``: cosine of the commanded displacement (action x/y/z) and the tool-to-target
  direction at the first step, from the start pose (targets lie all around it);
* ``cos``: the same cosine averaged over the episode;
* ``bias``: ``|mean action| / mean |action|`` over envs and steps, 1 for a policy that sends
  every arm the same way whatever the target;
* ``r_corr``: correlation over the episode between the reward head on the agent's posterior
  and the reward the env gave;
* ``imag toward/away/still``: from each posterior along the episode, the reward head after 5
  imagined steps of the full action towards the target, away from it, or zero; ``true`` is the
  env's reward for the same plans (a physics-only twin of the env stepped in lockstep).

A policy that reaches has both cosines near +1 and a small bias. A target-blind policy that
pushes every arm in one direction also drives ``cos`` towards -1 (the arm passes the target and
leaves it behind), so ``cos`` alone cannot tell "steers away" from "ignores the target": read it
with ``cos0`` and ``bias``. The actor can only learn to reach once the imagined rewards order
toward > still > away as the true ones do.

    python benchmarks/reach_probe.py --lr 3e-4 --chunks 14
    python benchmarks/reach_probe.py --obs pixels --camera front --lr 3e-4 --chunks 14
    python benchmarks/reach_probe.py --obs pixels --fused --chunks 400 --every 20 --minutes 5
    python benchmarks/reach_probe.py --obs pixels --from runs/reach_pixels  # a learning.py run
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import imageio.v3 as iio
import jax
import jax.numpy as jnp
import numpy as np

import pvm_mbrl
from pvm_mbrl import checkpoint, envs, media
from pvm_mbrl import replay as replay_lib
from pvm_mbrl.dreamer.agent import Dreamer
from pvm_mbrl.dreamer.config import DreamerConfig
from pvm_mbrl.dreamer.optim import OptimizerConfig
from pvm_mbrl.envs import episodes
from pvm_mbrl.train import TrainConfig, Trainer

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import overrides

OBS = {"state": ("state",), "pixels": ("pixels",), "pixels+proprio": ("pixels", "proprio")}
# Reach's state vector: proprio (tcp 3, velocity 3, fingers 2), target (3), target - tcp (3).
TO_TARGET = slice(11, 14)
PLANS = (("toward", 1.0), ("away", -1.0), ("still", 0.0))
PLAN_STEPS = 5


def make_env(obs: str, num_envs: int, camera: str = "front", image: int = 64, state=False):
    """Reach for the agent (``state=True``: with the state vector too, for the probe)."""
    if obs == "state":
        return envs.make(
            "Reach", obs_mode="state", render=False, num_envs=num_envs, auto_reset=False
        )
    return envs.make(
        "Reach",
        obs_mode="pixels+state" if state else "pixels",
        camera=camera,
        image_size=image,
        num_envs=num_envs,
        auto_reset=False,
    )


def probe_fn(agent: Dreamer, num: int, obs: str = "state", camera="front", image=64):
    """Jitted ``(agent_state, key) -> dict`` of the measures in the module docstring."""
    env = make_env(obs, num, camera, image, state=True)
    twin = make_env("state", num)

    def plan_rewards(nets, post, sim, unit, key):
        """Imagined and true reward after PLAN_STEPS steps of each plan: [plans] each."""
        imag, true = [], []
        for _, sign in PLANS:
            act = jnp.concatenate([sign * unit, jnp.zeros_like(unit[:, :1])], -1)
            st, s = post, sim
            for j in range(PLAN_STEPS):
                st, _ = nets.rssm.img_step(st, act, jax.random.fold_in(key, j))
                s = twin.step(s, act)
            imag.append(nets.reward(nets.rssm.features(st)).mean().mean())
            true.append(s.reward.mean())
        return jnp.stack(imag), jnp.stack(true)

    @jax.jit
    def run(agent_state, key):
        def body(c, k):
            s, sim, carry, first, running = c
            seen = {name: s.obs[name] for name in agent.obs_keys}
            act, carry = agent.policy(
                agent_state, carry, {**seen, "is_first": first}, k, mode="eval"
            )
            to_target = s.obs["state"][:, TO_TARGET]
            unit = to_target / (jnp.linalg.norm(to_target, axis=-1, keepdims=True) + 1e-6)
            post = {"deter": carry["deter"], "stoch": carry["stoch"]}
            nets = agent.nets(agent_state.params)
            r_pred = nets.reward(nets.rssm.features(post)).mean()
            imag, true = plan_rewards(nets, post, sim, unit, k)
            drift = jnp.abs(sim.obs["state"] - s.obs["state"]).max()
            out = dict(
                act=act[:, :3],
                unit=unit,
                r_pred=r_pred,
                r_true=s.reward,
                imag=imag,
                true=true,
                drift=drift,
            )
            s, sim = env.step(s, act), twin.step(sim, act)
            running, out["episode"] = episodes.update(
                running, s.reward, episodes.success_of(s), s.done
            )
            return (s, sim, carry, jnp.zeros_like(first), running), out

        k_reset, k_steps = jax.random.split(key)
        init = (
            env.reset(k_reset),
            twin.reset(k_reset),
            agent.initial_carry(num),
            jnp.ones(num, bool),
            episodes.start((num,)),
        )
        _, o = jax.lax.scan(body, init, jax.random.split(k_steps, env.episode_length))
        act = o["act"]
        cos = jnp.sum(act * o["unit"], -1) / (jnp.linalg.norm(act, axis=-1) + 1e-6)
        bias = jnp.linalg.norm(act.mean((0, 1))) / (jnp.linalg.norm(act, axis=-1).mean() + 1e-6)
        # The reward that led to each observation, from the second step on.
        rp, rt = o["r_pred"][1:].ravel(), o["r_true"][1:].ravel()
        rp, rt = rp - rp.mean(), rt - rt.mean()
        r_corr = rp @ rt / (jnp.linalg.norm(rp) * jnp.linalg.norm(rt) + 1e-9)
        return dict(
            ret=jnp.sum(jnp.where(o["episode"]["ended"], o["episode"]["return"], 0.0)) / num,
            cos0=cos[0].mean(),
            cos=cos.mean(),
            bias=bias,
            r_corr=r_corr,
            imag=o["imag"].mean(0),
            true=o["true"].mean(0),
            drift=o["drift"].max(),
        )

    return run


def reconstructions(agent: Dreamer, agent_state, replay, key, n: int = 8) -> np.ndarray:
    """uint8 grid: the 16th frame of ``n`` replayed sequences (top) and the world model's
    reconstruction of it from the posterior after those 16 steps (bottom)."""

    @jax.jit
    def run(agent_state, replay, key):
        k_sample, k_model = jax.random.split(key)
        batch = replay_lib.sample(replay, k_sample, n, 17)
        truth, model = agent.open_loop(agent_state, batch, k_model, context=16)
        return jnp.stack([truth[:, 15], model[:, 15]])

    return media.grid(np.asarray(run(agent_state, replay, key)))


def report(p, updates: int, t0: float) -> None:
    """Prints one line of the probe's measures (module docstring)."""
    p = jax.device_get(p)
    if p["drift"] > 1e-4:
        raise RuntimeError(f"the physics twin left the probed env ({p['drift']:.2g})")
    imag = "/".join(f"{x:.3f}" for x in p["imag"])
    true = "/".join(f"{x:.3f}" for x in p["true"])
    print(
        f"updates {updates:5d}  return {p['ret']:6.2f}  cos0 {p['cos0']:+.2f}  "
        f"cos {p['cos']:+.2f}  bias {p['bias']:.2f}  r_corr {p['r_corr']:.2f}  "
        f"imag toward/away/still {imag} (true {true})  "
        f"({time.perf_counter() - t0:.0f} s)",
        flush=True,
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--obs", choices=sorted(OBS), default="state")
    ap.add_argument("--camera", choices=["front", "wrist"], default="front")
    ap.add_argument("--image", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--chunks", type=int, default=16, help="chunks of 400 env steps")
    ap.add_argument(
        "--minutes", type=float, default=None, help="also stop after this much wall time"
    )
    ap.add_argument("--batch-length", type=int, default=16, help="100 updates per chunk at 16")
    ap.add_argument(
        "--fused",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="TrainConfig.fused: one compiled call per chunk (faster on a GPU; on XLA:CPU the "
        "unfused loop is)",
    )
    ap.add_argument("--every", type=int, default=2)
    ap.add_argument("--episodes", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--recon", default=None, metavar="PNG", help="pixel modes: save reconstructions at the end"
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="DreamerConfig override of the small agent, e.g. --set depth=16 (repeatable)",
    )
    ap.add_argument(
        "--from",
        dest="from_",
        default=None,
        metavar="DIR",
        help="probe the newest checkpoint of a benchmarks/learning.py --save run (same agent "
        "flags: learning.py --size small with this --obs) once, without training",
    )
    a = ap.parse_args(argv)
    if a.recon and a.obs == "state":
        ap.error("--recon needs a pixel --obs")
    if a.recon and a.from_:
        ap.error("--recon needs the replay of a training run; --from restores the agent only")
    size = "".join(f", {k}={v}" for k, v in overrides(a.set).items())
    config = DreamerConfig.preset(
        "small",
        obs_keys=OBS[a.obs],
        optimizer=OptimizerConfig(lr=a.lr, warmup=0),
        **overrides(a.set),
    )
    env = make_env(a.obs, 16, a.camera, a.image)
    agent = Dreamer(config, env.observation_space, env.action_space)
    tc = TrainConfig(
        num_envs=16,
        train_ratio=64,
        batch_size=16,
        batch_length=a.batch_length,
        chunk_steps=25,
        prefill=max(50, a.batch_length),
        replay_capacity=99_984,
        fused=a.fused,
    )
    probe = probe_fn(agent, a.episodes, a.obs, a.camera, a.image)
    seen = a.obs if a.obs == "state" else f"{a.obs} ({a.camera} camera, {a.image} px)"
    t0 = time.perf_counter()
    if a.from_:
        template = jax.eval_shape(agent.init, jax.random.PRNGKey(a.seed))
        agent_state = checkpoint.restore_agent(a.from_, template)
        print(f"Reach from {seen}, the small agent{size}, checkpoint {a.from_}")
        report(probe(agent_state, jax.random.PRNGKey(1000)), int(agent_state.step), t0)
        return
    trainer = Trainer(env, agent, tc)
    state = trainer.prefill(trainer.init(jax.random.PRNGKey(a.seed)))
    loop = f"lr {a.lr:g}, train ratio 64, batch 16 x {a.batch_length}"
    print(f"Reach from {seen}, the small agent{size}, {loop}")
    t0 = time.perf_counter()
    for i in range(a.chunks + 1):
        if i:
            state, m = trainer.train_chunk(state)
        out_of_time = a.minutes is not None and time.perf_counter() - t0 > 60 * a.minutes
        if i % a.every == 0 or i == a.chunks or out_of_time:
            updates = int(m["updates"]) if i else 0
            report(probe(state.agent, jax.random.PRNGKey(1000 + i)), updates, t0)
        if out_of_time:
            print(f"stopped after {a.minutes:g} min")
            break
    if a.recon:
        iio.imwrite(
            a.recon, reconstructions(agent, state.agent, state.replay, jax.random.PRNGKey(7))
        )
        print(f"saved {a.recon}")


if __name__ == "__main__":
    pvm_mbrl.setup()  # host-memory reuse and the compilation cache, before any JAX work
    main()
