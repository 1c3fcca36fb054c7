"""The on-device training loop: collect with vectorised envs, insert into replay, update.

``Trainer.train_chunk(state) -> (state, metrics)`` runs ``chunk_steps`` vectorised env steps
with the agent's policy and ``chunk_updates`` agent updates, all inside one ``jax.lax.scan``
under one ``jit``; the Python loop outside (:meth:`Trainer.run`, ``examples/train.py``) only
logs, checkpoints and reports progress.

Records follow DreamerV3's convention: the record of step ``t`` holds the observation, the
reward received on arriving there, ``is_first`` / ``is_last`` / ``is_terminal`` and the action
the policy took there. When an episode ends (``is_last``) the next step resets that env instead
of stepping it, so the final observation and reward of every episode are stored and every
episode's first record has ``is_first`` set (one extra record per episode, as in DreamerV3).

Train ratio: as in DreamerV3, replayed steps per env step, so one chunk of ``S`` vectorised
steps with ``E`` envs performs ``S * E * train_ratio / (B * T)`` updates (at the default batch
16 x 64, one update per ``1024 / train_ratio`` env steps: 32 at ratio 32). Collection and
updates interleave in cycles of ``c`` env steps then ``u`` updates.

Under a device mesh (``mesh=``, see :mod:`pvm_mbrl.parallel`) the env axis (env states,
policy carries, replay) and the training batch axis are sharded over the mesh's ``data`` axis
and the agent is replicated; the result equals the single-device one up to float reduction
order.

The loop's settings live in :mod:`pvm_mbrl.train.config` (:class:`TrainConfig`), env stepping
and recording in :mod:`pvm_mbrl.train.collect` (mixin ``Collector``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from pvm_mbrl import parallel
from pvm_mbrl import replay as replay_lib
from pvm_mbrl.envs import episodes
from pvm_mbrl.envs.wrappers import without_auto_reset
from pvm_mbrl.train.collect import Collector
from pvm_mbrl.train.config import TrainConfig


@struct.dataclass
class TrainState:
    """The whole loop state (a pytree): agent, envs, policy carries, replay, counters."""

    agent: Any  # the agent's state (DreamerV3's or TD-MPC2's AgentState)
    env: Any
    carry: dict[str, jax.Array]
    flags: dict[str, jax.Array]  # is_first / is_last / is_terminal of the current observation
    reward: jax.Array  # reward received on arriving at the current observation
    replay: Any
    key: jax.Array
    env_steps: jax.Array  # total env steps over all envs
    updates: jax.Array
    episode: dict[str, jax.Array]  # running return / success of the current episodes


class Trainer(Collector):
    """Builds the compiled collection and update functions for ``env`` and ``agent``.

    ``agent`` is a :class:`~pvm_mbrl.dreamer.Dreamer` or a :class:`~pvm_mbrl.tdmpc2.TDMPC2`
    (any object with their interface: ``init``, ``initial_carry``, ``policy``,
    ``train_with_latents``, ``replay_context`` and the space attributes).

    ``env`` must be batched (``envs.make(..., num_envs=E)``); the loop resets ended episodes
    itself, after recording their final step, so an ``AutoReset`` layer is left out.
    """

    def __init__(self, env, agent, config: TrainConfig, mesh=None, seeds: int | None = None):
        if getattr(env, "num_envs", None) != config.num_envs:
            raise ValueError(
                f"env must be batched with num_envs={config.num_envs} "
                f"(envs.make(..., num_envs={config.num_envs}))"
            )
        env = without_auto_reset(env)
        length = agent.replay_context + config.batch_length
        if config.prefill < length or config.replay_capacity // config.num_envs < length:
            raise ValueError(
                f"replayed sequences hold replay_context + batch_length = {length} steps: "
                f"prefill ({config.prefill}) and replay_capacity // num_envs "
                f"({config.replay_capacity // config.num_envs}) must be at least that"
            )
        if mesh is not None and not config.fused:
            raise ValueError("a device mesh needs TrainConfig(fused=True)")
        if seeds is not None and (seeds < 1 or mesh is not None):
            raise ValueError(f"seeds must be >= 1 and needs mesh=None, got {seeds}")
        self.env, self.agent, self.config, self.mesh = env, agent, config, mesh
        self.seeds = seeds
        c, _ = config.cycle
        compile = lambda f: jax.jit(self._vmap(f), donate_argnums=0)  # noqa: E731
        self._chunk = compile(self._train_chunk)
        self._prefill = compile(self._prefill_fn)
        self._collect_cycle = compile(lambda s: self._collect(s, c, random=False))
        self._update_once = compile(self._update)

    def _vmap(self, f):
        """``f`` over the leading seed axis when the trainer runs several seeds."""
        return f if self.seeds is None else jax.vmap(f)

    # -- state -------------------------------------------------------------------------------

    def init(self, key: jax.Array) -> TrainState:
        """Agent, envs, empty replay; nothing collected yet (built sharded under a mesh).

        With ``seeds=S``, ``key`` is ``[S, 2]`` (one PRNG key per seed) and every leaf of the
        state gets a leading seed axis. The agent is initialised outside the compiled function,
        so that checkpoint weights a pre-trained encoder reads from disk enter it as arguments,
        not as compile-time constants (which would copy the whole checkpoint into the program).
        """
        if self.seeds is not None:
            if key.shape != (self.seeds, 2):
                raise ValueError(f"init needs one key per seed, [{self.seeds}, 2]; got {key.shape}")
            agent = self.agent.init_many(jax.vmap(lambda k: jax.random.split(k, 3)[0])(key))
            return _commit(jax.jit(jax.vmap(self._init_fn))(key, agent))
        agent = self.agent.init(jax.random.split(key, 3)[0])
        shardings = None
        if self.mesh is not None:
            shapes = jax.eval_shape(self._init_fn, key, agent)
            shardings = parallel.train_state_shardings(self.mesh, shapes, self.config)
            agent = jax.device_put(agent, shardings.agent)
        state = jax.jit(self._init_fn, out_shardings=shardings)(key, agent)
        return state if self.mesh is not None else _commit(state)

    def _init_fn(self, key, agent):
        _, k_env, k_loop = jax.random.split(key, 3)
        n = self.config.num_envs
        env_state = self.env.reset(k_env)
        state = TrainState(
            agent=agent,
            env=env_state,
            carry=self.agent.initial_carry(n),
            flags=self._flags(n, first=True),
            reward=jnp.zeros(n, jnp.float32),
            replay=self._empty_replay(),
            key=k_loop,
            env_steps=jnp.zeros((), jnp.int32),
            updates=jnp.zeros((), jnp.int32),
            episode=episodes.start((n,)),
        )
        # Strong dtypes throughout, so that the state's signature (and the compiled chunk) is the
        # same after init, after an update and after a checkpoint restore.
        return jax.tree.map(lambda x: jnp.asarray(x, dtype=x.dtype), state)

    def _empty_replay(self):
        n = self.config.num_envs
        env_state = jax.eval_shape(self.env.reset, jax.random.PRNGKey(0))
        obs = self._observe(env_state, None)
        action = jax.ShapeDtypeStruct((self.agent.action_size,), jnp.float32)
        example = self._record(obs, action, self._flags(n, first=True), jnp.zeros(n))
        example = {k: jax.ShapeDtypeStruct(v.shape[1:], v.dtype) for k, v in example.items()}
        example["action"] = action
        if self.agent.replay_context:
            example |= self.agent.latent_spec()
        return replay_lib.Replay.create(example, n, self.config.replay_capacity)

    # -- compiled entry points -------------------------------------------------------------

    def prefill(self, state: TrainState) -> TrainState:
        """``config.prefill`` steps per env with ``config.prefill_policy``."""
        return self._prefill(state)

    def refill(self, state: TrainState) -> TrainState:
        """A fresh replay filled by a prefill (for a state restored without its replay); the
        agent, envs and counters continue."""
        empty = self._empty_replay()
        if self.seeds is not None:
            empty = jax.tree.map(lambda x: jnp.stack([x] * self.seeds), empty)
        return self._prefill(state.replace(replay=empty))

    def pretrain(self, state: TrainState, updates: int) -> TrainState:
        """``updates`` updates on the replay as it is, collecting nothing: TD-MPC2 trains once
        per prefilled (seed) step when its seeding ends."""
        if isinstance(updates, bool) or not isinstance(updates, int) or updates < 0:
            raise ValueError(f"updates must be an int >= 0, got {updates!r}")
        for _ in range(updates):
            state, _ = self._update_once(state)
        return state

    def train_chunk(self, state: TrainState) -> tuple[TrainState, dict[str, jax.Array]]:
        """``chunk_steps`` policy steps per env and ``chunk_updates`` updates, one compiled call.

        Metrics: means of the update metrics, ``episodes`` completed in the chunk and their mean
        ``return``, ``success_once`` (solved at any step) and ``success_end`` (at the last step),
        ``env_steps`` and ``updates`` totals.
        """
        if self.config.fused:
            return self._chunk(state)
        c, u = self.config.cycle
        stats, metrics = [], []
        for _ in range(self.config.chunk_steps // c):
            state, st = self._collect_cycle(state)
            ms = []
            for _ in range(u):
                state, m = self._update_once(state)
                ms.append(m)
            stats.append(st)
            metrics.append(jax.tree.map(lambda *x: jnp.mean(jnp.stack(x), 0), *ms))
        stats = jax.tree.map(lambda *x: jnp.sum(jnp.stack(x), 0), *stats)
        metrics = jax.tree.map(lambda *x: jnp.mean(jnp.stack(x), 0), *metrics)
        return self._constrain(state), self._chunk_metrics(state, stats, metrics)

    # -- implementation ----------------------------------------------------------------------

    @staticmethod
    def _flags(n, first):
        return {
            "is_first": jnp.full((n,), first, bool),
            "is_last": jnp.zeros((n,), bool),
            "is_terminal": jnp.zeros((n,), bool),
        }

    def _update(self, state: TrainState):
        """One update on a replayed batch of ``replay_context + batch_length`` steps; with replay
        context the posterior latents of the trained steps go back to replay."""
        key, k_sample, k_train = jax.random.split(state.key, 3)
        c, context = self.config, self.agent.replay_context
        length = context + c.batch_length
        buffer = state.replay
        if c.replay_online:
            rows, times, buffer = replay_lib.sample_online(buffer, k_sample, c.batch_size, length)
        else:
            rows, times = replay_lib.sample_indices(buffer, k_sample, c.batch_size, length)
        batch = replay_lib.gather(buffer, rows, times)
        if self.mesh is not None:
            batch = parallel.constrain_batch(self.mesh, batch)
        agent, metrics, latents = self.agent.train_with_latents(state.agent, batch, k_train)
        if context:
            buffer = replay_lib.write(buffer, rows, times[:, context:], latents)
        new = state.replace(agent=agent, replay=buffer, key=key, updates=state.updates + 1)
        return new, metrics

    def _constrain(self, state):
        """Keep the state's layout on the mesh across compiled calls (no-op without one)."""
        if self.mesh is None:
            return state
        shardings = parallel.train_state_shardings(self.mesh, state, self.config)
        return jax.lax.with_sharding_constraint(state, shardings)

    def _prefill_fn(self, state):
        random = self.config.prefill_policy == "random"
        state, _ = self._collect(state, self.config.prefill, random=random)
        return self._constrain(state)

    def _train_chunk(self, state):
        c, u = self.config.cycle
        cycles = self.config.chunk_steps // c

        def cycle(s, _):
            s, stats = self._collect(s, c, random=False)

            def upd(s2, _):
                return self._update(s2)

            s, metrics = jax.lax.scan(upd, s, None, length=u)
            return s, (stats, jax.tree.map(lambda x: x.mean(0), metrics))

        state, (stats, metrics) = jax.lax.scan(cycle, state, None, length=cycles)
        stats = jax.tree.map(lambda x: x.sum(0), stats)
        metrics = jax.tree.map(lambda x: x.mean(0), metrics)
        return self._constrain(state), self._chunk_metrics(state, stats, metrics)

    @staticmethod
    def _chunk_metrics(state, stats, metrics):
        """Update-metric means plus the chunk's episode statistics and totals."""
        metrics = dict(metrics)
        n = jnp.maximum(stats["episodes"], 1)
        metrics.update(
            {
                "episode/count": stats["episodes"],
                "episode/return": stats["return"] / n,
                "episode/success_once": stats["success_once"] / n,
                "episode/success_end": stats["success_end"] / n,
                "env_steps": state.env_steps,
                "updates": state.updates,
            }
        )
        return metrics


def _commit(state):
    """The state committed to its device, as a restored checkpoint is: arrays that are not
    committed give ``jit`` a different signature, so a resumed run would compile again."""
    return jax.device_put(state, jax.devices()[0])
