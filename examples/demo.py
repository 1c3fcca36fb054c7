"""`make demo`: a trained DreamerV3 agent evaluated across visual shifts, then the training
pipeline on a short fresh run of the same task.

    python examples/demo.py [--steps 2048] [--out runs/demo] [--episodes 8]
    python examples/demo.py --make-agent 24000    # train and ship the agent (about 2 h, 2 cores)

1. The agent shipped in ``examples/demo_agent/`` (``dmc/cartpole_swingup`` from 64 px pixels, the
   small agent, settings ``AGENT_RUN``; made by ``--make-agent``) is evaluated zero-shot across
   the visual shifts ``SHIFTS``: the table, the bar chart, and a GIF of one episode of its
   policy beside uniform random actions under each shift.
2. A fresh run of the same agent for ``--steps`` env steps (a few minutes: compiled collection
   and updates, logs, checkpoints) is evaluated the same way and joins the same table. Run the
   demo again to resume it and train further (``--steps`` larger).
"""

from __future__ import annotations

import argparse
import pathlib
import shutil

import jax
import numpy as np

import pvm_mbrl
from pvm_mbrl import checkpoint, envs, evaluate, media
from pvm_mbrl.experiment import CONFIG_FILE, Experiment, load_agent, run

AGENT_DIR = pathlib.Path(__file__).resolve().parent / "demo_agent"
# Visual shifts that apply to a dmc/ task (the manipulation tasks' object splits do not; the
# "weak" and "strong" presets' fog and rain, set for the table-top camera, hide the distant cart).
SHIFTS = ("id", "texture", "color-hard", "lighting-hard", "video-easy", "dcs-0.2")
# The shipped agent's settings: benchmarks/RESULTS.md's cartpole_swingup pixel curve.
AGENT_RUN = dict(
    task="dmc/cartpole_swingup",
    action_repeat=2,
    size="small",
    lr=3e-4,
    warmup=0,
    train_ratio=64,
    num_envs=16,
    batch_size=16,
    batch_length=32,
    prefill=100,
    chunk_steps=25,
    fused=False,  # faster on XLA:CPU (docs/performance.md)
    replay_capacity=32_000,
    log_every=2_000,
    checkpoint_every=4_000,
    video_every=100_000,
    keep_checkpoints=2,
    save_replay=False,
)


def make_agent(steps: int, run_dir: pathlib.Path, agent_dir: pathlib.Path = AGENT_DIR) -> None:
    """Train (or resume) the demo agent's run to ``steps`` env steps, then ship its newest
    checkpoint: ``agent_dir`` gets the run's ``experiment.json`` and that one step."""
    exp = Experiment.of(**AGENT_RUN, steps=steps, logdir=str(run_dir))
    run(exp, resume=(run_dir / CONFIG_FILE).exists())
    export_agent(run_dir, agent_dir)


def export_agent(run_dir: pathlib.Path, agent_dir: pathlib.Path) -> pathlib.Path:
    """Copy a run's ``experiment.json`` and its newest good checkpoint into ``agent_dir`` (a run
    directory that ``load_agent`` reads); returns the step folder."""
    ckpts = pathlib.Path(run_dir) / "checkpoints"
    steps = [int(p.name) for p in ckpts.iterdir() if p.name.isdigit()]
    step = checkpoint.select_step(ckpts, steps)
    if agent_dir.exists():
        shutil.rmtree(agent_dir)
    (agent_dir / "checkpoints").mkdir(parents=True)
    exp = Experiment.load(run_dir).replace(logdir=agent_dir.name)
    exp.save(agent_dir, spaces=Experiment.load_spaces(run_dir))
    return pathlib.Path(shutil.copytree(ckpts / str(step), agent_dir / "checkpoints" / str(step)))


def shipped_steps(agent_dir: pathlib.Path = AGENT_DIR) -> int:
    """The env steps of the shipped agent's checkpoint."""
    (step,) = [int(p.name) for p in (agent_dir / "checkpoints").iterdir() if p.name.isdigit()]
    return step


def learned_vs_random_gif(agent_dir, path, shifts=SHIFTS, steps: int = 200, seed: int = 0):
    """The first ``steps`` agent steps of one episode per shift (rows) of the agent's eval
    policy (left) and of uniform random actions (right) from the same start, as a GIF."""
    exp, agent, (state, *_) = load_agent(agent_dir)
    kwargs = {**exp.env.kwargs(), "episode_length": steps}
    env_list = [
        envs.make(exp.env.task, num_envs=1, auto_reset=False, shift=s, **kwargs) for s in shifts
    ]
    play = evaluate.make_rollout(env_list, 1, agent, frames=True)
    key = jax.random.PRNGKey(seed)
    learned = [np.asarray(o["frames"]) for o in play(state, key, False)]
    rand = [np.asarray(o["frames"]) for o in play(state, key, True)]
    rows = np.stack([np.stack([a, b], 1) for a, b in zip(learned, rand)], 1)  # [T, S, 2, ...]
    frames = np.stack([media.grid(f, pad=2) for f in rows])
    return media.save_gif(frames.repeat(2, 1).repeat(2, 2), path, fps=15)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2048, help="fresh run's env steps")
    parser.add_argument("--out", default="runs/demo")
    parser.add_argument("--episodes", type=int, default=4, help="per shift")
    parser.add_argument(
        "--make-agent",
        type=int,
        metavar="STEPS",
        help="train the demo agent to STEPS env steps in OUT/agent_run and ship it",
    )
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    if args.make_agent:
        make_agent(args.make_agent, out / "agent_run")
        print(f"shipped {AGENT_DIR} (step {shipped_steps():,})")
        return
    table = out / "evaluation"
    shipped = f"shipped agent ({shipped_steps():,} env steps)"
    print(f"1. {shipped}: {AGENT_RUN['task']} from 64 px pixels, across {', '.join(SHIFTS)}")
    evaluate.evaluate_runs({shipped: AGENT_DIR}, table, SHIFTS, args.episodes, overwrite=True)
    gif = learned_vs_random_gif(AGENT_DIR, out / "learned_vs_random.gif")
    print(f"GIF (rows: {', '.join(SHIFTS)}; left: the agent, right: random actions): {gif}\n")

    fresh = out / "fresh"
    exp = Experiment.of(**{**AGENT_RUN, "log_every": 256}, steps=args.steps, logdir=str(fresh))
    print(f"2. the training pipeline: the same agent from scratch for {args.steps:,} env steps")
    run(exp, resume=(fresh / CONFIG_FILE).exists())
    name = f"fresh run ({args.steps:,} env steps)"
    evaluate.evaluate_runs({name: fresh}, table, SHIFTS, args.episodes, overwrite=True)
    print(f"TensorBoard: tensorboard --logdir {fresh}")
    print(f"plot: {table}/results.png; table: {table}/results.md")


if __name__ == "__main__":
    pvm_mbrl.setup()
    main()
