"""Other cars: lane-keeping followers on the loop, driven by the Intelligent Driver Model.

Each car keeps its lane (no lane changes) and lives in Frenet coordinates: ``s`` along the
loop, its lane's centre offset. Longitudinal control is the IDM (Treiber, Hennecke & Helbing
2000):

    a = A [1 - (v / v0)^4 - (s* / gap)^2],   s* = s0 + max(0, v T + v dv / (2 sqrt(A B))),

with ``dv = v - v_leader`` and ``gap`` the bumper-to-bumper distance along the lane to the
car ahead (found round the loop, the ego included when its footprint reaches into the lane,
so traffic brakes for the ego). Speeds integrate by the ballistic update (Treiber & Kanagaraj
2015), which stops a braking car exactly instead of reversing it; deceleration is floored at
``EMERGENCY_BRAKE``. A car moves its lane distance ``v dt + a dt^2 / 2``, which advances
``s`` by that over ``1 - curvature * d``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from pvm_mbrl.envs.driving import road as rd
from pvm_mbrl.envs.driving.vehicle import LENGTH, WIDTH

IDM_ACCEL = 1.5  # A, m/s^2
IDM_DECEL = 2.0  # B, comfortable braking
HEADWAY = 1.5  # T, s
MIN_GAP = 3.0  # s0, m
EMERGENCY_BRAKE = 9.0  # the largest deceleration a traffic car can manage
SPEED_RANGE = (18.0, 28.0)  # desired speeds, drawn per car at reset
NEAR_AHEAD = (20.0, 150.0)  # per lane, one car starts this far ahead of the ego
SLOT = 60.0  # the others take distinct 60 m slots round the loop, jittered by up to JITTER
JITTER = 30.0
FAR = NEAR_AHEAD[1] + SLOT - JITTER  # where the slots start ahead of the ego (>= 30 m past
# the near car); they end >= 40 m behind the ego
FREE = 1e4  # gap reported when no car is ahead


class Traffic(NamedTuple):
    """N cars: ``s`` [N] (m along the loop), ``lane`` [N] int32, ``v`` [N], ``v0`` [N]."""

    s: jax.Array
    lane: jax.Array
    v: jax.Array
    v0: jax.Array


def num_slots(road: rd.Road) -> int:
    """Slots per lane for cars other than the near one."""
    return int((road.length - FAR - 40.0) // SLOT)


def max_cars(road: rd.Road) -> int:
    """The most cars ``reset`` can place on ``road`` with its minimum spacing."""
    return road.num_lanes * (num_slots(road) + 1)


def reset(key, road: rd.Road, ego_s, num_cars: int) -> Traffic:
    """Place ``num_cars`` cars: car j in lane ``j % lanes``; in each lane the first one starts
    20-150 m ahead of the ego (``ego_s``), the rest take distinct random slots round the loop
    (>= 30 m apart, >= 70 m behind the ego). Desired speeds uniform in ``SPEED_RANGE``; start
    speeds 80-100% of them."""
    if isinstance(num_cars, bool) or not isinstance(num_cars, int) or num_cars < 0:
        raise ValueError(f"num_cars must be an int >= 0, got {num_cars!r}")
    if num_cars > max_cars(road):
        raise ValueError(f"num_cars must be <= {max_cars(road)} on this road, got {num_cars}")
    nl, m = road.num_lanes, num_slots(road)
    k_near, k_perm, k_jit, k_v0, k_v = jax.random.split(key, 5)
    j = jnp.arange(num_cars)
    lane, rank = j % nl, j // nl
    perms = jax.vmap(lambda k: jax.random.permutation(k, m))(jax.random.split(k_perm, nl))
    slot = perms[lane, jnp.maximum(rank - 1, 0)]
    far = FAR + slot * SLOT + jax.random.uniform(k_jit, (num_cars,), maxval=JITTER)
    near = jax.random.uniform(k_near, (num_cars,), minval=NEAR_AHEAD[0], maxval=NEAR_AHEAD[1])
    s = rd.wrap_s(road, ego_s + jnp.where(rank == 0, near, far))
    v0 = jax.random.uniform(k_v0, (num_cars,), minval=SPEED_RANGE[0], maxval=SPEED_RANGE[1])
    v = v0 * jax.random.uniform(k_v, (num_cars,), minval=0.8, maxval=1.0)
    return Traffic(s, lane.astype(jnp.int32), v, v0)


def idm_accel(v, v0, gap, dv):
    """IDM acceleration for speed ``v``, desired ``v0``, bumper gap, approach rate ``dv``."""
    s_star = MIN_GAP + jnp.maximum(0.0, v * HEADWAY + v * dv / (2 * (IDM_ACCEL * IDM_DECEL) ** 0.5))
    ratio = s_star / jnp.maximum(gap, 0.1)
    a = IDM_ACCEL * (1 - (v / v0) ** 4 - ratio**2)
    return jnp.maximum(a, -EMERGENCY_BRAKE)


def in_lanes(d, num_lanes: int, half_width: float = WIDTH / 2):
    """[..., lanes] bool: which lanes a car at offset ``d`` reaches into (its half-width)."""
    centres = rd.lane_center(jnp.arange(num_lanes), num_lanes)
    return jnp.abs(jnp.asarray(d)[..., None] - centres) < rd.LANE_WIDTH / 2 + half_width


def leaders(road: rd.Road, s, d, lane, cand_s, cand_v, cand_lanes, exclude=None):
    """Gap to and speed of the nearest car ahead of each of ``s`` [N] (offset d, lane index).

    Candidates: ``cand_s``/``cand_v`` [C] with ``cand_lanes`` [C, lanes] (which lanes each
    occupies); ``exclude`` [N, C] masks pairs out (a car is not its own leader). Distance is
    measured round the loop along each follower's lane; no leader gives ``gap = FREE`` and
    the follower's own speed.
    """
    valid = cand_lanes[:, lane].T  # [N, C]
    if exclude is not None:
        valid = valid & ~exclude
    ahead = jnp.mod(cand_s[None, :] - s[:, None], road.length)
    ahead = jnp.where(valid, ahead, jnp.inf)
    if ahead.shape[1] == 0:
        return jnp.full(s.shape, FREE), jnp.zeros(s.shape)
    j = jnp.argmin(ahead, 1)
    found = jnp.isfinite(jnp.min(ahead, 1))
    gap = rd.lane_distance(road, s, cand_s[j], d) - LENGTH
    return jnp.where(found, gap, FREE), jnp.where(found, cand_v[j], jnp.nan)


def step(road: rd.Road, traffic: Traffic, ego_s, ego_d, ego_v, dt: float) -> Traffic:
    """Advance ``dt`` seconds: IDM accelerations (the ego a possible leader), ballistic update."""
    n, nl = traffic.s.shape[0], road.num_lanes
    d = rd.lane_center(traffic.lane, nl)
    cand_s = jnp.concatenate([traffic.s, jnp.reshape(ego_s, (1,))])
    cand_v = jnp.concatenate([traffic.v, jnp.reshape(ego_v, (1,))])
    own = jax.nn.one_hot(traffic.lane, nl, dtype=bool)
    cand_lanes = jnp.concatenate([own, in_lanes(jnp.reshape(ego_d, (1,)), nl)])
    exclude = jnp.concatenate([jnp.eye(n, dtype=bool), jnp.zeros((n, 1), bool)], 1)
    gap, lead_v = leaders(road, traffic.s, d, traffic.lane, cand_s, cand_v, cand_lanes, exclude)
    dv = jnp.where(jnp.isnan(lead_v), 0.0, traffic.v - lead_v)
    a = idm_accel(traffic.v, traffic.v0, gap, dv)
    v1 = traffic.v + a * dt
    dist = jnp.where(
        v1 < 0, -(traffic.v**2) / (2 * jnp.minimum(a, -1e-6)), traffic.v * dt + a * dt**2 / 2
    )
    ds = dist / (1 - rd.curvature(road, traffic.s) * d)
    return traffic._replace(s=rd.wrap_s(road, traffic.s + ds), v=jnp.maximum(v1, 0.0))


def same_lane_gaps(road: rd.Road, traffic: Traffic):
    """[N] bumper gap from each traffic car to the next traffic car ahead in its lane."""
    n, nl = traffic.s.shape[0], road.num_lanes
    own = jax.nn.one_hot(traffic.lane, nl, dtype=bool)
    d = rd.lane_center(traffic.lane, nl)
    gap, _ = leaders(
        road, traffic.s, d, traffic.lane, traffic.s, traffic.v, own, jnp.eye(n, dtype=bool)
    )
    return gap


def poses(road: rd.Road, traffic: Traffic):
    """World centre positions [N, 2] and yaws [N] of the traffic cars."""
    return rd.point(road, traffic.s, rd.lane_center(traffic.lane, road.num_lanes))
