"""Checkpoints of the whole train state with orbax: agent (parameters, slow critic, optimiser,
return normaliser), envs, policy carries, replay (optional), RNG key and step counters, plus the
experiment config as JSON next to each step.

Orbax writes each step to a temporary folder and renames it when complete, so a process killed
mid-save (``kill -9``) leaves the previous checkpoints intact and the partial one is ignored.
Saves are asynchronous: training continues while the arrays are written.
"""

from __future__ import annotations

import contextlib
import logging
import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp

STATE, CONFIG = "state", "config"


class Checkpointer:
    """``orbax.checkpoint.CheckpointManager`` around a :class:`~pvm_mbrl.train.TrainState`.

    ``save_replay=False`` leaves the replay buffer out (it dominates the size at large
    capacities); :meth:`restore` then returns the state with ``replay=None`` and the caller
    refills it (``Trainer.refill``).
    """

    def __init__(self, directory: str | pathlib.Path, max_to_keep: int = 3, save_replay=True):
        self.directory = pathlib.Path(directory).absolute()
        self.save_replay = save_replay
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
            item_names=(STATE, CONFIG),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(self, step: int, state, config: dict[str, Any], force: bool = False) -> None:
        """Starts writing ``state`` as ``step`` (returns before the write completes)."""
        if not self.save_replay:
            state = state.replace(replay=None)
        self.manager.save(
            int(step),
            args=ocp.args.Composite(
                **{
                    STATE: ocp.args.StandardSave(_drop_empty(state)),
                    CONFIG: ocp.args.JsonSave(config),
                }
            ),
            force=force,
        )

    def restore(self, template, step: int | None = None):
        """The state saved at ``step`` (default: the newest), shaped like ``template`` (a state
        or its ``jax.eval_shape``)."""
        step = self._step(step)
        if not self.save_replay:
            template = template.replace(replay=None)
        out = self.manager.restore(
            step,
            args=ocp.args.Composite(
                **{STATE: ocp.args.StandardRestore(_drop_empty(_abstract(template)))}
            ),
        )
        return _fill_empty(out[STATE], template)

    def config(self, step: int | None = None) -> dict[str, Any]:
        step = self._step(step)
        out = self.manager.restore(
            step, args=ocp.args.Composite(**{CONFIG: ocp.args.JsonRestore()})
        )
        return out[CONFIG]

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()

    def _step(self, step):
        step = self.latest_step() if step is None else step
        if step is None or step not in self.all_steps():
            raise FileNotFoundError(
                f"no checkpoint {'' if step is None else step} in {self.directory}; "
                f"available steps: {self.all_steps()}"
            )
        return step


def restore_agent(directory: str | pathlib.Path, template, step: int | None = None):
    """Only the agent part of a saved train state, shaped like ``template`` (an ``AgentState``
    or its ``jax.eval_shape``), read without building envs or replay."""
    with _quiet_read_only():
        return _restore_agent(directory, template, step)


def _restore_agent(directory, template, step):
    manager = ocp.CheckpointManager(
        pathlib.Path(directory).absolute(),
        options=ocp.CheckpointManagerOptions(read_only=True),
        item_names=(STATE, CONFIG),
    )
    step = manager.latest_step() if step is None else step
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {directory}")
    abstract = _abstract(template)
    item = {"agent": abstract}
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    restore_args = {
        "agent": jax.tree.map(
            lambda x: ocp.ArrayRestoreArgs(dtype=x.dtype, sharding=device), abstract
        )
    }
    tree = manager.restore(
        step,
        args=ocp.args.Composite(
            **{STATE: ocp.args.PyTreeRestore(item, restore_args, partial_restore=True)}
        ),
    )
    manager.close()
    return tree[STATE]["agent"]


class _ReadOnlyNotes(logging.Filter):
    """Drops orbax's warnings that a manager opened with ``read_only=True`` is read only (and
    so creates, saves and deletes nothing): :func:`restore_agent` asks for exactly that."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "read only" not in message and "read_only=True" not in message


@contextlib.contextmanager
def _quiet_read_only():
    logger, note = logging.getLogger("absl"), _ReadOnlyNotes()
    logger.addFilter(note)
    try:
        yield
    finally:
        logger.removeFilter(note)


def _drop_empty(tree):
    """Zero-size leaves (e.g. empty ``mjx.Data`` fields) as None: orbax cannot store them."""
    return jax.tree.map(lambda x: None if x.size == 0 else x, tree)


def _fill_empty(restored, template):
    """Puts the zero-size leaves of ``template`` back into ``restored``."""
    flat = iter(jax.tree.leaves(restored))
    leaves = [
        jax.device_put(jax.numpy.zeros(t.shape, t.dtype), jax.devices()[0])
        if t.size == 0
        else next(flat)
        for t in jax.tree.leaves(template)
    ]
    return jax.tree.unflatten(jax.tree.structure(template), leaves)


def _abstract(tree):
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
        tree,
    )
