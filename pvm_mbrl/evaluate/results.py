"""Evaluation results: the :class:`Results` record, its statistics, and its files.

``write_results(results_by_model, out)`` merges into ``out/results.json`` by model name, then
redraws ``results.csv``, ``results.md`` and ``results.png`` from all the merged models:

- models already in the file and not written now are kept;
- a model written again replaces its own entry only with ``overwrite=True``; otherwise a
  ValueError names the model and the file, and nothing is written;
- the earlier models must have been evaluated with the same task, shift names, episodes and
  evaluation seed as a model written now (one comparable table); otherwise a ValueError names
  them, unless ``overwrite=True`` keeps them side by side (each entry records its settings);
- a ``results.json`` that is not JSON or not from :func:`write_json` raises, naming the file.

Every file is written to a temporary file and renamed over the old one, so an interrupted
write leaves the earlier file whole. ``pvm_mbrl.evaluate`` re-exports the public names.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import os
import pathlib
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from pvm_mbrl.evaluate.targets import parse_shift

METRICS = ("normalised", "return", "random_return", "success_once", "success_end")
RESULTS_FILES = ("results.json", "results.csv", "results.md", "results.png")


# ----- numbers -----------------------------------------------------------------------------------


def normalised_return(ret, random_return, max_return):
    """``(R - R_random) / (R_max - R_random)``, elementwise; NaN where ``R_max <= R_random``."""
    r, lo, hi = (np.asarray(x, np.float64) for x in (ret, random_return, max_return))
    span = hi - lo
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(span > 0, (r - lo) / np.where(span > 0, span, 1.0), np.nan)


def summarise(per_seed) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error (``std(ddof=1) / sqrt(n)``) over the leading (seed) axis.

    With one seed the SE is NaN. NaN entries (shifts that do not apply) stay NaN.
    """
    x = np.asarray(per_seed, np.float64)
    if x.ndim == 0 or x.shape[0] == 0:
        raise ValueError(f"per_seed must have a leading seed axis of size >= 1, got {x.shape}")
    n = x.shape[0]
    mean = x.mean(0)
    se = x.std(0, ddof=1) / math.sqrt(n) if n > 1 else np.full_like(mean, np.nan)
    return mean, se


# ----- results -----------------------------------------------------------------------------------


