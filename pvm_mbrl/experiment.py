"""One training run as a config: build the env, agent and loop from it, train with logs and
checkpoints, resume, and load the trained agent back.

```python
from pvm_mbrl.experiment import Experiment, run, load_agent

exp = Experiment(task="Reach", encoder="dinov2-small", finetune="partial(4)",
                 checkpoint="/data/dinov2-small", size="size12m", steps=500_000,
                 logdir="runs/dinov2_partial")
run(exp)                                    # tensorboard logs, GIFs, checkpoints in exp.logdir
run(exp, resume=True)                       # continue from the last checkpoint after a kill
exp, agent, states = load_agent("runs/dinov2_partial")   # one AgentState per seed
```

``examples/train.py`` exposes every field of :class:`Experiment` on the command line (tyro).
The run directory holds ``experiment.json`` (this config), ``checkpoints/`` (orbax, with the
config JSON and an integrity record next to each step), ``events.out.tfevents.*``
(tensorboardX), ``videos/`` and ``.lock`` (held by the one process writing it).
Several seeds train as one compiled program (``vmap`` over the seed axis of the train state).
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import pathlib
import time
import warnings
from typing import Any

import jax
import numpy as np

import pvm_mbrl
from pvm_mbrl import checkpoint as ckpt
from pvm_mbrl import envs
from pvm_mbrl import logging as logs
from pvm_mbrl.dreamer.agent import AgentState, Dreamer
from pvm_mbrl.dreamer.config import PRESETS, DreamerConfig
from pvm_mbrl.dreamer.optim import OptimizerConfig
from pvm_mbrl.envs.core import Space
from pvm_mbrl.rundir import RunLock
from pvm_mbrl.train import TrainConfig, Trainer

CONFIG_FILE = "experiment.json"
SPACES_KEY = "spaces"  # the env's observation and action spaces, in experiment.json
OBS = {"pixels": ("pixels",), "pixels+proprio": ("pixels", "proprio"), "state": ("state",)}


@dataclasses.dataclass(frozen=True)
class Experiment:
    """Everything one run needs; saved as ``experiment.json`` in ``logdir``.

    Env: ``task`` (a manipulation task or ``dmc/<domain>_<task>``), ``camera`` (None: the task's
    default, as in ``envs.make``), ``image_size``, ``obs`` (``pixels``,
    ``pixels+proprio`` or ``state``), ``action_repeat``, ``episode_length`` (None: the task's),
    ``shift`` (train-time visual shift preset, ``id`` for none).
    Agent: ``encoder`` (registry name), ``finetune`` / ``checkpoint`` / ``input_size`` (PVM
    options; None: the encoder's default), ``encoder_cache``, ``pvm_lr``, ``size`` (a preset of
    ``DreamerConfig.preset``: an official size, ``micro``, ``tiny`` or ``small``), ``lr`` /
    ``warmup`` (None: DreamerV3's), ``dtype``.
    Loop: ``train_ratio``, ``num_envs``, ``batch_size``, ``batch_length``, ``replay_capacity``,
    ``prefill`` (random steps per env), ``chunk_steps``, ``fused``, ``steps`` (env steps per seed,
    over all envs), ``seeds`` (trained together, vmapped).
    Output: ``logdir``, ``log_every`` / ``checkpoint_every`` / ``video_every`` (env steps),
    ``keep_checkpoints``, ``save_replay`` (without it a resumed run refills replay with a
    random-policy prefill).
    """

    task: str = "Reach"
    camera: str | None = None
    image_size: int = 64
    obs: str = "pixels"
    action_repeat: int = 1
    episode_length: int | None = None
    shift: str = "id"
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
    train_ratio: float = 32.0
    num_envs: int = 16
    batch_size: int = 16
    batch_length: int = 64
    replay_capacity: int = 1_000_000
    prefill: int = 1024
    chunk_steps: int = 64
    fused: bool = True
    steps: int = 1_000_000
    seeds: tuple[int, ...] = (0,)
    logdir: str = "runs/default"
    log_every: int = 10_000
    checkpoint_every: int = 50_000
    video_every: int = 100_000
    keep_checkpoints: int = 3
    save_replay: bool = True

    def __post_init__(self):
        if self.obs not in OBS:
            raise ValueError(f"obs must be one of {sorted(OBS)}, got {self.obs!r}")
        if self.size not in PRESETS:
            raise ValueError(f"size must be one of {list(PRESETS)}, got {self.size!r}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct and non-empty, got {self.seeds}")
        for name in ("steps", "log_every", "checkpoint_every", "video_every", "keep_checkpoints"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        pvm_only = ("finetune", "checkpoint", "input_size", "pvm_lr")
        if self.encoder == "cnn" and any(getattr(self, n) is not None for n in pvm_only):
            raise ValueError(f"{', '.join(pvm_only)} apply to PVM encoders, not 'cnn'")
        self.train_config()  # validates the loop settings

    # -- the parts ---------------------------------------------------------------------------

    def env_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``envs.make`` (without ``num_envs``, ``auto_reset``, ``shift``)."""
        mode = "state" if self.obs == "state" else "pixels+state" if "proprio" in self.obs else ""
        kwargs = dict(
            image_size=self.image_size,
            camera=self.camera,
            action_repeat=self.action_repeat,
            episode_length=self.episode_length,
        )
        if self.obs == "state":
            kwargs.update(obs_mode="state", render=False)
        elif mode:
            kwargs.update(obs_mode=mode)
        return kwargs

    def make_env(self, num_envs: int | None = None, shift: str | None = None):
        """The batched training env (no auto-reset: the loop resets)."""
        shift = self.shift if shift is None else shift
        return envs.make(
            self.task,
            num_envs=num_envs or self.num_envs,
            auto_reset=False,
            shift=None if shift == "id" else shift,
            **self.env_kwargs(),
        )

    def dreamer_config(self) -> DreamerConfig:
        options = {
            k: v
            for k, v in (
                ("finetune", self.finetune),
                ("checkpoint", self.checkpoint),
                ("input_size", self.input_size),
            )
            if v is not None
        }
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
            obs_keys=OBS[self.obs],
            compute_dtype=self.dtype,
            optimizer=opt,
        )

    def train_config(self) -> TrainConfig:
        return TrainConfig(
            num_envs=self.num_envs,
            train_ratio=self.train_ratio,
            batch_size=self.batch_size,
            batch_length=self.batch_length,
            replay_capacity=self.replay_capacity,
            chunk_steps=self.chunk_steps,
            prefill=self.prefill,
            fused=self.fused,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Experiment:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown experiment fields {unknown}")
        return cls(**{**d, "seeds": tuple(d.get("seeds", (0,)))})

    def save(self, directory: str | pathlib.Path, spaces: tuple | None = None) -> pathlib.Path:
        """Writes ``experiment.json``; with ``spaces`` (the env's ``(observation_space,
        action_space)``) it records them too, so that :func:`load_agent` builds no env."""
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


def build(exp: Experiment) -> tuple[Any, Dreamer, Trainer]:
    """``(env, agent, trainer)`` for ``exp``; the trainer vmaps over ``len(exp.seeds)`` seeds."""
    env = exp.make_env()
    agent = Dreamer(exp.dreamer_config(), env.observation_space, env.action_space)
    trainer = Trainer(env, agent, exp.train_config(), seeds=len(exp.seeds))
    return env, agent, trainer


def seed_keys(exp: Experiment) -> jax.Array:
    return jax.numpy.stack([jax.random.PRNGKey(s) for s in exp.seeds])


def run(
    exp: Experiment,
    resume: bool = False,
    progress: bool = True,
    resume_step: int | None = None,
) -> dict[str, float]:
    """Trains ``exp`` to ``exp.steps`` env steps per seed; returns the last logged scalars.

    ``resume=True`` continues the run in ``exp.logdir`` (the saved experiment must equal
    ``exp`` apart from output settings and ``steps``) from its newest checkpoint that passes
    the integrity check (a damaged newer one is reported and skipped; see
    :mod:`pvm_mbrl.checkpoint`), or from ``resume_step``; newer checkpoints than the restored
    one are moved to ``<logdir>/checkpoints_set_aside``. A logdir without ``experiment.json``
    cannot be resumed (``FileNotFoundError``); a run directory with no checkpoint yet starts
    from the beginning. Without ``resume``, an existing run directory with checkpoints raises
    instead of being overwritten. The directory is locked for the whole run
    (:class:`~pvm_mbrl.rundir.RunLock`): a second writer raises ``RunDirLocked`` at once.
    """
    pvm_mbrl.setup()  # compilation cache (and host-memory reuse if JAX has not started yet)
    logdir = pathlib.Path(exp.logdir)
    if resume_step is not None and not resume:
        raise ValueError(f"resume_step={resume_step} needs resume=True")
    if resume and not (logdir / CONFIG_FILE).is_file():
        raise FileNotFoundError(
            f"cannot resume {logdir}: it has no {CONFIG_FILE}, so it is not a run directory "
            f"(mistyped logdir?)"
        )
    with RunLock(logdir):
        if resume:
            _check_resumable(Experiment.load(logdir), exp)
        return _run(exp, logdir, resume, resume_step, progress)


def _run(exp, logdir, resume, resume_step, progress) -> dict[str, float]:
    manager = ckpt.Checkpointer(
        logdir / "checkpoints", max_to_keep=exp.keep_checkpoints, save_replay=exp.save_replay
    )
    try:
        step = None
        if manager.all_steps():
            if not resume:
                raise FileExistsError(
                    f"{logdir} already holds checkpoints; pass resume=True (--resume) to "
                    f"continue it or choose another logdir"
                )
            step = manager.select(resume_step)
        elif resume_step is not None:
            raise FileNotFoundError(f"no checkpoint {resume_step} in {manager.directory}")
        env, agent, trainer = build(exp)
        state = None
        if step is not None:
            state = manager.restore(jax.eval_shape(trainer.init, seed_keys(exp)), step)
            newer = [s for s in manager.all_steps() if s > step]
            if newer:
                moved = manager.set_aside(newer, logdir / "checkpoints_set_aside")
                warnings.warn(
                    f"resuming {logdir} from step {step}: moved the newer checkpoints "
                    f"{newer} to {moved[0].parent}",
                    ckpt.CheckpointWarning,
                    stacklevel=3,
                )
            if not exp.save_replay:
                state = trainer.refill(state)
        exp.save(logdir, spaces=(env.observation_space, env.action_space))
        if state is None:
            state = trainer.prefill(trainer.init(seed_keys(exp)))
        return _train(exp, logdir, agent, trainer, state, manager, progress)
    finally:
        manager.close()


def _train(exp, logdir, agent, trainer, state, manager, progress) -> dict[str, float]:
    logger = logs.Logger(logdir, total_steps=exp.steps, progress=progress)
    per_seed = lambda s: int(np.max(jax.device_get(s.env_steps)))  # noqa: E731
    start = per_seed(state)
    next_log = _next_multiple(start, exp.log_every)
    next_ckpt = _next_multiple(start, exp.checkpoint_every)
    next_video = _next_multiple(start, exp.video_every)
    last: dict[str, float] = {}
    t_last, steps_last, updates_last = time.time(), start, int(np.max(state.updates))
    while per_seed(state) < exp.steps:
        state, metrics = trainer.train_chunk(state)
        logger.accumulate(metrics)
        steps = per_seed(state)
        if steps >= next_log or steps >= exp.steps:
            now, updates = time.time(), int(np.max(jax.device_get(state.updates)))
            rates = {
                "perf/env_steps_per_s": (steps - steps_last) / max(now - t_last, 1e-9),
                "perf/updates_per_s": (updates - updates_last) / max(now - t_last, 1e-9),
            }
            last = logger.flush(steps, rates)
            t_last, steps_last, updates_last = now, steps, updates
            next_log = _next_multiple(steps, exp.log_every)
        if steps >= next_video and agent.obs_space.get("pixels") is not None:
            logger.media(agent, state, trainer, steps)
            next_video = _next_multiple(steps, exp.video_every)
        if steps >= next_ckpt:
            manager.save(steps, state, exp.to_dict())
            next_ckpt = _next_multiple(steps, exp.checkpoint_every)
    if manager.latest_step() != per_seed(state):
        manager.save(per_seed(state), state, exp.to_dict(), force=True)
    manager.wait()
    logger.close()
    return last


def load_agent(
    run_dir: str | pathlib.Path, step: int | None = None
) -> tuple[Experiment, Dreamer, list[AgentState]]:
    """The experiment, its agent and one trained ``AgentState`` per seed from a run directory
    (the newest checkpoint, or ``step``). The agent is built from the spaces the run recorded
    in ``experiment.json``, without making an env."""
    exp = Experiment.load(run_dir)
    spaces = Experiment.load_spaces(run_dir)
    if spaces is None:  # recorded since 2026-12-07; before, the env tells them
        env = exp.make_env(num_envs=1)
        spaces = (env.observation_space, env.action_space)
    agent = Dreamer(exp.dreamer_config(), *spaces)
    template = jax.eval_shape(lambda k: jax.vmap(agent.init)(k), seed_keys(exp))
    stacked = ckpt.restore_agent(pathlib.Path(run_dir) / "checkpoints", template, step)
    states = [jax.tree.map(lambda x, i=i: x[i], stacked) for i in range(len(exp.seeds))]
    return exp, agent, states


def _next_multiple(x: int, every: int) -> int:
    return (x // every + 1) * every


# Fields that may differ between a run and its resumption.
_RESUMABLE = ("steps", "logdir", "log_every", "checkpoint_every", "video_every", "keep_checkpoints")


def _check_resumable(saved: Experiment, exp: Experiment) -> None:
    a, b = saved.to_dict(), exp.to_dict()
    diff = sorted(k for k in a if k not in _RESUMABLE and a[k] != b[k])
    if diff:
        raise ValueError(
            "cannot resume with a different experiment; changed: "
            + ", ".join(f"{k} ({a[k]!r} -> {b[k]!r})" for k in diff)
        )
