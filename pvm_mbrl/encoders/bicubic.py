"""Torch's bicubic resampling in JAX, exactly: the ViT resizes its position-embedding grid with
it as transformers' ``interpolate_pos_encoding`` does (``jax.image.resize`` differs)."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np


def _cubic(x: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution kernel with parameter ``a`` at distances ``x``."""
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x < 1, near, np.where(x < 2, far, 0.0))


@functools.lru_cache(maxsize=64)
def bicubic_weights(in_size: int, out_size: int, antialias: bool = False) -> np.ndarray:
    """``[out_size, in_size]`` matrix of torch's 1-D bicubic resampling (``align_corners=False``).

    Without antialias (``F.interpolate(mode="bicubic")``): source
    ``s = (i + 0.5) * in / out - 0.5``, the four taps ``floor(s) - 1 .. floor(s) + 2`` clamped to
    the border, ``a = -0.75``.
    With antialias (``antialias=True``, PIL's filter): taps around ``c = (i + 0.5) * in / out``
    within ``2 * max(in / out, 1)``, weights ``cubic((j + 0.5 - c) / max(in / out, 1))`` with
    ``a = -0.5``, cut at the border and normalised to sum 1.
    """
    scale = in_size / out_size
    w = np.zeros((out_size, in_size), np.float64)
    for i in range(out_size):
        if not antialias:
            src = scale * (i + 0.5) - 0.5
            base = math.floor(src)
            for k in range(-1, 3):
                w[i, min(max(base + k, 0), in_size - 1)] += _cubic(
                    np.float64(src - base - k), -0.75
                )
        else:
            support = 2.0 * max(scale, 1.0)
            centre = scale * (i + 0.5)
            lo = max(int(centre - support + 0.5), 0)
            hi = min(int(centre + support + 0.5), in_size)
            taps = np.arange(lo, hi)
            weights = _cubic((taps - centre + 0.5) / max(scale, 1.0), -0.5)
            w[i, lo:hi] = weights / weights.sum()
    return w


def bicubic_resize(x: jax.Array, size: tuple[int, int], *, antialias: bool = False) -> jax.Array:
    """Resize ``x [H, W, ...]`` to ``size`` like torch's ``F.interpolate(mode="bicubic",
    align_corners=False, antialias=antialias)``, in float32.

    Written here because ``jax.image.resize`` does not match torch: its cubic kernel uses
    ``a = -0.5`` and it always antialiases when downsampling, while torch's plain bicubic uses
    ``a = -0.75`` with border-clamped taps (see :func:`bicubic_weights`). Separable: one static
    weight matrix per axis, applied with two einsums.
    """
    h, w = x.shape[:2]
    wh = jnp.asarray(bicubic_weights(h, size[0], antialias), jnp.float32)
    ww = jnp.asarray(bicubic_weights(w, size[1], antialias), jnp.float32)
    hi = jax.lax.Precision.HIGHEST
    x = jnp.einsum("oh,hw...->ow...", wh, x.astype(jnp.float32), precision=hi)
    return jnp.einsum("pw,ow...->op...", ww, x, precision=hi)
