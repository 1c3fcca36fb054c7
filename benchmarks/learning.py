"""Learning curve: DreamerV3 (or TD-MPC2) on a task for a wall-clock (or env-step) budget.

Trains with ``Trainer`` (64 px ``pixels`` only, front camera by default) until ``--minutes`` of
wall time (counted from before the first compile) or ``--env-steps`` have passed, printing per
chunk the env steps, updates, wall time, and the mean return and ``success_once`` (solved at
any step) of the episodes that ended in that chunk. For comparison it evaluates a uniform random
policy on the same task (``--random-episodes`` episodes in one jitted scan, physics only since
the random policy ignores pixels). Appends the summary (final success and return, averaged over
the episodes of the last fifth of the chunks, wall time, random baseline) and the curve to
benchmarks/RESULTS.md and saves a plot to benchmarks/learning_curve.png.

At the end the trained agent's eval policy (the actor's mode) and the random policy play the
same ``--eval-episodes`` fresh episodes; ``--gif`` writes one of them side by side (learned |
random), ``--save`` keeps the train state (without replay) every ``--save-every`` minutes and
at the end, and ``--from`` evaluates a saved run again without training.

    python benchmarks/learning.py --minutes 30 --size size1m --lr 1e-4 --train-ratio 32
    python benchmarks/learning.py --size small --lr 3e-4 --warmup 0 --train-ratio 64 \
        --batch 16 --length 16 --chunk-steps 25 --no-fused --minutes 110 \
        --save runs/reach_pixels --gif docs/reach_learned.gif   # Reach from pixels, 2 CPU cores
    python benchmarks/learning.py --quick            # tiny smoke test, writes nothing

``--agent tdmpc2`` trains TD-MPC2 instead (``--td-size`` one of its model-size presets,
``--set`` overrides ``TDMPC2Config``). Its official schedule is one update per env step on
batches of 256 x (horizon + 1) drawn uniformly from replay (``--no-online``), after seed steps
of random actions followed by as many updates:

    python benchmarks/learning.py --agent tdmpc2 --td-size 1 --task dmc/cartpole_swingup \
        --obs state --action-repeat 2 --lr 3e-4 --num-envs 4 --batch 256 --length 4 \
        --train-ratio 1024 --prefill 250 --pretrain 1000 --no-online --no-fused --chunk-steps 25
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import textwrap
import time

import jax
import numpy as np

import pvm_mbrl
from pvm_mbrl import checkpoint, envs, evaluate, media
from pvm_mbrl.dreamer.agent import Dreamer
from pvm_mbrl.dreamer.config import PRESETS, DreamerConfig
from pvm_mbrl.dreamer.optim import OptimizerConfig
from pvm_mbrl.tdmpc2 import MODEL_SIZES, TDMPC2, TDMPC2Config
from pvm_mbrl.train import TrainConfig, Trainer

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import append_results, overrides

HEADING = "## Learning curve (benchmarks/learning.py)"
PLOT = pathlib.Path(__file__).resolve().parent / "learning_curve.png"
# --obs choices -> the observation keys the agent sees.
OBS = {"pixels": ("pixels",), "pixels+proprio": ("pixels", "proprio"), "state": ("state",)}


def random_baseline(task, episodes, episode_length, seed=0, action_repeat=1):
    """Mean return and success_once of uniform random actions over ``episodes`` episodes."""
    env = envs.make(
        task,
        obs_mode="state",
        render=False,
        episode_length=episode_length,
        action_repeat=action_repeat,
        num_envs=episodes,
        auto_reset=False,
    )
    (out,) = jax.device_get(evaluate.make_rollout([env], episodes)(None, jax.random.PRNGKey(seed)))
    return float(out["return"].mean()), float(out["success_once"].mean())


def write_gif(learned: np.ndarray, rand: np.ndarray, path, scale: int = 4, stride: int = 1) -> None:
    """Episode frames ``[T, H, W, 3]`` of the learned and the random policy side by side, every
    ``stride``-th frame, each pixel ``scale`` x ``scale``."""
    both = np.stack([learned, rand], 1)[::stride, None]  # [T, 1, 2, H, W, 3]
    frames = np.stack([media.grid(f, pad=2) for f in both])
    frames = frames.repeat(scale, 1).repeat(scale, 2)
    fps = max(1, round(10 / stride))
    print(f"saved {media.save_gif(frames, path, fps=fps)} (left: learned, right: random)")


def final_stats(curve) -> tuple[float, float, int]:
    """Episode-weighted return and success_once over the last fifth of the chunks."""
    tail = curve[-max(1, len(curve) // 5) :]
    n = sum(r["episodes"] for r in tail)
    if n == 0:
        return float("nan"), float("nan"), 0
    ret = sum(r["return"] * r["episodes"] for r in tail) / n
    return ret, sum(r["success"] * r["episodes"] for r in tail) / n, n


def plot(curve, rand_ret, rand_succ, path, title, agent_name="DreamerV3"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in curve if r["episodes"]]
    x = [r["env_steps"] for r in done]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, key, base, label in (
        (axes[0], "return", rand_ret, "episode return"),
        (axes[1], "success", rand_succ, "success_once"),
    ):
        ax.plot(x, [r[key] for r in done], marker=".", label=agent_name)
        ax.axhline(base, color="gray", ls="--", label="random policy")
        ax.set_xlabel("env steps")
        ax.set_ylabel(label)
        ax.legend()
    fig.suptitle(textwrap.fill(title, 140), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"saved {path}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--agent", choices=["dreamer", "tdmpc2"], default="dreamer")
    ap.add_argument(
        "--td-size",
        type=int,
        default=1,
        choices=sorted(MODEL_SIZES),
        help="TD-MPC2 model-size preset (millions of parameters) with --agent tdmpc2",
    )
    ap.add_argument(
        "--pretrain",
        type=int,
        default=0,
        help="updates on the prefilled replay before the loop (TD-MPC2: one per seed step)",
    )
    ap.add_argument("--task", default="Reach")
    ap.add_argument("--camera", default=None, help="default: the task's (envs.make)")
    ap.add_argument("--action-repeat", type=int, default=1)
    ap.add_argument("--image", type=int, default=64)
    ap.add_argument(
        "--obs",
        choices=sorted(OBS),
        default="pixels",
        help="what the agent sees; 'state' (no rendering) checks the agent without vision",
    )
    ap.add_argument("--episode-length", type=int, default=None, help="default: the task's")
    ap.add_argument(
        "--size",
        default="size1m",
        choices=PRESETS,
        help="DreamerConfig.preset: an official size, or micro, tiny, small (the probes' "
        "agent, about 93 updates/min at batch 16 x 16 on 2 CPU cores)",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="config override on top of --size (--td-size), e.g. --set deter=256 (repeatable)",
    )
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=100, help="learning-rate warm-up updates")
    ap.add_argument("--train-ratio", type=float, default=32.0)
    ap.add_argument("--num-envs", type=int, default=16)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--chunk-steps", type=int, default=32, help="vectorised env steps per chunk")
    ap.add_argument("--prefill", type=int, default=100, help="env steps per env before training")
    ap.add_argument(
        "--prefill-policy",
        choices=["random", "agent"],
        default="random",
        help="who acts in the prefill: uniform random actions or the untrained agent",
    )
    ap.add_argument("--replay", type=int, default=100_000, help="replay capacity (total steps)")
    ap.add_argument(
        "--online",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="TrainConfig.replay_online: the official online queue first in every batch",
    )
    ap.add_argument(
        "--curve-out", default=None, metavar="JSONL", help="also write each chunk's row here"
    )
    ap.add_argument(
        "--fused",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="TrainConfig.fused (--no-fused is faster on XLA:CPU)",
    )
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--env-steps", type=int, default=None, help="stop after this many env steps")
    ap.add_argument("--random-episodes", type=int, default=64)
    ap.add_argument(
        "--eval-episodes",
        type=int,
        default=64,
        help="episodes of the final eval policy and of the random policy on the same targets",
    )
    ap.add_argument(
        "--shifts",
        nargs="*",
        default=None,
        metavar="SHIFT",
        help="also evaluate the final agent zero-shot under these shifts (evaluate.evaluate, "
        "--eval-episodes each; e.g. id and the study's lighting shifts on Highway)",
    )
    ap.add_argument("--gif", default=None, help="GIF of one final episode: learned | random")
    ap.add_argument("--gif-scale", type=int, default=4, help="GIF pixels per image pixel")
    ap.add_argument("--gif-stride", type=int, default=1, help="keep every n-th frame in the GIF")
    ap.add_argument("--save", default=None, metavar="DIR", help="checkpoint directory")
    ap.add_argument("--save-every", type=float, default=10.0, help="minutes between saves")
    ap.add_argument(
        "--from",
        dest="from_",
        default=None,
        metavar="DIR",
        help="evaluate the newest checkpoint in DIR (same flags as its run) without training",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--plot", default=None, help=f"PNG path (default {PLOT.name} here)")
    ap.add_argument("--no-plot", action="store_true")
    ap.add_argument("--quick", action="store_true", help="tiny smoke test (no write by default)")
    ap.add_argument("--write", action=argparse.BooleanOptionalAction, help="append to RESULTS.md")
    a = ap.parse_args(argv)
    a.write = not a.quick if a.write is None else a.write
    if a.quick:
        a.size, a.image, a.num_envs, a.batch, a.length = "micro", 16, 2, 2, 8
        a.chunk_steps, a.prefill, a.random_episodes, a.eval_episodes = 4, 10, 4, 2
        a.env_steps, a.episode_length = a.env_steps or 32, a.episode_length or 6
        a.no_plot = a.no_plot or a.plot is None
        if a.agent == "tdmpc2":
            a.length = 4
            a.set += ["mlp_dim=32", "enc_dim=32", "latent_dim=16", "num_samples=16"]
            a.set += ["num_elites=4", "num_pi_trajs=2", "iterations=2"]
    plot_path = a.plot or PLOT

    env = make_env(a, a.num_envs)
    agent = make_agent(a, env)
    tc = TrainConfig(
        num_envs=a.num_envs,
        train_ratio=a.train_ratio,
        batch_size=a.batch,
        batch_length=a.length,
        chunk_steps=a.chunk_steps,
        prefill=a.prefill,
        replay_capacity=a.replay // a.num_envs * a.num_envs,
        replay_online=a.online,
        prefill_policy=a.prefill_policy,
        fused=a.fused,
    )
    trainer = Trainer(env, agent, tc)
    desc = (
        f"{a.task} ({a.camera or 'default'} camera, {a.image} px, obs {a.obs}, "
        f"{env.episode_length}-step episodes, action repeat {a.action_repeat}), "
        f"{agent_label(a)}, lr {a.lr:g}, {a.num_envs} envs, train ratio {a.train_ratio:g}, batch "
        f"{a.batch} x {a.length}, {a.chunk_steps} steps x {a.num_envs} envs and "
        f"{tc.chunk_updates} updates per chunk, prefill {a.prefill} steps per env "
        f"({a.prefill_policy} policy), {a.pretrain} pretraining updates, "
        f"replay context {agent.replay_context}, online queue {'on' if a.online else 'off'}"
    )
    print(desc)

    if a.from_:
        template = jax.eval_shape(agent.init, jax.random.PRNGKey(a.seed))
        agent_state = checkpoint.restore_agent(a.from_, template)
        final_eval(a, agent, agent_state)
        shift_eval(a, agent, agent_state)
        return
    saver = checkpoint.Checkpointer(a.save, max_to_keep=2, save_replay=False) if a.save else None
    t0 = time.perf_counter()
    state = trainer.pretrain(trainer.prefill(trainer.init(jax.random.PRNGKey(a.seed))), a.pretrain)
    header = "| env steps | updates | wall (min) | episodes | return | success_once |"
    print(header, flush=True)
    curve, saved_at = [], 0.0
    while True:
        state, m = trainer.train_chunk(state)
        m = jax.device_get(m)
        row = dict(
            env_steps=int(m["env_steps"]),
            updates=int(m["updates"]),
            wall=(time.perf_counter() - t0) / 60,
            episodes=int(m["episode/count"]),
            **{"return": float(m["episode/return"]), "success": float(m["episode/success_once"])},
        )
        curve.append(row)
        print(fmt(row), flush=True)
        if a.curve_out:  # the row, its frames and the chunk's mean losses
            losses = {k: float(v) for k, v in m.items() if k.startswith(("loss/", "wm/"))}
            out = {**row, "frames": row["env_steps"] * a.action_repeat, **losses}
            with open(a.curve_out, "a") as f:
                f.write(json.dumps(out) + "\n")
        done = row["wall"] >= a.minutes or (a.env_steps and row["env_steps"] >= a.env_steps)
        if saver and (done or row["wall"] - saved_at >= a.save_every):
            saver.save(row["updates"], state, dict(vars(a), description=desc, curve=curve))
            saved_at = row["wall"]
        if done:
            break
    if saver:
        saver.close()
    if not np.isfinite(float(m["loss/total"])):
        print("warning: the loss is not finite")
    evaluated = final_eval(a, agent, state.agent)
    shift_eval(a, agent, state.agent)

    rand_ret, rand_succ = random_baseline(
        a.task, a.random_episodes, env.episode_length, a.seed + 1, a.action_repeat
    )
    ret, succ, n = final_stats(curve)
    last = curve[-1]
    summary_h = (
        "| env steps | updates | wall (min) | final return | final success_once "
        "| random return | random success_once |"
    )
    ret, succ = (f"{ret:.2f}", f"{succ:.2f}") if n else ("-", "-")  # no episode ended
    summary = (
        f"| {last['env_steps']:,} | {last['updates']:,} | {last['wall']:.1f} | {ret} "
        f"| {succ} | {rand_ret:.2f} | {rand_succ:.2f} |"
    )
    print(f"\n{summary_h}\n{summary}")
    print(f"(final: {n} episodes of the last fifth of the chunks; random: {a.random_episodes})")
    eval_h = (
        "| eval episodes | eval-policy return | success_once | success_end | random return "
        "| success_once | success_end |"
    )
    learned, rand = evaluated["learned"], evaluated["random"]
    eval_row = f"| {a.eval_episodes} | " + " | ".join(f"{x:.2f}" for x in (*learned, *rand)) + " |"
    print(f"\n{eval_h}\n{eval_row}")

    if not a.no_plot:
        plot(curve, rand_ret, rand_succ, plot_path, desc, type(agent).__name__)
    if not a.write:
        return
    step = max(1, len(curve) // 20)
    shown = curve[::step] + ([] if (len(curve) - 1) % step == 0 else curve[-1:])
    notes = [
        desc,
        f"final: episode-weighted mean over the {n} episodes that ended in the last fifth of "
        f"the chunks; random: uniform random actions, {a.random_episodes} episodes; env steps "
        "include the prefill; wall time counted from before the first compile",
    ]
    notes.append(
        "eval: the final agent's eval policy (the actor's mode) and uniform random actions on "
        f"the same {a.eval_episodes} fresh episodes"
    )
    rows = [summary_h, "|" + "---|" * 7, summary, "", eval_h, "|" + "---|" * 7, eval_row, ""]
    rows += [header, "|" + "---|" * 6]
    append_results(HEADING, notes, rows + [fmt(r) for r in shown])


def make_agent(a, env):
    """DreamerV3 at preset ``--size`` or TD-MPC2 at ``--td-size``, with the ``--set`` overrides."""
    if a.agent == "tdmpc2":
        kw = dict(obs_keys=OBS[a.obs], lr=a.lr) | overrides(a.set, TDMPC2Config)
        config = TDMPC2Config.sized(a.td_size, **kw)
        return TDMPC2(config, env.observation_space, env.action_space, env.episode_length)
    kw = dict(compute_dtype=a.dtype, obs_keys=OBS[a.obs])
    kw |= dict(optimizer=OptimizerConfig(lr=a.lr, warmup=a.warmup)) | overrides(a.set)
    return Dreamer(DreamerConfig.preset(a.size, **kw), env.observation_space, env.action_space)


def agent_label(a) -> str:
    """The agent, its size and overrides as the run's description names them."""
    sets = "".join(" " + x for x in a.set)
    if a.agent == "tdmpc2":
        return f"TD-MPC2 {a.td_size}M{sets}"
    return f"DreamerV3 {a.size}{sets}, {a.dtype}, warm-up {a.warmup}"


