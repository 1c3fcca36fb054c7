"""The DreamerV3 agent as pure functions of pytrees.

```python
agent = Dreamer(config, obs_space, act_space)
state = agent.init(key)                           # AgentState: params, slow critic, optimiser...
carry = agent.initial_carry(batch)                # RSSM state and previous action per env
action, carry = agent.policy(state, carry, obs, key, mode="explore")   # obs has "is_first"
state, metrics = agent.train(state, batch, key)   # one update on a replayed batch [B, K + T]
```

The networks are one Flax NNX module (:class:`Networks`) split into a static graph definition
(kept on the agent) and a parameter ``nnx.State`` (in :class:`AgentState`); every method merges
them inside the traced function, so all of them compose with ``jit``, ``vmap``, ``lax.scan`` and
shardings. Training batches are dicts of ``[B, T, ...]`` arrays: the observation keys,
``action`` (the model-side action taken at step ``t``: continuous values or one-hot),
``reward`` (received on arriving at step ``t``), ``is_first``, ``is_last``, ``is_terminal``.

Replay context (``DreamerConfig.replay_context = K``, the official default 1): a batch holds
``K + T`` steps and the RSSM latents ``deter`` and ``stoch`` stored with each step in replay.
Training starts each sequence from the latent stored at its step ``K - 1`` (and the action taken
there) instead of the initial state, and learns on the last ``T`` steps only;
``train_with_latents`` also returns the posterior latents of those ``T`` steps, which the trainer
writes back to replay, so the next sequence that starts there begins from a latent the current
model computed. With ``K = 0`` every sequence starts from the initial state (``is_first[:, 0]``
is forced on), as in the DreamerV3 paper.

The networks live in :mod:`pvm_mbrl.dreamer.networks`, the loss in :mod:`pvm_mbrl.dreamer.loss`
(mixin ``DreamerLoss``), batch shapes and input checks in :mod:`pvm_mbrl.dreamer.inputs` (mixin
``InputLayout``).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct

from pvm_mbrl import encoders
from pvm_mbrl.dreamer.config import DreamerConfig
from pvm_mbrl.dreamer.inputs import InputLayout, check_batch_size
from pvm_mbrl.dreamer.loss import DreamerLoss
from pvm_mbrl.dreamer.networks import CACHE_KEY, Networks
from pvm_mbrl.dreamer.optim import make_optimizer
from pvm_mbrl.dreamer.returns import PercentileNormalizer

_sg = jax.lax.stop_gradient
POLICY_MODES = ("explore", "eval")


def _trainable(params: nnx.State) -> nnx.State:
    """The ``nnx.Param`` leaves: what the agent differentiates and the optimiser updates. Other
    variables (a Linen module's RNG streams under ``nnx.bridge``, ...) pass through unchanged."""
    return nnx.split_state(params, nnx.Param, ...)[0]


@struct.dataclass
class AgentState:
    """Everything that changes during training (a pytree; checkpoint it whole)."""

    params: nnx.State
    slow_critic: nnx.State
    opt_state: optax.OptState
    retnorm: PercentileNormalizer
    step: jax.Array


class Dreamer(DreamerLoss, InputLayout):
    """DreamerV3 for one observation and action space (see the module docstring)."""

    def __init__(self, config: DreamerConfig, obs_space, act_space):
        self.config = config
        self.obs_space = dict(obs_space)
        self.act_space = act_space
        self.discrete = np.issubdtype(np.dtype(act_space.dtype), np.integer)
        if self.discrete:
            if act_space.shape != ():
                raise ValueError(f"discrete actions must be scalars, got shape {act_space.shape}")
            self.action_size = int(act_space.high) - int(act_space.low) + 1
        else:
            if len(act_space.shape) != 1:
                raise ValueError(f"continuous actions must be [A], got shape {act_space.shape}")
            self.action_size = int(act_space.shape[0])
        nets = nnx.eval_shape(lambda: self._build(jax.random.PRNGKey(0)))
        self.graphdef, _ = nnx.split(nets)
        self.critic_graphdef, _ = nnx.split(nets.critic)
        self.obs_keys = tuple(sorted({**nets.images, **nets.vectors}))
        self.optimizer = self._make_optimizer(nets)
        self._jit_init = jax.jit(self._init)
        self._jit_init_many = jax.jit(jax.vmap(self._init))
        self.cache_key, self.cache_shape, self.cache_dtype = None, None, None
        if config.encoder_cache:
            encoder = getattr(nets, "encoder", None)
            if not all(hasattr(encoder, m) for m in ("cache", "from_cache", "cache_shape")):
                raise ValueError(
                    f"encoder_cache needs an image encoder with cache(), from_cache() and "
                    f"cache_shape() (a PVM encoder under 'frozen' or 'partial(k)'), got "
                    f"{config.encoder!r}"
                )
            self.cache_key = CACHE_KEY
            self.cache_shape = tuple(encoder.cache_shape())
            self.cache_dtype = jnp.dtype(nets.dtype)

    @property
    def replay_context(self) -> int:
        """Steps of stored latents before each trained sequence (the trainer reads this)."""
        return self.config.replay_context

    def _make_optimizer(self, nets: Networks) -> optax.GradientTransformation:
        """DreamerV3's optimiser; with a PVM encoder, its frozen weights get no update and no
        state, its trainable ones ``pvm_lr`` (and ``layer_decay``) through optax.multi_transform."""
        c = self.config
        base = make_optimizer(c.optimizer)
        if not isinstance(getattr(nets, "encoder", None), encoders.PVMEncoder):
            if c.pvm_lr is not None or c.layer_decay is not None:
                raise ValueError("pvm_lr and layer_decay need a PVM encoder")
            return base
        pvm = (
            base
            if c.pvm_lr is None
            else make_optimizer(dataclasses.replace(c.optimizer, lr=c.pvm_lr))
        )
        labels = encoders.param_labels(_trainable(nnx.state(nets)), nets.encoder.finetune)
        return encoders.make_pvm_optimizer(base, pvm, labels, layer_decay=c.layer_decay)

    def encode_cache(self, state: AgentState, images: jax.Array) -> jax.Array:
        """What replay stores for ``images`` ``[..., H, W, C]`` when ``encoder_cache`` is on."""
        if self.cache_key is None:
            raise ValueError("encode_cache needs DreamerConfig(encoder_cache=True)")
        return self.nets(state.params).encoder.cache(images)

    def _build(self, key) -> Networks:
        rngs = nnx.Rngs(params=key)
        return Networks(self.config, self.obs_space, self.action_size, self.discrete, rngs=rngs)

    def nets(self, params: nnx.State) -> Networks:
        return nnx.merge(self.graphdef, params)

    # -- public API ------------------------------------------------------------------------

    def init(self, key: jax.Array) -> AgentState:
        """Fresh parameters, optimiser state and normaliser.

        An encoder built from the key alone (``cnn``, the scratch ViTs) initialises in one
        compiled program, cached across runs; run eagerly, each initialiser would compile once
        per parameter shape (about a hundred small programs at size12m). An encoder that reads
        pre-trained weights initialises eagerly, so that its weights enter as data and not as
        constants copied into a program.
        """
        if self.config.encoder in KEY_ONLY_ENCODERS:
            return self._jit_init(key)
        return self._init(key)

    def init_many(self, keys: jax.Array) -> AgentState:
        """One fresh state per key of ``keys`` ``[N, 2]``, stacked on a leading axis (for
        ``jax.vmap``-ed agents); one compiled program where :meth:`init` compiles one."""
        if self.config.encoder in KEY_ONLY_ENCODERS:
            return self._jit_init_many(keys)
        return _jit_stack([self._init(k) for k in keys])

    def _init(self, key: jax.Array) -> AgentState:
        params = nnx.state(self._build(key))
        c = self.config
        return AgentState(
            params=params,
            slow_critic=jax.tree.map(jnp.copy, params["critic"]),
            opt_state=self.optimizer.init(_trainable(params)),
            retnorm=PercentileNormalizer.create(
                c.retnorm_rate, c.retnorm_perclo, c.retnorm_perchi, c.retnorm_limit
            ),
            step=jnp.zeros((), jnp.int32),
        )

    def initial_carry(self, batch: int) -> dict[str, jax.Array]:
        """Policy carry for ``batch`` envs: RSSM ``deter``, ``stoch`` and the previous action."""
        check_batch_size(batch)
        return {k: jnp.zeros((batch, *s), jnp.float32) for k, s in self._carry_shapes.items()}

    @property
    def _carry_shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-env shapes of the policy carry's entries."""
        c = self.config
        return {"deter": (c.deter,), "stoch": (c.stoch, c.classes), "action": (self.action_size,)}

    def policy(self, state: AgentState, carry, obs, key, mode: str = "explore"):
        """One step for a batch of envs; ``obs`` holds the observation keys and ``is_first``.

        Returns ``(env_action, carry)``. ``mode="explore"`` samples, ``"eval"`` takes the mode.
        Continuous env actions are the sample clipped to ``[-1, 1]``; discrete ones are integer
        indices. ``carry["action"]`` keeps the model-side action, which the trainer also writes to
        replay: the unclipped sample or a one-hot. As in the official code (whose env wrapper
        clips), the world model thus learns what actions outside the box do (the same as the
        boundary), and imagination, which samples unclipped actions, stays in its training
        distribution. With ``encoder_cache`` on, ``obs`` may carry ``agent.encode_cache`` of the
        images under ``agent.cache_key`` (the trainer computes it once and stores it in replay);
        otherwise it is computed here.
        """
        if mode not in POLICY_MODES:
            raise ValueError(f"mode must be one of {POLICY_MODES}, got {mode!r}")
        nets = self.nets(state.params)
        if self.cache_key and self.cache_key not in obs:
            (img,) = nets.images
            if img in obs:
                obs = {**obs, self.cache_key: nets.encoder.cache(obs[img])}
        self._check_obs(obs, batch_dims=1)
        self._check_carry(carry, tuple(jnp.shape(obs["is_first"])))
        k_obs, k_act = jax.random.split(key)
        embed = nets.embed({k: obs[k] for k in self._input_keys})
        rstate = {"deter": carry["deter"], "stoch": carry["stoch"]}
        rstate, _ = nets.rssm.obs_step(rstate, carry["action"], embed, obs["is_first"], k_obs)
        dist = nets.actor(nets.rssm.features(rstate))
        action = dist.sample(k_act) if mode == "explore" else dist.mode()
        action = _sg(action)
        if self.discrete:
            env_action = jnp.argmax(action, -1).astype(self.act_space.dtype) + int(
                self.act_space.low
            )
        else:
            env_action = jnp.clip(action, -1.0, 1.0)
        return env_action, {**rstate, "action": action}

    def train(self, state: AgentState, batch, key) -> tuple[AgentState, dict[str, jax.Array]]:
        """One gradient update of world model, actor and critic on ``batch`` ``[B, K + T, ...]``
        (``K = config.replay_context``; see the module docstring)."""
        state, metrics, _ = self.train_with_latents(state, batch, key)
        return state, metrics

    def train_with_latents(self, state: AgentState, batch, key):
        """``train`` that also returns the posterior latents ``{"deter": [B, T, D], "stoch":
        [B, T, S, C]}`` of the trained steps (the last ``T`` of the batch), computed with the
        parameters before the update as in the official code: what replay context stores."""
        self._check_batch(batch)
        trainable, rest = nnx.split_state(state.params, nnx.Param, ...)

        def loss(trainable):
            params = nnx.merge_state(trainable, rest)
            return self.loss(params, state.slow_critic, state.retnorm, batch, key)

        (_, (retnorm, metrics, latents)), grads = jax.value_and_grad(loss, has_aux=True)(trainable)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, trainable)
        trainable = optax.apply_updates(trainable, updates)
        params = nnx.merge_state(trainable, rest)
        rate = self.config.slow_rate
        slow = jax.tree.map(
            lambda s, p: (1.0 - rate) * s + rate * p, state.slow_critic, params["critic"]
        )
        metrics["opt/grad_norm"] = optax.tree.norm(grads)
        metrics["opt/update_norm"] = optax.tree.norm(updates)
        metrics["opt/param_norm"] = optax.tree.norm(trainable)
        new = AgentState(params, slow, opt_state, retnorm, state.step + 1)
        return new, metrics, latents

    def open_loop(self, state: AgentState, batch, key, context: int = 5):
        """World-model predictions for a replayed batch, as DreamerV3's report shows them: the
        posterior over the first ``context`` steps, then the prior driven by the replayed actions
        alone. Returns ``(truth, model)``, uint8 ``[B, T, H, W, C]`` each (the posterior's
        reconstructions for ``t < context``, open-loop predictions after)."""
        nets = self.nets(state.params)
        if not nets.images:
            raise ValueError("open_loop needs an image observation")
        (img,) = nets.images
        tlen = batch["is_first"].shape[1]
        if not 1 <= context < tlen:
            raise ValueError(f"context must be in [1, {tlen - 1}] for sequences of {tlen}")
        if self.cache_key and self.cache_key not in batch:
            batch = {**batch, self.cache_key: nets.encoder.cache(batch[img])}
        k_obs, k_img = jax.random.split(key)
        is_first = batch["is_first"].astype(bool).at[:, 0].set(True)
        action = batch["action"].astype(jnp.float32)
        prev = jnp.concatenate([jnp.zeros_like(action[:, :1]), action[:, :-1]], 1)
        embed = nets.embed({k: batch[k][:, :context] for k in self._input_keys})
        init = nets.rssm.initial(is_first.shape[0])
        last, post, _ = nets.rssm.observe(
            init, prev[:, :context], embed, is_first[:, :context], k_obs
        )

        def step(s, inputs):
            s, _ = nets.rssm.img_step(s, *inputs)
            return s, s

        keys = jax.random.split(k_img, tlen - context)
        _, prior = jax.lax.scan(step, last, (jnp.swapaxes(prev[:, context:], 0, 1), keys))
        prior = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), prior)
        states = jax.tree.map(lambda a, b: jnp.concatenate([a, b], 1), post, prior)
        pred = nets.image_decoder(states["deter"], states["stoch"])
        model = jnp.clip(jnp.round(pred * 255.0), 0, 255).astype(jnp.uint8)
        return batch[img], model


# Encoders built from the PRNG key alone (no file read): their agents initialise under jit.
KEY_ONLY_ENCODERS = ("cnn", "vit-s14-scratch", "vit-scratch")


@jax.jit
def _jit_stack(states):
    return jax.tree.map(lambda *x: jnp.stack(x), *states)
