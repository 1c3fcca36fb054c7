"""DreamerV3's recurrent state-space model with a block-diagonal GRU.

State: ``deter`` ``[..., D]`` (the GRU's) and ``stoch`` ``[..., S, C]`` (``S`` one-hot
categoricals of ``C`` classes, 1% unimix, straight-through samples). One step:

* ``core``: the stochastic state, the action (divided by ``max(1, |a|)``) and ``deter`` each pass
  ``Linear -> RMSNorm -> SiLU`` to ``hidden`` units; the three are appended to every one of the
  ``blocks`` groups of ``deter``; ``dynlayers`` block-linear layers, then a block-linear layer
  gives the reset, candidate and update gates:
  ``deter' = u * tanh(r * cand) + (1 - u) * deter`` with ``r = sigmoid(.)``, ``u = sigmoid(. - 1)``.
* prior logits from ``deter'`` (``imglayers`` hidden layers), posterior logits from
  ``[deter', embed]`` (``obslayers``).

At an episode start (``is_first``) ``deter``, ``stoch`` and the previous action are zeroed
before the step, so a sequence's first step starts from the initial state. Shapes and formulas
follow the official ``rssm.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from pvm_mbrl.nn import OneHotDist
from pvm_mbrl.nn.layers import MLP, BlockLinear, Norm, NormAct, linear

_sg = jax.lax.stop_gradient


class RSSM(nnx.Module):
    def __init__(self, config, embed_size: int, action_size: int, *, rngs: nnx.Rngs, dtype):
        c = config
        d, h, g = c.deter, c.hidden, c.blocks
        self.deter, self.stoch, self.classes, self.blocks = d, c.stoch, c.classes, g
        self.unimix = c.unimix
        self.dtype = dtype
        self.dynin = nnx.List(
            [
                NormAct(din, h, rngs=rngs, dtype=dtype)
                for din in (d, c.stoch * c.classes, action_size)
            ]
        )
        din = d + 3 * h * g
        self.dynhid = nnx.List([])
        self.dynhid_norm = nnx.List([])
        for _ in range(c.dynlayers):
            self.dynhid.append(BlockLinear(din, d, g, rngs=rngs, dtype=dtype))
            self.dynhid_norm.append(Norm(d, rngs=rngs, dtype=dtype))
            din = d
        self.gru = BlockLinear(din, 3 * d, g, rngs=rngs, dtype=dtype)
        logits = c.stoch * c.classes
        self.prior_mlp = MLP(d, c.imglayers, h, rngs=rngs, dtype=dtype)
        self.prior_out = linear(self.prior_mlp.out_features, logits, rngs=rngs, dtype=dtype)
        self.post_mlp = MLP(d + embed_size, c.obslayers, h, rngs=rngs, dtype=dtype)
        self.post_out = linear(self.post_mlp.out_features, logits, rngs=rngs, dtype=dtype)

    @property
    def feature_size(self) -> int:
        return self.deter + self.stoch * self.classes

    def initial(self, batch: int) -> dict[str, jax.Array]:
        return {
            "deter": jnp.zeros((batch, self.deter), jnp.float32),
            "stoch": jnp.zeros((batch, self.stoch, self.classes), jnp.float32),
        }

    def dist(self, logits: jax.Array) -> OneHotDist:
        return OneHotDist.from_logits(logits, self.unimix)

    def features(self, state: dict[str, jax.Array]) -> jax.Array:
        """``[deter, flat(stoch)]``, the input of every head."""
        stoch = state["stoch"]
        flat = stoch.reshape(*stoch.shape[:-2], -1)
        return jnp.concatenate([state["deter"], flat], -1)

    def core(self, deter: jax.Array, stoch: jax.Array, action: jax.Array) -> jax.Array:
        g = self.blocks
        stoch = stoch.reshape(*stoch.shape[:-2], -1)
        action = action / _sg(jnp.maximum(1.0, jnp.abs(action)))
        xs = [layer(x) for layer, x in zip(self.dynin, (deter, stoch, action))]
        x = jnp.concatenate(xs, -1)
        batch = deter.shape[:-1]
        x = jnp.broadcast_to(x[..., None, :], (*batch, g, x.shape[-1]))
        grouped = deter.reshape(*batch, g, -1).astype(x.dtype)
        x = jnp.concatenate([grouped, x], -1).reshape(*batch, -1)
        for layer, norm in zip(self.dynhid, self.dynhid_norm):
            x = jax.nn.silu(norm(layer(x)))
        x = self.gru(x).astype(jnp.float32).reshape(*batch, g, 3, -1)
        reset, cand, update = (x[..., i, :].reshape(*batch, -1) for i in range(3))
        reset = jax.nn.sigmoid(reset)
        cand = jnp.tanh(reset * cand)
        update = jax.nn.sigmoid(update - 1.0)
        return update * cand + (1.0 - update) * deter

    def _logits(self, mlp, out, x):
        y = out(mlp(x)).astype(jnp.float32)
        return y.reshape(*y.shape[:-1], self.stoch, self.classes)

    def prior_logits(self, deter: jax.Array) -> jax.Array:
        return self._logits(self.prior_mlp, self.prior_out, deter)

    def posterior_logits(self, deter: jax.Array, embed: jax.Array) -> jax.Array:
        x = jnp.concatenate([deter.astype(self.dtype), embed.astype(self.dtype)], -1)
        return self._logits(self.post_mlp, self.post_out, x)

    def obs_step(self, state, prev_action, embed, is_first, key):
        """Posterior step; returns the new state and its posterior logits."""
        keep = (~is_first.astype(bool)).astype(jnp.float32)
        deter = state["deter"] * keep[..., None]
        stoch = state["stoch"] * keep[..., None, None]
        prev_action = prev_action * keep[..., None]
        deter = self.core(deter, stoch, prev_action)
        logits = self.posterior_logits(deter, embed)
        stoch = self.dist(logits).sample(key)
        return {"deter": deter, "stoch": stoch}, logits

    def img_step(self, state, action, key):
        """Prior step; returns the new state and its prior logits."""
        deter = self.core(state["deter"], state["stoch"], action)
        logits = self.prior_logits(deter)
        stoch = self.dist(logits).sample(key)
        return {"deter": deter, "stoch": stoch}, logits

    def observe(self, state, prev_actions, embeds, is_first, key):
        """Posterior over a batch of sequences ``[B, T, ...]`` by ``lax.scan`` over time.

        Returns ``(last_state, states, post_logits)`` with ``states`` leaves ``[B, T, ...]``.
        """
        tm = lambda x: jnp.swapaxes(x, 0, 1)  # noqa: E731
        keys = jax.random.split(key, embeds.shape[1])

        def step(carry, inputs):
            act, emb, first, k = inputs
            carry, logits = self.obs_step(carry, act, emb, first, k)
            return carry, (carry, logits)

        last, (states, logits) = jax.lax.scan(
            step, state, (tm(prev_actions), tm(embeds), tm(is_first), keys)
        )
        return last, jax.tree.map(tm, states), tm(logits)
