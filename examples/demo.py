"""`make demo`: train the CNN DreamerV3 agent on Reach for a few minutes on the CPU, evaluate it
zero-shot across the default shifts and print the table, the plot and the TensorBoard folder.

    python examples/demo.py [--steps 2048] [--out runs/demo] [--episodes 8]

A few minutes of CPU training is far too short for the agent to learn the task (it says so at
the end and prints the command of a run that learns it; see ``benchmarks/RESULTS.md`` for
the learning curves); the demo shows the whole pipeline: compiled
collection and updates, logs, checkpoints, evaluation across visual shifts and task splits, the
table and the chart. Run it again to resume and train further (``--steps`` larger).
"""

from __future__ import annotations

import argparse
import pathlib
import textwrap

import pvm_mbrl
from pvm_mbrl import evaluate
from pvm_mbrl.experiment import Experiment, run

# benchmarks/learning.py's run that learns Reach from front-camera pixels on 2 CPU cores (its
# figures: benchmarks/RESULTS.md, "Learning curve").
LEARNED = (
    "python benchmarks/learning.py --size small --lr 3e-4 --warmup 0 --train-ratio 64 "
    "--batch 16 --length 16 --chunk-steps 25 --prefill 50 --no-fused --minutes 100 "
    "--save runs/reach_pixels --gif runs/reach_pixels/episode.gif"
)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2048, help="env steps (over 16 envs)")
    parser.add_argument("--out", default="runs/demo")
    parser.add_argument("--episodes", type=int, default=8, help="per shift")
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    exp = Experiment(
        task="Reach",
        camera="front",
        image_size=64,
        size="tiny",
        lr=3e-4,
        warmup=0,
        num_envs=16,
        batch_size=16,
        batch_length=16,
        train_ratio=64,
        prefill=64,
        chunk_steps=16,
        replay_capacity=100_000,
        fused=False,  # faster on XLA:CPU (see docs/performance.md)
        steps=args.steps,
        log_every=256,
        checkpoint_every=1024,
        video_every=1024,
        logdir=str(out / "cnn"),
    )
    ckpts = out / "cnn" / "checkpoints"
    resume = ckpts.exists() and any(p.name.isdigit() for p in ckpts.iterdir())
    print(
        f"training the CNN agent on Reach (front camera, 64 px) to {args.steps:,} env steps: "
        "a few minutes that show the pipeline, too short to learn the task"
    )
    run(exp, resume=resume)
    # A re-run trains the same run further, so its evaluation replaces the earlier one.
    evaluate.evaluate_runs(
        {"CNN (demo)": exp.logdir}, out / "evaluation", episodes=args.episodes, overwrite=True
    )
    print(f"TensorBoard: tensorboard --logdir {out}   (videos also in {out}/cnn/videos)")
    print(f"plot: {out}/evaluation/results.png; table: {out}/evaluation/results.md")
    note = (
        f"Note: {args.steps:,} env steps are far too few for the agent to learn Reach, so the "
        "returns above stay near a random policy's. This run trains an agent that learns from "
        "pixels to move to the target (return 3.6x the random policy's after about 100 minutes "
        "on 2 CPU cores; docs/dreamer.md, 'Learning Reach from pixels'):"
    )
    print("\n" + textwrap.fill(note, 100) + "\n    " + LEARNED)


if __name__ == "__main__":
    pvm_mbrl.setup()  # host-memory reuse and the compilation cache, before any JAX work
    main()
