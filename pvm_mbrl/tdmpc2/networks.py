"""TD-MPC2's implicit world model as one Flax NNX module (:class:`WorldModel`).

Every block is the paper's: ``Linear -> LayerNorm -> Mish`` hidden layers, a latent state that
is a SimNorm of groups of ``simnorm_dim`` (softmax within each group, so the latent lies on a
product of simplices), an encoder and a latent dynamics ending in SimNorm, a reward head and an
ensemble of ``num_q`` Q heads that predict two-hot logits over ``num_bins`` symlog-spaced bins,
a Gaussian policy prior, and with ``episodic`` a termination head. Weights start as the
official code's: normal with standard deviation 0.02 (its ``trunc_normal_`` bounds of +-2 are
absolute and never bind at that scale), zero biases, LayerNorm scales one, and zero output
weights of the reward and Q heads, which therefore start by predicting 0.

Image observations go through an encoder of :mod:`pvm_mbrl.encoders` (``"cnn"`` or a
pre-trained model) and one ``Linear -> LayerNorm -> SimNorm`` to the latent; vector observations
through the official MLP encoder. The Q ensemble is one module under ``nnx.vmap`` with stacked
parameters, so all members run as one batched matmul.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
from flax import nnx

from pvm_mbrl import encoders
from pvm_mbrl.dreamer.networks import split_obs_space
from pvm_mbrl.tdmpc2.config import TDMPC2Config

_INIT = nnx.initializers.normal(0.02)


def simnorm(x: jax.Array, dim: int) -> jax.Array:
    """Softmax over consecutive groups of ``dim`` entries of the last axis (SimNorm)."""
    shape = x.shape
    return jax.nn.softmax(x.reshape(*shape[:-1], shape[-1] // dim, dim), -1).reshape(shape)


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    """Inverted dropout with an explicit key (``key=None``: the identity, as in evaluation)."""
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


class NormedLinear(nnx.Module):
    """``act(layer_norm(dropout(linear(x))))``; ``act=None`` is Mish."""

    def __init__(self, din: int, dout: int, *, rngs: nnx.Rngs, act=None, dropout: float = 0.0):
        self.linear = nnx.Linear(din, dout, kernel_init=_INIT, rngs=rngs)
        self.norm = nnx.LayerNorm(dout, epsilon=1e-5, rngs=rngs)
        self.act = jax.nn.mish if act is None else act
        self.dropout = dropout

    def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        return self.act(self.norm(dropout(self.linear(x), self.dropout, key)))


class MLP(nnx.Module):
    """TD-MPC2's ``mlp``: ``NormedLinear`` hidden layers (dropout on the first only), then a
    ``NormedLinear`` with ``act`` or, without one, a plain linear output (zero weights with
    ``zero_out``)."""

    def __init__(
        self,
        din: int,
        hidden: list[int],
        dout: int,
        *,
        rngs: nnx.Rngs,
        act=None,
        dropout: float = 0.0,
        zero_out: bool = False,
    ):
        dims = [din, *hidden]
        self.hidden = nnx.List(
            [
                NormedLinear(a, b, rngs=rngs, dropout=dropout if i == 0 else 0.0)
                for i, (a, b) in enumerate(itertools.pairwise(dims))
            ]
        )
        if act is not None:
            self.out = NormedLinear(dims[-1], dout, rngs=rngs, act=act)
        else:
            init = nnx.initializers.zeros_init() if zero_out else _INIT
            self.out = nnx.Linear(dims[-1], dout, kernel_init=init, rngs=rngs)

    def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        for layer in self.hidden:
            x = layer(x, key)
            key = None  # dropout on the first layer only
        return self.out(x)


def _obs_kinds(obs_space, keys):
    """DreamerV3's split of the observations, limited to one kind: TD-MPC2 encodes either one
    image or the vector observations."""
    images, vectors = split_obs_space(obs_space, keys)
    if images and vectors:
        raise ValueError(
            f"TD-MPC2 encodes one image or vector observations, not both; got images "
            f"{sorted(images)} and vectors {sorted(vectors)} (choose with obs_keys)"
        )
    return images, vectors


class QEnsemble(nnx.Module):
    """``num_q`` Q heads with stacked parameters, each ``z, a -> num_bins`` logits."""

    def __init__(self, din: int, c: TDMPC2Config, *, rngs: nnx.Rngs):
        @nnx.split_rngs(splits=c.num_q)
        @nnx.vmap(in_axes=(0,), out_axes=0)
        def make(rngs):
            hidden = [c.mlp_dim, c.mlp_dim]
            return MLP(din, hidden, c.num_bins, rngs=rngs, dropout=c.dropout, zero_out=True)

        self.members = make(rngs)

    def __call__(self, x: jax.Array, key: jax.Array | None = None) -> jax.Array:
        """Logits ``[num_q, ..., num_bins]``; ``key`` draws each member's own dropout mask.

        A plain ``jax.vmap`` over the split parameters (not ``nnx.vmap``), so that the call also
        works inside other JAX transforms, such as the planner's vmap over envs."""
        graphdef, params = nnx.split(self.members)
        n = jax.tree.leaves(params)[0].shape[0]
        keys = None if key is None else jax.random.split(key, n)
        run = lambda p, k: nnx.merge(graphdef, p)(x, k)  # noqa: E731
        return jax.vmap(run, in_axes=(0, None if keys is None else 0))(params, keys)


