"""The agent's networks as one Flax NNX module (:class:`Networks`): image and vector encoders,
RSSM, decoders, reward and continue heads, actor and critic, built for one observation space."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from pvm_mbrl import encoders
from pvm_mbrl.dreamer.config import DreamerConfig
from pvm_mbrl.dreamer.decoder import ImageDecoder, VectorDecoder
from pvm_mbrl.dreamer.heads import Actor, BinaryHead, TwoHotHead
from pvm_mbrl.dreamer.rssm import RSSM
from pvm_mbrl.nn import symlog
from pvm_mbrl.nn.layers import MLP

CACHE_KEY = "encoder_cache"


def split_obs_space(obs_space, keys):
    """``(images, vectors)``: the uint8 ``[H, W, C]`` and float ``[N]`` observations among
    ``keys`` (at most one image), by key, with their shapes and sizes."""
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
        self.images, self.vectors = split_obs_space(obs_space, keys)
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
