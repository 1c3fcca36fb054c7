"""Checkpoints of the whole train state with orbax: agent (parameters, slow critic, optimiser,
return normaliser), envs, policy carries, replay (optional), RNG key and step counters, plus the
experiment config as JSON next to each step.

Orbax writes each step to a temporary folder and renames it when complete, so a process killed
mid-save (``kill -9``) leaves the previous checkpoints intact and the partial one is ignored.
Saves are asynchronous: training continues while the arrays are written.

Integrity: before orbax renames a finished step into place, :class:`Checkpointer` writes
``integrity.json`` into it, the size and sha256 of every file of the step, so the record is
committed together with the step and every committed step has one. Each restore
(:meth:`Checkpointer.restore`, :func:`restore_agent`) first checks the step against it (reading
the whole step once). Without an explicit step the newest step that passes is restored, with a
:class:`CheckpointWarning` naming each newer damaged step and its damaged file; an explicitly
chosen damaged step, or no good step at all, raises :class:`DamagedCheckpointError`.
A step without ``integrity.json`` counts as damaged, since the record is committed with the
step, unless no step of the directory has one (a directory written before these records
existed): such steps are restored unverified, with a warning. Two files at the top of a step
are left out of the record because orbax writes them when it commits, after the record:
``commit_success.txt`` and ``_CHECKPOINT_METADATA`` (checked to be valid JSON instead).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pathlib
import shutil
import warnings
from collections.abc import Iterable
from typing import Any

import jax
import orbax.checkpoint as ocp

STATE, CONFIG = "state", "config"
MANIFEST = "integrity.json"
_STEP_METADATA = "_CHECKPOINT_METADATA"
_UNRECORDED = (MANIFEST, _STEP_METADATA, "commit_success.txt")  # top-level names only
_TMP_SUFFIX = ".orbax-checkpoint-tmp"  # orbax's temporary folder of a step being written


class CheckpointWarning(UserWarning):
    """A damaged checkpoint was skipped, or one without an integrity record was restored."""


class DamagedCheckpointError(RuntimeError):
    """The chosen checkpoint, or every checkpoint of a directory, fails its integrity check."""


class Checkpointer:
    """``orbax.checkpoint.CheckpointManager`` around a :class:`~pvm_mbrl.train.TrainState`.

    ``save_replay=False`` leaves the replay buffer out (it dominates the size at large
    capacities); :meth:`restore` then returns the state with ``replay=None`` and the caller
    refills it (``Trainer.refill``). :meth:`select` picks the step a restore reads;
    :meth:`set_aside` moves steps out of the way (a resumed run's abandoned newer steps).
    """

    def __init__(self, directory: str | pathlib.Path, max_to_keep: int = 3, save_replay=True):
        self.directory = pathlib.Path(directory).absolute()
        self.save_replay = save_replay
        self._saving: int | None = None  # the step whose save is in flight
        self._good: set[int] = set()  # steps this process wrote or verified
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep,
                create=True,
                async_options=ocp.AsyncOptions(post_finalization_callback=self._seal),
            ),
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
        self.manager.wait_until_finished()  # the previous step is sealed before _saving moves on
        self._saving = int(step)
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

    def select(self, step: int | None = None) -> int:
        """The step a restore reads: ``step`` if it passes its integrity check, by default the
        newest step that does (see the module docstring); raises otherwise."""
        step = select_step(self.directory, self.all_steps(), step, self._good)
        self._good.add(step)
        return step

    def restore(self, template, step: int | None = None):
        """The state saved at ``step`` (default: the newest good one), shaped like ``template``
        (a state or its ``jax.eval_shape``)."""
        step = self.select(step)
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
        step = self.select(step)
        out = self.manager.restore(
            step, args=ocp.args.Composite(**{CONFIG: ocp.args.JsonRestore()})
        )
        return out[CONFIG]

    def set_aside(self, steps: Iterable[int], where: str | pathlib.Path) -> list[pathlib.Path]:
        """Moves the folders of ``steps`` into ``where`` (``<step>``, or ``<step>.1``, ... when
        taken) so that orbax no longer sees them; returns their new paths."""
        self.wait()
        where = pathlib.Path(where)
        where.mkdir(parents=True, exist_ok=True)
        moved = []
        for step in sorted(steps):
            target, n = where / str(step), 0
            while target.exists():
                n += 1
                target = where / f"{step}.{n}"
            shutil.move(self.directory / str(step), target)
            self._good.discard(step)
            moved.append(target)
        self.manager.reload()
        return moved

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()

    def _seal(self) -> None:
        """Orbax's post-finalisation callback: records the finished step before its commit."""
        step = self._saving
        tmp = self.directory / f"{step}{_TMP_SUFFIX}"
        folder = tmp if tmp.is_dir() else self.directory / str(step)
        if step is None or not folder.is_dir():
            raise RuntimeError(f"checkpoint {step}: no folder {tmp} or {folder.name} to seal")
        write_manifest(folder)
        self._good.add(step)


def write_manifest(step_dir: str | pathlib.Path) -> pathlib.Path:
    """Writes ``integrity.json`` (size and sha256 of each file) into a step folder."""
    step_dir = pathlib.Path(step_dir)
    files = {
        rel: {"bytes": path.stat().st_size, "sha256": _sha256(path)}
        for rel, path in _files(step_dir).items()
    }
    path, tmp = step_dir / MANIFEST, step_dir / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps({"format": 1, "files": files}, indent=1) + "\n")
    os.replace(tmp, path)
    return path