@dataclasses.dataclass
class Results:
    """Evaluation of one model: per-episode arrays ``[seeds, shifts, episodes]`` (NaN for a
    shift that does not apply, explained in ``notes``) and the settings that produced them."""

    task: str
    shifts: tuple[str, ...]
    episodes: int
    seed: int
    env_kwargs: dict
    max_return: float
    returns: np.ndarray
    success_once: np.ndarray
    success_end: np.ndarray
    random_returns: np.ndarray
    notes: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def num_seeds(self) -> int:
        return int(self.returns.shape[0])

    def per_seed(self) -> dict[str, np.ndarray]:
        """Each of ``METRICS`` per seed and shift, ``[seeds, shifts]``."""
        ret, floor = self.returns.mean(-1), self.random_returns.mean(-1)
        return {
            "normalised": normalised_return(ret, floor, self.max_return),
            "return": ret,
            "random_return": floor,
            "success_once": self.success_once.mean(-1),
            "success_end": self.success_end.mean(-1),
        }

    def summary(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{metric: (mean [shifts], se [shifts])}`` over seeds (see :func:`summarise`)."""
        return {k: summarise(v) for k, v in self.per_seed().items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN as ``None``): settings, summary, per-seed and per-episode data."""
        per_seed, summary = self.per_seed(), self.summary()
        by_shift = lambda a: {s: _json(a[..., i]) for i, s in enumerate(self.shifts)}  # noqa: E731
        return {
            "task": self.task,
            "shifts": list(self.shifts),
            "episodes": self.episodes,
            "seed": self.seed,
            "seeds": self.num_seeds,
            "env_kwargs": self.env_kwargs,
            "max_return": self.max_return,
            "notes": self.notes,
            "summary": {
                m: {
                    s: {"mean": _json(mu[i]), "se": _json(se[i])} for i, s in enumerate(self.shifts)
                }
                for m, (mu, se) in summary.items()
            },
            "per_seed": {m: by_shift(v) for m, v in per_seed.items()},
            "per_episode": {
                "return": _per_episode(self.returns, self.shifts),
                "success_once": _per_episode(self.success_once, self.shifts),
                "success_end": _per_episode(self.success_end, self.shifts),
                "random_return": _per_episode(self.random_returns, self.shifts),
            },
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Results:
        """Inverse of :meth:`to_dict`."""
        shifts = tuple(d["shifts"])

        def arr(name):
            per = d["per_episode"][name]
            a = np.array([[_unjson(x) for x in per[s]] for s in shifts], np.float64)
            return a.transpose(1, 0, 2)  # [shifts, seeds, episodes] -> [seeds, shifts, episodes]

        return cls(
            task=d["task"],
            shifts=shifts,
            episodes=int(d["episodes"]),
            seed=int(d["seed"]),
            env_kwargs=dict(d["env_kwargs"]),
            max_return=float(d["max_return"]),
            returns=arr("return"),
            success_once=arr("success_once"),
            success_end=arr("success_end"),
            random_returns=arr("random_return"),
            notes=dict(d.get("notes", {})),
        )


def _json(x):
    """numpy -> nested lists of floats, NaN as None."""
    a = np.asarray(x, np.float64)
    if a.ndim == 0:
        return None if not np.isfinite(a) else float(a)
    return [_json(v) for v in a]


def _unjson(x):
    if x is None:
        return np.nan
    if isinstance(x, list):
        return [_unjson(v) for v in x]
    return float(x)


def _per_episode(a, shifts):
    return {s: _json(a[:, i, :]) for i, s in enumerate(shifts)}


def floor_key(task: str, env_kwargs: Mapping, shift: str, episodes: int, seed: int) -> str:
    """Cache key of one random floor: (task, env settings, shift, episodes, seed) as JSON."""
    return json.dumps(
        {"task": task, "env": dict(env_kwargs), "shift": shift, "episodes": episodes, "seed": seed},
        sort_keys=True,
        default=str,
    )


# ----- writers -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _replacing(path) -> Iterator[pathlib.Path]:
    """A temporary path next to ``path``, renamed over ``path`` if the block succeeds."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _shift_union(results_by_model: Mapping[str, Results]) -> list[str]:
    if not results_by_model:
        raise ValueError("results_by_model is empty")
    return list(dict.fromkeys(s for r in results_by_model.values() for s in r.shifts))


def _cell(res: Results, shift: str, metric: str) -> tuple[float, float]:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if shift not in res.shifts:
        return np.nan, np.nan
    mean, se = res.summary()[metric]
    i = res.shifts.index(shift)
    return float(mean[i]), float(se[i])


def write_json(results_by_model: Mapping[str, Results], path) -> pathlib.Path:
    """``{"models": {name: Results.to_dict()}, "random_floors": [...]}`` to ``path``; the floors
    are one record per (task, env settings, shift, episodes, seed) (see :func:`load_floors`)."""
    floors = {}
    for res in results_by_model.values():
        for k in range(res.num_seeds):
            for i, shift in enumerate(res.shifts):
                returns = res.random_returns[k, i]
                if np.all(np.isnan(returns)):
                    continue
                rec = {
                    "task": res.task,
                    "env_kwargs": res.env_kwargs,
                    "shift": shift,
                    "episodes": res.episodes,
                    "seed": res.seed + k,
                    "mean": _json(returns.mean()),
                    "returns": _json(returns),
                }
                key = floor_key(res.task, res.env_kwargs, shift, res.episodes, res.seed + k)
                floors[key] = rec
    doc = {
        "models": {name: res.to_dict() for name, res in results_by_model.items()},
        "random_floors": list(floors.values()),
    }
    text = json.dumps(doc, indent=1, default=str, allow_nan=False)
    with _replacing(path) as tmp:
        tmp.write_text(text)
    return pathlib.Path(path)


def _read_doc(path) -> dict[str, Any]:
    """The JSON object of a :func:`write_json` file; ValueError naming ``path`` otherwise."""
    path = pathlib.Path(path)
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(
            f"{path} is not a results file: invalid JSON ({e}); repair it or move it away"
        ) from e
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), dict):
        raise ValueError(
            f"{path} is not a results file from write_json: expected a JSON object with a "
            f"'models' object, got {type(doc).__name__}"
            + (f" with keys {sorted(doc)}" if isinstance(doc, dict) else "")
        )
    return doc


def read_json(path) -> dict[str, Results]:
    """The models of a file from :func:`write_json`; ValueError naming the file if it is not."""
    models = {}
    for name, d in _read_doc(path)["models"].items():
        try:
            models[name] = Results.from_dict(d)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            raise ValueError(
                f"{path}: the entry of model {name!r} is not a Results record "
                f"({type(e).__name__}: {e})"
            ) from e
    return models


def load_floors(path) -> dict[str, list[float]]:
    """The random-floor cache (for ``floors=``) stored by :func:`write_json` in ``path``."""
    try:
        return {
            floor_key(r["task"], r["env_kwargs"], r["shift"], r["episodes"], r["seed"]): r[
                "returns"
            ]
            for r in _read_doc(path).get("random_floors", [])
        }
    except (KeyError, TypeError) as e:
        raise ValueError(
            f"{path}: malformed 'random_floors' record ({type(e).__name__}: {e})"
        ) from e


def write_csv(results_by_model: Mapping[str, Results], path) -> pathlib.Path:
    """One row per (model, shift): settings, then ``<metric>_mean`` and ``<metric>_se`` for each
    of ``METRICS`` (empty cells for NaN) and the note."""
    cols = ["model", "task", "shift", "split", "preset", "seeds", "episodes", "max_return"]
    cols += [f"{m}_{s}" for m in METRICS for s in ("mean", "se")] + ["note"]
    with _replacing(path) as tmp, tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for name, res in results_by_model.items():
            summary = res.summary()
            for i, shift in enumerate(res.shifts):
                split, preset = parse_shift(shift)
                row = [name, res.task, shift, split, preset, res.num_seeds, res.episodes]
                row.append(res.max_return)
                for m in METRICS:
                    row += [_csv(summary[m][0][i]), _csv(summary[m][1][i])]
                w.writerow([*row, res.notes.get(shift, "")])
    return pathlib.Path(path)


def _csv(x) -> str:
    return "" if not np.isfinite(x) else repr(float(x))


# ----- merging into an output directory ----------------------------------------------------------


def settings(task: str, shifts, episodes: int, seed: int) -> tuple[str, tuple[str, ...], int, int]:
    """What must match for results to share one table: ``(task, shifts, episodes, seed)``."""
    shifts = (shifts,) if isinstance(shifts, str) else tuple(shifts)
    return str(task), shifts, int(episodes), int(seed)


def _settings_of(res: Results) -> tuple[str, tuple[str, ...], int, int]:
    return settings(res.task, res.shifts, res.episodes, res.seed)


def _describe(s: tuple) -> str:
    task, shifts, episodes, seed = s
    return f"task {task}, shifts {list(shifts)}, {episodes} episodes, seed {seed}"


def check_merge(
    earlier: Mapping[str, Results], new: Mapping[str, tuple], path, *, overwrite: bool = False
) -> None:
    """Raise ValueError unless models ``new`` (``{name: settings(...)}``) can be merged into the
    models ``earlier`` read from ``path`` (rules: the module docstring); ``overwrite`` allows
    all."""
    if overwrite:
        return
    again = [name for name in new if name in earlier]
    if again:
        raise ValueError(
            f"{path} already holds results of model(s) {again}: pass overwrite=True "
            "(--overwrite) to replace them (the file's other models are kept), or use other "
            "model names or another output directory"
        )
    now = set(new.values())
    odd = {name: s for name, res in earlier.items() if (s := _settings_of(res)) not in now}
    if odd:
        listed = "; ".join(f"{name!r}: {_describe(s)}" for name, s in odd.items())
        wanted = " | ".join(_describe(s) for s in sorted(now))
        raise ValueError(
            f"{path} holds results evaluated with other settings than now ({wanted}): {listed}. "
            "Pass overwrite=True (--overwrite) to keep them in one table anyway, or use another "
            "output directory"
        )


def merge_results(
    earlier: Mapping[str, Results],
    new: Mapping[str, Results],
    path="results.json",
    *,
    overwrite: bool = False,
) -> dict[str, Results]:
    """``earlier`` with the models of ``new`` added (a model in both: ``new``'s entry, in
    ``earlier``'s place), after :func:`check_merge`; ``path`` names the file in errors."""
    check_merge(earlier, {n: _settings_of(r) for n, r in new.items()}, path, overwrite=overwrite)
    return {**earlier, **new}


def read_earlier(out, *, overwrite: bool = False) -> dict[str, Results]:
    """The models of ``out/results.json`` (``{}`` if there is none). Other ``results.*`` files
    without a ``results.json`` raise (they would be replaced) unless ``overwrite``."""
    out = pathlib.Path(out)
    path = out / RESULTS_FILES[0]
    if path.exists():
        return read_json(path)
    stray = [name for name in RESULTS_FILES[1:] if (out / name).exists()]
    if stray and not overwrite:
        raise ValueError(
            f"{out} holds {stray} but no {RESULTS_FILES[0]} to merge with: move them away, or "
            "pass overwrite=True (--overwrite) to replace them"
        )
    return {}
