"""Settings of the training loop (:class:`TrainConfig`): env count, train ratio, replay, chunk
and prefill sizes, validated on construction, and the collect / update cycle they imply."""

from __future__ import annotations

import dataclasses
import fractions
import math
import numbers

PREFILL_POLICIES = ("random", "agent")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Loop settings (DreamerV3 defaults where they exist).

    ``chunk_steps`` vectorised env steps per compiled chunk; ``prefill`` env steps per env
    before the first update (at least ``batch_length``), taken by ``prefill_policy``:
    ``"random"`` (uniform actions) or ``"agent"`` (the untrained agent's policy, as the official
    DreamerV3 collects its first sequences: it has no random prefill).

    ``replay_online`` serves the official DreamerV3's online queue first in every batch: each
    env's stream cut into consecutive sequences, each trained on once as soon as it is complete
    (``replay.sample_online``); the rest of the batch is drawn uniformly.

    ``fused=True`` runs a whole chunk (collection, insertion, updates) as one compiled
    ``lax.scan``. ``fused=False`` runs the same steps in the same order as one compiled call per
    collection cycle and one per update: on XLA:CPU work inside a while-loop body runs about 2x
    slower than at the top level (measured in ``benchmarks/RESULTS.md``), so this is the faster
    choice there; the results agree up to float rounding (tested).
    """

    num_envs: int = 16
    train_ratio: float = 32.0
    batch_size: int = 16
    batch_length: int = 64
    replay_capacity: int = 1_000_000
    chunk_steps: int = 64
    prefill: int = 1000
    prefill_policy: str = "random"
    replay_online: bool = True
    fused: bool = True

    def __post_init__(self):
        ints = ("num_envs", "batch_size", "batch_length", "replay_capacity", "chunk_steps")
        for name in (*ints, "prefill"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        ratio = self.train_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not ratio > 0:
            raise ValueError(f"train_ratio must be a number > 0, got {ratio!r}")
        if not math.isfinite(ratio):
            raise ValueError(f"train_ratio must be finite, got {ratio!r}")
        if self.prefill_policy not in PREFILL_POLICIES:
            raise ValueError(
                f"prefill_policy must be one of {PREFILL_POLICIES}, got {self.prefill_policy!r}"
            )
        for name in ("fused", "replay_online"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")
        per_env, rest = divmod(self.replay_capacity, self.num_envs)
        if rest or per_env < self.batch_length:
            raise ValueError(
                f"replay_capacity ({self.replay_capacity}) must be a multiple of num_envs "
                f"({self.num_envs}) and hold one sequence of batch_length ({self.batch_length}) "
                f"steps per env: >= {self.num_envs * self.batch_length}"
            )
        if self.prefill < self.batch_length:
            raise ValueError(
                f"prefill ({self.prefill} steps per env) must be >= batch_length "
                f"({self.batch_length}) so that the first update can sample a sequence"
            )
        self.cycle  # noqa: B018 (validates the ratio)

    @property
    def updates_per_step(self) -> fractions.Fraction:
        """Updates per vectorised env step, ``E * train_ratio / (B * T)`` as an exact fraction."""
        ratio = fractions.Fraction(self.train_ratio).limit_denominator(10_000)
        return self.num_envs * ratio / (self.batch_size * self.batch_length)

    @property
    def cycle(self) -> tuple[int, int]:
        """``(c, u)``: collect ``c`` vectorised steps, then run ``u`` updates."""
        rate = self.updates_per_step
        c, u = rate.denominator, rate.numerator
        if self.chunk_steps % c:
            raise ValueError(
                f"chunk_steps ({self.chunk_steps}) must be a multiple of {c}: with "
                f"{self.num_envs} envs, train ratio {self.train_ratio} and batch "
                f"{self.batch_size}x{self.batch_length} there are {u} updates per {c} env steps"
            )
        return c, u

    @property
    def chunk_updates(self) -> int:
        c, u = self.cycle
        return self.chunk_steps // c * u
