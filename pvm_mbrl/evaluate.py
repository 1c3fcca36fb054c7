"""Zero-shot evaluation across shifts: returns, normalised returns, success, tables and a chart.

```python
from pvm_mbrl import evaluate

res = evaluate.evaluate(agent, states, "PickObject", env_kwargs, episodes=16)  # one state per seed
print(evaluate.markdown_table({"dinov2 partial": res}))  # models x shifts, "0.62 ± 0.04"
evaluate.write_results({"dinov2 partial": res}, "out")  # out/results.{json,csv,md,png}
```

Shift names: a visual preset (anything ``shifts.get`` knows: ``id``, ``texture``, ``weak``,
``strong``, ``fog@0.5``, ...), a task split (``novel_objects``, ``outer_positions``), or a split
and a preset joined by "+" (``outer_positions+strong``). Every name becomes ``episodes`` envs;
the names of one split share one batched env (``shifts.apply``: env ``i`` renders preset
``i % n``), and the rollouts of all splits run in one ``lax.scan`` under one ``jit`` with the
policy in ``mode="eval"``. Each env plays exactly one episode (``auto_reset=False``) of the
env's episode length; per env we keep the return, ``success_once`` (solved at any step) and
``success_end`` (solved at the last step).

Conventions:
- A split the task does not have (``novel_objects`` on ``Reach``) is not applicable: its numbers
  are NaN, ``Results.notes`` says why, tables print "n/a". ``strict=True`` raises instead.
- Keys: the state of seed ``k`` is evaluated with key ``PRNGKey(seed + k)``; episode ``j`` of
  every shift resets from the same key and its policy draws from its own key stream, so shifts
  differ only in what they change, and an env's result does not depend on what else is batched.
- Random floor: a uniform random policy on the same episodes (same keys, same shifts), run by
  the same compiled rollout (a traced flag picks the actions). Shifts do not touch physics, so
  it is the same for every preset of a split. Cached per (task, env settings, shift, episodes,
  seed) in a ``floors`` dict and written to the output JSON (``load_floors`` reads it back).
- Normalised return ``(R - R_random) / (R_max - R_random)`` per seed, from the seed's mean
  return and floor; ``R_max`` is the task's declared maximum (:func:`max_return`).
- Mean and standard error over seeds (``std(ddof=1) / sqrt(n)``); with one seed the SE is NaN
  (undefined) and tables show the mean alone.
- Files: :func:`write_results` (and :func:`evaluate_runs`) merge into ``out/results.json`` by
  model name, keeping the models already there; a model evaluated again replaces its entry only
  with ``overwrite=True``. The record, statistics and writers live in
  :mod:`pvm_mbrl.evaluate_results` (rules there) and are re-exported here.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pvm_mbrl import envs
from pvm_mbrl import shifts as shifts_lib
from pvm_mbrl.evaluate_results import (  # re-exported: the results API lives there
    METRICS,
    RESULTS_FILES,
    Results,
    _json,
    _unjson,
    bar_chart,
    caption,
    check_merge,
    floor_key,
    load_floors,
    markdown_table,
    merge_results,
    normalised_return,
    read_earlier,
    read_json,
    settings,
    summarise,
    write_csv,
    write_json,
    write_results,
)

__all__ = [
    "DEFAULT_SHIFTS",
    "METRICS",
    "RESULTS_FILES",
    "SPLIT_SHIFTS",
    "Evaluator",
    "Results",
    "bar_chart",
    "caption",
    "check_merge",
    "evaluate",
    "evaluate_runs",
    "floor_key",
    "load_floors",
    "make_rollout",
    "markdown_table",
    "max_return",
    "merge_results",
    "normalised_return",
    "parse_shift",
    "random_floor",
    "read_earlier",
    "read_json",
    "settings",
    "summarise",
    "write_csv",
    "write_json",
    "write_results",
]

SPLIT_SHIFTS = ("novel_objects", "outer_positions")
DEFAULT_SHIFTS = ("id", "novel_objects", "outer_positions", "texture", "weak", "strong")
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


def _check_inputs(env_kwargs, names, episodes) -> tuple[dict, tuple[str, ...]]:
    env_kwargs = dict(env_kwargs or {})
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
        elif presets != ("id",):
            env = shifts_lib.apply(env, list(presets))
        variants.append(_Variant(split, tuple(i[0] for i in items), presets, env))
    if not variants:
        raise ValueError(f"none of the shifts {names} applies to {task}: {notes}")
    return variants, notes


# ----- the compiled rollout ----------------------------------------------------------------------


def make_rollout(env_list: Sequence, episodes: int, agent=None):
    """One jitted ``run(agent_state, key, random) -> [per env: {"return", "success_once",
    "success_end"}]`` that rolls out every batched env of ``env_list`` for one episode.

    Each env must be batched (``num_envs`` a multiple of ``episodes``) without auto-reset; env
    ``i`` of a batch of ``n x episodes`` plays episode ``i // n``, whose reset key is
    ``fold_in(k_reset, j)`` and whose step-``t`` action key is ``fold_in(fold_in(k_act, j), t)``
    (``k_reset, k_act = split(key)``). Actions come from ``agent.policy(..., mode="eval")``
    applied per env (``vmap``), or, where the traced flag ``random`` is true or ``agent`` is
    None, from a uniform sample of the action space; observations are rendered only for the
    policy (not for random actions, nor after the last step). Results are ``[num_envs]`` arrays.
    """
    env_list = list(env_list)
    if not env_list:
        raise ValueError("need at least one env")
    sizes = [getattr(e, "num_envs", None) for e in env_list]
    for e, size in zip(env_list, sizes):
        if size is None or size % episodes:
            raise ValueError(
                f"each env must be batched with num_envs a multiple of episodes={episodes}, "
                f"got num_envs={size} for {type(e).__name__}"
            )
        inner = e
        while inner is not None:
            if isinstance(inner, envs.AutoReset):
                raise ValueError("evaluation envs must be built with auto_reset=False")
            inner = vars(inner).get("env")
    lengths = {int(e.episode_length) for e in env_list}
    if len(lengths) != 1:
        raise ValueError(f"all envs must share one episode length, got {sorted(lengths)}")
    (steps,) = lengths
    if agent is not None:
        for e in env_list:
            space = e.observation_space
            missing = [k for k in agent.obs_keys if k not in space]
            if missing:
                raise ValueError(
                    f"the agent observes {list(agent.obs_keys)} but the env has only "
                    f"{sorted(space)} (missing {missing})"
                )
            for k in agent.obs_keys:
                if tuple(space[k].shape) != tuple(agent.obs_space[k].shape):
                    raise ValueError(
                        f"obs {k!r}: the agent expects shape {tuple(agent.obs_space[k].shape)}, "
                        f"the env gives {tuple(space[k].shape)}"
                    )
    offsets = np.cumsum(sizes)[:-1]
    total = int(sum(sizes))
    act_space = env_list[0].action_space

    def policy(agent_state, carry, obs, key):
        one = lambda x: x[None]  # noqa: E731
        action, carry = agent.policy(
            agent_state, jax.tree.map(one, carry), jax.tree.map(one, obs), key, mode="eval"
        )
        return action[0], jax.tree.map(lambda x: x[0], carry)

    def run(agent_state, key, random=False):
        k_reset, k_act = jax.random.split(key)
        ep = jnp.arange(episodes)
        reset_ep = jax.vmap(jax.random.fold_in, (None, 0))(k_reset, ep)
        act_ep = jax.vmap(jax.random.fold_in, (None, 0))(k_act, ep)
        states, act_keys = [], []
        for env, size in zip(env_list, sizes):
            j = np.arange(size) // (size // episodes)
            # The carry holds no observation: ``observe`` renders at the top of each step, so
            # the renderer is compiled once (the reset's rendering is dead code) and the state
            # after the last step is never rendered.
            states.append(env.reset(reset_ep[j]).replace(obs={}))
            act_keys.append(act_ep[j])
        act_keys = jnp.concatenate(act_keys)
        for s in states:
            if "success" not in s.metrics:
                raise ValueError(f"the env must report metrics['success'], got {sorted(s.metrics)}")

        def body(c, t):
            env_states, carry, acc = c
            keys = jax.vmap(jax.random.fold_in, (0, None))(act_keys, t)
            uniform = lambda carry: (jax.vmap(act_space.sample)(keys), carry)  # noqa: E731
            if agent is None:
                actions, carry = uniform(carry)
            else:

                def learned(carry):
                    seen = [env.observe(s).obs for env, s in zip(env_list, env_states)]
                    obs = {k: jnp.concatenate([o[k] for o in seen]) for k in agent.obs_keys}
                    obs["is_first"] = jnp.full((total,), t == 0)
                    return jax.vmap(policy, (None, 0, 0, 0))(agent_state, carry, obs, keys)

                actions, carry = jax.lax.cond(random, uniform, learned, carry)
            parts = jnp.split(actions, offsets)
            env_states = [env.advance(s, a) for env, s, a in zip(env_list, env_states, parts)]
            reward = jnp.concatenate([s.reward for s in env_states]).astype(jnp.float32)
            done = jnp.concatenate([s.done for s in env_states]).astype(bool)
            # Tasks without a success metric (the dmc/ tasks) count as never solved.
            success = jnp.concatenate(
                [s.metrics.get("success", jnp.zeros_like(s.reward)) for s in env_states]
            )
            success = success.astype(jnp.float32)
            alive = acc["alive"]
            acc = {
                "return": acc["return"] + jnp.where(alive, reward, 0.0),
                "success_once": jnp.maximum(acc["success_once"], jnp.where(alive, success, 0.0)),
                "success_end": jnp.where(alive, success, acc["success_end"]),
                "alive": alive & ~done,
            }
            return (env_states, carry, acc), None

        zeros = jnp.zeros((total,), jnp.float32)
        acc = {
            "return": zeros,
            "success_once": zeros,
            "success_end": zeros,
            "alive": jnp.ones((total,), bool),
        }
        carry = agent.initial_carry(total) if agent is not None else None
        (_, _, acc), _ = jax.lax.scan(body, (states, carry, acc), jnp.arange(steps))
        del acc["alive"]
        return [
            {k: v[lo:hi] for k, v in acc.items()}
            for lo, hi in zip([0, *offsets], [*offsets, total])
        ]

    return jax.jit(run)


# ----- evaluation --------------------------------------------------------------------------------


class Evaluator:
    """The env variants of ``(task, env_kwargs, shifts, episodes)`` and their one compiled
    rollout for ``agent`` (``None``: random actions only). Build it once, call it per seed.

    Attributes: ``shifts`` (the names), ``notes`` (why a shift does not apply), ``max_return``.
    """

    def __init__(
        self,
        task: str,
        env_kwargs: Mapping | None = None,
        shifts: Sequence[str] = DEFAULT_SHIFTS,
        episodes: int = 16,
        agent=None,
        *,
        strict: bool = False,
    ):
        self.env_kwargs, self.shifts = _check_inputs(env_kwargs, shifts, episodes)
        self.task, self.episodes, self.agent = task, int(episodes), agent
        self.variants, self.notes = _variants(
            task, self.env_kwargs, self.shifts, self.episodes, strict=strict
        )
        self.max_return = max_return(self.variants[0].env)
        self._run = make_rollout([v.env for v in self.variants], self.episodes, agent)

    def rollout(self, agent_state=None, seed: int = 0, random: bool = False):
        """``{"return", "success_once", "success_end"}`` as ``[shifts, episodes]`` float64
        arrays (NaN rows for shifts that do not apply) for key ``PRNGKey(seed)``."""
        if self.agent is not None and agent_state is None:
            raise ValueError("this Evaluator has an agent: rollout needs its agent_state")
        outs = jax.device_get(self._run(agent_state, jax.random.PRNGKey(seed), random))
        shape = (len(self.shifts), self.episodes)
        arrays = {k: np.full(shape, np.nan) for k in ("return", "success_once", "success_end")}
        for v, out in zip(self.variants, outs):
            n = len(v.names)
            for p, name in enumerate(v.names):
                i = self.shifts.index(name)
                for key, a in arrays.items():
                    a[i] = np.asarray(out[key], np.float64).reshape(self.episodes, n)[:, p]
        return arrays

    def random_floor(
        self,
        seed: int = 0,
        seeds: int = 1,
        floors: dict[str, list] | None = None,
        agent_state=None,
    ) -> np.ndarray:
        """Random-policy returns ``[seeds, shifts, episodes]`` on the episodes of keys
        ``PRNGKey(seed + k)``; ``floors`` (keyed by :func:`floor_key`) is read and filled.
        ``agent_state`` only fills the compiled function's (unused) policy argument."""
        floors = {} if floors is None else floors
        if self.agent is not None and agent_state is None:
            shapes = jax.eval_shape(self.agent.init, jax.random.PRNGKey(0))
            agent_state = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
        out = np.full((seeds, len(self.shifts), self.episodes), np.nan)
        for k in range(seeds):
            keys = [
                floor_key(self.task, self.env_kwargs, name, self.episodes, seed + k)
                for name in self.shifts
            ]
            played = {name for v in self.variants for name in v.names}
            needed = [i for i, name in enumerate(self.shifts) if name in played]
            if all(keys[i] in floors for i in needed):
                for i in needed:
                    out[k, i] = np.array(_unjson(floors[keys[i]]), np.float64)
                continue
            out[k] = self.rollout(agent_state, seed + k, random=True)["return"]
            for i in needed:
                floors[keys[i]] = _json(out[k, i])
        return out

    def evaluate(self, states, seed: int = 0, floors: dict[str, list] | None = None) -> Results:
        """:class:`Results` of the agent with each state of ``states`` (seed ``k``: key
        ``PRNGKey(seed + k)``), with the random floor on the same episodes."""
        from pvm_mbrl.dreamer import AgentState

        if self.agent is None:
            raise ValueError("this Evaluator has no agent (built with agent=None)")
        states = [states] if isinstance(states, AgentState) else list(states)
        if not states:
            raise ValueError("need at least one AgentState (one per seed)")
        per = [self.rollout(state, seed + k) for k, state in enumerate(states)]
        stack = lambda key: np.stack([p[key] for p in per])  # noqa: E731
        return Results(
            task=self.task,
            shifts=self.shifts,
            episodes=self.episodes,
            seed=int(seed),
            env_kwargs=self.env_kwargs,
            max_return=self.max_return,
            returns=stack("return"),
            success_once=stack("success_once"),
            success_end=stack("success_end"),
            random_returns=self.random_floor(seed, len(states), floors, states[0]),
            notes=dict(self.notes),
        )


