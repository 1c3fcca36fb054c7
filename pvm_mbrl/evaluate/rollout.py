"""The compiled rollout over every shift of an evaluation, the :class:`Evaluator` that builds it
once per (task, env settings, shifts, episodes, agent), and the random-policy floor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from pvm_mbrl import envs
from pvm_mbrl.envs import episodes as episode_stats
from pvm_mbrl.evaluate.results import Results, _json, _unjson, floor_key
from pvm_mbrl.evaluate.targets import _check_inputs, _variants, max_return

# ----- the compiled rollout ----------------------------------------------------------------------


def make_rollout(env_list: Sequence, episodes: int, agent=None, *, frames: bool = False):
    """One jitted ``run(agent_state, key, random) -> [per env: {"return", "success_once",
    "success_end"}]`` that rolls out every batched env of ``env_list`` for one episode.

    ``frames=True`` adds ``"frames"`` to each env's dict: uint8 ``[T, H, W, 3]``, what the first
    env of the batch saw at each of the ``T`` steps (rendered for the random policy too).

    Each env must be batched (``num_envs`` a multiple of ``episodes``; an ``AutoReset`` layer is
    left out); env ``i`` of a batch of ``n x episodes`` plays episode ``i // n``, whose reset key is
    ``fold_in(k_reset, j)`` and whose step-``t`` action key is ``fold_in(fold_in(k_act, j), t)``
    (``k_reset, k_act = split(key)``). Actions come from ``agent.policy(..., mode="eval")``
    applied per env (``vmap``), or, where the traced flag ``random`` is true or ``agent`` is
    None, from a uniform sample of the action space; observations are rendered only for the
    policy (not for random actions, nor after the last step). Results are ``[num_envs]`` arrays.
    """
    env_list = [envs.without_auto_reset(e) for e in env_list]  # each env plays one episode
    if not env_list:
        raise ValueError("need at least one env")
    sizes = [getattr(e, "num_envs", None) for e in env_list]
    for e, size in zip(env_list, sizes):
        if size is None or size % episodes:
            raise ValueError(
                f"each env must be batched with num_envs a multiple of episodes={episodes}, "
                f"got num_envs={size} for {type(e).__name__}"
            )
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
            seen_first = None
            if frames:
                seen_first = [
                    env.observe(s).obs["pixels"][0] for env, s in zip(env_list, env_states)
                ]
            parts = jnp.split(actions, offsets)
            env_states = [env.advance(s, a) for env, s, a in zip(env_list, env_states, parts)]
            reward = jnp.concatenate([s.reward for s in env_states])
            done = jnp.concatenate([s.done for s in env_states])
            success = jnp.concatenate([episode_stats.success_of(s) for s in env_states])
            # Each env plays one episode: the steps after its end count for nothing.
            running, ended = episode_stats.update(
                acc["running"], reward, success, done, valid=~acc["result"]["ended"]
            )
            acc = {"running": running, "result": episode_stats.keep_first(acc["result"], ended)}
            return (env_states, carry, acc), seen_first

        zeros = jnp.zeros((total,), jnp.float32)
        result = {**{k: zeros for k in episode_stats.SUMMARY}, "ended": jnp.zeros((total,), bool)}
        acc = {"running": episode_stats.start((total,)), "result": result}
        carry = agent.initial_carry(total) if agent is not None else None
        (_, _, acc), seen = jax.lax.scan(body, (states, carry, acc), jnp.arange(steps))
        acc = {k: acc["result"][k] for k in episode_stats.SUMMARY}  # TimeLimit ends every episode
        out = [
            {k: v[lo:hi] for k, v in acc.items()}
            for lo, hi in zip([0, *offsets], [*offsets, total])
        ]
        for i, frames_i in enumerate(seen or []):
            out[i]["frames"] = frames_i
        return out

    return jax.jit(run)


# ----- evaluation --------------------------------------------------------------------------------


class Evaluator:
    """The env variants of ``(task, env_kwargs, shifts, episodes)`` and their one compiled
    rollout for ``agent`` (``None``: random actions only). Build it once, call it per seed.
    ``shifts=None`` plays the task's default (``evaluate.default_shifts``).

    Attributes: ``shifts`` (the names), ``notes`` (why a shift does not apply), ``max_return``.
    """

    def __init__(
        self,
        task: str,
        env_kwargs: Mapping | None = None,
        shifts: Sequence[str] | None = None,
        episodes: int = 16,
        agent=None,
        *,
        strict: bool = False,
    ):
        self.env_kwargs, self.shifts = _check_inputs(env_kwargs, shifts, episodes, task)
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
        if self.agent is None:
            raise ValueError("this Evaluator has no agent (built with agent=None)")
        states = list(states) if isinstance(states, list | tuple) else [states]
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
    shifts: Sequence[str] | None = None,
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
    shifts: Sequence[str] | None = None,
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