def make_env(a, num_envs: int):
    """The task as the flags ``a`` describe it, ``num_envs`` batched envs without auto-reset."""
    mode = dict(obs_mode="state", render=False) if a.obs == "state" else {}
    return envs.make(
        a.task,
        **mode,
        image_size=a.image,
        camera=a.camera,
        episode_length=a.episode_length,
        action_repeat=a.action_repeat,
        num_envs=num_envs,
        auto_reset=False,
    )


def final_eval(a, agent, agent_state) -> dict[str, tuple[float, float, float]]:
    """Return, success_once and success_end of the eval policy and of random actions on the
    same ``a.eval_episodes`` fresh episodes (printed); writes ``a.gif`` from the first of them.
    (On Highway success_end is the share of episodes that finish without a collision or a road
    exit.)"""
    env = make_env(a, a.eval_episodes)
    play = evaluate.make_rollout([env], a.eval_episodes, agent, frames=bool(a.gif))
    key = jax.random.PRNGKey(a.seed + 2)
    out = {}
    for name, rand in (("learned", False), ("random", True)):
        (o,) = jax.device_get(play(agent_state, key, rand))
        out[name] = tuple(float(o[k].mean()) for k in ("return", "success_once", "success_end"))
        out[name + "_frames"] = o.get("frames")
        print(
            f"{name} policy on {a.eval_episodes} episodes: return {out[name][0]:.2f}, "
            f"success_once {out[name][1]:.2f}, success_end {out[name][2]:.2f}",
            flush=True,
        )
    if a.gif and out["learned_frames"] is not None:
        write_gif(out["learned_frames"], out["random_frames"], a.gif, a.gif_scale, a.gif_stride)
    return out


