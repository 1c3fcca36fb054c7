"""Image-level shift families: they edit the rendered image (float32 ``[H, W, 3]`` in [0, 1]).

Each family is ``fn(img, s, u, t, key) -> img`` with the traced severity ``s`` in [0, 1], the
family's per-episode draws ``u`` in [-1, 1], the step count ``t`` (moving rain) and a per-step
``key`` (sensor noise). The effect grows with ``s``; ``families`` selects the input at ``s = 0``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from pvm_mbrl.shifts.colour import gaussian_blur, rotate_hue

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # numpy: no JAX backend at import


def color_jitter(img, s, u, t, key):
    """Brightness (+-0.3), contrast (x 1 +- 0.5), saturation (x 1 +- 1) and hue (+-0.5 turn),
    each scaled by s. u: 4 draws."""
    del t, key
    img = img + 0.3 * s * u[0]
    mean = jnp.mean(img @ _LUMA)
    img = mean + (img - mean) * (1.0 + 0.5 * s * u[1])
    grey = (img @ _LUMA)[..., None]
    img = grey + (img - grey) * (1.0 + s * u[2])
    return rotate_hue(img, 0.5 * s * u[3])


def sensor_noise(img, s, u, t, key):
    """Fresh Gaussian pixel noise every step, standard deviation 0.2 s."""
    del u, t
    return img + 0.2 * s * jax.random.normal(key, img.shape)


def blur(img, s, u, t, key):
    """Gaussian blur of standard deviation 2.5 s pixels (kernel radius 4 px at any size)."""
    del u, t, key
    return gaussian_blur(img, 2.5 * s)


RAIN_STREAKS = 48


def rain(img, s, u, t, key):
    """Bright slanted streaks that fall 3 px every step; opacity 0.7 s.

    u: 3 draws per streak (column, height, length)."""
    del key
    h, w = img.shape[0], img.shape[1]
    u = u[: 3 * RAIN_STREAKS].reshape(RAIN_STREAKS, 3)
    x0 = (u[:, 0] + 1.0) * 0.5 * w  # column of the streak at y = 0
    y0 = (u[:, 1] + 1.0) * 0.5 * h + 3.0 * t  # head of the streak, falling with t
    length = (0.15 + 0.1 * (u[:, 2] + 1.0)) * h
    slope = 0.25  # x moves 0.25 px per px of fall
    ys = jnp.arange(h, dtype=jnp.float32)[:, None, None]
    xs = jnp.arange(w, dtype=jnp.float32)[None, :, None]
    along = (ys - y0) % h  # distance down the streak from its head, wrapping
    dx = xs - (x0 + slope * along)
    on = (along < length) & (jnp.abs(dx) < 0.6)
    mask = jnp.any(on, axis=-1)[..., None].astype(img.dtype)
    return img + (0.85 - img) * mask * (0.7 * s)


OCCLUDERS = 3


def occlusion(img, s, u, t, key):
    """Three solid patches of random colour whose side is up to 30% of the image, scaled by s.
    u: 5 draws per patch (centre, colour)."""
    del t, key
    h, w = img.shape[0], img.shape[1]
    u = u[: 5 * OCCLUDERS].reshape(OCCLUDERS, 5)
    cy, cx = (u[:, 0] + 1.0) * 0.5 * h, (u[:, 1] + 1.0) * 0.5 * w
    half = 0.15 * s * jnp.array([h, w], jnp.float32)
    ys = jnp.arange(h, dtype=jnp.float32)[:, None, None] + 0.5
    xs = jnp.arange(w, dtype=jnp.float32)[None, :, None] + 0.5
    inside = (jnp.abs(ys - cy) < half[0]) & (jnp.abs(xs - cx) < half[1])  # [H, W, K]
    colour = (u[:, 2:5] + 1.0) * 0.5
    # The last patch drawn wins where patches overlap.
    for k in range(OCCLUDERS):
        img = jnp.where(inside[..., k : k + 1], colour[k], img)
    return img


def random_conv(img, s, u, t, key):
    """A random 3x3 convolution (fixed per episode, He-scaled) of the image about mid-grey,
    mixed in with weight s. u: 81 draws."""
    del t, key
    kernel = u[:81].reshape(3, 3, 3, 3) * (1.0 / 3.0)  # uniform, variance 1 / fan_in (27)
    out = jax.lax.conv_general_dilated(
        (img - 0.5)[None], kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )[0]
    return img + (out + 0.5 - img) * s
