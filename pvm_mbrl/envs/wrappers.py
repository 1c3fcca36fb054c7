"""Thin composable wrappers and a ``lax.scan`` rollout.

Typical order (what ``make`` builds): ``AutoReset(BatchEnv(TimeLimit(ActionRepeat(task))))``.
Wrappers forward everything they do not change (attributes, ``advance``/``observe``) to the
wrapped env.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from pvm_mbrl.envs import core, episodes


class Wrapper(core.Env):
    """Forwards to ``self.env``; subclasses override what they change."""

    def __init__(self, env: core.Env):
        self.env = env

    def reset(self, key):
        return self.env.reset(key)

    def advance(self, state, action):
        return self.env.advance(state, action)

    def observe(self, state):
        return self.env.observe(state)

    def step(self, state, action):
        return self.observe(self.advance(state, action))

    @property
    def observation_space(self):
        return self.env.observation_space

    @property
    def action_space(self):
        return self.env.action_space

    @property
    def episode_length(self):
        return self.env.episode_length

    @property
    def max_step_reward(self):
        return self.env.max_step_reward

    @property
    def mj_model(self):
        return self.env.mj_model

    @property
    def mjx_model(self):
        return self.env.mjx_model

    @property
    def unwrapped(self):
        return self.env.unwrapped

    def env_params(self, num_envs):
        return self.env.env_params(num_envs)

    def with_env_params(self, params):
        out = copy.copy(self)
        out.env = self.env.with_env_params(params)
        return out

    def __getattr__(self, name):
        if name == "env":  # not set yet (e.g. during unpickling): avoid infinite recursion
            raise AttributeError(name)
        return getattr(self.env, name)


class ActionRepeat(Wrapper):
    """Repeat each action ``repeat`` times (physics only), sum the rewards, observe once.

    Rewards after a ``done`` inside the repeat are not added; ``done`` is kept once set.
    """

    def __init__(self, env: core.Env, repeat: int):
        self.repeat = core.check_int("action_repeat", repeat)
        super().__init__(env)

    def advance(self, state, action):
        if self.repeat == 1:
            return self.env.advance(state, action)

        def body(carry, _):
            s, total, done = carry
            s = self.env.advance(s, action)
            total = total + s.reward * (1.0 - done)
            return (s, total, jnp.maximum(done, s.done)), None

        zero = jnp.zeros_like(state.reward)
        (state, total, done), _ = jax.lax.scan(body, (state, zero, zero), None, self.repeat)
        return state.replace(reward=total, done=done)

    @property
    def max_step_reward(self):
        return self.env.max_step_reward * self.repeat


class TimeLimit(Wrapper):
    """End episodes after ``episode_length`` steps: ``done = 1`` and ``info["truncation"] = 1``
    (truncation is 0 when the task itself ended the episode on that step)."""

    def __init__(self, env: core.Env, episode_length: int):
        self._episode_length = core.check_int("episode_length", episode_length)
        super().__init__(env)

    @property
    def episode_length(self):
        return self._episode_length

    def reset(self, key):
        state = self.env.reset(key)
        zero = jnp.zeros_like(state.reward)
        info = {**state.info, "steps": jnp.zeros_like(state.reward, jnp.int32), "truncation": zero}
        return state.replace(info=info)

    def advance(self, state, action):
        state = self.env.advance(state, action)
        steps = state.info["steps"] + 1
        out_of_time = (steps >= self._episode_length).astype(state.done.dtype)
        truncation = out_of_time * (1.0 - state.done)
        done = jnp.maximum(state.done, out_of_time)
        return state.replace(
            done=done, info={**state.info, "steps": steps, "truncation": truncation}
        )


class BatchEnv(Wrapper):
    """``num_envs`` envs stepped with ``jax.vmap``; every field gains a leading batch axis.

    ``reset(key)`` splits one key into ``num_envs`` keys, or takes a batch of keys directly.
    Where the wrapped env has per-env parameters (``env.env_params(num_envs)``, e.g. each
    env's shift preset), env ``i`` resets with row ``i`` of them, passed as batched data
    through the vmap; the envs never learn their position in the batch.
    A concrete action with NaN or inf raises ``ValueError`` naming the env, before the vmap.
    """

    def __init__(self, env: core.Env, num_envs: int):
        self.num_envs = core.check_int("num_envs", num_envs)
        super().__init__(env)

    def reset(self, key):
        key = jnp.asarray(key)
        is_typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
        if key.ndim == (1 if is_typed else 2):
            if key.shape[0] != self.num_envs:
                raise ValueError(f"expected {self.num_envs} reset keys, got {key.shape[0]}")
            keys = key
        else:
            keys = jax.random.split(key, self.num_envs)
        params = self.env.env_params(self.num_envs)
        if params is None:
            return jax.vmap(self.env.reset)(keys)
        return jax.vmap(lambda k, p: self.env.with_env_params(p).reset(k))(keys, params)

    def env_params(self, num_envs):
        return None  # consumed here: an outer batch sees one env

    def with_env_params(self, params):
        raise TypeError("BatchEnv takes no per-env parameters (it hands them to its envs)")

    def _check(self, action):
        expected = (self.num_envs, *self.env.action_space.shape)
        if tuple(jnp.shape(action)) != expected:
            raise ValueError(f"batched action must have shape {expected}, got {jnp.shape(action)}")
        core.check_finite_action(action, batched=True)

    def advance(self, state, action):
        self._check(action)
        return jax.vmap(self.env.advance)(state, action)

    def observe(self, state):
        return jax.vmap(self.env.observe)(state)

    def step(self, state, action):
        self._check(action)
        return jax.vmap(self.env.step)(state, action)


class AutoReset(Wrapper):
    """Start a new episode (fresh random draw) where ``done``; the returned state keeps the
    step's ``reward``, ``done`` and ``metrics`` but the new episode's data and observation.

    The reset runs under ``lax.cond(any(done))``, so batched envs whose episodes end together
    (fixed length) pay for it once per episode. Reset keys live in ``info["reset_key"]``.
    """

    def reset(self, key):
        k_env, k_reset = jax.random.split(jnp.asarray(key))
        state = self.env.reset(k_env)
        batch = state.done.shape  # one reset key per env, batched like ``done``
        keys = jax.random.split(k_reset, int(np.prod(batch, dtype=int)))
        keys = keys.reshape(batch + keys.shape[1:])
        return state.replace(info={**state.info, "reset_key": keys})

    def step(self, state, action):
        state = self.env.step(state, action)
        done = state.done.astype(bool)

        def do_reset(state):
            key, sub = _split(state.info["reset_key"])
            fresh = self.env.reset(sub)

            def pick(new, old):
                mask = done.reshape(done.shape + (1,) * (old.ndim - done.ndim))
                return jnp.where(mask, new, old)

            data = jax.tree.map(pick, fresh.data, state.data)
            obs = jax.tree.map(pick, fresh.obs, state.obs)
            info = {
                k: (jax.tree.map(pick, fresh.info[k], v) if k in fresh.info else v)
                for k, v in state.info.items()
            }
            for k in ("truncation",):
                if k in state.info:
                    info[k] = state.info[k]
            info["reset_key"] = key
            return state.replace(data=data, obs=obs, info=info)

        return jax.lax.cond(jnp.any(done), do_reset, lambda s: s, state)

    def advance(self, state, action):
        """Same as ``step``: a reset needs the new episode's observation."""
        return self.step(state, action)


def _split(key):
    """Split a key or a batch of keys; returns (carry, subkey) with the input's batch shape."""
    is_typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
    if key.ndim == (0 if is_typed else 1):
        k = jax.random.split(key)
        return k[0], k[1]
    k = jax.vmap(jax.random.split)(key)
    return k[:, 0], k[:, 1]


class PixelsOnly(Wrapper):
    """View whose observation is the ``pixels`` array alone (not a dict)."""

    def observe(self, state):
        state = self.env.observe(state)
        return state.replace(obs=state.obs["pixels"])

    def reset(self, key):
        state = self.env.reset(key)
        return state.replace(obs=state.obs["pixels"])

    def step(self, state, action):
        inner = state.replace(obs={"pixels": state.obs})
        out = self.env.step(inner, action)
        return out.replace(obs=out.obs["pixels"])

    @property
    def observation_space(self):
        spaces = self.env.observation_space
        if "pixels" not in spaces:
            raise ValueError("PixelsOnly needs an env whose obs_mode includes pixels")
        return spaces["pixels"]


def without_auto_reset(env):
    """``env`` with its ``AutoReset`` layers left out (the other wrappers copied, ``env`` itself
    unchanged): for loops that reset ended episodes themselves after reading their last step
    (the trainer, the evaluation), which take an env made with or without auto-reset."""
    chain, inner, dropped = [], env, False
    while isinstance(inner, Wrapper):
        if isinstance(inner, AutoReset):
            dropped = True
        else:
            chain.append(inner)
        inner = inner.env
    return rewrap(chain, inner) if dropped else env


def rewrap(chain, inner):
    """Copies of the wrappers ``chain`` (outermost first) around ``inner``; the originals are
    left as they were."""
    for wrapper in reversed(chain):
        wrapper = copy.copy(wrapper)
        wrapper.env = inner
        inner = wrapper
    return inner


def rollout(
    env: core.Env,
    policy_fn: Callable,
    state: core.State,
    num_steps: int,
    key: jax.Array | None = None,
):
    """Run ``num_steps`` steps inside one ``lax.scan``.

    ``policy_fn(state, key) -> action`` (batched state in, batched action out for a batched
    env). Returns ``(final_state, trajectory)`` where ``trajectory`` stacks, per step, the
    observation the action was chosen from (``obs``), ``action``, ``reward``, ``done``,
    ``metrics``, (under ``TimeLimit``) ``truncation`` and ``episode``, the summary of the
    episodes that ended at that step (``envs.episodes.update``: ``ended``, ``return``,
    ``success_once``, ``success_end``; counted from ``state``, an episode ends where ``done``),
    along a leading time axis. Pure: wrap it in ``jax.jit`` (``env``, ``policy_fn`` and
    ``num_steps`` static).
    """
    key = jax.random.PRNGKey(0) if key is None else key

    def body(carry, k):
        s, running = carry
        action = policy_fn(s, k)
        nxt = env.step(s, action)
        running, ended = episodes.update(running, nxt.reward, episodes.success_of(nxt), nxt.done)
        out = {
            "obs": s.obs,
            "action": action,
            "reward": nxt.reward,
            "done": nxt.done,
            "metrics": nxt.metrics,
            "episode": ended,
        }
        if "truncation" in nxt.info:
            out["truncation"] = nxt.info["truncation"]
        return (nxt, running), out

    init = (state, episodes.start(jnp.shape(state.done)))
    (final, _), traj = jax.lax.scan(body, init, jax.random.split(key, num_steps))
    return final, traj
