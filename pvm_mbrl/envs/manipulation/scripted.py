"""Scripted controllers, one per task: pure JAX functions ``policy(env, state) -> action``.

They read the privileged state (positions from ``state.data``, task data from
``state.info``), so they work with any observation mode. Each maps a Cartesian target to a
proportional action, ``clip((target - tcp) / MAX_DELTA, -1, 1)``. Pass the unwrapped task env
(``env.unwrapped``); they also work on a batch under ``jax.vmap``.
"""

from __future__ import annotations

import jax.numpy as jnp

from pvm_mbrl.envs.manipulation import base

OPEN, CLOSED = 1.0, -1.0
HOLD_DIST = 0.012


def _move(env, state, target, grip):
    delta = (target - env.tcp_pos(state.data)) / base.MAX_DELTA
    return jnp.concatenate([jnp.clip(delta, -1.0, 1.0), jnp.array([grip])]).astype(jnp.float32)


def reach(env, state):
    """Go straight to the target, gripper open."""
    return _move(env, state, env.marker_pos(state.data), OPEN)


def push(env, state, standoff: float = 0.025, hover: float = 0.06, low: float = 0.02):
    """Lift, get behind the cube (seen from the goal), lower the closed fingers, push; hold
    still once the cube is within ``HOLD_DIST`` of the goal."""
    data = state.data
    obj, goal, tcp = env.object_pos(data), env.marker_pos(data), env.tcp_pos(data)
    to_goal = goal[:2] - obj[:2]
    d_goal = jnp.linalg.norm(to_goal)
    u = to_goal / (d_goal + 1e-6)
    half = env.objects[0].size[0]
    rel = tcp[:2] - obj[:2]
    along = jnp.dot(rel, u)
    lateral = u[0] * rel[1] - u[1] * rel[0]
    in_position = (along < -half) & (jnp.abs(lateral) < 0.012) & (tcp[2] < low + 0.015)
    behind = obj[:2] - u * (half + standoff)
    off = jnp.linalg.norm(tcp[:2] - behind)
    contact = obj[:2] - u * (half + 0.011)  # tcp position touching the cube
    push_to = jnp.concatenate([contact + u * jnp.minimum(d_goal, 0.03), jnp.array([low])])
    approach = jnp.concatenate([behind, (low + jnp.clip((off - 0.008) * 3.0, 0.0, hover))[None]])
    lift = jnp.concatenate([tcp[:2], jnp.array([low + hover])])
    must_lift = (off > 0.015) & (tcp[2] < low + 0.6 * hover)
    target = jnp.where(in_position, push_to, jnp.where(must_lift, lift, approach))
    target = jnp.where(d_goal < HOLD_DIST, tcp, target)
    return _move(env, state, target, CLOSED)


def pick(env, state, hover: float = 0.08):
    """Hover above the object, descend open, close, then carry it to the goal."""
    data, info = state.data, state.info
    obj = env.object_pos(data, info["object"])
    tcp, goal = env.tcp_pos(data), env.marker_pos(data)
    half_width, _ = env.object_dims(info)
    d_xy = jnp.linalg.norm(tcp[:2] - obj[:2])
    d = jnp.linalg.norm(tcp - obj)
    closed_on = env.finger_gap(data) < 2.0 * half_width + 0.003
    holding = closed_on & (d < 0.02)
    at_object = d < 0.008
    descend = obj + jnp.array([0.0, 0.0, 1.0]) * jnp.clip((d_xy - 0.004) * 4.0, 0.0, hover)
    carry = goal + tcp - obj  # place the object, not the tcp, at the goal
    target = jnp.where(holding, carry, jnp.where(at_object, obj, descend))
    grip = jnp.where(holding | at_object, CLOSED, OPEN)
    return _move(env, state, target, grip)


POLICIES = {"Reach": reach, "Push": push, "PickCube": pick, "PickObject": pick}
"""Task name -> scripted controller."""
