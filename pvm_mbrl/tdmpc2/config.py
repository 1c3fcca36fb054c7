"""TD-MPC2's settings (:class:`TDMPC2Config`) with the published defaults and model sizes.

Defaults are the official code's ``config.yaml`` (nicklashansen/tdmpc2) for single-task runs;
:data:`MODEL_SIZES` are its presets by millions of parameters (5 is the default) and
:func:`discount` its heuristic from the episode length.
"""

from __future__ import annotations

import dataclasses
from typing import Any

# The official presets: encoder width, MLP width, latent size, encoder layers, Q ensemble size.
MODEL_SIZES: dict[int, dict[str, int]] = {
    1: {"enc_dim": 256, "mlp_dim": 384, "latent_dim": 128, "num_enc_layers": 2, "num_q": 2},
    5: {"enc_dim": 256, "mlp_dim": 512, "latent_dim": 512, "num_enc_layers": 2, "num_q": 5},
    19: {"enc_dim": 1024, "mlp_dim": 1024, "latent_dim": 768, "num_enc_layers": 3, "num_q": 5},
    48: {"enc_dim": 1792, "mlp_dim": 1792, "latent_dim": 768, "num_enc_layers": 4, "num_q": 5},
    317: {"enc_dim": 4096, "mlp_dim": 4096, "latent_dim": 1376, "num_enc_layers": 5, "num_q": 8},
}


def discount(episode_length: int, denom: float = 5.0, low: float = 0.95, high: float = 0.995):
    """The official heuristic: ``(f - 1) / f`` with ``f = episode_length / denom``, clipped to
    ``[low, high]`` (0.99 for the Control Suite's 500 agent steps)."""
    if episode_length < 1:
        raise ValueError(f"episode_length must be >= 1, got {episode_length}")
    frac = episode_length / denom
    return min(max((frac - 1.0) / frac, low), high)


@dataclasses.dataclass(frozen=True)
class TDMPC2Config:
    """TD-MPC2 hyper-parameters (official defaults; the model-size fields are the 5M preset).

    Attributes:
      lr, enc_lr_scale, grad_clip_norm: Adam's learning rate (the encoder's is scaled by
        ``enc_lr_scale``) and the global gradient-norm clip of the model and of the policy.
      consistency_coef, reward_coef, value_coef, termination_coef: loss weights.
      rho: temporal weight ``rho^t`` of the losses over the horizon.
      tau: Polyak rate of the target Q networks and of the policy's running Q scale.
      discount: ``None`` takes :func:`discount` of the env's episode length.
      episodic: learn a termination head and stop value and planning at predicted terminations
        (the official default is off: the Control Suite never terminates).
      horizon, iterations, num_samples, num_elites, num_pi_trajs, min_std, max_std,
        temperature: the MPPI planner (``mpc=False`` acts with the policy prior alone).
      log_std_min, log_std_max, entropy_coef: the policy prior.
      num_bins, vmin, vmax: two-hot regression of reward and Q, bins evenly spaced in symlog
        space over ``[vmin, vmax]``.
      enc_dim, num_enc_layers, mlp_dim, latent_dim, num_q, dropout, simnorm_dim: architecture.
      encoder: for image observations, a name in ``pvm_mbrl.encoders`` (``"cnn"`` or a PVM);
        ``encoder_options`` its keyword options.
      obs_keys: observation keys the agent sees (None: all of the env's).
    """

    lr: float = 3e-4
    enc_lr_scale: float = 0.3
    grad_clip_norm: float = 20.0
    consistency_coef: float = 20.0
    reward_coef: float = 0.1
    value_coef: float = 0.1
    termination_coef: float = 1.0
    rho: float = 0.5
    tau: float = 0.01
    discount: float | None = None
    episodic: bool = False
    mpc: bool = True
    horizon: int = 3
    iterations: int = 6
    num_samples: int = 512
    num_elites: int = 64
    num_pi_trajs: int = 24
    min_std: float = 0.05
    max_std: float = 2.0
    temperature: float = 0.5
    log_std_min: float = -10.0
    log_std_max: float = 2.0
    entropy_coef: float = 1e-4
    num_bins: int = 101
    vmin: float = -10.0
    vmax: float = 10.0
    enc_dim: int = 256
    num_enc_layers: int = 2
    mlp_dim: int = 512
    latent_dim: int = 512
    num_q: int = 5
    dropout: float = 0.01
    simnorm_dim: int = 8
    encoder: str = "cnn"
    encoder_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    obs_keys: tuple[str, ...] | None = None

    def __post_init__(self):
        positive = ("horizon", "iterations", "num_samples", "num_elites", "num_bins", "num_q")
        for name in (*positive, "enc_dim", "mlp_dim", "latent_dim", "simnorm_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if self.num_q < 2:
            raise ValueError(f"num_q must be >= 2 (targets use two members), got {self.num_q}")
        if self.latent_dim % self.simnorm_dim:
            raise ValueError(
                f"latent_dim ({self.latent_dim}) must be a multiple of simnorm_dim "
                f"({self.simnorm_dim})"
            )
        if not 0 <= self.num_pi_trajs < self.num_samples:
            raise ValueError(
                f"num_pi_trajs must be in [0, num_samples={self.num_samples}), "
                f"got {self.num_pi_trajs}"
            )
        if not 1 <= self.num_elites <= self.num_samples:
            raise ValueError(
                f"num_elites must be in [1, num_samples={self.num_samples}], got {self.num_elites}"
            )
        if not 0 < self.min_std <= self.max_std:
            raise ValueError(f"need 0 < min_std <= max_std, got {self.min_std}, {self.max_std}")
        if self.num_bins < 2 or not self.vmin < self.vmax:
            raise ValueError(
                f"need num_bins >= 2 and vmin < vmax, got {self.num_bins}, {self.vmin}, {self.vmax}"
            )
        if not 0.0 < self.rho <= 1.0 or not 0.0 < self.tau <= 1.0:
            raise ValueError(f"rho and tau must be in (0, 1], got {self.rho}, {self.tau}")
        if self.discount is not None and not 0.0 < self.discount < 1.0:
            raise ValueError(f"discount must be in (0, 1) or None, got {self.discount}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @classmethod
    def sized(cls, size: int, **overrides) -> TDMPC2Config:
        """The config of the official ``model_size`` preset ``size`` (1, 5, 19, 48 or 317 million
        parameters), with ``overrides``."""
        if size not in MODEL_SIZES:
            raise ValueError(f"size must be one of {sorted(MODEL_SIZES)}, got {size!r}")
        return cls(**{**MODEL_SIZES[size], **overrides})
