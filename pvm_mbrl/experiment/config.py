"""What one run is, in four parts: the env (``EnvConfig``), the agent (``AgentConfig``), the
loop (``train.TrainConfig``) and the output (``OutputConfig``), with the run's length and seeds
on :class:`Experiment` itself. Saved as ``experiment.json`` in the run directory.

Each setting is declared once, in its part. :meth:`Experiment.of` takes the settings by name,
whatever their part (``Experiment.of(task="Reach", size="small", train_ratio=64)``), and the
command line (``examples/train.py``) shows them without the part's prefix (``--task``).
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import pathlib
from typing import Any

from pvm_mbrl import envs
from pvm_mbrl.dreamer.agent import Dreamer
from pvm_mbrl.dreamer.config import PRESETS, DreamerConfig
from pvm_mbrl.dreamer.optim import OptimizerConfig
from pvm_mbrl.envs.core import Space
from pvm_mbrl.tdmpc2 import MODEL_SIZES, TDMPC2, TDMPC2Config
from pvm_mbrl.train import TrainConfig

CONFIG_FILE = "experiment.json"
SPACES_KEY = "spaces"  # the env's observation and action spaces, in experiment.json
ALGORITHMS = ("dreamer", "tdmpc2")
OBS = {"pixels": ("pixels",), "pixels+proprio": ("pixels", "proprio"), "state": ("state",)}


def _check_positive_ints(obj, names) -> None:
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    """The task and what the agent sees: ``task`` (a manipulation task or
    ``dmc/<domain>_<task>``), ``camera`` (None: the task's default, as in ``envs.make``),
    ``image_size``, ``obs`` (``pixels``, ``pixels+proprio`` or ``state``), ``action_repeat``,
    ``episode_length`` (None: the task's), ``shift`` (train-time visual shift preset, ``id``
    for none)."""

    task: str = "Reach"
    camera: str | None = None
    image_size: int = 64
    obs: str = "pixels"
    action_repeat: int = 1
    episode_length: int | None = None
    shift: str = "id"

    def __post_init__(self):
        if self.obs not in OBS:
            raise ValueError(f"obs must be one of {sorted(OBS)}, got {self.obs!r}")

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``envs.make`` (without ``num_envs``, ``auto_reset``, ``shift``)."""
        kwargs = dict(
            image_size=self.image_size,
            camera=self.camera,
            action_repeat=self.action_repeat,
            episode_length=self.episode_length,
        )
        if self.obs == "state":
            kwargs.update(obs_mode="state", render=False)
        elif "proprio" in self.obs:
            kwargs.update(obs_mode="pixels+state")
        return kwargs

    def make(self, num_envs: int, shift: str | None = None):
        """``num_envs`` batched envs without auto-reset (the loop resets), under ``shift``
        (default: this config's)."""
        shift = self.shift if shift is None else shift
        return envs.make(
            self.task, num_envs=num_envs, auto_reset=False, shift=shift, **self.kwargs()
        )


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    """The agent: ``encoder`` (registry name), ``finetune`` / ``checkpoint`` / ``input_size``
    (PVM options; None: the encoder's default), ``encoder_cache``, ``pvm_lr``, ``size`` (a
    preset of ``DreamerConfig.preset``: an official size, ``micro``, ``tiny`` or ``small``),
    ``lr`` / ``warmup`` (None: DreamerV3's), ``dtype``.

    ``algorithm="tdmpc2"`` trains TD-MPC2 instead, at the official model size ``tdmpc2_size``
    (1, 5, 19, 48 or 317 million parameters) with its own learning rate unless ``lr`` is set;
    it takes the ``cnn`` encoder for images, no warm-up and float32."""

    algorithm: str = "dreamer"
    tdmpc2_size: int = 5
    encoder: str = "cnn"
    finetune: str | None = None
    checkpoint: str | None = None
    input_size: int | None = None
    encoder_cache: bool = False
    pvm_lr: float | None = None
    size: str = "size12m"
    lr: float | None = None
    warmup: int | None = None
    dtype: str = "float32"

    def __post_init__(self):
        if self.size not in PRESETS:
            raise ValueError(f"size must be one of {list(PRESETS)}, got {self.size!r}")
        pvm_only = ("finetune", "checkpoint", "input_size", "pvm_lr")
        if self.encoder == "cnn" and any(getattr(self, n) is not None for n in pvm_only):
            raise ValueError(f"{', '.join(pvm_only)} apply to PVM encoders, not 'cnn'")
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}")
        if self.tdmpc2_size not in MODEL_SIZES:
            raise ValueError(f"tdmpc2_size must be one of {sorted(MODEL_SIZES)}")
        if self.algorithm == "tdmpc2":
            dreamer_only = dict(encoder="cnn", encoder_cache=False, warmup=None, dtype="float32")
            bad = [k for k, v in dreamer_only.items() if getattr(self, k) != v]
            if bad:
                raise ValueError(f"TD-MPC2 takes {dreamer_only}; got other {bad}")

    def tdmpc2_config(self, obs_keys: tuple[str, ...]) -> TDMPC2Config:
        """The ``TDMPC2Config`` of this agent seeing ``obs_keys``."""
        lr = {} if self.lr is None else {"lr": self.lr}
        return TDMPC2Config.sized(self.tdmpc2_size, obs_keys=obs_keys, **lr)

    def make(self, obs_keys, obs_space, act_space, episode_length: int):
        """The agent (``Dreamer`` or ``TDMPC2``) for the env's spaces."""
        if self.algorithm == "tdmpc2":
            return TDMPC2(self.tdmpc2_config(obs_keys), obs_space, act_space, episode_length)
        return Dreamer(self.dreamer_config(obs_keys), obs_space, act_space)

    def dreamer_config(self, obs_keys: tuple[str, ...]) -> DreamerConfig:
        """The ``DreamerConfig`` of this agent seeing ``obs_keys``."""
        pvm = ("finetune", "checkpoint", "input_size")
        options = {k: getattr(self, k) for k in pvm if getattr(self, k) is not None}
        opt = OptimizerConfig()
        opt = dataclasses.replace(
            opt,
            lr=opt.lr if self.lr is None else self.lr,
            warmup=opt.warmup if self.warmup is None else self.warmup,
        )
        return DreamerConfig.preset(
            self.size,
            encoder=self.encoder,
            encoder_options=options,
            encoder_cache=self.encoder_cache,
            pvm_lr=self.pvm_lr,
            obs_keys=obs_keys,
            compute_dtype=self.dtype,
            optimizer=opt,
        )


