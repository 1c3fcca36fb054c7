"""The Control Suite's reward shaping: ``tolerance`` and its sigmoids, in ``jax.numpy``.

Written from the suite's definition (Tassa et al. 2018, "DeepMind Control Suite", section 2 and
``dm_control.utils.rewards``): ``tolerance(x, bounds, margin, sigmoid, value_at_margin)`` is 1
inside ``bounds`` and falls off outside them as ``sigmoid(d)`` of the distance ``d`` to the
nearer bound in units of ``margin``, where each sigmoid is scaled so that it equals
``value_at_margin`` at ``d = 1``. With ``margin = 0`` it is the indicator of ``bounds``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

SIGMOIDS = (
    "gaussian",
    "hyperbolic",
    "long_tail",
    "reciprocal",
    "cosine",
    "linear",
    "quadratic",
    "tanh_squared",
)


def sigmoid(x, value_at_1: float, kind: str):
    """``kind`` sigmoid of ``x >= 0`` with value 1 at 0 and ``value_at_1`` at 1."""
    v = float(value_at_1)
    if kind in ("cosine", "linear", "quadratic"):
        if not 0.0 <= v < 1.0:
            raise ValueError(f"value_at_1 must be in [0, 1) for {kind!r}, got {v}")
    elif not 0.0 < v < 1.0:
        raise ValueError(f"value_at_1 must be in (0, 1) for {kind!r}, got {v}")
    if kind == "gaussian":
        return jnp.exp(-0.5 * (x * np.sqrt(-2.0 * np.log(v))) ** 2)
    if kind == "hyperbolic":
        return 1.0 / jnp.cosh(x * np.arccosh(1.0 / v))
    if kind == "long_tail":
        return 1.0 / ((x * np.sqrt(1.0 / v - 1.0)) ** 2 + 1.0)
    if kind == "reciprocal":
        return 1.0 / (jnp.abs(x) * (1.0 / v - 1.0) + 1.0)
    if kind == "tanh_squared":
        return 1.0 - jnp.tanh(x * np.arctanh(np.sqrt(1.0 - v))) ** 2
    if kind == "cosine":
        s = x * (np.arccos(2.0 * v - 1.0) / np.pi)
        return jnp.where(jnp.abs(s) < 1.0, (1.0 + jnp.cos(np.pi * s)) / 2.0, 0.0)
    if kind == "linear":
        s = x * (1.0 - v)
        return jnp.where(jnp.abs(s) < 1.0, 1.0 - s, 0.0)
    if kind == "quadratic":
        s = x * np.sqrt(1.0 - v)
        return jnp.where(jnp.abs(s) < 1.0, 1.0 - s * s, 0.0)
    raise ValueError(f"unknown sigmoid {kind!r}; expected one of {SIGMOIDS}")


def tolerance(
    x,
    bounds=(0.0, 0.0),
    margin: float = 0.0,
    sigmoid_kind: str = "gaussian",
    value_at_margin: float = 0.1,
):
    """1 where ``bounds[0] <= x <= bounds[1]``, else ``sigmoid((distance to bounds) / margin)``
    (0 outside when ``margin == 0``). Elementwise over ``x``."""
    lower, upper = bounds
    if lower > upper:
        raise ValueError(f"bounds must be (lower, upper) with lower <= upper, got {bounds}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    x = jnp.asarray(x, jnp.float32)
    inside = (x >= lower) & (x <= upper)
    if margin == 0:
        return jnp.where(inside, 1.0, 0.0)
    d = jnp.where(x < lower, lower - x, x - upper) / margin
    return jnp.where(inside, 1.0, sigmoid(d, value_at_margin, sigmoid_kind))
