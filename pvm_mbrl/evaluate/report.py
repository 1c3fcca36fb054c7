"""Reporting results: the Markdown table, the bar chart and its caption, and
:func:`write_results`, which merges into ``out/results.json`` and redraws every file."""

from __future__ import annotations

import pathlib
import textwrap
from collections.abc import Mapping

import numpy as np

from pvm_mbrl.evaluate.results import (
    METRICS,
    RESULTS_FILES,
    Results,
    _cell,
    _replacing,
    _shift_union,
    merge_results,
    read_earlier,
    write_csv,
    write_json,
)


def markdown_table(
    results_by_model: Mapping[str, Results], metric: str = "normalised", digits: int = 2
) -> str:
    """Models x shifts, cells ``"mean ± se"`` (the mean alone with one seed, ``n/a`` where the
    shift does not apply, ``-`` where a model was not evaluated on it)."""
    names = _shift_union(results_by_model)
    lines = [
        "| model | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for model, res in results_by_model.items():
        cells = []
        for shift in names:
            mean, se = _cell(res, shift, metric)
            if shift not in res.shifts:
                cells.append("-")
            elif not np.isfinite(mean):
                cells.append("n/a")
            elif not np.isfinite(se):
                cells.append(f"{mean:.{digits}f}")
            else:
                cells.append(f"{mean:.{digits}f} ± {se:.{digits}f}")
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def study_lines(results_by_model: Mapping[str, Results], world: str | None = None) -> str:
    """The raw returns in the layout of the reference study's per-seed score file
    (``benchmarks/reference/study_seed_scores.txt``), one line per (shift, model)::

        ('carla', 'hard_low_light', 'CNN') seeds 3 mean 21.2 eps/seed [16, 16, 16]

    ``world`` defaults to the study's name of the task's world (``carla`` for ``Highway``,
    ``pick_ycb`` for the table-top tasks, else the task name); ``id`` is written ``ID``; the
    mean is over seeds of each seed's mean return. Shifts that do not apply are left out."""
    lines = []
    for model, res in results_by_model.items():
        name = world or {"Highway": "carla"}.get(res.task)
        if name is None:
            name = "pick_ycb" if "/" not in res.task else res.task
        for i, shift in enumerate(res.shifts):
            per_seed = res.returns[:, i]  # [seeds, episodes]
            if not np.isfinite(per_seed).any():
                continue
            mean = float(np.nanmean(np.nanmean(per_seed, axis=1)))
            eps = [int(np.isfinite(row).sum()) for row in per_seed]
            label = "ID" if shift == "id" else shift
            lines.append(
                f"({name!r}, {label!r}, {model!r}) seeds {len(per_seed)} mean {mean:.1f} "
                f"eps/seed {eps}"
            )
    return "\n".join(sorted(lines))


def bar_chart(
    results_by_model: Mapping[str, Results], path, metric: str = "normalised", title: str = ""
) -> pathlib.Path:
    """Grouped bars (shifts on the x axis, one bar per model, error bars = SE) as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = _shift_union(results_by_model)
    models = list(results_by_model)
    width = 0.8 / len(models)
    fig = Figure(figsize=(max(6.0, 1.1 * len(names) + 2), 3.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = np.arange(len(names))
    for m, model in enumerate(models):
        res = results_by_model[model]
        cells = [_cell(res, s, metric) for s in names]
        mean = np.array([c[0] for c in cells])
        se = np.array([c[1] for c in cells])
        ok = np.isfinite(mean)
        xs = x + (m - (len(models) - 1) / 2) * width
        has_se = ok & np.isfinite(se)
        ax.bar(xs[ok], mean[ok], width, label=model)
        if has_se.any():
            ax.errorbar(xs[has_se], mean[has_se], se[has_se], fmt="none", ecolor="k", capsize=3)
        for i in np.flatnonzero(~ok):
            label = "n/a" if names[i] in res.shifts else "-"
            ax.text(xs[i], 0.0, label, ha="center", va="bottom", fontsize=7, rotation=90)
    ax.set_xticks(x, names, rotation=20, ha="right")
    ax.set_ylabel(metric.replace("_", " "))
    ax.axhline(0.0, color="gray", lw=0.8)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(textwrap.fill(title, 90), fontsize=8)
    fig.tight_layout()
    with _replacing(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    return pathlib.Path(path)


def caption(results_by_model: Mapping[str, Results], metric: str = "normalised") -> str:
    """The table's and chart's caption: metric, tasks, statistics, episodes."""
    tasks = ", ".join(sorted({r.task for r in results_by_model.values()}))
    episodes = " or ".join(str(e) for e in sorted({r.episodes for r in results_by_model.values()}))
    text = (
        f"{metric.replace('_', ' ')} on {tasks}: mean ± standard error over seeds, "
        f"{episodes} episodes per shift and seed"
    )
    keys = []
    if any(r.notes for r in results_by_model.values()):
        keys.append("n/a: the shift does not apply to the task")
    if len({r.shifts for r in results_by_model.values()}) > 1:
        keys.append("-: the model was not evaluated on that shift")
    return text + (f" ({'; '.join(keys)})" if keys else "")


def write_results(
    results_by_model: Mapping[str, Results],
    out,
    metric: str = "normalised",
    *,
    overwrite: bool = False,
) -> dict[str, Results]:
    """Merge ``results_by_model`` into ``out/results.json`` (rules: the module docstring) and
    write ``results.{json,csv,md,png}`` of the merged models, which are returned. Checks come
    first: on an error nothing is written."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if not results_by_model:
        raise ValueError("results_by_model is empty")
    out = pathlib.Path(out)
    earlier = read_earlier(out, overwrite=overwrite)
    merged = merge_results(earlier, results_by_model, out / RESULTS_FILES[0], overwrite=overwrite)
    write_json(merged, out / "results.json")
    write_csv(merged, out / "results.csv")
    text = caption(merged, metric)
    with _replacing(out / "results.md") as tmp:
        tmp.write_text(f"{text}\n\n{markdown_table(merged, metric)}\n")
    bar_chart(merged, out / "results.png", metric, title=text)
    return merged