def random_floor(
    task: str,
    env_kwargs: Mapping | None = None,
    shifts: Sequence[str] = DEFAULT_SHIFTS,
    episodes: int = 16,
    seed: int = 0,
    seeds: int = 1,
    *,
    strict: bool = False,
    floors: dict[str, list] | None = None,
) -> np.ndarray:
    """Returns of a uniform random policy ``[seeds, shifts, episodes]`` (NaN where a shift does
    not apply) on the episodes :func:`evaluate` plays with keys ``PRNGKey(seed + k)``.

    ``floors`` (keyed by :func:`floor_key`) is read and filled, so a floor is measured once for
    several models; :func:`evaluate` measures it inside the agent's compiled rollout instead.
    """
    ev = Evaluator(task, env_kwargs, shifts, episodes, strict=strict)
    return ev.random_floor(seed, seeds, floors)


def evaluate(
    agent,
    states,
    task: str,
    env_kwargs: Mapping | None = None,
    shifts: Sequence[str] = DEFAULT_SHIFTS,
    episodes: int = 16,
    seed: int = 0,
    *,
    strict: bool = False,
    floors: dict[str, list] | None = None,
) -> Results:
    """Zero-shot evaluation of ``agent`` with each ``AgentState`` of ``states`` (one per seed)
    on ``envs.make(task, **env_kwargs)``, ``episodes`` episodes per shift.

    All shifts run in one compiled rollout (compiled once, called per seed with key
    ``PRNGKey(seed + k)``, and once more per seed with random actions for the floor unless
    ``floors`` has it). A split the task lacks gives NaN and a note, or raises if ``strict``.
    """
    ev = Evaluator(task, env_kwargs, shifts, episodes, agent, strict=strict)
    return ev.evaluate(states, seed, floors)


