"""DreamerV3 configuration: frozen dataclasses with the official size presets.

Defaults follow the official code (danijar/dreamerv3 ``configs.yaml`` at e3f0224) where it
has changed since the DreamerV3 paper (arXiv 2301.04104): the dynamics KL scale is 1.0 (the
paper's 0.5 is ``loss_scales={"dyn": 0.5}``) and training uses one step of replay context
(``replay_context=1``; 0 is the paper's start from the initial state).
``DreamerConfig.preset(name, ...)`` builds a preset with overrides: the official sizes
(:data:`SIZES`) and three smaller ones for CPU runs and tests (:data:`SMALL_SIZES`); every
script, test and example takes its agent's shape from here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pvm_mbrl.dreamer.optim import OptimizerConfig


@dataclasses.dataclass(frozen=True)
class Size:
    """The numbers a size preset sets (the official ``sizeNm`` entries)."""

    deter: int
    hidden: int
    classes: int
    depth: int
    units: int


# Official presets: RSSM deter / hidden / classes, CNN depth, MLP units (stoch is 32 in all).
SIZES: dict[str, Size] = {
    "size1m": Size(deter=512, hidden=64, classes=4, depth=4, units=64),
    "size12m": Size(deter=2048, hidden=256, classes=16, depth=16, units=256),
    "size25m": Size(deter=3072, hidden=384, classes=24, depth=24, units=384),
    "size50m": Size(deter=4096, hidden=512, classes=32, depth=32, units=512),
    "size100m": Size(deter=6144, hidden=768, classes=48, depth=48, units=768),
    "size200m": Size(deter=8192, hidden=1024, classes=64, depth=64, units=1024),
}

# Smaller shapes for CPU runs and tests (not official presets). ``micro`` compiles in seconds
# (tests and smoke runs); ``tiny`` is the demo's agent; ``small`` is the agent of the learning
# benchmarks and of the side-by-side with the official code (about 93 updates a minute at
# batch 16 x 16 from 64 px pixels on 2 CPU cores; its CNN is unused from the state vector).
SMALL_SIZES: dict[str, dict[str, Any]] = {
    "micro": dict(
        deter=32, hidden=8, stoch=4, classes=4, blocks=4, depth=2, mults=(1, 2), bspace=4, units=8
    ),
    "tiny": dict(
        deter=128, hidden=32, stoch=8, classes=8, depth=4, mults=(1, 2, 2), units=64, bspace=8
    ),
    "small": dict(
        deter=128,
        hidden=32,
        stoch=8,
        classes=8,
        blocks=4,
        depth=8,
        mults=(1, 2, 3, 4),
        bspace=4,
        units=64,
    ),
}
PRESETS = (*SMALL_SIZES, *SIZES)

DEFAULT_LOSS_SCALES = {
    "rec": 1.0,
    "rew": 1.0,
    "con": 1.0,
    "dyn": 1.0,
    "rep": 0.1,
    "policy": 1.0,
    "value": 1.0,
    "repval": 0.3,
}

COMPUTE_DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class DreamerConfig:
    """Everything that shapes the agent. Sizes default to ``size12m``.

    Fields:
      deter, hidden, stoch, classes, blocks: RSSM recurrent size, hidden width, number of
        categoricals, classes per categorical, GRU blocks.
      unimix, free_nats: uniform mix of the latent categoricals; KL free bits.
      imglayers, obslayers, dynlayers: hidden layers of the prior, posterior and GRU input.
      encoder: name in ``pvm_mbrl.encoders`` (``"cnn"`` is DreamerV3's).
      encoder_options: keyword options for the encoder factory (for PVM encoders e.g.
        ``checkpoint``, ``finetune`` ("frozen", "partial(k)", "full"), ``input_size``,
        ``output``, ``head``, ``remat``).
      encoder_cache: store what the encoder's fine-tuning mode keeps fixed (frozen features, or
        the tokens entering the first trainable block) in replay once per frame, so updates
        never run the frozen part (PVM encoders under "frozen" or "partial(k)").
      pvm_lr, layer_decay: learning rate of the PVM's trainable weights (None: the optimiser's
        lr) and its optional layer-wise decay; PVM weights that are not trainable get no
        optimiser state.
      depth, mults, kernel: CNN encoder/decoder channels ``depth * mult`` per stage, kernel
        size; images of 128 px or more get one more stage.
      bspace: block count of the decoder's first (block-linear) layer.
      units, mlp_layers: MLP width; layers of the vector encoder/decoder, actor and critic.
      reward_layers, cont_layers, bins: reward and continue head depths; two-hot bins.
      obs_keys: observation keys the agent sees (None: all of the env's).
      imag_horizon, horizon, lam, actent, slowreg, slow_rate: imagination length, the effective
        horizon (discount ``1 - 1/horizon``, learnt by the continue head), lambda-return mixing,
        entropy scale, slow-critic regulariser scale and EMA rate.
      imag_last: imagine from the last K posterior states of each sequence (0: all).
      replay_context: steps of replay context K: each replayed sequence has K more steps, and
        training starts from the RSSM latent stored in replay at its step K - 1 (written by the
        policy when collected, then by each update that trained on it) instead of from the
        initial state. The official default is 1; 0 starts every sequence afresh.
      repval: the replayed value loss (trains the critic on lambda returns of replayed
        sequences bootstrapped with imagined returns).
      minstd, maxstd, actor_outscale, actor_unimix: actor distribution settings.
      retnorm_*: percentile return normaliser.
      compute_dtype: ``"float32"`` or ``"bfloat16"`` (parameters stay float32).
      loss_scales: weights of the loss terms (rec, rew, con, dyn, rep, policy, value, repval).
    """

    deter: int = 2048
    hidden: int = 256
    stoch: int = 32
    classes: int = 16
    blocks: int = 8
    unimix: float = 0.01
    free_nats: float = 1.0
    imglayers: int = 2
    obslayers: int = 1
    dynlayers: int = 1
    encoder: str = "cnn"
    encoder_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    encoder_cache: bool = False
    pvm_lr: float | None = None
    layer_decay: float | None = None
    depth: int = 16
    mults: tuple[int, ...] = (2, 3, 4, 4)
    kernel: int = 5
    bspace: int = 8
    units: int = 256
    mlp_layers: int = 3
    reward_layers: int = 1
    cont_layers: int = 1
    bins: int = 255
    obs_keys: tuple[str, ...] | None = None
    imag_horizon: int = 15
    horizon: float = 333.0
    lam: float = 0.95
    actent: float = 3e-4
    slowreg: float = 1.0
    slow_rate: float = 0.02
    imag_last: int = 0
    replay_context: int = 1
    repval: bool = True
    minstd: float = 0.1
    maxstd: float = 1.0
    actor_outscale: float = 0.01
    actor_unimix: float = 0.01
    retnorm_rate: float = 0.01
    retnorm_limit: float = 1.0
    retnorm_perclo: float = 5.0
    retnorm_perchi: float = 95.0
    compute_dtype: str = "float32"
    loss_scales: dict[str, float] = dataclasses.field(
        default_factory=lambda: dict(DEFAULT_LOSS_SCALES)
    )
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)

    def __post_init__(self):
        if self.deter % self.blocks:
            raise ValueError(f"deter ({self.deter}) must be divisible by blocks ({self.blocks})")
        if self.deter % self.bspace:
            raise ValueError(f"deter ({self.deter}) must be divisible by bspace ({self.bspace})")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(f"compute_dtype must be one of {COMPUTE_DTYPES}")
        unknown = set(self.loss_scales) - set(DEFAULT_LOSS_SCALES)
        if unknown:
            raise ValueError(
                f"unknown loss scales {sorted(unknown)}; valid: {sorted(DEFAULT_LOSS_SCALES)}"
            )
        # Fill scales that were left out with their defaults (frozen: set through object).
        object.__setattr__(self, "loss_scales", {**DEFAULT_LOSS_SCALES, **self.loss_scales})
        for name in ("imag_horizon", "horizon", "units", "depth", "stoch", "classes", "bins"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        k = self.replay_context
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"replay_context must be an int >= 0, got {k!r}")
        if self.pvm_lr is not None and not self.pvm_lr > 0:
            raise ValueError(f"pvm_lr must be > 0 or None, got {self.pvm_lr}")
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {self.lam}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> DreamerConfig:
        """Config of the size preset ``name`` (:data:`PRESETS`: the official :data:`SIZES` and
        the :data:`SMALL_SIZES`) with ``overrides`` (any field)."""
        if name not in PRESETS:
            raise ValueError(f"unknown size preset {name!r}; valid: {', '.join(PRESETS)}")
        shape = dataclasses.asdict(SIZES[name]) if name in SIZES else SMALL_SIZES[name]
        return cls(**{**shape, **overrides})

    @property
    def discount(self) -> float:
        return 1.0 - 1.0 / self.horizon

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (saved next to checkpoints)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DreamerConfig:
        d = dict(d)
        d["optimizer"] = OptimizerConfig(**d.get("optimizer", {}))
        for key in ("mults", "obs_keys"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**d)
