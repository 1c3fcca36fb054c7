"""DreamerV3's output distributions as small pytrees of arrays.

Formulas follow the DreamerV3 paper (Hafner et al., arXiv 2301.04104) and the official code's
current definitions (``embodied/jax/outs.py`` and ``heads.py``):

* :class:`OneHotDist`: a categorical over the last axis with ``unimix`` uniform mixing
  (``probs = (1 - unimix) * softmax(logits) + unimix / K``) and straight-through one-hot samples.
  Used for the RSSM's stochastic state (``stoch`` groups x ``classes``) and discrete actions.
* :class:`TwoHotSymlog`: reward and critic head; 255 bins spaced evenly in symlog space and stored
  in raw space (``symexp(linspace(-20, 20, 255))``), two-hot cross-entropy loss.
* :class:`BoundedNormal`: continuous actor; ``tanh`` mean and a standard deviation bounded in
  ``[minstd, maxstd]`` through a sigmoid.
* :func:`kl_free_bits`: the RSSM's dynamics and representation KL terms with free bits.

Written here rather than taken from distrax / tensorflow-probability because the pieces DreamerV3
needs are not in those libraries as such (unimix, straight-through one-hot, symmetric two-hot
mean, the bounded-std head), each is a few lines, and plain pytrees pass through ``jit``,
``vmap`` and ``lax.scan`` with no extra dependency.

Event axes: ``OneHotDist`` and ``TwoHotSymlog`` reduce over the last axis (classes / bins);
``BoundedNormal`` treats the last axis as the action dimensions and sums log-probabilities and
entropies over it.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from pvm_mbrl.nn.functional import symexp

_sg = jax.lax.stop_gradient


def _check_unimix(unimix: float) -> None:
    if not 0.0 <= unimix < 1.0:
        raise ValueError(f"unimix must be in [0, 1), got {unimix}")


@struct.dataclass
class OneHotDist:
    """Categorical over the last axis; samples are one-hot vectors.

    Build with :meth:`from_logits`. ``probs`` holds the mixed probabilities exactly
    (``(1 - unimix) * softmax(logits) + unimix / K``) and ``logits`` their log, as in DreamerV3
    where the mixed distribution's logits are recomputed as log-probabilities.
    """

    logits: jax.Array
    probs: jax.Array

    @classmethod
    def from_logits(cls, logits: jax.Array, unimix: float = 0.01) -> OneHotDist:
        """Mix ``unimix`` of the uniform distribution into ``softmax(logits)``."""
        _check_unimix(unimix)
        logits = jnp.asarray(logits, jnp.float32)
        if unimix:
            probs = jax.nn.softmax(logits, -1)
            probs = (1.0 - unimix) * probs + unimix / logits.shape[-1]
            return cls(logits=jnp.log(probs), probs=probs)
        return cls(logits=jax.nn.log_softmax(logits, -1), probs=jax.nn.softmax(logits, -1))

    @property
    def num_classes(self) -> int:
        return self.logits.shape[-1]

    def sample(self, key: jax.Array) -> jax.Array:
        """One-hot sample with a straight-through gradient: ``onehot + probs - sg(probs)``.

        The value is exactly one-hot; the gradient with respect to the logits is the gradient
        through ``probs``.
        """
        index = jax.random.categorical(key, self.logits, axis=-1)
        onehot = jax.nn.one_hot(index, self.num_classes, dtype=self.probs.dtype)
        return _sg(onehot) + (self.probs - _sg(self.probs))

    def mode(self) -> jax.Array:
        """One-hot of the most likely class (no gradient)."""
        index = jnp.argmax(self.logits, -1)
        return jax.nn.one_hot(index, self.num_classes, dtype=self.probs.dtype)

    def log_prob(self, onehot: jax.Array) -> jax.Array:
        """``sum(onehot * log_softmax(logits))`` over the last axis."""
        return jnp.sum(onehot * jax.nn.log_softmax(self.logits, -1), -1)

    def entropy(self) -> jax.Array:
        """``-sum(p log p)`` over the last axis."""
        logp = jax.nn.log_softmax(self.logits, -1)
        return -jnp.sum(jnp.exp(logp) * logp, -1)

    def kl(self, other: OneHotDist) -> jax.Array:
        """``KL(self || other) = sum(p (log p - log q))`` over the last axis."""
        logp = jax.nn.log_softmax(self.logits, -1)
        logq = jax.nn.log_softmax(other.logits, -1)
        return jnp.sum(jnp.exp(logp) * (logp - logq), -1)


def kl_free_bits(
    post_logits: jax.Array,
    prior_logits: jax.Array,
    free: float = 1.0,
    unimix: float = 0.01,
) -> tuple[jax.Array, jax.Array]:
    """DreamerV3's dynamics and representation KL losses with free bits.

    ``post_logits`` and ``prior_logits`` have shape ``[..., stoch, classes]``; both are turned
    into :class:`OneHotDist` with ``unimix`` (as the RSSM does), the per-group KLs are summed over
    ``stoch`` and then clipped from below:

    * ``dyn = max(free, KL(sg(post) || prior))``: trains the prior only,
    * ``rep = max(free, KL(post || sg(prior)))``: trains the posterior only.

    Both have shape ``[...]`` and equal values; they differ in where the gradient flows. Below
    the free bits the loss is the constant ``free`` and has no gradient. The loss scales (0.5 for
    ``dyn``, 0.1 for ``rep`` in DreamerV3) are applied by the caller.
    """
    if post_logits.shape != prior_logits.shape:
        raise ValueError(
            f"post and prior logits must have the same shape [..., stoch, classes], "
            f"got {post_logits.shape} and {prior_logits.shape}"
        )
    if post_logits.ndim < 2:
        raise ValueError(f"logits need shape [..., stoch, classes], got {post_logits.shape}")

    def dist(logits: jax.Array) -> OneHotDist:
        return OneHotDist.from_logits(logits, unimix)

    dyn = dist(_sg(post_logits)).kl(dist(prior_logits)).sum(-1)
    rep = dist(post_logits).kl(dist(_sg(prior_logits))).sum(-1)
    return jnp.maximum(dyn, free), jnp.maximum(rep, free)


def symexp_bins(num_bins: int = 255, low: float = -20.0, high: float = 20.0) -> jax.Array:
    """Bins evenly spaced in symlog space, returned in raw space: ``symexp(linspace(low, high))``.

    Built as DreamerV3 does, from one half mirrored (``bins[K-1-i] == -bins[i]`` exactly and the
    centre bin is exactly 0), so a uniform distribution over the bins predicts exactly 0.
    ``num_bins`` must be odd (DreamerV3 uses 255); the official even-count variant places two
    bins at 0, which makes the two-hot interpolation ill-defined.
    """
    if num_bins < 3 or num_bins % 2 == 0:
        raise ValueError(f"num_bins must be odd and >= 3, got {num_bins}")
    if not (low < 0.0 and high == -low):
        raise ValueError(f"bins must be symmetric around 0 (low == -high < 0), got {low}, {high}")
    half = symexp(jnp.linspace(low, 0.0, (num_bins - 1) // 2 + 1, dtype=jnp.float32))
    return jnp.concatenate([half, -half[:-1][::-1]], 0)


def two_hot(x: jax.Array, bins: jax.Array) -> jax.Array:
    """Two-hot encoding of ``x`` on increasing ``bins``: shape ``x.shape + (len(bins),)``.

    The weight is split between the two neighbouring bins ``b_i <= x < b_{i+1}`` linearly in the
    bins' own space: ``w_{i+1} = (x - b_i) / (b_{i+1} - b_i)``, ``w_i = 1 - w_{i+1}``, so the
    weights sum to 1, ``sum(w * bins) == x`` inside the range and ``x == b_i`` gives exactly a
    one-hot on ``i``. Clamping: values below ``bins[0]`` put all weight on the first bin and
    values above ``bins[-1]`` on the last, so such a target decodes to the edge bin, not to ``x``.
    """
    x = jnp.asarray(x, jnp.float32)
    bins = jnp.asarray(bins, jnp.float32)
    k = bins.shape[-1]
    below = jnp.clip(jnp.searchsorted(bins, x, side="right") - 1, 0, k - 2)
    lo, hi = bins[below], bins[below + 1]
    w_hi = jnp.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return (
        jax.nn.one_hot(below, k) * (1.0 - w_hi)[..., None]
        + jax.nn.one_hot(below + 1, k) * w_hi[..., None]
    )


@struct.dataclass
class TwoHotSymlog:
    """Categorical over symexp-spaced bins, the DreamerV3 reward and critic output.

    ``bins`` are in raw space, evenly spaced in symlog space (:func:`symexp_bins`), which is the
    current official formulation (``symexp_twohot`` head, ``outs.TwoHot``): the prediction is
    the expectation of the raw bins, ``mean = sum(softmax(logits) * bins)`` (not
    ``symexp`` of an expectation in symlog space, the paper's first version), and the loss is the
    cross-entropy against the two-hot encoding of the raw target on those bins. The target's
    two-hot weights are therefore linear in raw space between neighbouring bins, which keeps
    ``mean(two_hot(y)) == y``.
    """

    logits: jax.Array
    bins: jax.Array

    @classmethod
    def from_logits(cls, logits: jax.Array, bins: jax.Array | None = None) -> TwoHotSymlog:
        """Wrap ``logits [..., K]``; ``bins`` default to ``symexp_bins(K)``."""
        logits = jnp.asarray(logits, jnp.float32)
        if bins is None:
            bins = symexp_bins(logits.shape[-1])
        if bins.shape != (logits.shape[-1],):
            raise ValueError(
                f"logits' last axis ({logits.shape[-1]}) must match the bins {bins.shape}"
            )
        if not isinstance(bins, jax.core.Tracer) and not np.array_equal(
            np.asarray(bins)[::-1], -np.asarray(bins)
        ):
            raise ValueError("bins must mirror around 0 (bins[K-1-i] == -bins[i]), as mean() needs")
        return cls(logits=logits, bins=bins)

    @property
    def probs(self) -> jax.Array:
        return jax.nn.softmax(self.logits, -1)

    def mean(self) -> jax.Array:
        """Expected value of the raw-space bins, ``sum(probs * bins)``, for mirrored bins.

        With ``bins[K-1-i] == -bins[i]`` (as :func:`symexp_bins` builds them) the sum is
        ``sum_j bins[m+j] * (p[m+j] - p[m-j])`` around the centre bin ``m``, and each difference
        is taken from the logits, ``exp(l_lo) * expm1(l_hi - l_lo)``, before anything is summed.
        Multiplying each probability by its bin first (up to 4.9e8) leaves float32 rounding
        residues of order 0.1 in the sum, which no summation order removes and which XLA's
        reassociation of the official symmetric sum exposes: jitted at batch 1 it returned
        -0.168 for zero logits. Here zero logits give exactly 0 and the error stays relative to
        each difference.
        """
        k = self.bins.shape[-1]
        m = (k - 1) // 2
        logits = self.logits - jax.lax.stop_gradient(jnp.max(self.logits, -1, keepdims=True))
        lo, hi = logits[..., :m][..., ::-1], logits[..., m + 1 :]
        diff = jnp.exp(lo) * jnp.expm1(hi - lo)  # exp(hi) - exp(lo)
        total = jnp.sum(jnp.exp(logits), -1)
        centre = jnp.exp(logits[..., m]) * self.bins[m]
        return (centre + jnp.sum(diff * self.bins[m + 1 :], -1)) / total

    def log_prob(self, target: jax.Array) -> jax.Array:
        """``sum(two_hot(target, bins) * log_softmax(logits))``; the target is stop-gradiented.

        Targets beyond the edge bins are clamped to the edge bins (see :func:`two_hot`).
        """
        weights = two_hot(_sg(jnp.asarray(target, jnp.float32)), self.bins)
        return jnp.sum(weights * jax.nn.log_softmax(self.logits, -1), -1)


@struct.dataclass
class BoundedNormal:
    """Diagonal Normal for continuous actions (DreamerV3's ``bounded_normal`` head).

    Build with :meth:`from_raw`: ``mean = tanh(raw_mean)``,
    ``std = (maxstd - minstd) * sigmoid(raw_std + 2) + minstd`` (DreamerV3's actor uses
    ``minstd = 0.1``, ``maxstd = 1.0``). Samples are not squashed or clipped: they can leave
    ``[-1, 1]`` and the environment clips them. The last axis holds the action dimensions;
    ``log_prob`` and ``entropy`` sum over it.
    """

    mean: jax.Array
    std: jax.Array

    @classmethod
    def from_raw(
        cls,
        raw_mean: jax.Array,
        raw_std: jax.Array,
        minstd: float = 0.1,
        maxstd: float = 1.0,
    ) -> BoundedNormal:
        if not 0.0 < minstd <= maxstd:
            raise ValueError(f"need 0 < minstd <= maxstd, got {minstd}, {maxstd}")
        std = (maxstd - minstd) * jax.nn.sigmoid(jnp.asarray(raw_std, jnp.float32) + 2.0) + minstd
        return cls(mean=jnp.tanh(jnp.asarray(raw_mean, jnp.float32)), std=std)

    def sample(self, key: jax.Array) -> jax.Array:
        """Reparameterised sample ``mean + std * eps``."""
        eps = jax.random.normal(key, jnp.broadcast_shapes(self.mean.shape, self.std.shape))
        return self.mean + self.std * eps

    def mode(self) -> jax.Array:
        return self.mean

    def log_prob(self, x: jax.Array) -> jax.Array:
        """``sum(-0.5 ((x - mean) / std)^2 - log std - 0.5 log(2 pi))`` over the last axis."""
        z = (x - self.mean) / self.std
        return jnp.sum(-0.5 * z**2 - jnp.log(self.std) - 0.5 * math.log(2.0 * math.pi), -1)

    def entropy(self) -> jax.Array:
        """``sum(0.5 log(2 pi e) + log std)`` over the last axis."""
        ent = 0.5 * np.log(2.0 * np.pi * np.e) + jnp.log(self.std)
        return jnp.sum(jnp.broadcast_to(ent, jnp.broadcast_shapes(self.mean.shape, ent.shape)), -1)
