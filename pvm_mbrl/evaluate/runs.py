"""Evaluating training runs by directory and merging them into one results folder."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

from pvm_mbrl.evaluate.report import study_lines, write_results
from pvm_mbrl.evaluate.results import (
    METRICS,
    RESULTS_FILES,
    Results,
    check_merge,
    load_floors,
    read_earlier,
    settings,
)
from pvm_mbrl.evaluate.rollout import Evaluator
from pvm_mbrl.evaluate.targets import default_shifts
from pvm_mbrl.experiment import Experiment, load_agent


def evaluate_runs(
    runs: Mapping[str, Any],
    out,
    shifts: Sequence[str] | None = None,
    episodes: int = 16,
    seed: int = 0,
    step: int | None = None,
    *,
    strict: bool = False,
    metric: str = "normalised",
    overwrite: bool = False,
) -> dict[str, Results]:
    """Evaluates training runs (``{model name: run directory}``, see
    :func:`pvm_mbrl.experiment.load_agent`) and merges them into ``out/results.json`` with
    :func:`write_results`, which redraws ``results.{csv,md,png}``; returns all merged models.

    The merge is checked before anything is evaluated: a model name already in the file raises
    unless ``overwrite`` (models not evaluated now are always kept), and so do earlier results
    of another task, shift list, episode count or seed. Runs with the same task, env settings
    and agent config share one compiled rollout; random floors already in ``out/results.json``
    are reused. Prints the Markdown table. ``shifts=None`` plays each task's default
    (:func:`~pvm_mbrl.evaluate.default_shifts`).
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if not runs:
        raise ValueError("runs is empty: need {model name: run directory}")
    out = pathlib.Path(out)
    previous = out / RESULTS_FILES[0]
    earlier = read_earlier(out, overwrite=overwrite)
    planned = {
        name: settings(task, default_shifts(task) if shifts is None else shifts, episodes, seed)
        for name, run in runs.items()
        for task in [Experiment.load(run).env.task]
    }
    check_merge(earlier, planned, previous, overwrite=overwrite)
    floors = load_floors(previous) if previous.exists() else {}
    results, evaluators = {}, {}
    for name, run in runs.items():
        exp, agent, states = load_agent(run, step)
        print(f"{name}: {exp.env.task}, {len(states)} seed(s), {episodes} episodes x shift")
        env_kwargs = exp.env.kwargs()
        same = (exp.env.task, repr(sorted(env_kwargs.items())), repr(agent.config))
        if same not in evaluators:
            evaluators[same] = Evaluator(
                exp.env.task, env_kwargs, shifts, episodes, agent, strict=strict
            )
        res = evaluators[same].evaluate(states, seed, floors)
        for shift, note in res.notes.items():
            print(f"  {shift}: {note}")
        results[name] = res
    merged = write_results(results, out, metric, overwrite=overwrite)
    kept = len(merged) - len(results)
    print(f"\n{(out / 'results.md').read_text()}")
    print(f"In the reference study's layout (returns):\n{study_lines(merged)}\n")
    print(f"wrote {out}/results.{{json,csv,md,png}} ({len(results)} model(s) evaluated now", end="")
    print(f", {kept} kept from earlier)" if kept else ")")
    return merged
