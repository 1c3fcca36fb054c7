"""DreamerV3's optimiser as an optax chain, plus the first paper version's Adam.

``kind="dreamerv3"`` follows the official code (danijar/dreamerv3: ``embodied/jax/opt.py`` and
``agent.py::_make_opt``; defaults lr 4e-5, agc 0.3, eps 1e-20, beta1 0.9, beta2 0.999, warm-up
1000). For step ``t = 1, 2, ...`` and each parameter tensor ``p`` with gradient ``g``:

1. AGC per tensor: ``g <- g / max(1, ||g||_2 / (agc * max(1e-3, ||p||_2)))`` (:func:`clip_by_agc`).
2. RMS scaling: ``nu <- beta2 nu + (1 - beta2) g^2``, ``u = g / (sqrt(nu / (1 - beta2^t)) + eps)``
   (``optax.scale_by_rms(beta2, eps, eps_in_sqrt=False, bias_correction=True)``).
3. Momentum: ``mu <- beta1 mu + (1 - beta1) u``, ``u = mu / (1 - beta1^t)``
   (``optax.ema(beta1, debias=True)``); skipped when ``momentum=False``. The official code
   accepts a ``momentum`` flag but always applies momentum, so the default matches it. Its
   ``nesterov`` option (default off) is not supported here.
4. Decoupled weight decay ``u <- u + wd * p`` on kernels only (:func:`kernel_mask`), if ``wd > 0``.
5. ``p <- p - lr(t - 1) u`` with :func:`make_schedule`: linear warm-up from 0 over ``warmup``
   updates, then constant, or a linear/cosine anneal to ``0.1 * lr`` that ends at update
   ``anneal``. (The official cosine branch passes ``0.1 * lr`` as optax's ``alpha``, a
   *fraction* of lr, so it decays to ~0; here both anneals end at ``0.1 * lr`` as intended.)

As in the official code, the moment estimates are kept in float32 whatever the parameter dtype.
optax multiplies by ``1 / (sqrt(nu_hat) + eps)`` where the official code divides (<= 1 ulp apart).

``kind="adam"`` is the optimiser of the first paper version (arXiv 2301.04104v1 and its code):
global-norm clipping, then Adam, with the same warm-up/schedule and weight-decay options.
:data:`ADAM_V1_WORLD_MODEL` and :data:`ADAM_V1_ACTOR_CRITIC` hold its settings (world model:
lr 1e-4, eps 1e-8, clip 1000; actor and critic: lr 3e-5, eps 1e-5, clip 100; no warm-up).
"""

from __future__ import annotations

import dataclasses
import math
import numbers

import jax
import jax.numpy as jnp
import optax

KINDS = ("dreamerv3", "adam")
SCHEDULES = ("const", "linear", "cosine")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """Settings of :func:`make_optimizer`; ``agc``/``momentum`` are used by ``"dreamerv3"``
    only and ``clip`` by ``"adam"`` only. ``agc=0`` or ``clip=0`` disables that clipping."""

    kind: str = "dreamerv3"
    lr: float = 4e-5
    agc: float = 0.3
    eps: float = 1e-20
    beta1: float = 0.9
    beta2: float = 0.999
    momentum: bool = True
    wd: float = 0.0
    schedule: str = "const"
    warmup: int = 1000
    anneal: int = 0
    clip: float = 1000.0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {self.lr}")
        for name in ("agc", "eps", "wd", "clip"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {value}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        for name in ("warmup", "anneal"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ValueError(f"{name} must be an int >= 0, got {value!r}")
        if self.schedule != "const" and self.anneal <= self.warmup:
            raise ValueError(
                f"schedule={self.schedule!r} needs anneal (the update at which the anneal ends) "
                f"> warmup, got anneal={self.anneal}, warmup={self.warmup}"
            )


ADAM_V1_WORLD_MODEL = OptimizerConfig(kind="adam", lr=1e-4, eps=1e-8, clip=1000.0, warmup=0)
ADAM_V1_ACTOR_CRITIC = OptimizerConfig(kind="adam", lr=3e-5, eps=1e-5, clip=100.0, warmup=0)


def clip_by_agc(agc: float = 0.3, pmin: float = 1e-3) -> optax.GradientTransformation:
    """Adaptive gradient clipping per parameter tensor, as DreamerV3's ``clip_by_agc``.

    Each update leaf is scaled by ``1 / max(1, ||u||_2 / (agc * max(pmin, ||p||_2)))`` with both
    norms over the whole flattened tensor. ``optax.adaptive_grad_clip`` is not used because it
    clips unit-wise (one norm per output unit, e.g. per column of a dense kernel) and floors the
    divisor at 1e-6, which gives different updates for every tensor of rank >= 2.
    """

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("clip_by_agc needs the params: call update(grads, state, params)")

        def clip(update, param):
            unorm = jnp.linalg.norm(update.ravel())
            upper = agc * jnp.maximum(pmin, jnp.linalg.norm(param.ravel()))
            return update * (1 / jnp.maximum(1.0, unorm / upper))

        return jax.tree.map(clip, updates, params), state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


def _key_name(key) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def kernel_mask(params):
    """``True`` for leaves whose path ends with ``kernel`` (a trailing ``.value``, as in
    ``flax.nnx.State`` variables, is skipped), ``False`` elsewhere; same structure as params."""

    def is_kernel(path, _):
        if len(path) > 1 and isinstance(path[-1], jax.tree_util.GetAttrKey):
            if path[-1].name == "value":
                path = path[:-1]
        return bool(path) and _key_name(path[-1]) == "kernel"

    return jax.tree_util.tree_map_with_path(is_kernel, params)


def make_schedule(config: OptimizerConfig) -> optax.Schedule:
    """Learning rate per update count (0-based), as in the official ``_make_opt``."""
    lr, warmup = config.lr, config.warmup
    if config.schedule == "const":
        sched = optax.constant_schedule(lr)
    elif config.schedule == "linear":
        sched = optax.linear_schedule(lr, 0.1 * lr, config.anneal - warmup)
    else:
        sched = optax.cosine_decay_schedule(lr, config.anneal - warmup, alpha=0.1)
    if warmup:
        sched = optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), sched], [warmup])
    return sched


def _float32_state(tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """Initialise ``tx``'s state from float32 copies of floating params (official behaviour)."""

    def init_fn(params):
        def to_f32(p):
            return p.astype(jnp.float32) if jnp.issubdtype(p.dtype, jnp.floating) else p

        return tx.init(jax.tree.map(to_f32, params))

    return optax.GradientTransformation(init_fn, tx.update)


def make_optimizer(config: OptimizerConfig) -> optax.GradientTransformation:
    """The optax chain for ``config``; ``update`` needs the params (AGC and weight decay)."""
    c = config
    if c.kind == "dreamerv3":
        chain = [clip_by_agc(c.agc)] if c.agc else []
        chain.append(
            optax.scale_by_rms(decay=c.beta2, eps=c.eps, eps_in_sqrt=False, bias_correction=True)
        )
        if c.momentum:
            chain.append(optax.ema(c.beta1, debias=True))
    else:
        chain = [optax.clip_by_global_norm(c.clip)] if c.clip else []
        chain.append(optax.scale_by_adam(c.beta1, c.beta2, c.eps))
    if c.wd:
        chain.append(optax.add_decayed_weights(c.wd, kernel_mask))
    chain.append(optax.scale_by_learning_rate(make_schedule(c)))
    tx = optax.chain(*chain)
    return _float32_state(tx) if c.kind == "dreamerv3" else tx
