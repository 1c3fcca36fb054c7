"""DreamerV3's decoder: images from the model state by a transposed CNN, vectors by an MLP.

Image path (the official ``Decoder`` with ``bspace=8``, ``strided=False``): ``deter`` passes a
block-linear layer to the smallest feature map (``bspace`` groups, each owning a slice of the
channels), ``stoch`` passes ``Linear -> RMSNorm -> SiLU -> Linear`` to the same map, their sum is
normalised; then per stage nearest-neighbour 2x upsampling and a ``kernel`` convolution, and a
final upsampling and convolution to the image channels with a sigmoid. Each upsampling +
convolution runs as :func:`pvm_mbrl.nn.conv.upsample_conv` (the same function, fewer FLOPs).
Loss: squared error against ``pixels / 255`` summed over ``H, W, C``. Vector keys: an MLP and a
linear layer per key, squared error against ``symlog(target)`` summed over the vector.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
from flax import nnx

from pvm_mbrl.encoders.cnn import stage_mults
from pvm_mbrl.nn import symlog
from pvm_mbrl.nn.conv import upsample_conv
from pvm_mbrl.nn.layers import MLP, BlockLinear, Norm, NormAct, kernel_init, linear


class ImageDecoder(nnx.Module):
    def __init__(self, config, image_shape, *, rngs: nnx.Rngs, dtype):
        c = config
        h, w, ch = image_shape
        mults = stage_mults(c.mults, min(h, w))
        self.depths = tuple(c.depth * m for m in mults)
        factor = 2 ** len(mults)
        self.minres = (h // factor, w // factor)
        self.image_shape = tuple(image_shape)
        self.dtype = dtype
        top = self.depths[-1]
        if top % c.bspace:
            raise ValueError(f"decoder channels {top} must be divisible by bspace {c.bspace}")
        units = math.prod(self.minres) * top
        self.bspace = c.bspace
        self.space0 = BlockLinear(c.deter, units, c.bspace, rngs=rngs, dtype=dtype)
        self.space1 = NormAct(c.stoch * c.classes, 2 * c.units, rngs=rngs, dtype=dtype)
        self.space2 = linear(2 * c.units, units, rngs=rngs, dtype=dtype)
        self.space_norm = Norm(top, rngs=rngs, dtype=dtype)

        def conv(cin, cout):
            return nnx.Conv(
                cin,
                cout,
                (c.kernel, c.kernel),
                padding="SAME",
                kernel_init=kernel_init(),
                dtype=dtype,
                param_dtype=jnp.float32,
                rngs=rngs,
            )

        rev = self.depths[::-1]
        self.convs = nnx.List([conv(a, b) for a, b in itertools.pairwise(rev)])
        self.norms = nnx.List([Norm(d, rngs=rngs, dtype=dtype) for d in rev[1:]])
        self.out = conv(rev[-1], ch)

    def __call__(self, deter: jax.Array, stoch: jax.Array) -> jax.Array:
        """Predicted images in [0, 1], float32 ``[..., H, W, C]``."""
        batch = deter.shape[:-1]
        (mh, mw), g = self.minres, self.bspace
        top = self.depths[-1]
        x0 = self.space0(deter.reshape(-1, deter.shape[-1]))
        # (g h w c) -> h w (g c): each block owns c = top / g channels of the map.
        x0 = x0.reshape(-1, g, mh, mw, top // g).transpose(0, 2, 3, 1, 4).reshape(-1, mh, mw, top)
        s = stoch.reshape(x0.shape[0], -1)
        x1 = self.space2(self.space1(s)).reshape(-1, mh, mw, top)
        x = jax.nn.silu(self.space_norm(x0 + x1))
        for conv, norm in zip(self.convs, self.norms):
            x = jax.nn.silu(norm(self._upconv(conv, x)))
        x = jax.nn.sigmoid(self._upconv(self.out, x).astype(jnp.float32))
        return x.reshape(*batch, *self.image_shape)

    def _upconv(self, conv: nnx.Conv, x: jax.Array) -> jax.Array:
        """``conv(upsample_nearest_2x(x))`` in its sub-pixel form (same function, fewer FLOPs)."""
        w, b = conv.kernel[...].astype(self.dtype), conv.bias[...].astype(self.dtype)
        return upsample_conv(x.astype(self.dtype), w, b)

    @staticmethod
    def loss(pred: jax.Array, images: jax.Array) -> jax.Array:
        target = images.astype(jnp.float32) / 255.0
        return jnp.sum((pred - target) ** 2, (-3, -2, -1))


class VectorDecoder(nnx.Module):
    """MLP to ``symlog`` predictions of each vector observation."""

    def __init__(self, din, sizes: dict[str, int], layers, units, *, rngs: nnx.Rngs, dtype):
        self.mlp = MLP(din, layers, units, rngs=rngs, dtype=dtype)
        self.keys = tuple(sorted(sizes))
        self.outs = nnx.Dict(
            {k: linear(self.mlp.out_features, sizes[k], rngs=rngs, dtype=dtype) for k in self.keys}
        )

    def __call__(self, feat: jax.Array) -> dict[str, jax.Array]:
        x = self.mlp(feat)
        return {k: self.outs[k](x).astype(jnp.float32) for k in self.keys}

    @staticmethod
    def loss(pred: jax.Array, target: jax.Array) -> jax.Array:
        return jnp.sum((pred - symlog(target.astype(jnp.float32))) ** 2, -1)
