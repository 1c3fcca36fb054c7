"""Procedural textures (no images): checker, stripes, value noise, wood grain, and the sky.

Patterns are functions of a point in the geom's local frame (metres, times a frequency per
metre) and return a weight in [0, 1] that blends the geom colour towards its second colour.
Value noise hashes integer lattice points (multiply / xor-shift) and interpolates trilinearly
with a smoothstep.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from pvm_mbrl.render import params as P

# Irrational-ish lattice shift so faces aligned with whole pattern cells do not flicker.
_SHIFT = 0.2371


def _frac(x):
    return x - jnp.floor(x)


def _hash(ix, iy, iz):
    """Integer lattice hash to [0, 1) (multiply-xorshift; cheap and vectorisable)."""
    h = ix * np.int32(73856093) ^ iy * np.int32(19349663) ^ iz * np.int32(83492791)
    h = (h ^ (h >> 13)) * np.int32(0x5BD1E995)
    h = h ^ (h >> 15)
    return (h & 0xFFFFFF).astype(jnp.float32) * (1.0 / 16777216.0)


def value_noise(x, y, z):
    """Smooth 3-D value noise in [0, 1] with unit lattice spacing."""
    fx, fy, fz = jnp.floor(x), jnp.floor(y), jnp.floor(z)
    ux, uy, uz = x - fx, y - fy, z - fz
    ix, iy, iz = (f.astype(jnp.int32) for f in (fx, fy, fz))
    ux = ux * ux * (3.0 - 2.0 * ux)
    uy = uy * uy * (3.0 - 2.0 * uy)
    uz = uz * uz * (3.0 - 2.0 * uz)

    def lerp(a, b, u):
        return a + (b - a) * u

    c = [[[_hash(ix + i, iy + j, iz + k) for k in (0, 1)] for j in (0, 1)] for i in (0, 1)]
    x00 = lerp(c[0][0][0], c[1][0][0], ux)
    x10 = lerp(c[0][1][0], c[1][1][0], ux)
    x01 = lerp(c[0][0][1], c[1][0][1], ux)
    x11 = lerp(c[0][1][1], c[1][1][1], ux)
    return lerp(lerp(x00, x10, uy), lerp(x01, x11, uy), uz)


def pattern(p, texture_id, scale):
    """Blend weight in [0, 1] of texture ``texture_id`` at local point ``p`` (per-pixel arrays)."""
    x, y, z = (c * scale + _SHIFT for c in p)
    checker = jnp.mod(jnp.floor(x) + jnp.floor(y) + jnp.floor(z), 2.0)
    stripes = (_frac(x) < 0.5).astype(x.dtype)
    noise = value_noise(x, y, z)
    rings = jnp.sqrt(p[0] * p[0] + p[1] * p[1]) * scale + 1.5 * noise
    wood = _frac(rings) ** 2
    w = jnp.where(texture_id == P.TEXTURE_CHECKER, checker, 0.0)
    w = jnp.where(texture_id == P.TEXTURE_STRIPES, stripes, w)
    w = jnp.where(texture_id == P.TEXTURE_NOISE, noise, w)
    return jnp.where(texture_id == P.TEXTURE_WOOD, wood, w)


def background(d, params):
    """Sky colour for world ray directions ``d`` (component arrays), ``[..., 3]``."""
    up = 0.5 + 0.5 * d[2]
    s = params.background_scale
    noise = value_noise(d[0] * s, d[1] * s, d[2] * s)
    w = jnp.where(params.background_texture_id == P.BACKGROUND_GRADIENT, up, 0.0)
    w = jnp.where(params.background_texture_id == P.BACKGROUND_NOISE, noise, w)
    c1, c2 = params.background_rgb, params.background_rgb2
    return c1 + (c2 - c1) * w[..., None]