def shift_eval(a, agent, agent_state) -> None:
    """With ``--shifts``: the eval policy zero-shot under each shift, ``--eval-episodes`` each,
    printed as the evaluation's table and in the reference study's per-seed layout."""
    if not a.shifts:
        return
    mode = dict(obs_mode="state", render=False) if a.obs == "state" else {}
    kwargs = dict(
        mode, image_size=a.image, camera=a.camera, episode_length=a.episode_length,
        action_repeat=a.action_repeat,
    )  # fmt: skip
    res = evaluate.evaluate(agent, [agent_state], a.task, kwargs, a.shifts, a.eval_episodes)
    name = type(agent).__name__
    for metric in ("return", "normalised", "success_end"):
        print(f"{metric}:\n{evaluate.markdown_table({name: res}, metric=metric)}")
    print(evaluate.study_lines({name: res}))


def fmt(r) -> str:
    ep = r["episodes"]
    ret, succ = (f"{r['return']:.2f}", f"{r['success']:.2f}") if ep else ("-", "-")
    return f"| {r['env_steps']:,} | {r['updates']:,} | {r['wall']:.2f} | {ep} | {ret} | {succ} |"


if __name__ == "__main__":
    pvm_mbrl.setup()  # host-memory reuse and the compilation cache, before any JAX work
    main()
