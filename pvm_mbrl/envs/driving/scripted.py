"""A scripted driver: pure pursuit on the current lane's centre, IDM speed control.

Steering is pure pursuit (Coulter 1992): aim at the lane centre a look-ahead ``L_d`` ahead
(proportional to speed), follow the circle through it, ``curvature = 2 sin(alpha) / L_d``,
and turn that path curvature into a steer angle with the bicycle model's
``sin(beta) / l_r = curvature``. Speed: the IDM (``traffic.idm_accel``) toward the target
speed, lowered in bends so lateral acceleration stays under ``LAT_COMFORT``, with the nearest
car ahead in the ego's lane as the leader. The driver never changes lane.
"""

from __future__ import annotations

import jax.numpy as jnp

from pvm_mbrl.envs.driving import road as rd
from pvm_mbrl.envs.driving import sim
from pvm_mbrl.envs.driving import traffic as tr
from pvm_mbrl.envs.driving import vehicle as vh

LOOKAHEAD_TIME = 0.8  # s: look-ahead distance per unit speed
MIN_LOOKAHEAD = 8.0  # m
LAT_COMFORT = 4.5  # m/s^2
CURVE_PREVIEW = (0.0, 20.0, 40.0, 60.0, 80.0)  # m ahead, where bends slow the car


def policy(state: sim.SimState, config: sim.Config):
    """Action float32 [2] ``[steer, throttle]`` in ``[-1, 1]`` for one (unbatched) state."""
    road, ego = config.road, state.ego
    s, d, head_err = sim.frenet(state, config)
    lane = rd.nearest_lane(d, config.num_lanes)
    centre = rd.lane_center(lane, config.num_lanes)
    # Steering: pure pursuit toward the lane centre ahead.
    look = jnp.maximum(MIN_LOOKAHEAD, LOOKAHEAD_TIME * ego.v)
    target, _ = rd.point(road, s + look, centre)
    rel = target - jnp.stack([ego.x, ego.y])
    alpha = jnp.arctan2(rel[1], rel[0]) - ego.yaw
    dist = jnp.maximum(jnp.linalg.norm(rel), 1.0)
    kappa = 2 * jnp.sin(alpha) / dist
    beta = jnp.arcsin(jnp.clip(kappa * vh.L_REAR, -0.99, 0.99))
    delta = jnp.arctan(jnp.tan(beta) * vh.WHEELBASE / vh.L_REAR)
    steer = delta / vh.steer_limit(ego.v)
    # Speed: IDM toward the bend-limited target, the car ahead in this lane as the leader.
    bend = jnp.max(jnp.abs(rd.curvature(road, s + jnp.asarray(CURVE_PREVIEW))))
    v_des = jnp.minimum(config.target_speed, jnp.sqrt(LAT_COMFORT / jnp.maximum(bend, 1e-6)))
    v_along = ego.v * jnp.cos(head_err)
    traffic = state.traffic
    cand_lanes = traffic.lane[:, None] == jnp.arange(config.num_lanes)[None, :]
    gap, lead_v = tr.leaders(
        road, s[None], centre[None], lane[None], traffic.s, traffic.v, cand_lanes
    )
    dv = jnp.where(jnp.isnan(lead_v[0]), 0.0, v_along - lead_v[0])
    a = tr.idm_accel(v_along, v_des, gap[0], dv)
    throttle = jnp.where(a > 0, a / vh.MAX_ACCEL, a / vh.MAX_BRAKE)
    return jnp.clip(jnp.stack([steer, throttle]), -1.0, 1.0).astype(jnp.float32)
