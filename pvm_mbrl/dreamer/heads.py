"""DreamerV3's prediction heads: an MLP on the model features, then an output layer.

* :class:`TwoHotHead`: reward and critic; 255 symexp-spaced bins, output layer initialised to
  zero so the first prediction is exactly 0.
* :class:`BinaryHead`: continue flag; Bernoulli logit, cross-entropy against soft targets.
* :class:`Actor`: bounded normal for continuous actions (output scale 0.01), unimix categorical
  for discrete ones.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from pvm_mbrl.nn import BoundedNormal, OneHotDist, TwoHotSymlog, symexp_bins
from pvm_mbrl.nn.layers import MLP, linear


class TwoHotHead(nnx.Module):
    def __init__(self, din, layers, units, bins, *, rngs: nnx.Rngs, dtype, outscale=0.0):
        self.mlp = MLP(din, layers, units, rngs=rngs, dtype=dtype)
        self.out = linear(self.mlp.out_features, bins, rngs=rngs, outscale=outscale, dtype=dtype)
        self.num_bins = bins

    def __call__(self, x: jax.Array) -> TwoHotSymlog:
        logits = self.out(self.mlp(x)).astype(jnp.float32)
        return TwoHotSymlog(logits=logits, bins=symexp_bins(self.num_bins))


class BinaryHead(nnx.Module):
    """Logit of a Bernoulli; ``loss(logit, target)`` accepts targets in [0, 1]."""

    def __init__(self, din, layers, units, *, rngs: nnx.Rngs, dtype):
        self.mlp = MLP(din, layers, units, rngs=rngs, dtype=dtype)
        self.out = linear(self.mlp.out_features, 1, rngs=rngs, dtype=dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.out(self.mlp(x))[..., 0].astype(jnp.float32)

    @staticmethod
    def loss(logit: jax.Array, target: jax.Array) -> jax.Array:
        """``-(t log sigmoid(l) + (1 - t) log sigmoid(-l))``."""
        return -(target * jax.nn.log_sigmoid(logit) + (1 - target) * jax.nn.log_sigmoid(-logit))


class Actor(nnx.Module):
    """Policy head: ``BoundedNormal`` over ``[-1, 1]^A`` or ``OneHotDist`` over ``A`` choices."""

    def __init__(self, din, layers, units, action_size, discrete, config, *, rngs, dtype):
        self.mlp = MLP(din, layers, units, rngs=rngs, dtype=dtype)
        dout = action_size if discrete else 2 * action_size
        self.out = linear(
            self.mlp.out_features, dout, rngs=rngs, outscale=config.actor_outscale, dtype=dtype
        )
        self.discrete = discrete
        self.minstd, self.maxstd = config.minstd, config.maxstd
        self.unimix = config.actor_unimix

    def __call__(self, x: jax.Array):
        y = self.out(self.mlp(x)).astype(jnp.float32)
        if self.discrete:
            return OneHotDist.from_logits(y, self.unimix)
        mean, std = jnp.split(y, 2, -1)
        return BoundedNormal.from_raw(mean, std, self.minstd, self.maxstd)
