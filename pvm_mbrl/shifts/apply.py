"""Put a shift on an env: ``shifts.apply(env, presets)`` returns a shifted copy of it."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import jax

from pvm_mbrl.envs.wrappers import ENV_AXIS
from pvm_mbrl.shifts.presets import Preset, ShiftBatch, batch


def apply(env, presets: str | Preset | Sequence[str | Preset] | ShiftBatch):
    """A copy of ``env`` (its wrappers and task) whose task renders under ``presets``.

    One preset applies to every env; a list gives env ``i`` of a batch the preset
    ``i % len(presets)``, so one compiled step evaluates a whole ladder. The batch size must be
    a multiple of the number of presets. ``env`` itself is left unchanged.
    """
    shift = presets if isinstance(presets, ShiftBatch) else batch(presets)
    chain = []
    inner = env
    while hasattr(inner, "env"):
        chain.append(inner)
        inner = inner.env
    if not hasattr(inner, "set_shift"):
        raise TypeError(f"{type(inner).__name__} does not support visual shifts (no set_shift)")
    num_envs = next((w.num_envs for w in chain if hasattr(w, "num_envs")), 1)
    n = len(shift.names)
    if num_envs % n:
        raise ValueError(
            f"{n} presets cannot be spread over {num_envs} envs: num_envs must be a multiple of {n}"
        )
    out = copy.copy(inner)
    out.set_shift(shift)
    for wrapper in reversed(chain):
        wrapper = copy.copy(wrapper)
        wrapper.env = out
        out = wrapper
    return out


def env_index() -> jax.Array | int:
    """Index of the current env inside ``envs.BatchEnv``'s vmap, or 0 outside a batch."""
    try:
        return jax.lax.axis_index(ENV_AXIS)
    except NameError:
        return 0