def evaluate_runs(
    runs: Mapping[str, Any],
    out,
    shifts: Sequence[str] = DEFAULT_SHIFTS,
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
    are reused. Prints the Markdown table.
    """
    from pvm_mbrl.experiment import Experiment, load_agent

    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if not runs:
        raise ValueError("runs is empty: need {model name: run directory}")
    out = pathlib.Path(out)
    previous = out / RESULTS_FILES[0]
    earlier = read_earlier(out, overwrite=overwrite)
    planned = {
        name: settings(Experiment.load(run).task, shifts, episodes, seed)
        for name, run in runs.items()
    }
    check_merge(earlier, planned, previous, overwrite=overwrite)
    floors = load_floors(previous) if previous.exists() else {}
    results, evaluators = {}, {}
    for name, run in runs.items():
        exp, agent, states = load_agent(run, step)
        print(f"{name}: {exp.task}, {len(states)} seed(s), {episodes} episodes x shift")
        env_kwargs = exp.env_kwargs()
        same = (exp.task, repr(sorted(env_kwargs.items())), repr(agent.config))
        if same not in evaluators:
            evaluators[same] = Evaluator(
                exp.task, env_kwargs, shifts, episodes, agent, strict=strict
            )
        res = evaluators[same].evaluate(states, seed, floors)
        for shift, note in res.notes.items():
            print(f"  {shift}: {note}")
        results[name] = res
    merged = write_results(results, out, metric, overwrite=overwrite)
    kept = len(merged) - len(results)
    print(f"\n{(out / 'results.md').read_text()}")
    print(f"wrote {out}/results.{{json,csv,md,png}} ({len(results)} model(s) evaluated now", end="")
    print(f", {kept} kept from earlier)" if kept else ")")
    return merged
