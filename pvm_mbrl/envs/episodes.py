"""Episode statistics inside compiled loops: the one bookkeeping of the trainer's collection,
the evaluation's rollout, ``envs.rollout`` and the probes.

Each env keeps a running record of its current episode (:func:`start`): the return so far and
whether it has succeeded at any step (``success_once``). :func:`update` adds one step and gives
the summary of the episodes that ended at it (``ended``, ``return``, ``success_once`` and
``success_end``, the success at the last step); an ended episode's record starts again at zero.
Steps marked invalid (the step that resets an ended env, or the steps after an evaluation
episode's end) change nothing and end nothing. Tasks without a success metric (the ``dmc/``
tasks) count as never solved.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

SUMMARY = ("return", "success_once", "success_end")


def start(shape) -> dict[str, jax.Array]:
    """A fresh running record for envs of batch shape ``shape``."""
    zeros = jnp.zeros(shape, jnp.float32)
    return {"return": zeros, "success_once": zeros}


def success_of(state) -> jax.Array:
    """The step's success metric of an env state (zeros where the task has none)."""
    return state.metrics.get("success", jnp.zeros_like(state.reward)).astype(jnp.float32)


def update(running: dict, reward, success, done, valid=None) -> tuple[dict, dict]:
    """``(running, ended)`` after one step with ``reward``, ``success`` and ``done`` (batched like
    the record); ``valid`` (default all) marks the steps that count."""
    valid = jnp.ones(jnp.shape(done), bool) if valid is None else jnp.asarray(valid, bool)
    reward = jnp.where(valid, jnp.asarray(reward, jnp.float32), 0.0)
    success = jnp.asarray(success, jnp.float32)
    ret = running["return"] + reward
    once = jnp.where(valid, jnp.maximum(running["success_once"], success), running["success_once"])
    ended = valid & jnp.asarray(done, bool)
    summary = {"ended": ended, "return": ret, "success_once": once, "success_end": success}
    running = {"return": jnp.where(ended, 0.0, ret), "success_once": jnp.where(ended, 0.0, once)}
    return running, summary


def totals(summary: dict) -> dict[str, jax.Array]:
    """Sums over the episodes that ended (``episodes`` counts them), for a progress line."""
    ended = summary["ended"]
    out = {"episodes": jnp.sum(ended)}
    for k in SUMMARY:
        out[k] = jnp.sum(jnp.where(ended, summary[k], 0.0))
    return out


def keep_first(result: dict, summary: dict) -> dict:
    """``result`` (one finished episode per env, :data:`SUMMARY` keys) with the episodes that
    ended at this step filled in where none had ended before (``result["ended"]``)."""
    new = summary["ended"] & ~result["ended"]
    out = {k: jnp.where(new, summary[k], result[k]) for k in SUMMARY}
    out["ended"] = result["ended"] | summary["ended"]
    return out
