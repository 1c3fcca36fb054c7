"""Reproduce the study's grid: CNN / DINOv2 / CLIP x frozen / partial / full fine-tuning, plus
the ViT-from-scratch control, x seeds; train every cell, then evaluate them all across shifts
into one table and figure.

    python examples/reproduce_study.py --scale tiny                  # whole grid, ~30 min on CPU
    python examples/reproduce_study.py --scale paper --dinov2 /ckpt/dinov2-small \
        --clip /ckpt/clip-vit-base-patch16 --seeds 0 1 2 --out runs/study

Resumable: a cell whose run directory already reached its step count is skipped, one with
checkpoints below it is resumed, so after a kill the same command continues. Each cell is an
``examples/train.py`` run in ``<out>/<model>``; the evaluation writes
``<out>/evaluation/results.{json,csv,md,png}``.

``--scale tiny`` stands random-initialised tiny ViTs (the 2-block, 28 px test checkpoints in
``tests/fixtures/vit``) in for the PVMs and uses the smallest agent, 32 px images and a few
hundred env steps, so that the whole pipeline runs offline on 2 CPU cores. Its numbers say
nothing about the study's question. ``--scale paper`` uses our reading of the study's settings
(DreamerV3 size12m, 500k env steps on PickCube from the front camera at 64 px, ViTs at 224 px,
partial = the last 4 of 12 blocks, PVM learning rate 10x below the agent's) and needs the real
checkpoints and an accelerator.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Literal

import tyro

import pvm_mbrl
from pvm_mbrl import evaluate
from pvm_mbrl.dreamer.optim import OptimizerConfig
from pvm_mbrl.experiment import Experiment, run

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "vit"


@dataclasses.dataclass(frozen=True)
class Args:
    scale: Literal["tiny", "paper"] = "tiny"
    """tiny: the whole grid on CPU with stand-in ViTs; paper: the study's settings"""
    out: pathlib.Path | None = None
    """output folder (default runs/study_<scale>)"""
    seeds: tuple[int, ...] | None = None
    """training seeds (default: tiny 0 1, paper 0 1 2)"""
    dinov2: str | None = None
    """DINOv2 checkpoint (folder or hub name; paper default facebook/dinov2-small)"""
    clip: str | None = None
    """CLIP checkpoint (paper default openai/clip-vit-base-patch16)"""
    task: str | None = None
    """task (default: tiny Reach, paper PickCube)"""
    steps: int | None = None
    """env steps per run (default: tiny 320, paper 500000)"""
    models: tuple[str, ...] | None = None
    """subset of the grid's model names to run (default: all)"""
    episodes: int | None = None
    """evaluation episodes per shift and seed (default: tiny 4, paper 16)"""
    quiet: bool = False


FINETUNE = ("frozen", "partial", "full")


def grid(args: Args) -> dict[str, Experiment]:
    """Model name -> its experiment."""
    tiny = args.scale == "tiny"
    out = args.out or pathlib.Path(f"runs/study_{args.scale}")
    seeds = args.seeds or ((0, 1) if tiny else (0, 1, 2))
    if tiny:
        common = dict(
            task=args.task or "Reach",
            image_size=32,
            size="micro",
            num_envs=4,
            batch_size=4,
            batch_length=8,
            replay_capacity=4096,
            prefill=16,
            chunk_steps=8,
            train_ratio=64,
            steps=args.steps or 320,
            episode_length=20,
            log_every=64,
            checkpoint_every=128,
            video_every=10**9,
        )
        pvms = {"dinov2": str(FIXTURES / "dinov2"), "clip": str(FIXTURES / "clip_vision")}
        partial, input_size = "partial(1)", None
    else:
        common = dict(
            task=args.task or "PickCube",
            image_size=64,
            size="size12m",
            steps=args.steps or 500_000,
            num_envs=16,
        )
        pvms = {
            "dinov2": args.dinov2 or "facebook/dinov2-small",
            "clip": args.clip or "openai/clip-vit-base-patch16",
        }
        partial, input_size = "partial(4)", 224
    lr = OptimizerConfig().lr
    common |= dict(camera="front", seeds=tuple(seeds))
    exps = {"cnn": Experiment.of(**common, logdir=str(out / "cnn"))}
    registry = {"dinov2": "dinov2-small", "clip": "clip-vit-b16"}
    for family, ckpt in pvms.items():
        for level in FINETUNE:
            name = f"{family}-{level}"
            exps[name] = Experiment.of(
                **common,
                encoder=registry[family],
                checkpoint=ckpt,
                finetune=partial if level == "partial" else level,
                input_size=input_size,
                encoder_cache=level != "full",
                pvm_lr=None if level == "frozen" else lr / 10,
                logdir=str(out / name),
            )
    exps["vit-scratch"] = Experiment.of(
        **common,
        encoder="vit-scratch",
        checkpoint=pvms["dinov2"],
        finetune="full",
        input_size=input_size,
        logdir=str(out / "vit-scratch"),
    )
    if args.models:
        unknown = sorted(set(args.models) - set(exps))
        if unknown:
            raise SystemExit(f"unknown models {unknown}; the grid has {list(exps)}")
        exps = {k: v for k, v in exps.items() if k in args.models}
    return exps


def train(name: str, exp: Experiment, quiet: bool) -> None:
    from pvm_mbrl import checkpoint

    folder = pathlib.Path(exp.output.logdir) / "checkpoints"
    done = folder.exists() and checkpoint.Checkpointer(folder).latest_step()
    if done and done >= exp.steps:
        print(f"{name}: done ({done} env steps), skipped")
        return
    print(f"{name}: {'resuming from ' + str(done) if done else 'training'} -> {exp.steps} steps")
    run(exp, resume=bool(done), progress=not quiet)


def main(argv=None) -> None:
    args = tyro.cli(Args, args=argv, description=__doc__.split("\n\n")[0])
    exps = grid(args)
    for name, exp in exps.items():
        train(name, exp, args.quiet)
    out = pathlib.Path(next(iter(exps.values())).logdir).parent
    # A re-run resumes these same runs (trained further), so their evaluation replaces the last.
    evaluate.evaluate_runs(
        {name: exp.output.logdir for name, exp in exps.items()},
        out / "evaluation",
        episodes=args.episodes or (4 if args.scale == "tiny" else 16),
        overwrite=True,
    )
    if args.scale == "tiny":
        print("tiny scale: stand-in random ViTs and a few hundred steps; not the study's results")


if __name__ == "__main__":
    pvm_mbrl.setup()  # host-memory reuse and the compilation cache, before any JAX work
    main()
