"""Phase (sub-pixel) tap maps, and the layout changes and 2x resamplings around them, for the
stages of :mod:`pvm_mbrl.nn.conv`.

:func:`phase_taps` maps a SAME size-``k`` kernel onto half resolution (the phase map of
:mod:`pvm_mbrl.nn.conv`'s docstring); :func:`upsample_kernel` and :func:`s2d_kernel` build the
sub-pixel and space-to-depth kernels from it; :func:`space_to_depth` and :func:`depth_to_space`
move between the layouts; :func:`maxpool2` (2x2 max-pooling with JAX's gradient, computed
faster) and :func:`upsample2` (nearest 2x) are the direct forms' resamplings.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "depth_to_space",
    "maxpool2",
    "phase_taps",
    "s2d_kernel",
    "space_to_depth",
    "upsample2",
    "upsample_kernel",
]


@functools.cache
def phase_taps(k: int) -> np.ndarray:
    """0/1 map ``M[phase, offset + r, tap, q]`` of a SAME size-``k`` kernel onto half resolution.

    Full-resolution row ``Y = 2 i + phase`` of a SAME conv reads row ``Y + d - p`` for tap
    ``d = 0 .. k-1`` (``p = k // 2``), which is row ``2 (i + offset) + q`` with
    ``offset = floor((phase + d - p) / 2)`` and ``q = (phase + d - p) mod 2``. Offsets span
    ``[-r, r]`` with ``r = ceil(p / 2)`` (``floor(-p / 2) = -r`` at ``phase = d = 0``,
    ``floor((1 + p) / 2) = r`` at ``phase = 1, d = k - 1``), so every phase is a SAME conv of
    size ``2 r + 1`` at half resolution: 3 for ``k`` = 3 or 5, 5 for ``k`` = 7 or 9.
    """
    if k < 1 or k % 2 == 0:
        raise ValueError(f"kernel size must be odd and positive, got {k}")
    p = k // 2
    r = (p + 1) // 2
    m = np.zeros((2, 2 * r + 1, k, 2), np.float32)
    for ph in range(2):
        for d in range(k):
            o, q = divmod(ph + d - p, 2)
            m[ph, o + r, d, q] = 1.0
    return m


def upsample_kernel(w: jax.Array) -> jax.Array:
    """``[k, k, Ci, Co]`` -> ``[K, K, Ci, 4 Co]`` (out channels ``(py, px, co)``), ``K = 2r+1``.

    ``W[oy, ox, ci, (py, px, co)] = sum of w[dy, dx, ci, co]`` over the taps that a nearest-2x
    upsampled input maps onto low-resolution offset ``(oy, ox)`` for output phase ``(py, px)``.
    """
    k, _, ci, co = w.shape
    m = jnp.asarray(phase_taps(k).sum(-1), w.dtype)  # [phase, offset, tap]
    kk = m.shape[1]
    return jnp.einsum("aod,bpe,deic->opiabc", m, m, w).reshape(kk, kk, ci, 4 * co)


def s2d_kernel(w: jax.Array) -> jax.Array:
    """``[k, k, Ci, Co]`` -> ``[K, K, 4 Ci, 4 Co]``: in ``(qy, qx, ci)``, out ``(py, px, co)``.

    ``W[oy, ox, (qy, qx, ci), (py, px, co)] = w[dy, dx, ci, co]`` for the one tap ``(dy, dx)``
    that maps output phase ``(py, px)`` onto input phase ``(qy, qx)`` at offset ``(oy, ox)``
    (zero if none), so a conv on the space-to-depth input gives all four output phases.
    """
    k, _, ci, co = w.shape
    m = jnp.asarray(phase_taps(k), w.dtype)  # [phase, offset, tap, q]
    kk = m.shape[1]
    w3 = jnp.einsum("aodq,bpes,deic->opqsiabc", m, m, w)
    return w3.reshape(kk, kk, 4 * ci, 4 * co)


def space_to_depth(x: jax.Array) -> jax.Array:
    """``[..., 2H, 2W, C]`` -> ``[..., H, W, 4 C]`` with channels ``(qy, qx, c)``."""
    *batch, h, wd, c = x.shape
    x = x.reshape(*batch, h // 2, 2, wd // 2, 2, c)
    x = jnp.moveaxis(x, -4, -3)  # [..., H, W, qy, qx, C]
    return x.reshape(*batch, h // 2, wd // 2, 4 * c)


def depth_to_space(x: jax.Array) -> jax.Array:
    """``[..., H, W, 4 C]`` with channels ``(py, px, c)`` -> ``[..., 2H, 2W, C]``."""
    *batch, h, wd, c4 = x.shape
    c = c4 // 4
    x = x.reshape(*batch, h, wd, 2, 2, c)
    x = jnp.moveaxis(x, -3, -4)  # [..., H, py, W, px, C]
    return x.reshape(*batch, 2 * h, 2 * wd, c)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _tied_max(x: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    """``x.max(axes)`` whose gradient is JAX's, bit for bit, computed in two fused passes.

    JAX's rule splits the cotangent evenly among tied maxima: ``mask * (ct / count)``; its
    ``count`` is a strided reduction that XLA:CPU runs slowly. Here ``count`` sums the few
    window slices elementwise instead (3-4x faster backward for 2x2 pooling windows).
    """
    return x.max(axes)


def _tied_max_fwd(x, axes):
    y = x.max(axes)
    return y, (x, y)


def _tied_max_bwd(axes, res, ct):
    x, y = res
    count = jnp.zeros_like(ct)
    for idx in itertools.product(*(range(x.shape[a]) for a in axes)):
        at = [slice(None)] * x.ndim
        for a, i in zip(axes, idx):
            at[a] = i
        count = count + (x[tuple(at)] == y).astype(ct.dtype)
    mask = (x == jnp.expand_dims(y, axes)).astype(ct.dtype)
    return (mask * jnp.expand_dims(ct / count, axes),)


_tied_max.defvjp(_tied_max_fwd, _tied_max_bwd)


def maxpool2(x: jax.Array) -> jax.Array:
    """2x2 max-pooling with stride 2 of ``[..., H, W, C]`` (H and W even).

    Same values and gradient as ``x.reshape(..., H/2, 2, W/2, 2, C).max((-4, -2))``.
    """
    *batch, h, wd, c = x.shape
    x = x.reshape(*batch, h // 2, 2, wd // 2, 2, c)
    return _tied_max(x, (x.ndim - 4, x.ndim - 2))


def upsample2(x: jax.Array) -> jax.Array:
    """Nearest-neighbour 2x upsampling of ``[..., H, W, C]``."""
    return jnp.repeat(jnp.repeat(x, 2, -3), 2, -2)