def check_step(step_dir: str | pathlib.Path) -> str | None:
    """None when a step folder matches its ``integrity.json``; otherwise what is wrong, naming
    the files at fault (missing, resized, changed, unexpected)."""
    step_dir = pathlib.Path(step_dir)
    try:
        recorded = json.loads((step_dir / MANIFEST).read_text())["files"]
    except FileNotFoundError:
        return f"it has no {MANIFEST} (integrity record)"
    except (ValueError, KeyError, TypeError) as e:
        return f"{MANIFEST} is unreadable ({e!r})"
    found, problems = _files(step_dir), []
    for rel, want in sorted(recorded.items()):
        path = found.get(rel)
        if path is None:
            problems.append(f"{rel} is missing")
        elif (size := path.stat().st_size) != want["bytes"]:
            problems.append(f"{rel} has {size} bytes, {want['bytes']} recorded")
        elif _sha256(path) != want["sha256"]:
            problems.append(f"{rel} does not match its recorded sha256")
    problems += [f"{rel} is not in {MANIFEST}" for rel in sorted(set(found) - set(recorded))]
    try:
        json.loads((step_dir / _STEP_METADATA).read_text())
    except (OSError, ValueError):
        problems.append(f"{_STEP_METADATA} is missing or not JSON")
    if len(problems) > 4:
        problems = [*problems[:4], f"and {len(problems) - 4} more"]
    return "; ".join(problems) or None


def select_step(
    directory: str | pathlib.Path,
    steps: Iterable[int],
    step: int | None = None,
    good: Iterable[int] = (),
) -> int:
    """``step``, or the newest of ``steps``, that passes :func:`check_step` (``good``: steps
    known to pass). Warns about each damaged step skipped; raises
    :class:`DamagedCheckpointError` when ``step`` is damaged or no step passes."""
    directory = pathlib.Path(directory)
    steps, good = sorted(steps, reverse=True), set(good)
    if step is not None and step not in steps:
        raise FileNotFoundError(
            f"no checkpoint {step} in {directory}; available steps: {sorted(steps)}"
        )
    if not steps:
        raise FileNotFoundError(f"no checkpoint in {directory}")
    candidates = steps if step is None else [step]
    if not any((directory / str(s) / MANIFEST).exists() for s in steps):
        warnings.warn(
            f"checkpoint {candidates[0]} in {directory} has no {MANIFEST} (written before "
            f"integrity records existed): restoring it unverified",
            CheckpointWarning,
            stacklevel=2,
        )
        return candidates[0]
    damaged = []
    for s in candidates:
        problem = None if s in good else check_step(directory / str(s))
        if problem is None:
            for bad, why in damaged:
                warnings.warn(
                    f"checkpoint {bad} in {directory} is damaged ({why}); falling back to step "
                    f"{s}, the newest good one",
                    CheckpointWarning,
                    stacklevel=2,
                )
            return s
        damaged.append((s, problem))
    hint = "restore another step" if step is not None else "no checkpoint passes its check"
    raise DamagedCheckpointError(
        "; ".join(f"checkpoint {s} in {directory} is damaged: {why}" for s, why in damaged)
        + f" ({hint}; available steps: {sorted(steps)})"
    )


def _files(step_dir: pathlib.Path) -> dict[str, pathlib.Path]:
    """The files of a step folder that ``integrity.json`` records, by relative POSIX path."""
    out = {}
    for path in sorted(step_dir.rglob("*")):
        rel = path.relative_to(step_dir).as_posix()
        if path.is_file() and rel not in _UNRECORDED:
            out[rel] = path
    return out


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def restore_agent(directory: str | pathlib.Path, template, step: int | None = None):
    """Only the agent part of a saved train state, shaped like ``template`` (an ``AgentState``
    or its ``jax.eval_shape``), read without building envs or replay; the step is chosen and
    checked as :meth:`Checkpointer.restore` does."""
    with _quiet_read_only():
        return _restore_agent(directory, template, step)


def _restore_agent(directory, template, step):
    directory = pathlib.Path(directory).absolute()
    manager = ocp.CheckpointManager(
        directory,
        options=ocp.CheckpointManagerOptions(read_only=True),
        item_names=(STATE, CONFIG),
    )
    step = select_step(directory, manager.all_steps(), step)
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
