"""Plug your own image encoder into the DreamerV3 agent: an NNX module, or a Linen module.

An encoder is any Flax NNX module that maps uint8 images ``[..., H, W, C]`` to features
``[..., output_size]`` and declares ``output_size``. Register a factory
``factory(image_shape, *, rngs, dtype, **options) -> module`` under a name and select it with
``DreamerConfig(encoder=name)``. A Linen module goes through ``flax.nnx.bridge.ToNNX`` (its
variables are created by ``lazy_init`` on a sample input) inside a thin NNX adapter.

    python examples/custom_encoder.py
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen, nnx

import pvm_mbrl
from pvm_mbrl import encoders
from pvm_mbrl.dreamer.agent import Dreamer
from pvm_mbrl.dreamer.config import DreamerConfig
from pvm_mbrl.dreamer.optim import OptimizerConfig
from pvm_mbrl.envs.core import Space


def _flatten_images(images: jax.Array, image_shape: tuple[int, ...]):
    if images.dtype != jnp.uint8 or tuple(images.shape[-3:]) != tuple(image_shape):
        want = ", ".join(map(str, image_shape))
        raise ValueError(f"images must be uint8 [..., {want}], got {images.dtype} {images.shape}")
    return images.reshape(-1, *image_shape).astype(jnp.float32) / 255.0 - 0.5, images.shape[:-3]


class PatchMeanEncoder(nnx.Module):
    """An NNX encoder: a strided convolution, SiLU, global mean, a linear layer."""

    def __init__(self, image_shape, *, rngs: nnx.Rngs, dtype=jnp.float32, features: int = 16):
        self.image_shape = tuple(image_shape)
        self.conv = nnx.Conv(image_shape[-1], features, (4, 4), strides=(4, 4), rngs=rngs)
        self.out = nnx.Linear(features, features, rngs=rngs)
        self.output_size = features
        self.dtype = dtype

    def __call__(self, images: jax.Array) -> jax.Array:
        x, lead = _flatten_images(images, self.image_shape)
        x = jax.nn.silu(self.conv(x)).mean((1, 2))
        return self.out(x).astype(self.dtype).reshape(*lead, -1)


class LinenConvEncoder(linen.Module):
    """The same idea written in Linen (float pixels ``[N, H, W, C]`` -> ``[N, features]``)."""

    features: int = 16

    @linen.compact
    def __call__(self, x):
        x = linen.Conv(self.features, (4, 4), strides=(4, 4))(x)
        return linen.Dense(self.features)(jax.nn.silu(x).mean((1, 2)))


class LinenAdapter(nnx.Module):
    """Wraps a Linen module (float ``[N, H, W, C]`` -> ``[N, D]``) into the encoder protocol."""

    def __init__(self, module: linen.Module, image_shape, output_size: int, *, rngs, dtype):
        self.image_shape = tuple(image_shape)
        self.inner = nnx.bridge.ToNNX(module, rngs=rngs)
        nnx.bridge.lazy_init(self.inner, jnp.zeros((1, *self.image_shape), jnp.float32))
        # The module is deterministic: drop the RNG streams ToNNX keeps. The agent trains only
        # nnx.Param leaves and holds every other variable constant inside its jitted functions,
        # where ToNNX could not advance the stream counter on each call.
        self.inner.to_nnx__rngs = None
        self.output_size = output_size
        self.dtype = dtype

    def __call__(self, images: jax.Array) -> jax.Array:
        x, lead = _flatten_images(images, self.image_shape)
        return self.inner(x).astype(self.dtype).reshape(*lead, -1)


def linen_encoder(image_shape, *, rngs: nnx.Rngs, dtype=jnp.float32, features: int = 16):
    """Registry factory for the Linen encoder."""
    return LinenAdapter(LinenConvEncoder(features), image_shape, features, rngs=rngs, dtype=dtype)


def register_examples() -> tuple[str, str]:
    """Register both encoders; returns their names."""
    encoders.register("example-nnx", PatchMeanEncoder)
    encoders.register("example-linen", linen_encoder)
    return "example-nnx", "example-linen"


OBS = {"pixels": Space((16, 16, 3), jnp.uint8, 0, 255)}
ACT = Space((2,), jnp.float32, -1.0, 1.0)


def tiny_config(encoder: str) -> DreamerConfig:
    """A DreamerV3 config small enough to compile in seconds on a CPU."""
    return DreamerConfig.preset(
        "micro",
        encoder=encoder,
        mlp_layers=1,
        bins=15,
        imag_horizon=3,
        optimizer=OptimizerConfig(lr=1e-3, warmup=0),
    )


def random_batch(agent: Dreamer, seed: int = 0, batch: int = 2, length: int = 4):
    """Random data in the shape of a training batch (``agent.batch_spec``: with the default
    one step of replay context, ``1 + length`` steps and the stored RSSM latents)."""
    rng = np.random.default_rng(seed)
    out = {}
    for k, spec in agent.batch_spec(batch, length).items():
        if spec.dtype == jnp.uint8:
            out[k] = rng.integers(0, 256, spec.shape, dtype=np.uint8)
        elif spec.dtype == jnp.bool_:
            out[k] = np.zeros(spec.shape, bool)
        else:
            out[k] = rng.uniform(-1, 1, spec.shape).astype(np.float32)
    return {k: jnp.asarray(v) for k, v in out.items()}


def make_agent(encoder: str) -> Dreamer:
    """A tiny DreamerV3 agent for 16 px images whose image encoder is ``encoder``."""
    return Dreamer(tiny_config(encoder), OBS, ACT)


def train_one_step(agent: Dreamer, key: jax.Array):
    """Fresh agent state, then one update on a random batch: ``(state0, state, metrics)``.

    A pure function of ``key``: jit it, or trace it with ``jax.eval_shape``.
    """
    k_init, k_train = jax.random.split(key)
    state0 = agent.init(k_init)
    state, metrics = agent.train(state0, random_batch(agent), k_train)
    return state0, state, metrics


def main() -> None:
    for name in register_examples():
        agent = make_agent(name)
        state0, state, metrics = jax.jit(functools.partial(train_one_step, agent))(
            jax.random.PRNGKey(0)
        )
        size = agent.nets(state.params).encoder.output_size
        moved = optax.tree.norm(jax.tree.map(jnp.subtract, state.params, state0.params))
        print(
            f"{name}: encoder output {size}; one update: loss {float(metrics['loss/total']):.3f}, "
            f"parameters moved by {float(moved):.2e}"
        )


if __name__ == "__main__":
    pvm_mbrl.setup()  # host-memory reuse and the compilation cache, before any JAX work
    main()
