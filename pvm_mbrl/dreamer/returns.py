"""TD(lambda) returns and DreamerV3's percentile return normaliser.

Formulas from the DreamerV3 paper (Hafner et al., arXiv 2301.04104, "Critic learning" and
"Actor learning") and the official code's ``lambda_return`` and ``retnorm`` config
(``impl: perc, rate: 0.01, limit: 1.0, perclo: 5, perchi: 95, debias: False``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


def lambda_returns(
    rewards: jax.Array,
    values: jax.Array,
    continues: jax.Array,
    bootstrap: jax.Array,
    discount: float,
    lam: float | jax.Array,
) -> jax.Array:
    """TD(lambda) returns over the leading (time) axis, by a reverse ``jax.lax.scan``.

    Shapes: ``rewards``, ``values``, ``continues`` are ``[T, ...]``, ``bootstrap`` is ``[...]``;
    the result is ``[T, ...]``. Indexing convention (transition ``t`` goes from state ``s_t`` to
    ``s_{t+1}``):

    * ``values[t] = V(s_t)`` for ``t = 0 .. T-1`` and ``bootstrap = V(s_T)``;
    * ``rewards[t]`` is the reward received on the transition ``s_t -> s_{t+1}``;
    * ``continues[t]`` is ``1 - terminal(s_{t+1})`` (or its predicted probability).

    ``R_T = bootstrap`` and, for ``t = T-1 .. 0``,
    ``R_t = rewards[t] + discount * continues[t] * ((1 - lam) * V(s_{t+1}) + lam * R_{t+1})``,
    where ``V(s_{t+1})`` is ``values[t+1]`` or, at the last step, ``bootstrap``. ``values[0]``
    does not enter the returns (it is the baseline the caller subtracts). In DreamerV3's
    imagination with ``H`` steps, ``rewards[t]`` and ``continues[t]`` are the reward and continue
    heads' predictions at imagined state ``t + 1`` and ``bootstrap`` the critic at state ``H``.

    ``lam`` may be an array broadcastable to ``[T, ...]`` (a per-step ``lam[t]``): the replayed
    value loss uses ``lam * (1 - is_last)`` to cut returns at episode ends.
    """
    rewards = jnp.asarray(rewards, jnp.float32)
    values = jnp.asarray(values, jnp.float32)
    continues = jnp.asarray(continues, jnp.float32)
    bootstrap = jnp.asarray(bootstrap, jnp.float32)
    if not (rewards.shape == values.shape == continues.shape):
        raise ValueError(
            f"rewards, values and continues must share the shape [T, ...], got "
            f"{rewards.shape}, {values.shape}, {continues.shape}"
        )
    if rewards.ndim < 1 or bootstrap.shape != rewards.shape[1:]:
        raise ValueError(
            f"bootstrap must have the shape of one time step {rewards.shape[1:]}, "
            f"got {bootstrap.shape}"
        )
    next_values = jnp.concatenate([values[1:], bootstrap[None]], 0)
    live = discount * continues
    lam = jnp.broadcast_to(jnp.asarray(lam, jnp.float32), rewards.shape)
    interm = rewards + live * (1.0 - lam) * next_values

    def step(ret_next, inputs):
        interm_t, live_lam_t = inputs
        ret = interm_t + live_lam_t * ret_next
        return ret, ret

    _, returns = jax.lax.scan(step, bootstrap, (interm, live * lam), reverse=True)
    return returns


@struct.dataclass
class PercentileNormalizer:
    """EMA of the 5th and 95th percentiles of the returns; DreamerV3's return normaliser.

    ``update`` moves ``lo`` and ``hi`` towards the batch percentiles (``jnp.percentile``, linear
    interpolation as numpy's default) with ``new = (1 - rate) * old + rate * batch``; ``rate =
    0.01`` is the paper's decay 0.99. The state starts at ``lo = hi = 0`` with no debiasing, as the
    official ``retnorm`` (``debias: False``); the floor ``limit = 1`` covers the early, shrunken
    estimates. ``scale = max(limit, hi - lo)``. DreamerV3 divides advantages by the scale,
    ``normalize(ret - value)``; the offset ``lo`` cancels in that difference and is not
    subtracted.
    """

    lo: jax.Array
    hi: jax.Array
    rate: float = struct.field(pytree_node=False, default=0.01)
    perclo: float = struct.field(pytree_node=False, default=5.0)
    perchi: float = struct.field(pytree_node=False, default=95.0)
    limit: float = struct.field(pytree_node=False, default=1.0)

    @classmethod
    def create(
        cls,
        rate: float = 0.01,
        perclo: float = 5.0,
        perchi: float = 95.0,
        limit: float = 1.0,
    ) -> PercentileNormalizer:
        if not 0.0 < rate <= 1.0:
            raise ValueError(f"rate must be in (0, 1], got {rate}")
        if not 0.0 <= perclo < perchi <= 100.0:
            raise ValueError(f"need 0 <= perclo < perchi <= 100, got {perclo}, {perchi}")
        lo, hi = jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32)  # distinct buffers
        return cls(lo=lo, hi=hi, rate=rate, perclo=perclo, perchi=perchi, limit=limit)

    def update(self, x: jax.Array) -> PercentileNormalizer:
        """New state after seeing the batch ``x`` (percentiles over all its elements)."""
        x = jax.lax.stop_gradient(jnp.asarray(x, jnp.float32))
        lo = (1.0 - self.rate) * self.lo + self.rate * jnp.percentile(x, self.perclo)
        hi = (1.0 - self.rate) * self.hi + self.rate * jnp.percentile(x, self.perchi)
        return self.replace(lo=lo, hi=hi)

    @property
    def scale(self) -> jax.Array:
        """``max(limit, hi - lo)``, no gradient."""
        return jax.lax.stop_gradient(jnp.maximum(self.limit, self.hi - self.lo))

    def normalize(self, x: jax.Array) -> jax.Array:
        """``x / scale``."""
        return x / self.scale
