"""On-device replay for DreamerV3: a ring buffer of transitions from many parallel envs.

Pure functions over a ``Replay`` pytree, so ``add`` and ``sample`` run inside ``jax.jit`` and
``jax.lax.scan`` (the training loop calls both in one compiled scan)::

    buffer = Replay.create(example, num_envs=16, capacity=1_000_000)
    buffer = add(buffer, transition)  # leaves [num_envs, ...]: one step of every env
    batch = sample(buffer, key, batch_size=16, length=64)  # leaves [16, 64, ...]

Layout: each field is stored as ``[num_envs, capacity // num_envs, ...]`` with its own dtype
(uint8 pixels stay uint8, bf16 features stay bf16), so the leading axis can be sharded over a
device mesh (data parallel over envs). All envs share one write position: ``add`` writes one
step per env there and then moves it on, overwriting the oldest step once the ring is full.
Outside a scan, jit ``add`` with ``donate_argnums=0`` so the update is in place; create a buffer
that is to be sharded inside ``jax.jit`` with ``out_shardings`` so it is never materialised on a
single device.

Sampling is uniform over every (env, start) pair whose ``length`` consecutive steps were all
written and do not cross the write head, i.e. never join the newest and the oldest data in ring
order. ``sample_indices`` returns where the sequences lie, so that ``gather`` reads them and
``write`` stores values computed from them back in place (DreamerV3's replay context: the latents
of the last update's posterior). ``sample_online`` serves the official code's online queue first:
every env's stream cut into consecutive, non-overlapping sequences, each replayed once as soon as
it is complete, the rest of the batch drawn uniformly. Sequences may cross episode boundaries, as
in DreamerV3: ``is_first`` marks resets inside a sequence. ``add`` and ``sample`` use only dynamic-
update-slice and gather: with the env axis sharded, XLA's SPMD partitioner keeps ``add`` local and
turns ``sample`` into local gathers plus an all-reduce of the sampled batch, never an all-gather of
the buffer (tested on 4 CPU devices).

Backend: flashbax's trajectory buffer (``flashbax.buffers.trajectory_buffer``, 0.1.3), whose state
is exactly this layout (``[add_batch_size, time, ...]``) and whose ``sample`` with ``period=1``
draws starts uniformly between the oldest step and the write head. Checked under the pinned JAX:
it installs without touching jax/jaxlib/chex/flax, samples only consecutive steps of one env
before and after many wraps, runs in jit and scan, and its add compiles to an in-place
dynamic-update-slice (same time per add as a hand-written one). This module adds what it lacks:
checks that raise ``ValueError`` naming the expected shape (flashbax raises chex
``AssertionError`` for a wrong dtype and a broadcasting error for a wrong shape), capacity in
total steps, ``mark_first`` and ``size``, and the indices of a draw (flashbax's ``sample``
returns the data only: ``sample_indices`` makes the same draw from the same key, tested equal, so
that values can be written back), and the online queue. The state is kept in this module's own
dataclass, so checkpoints do not depend on flashbax's classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flashbax.buffers import trajectory_buffer as fbx
from flax import struct


@struct.dataclass
class Replay:
    """Ring buffer state: ``data[field]`` is ``[num_envs, steps_per_env, ...]``.

    ``pos`` (int32 scalar) is the time index the next ``add`` writes, ``full`` (bool scalar)
    whether the ring has wrapped at least once, ``added`` (int32) the steps added per env since
    creation and ``online`` (int32) the online-queue sequences served so far (see
    ``sample_online``). Make one with ``Replay.create``.
    """

    data: dict[str, jax.Array]
    pos: jax.Array
    full: jax.Array
    added: jax.Array
    online: jax.Array

    @property
    def num_envs(self) -> int:
        return next(iter(self.data.values())).shape[0]

    @property
    def steps_per_env(self) -> int:
        return next(iter(self.data.values())).shape[1]

    @classmethod
    def create(cls, example: Mapping[str, Any], num_envs: int, capacity: int) -> Replay:
        """An empty (zero-filled) buffer for ``capacity`` steps in total from ``num_envs`` envs.

        ``example`` is one transition of one env, a dict of arrays or ``jax.ShapeDtypeStruct``
        (e.g. ``pixels`` uint8 [64, 64, 3], ``reward`` f32 [], ``is_first`` bool []); any fields
        are allowed and only their shapes and dtypes are used. ``capacity`` must be a multiple of
        ``num_envs``; each env keeps ``capacity // num_envs`` steps. ``sample`` additionally needs
        ``capacity >= num_envs * length``.
        """
        if not isinstance(example, Mapping) or not example:
            raise ValueError(f"example must be a non-empty dict of arrays, got {type(example)}")
        if any(not (hasattr(v, "shape") and hasattr(v, "dtype")) for v in example.values()):
            raise ValueError("every field of example must be an array or jax.ShapeDtypeStruct")
        if num_envs < 1 or capacity < num_envs or capacity % num_envs:
            raise ValueError(
                f"capacity must be a positive multiple of num_envs={num_envs} (it is split into "
                f"capacity // num_envs steps per env), got capacity={capacity}"
            )
        zeros = {k: jnp.zeros(v.shape, v.dtype) for k, v in example.items()}
        state = fbx.init(zeros, num_envs, capacity // num_envs)
        count = jnp.zeros((), jnp.int32)
        return cls(state.experience, state.current_index, state.is_full, count, count)


def _fbx(buffer: Replay) -> fbx.TrajectoryBufferState:
    return fbx.TrajectoryBufferState(
        experience=buffer.data, current_index=buffer.pos, is_full=buffer.full
    )


def add(buffer: Replay, transition: Mapping[str, Any]) -> Replay:
    """Writes one step of every env: ``transition[field]`` is ``[num_envs, *field_shape]``.

    Keys, shapes and dtypes must match the buffer exactly (no casting); otherwise raises
    ``ValueError`` at trace time naming the expected shape and dtype.
    """
    if not isinstance(transition, Mapping) or set(transition) != set(buffer.data):
        got = sorted(transition) if isinstance(transition, Mapping) else type(transition)
        raise ValueError(f"transition must have the fields {sorted(buffer.data)}, got {got}")
    for k, stored in buffer.data.items():
        x = transition[k]
        want = (buffer.num_envs, *stored.shape[2:])
        got = (getattr(x, "shape", None), getattr(x, "dtype", None))
        if got != (want, stored.dtype):
            raise ValueError(
                f"transition[{k!r}] must be {stored.dtype} {want} ([num_envs, ...]), "
                f"got {got[1]} {got[0]}"
            )
    state = fbx.add(_fbx(buffer), jax.tree.map(lambda x: x[:, None], dict(transition)))
    return buffer.replace(
        data=state.experience,
        pos=state.current_index,
        full=state.is_full,
        added=buffer.added + 1,
    )


def _check_length(buffer: Replay, length: int) -> None:
    if not 1 <= length <= buffer.steps_per_env:
        raise ValueError(
            f"length must be in [1, {buffer.steps_per_env}] (steps per env), got {length}; "
            f"capacity must be at least num_envs * length = {buffer.num_envs} * {length}"
        )


def sample(
    buffer: Replay, key: jax.Array, batch_size: int, length: int, mark_first: bool = True
) -> dict[str, jax.Array]:
    """``batch_size`` sequences of ``length`` steps each: leaves ``[batch_size, length, ...]``.

    Each sequence is drawn uniformly from all (env, start) pairs whose steps were all written and
    do not cross the write head (see the module docstring). With ``mark_first`` (default) the
    field ``is_first``, if present, is set at step 0 of every sequence, so the world model starts
    each one from its initial state, as DreamerV3 does without replay context; ``is_first``
    later in a sequence is kept.

    The caller must prefill: check ``can_sample(buffer, length)`` first. Before that (sampling
    cannot raise under jit) the result is still defined but not useful: every sequence starts at
    time index 0 of a uniformly drawn env, and the steps not yet written read as zeros.
    """
    rows, times = sample_indices(buffer, key, batch_size, length)
    return gather(buffer, rows, times, mark_first)


def sample_indices(
    buffer: Replay, key: jax.Array, batch_size: int, length: int
) -> tuple[jax.Array, jax.Array]:
    """Where ``sample`` would read: env rows ``[B]`` and ring time indices ``[B, length]``.

    The same draw as flashbax's ``sample`` with ``period=1`` for the same key (tested), kept
    here because flashbax returns the data but not its indices.
    """
    _check_length(buffer, length)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    steps = buffer.steps_per_env
    max_time = jnp.where(buffer.full, steps, buffer.pos)
    head = jnp.where(buffer.full, buffer.pos, 0)
    max_start = max_time - length
    valid = jnp.where(max_start >= 0, max_start + 1, 0)
    key, k_items = jax.random.split(key)
    _, k_rows = jax.random.split(key)
    start = jax.random.randint(k_items, (batch_size,), 0, valid)
    rows = jax.random.randint(k_rows, (batch_size,), 0, buffer.num_envs)
    times = (head + start)[:, None] + jnp.arange(length)
    return rows, times % steps


def sample_online(
    buffer: Replay, key: jax.Array, batch_size: int, length: int
) -> tuple[jax.Array, jax.Array, Replay]:
    """``sample_indices`` with the official DreamerV3's online queue served first.

    Every env's stream is cut into consecutive sequences of ``length`` steps (steps ``0..L-1``,
    ``L..2L-1``, ... of that env since the buffer was created); each enters the queue when its
    last step is added, in order of completion (env 0 first among those completed together).
    The first ``min(batch_size, queued)`` rows of the batch are taken from the front of the queue,
    the rest uniformly as in ``sample_indices``. A queued sequence the ring has since overwritten
    is dropped. Returns ``(rows, times, buffer)``, the buffer with its queue advanced.
    """
    rows, times = sample_indices(buffer, key, batch_size, length)
    envs, steps = buffer.num_envs, buffer.steps_per_env
    produced = envs * (buffer.added // length)
    # The oldest sequence still whole in the ring starts at or after added - steps.
    oldest = jnp.maximum(buffer.added - steps, 0)
    first_kept = envs * ((oldest + length - 1) // length)
    taken = jnp.maximum(buffer.online, first_kept)
    queued = jnp.maximum(produced - taken, 0)
    slot = jnp.arange(batch_size)
    item = taken + slot
    start = (item // envs) * length
    use = slot < queued
    rows = jnp.where(use, item % envs, rows)
    online_times = (start[:, None] + jnp.arange(length)) % steps
    times = jnp.where(use[:, None], online_times, times)
    served = taken + jnp.minimum(queued, batch_size)
    return rows, times, buffer.replace(online=served.astype(jnp.int32))


def gather(
    buffer: Replay, rows: jax.Array, times: jax.Array, mark_first: bool = True
) -> dict[str, jax.Array]:
    """The steps at env ``rows`` ``[B]`` and ring ``times`` ``[B, L]``: leaves ``[B, L, ...]``;
    ``mark_first`` as in ``sample``."""
    batch = {k: v[rows[:, None], times] for k, v in buffer.data.items()}
    if mark_first and "is_first" in batch:
        batch["is_first"] = batch["is_first"].at[:, 0].set(True)
    return batch


def write(
    buffer: Replay, rows: jax.Array, times: jax.Array, values: Mapping[str, jax.Array]
) -> Replay:
    """Stores ``values[field]`` ``[B, L, ...]`` at env ``rows`` ``[B]`` and ring ``times``
    ``[B, L]`` of existing fields (where sequences overlap, one of the writes is kept).

    Shapes and dtypes must match the field's; raises ``ValueError`` naming the expected ones.
    """
    data = dict(buffer.data)
    for k, v in values.items():
        if k not in data:
            raise ValueError(f"write: no field {k!r} in the buffer; fields: {sorted(data)}")
        want = (*jnp.shape(times), *data[k].shape[2:])
        if tuple(jnp.shape(v)) != want or v.dtype != data[k].dtype:
            raise ValueError(
                f"write: values[{k!r}] must be {data[k].dtype} {want} ([B, L, ...]), got "
                f"{v.dtype} {tuple(jnp.shape(v))}"
            )
        data[k] = data[k].at[rows[:, None], times].set(v)
    return buffer.replace(data=data)


def can_sample(buffer: Replay, length: int) -> jax.Array:
    """Traced bool: whether every env holds at least ``length`` steps, so ``sample`` is valid."""
    _check_length(buffer, length)
    return fbx.can_sample(_fbx(buffer), length)


def size(buffer: Replay) -> jax.Array:
    """Number of steps stored in total over all envs (int32 scalar), at most the capacity."""
    return buffer.num_envs * jnp.where(buffer.full, buffer.steps_per_env, buffer.pos)
