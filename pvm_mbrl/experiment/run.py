"""Running an :class:`~pvm_mbrl.experiment.config.Experiment`: build its env, agent and
trainer, train with logs and checkpoints, resume after a kill, and load the trained agent back."""

from __future__ import annotations

import pathlib
import time
import warnings
from typing import Any

import jax
import numpy as np

import pvm_mbrl
from pvm_mbrl import checkpoint as ckpt
from pvm_mbrl import logging as logs
from pvm_mbrl.experiment.config import CONFIG_FILE, Experiment
from pvm_mbrl.rundir import RunLock
from pvm_mbrl.train import Trainer


def build(exp: Experiment) -> tuple[Any, Any, Trainer]:
    """``(env, agent, trainer)`` for ``exp``; the trainer vmaps over ``len(exp.seeds)`` seeds."""
    env = exp.make_env()
    agent = exp.make_agent(env.observation_space, env.action_space, env.episode_length)
    trainer = Trainer(env, agent, exp.loop, seeds=len(exp.seeds))
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

    ``resume=True`` continues the run in ``exp.output.logdir`` (the saved experiment must equal
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
    logdir = pathlib.Path(exp.output.logdir)
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
        logdir / "checkpoints",
        max_to_keep=exp.output.keep_checkpoints,
        save_replay=exp.output.save_replay,
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
            if not exp.output.save_replay:
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
    next_log = _next_multiple(start, exp.output.log_every)
    next_ckpt = _next_multiple(start, exp.output.checkpoint_every)
    next_video = _next_multiple(start, exp.output.video_every)
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
            next_log = _next_multiple(steps, exp.output.log_every)
        if steps >= next_video and agent.obs_space.get("pixels") is not None:
            logger.media(agent, state, trainer, steps)
            next_video = _next_multiple(steps, exp.output.video_every)
        if steps >= next_ckpt:
            manager.save(steps, state, exp.to_dict())
            next_ckpt = _next_multiple(steps, exp.output.checkpoint_every)
    if manager.latest_step() != per_seed(state):
        manager.save(per_seed(state), state, exp.to_dict(), force=True)
    manager.wait()
    logger.close()
    return last


def load_agent(
    run_dir: str | pathlib.Path, step: int | None = None
) -> tuple[Experiment, Any, list[Any]]:
    """The experiment, its agent (``Dreamer`` or ``TDMPC2``) and one trained ``AgentState`` per
    seed from a run directory (the newest checkpoint, or ``step``). The agent is built from the
    spaces the run recorded in ``experiment.json``; an env is made only where those are missing
    or, for TD-MPC2, for the episode length its discount follows."""
    exp = Experiment.load(run_dir)
    spaces = Experiment.load_spaces(run_dir)
    if spaces is None:  # recorded since 2026-12-07; before, the env tells them
        env = exp.make_env(num_envs=1)
        spaces = (env.observation_space, env.action_space)
    episode_length = None
    if exp.agent.algorithm == "tdmpc2":  # its discount follows the episode length
        episode_length = exp.make_env(num_envs=1).episode_length
    agent = exp.make_agent(*spaces, episode_length)
    template = jax.eval_shape(lambda k: jax.vmap(agent.init)(k), seed_keys(exp))
    stacked = ckpt.restore_agent(pathlib.Path(run_dir) / "checkpoints", template, step)
    states = [jax.tree.map(lambda x, i=i: x[i], stacked) for i in range(len(exp.seeds))]
    return exp, agent, states


def _next_multiple(x: int, every: int) -> int:
    return (x // every + 1) * every


def _check_resumable(saved: Experiment, exp: Experiment) -> None:
    """A run resumes with its env, agent, loop and seeds; only ``steps`` and the output part
    may change."""
    a, b = saved.to_dict(), exp.to_dict()
    diff = [
        (f"{part}.{k}", a[part][k], b[part][k])
        for part in ("env", "agent", "loop")
        for k in a[part]
        if a[part][k] != b[part][k]
    ]
    if a["seeds"] != b["seeds"]:
        diff.append(("seeds", a["seeds"], b["seeds"]))
    if diff:
        raise ValueError(
            "cannot resume with a different experiment; changed: "
            + ", ".join(f"{k} ({x!r} -> {y!r})" for k, x, y in diff)
        )
