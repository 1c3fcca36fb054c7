"""Env stepping of the training loop: the mixin :class:`Collector` of
:class:`~pvm_mbrl.train.Trainer` steps the batched envs with the agent's policy (or uniform random
actions), records each step into replay, resets ended episodes and counts episode statistics
(the record convention is in :mod:`pvm_mbrl.train`'s docstring)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp

from pvm_mbrl import replay as replay_lib
from pvm_mbrl.dreamer.inputs import LATENT_KEYS
from pvm_mbrl.envs import episodes

if TYPE_CHECKING:
    from pvm_mbrl.train.loop import TrainState


class Collector:
    """Collection for :class:`~pvm_mbrl.train.Trainer` (a mixin: it reads the trainer's ``env``,
    ``agent`` and ``config``)."""

    def _observe(self, env_state, agent_state):
        """The agent's observation keys, plus the encoder cache when the agent stores one
        (computed once per frame here; zeros of its shape when ``agent_state`` is None)."""
        obs = {k: env_state.obs[k] for k in self.agent.obs_keys}
        key = self.agent.cache_key
        if key:
            (img,) = (k for k in self.agent.obs_keys if obs[k].dtype == jnp.uint8)
            if agent_state is None:
                n = self.config.num_envs
                obs[key] = jnp.zeros((n, *self.agent.cache_shape), self.agent.cache_dtype)
            else:
                obs[key] = self.agent.encode_cache(agent_state, obs[img])
        return obs

    def _record(self, obs, model_action, flags, reward):
        return {**obs, "action": model_action, "reward": reward.astype(jnp.float32), **flags}

    def _random_action(self, key):
        n, space = self.config.num_envs, self.agent.act_space
        if self.agent.discrete:
            idx = jax.random.randint(key, (n,), 0, self.agent.action_size)
            return idx + int(space.low), jax.nn.one_hot(idx, self.agent.action_size)
        a = jax.random.uniform(key, (n, *space.shape), minval=-1.0, maxval=1.0)
        return a, a

    def _env_step(self, state: TrainState, random: bool) -> tuple[TrainState, dict]:
        key, k_act, k_reset = jax.random.split(state.key, 3)
        obs = self._observe(state.env, state.agent)
        if random:
            env_action, model_action = self._random_action(k_act)
            carry = {**state.carry, "action": model_action}
        else:
            obs_in = {**obs, "is_first": state.flags["is_first"]}
            env_action, carry = self.agent.policy(state.agent, state.carry, obs_in, k_act)
            model_action = carry["action"]
        record = self._record(obs, model_action, state.flags, state.reward)
        if self.agent.replay_context:
            # The posterior after this step's observation (the initial state under the random
            # prefill, which observes nothing), as the official policy stores it.
            latent = {k: carry[k] for k in LATENT_KEYS}
            if random:
                latent = jax.tree.map(jnp.zeros_like, latent)
            record |= latent
        buffer = replay_lib.add(state.replay, record)

        last = state.flags["is_last"]
        stepped = self.env.step(state.env, env_action)
        done = stepped.done.astype(bool)
        trunc = stepped.info.get("truncation", jnp.zeros_like(stepped.done)).astype(bool)

        def reset(s):
            fresh = self.env.reset(k_reset)
            pick = lambda new, old: jnp.where(  # noqa: E731
                last.reshape(last.shape + (1,) * (old.ndim - 1)), new, old
            )
            return jax.tree.map(pick, fresh, s)

        env_state = jax.lax.cond(jnp.any(last), reset, lambda s: s, stepped)
        flags = {
            "is_first": last,
            "is_last": ~last & done,
            "is_terminal": ~last & done & ~trunc,
        }
        reward = jnp.where(last, 0.0, stepped.reward).astype(jnp.float32)
        # The step that resets an ended env is no step of an episode.
        running, ended = episodes.update(
            state.episode, reward, episodes.success_of(stepped), done, valid=~last
        )
        new = state.replace(
            env=env_state,
            carry=carry,
            flags=flags,
            reward=reward,
            replay=buffer,
            key=key,
            env_steps=state.env_steps + jnp.int32(self.config.num_envs),
            episode=running,
        )
        return new, episodes.totals(ended)

    def _collect(self, state, steps, random):
        def body(s, _):
            return self._env_step(s, random)

        state, stats = jax.lax.scan(body, state, None, length=steps)
        return state, jax.tree.map(lambda x: x.sum(0), stats)
