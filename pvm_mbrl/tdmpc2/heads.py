"""What TD-MPC2's heads mean: two-hot regression in symlog space, the squashed Gaussian policy
prior, and the two-member aggregates of the Q ensemble.

* Reward and Q heads predict logits over ``num_bins`` bins evenly spaced in symlog space over
  ``[vmin, vmax]``. The prediction is ``symexp`` of the expected bin (:func:`decode`); the loss is
  the cross-entropy against the two-hot encoding of ``symlog(target)`` clamped to the range
  (:func:`soft_ce`). The two-hot itself is the library's :func:`pvm_mbrl.nn.two_hot` (shared with
  DreamerV3, whose bins are spaced in raw space instead).
* The policy prior (:func:`sample_policy`): ``mean, s = split(pi(z))``,
  ``log_std = log_std_min + (log_std_max - log_std_min) (tanh(s) + 1) / 2``, a reparameterised
  Gaussian sample squashed by ``tanh``. Its entropy term is the official code's
  ``scaled_entropy``: minus the Gaussian log-density of the pre-squash sample times the number of
  action dimensions (the squash correction cancels out of that expression).
* :func:`q_pair`: the minimum (TD targets) or mean (policy loss, planning) of two members drawn
  at random without replacement from the ensemble.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from pvm_mbrl.nn import symexp, symlog, two_hot
from pvm_mbrl.tdmpc2.config import TDMPC2Config

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def bins(c: TDMPC2Config) -> jax.Array:
    """The bin centres in symlog space, ``linspace(vmin, vmax, num_bins)``."""
    return jnp.linspace(c.vmin, c.vmax, c.num_bins, dtype=jnp.float32)


def decode(logits: jax.Array, c: TDMPC2Config) -> jax.Array:
    """Scalar predictions ``[...]`` of two-hot logits ``[..., num_bins]``."""
    return symexp(jnp.sum(jax.nn.softmax(logits, -1) * bins(c), -1))


def soft_ce(logits: jax.Array, target: jax.Array, c: TDMPC2Config) -> jax.Array:
    """Cross-entropy ``[...]`` of logits ``[..., num_bins]`` against scalar targets ``[...]``."""
    weights = two_hot(jax.lax.stop_gradient(symlog(target)), bins(c))
    return -jnp.sum(weights * jax.nn.log_softmax(logits, -1), -1)


def sample_policy(raw: jax.Array, key: jax.Array, c: TDMPC2Config):
    """Action sample ``[..., A]``, its mean action ``tanh(mean)`` and the scaled entropy ``[...]``
    of the prior's output ``raw`` ``[..., 2A]`` (see the module docstring)."""
    mean, s = jnp.split(raw, 2, -1)
    log_std = c.log_std_min + 0.5 * (c.log_std_max - c.log_std_min) * (jnp.tanh(s) + 1.0)
    eps = jax.random.normal(key, mean.shape)
    log_prob = jnp.sum(-0.5 * eps**2 - log_std - _LOG_SQRT_2PI, -1)
    action = jnp.tanh(mean + eps * jnp.exp(log_std))
    return action, jnp.tanh(mean), -log_prob * mean.shape[-1]


def q_pair(values: jax.Array, key: jax.Array, reduce: str) -> jax.Array:
    """``min`` or ``mean`` over two ensemble members of ``values`` ``[num_q, ...]`` drawn at
    random without replacement (one draw for the whole batch, as the official code does)."""
    pick = jax.random.permutation(key, values.shape[0])[:2]
    two = values[pick]
    if reduce == "min":
        return jnp.min(two, 0)
    if reduce == "mean":
        return jnp.mean(two, 0)
    raise ValueError(f"reduce must be 'min' or 'mean', got {reduce!r}")
