"""Zero-shot evaluation of trained runs across shifts: a models x shifts table, JSON, CSV, a chart.

Each run directory (written by ``examples/train.py``) is loaded with
``pvm_mbrl.experiment.load_agent`` (its task, env settings, agent and one trained state per
seed), evaluated on every shift with ``--episodes`` episodes per shift and seed, all shifts in
one compiled rollout, and normalised against a random policy on the same episodes. Merges the
results into ``--out/results.json`` by model name (the models already there are kept) and
redraws ``results.csv``, ``results.md`` and ``results.png`` from all of them; prints the Markdown
table. A model name already in the file, or earlier results of another task, shift list,
episode count or seed, stop the run before anything is evaluated unless ``--overwrite`` (which
replaces only the entries of the models evaluated again). Random floors in the file are reused.

    python examples/evaluate.py --runs runs/cnn runs/dinov2_partial --names CNN "DINOv2 partial"
    python examples/evaluate.py --runs runs/cnn --shifts id strong fog@0.5 --episodes 32
"""

from __future__ import annotations

import dataclasses
import pathlib

import tyro

import pvm_mbrl
from pvm_mbrl import evaluate


@dataclasses.dataclass
class Args:
    runs: tuple[pathlib.Path, ...]
    """Run directories (each with experiment.json and checkpoints/)."""
    names: tuple[str, ...] | None = None
    """Model names for the table, one per run (default: the directory names)."""
    shifts: tuple[str, ...] | None = None
    """Visual presets, task splits (novel_objects, outer_positions; Highway: dense, curvy) or
    split+preset (default: the task's, evaluate.default_shifts)."""
    episodes: int = 16
    """Episodes per shift and seed."""
    seed: int = 0
    """Evaluation seed: the state of training seed k plays the episodes of key seed + k."""
    step: int | None = None
    """Checkpoint step to load (default: the newest)."""
    strict: bool = False
    """Raise if a shift does not apply to a run's task (default: report n/a)."""
    metric: str = "normalised"
    """Metric of the table and chart: normalised, return, success_once, success_end."""
    out: pathlib.Path = pathlib.Path("runs/evaluation")
    """Output directory; results are merged into its results.json by model name."""
    overwrite: bool = False
    """Replace the results of models evaluated again, and allow merging with results of other
    settings (default: refuse). Models in --out that are not evaluated now are always kept."""


def main(argv: list[str] | None = None) -> dict[str, evaluate.Results]:
    args = tyro.cli(Args, args=argv, description=__doc__.splitlines()[0])
    names = args.names or tuple(run.name for run in args.runs)
    if len(names) != len(args.runs):
        raise SystemExit(f"--names needs one name per run ({len(args.runs)}), got {len(names)}")
    return evaluate.evaluate_runs(
        dict(zip(names, args.runs)),
        args.out,
        shifts=args.shifts,
        episodes=args.episodes,
        seed=args.seed,
        step=args.step,
        strict=args.strict,
        metric=args.metric,
        overwrite=args.overwrite,
    )


if __name__ == "__main__":
    pvm_mbrl.setup()  # host-memory reuse and the compilation cache, before any JAX work
    main()
