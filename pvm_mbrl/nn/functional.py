"""Elementwise transforms used by DreamerV3 (arXiv 2301.04104, eq. "symlog").

``symlog(x) = sign(x) * log(1 + |x|)`` squashes large magnitudes while staying close to the
identity near zero; ``symexp(x) = sign(x) * (exp(|x|) - 1)`` is its exact inverse. Both use
``log1p`` / ``expm1`` so small inputs keep full precision.
"""

import jax
import jax.numpy as jnp


def symlog(x: jax.Array) -> jax.Array:
    """``sign(x) * log(1 + |x|)``."""
    return jnp.sign(x) * jnp.log1p(jnp.abs(x))


def symexp(x: jax.Array) -> jax.Array:
    """``sign(x) * (exp(|x|) - 1)``, the inverse of :func:`symlog`."""
    return jnp.sign(x) * jnp.expm1(jnp.abs(x))
