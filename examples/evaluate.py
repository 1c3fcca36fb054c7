"""Zero-shot evaluation of trained runs across shifts: a models x shifts table, JSON, CSV, a chart.

Each run directory (written by ``examples/train.py``) is loaded with
``pvm_mbrl.experiment.load_agent`` (its task, env settings, agent and one trained state per
seed), evaluated on every shift with ``--episodes`` episodes per shift and seed, all shifts in
one compiled rollout, and normalised against a random policy on the same episodes. Writes
``results.json``, ``results.csv``, ``results.md`` and ``results.png`` into ``--out`` and prints
the Markdown table. Random floors already in ``--out/results.json`` are reused.

    python examples/evaluate.py --runs runs/cnn runs/dinov2_partial --names CNN "DINOv2 partial"
    python examples/evaluate.py --runs runs/cnn --shifts id strong fog@0.5 --episodes 32
"""

from __future__ import annotations

import dataclasses
import pathlib

import tyro

from pvm_mbrl import evaluate


@dataclasses.dataclass
class Args:
    runs: tuple[pathlib.Path, ...]
    """Run directories (each with experiment.json and checkpoints/)."""
    names: tuple[str, ...] | None = None
    """Model names for the table, one per run (default: the directory names)."""
    shifts: tuple[str, ...] = evaluate.DEFAULT_SHIFTS
    """Visual presets, task splits (novel_objects, outer_positions) or split+preset."""
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
    """Output directory."""


def main(argv: list[str] | None = None) -> dict[str, evaluate.Results]:
    args = tyro.cli(Args, args=argv, description=__doc__.splitlines()[0])
    from pvm_mbrl.experiment import load_agent  # the training side; imported only to run

    names = args.names or tuple(run.name for run in args.runs)
    if len(names) != len(args.runs):
        raise SystemExit(f"--names needs one name per run ({len(args.runs)}), got {len(names)}")
    if len(set(names)) != len(names):
        raise SystemExit(f"model names must be unique, got {names}")
    if args.metric not in evaluate.METRICS:
        raise SystemExit(f"--metric must be one of {evaluate.METRICS}, got {args.metric!r}")
    args.out.mkdir(parents=True, exist_ok=True)
    previous = args.out / "results.json"
    floors = evaluate.load_floors(previous) if previous.exists() else {}

    results, evaluators = {}, {}
    for name, run in zip(names, args.runs):
        exp, agent, states = load_agent(run) if args.step is None else load_agent(run, args.step)
        print(f"{name}: {exp.task}, {len(states)} seed(s), {args.episodes} episodes x shift")
        env_kwargs = exp.env_kwargs()
        # Runs with the same task, env settings and agent config share one compiled rollout.
        same = (exp.task, repr(sorted(env_kwargs.items())), repr(agent.config))
        if same not in evaluators:
            evaluators[same] = evaluate.Evaluator(
                exp.task, env_kwargs, args.shifts, args.episodes, agent, strict=args.strict
            )
        res = evaluators[same].evaluate(states, args.seed, floors)
        for shift, note in res.notes.items():
            print(f"  {shift}: {note}")
        results[name] = res

    evaluate.write_json(results, args.out / "results.json")
    evaluate.write_csv(results, args.out / "results.csv")
    table = evaluate.markdown_table(results, args.metric)
    tasks = ", ".join(sorted({r.task for r in results.values()}))
    caption = (
        f"{args.metric.replace('_', ' ')} on {tasks}: mean ± standard error over seeds, "
        f"{args.episodes} episodes per shift and seed (n/a: the task has no such split)"
    )
    (args.out / "results.md").write_text(f"{caption}\n\n{table}\n")
    evaluate.bar_chart(results, args.out / "results.png", args.metric, title=caption)
    print(f"\n{caption}\n\n{table}\n\nwrote {args.out}/results.{{json,csv,md,png}}")
    return results


if __name__ == "__main__":
    main()
