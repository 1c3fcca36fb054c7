"""DreamerV3's CNN image encoder, the baseline of the study (registered as ``"cnn"``).

Per stage ``i``: a ``kernel x kernel`` convolution (stride 1, SAME) to ``depth * mults[i]``
channels, 2x2 max-pooling, RMSNorm, SiLU; pixels enter as ``uint8 / 255 - 0.5`` and the final
``[h, w, c]`` map is flattened. This is the official ``Encoder`` with ``strided=False``; each
convolution + pooling runs as :func:`pvm_mbrl.nn.conv.conv_pool` (the same function, faster).
Images of 128 px or more get one more stage (repeating the last multiplier) so the final map
stays small.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
from flax import nnx

from pvm_mbrl.nn.conv import conv_pool
from pvm_mbrl.nn.layers import Norm, kernel_init


def stage_mults(mults: tuple[int, ...], image_size: int) -> tuple[int, ...]:
    """Multipliers per stage for a square image of ``image_size`` pixels."""
    mults = tuple(mults)
    return (*mults, mults[-1]) if image_size >= 128 else mults


def check_images(images: jax.Array, image_shape: tuple[int, int, int]) -> None:
    """Raise a ValueError unless ``images`` is uint8 ``[..., H, W, C]`` with the given H, W, C."""
    shape = tuple(jnp.shape(images))
    if images.dtype != jnp.uint8:
        raise ValueError(
            f"images must be uint8 [..., {', '.join(map(str, image_shape))}], "
            f"got dtype {images.dtype}"
        )
    if len(shape) < 3 or shape[-3:] != tuple(image_shape):
        raise ValueError(
            f"images must have shape [..., {', '.join(map(str, image_shape))}], got {shape}"
        )


class CNNEncoder(nnx.Module):
    """uint8 images ``[..., H, W, C]`` -> features ``[..., output_size]``."""

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        *,
        depth: int = 16,
        mults: tuple[int, ...] = (2, 3, 4, 4),
        kernel: int = 5,
        rngs: nnx.Rngs,
        dtype=jnp.float32,
    ):
        h, w, c = image_shape
        mults = stage_mults(mults, min(h, w))
        factor = 2 ** len(mults)
        if h % factor or w % factor:
            raise ValueError(
                f"image size {h}x{w} must be divisible by {factor} for {len(mults)} CNN stages"
            )
        self.image_shape = tuple(image_shape)
        self.depths = tuple(depth * m for m in mults)
        chans = (c, *self.depths)
        self.convs = nnx.List(
            [
                nnx.Conv(
                    cin,
                    cout,
                    (kernel, kernel),
                    padding="SAME",
                    kernel_init=kernel_init(),
                    dtype=dtype,
                    param_dtype=jnp.float32,
                    rngs=rngs,
                )
                for cin, cout in itertools.pairwise(chans)
            ]
        )
        self.norms = nnx.List([Norm(d, rngs=rngs, dtype=dtype) for d in self.depths])
        self.output_size = (h // factor) * (w // factor) * self.depths[-1]
        self.dtype = dtype

    def __call__(self, images: jax.Array) -> jax.Array:
        check_images(images, self.image_shape)
        batch = images.shape[:-3]
        x = images.reshape(-1, *self.image_shape).astype(self.dtype) / 255.0 - 0.5
        for conv, norm in zip(self.convs, self.norms):
            w, b = conv.kernel[...].astype(self.dtype), conv.bias[...].astype(self.dtype)
            x = jax.nn.silu(norm(conv_pool(x, w, b)))
        return x.reshape(*batch, -1)
