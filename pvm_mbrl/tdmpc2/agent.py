"""The TD-MPC2 agent as pure functions of pytrees, with the same interface as the DreamerV3 agent,
so the library's trainer, replay and checkpoints run it unchanged.

```python
agent = TDMPC2(config, obs_space, act_space, episode_length=500)
state = agent.init(key)                          # AgentState: model, target Qs, optimisers...
carry = agent.initial_carry(batch)               # the last plan's mean and action per env
action, carry = agent.policy(state, carry, obs, key, mode="explore")   # obs has "is_first"
state, metrics = agent.train(state, batch, key)  # one update on a replayed batch [B, H + 1]
```

An update follows the official code: TD targets ``r + discount (1 - terminal) Q_target`` (the
minimum of two random target members at the policy's action in the encoded next state); a latent
rollout of the dynamics from the first encoded observation along the replayed actions, with
losses weighted ``rho^t`` over the horizon (consistency to the encoded next states, reward and
the value of every Q member by two-hot cross-entropy; with ``episodic`` the termination); one
Adam step of the model (encoder at ``enc_lr_scale`` times the rate); then a policy step on the
detached rollout latents against the mean of two updated Q members divided by a running scale
(the 5-95 percentile range of the first step's Q, Polyak-averaged, at least 1), with an entropy
bonus; then a Polyak step of the target Qs.

Replay batches follow the trainer's record convention (:mod:`pvm_mbrl.train`): step ``t``
holds the observation, the action taken there and the reward received on arriving there, so
transition ``t`` has reward ``reward[t + 1]`` and terminal ``is_terminal[t + 1]``. The official
buffer samples within episodes; the trainer's sequences may cross an episode boundary, so every
loss term of a transition at or after a step with ``is_first`` is masked out (terms are still
divided by the batch size, which equals the official loss wherever no boundary falls).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct

from pvm_mbrl.dreamer.inputs import check_batch_size
from pvm_mbrl.tdmpc2 import heads, planner
from pvm_mbrl.tdmpc2.config import TDMPC2Config, discount
from pvm_mbrl.tdmpc2.networks import WorldModel

_sg = jax.lax.stop_gradient
POLICY_MODES = ("explore", "eval")
_ENCODER_PARTS = ("state_encoder", "encoder", "project")
_PI = nnx.All(nnx.Param, nnx.PathContains("pi"))


@struct.dataclass
class AgentState:
    """Everything that changes during training (a pytree; checkpoint it whole)."""

    params: nnx.State  # world model without the policy prior
    pi_params: nnx.State
    target_q: nnx.State
    opt_state: optax.OptState
    pi_opt_state: optax.OptState
    scale: jax.Array
    step: jax.Array


class _Model:
    """The world model as the planner sees it (decoded rewards and values, sampled actions)."""

    def __init__(self, wm: WorldModel, c: TDMPC2Config):
        self.wm, self.c = wm, c

    def next(self, z, a):
        return self.wm.next(z, a)

    def reward(self, z, a):
        return heads.decode(self.wm.reward_logits(z, a), self.c)

    def policy(self, z, key):
        return heads.sample_policy(self.wm.pi(z), key, self.c)[0]

    def value(self, z, a, key):
        return heads.q_pair(heads.decode(self.wm.q_logits(z, a), self.c), key, "mean")

    def terminal(self, z):
        return jax.nn.sigmoid(self.wm.termination_logit(z))


def _time_major(x):
    return jnp.swapaxes(x, 0, 1)


class TDMPC2:
    """TD-MPC2 for one observation space and a continuous action space (see the module doc)."""

    discrete = False
    cache_key = None
    replay_context = 0

    def __init__(self, config: TDMPC2Config, obs_space, act_space, episode_length=None):
        self.config = c = config
        self.obs_space = dict(obs_space)
        self.act_space = act_space
        if np.issubdtype(np.dtype(act_space.dtype), np.integer) or len(act_space.shape) != 1:
            raise ValueError(
                f"TD-MPC2 needs continuous actions [A], got {act_space.dtype} {act_space.shape}"
            )
        self.action_size = int(act_space.shape[0])
        if c.discount is None and episode_length is None:
            raise ValueError("give episode_length (or TDMPC2Config.discount) for the discount")
        self.discount = c.discount if c.discount is not None else discount(episode_length)
        model = nnx.eval_shape(lambda: self._build(jax.random.PRNGKey(0)))
        if model.images and c.encoder != "cnn":
            raise ValueError(
                f"TD-MPC2 takes the 'cnn' image encoder so far, got {c.encoder!r} (pre-trained "
                "encoders with their fine-tuning modes are DreamerV3's only)"
            )
        self.graphdef, _, _, self._rest = nnx.split(model, _PI, nnx.Param, ...)
        if jax.tree.leaves(self._rest):
            raise ValueError("TD-MPC2's networks must hold parameters only (no other variables)")
        self.q_graphdef, _ = nnx.split(model.qs)
        self.obs_keys = tuple(sorted({**model.images, **model.vectors}))
        self.optimizer, self.pi_optimizer = self._make_optimizers(model)
        self._jit_init = jax.jit(self._init)
        self._jit_init_many = jax.jit(jax.vmap(self._init))

    def _build(self, key) -> WorldModel:
        return WorldModel(self.config, self.obs_space, self.action_size, rngs=nnx.Rngs(key))

    def _make_optimizers(self, model):
        c = self.config
        _, _, params, _ = nnx.split(model, _PI, nnx.Param, ...)

        def label(path, _):
            return "encoder" if str(getattr(path[0], "key", path[0])) in _ENCODER_PARTS else "rest"

        labels = jax.tree_util.tree_map_with_path(label, params)
        model_tx = optax.chain(
            optax.clip_by_global_norm(c.grad_clip_norm),
            optax.multi_transform(
                {"encoder": optax.adam(c.lr * c.enc_lr_scale), "rest": optax.adam(c.lr)}, labels
            ),
        )
        pi_tx = optax.chain(optax.clip_by_global_norm(c.grad_clip_norm), optax.adam(c.lr, eps=1e-5))
        return model_tx, pi_tx

    def model(self, state: AgentState) -> WorldModel:
        return nnx.merge(self.graphdef, state.pi_params, state.params, self._rest)

    # -- public API ------------------------------------------------------------------------

    def init(self, key: jax.Array) -> AgentState:
        """Fresh parameters, target Qs (a copy), optimiser states and a Q scale of 1."""
        return self._jit_init(key)

    def init_many(self, keys: jax.Array) -> AgentState:
        """One fresh state per key of ``keys`` ``[N, 2]``, stacked on a leading axis."""
        return self._jit_init_many(keys)

    def _init(self, key: jax.Array) -> AgentState:
        _, pi, params, _ = nnx.split(self._build(key), _PI, nnx.Param, ...)
        return AgentState(
            params=params,
            pi_params=pi,
            target_q=jax.tree.map(jnp.copy, params["qs"]),
            opt_state=self.optimizer.init(params),
            pi_opt_state=self.pi_optimizer.init(pi),
            scale=jnp.ones((), jnp.float32),
            step=jnp.zeros((), jnp.int32),
        )

    def initial_carry(self, batch: int) -> dict[str, jax.Array]:
        """Policy carry for ``batch`` envs: the last plan's mean ``[H, A]`` and action ``[A]``."""
        check_batch_size(batch)
        h, a = self.config.horizon, self.action_size
        return {"mean": jnp.zeros((batch, h, a)), "action": jnp.zeros((batch, a))}

    def policy(self, state: AgentState, carry, obs, key, mode: str = "explore"):
        """One step for a batch of envs; ``obs`` holds the observation keys and ``is_first``.

        Plans with MPPI (``config.mpc``) or samples the policy prior; ``mode="eval"`` plans
        without the final exploration noise (the prior: takes its mean). Returns
        ``(action, carry)``, actions in [-1, 1].
        """
        if mode not in POLICY_MODES:
            raise ValueError(f"mode must be one of {POLICY_MODES}, got {mode!r}")
        missing = [k for k in (*self.obs_keys, "is_first") if k not in obs]
        if missing:
            raise ValueError(f"obs lacks {missing}; the agent reads {self.obs_keys} and is_first")
        wm = self.model(state)
        z = wm.encode({k: obs[k] for k in self.obs_keys})
        n = z.shape[0]
        if self.config.mpc:
            plan = lambda z, m, f, k: planner.plan(  # noqa: E731
                _Model(wm, self.config), self.config, z, m, f, k, mode == "explore", self.discount
            )
            action, mean = jax.vmap(plan)(
                z, carry["mean"], obs["is_first"], jax.random.split(key, n)
            )
        else:
            sample, mean_action, _ = heads.sample_policy(wm.pi(z), key, self.config)
            action, mean = (sample if mode == "explore" else mean_action), carry["mean"]
        action = _sg(action)
        return action, {"mean": _sg(mean), "action": action}

    def train(self, state: AgentState, batch, key) -> tuple[AgentState, dict[str, jax.Array]]:
        """One update (model, policy, target Qs) on ``batch`` ``[B, horizon + 1, ...]``."""
        state, metrics, _ = self.train_with_latents(state, batch, key)
        return state, metrics

    def train_with_latents(self, state: AgentState, batch, key):
        """``train`` in the trainer's signature (TD-MPC2 keeps no latents in replay: None)."""
        c = self.config
        tlen = batch["is_first"].shape[1]
        if tlen != c.horizon + 1:
            raise ValueError(f"batches must hold horizon + 1 = {c.horizon + 1} steps, got {tlen}")
        k_model, k_pi = jax.random.split(key)
        grad_fn = jax.value_and_grad(self._model_loss, has_aux=True)
        (_, (zs, valid, metrics)), grads = grad_fn(state.params, state, batch, k_model)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics["opt/grad_norm"] = optax.tree.norm(grads)

        state = state.replace(params=params, opt_state=opt_state)
        pi_fn = jax.value_and_grad(self._pi_loss, has_aux=True)
        (pi_loss, (scale, entropy)), pi_grads = pi_fn(state.pi_params, state, zs, valid, k_pi)
        pi_updates, pi_opt_state = self.pi_optimizer.update(
            pi_grads, state.pi_opt_state, state.pi_params
        )
        pi_params = optax.apply_updates(state.pi_params, pi_updates)
        target = jax.tree.map(lambda t, p: t + c.tau * (p - t), state.target_q, _sg(params["qs"]))
        metrics |= {
            "loss/pi": pi_loss,
            "pi/entropy": entropy,
            "pi/scale": scale,
            "opt/pi_grad_norm": optax.tree.norm(pi_grads),
        }
        new = state.replace(
            pi_params=pi_params,
            pi_opt_state=pi_opt_state,
            target_q=target,
            scale=scale,
            step=state.step + 1,
        )
        return new, metrics, None

    # -- losses ------------------------------------------------------------------------------

    def _model_loss(self, params, state: AgentState, batch, key):
        c, horizon = self.config, self.config.horizon
        wm = nnx.merge(self.graphdef, state.pi_params, params, self._rest)
        target_q = nnx.merge(self.q_graphdef, state.target_q)
        obs = {k: _time_major(batch[k]) for k in self.obs_keys}  # [H + 1, B, ...]
        action = _time_major(batch["action"])[:horizon].astype(jnp.float32)  # [H, B, A]
        reward = _time_major(batch["reward"])[1:].astype(jnp.float32)  # [H, B]
        terminal = _time_major(batch["is_terminal"])[1:].astype(jnp.float32)
        valid = jnp.cumprod(~_time_major(batch["is_first"])[1:].astype(bool), 0).astype(jnp.float32)
        k_pi, k_pair, k_drop = jax.random.split(key, 3)
        rho = c.rho ** jnp.arange(horizon, dtype=jnp.float32)

        next_z = _sg(wm.encode({k: v[1:] for k, v in obs.items()}))
        next_a = heads.sample_policy(_sg(wm.pi(next_z)), k_pi, c)[0]
        q_next = heads.q_pair(
            heads.decode(target_q(jnp.concatenate([next_z, next_a], -1)), c), k_pair, "min"
        )
        td = _sg(reward + self.discount * (1.0 - terminal) * q_next)

        def step(z, a):
            z = wm.next(z, a)
            return z, z

        z0 = wm.encode({k: v[0] for k, v in obs.items()})
        _, rolled = jax.lax.scan(step, z0, action)  # [H, B, L]
        zs = jnp.concatenate([z0[None], rolled], 0)

        def weighted(x):  # x [H, B]: sum_t rho^t * mean_b(valid * x) / H
            return jnp.sum(rho * jnp.mean(valid * x, 1)) / horizon

        consistency = weighted(jnp.mean((rolled - next_z) ** 2, -1))
        reward_loss = weighted(heads.soft_ce(wm.reward_logits(zs[:-1], action), reward, c))
        q_logits = wm.q_logits(zs[:-1], action, k_drop)  # [Q, H, B, bins]
        value = weighted(jnp.sum(heads.soft_ce(q_logits, td[None], c), 0)) / c.num_q
        total = c.consistency_coef * consistency + c.reward_coef * reward_loss
        total = total + c.value_coef * value
        metrics = {"loss/consistency": consistency, "loss/reward": reward_loss, "loss/value": value}
        if c.episodic:
            logit = wm.termination_logit(rolled)
            bce = optax.sigmoid_binary_cross_entropy(logit, terminal)
            termination = jnp.sum(valid * bce) / jnp.maximum(valid.sum(), 1.0)
            total = total + c.termination_coef * termination
            metrics["loss/termination"] = termination
        metrics["loss/total"] = total
        metrics["td/target_mean"] = jnp.mean(td)
        return total, (_sg(zs), valid, metrics)

    def _pi_loss(self, pi_params, state: AgentState, zs, valid, key):
        c = self.config
        wm = nnx.merge(self.graphdef, pi_params, _sg(state.params), self._rest)
        k_act, k_pair, k_drop = jax.random.split(key, 3)
        action, _, entropy = heads.sample_policy(wm.pi(zs), k_act, c)
        q = heads.q_pair(heads.decode(wm.q_logits(zs, action, k_drop), c), k_pair, "mean")
        lo, hi = jnp.percentile(_sg(q[0]), jnp.array([5.0, 95.0]))
        scale = state.scale + c.tau * (jnp.maximum(hi - lo, 1.0) - state.scale)
        mask = jnp.concatenate([jnp.ones_like(valid[:1]), valid], 0)  # [H + 1, B]
        rho = c.rho ** jnp.arange(zs.shape[0], dtype=jnp.float32)
        per_step = jnp.mean(mask * -(c.entropy_coef * entropy + q / scale), 1)
        return jnp.mean(rho * per_step), (scale, jnp.mean(entropy))
