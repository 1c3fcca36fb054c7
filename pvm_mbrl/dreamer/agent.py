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
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx, struct

from pvm_mbrl import encoders
from pvm_mbrl.dreamer import actor_critic
from pvm_mbrl.dreamer.config import DreamerConfig
from pvm_mbrl.dreamer.decoder import ImageDecoder, VectorDecoder
from pvm_mbrl.dreamer.heads import Actor, BinaryHead, TwoHotHead
from pvm_mbrl.dreamer.optim import make_optimizer
from pvm_mbrl.dreamer.returns import PercentileNormalizer
from pvm_mbrl.dreamer.rssm import RSSM
from pvm_mbrl.nn import kl_free_bits, symlog
from pvm_mbrl.nn.layers import MLP

_sg = jax.lax.stop_gradient
POLICY_MODES = ("explore", "eval")
BATCH_FLAGS = ("reward", "is_first", "is_last", "is_terminal")
CACHE_KEY = "encoder_cache"
LATENT_KEYS = ("deter", "stoch")  # what replay context stores per step


def _trainable(params: nnx.State) -> nnx.State:
    """The ``nnx.Param`` leaves: what the agent differentiates and the optimiser updates. Other
    variables (a Linen module's RNG streams under ``nnx.bridge``, ...) pass through unchanged."""
    return nnx.split_state(params, nnx.Param, ...)[0]


def _split_obs_space(obs_space, keys):
    images, vectors = {}, {}
    for k in keys:
        space = obs_space[k]
        if len(space.shape) == 3 and np.dtype(space.dtype) == np.uint8:
            images[k] = tuple(space.shape)
        elif len(space.shape) == 1 and np.issubdtype(np.dtype(space.dtype), np.floating):
            vectors[k] = int(space.shape[0])
        else:
            raise ValueError(
                f"observation {k!r} must be uint8 [H, W, C] or float [N], got {space.dtype} "
                f"{space.shape}"
            )
    if len(images) > 1:
        raise ValueError(f"at most one image observation is supported, got {sorted(images)}")
    return images, vectors


class Networks(nnx.Module):
    """Encoder, RSSM, decoders, reward and continue heads, actor and critic."""

    def __init__(self, config: DreamerConfig, obs_space, action_size, discrete, *, rngs):
        c = config
        dtype = jnp.bfloat16 if c.compute_dtype == "bfloat16" else jnp.float32
        keys = c.obs_keys or tuple(sorted(obs_space))
        missing = [k for k in keys if k not in obs_space]
        if missing:
            raise ValueError(f"obs_keys {missing} not in the observation space {sorted(obs_space)}")
        self.images, self.vectors = _split_obs_space(obs_space, keys)
        embed = 0
        if self.images:
            (shape,) = self.images.values()
            options = (
                {"depth": c.depth, "mults": c.mults, "kernel": c.kernel}
                if c.encoder == "cnn"
                else {}
            )
            options |= c.encoder_options
            self.encoder = encoders.make(c.encoder, shape, rngs=rngs, dtype=dtype, **options)
            embed += self.encoder.output_size
            self.image_decoder = ImageDecoder(c, shape, rngs=rngs, dtype=dtype)
        vec_size = sum(self.vectors.values())
        if self.vectors:
            self.vector_encoder = MLP(vec_size, c.mlp_layers, c.units, rngs=rngs, dtype=dtype)
            embed += self.vector_encoder.out_features
        self.rssm = RSSM(c, embed, action_size, rngs=rngs, dtype=dtype)
        feat = self.rssm.feature_size
        if self.vectors:
            self.vector_decoder = VectorDecoder(
                feat, self.vectors, c.mlp_layers, c.units, rngs=rngs, dtype=dtype
            )
        self.reward = TwoHotHead(feat, c.reward_layers, c.units, c.bins, rngs=rngs, dtype=dtype)
        self.cont = BinaryHead(feat, c.cont_layers, c.units, rngs=rngs, dtype=dtype)
        self.actor = Actor(
            feat, c.mlp_layers, c.units, action_size, discrete, c, rngs=rngs, dtype=dtype
        )
        self.critic = TwoHotHead(feat, c.mlp_layers, c.units, c.bins, rngs=rngs, dtype=dtype)
        self.dtype = dtype

    def embed(self, obs: dict[str, jax.Array]) -> jax.Array:
        """Encoder output ``[..., E]`` of the image (from ``obs[CACHE_KEY]`` when present, see
        ``DreamerConfig.encoder_cache``) and the symlog vector observations."""
        parts = []
        if CACHE_KEY in obs:
            parts.append(self.encoder.from_cache(obs[CACHE_KEY]).astype(self.dtype))
        elif self.images:
            (key,) = self.images
            parts.append(self.encoder(obs[key]).astype(self.dtype))
        if self.vectors:
            vec = jnp.concatenate([obs[k].astype(jnp.float32) for k in sorted(self.vectors)], -1)
            parts.append(self.vector_encoder(symlog(vec).astype(self.dtype)))
        return jnp.concatenate(parts, -1)


