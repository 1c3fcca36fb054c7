"""Colour-space helpers shared by scene and image shifts (RGB <-> HSV, hue rotation, blur)."""

from __future__ import annotations

import jax.numpy as jnp


def rgb_to_hsv(rgb: jnp.ndarray) -> jnp.ndarray:
    """RGB in [0, 1] (last axis 3) to HSV with hue in [0, 1) turns."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = jnp.max(rgb, axis=-1)
    c = v - jnp.min(rgb, axis=-1)
    safe_c = jnp.where(c > 0, c, 1.0)
    h = jnp.where(
        v == r, (g - b) / safe_c, jnp.where(v == g, 2.0 + (b - r) / safe_c, 4.0 + (r - g) / safe_c)
    )
    h = jnp.where(c > 0, (h / 6.0) % 1.0, 0.0)
    s = jnp.where(v > 0, c / jnp.where(v > 0, v, 1.0), 0.0)
    return jnp.stack([h, s, v], axis=-1)


def hsv_to_rgb(hsv: jnp.ndarray) -> jnp.ndarray:
    """Inverse of :func:`rgb_to_hsv`."""
    h, s, v = hsv[..., 0] % 1.0, hsv[..., 1], hsv[..., 2]
    k = (jnp.array([5.0, 3.0, 1.0]) + h[..., None] * 6.0) % 6.0
    f = jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0)
    return v[..., None] - v[..., None] * s[..., None] * f


def shift_hsv(rgb: jnp.ndarray, dh, ds, dv) -> jnp.ndarray:
    """Adds ``dh`` turns of hue and ``ds``/``dv`` to saturation/value; result kept in [0, 1]."""
    hsv = rgb_to_hsv(rgb)
    hsv = jnp.stack(
        [hsv[..., 0] + dh, jnp.clip(hsv[..., 1] + ds, 0.0, 1.0), jnp.clip(hsv[..., 2] + dv, 0, 1)],
        axis=-1,
    )
    return hsv_to_rgb(hsv)


def rotate_hue(img: jnp.ndarray, turns) -> jnp.ndarray:
    """Rotates the hue of ``[..., 3]`` RGB by ``turns`` about the grey axis (YIQ rotation)."""
    to_yiq = jnp.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    from_yiq = jnp.linalg.inv(to_yiq)
    a = 2.0 * jnp.pi * turns
    c, s = jnp.cos(a), jnp.sin(a)
    rot = jnp.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    return img @ (from_yiq @ rot @ to_yiq).T


def gaussian_blur(img: jnp.ndarray, sigma, radius: int = 4) -> jnp.ndarray:
    """Separable Gaussian blur of ``[H, W, C]`` with a traced ``sigma`` (pixels), edge padding."""
    x = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    w = jnp.exp(-0.5 * (x / jnp.maximum(sigma, 1e-3)) ** 2)
    w = w / w.sum()
    h, wd = img.shape[0], img.shape[1]
    p = jnp.pad(img, ((radius, radius), (0, 0), (0, 0)), mode="edge")
    img = sum(w[i] * p[i : i + h] for i in range(2 * radius + 1))
    p = jnp.pad(img, ((0, 0), (radius, radius), (0, 0)), mode="edge")
    return sum(w[i] * p[:, i : i + wd] for i in range(2 * radius + 1))
