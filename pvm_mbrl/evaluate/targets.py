"""What to evaluate: shift names (a visual preset, a task split, or both), the env variants
they become, and the task's maximum return."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from pvm_mbrl import envs
from pvm_mbrl import shifts as shifts_lib

SPLIT_SHIFTS = ("novel_objects", "outer_positions", "dense", "curvy")
DEFAULT_SHIFTS = ("id", "novel_objects", "outer_positions", "texture", "weak", "strong")
# The study's CARLA evaluation: its four lighting shifts, and Highway's two held-out splits.
DRIVING_SHIFTS = ("id", "dense", "curvy", *shifts_lib.STUDY_LIGHTING)
_RESERVED = ("num_envs", "auto_reset", "shift", "split")


# ----- numbers -------------------------------------------------------------------------------


def max_return(env) -> float:
    """Declared maximum return of one episode of ``env`` (a task or a wrapped env).

    The task declares ``max_step_reward`` (its reward's maximum per control step);
    ``ActionRepeat`` sums the rewards of its repeats (``repeat x`` that), and ``TimeLimit``
    sets the agent steps per episode: this is ``env.max_episode_return`` through the chain.
    """
    value = float(env.max_episode_return)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{type(env).__name__} declares max_episode_return {value}; expected > 0")
    return value


# ----- shifts and the env variants -------------------------------------------------------------


def default_shifts(task: str) -> tuple[str, ...]:
    """What an evaluation of ``task`` plays when no shifts are given: :data:`DRIVING_SHIFTS`
    for ``Highway``, :data:`DEFAULT_SHIFTS` (the study's table-top shifts) otherwise."""
    return DRIVING_SHIFTS if task == "Highway" else DEFAULT_SHIFTS


def parse_shift(name: str) -> tuple[str, str]:
    """``name`` -> ``(split, visual preset)``: ``"strong"`` -> ``("train", "strong")``,
    ``"novel_objects"`` -> ``("novel_objects", "id")``, ``"outer_positions+fog@0.5"`` ->
    ``("outer_positions", "fog@0.5")``. Unknown presets raise (``shifts.get`` lists them)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a shift name must be a non-empty string, got {name!r}")
    parts = name.split("+")
    splits = [p for p in parts if p in SPLIT_SHIFTS]
    if len(splits) > 1:
        raise ValueError(f"shift {name!r} names more than one split ({splits})")
    preset = "+".join(p for p in parts if p not in SPLIT_SHIFTS) or "id"
    try:
        shifts_lib.get(preset)
    except ValueError as e:
        raise ValueError(
            f"unknown shift {name!r}: expected a split {SPLIT_SHIFTS}, a visual preset, or "
            f"'split+preset'; {e}"
        ) from e
    return (splits[0] if splits else "train"), preset


@dataclasses.dataclass(frozen=True)
class _Variant:
    """One batched env: a split and the shift names it plays (env ``i``: ``names[i % n]``)."""

    split: str
    names: tuple[str, ...]
    presets: tuple[str, ...]
    env: Any


def _check_inputs(env_kwargs, names, episodes, task) -> tuple[dict, tuple[str, ...]]:
    env_kwargs = dict(env_kwargs or {})
    names = default_shifts(task) if names is None else names
    bad = sorted(k for k in env_kwargs if k in _RESERVED)
    if bad:
        raise ValueError(f"env_kwargs must not set {bad}: evaluation chooses {_RESERVED} itself")
    names = (names,) if isinstance(names, str) else tuple(names)
    if not names:
        raise ValueError("need at least one shift name")
    if len(set(names)) != len(names):
        raise ValueError(f"shift names must be unique, got {names}")
    if int(episodes) < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    for name in names:
        parse_shift(name)
    return env_kwargs, names


def _variants(task, env_kwargs, names, episodes, *, strict):
    """The batched env of each split that applies, and notes for the names that do not."""
    by_split: dict[str, list[tuple[str, str]]] = {}
    for name in names:
        split, preset = parse_shift(name)
        by_split.setdefault(split, []).append((name, preset))
    variants, notes = [], {}
    for split, items in by_split.items():
        n = len(items)
        try:
            env = envs.make(
                task, split=split, num_envs=n * episodes, auto_reset=False, **env_kwargs
            )
        except ValueError as e:
            if "split" not in str(e):
                raise
            if strict:
                names_ = [i[0] for i in items]
                raise ValueError(f"shifts {names_} do not apply to {task}: {e}") from e
            for name, _ in items:
                notes[name] = f"not applicable: {task} has no split {split!r} ({e})"
            continue
        presets = tuple(p for _, p in items)
        if "pixels" not in env.observation_space:
            for name, preset in items:
                if preset != "id":
                    notes[name] = f"{preset!r} not rendered: the env has no pixel observation"
        else:
            env = envs.with_shift(env, list(presets))
        variants.append(_Variant(split, tuple(i[0] for i in items), presets, env))
    if not variants:
        raise ValueError(f"none of the shifts {names} applies to {task}: {notes}")
    return variants, notes