@dataclasses.dataclass(frozen=True)
class OutputConfig:
    """Where and how often a run reports: ``logdir``, ``log_every`` / ``checkpoint_every`` /
    ``video_every`` (env steps), ``keep_checkpoints``, ``save_replay`` (without it a resumed
    run refills replay with a random-policy prefill)."""

    logdir: str = "runs/default"
    log_every: int = 10_000
    checkpoint_every: int = 50_000
    video_every: int = 100_000
    keep_checkpoints: int = 3
    save_replay: bool = True

    def __post_init__(self):
        _check_positive_ints(
            self, ("log_every", "checkpoint_every", "video_every", "keep_checkpoints")
        )


PARTS = {"env": EnvConfig, "agent": AgentConfig, "loop": TrainConfig, "output": OutputConfig}
_OWN = ("steps", "seeds")  # Experiment's own fields
# The part of every setting, by name (each name is declared in one part).
_PART_OF = {f.name: part for part, cls in PARTS.items() for f in dataclasses.fields(cls)}


@dataclasses.dataclass(frozen=True)
class Experiment:
    """Everything one run needs: the ``env``, ``agent``, ``loop`` and ``output`` parts, the run's
    length ``steps`` (env steps per seed, over all envs) and its ``seeds`` (trained together,
    vmapped). Build one from settings by name with :meth:`of`."""

    env: EnvConfig = dataclasses.field(default_factory=EnvConfig)
    agent: AgentConfig = dataclasses.field(default_factory=AgentConfig)
    loop: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)
    steps: int = 1_000_000
    seeds: tuple[int, ...] = (0,)

    def __post_init__(self):
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and non-empty, got {self.seeds}")
        _check_positive_ints(self, ("steps",))

    @classmethod
    def of(cls, **settings) -> Experiment:
        """An experiment from settings by name (``task=``, ``size=``, ``train_ratio=``,
        ``logdir=``, ``steps=``, ...), each routed to its part; the others keep their defaults."""
        return cls().replace(**settings)

    def replace(self, **settings) -> Experiment:
        """A copy with the settings by name changed (each routed to its part)."""
        unknown = sorted(set(settings) - set(_PART_OF) - set(_OWN))
        if unknown:
            raise ValueError(f"unknown experiment settings {unknown}")
        parts = {}
        for part in PARTS:
            changed = {k: v for k, v in settings.items() if _PART_OF.get(k) == part}
            if changed:
                parts[part] = dataclasses.replace(getattr(self, part), **changed)
        own = {k: settings[k] for k in _OWN if k in settings}
        return dataclasses.replace(self, **parts, **own)

    def make_env(self, num_envs: int | None = None, shift: str | None = None):
        """The batched training env (``loop.num_envs`` envs unless ``num_envs``)."""
        return self.env.make(num_envs or self.loop.num_envs, shift)

    def dreamer_config(self) -> DreamerConfig:
        return self.agent.dreamer_config(OBS[self.env.obs])

    def make_agent(self, obs_space, act_space, episode_length: int):
        """The agent this experiment trains, for the env's spaces and episode length."""
        return self.agent.make(OBS[self.env.obs], obs_space, act_space, episode_length)

    # -- experiment.json ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """``{"env": {...}, "agent": {...}, "loop": {...}, "output": {...}, "steps", "seeds"}``."""
        out = {part: dataclasses.asdict(getattr(self, part)) for part in PARTS}
        return {**out, "steps": self.steps, "seeds": list(self.seeds)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Experiment:
        """The inverse of :meth:`to_dict`; also reads the flat dict that runs written before
        2026-12-07 recorded (every setting at the top level)."""
        d = dict(d)
        if "seeds" in d:
            d["seeds"] = tuple(d["seeds"])
        nested = {part: d.pop(part) for part in PARTS if isinstance(d.get(part), dict)}
        unknown = sorted(set(d) - set(_PART_OF) - set(_OWN))
        if unknown:
            raise ValueError(f"unknown experiment fields {unknown}")
        exp = cls().replace(**d)  # flat settings (the older format) and steps / seeds
        for part, fields in nested.items():
            known = {f.name for f in dataclasses.fields(PARTS[part])}
            if set(fields) - known:
                raise ValueError(f"unknown {part} fields {sorted(set(fields) - known)}")
            exp = dataclasses.replace(exp, **{part: PARTS[part](**fields)})
        return exp

    def save(self, directory: str | pathlib.Path, spaces: tuple | None = None) -> pathlib.Path:
        """Writes ``experiment.json``; with ``spaces`` (the env's ``(observation_space,
        action_space)``) it records them too, so that ``load_agent`` builds no env."""
        path = pathlib.Path(directory) / CONFIG_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = self.to_dict()
        if spaces is not None:
            obs, act = spaces
            doc[SPACES_KEY] = {
                "observation": {k: v.to_dict() for k, v in obs.items()},
                "action": act.to_dict(),
            }
        path.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | pathlib.Path) -> Experiment:
        doc = _read_config(directory)
        doc.pop(SPACES_KEY, None)
        return cls.from_dict(doc)

    @staticmethod
    def load_spaces(directory: str | pathlib.Path) -> tuple[dict[str, Space], Space] | None:
        """The ``(observation_space, action_space)`` a run recorded (None: a run directory
        from before they were recorded)."""
        saved = _read_config(directory).get(SPACES_KEY)
        if saved is None:
            return None
        obs = {k: Space.from_dict(v) for k, v in saved["observation"].items()}
        return obs, Space.from_dict(saved["action"])


def _read_config(directory: str | pathlib.Path) -> dict[str, Any]:
    path = pathlib.Path(directory) / CONFIG_FILE
    if not path.exists():
        raise FileNotFoundError(f"no {CONFIG_FILE} in {directory} (not a run directory)")
    return json.loads(path.read_text())