@struct.dataclass
class AgentState:
    """Everything that changes during training (a pytree; checkpoint it whole)."""

    params: nnx.State
    slow_critic: nnx.State
    opt_state: optax.OptState
    retnorm: PercentileNormalizer
    step: jax.Array


class Dreamer:
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
        if isinstance(batch, bool | np.bool_) or not isinstance(batch, int | np.integer):
            raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
        if batch < 1:
            raise ValueError(f"batch must be an integer >= 1, got {batch}")
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

    # -- losses ----------------------------------------------------------------------------

    def loss(self, params, slow_params, retnorm, batch, key):
        """Total scaled loss and ``(new retnorm, metrics, posterior latents)``; differentiable
        in ``params``."""
        c = self.config
        nets = self.nets(params)
        trainable, rest = nnx.split_state(params, nnx.Param, ...)
        nets_sg = self.nets(nnx.merge_state(_sg(trainable), rest))
        slow_critic = nnx.merge(self.critic_graphdef, _sg(slow_params))
        k_obs, k_img = jax.random.split(key)
        init, first_action, batch = self._split_context(batch)
        is_first = batch["is_first"].astype(bool)
        if not c.replay_context:
            is_first = is_first.at[:, 0].set(True)
        action = batch["action"].astype(jnp.float32)
        bsz, tlen = is_first.shape
        prev_action = jnp.concatenate([first_action[:, None], action[:, :-1]], 1)

        # World model.
        embed = nets.embed({k: batch[k] for k in self._input_keys})
        _, post, post_logits = nets.rssm.observe(init, prev_action, embed, is_first, k_obs)
        prior_logits = nets.rssm.prior_logits(post["deter"])
        dyn, rep = kl_free_bits(post_logits, prior_logits, c.free_nats, c.unimix)
        feat = nets.rssm.features(post)
        losses = {"dyn": dyn, "rep": rep}
        rec = jnp.zeros((bsz, tlen), jnp.float32)
        if nets.images:
            (key_img,) = nets.images
            pred = nets.image_decoder(post["deter"], post["stoch"])
            rec = rec + ImageDecoder.loss(pred, batch[key_img])
        if nets.vectors:
            preds = nets.vector_decoder(feat)
            for k, p in preds.items():
                rec = rec + VectorDecoder.loss(p, batch[k])
        losses["rec"] = rec
        losses["rew"] = -nets.reward(feat).log_prob(batch["reward"].astype(jnp.float32))
        cont_target = (1.0 - batch["is_terminal"].astype(jnp.float32)) * c.discount
        losses["con"] = BinaryHead.loss(nets.cont(feat), cont_target)

        # Actor-critic in imagination from (the last imag_last) posterior states.
        k = min(c.imag_last or tlen, tlen)
        starts = jax.tree.map(lambda x: _sg(x[:, -k:]).reshape(bsz * k, *x.shape[2:]), post)
        states, actions = actor_critic.imagine(nets_sg, starts, c.imag_horizon, k_img)
        ac_losses, retnorm, ret, ac_metrics = actor_critic.imagination_loss(
            nets, nets_sg, slow_critic, retnorm, states, actions, c
        )
        losses.update({n: v.reshape(bsz, k) for n, v in ac_losses.items()})
        if c.repval:
            tail = {n: batch[n][:, -k:] for n in BATCH_FLAGS}
            boot = _sg(ret[0]).reshape(bsz, k)
            losses["repval"] = actor_critic.replay_value_loss(
                nets.critic, slow_critic, feat[:, -k:], tail, boot, c
            )

        total = sum(c.loss_scales[n] * v.mean() for n, v in losses.items())
        post_dist, prior_dist = nets.rssm.dist(post_logits), nets.rssm.dist(prior_logits)
        metrics = {f"loss/{n}": v.mean() for n, v in losses.items()}
        metrics.update(ac_metrics)
        metrics["loss/total"] = total
        metrics["wm/kl"] = post_dist.kl(prior_dist).sum(-1).mean()
        metrics["wm/post_entropy"] = post_dist.entropy().sum(-1).mean()
        metrics["wm/prior_entropy"] = prior_dist.entropy().sum(-1).mean()
        latents = {k: _sg(post[k]) for k in LATENT_KEYS}
        return total, (retnorm, metrics, latents)

    def _split_context(self, batch):
        """``(start latent, action before step 0, the trained steps)`` of a batch: with replay
        context ``K`` the latent stored at step ``K - 1``, the action taken there and steps
        ``K..``; without, the initial state, a zero action and the whole batch."""
        k = self.config.replay_context
        if not k:
            bsz = batch["is_first"].shape[0]
            init = {"deter": jnp.zeros((bsz, self.config.deter), jnp.float32)}
            init["stoch"] = jnp.zeros((bsz, self.config.stoch, self.config.classes), jnp.float32)
            return init, jnp.zeros((bsz, self.action_size), jnp.float32), batch
        init = {n: _sg(batch[n][:, k - 1].astype(jnp.float32)) for n in LATENT_KEYS}
        first_action = batch["action"][:, k - 1].astype(jnp.float32)
        rest = {n: v[:, k:] for n, v in batch.items() if n not in LATENT_KEYS}
        return init, first_action, rest

    def batch_spec(self, batch: int, length: int) -> dict[str, jax.ShapeDtypeStruct]:
        """Shapes and dtypes of a training batch of ``batch`` sequences that train on ``length``
        steps: ``replay_context + length`` steps of the observation keys, ``action``, ``reward``,
        the flags and, with replay context, the stored latents."""
        lead = (batch, self.config.replay_context + length)
        spec = {
            k: jax.ShapeDtypeStruct(lead + tuple(self.obs_space[k].shape), self.obs_space[k].dtype)
            for k in self.obs_keys
        }
        spec["action"] = jax.ShapeDtypeStruct((*lead, self.action_size), jnp.float32)
        spec["reward"] = jax.ShapeDtypeStruct(lead, jnp.float32)
        for flag in ("is_first", "is_last", "is_terminal"):
            spec[flag] = jax.ShapeDtypeStruct(lead, jnp.bool_)
        if self.config.replay_context:
            for k, v in self.latent_spec().items():
                spec[k] = jax.ShapeDtypeStruct(lead + v.shape, v.dtype)
        return spec

    def latent_spec(self) -> dict[str, jax.ShapeDtypeStruct]:
        """Per-step shapes of the latents replay stores for replay context."""
        c = self.config
        return {
            "deter": jax.ShapeDtypeStruct((c.deter,), jnp.float32),
            "stoch": jax.ShapeDtypeStruct((c.stoch, c.classes), jnp.float32),
        }

    # -- input checks (trace time) -----------------------------------------------------------

    @property
    def _input_keys(self) -> tuple[str, ...]:
        """Observation keys the networks read (the cache stands in for the image's encoding;
        the image itself is still read by the decoder in training)."""
        return self.obs_keys + ((self.cache_key,) if self.cache_key else ())

    def _check_obs(self, obs, batch_dims):
        for k in (*self._input_keys, "is_first"):
            if k not in obs:
                raise ValueError(f"obs must contain {k!r}; got keys {sorted(obs)}")
        lead = None
        for k in self.obs_keys:
            expected = tuple(self.obs_space[k].shape)
            shape = tuple(jnp.shape(obs[k]))
            if shape[batch_dims:] != expected or len(shape) != batch_dims + len(expected):
                raise ValueError(
                    f"obs[{k!r}] must have shape [{'B, T' if batch_dims == 2 else 'B'}, "
                    f"{', '.join(map(str, expected))}], got {shape}"
                )
            lead = lead or shape[:batch_dims]
        if self.cache_key:
            shape, want = tuple(jnp.shape(obs[self.cache_key])), (*lead, *self.cache_shape)
            if shape != want:
                raise ValueError(
                    f"obs[{self.cache_key!r}] must have shape {want} (agent.encode_cache of the "
                    f"images), got {shape}"
                )
        if tuple(jnp.shape(obs["is_first"])) != lead:
            raise ValueError(f"is_first must have shape {lead}, got {jnp.shape(obs['is_first'])}")

    def _check_carry(self, carry, lead):
        want = self._carry_shapes
        if not isinstance(carry, Mapping) or set(carry) != set(want):
            got = sorted(carry) if isinstance(carry, Mapping) else type(carry).__name__
            raise ValueError(f"carry must be agent.initial_carry(B) keys {sorted(want)}, got {got}")
        for k, w in want.items():
            shape, expected = tuple(jnp.shape(carry[k])), (*lead, *w)
            if shape != expected:
                raise ValueError(
                    f"carry[{k!r}] must have shape {expected} for an obs batch of {lead[0]}, got "
                    f"{shape} (carry batch {shape[0] if shape else None}); use "
                    f"agent.initial_carry({lead[0]})"
                )

    def _check_batch(self, batch):
        k = self.config.replay_context
        need = (*BATCH_FLAGS, "action") + (LATENT_KEYS if k else ())
        for name in need:
            if name not in batch:
                extra = (
                    f" (replay_context={k} needs the latents stored in replay: "
                    f"{', '.join(LATENT_KEYS)}; replay_context=0 trains without)"
                    if name in LATENT_KEYS
                    else ""
                )
                raise ValueError(
                    f"training batch must contain {name!r}{extra}; got keys {sorted(batch)}"
                )
        self._check_obs(batch, batch_dims=2)
        lead = tuple(jnp.shape(batch["is_first"]))
        if len(lead) != 2 or lead[1] <= k:
            raise ValueError(
                f"training batch must hold more than replay_context={k} steps, got shape {lead}"
            )
        for name, spec in (self.latent_spec() if k else {}).items():
            want = (*lead, *spec.shape)
            if tuple(jnp.shape(batch[name])) != want:
                raise ValueError(
                    f"batch[{name!r}] must have shape {want}, got {jnp.shape(batch[name])}"
                )
        expected = (*lead, self.action_size)
        if tuple(jnp.shape(batch["action"])) != expected:
            raise ValueError(
                f"batch['action'] must have shape {expected}, got {batch['action'].shape}"
            )
        for k in BATCH_FLAGS:
            if tuple(jnp.shape(batch[k])) != lead:
                raise ValueError(f"batch[{k!r}] must have shape {lead}, got {jnp.shape(batch[k])}")


# Encoders built from the PRNG key alone (no file read): their agents initialise under jit.
KEY_ONLY_ENCODERS = ("cnn", "vit-s14-scratch", "vit-scratch")


@jax.jit
def _jit_stack(states):
    return jax.tree.map(lambda *x: jnp.stack(x), *states)
