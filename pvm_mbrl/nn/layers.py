"""DreamerV3's layers as Flax NNX modules: dense, block-diagonal dense, normed MLP.

Initialisation follows the official code's ``trunc_normal_in``: a normal truncated at two
standard deviations with variance ``1 / fan_in``, then multiplied by ``outscale`` (so the
weights' standard deviation is ``outscale / sqrt(fan_in)``); biases zero; ``outscale = 0`` gives
an all-zero layer (the reward and critic heads start by predicting exactly 0). A block-diagonal
layer takes its fan-in over the whole input, as the official ``BlockLinear`` does. Every hidden
layer is ``Linear -> RMSNorm -> SiLU`` with the norm's ``eps = 1e-4``. Parameters are float32;
``dtype`` sets the compute dtype (e.g. ``jnp.bfloat16`` for mixed precision), and norms compute
in float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

NORM_EPS = 1e-4


def trunc_normal_in(key, shape, fan_in: int, outscale: float = 1.0) -> jax.Array:
    """``outscale`` times a normal truncated at +-2 std with variance ``1 / fan_in`` (float32)."""
    # 0.87962566 is the std of a unit normal truncated at +-2; dividing restores variance 1.
    std = outscale / np.sqrt(fan_in) / 0.87962566103423978
    return std * jax.random.truncated_normal(key, -2.0, 2.0, shape, jnp.float32)


def kernel_init(outscale: float = 1.0):
    """Flax initialiser of :func:`trunc_normal_in` with the fan-in of a dense or conv kernel
    (all axes but the last); zeros when ``outscale == 0``."""
    if outscale == 0.0:
        return nnx.initializers.zeros_init()

    def init(key, shape, dtype=jnp.float32):
        return trunc_normal_in(key, shape, int(np.prod(shape[:-1])), outscale).astype(dtype)

    return init


def linear(
    din: int, dout: int, *, rngs: nnx.Rngs, outscale: float = 1.0, dtype=jnp.float32
) -> nnx.Linear:
    """Dense layer with DreamerV3's initialisation."""
    return nnx.Linear(
        din,
        dout,
        kernel_init=kernel_init(outscale),
        bias_init=nnx.initializers.zeros_init(),
        dtype=dtype,
        param_dtype=jnp.float32,
        rngs=rngs,
    )


class Norm(nnx.Module):
    """RMSNorm over the last axis with a learned scale, computed in float32."""

    def __init__(self, features: int, *, rngs: nnx.Rngs, dtype=jnp.float32):
        self.scale = nnx.Param(jnp.ones((features,), jnp.float32))
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, -1, keepdims=True) + NORM_EPS)
        return (x32 * self.scale[...]).astype(self.dtype)


class NormAct(nnx.Module):
    """``silu(norm(linear(x)))``, one DreamerV3 hidden layer."""

    def __init__(self, din: int, dout: int, *, rngs: nnx.Rngs, dtype=jnp.float32):
        self.linear = linear(din, dout, rngs=rngs, dtype=dtype)
        self.norm = Norm(dout, rngs=rngs, dtype=dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.silu(self.norm(self.linear(x)))


class BlockLinear(nnx.Module):
    """Block-diagonal dense layer: the input's last axis is split into ``blocks`` equal groups and
    group ``g`` maps only to output group ``g`` (weights ``[blocks, din / blocks, dout / blocks]``).

    DreamerV3's GRU uses it so that a large recurrent state costs ``1 / blocks`` of a dense one.
    """

    def __init__(
        self,
        din: int,
        dout: int,
        blocks: int,
        *,
        rngs: nnx.Rngs,
        outscale: float = 1.0,
        dtype=jnp.float32,
    ):
        if din % blocks or dout % blocks:
            raise ValueError(f"din {din} and dout {dout} must be divisible by blocks {blocks}")
        self.blocks = blocks
        # The fan-in is the whole input (din), as in the official BlockLinear, not din / blocks.
        shape = (blocks, din // blocks, dout // blocks)
        self.kernel = nnx.Param(trunc_normal_in(rngs.params(), shape, din, outscale))
        self.bias = nnx.Param(jnp.zeros((dout,), jnp.float32))
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        g = self.blocks
        x = x.astype(self.dtype).reshape(*x.shape[:-1], g, x.shape[-1] // g)
        kernel = self.kernel[...].astype(self.dtype)
        y = jnp.einsum("...gi,gio->...go", x, kernel)
        y = y.reshape(*y.shape[:-2], -1)
        return y + self.bias[...].astype(self.dtype)


class MLP(nnx.Module):
    """``layers`` hidden layers of ``units`` (each ``Linear -> RMSNorm -> SiLU``)."""

    def __init__(self, din: int, layers: int, units: int, *, rngs: nnx.Rngs, dtype=jnp.float32):
        self.layers = nnx.List(
            [
                NormAct(din if i == 0 else units, units, rngs=rngs, dtype=dtype)
                for i in range(layers)
            ]
        )
        self.out_features = units if layers else din

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.layers:
            x = layer(x)
        return x