class WorldModel(nnx.Module):
    """Encoder, latent dynamics, reward, (termination,) policy prior and the Q ensemble."""

    def __init__(self, c: TDMPC2Config, obs_space, action_size: int, *, rngs: nnx.Rngs):
        keys = c.obs_keys or tuple(sorted(obs_space))
        missing = [k for k in keys if k not in obs_space]
        if missing:
            raise ValueError(f"obs_keys {missing} not in the observation space {sorted(obs_space)}")
        self.images, self.vectors = _obs_kinds(obs_space, keys)
        latent, mlp, a = c.latent_dim, [c.mlp_dim, c.mlp_dim], action_size
        norm = lambda x: simnorm(x, c.simnorm_dim)  # noqa: E731
        if self.images:
            (shape,) = self.images.values()
            self.encoder = encoders.make(c.encoder, shape, rngs=rngs, **c.encoder_options)
            self.project = NormedLinear(self.encoder.output_size, latent, rngs=rngs, act=norm)
        else:
            hidden = max(c.num_enc_layers - 1, 1) * [c.enc_dim]
            din = sum(self.vectors.values())
            self.state_encoder = MLP(din, hidden, latent, rngs=rngs, act=norm)
        self.dynamics = MLP(latent + a, mlp, latent, rngs=rngs, act=norm)
        self.reward = MLP(latent + a, mlp, c.num_bins, rngs=rngs, zero_out=True)
        if c.episodic:
            self.termination = MLP(latent, mlp, 1, rngs=rngs)
        self.pi = MLP(latent, mlp, 2 * a, rngs=rngs)
        self.qs = QEnsemble(latent + a, c, rngs=rngs)

    def encode(self, obs: dict[str, jax.Array]) -> jax.Array:
        """Latent ``[..., latent_dim]`` of an observation dict."""
        if self.images:
            (key,) = self.images
            return self.project(self.encoder(obs[key]).astype(jnp.float32))
        vec = jnp.concatenate([obs[k].astype(jnp.float32) for k in sorted(self.vectors)], -1)
        return self.state_encoder(vec)

    def next(self, z: jax.Array, a: jax.Array) -> jax.Array:
        return self.dynamics(jnp.concatenate([z, a], -1))

    def reward_logits(self, z: jax.Array, a: jax.Array) -> jax.Array:
        return self.reward(jnp.concatenate([z, a], -1))

    def termination_logit(self, z: jax.Array) -> jax.Array:
        return self.termination(z)[..., 0]

    def q_logits(self, z: jax.Array, a: jax.Array, key: jax.Array | None = None) -> jax.Array:
        return self.qs(jnp.concatenate([z, a], -1), key)
