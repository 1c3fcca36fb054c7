"""The highway task's simulation: ego bicycle + IDM traffic on the loop, reward, state obs.

Pure functions over a ``SimState`` (jit/vmap-friendly, float32, deterministic for a key):

    state = reset(key, config)
    state = step(state, action, config)      # action [steer, throttle] in [-1, 1]^2
    obs = state_obs(state, config)           # float32 [OBS_SIZE]

Each step moves the ego (``vehicle.step``), then the traffic (``traffic.step``, which sees the
ego's new position), then checks for a collision (the separating-axis test between the ego's
and each car's oriented 4.5 x 1.9 m rectangles) and a road exit (the ego's centre more than
``exit_margin`` past the outer lane edge, onto the shoulder). ``done`` is sticky; the caller
resets. The reward is in the spirit of the CARLA highway task of pixel-based MBRL studies:
progress along the road capped at the target speed (1 per step at the target speed), minus
lane-centre offset, heading-error and steering-change penalties, and a one-off penalty for a
collision or a road exit, which end the episode (see ``reward``).

``Config(split=...)``: "train" (the 2.9 km loop, 12 cars), "dense" (24 cars), "curvy" (the
held-out 2.05 km loop with 100-130 m bends, 12 cars).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pvm_mbrl.envs.driving import road as rd
from pvm_mbrl.envs.driving import traffic as tr
from pvm_mbrl.envs.driving import vehicle as vh

SPLITS = ("train", "dense", "curvy")
LOOKAHEAD = (10.0, 30.0, 60.0)  # m, where state_obs reads the road's curvature
GAP_CAP = 100.0  # m, state_obs caps gaps here
OBS_SIZE = 9 + 12


@dataclasses.dataclass(frozen=True)
class Config:
    """Static task settings (hashable: pass as a static argument).

    ``num_cars`` None picks the split's default (24 for "dense", else 12). Reward weights:
    ``w_lat`` per metre off the nearest lane centre, ``w_head`` per radian of heading error,
    ``w_steer`` per squared change of the steer action, ``crash_penalty`` once at a
    collision or road exit.
    """

    split: str = "train"
    num_cars: int | None = None
    num_lanes: int = rd.NUM_LANES
    target_speed: float = 25.0
    dt: float = 0.1
    substeps: int = 4
    exit_margin: float = 1.0
    w_lat: float = 0.1
    w_head: float = 0.5
    w_steer: float = 0.3
    crash_penalty: float = 50.0
    episode_steps: int = 1000  # the time limit an env layer should apply (100 s); unused here

    def __post_init__(self):
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.num_cars is not None and (
            isinstance(self.num_cars, bool)
            or not isinstance(self.num_cars, int)
            or self.num_cars < 0
        ):
            raise ValueError(f"num_cars must be None or an int >= 0, got {self.num_cars!r}")
        if (
            isinstance(self.num_lanes, bool)
            or not isinstance(self.num_lanes, int)
            or self.num_lanes < 3
        ):
            raise ValueError(f"num_lanes must be an int >= 3, got {self.num_lanes!r}")
        for name in ("substeps", "episode_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        for name in ("target_speed", "dt"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("exit_margin", "w_lat", "w_head", "w_steer", "crash_penalty"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.cars > tr.max_cars(self.road):
            raise ValueError(f"num_cars must be <= {tr.max_cars(self.road)}, got {self.cars}")

    @property
    def road(self) -> rd.Road:
        return rd.make_road(curvy=self.split == "curvy", num_lanes=self.num_lanes)

    @property
    def cars(self) -> int:
        """The number of traffic cars."""
        if self.num_cars is not None:
            return self.num_cars
        return 24 if self.split == "dense" else 12


class SimState(NamedTuple):
    """Ego, traffic, the last action, step count ``t`` and this step's outcome flags."""

    ego: vh.Vehicle
    traffic: tr.Traffic
    prev_action: jax.Array  # [2]
    t: jax.Array  # int32
    reward: jax.Array
    crashed: jax.Array  # bool: the ego's box met a traffic car's
    offroad: jax.Array  # bool
    done: jax.Array  # bool, sticky


def reset(key, config: Config) -> SimState:
    """Ego in a random lane (offset +-0.5 m, heading +-0.05 rad, 15-25 m/s); traffic placed
    round it (``traffic.reset``)."""
    road = config.road
    k_s, k_lane, k_d, k_yaw, k_v, k_tr = jax.random.split(key, 6)
    s = jax.random.uniform(k_s, (), maxval=road.length)
    lane = jax.random.randint(k_lane, (), 0, road.num_lanes)
    d = rd.lane_center(lane, road.num_lanes) + jax.random.uniform(k_d, (), minval=-0.5, maxval=0.5)
    xy, heading = rd.point(road, s, d)
    yaw = heading + jax.random.uniform(k_yaw, (), minval=-0.05, maxval=0.05)
    v = jax.random.uniform(k_v, (), minval=15.0, maxval=25.0)
    ego = vh.make(xy[0], xy[1], rd.heading_error(yaw, 0.0), v)
    f32, false = jnp.float32(0), jnp.bool_(False)
    traffic = tr.reset(k_tr, road, s, config.cars)
    return SimState(ego, traffic, jnp.zeros(2, jnp.float32), jnp.int32(0), f32, false, false, false)


def frenet(state: SimState, config: Config):
    """The ego's ``(s, d, heading error)``."""
    s, d, h = rd.project(config.road, jnp.stack([state.ego.x, state.ego.y]))
    return s, d, rd.heading_error(state.ego.yaw, h)


def boxes_overlap(c1, yaw1, c2, yaw2, length=vh.LENGTH, width=vh.WIDTH):
    """Separating-axis test for two oriented rectangles (broadcasting over leading axes)."""
    yaw1, yaw2 = jnp.broadcast_arrays(yaw1, yaw2)
    c1, c2 = jnp.broadcast_arrays(c1, c2)
    axes = jnp.stack(
        [
            jnp.stack([jnp.cos(y), jnp.sin(y)], -1)
            for y in (yaw1, yaw1 + jnp.pi / 2, yaw2, yaw2 + jnp.pi / 2)
        ],
        -2,
    )  # [..., 4, 2]
    half = jnp.array([length / 2, width / 2])

    def radius(yaw):
        u = jnp.stack([jnp.cos(yaw), jnp.sin(yaw)], -1)[..., None, :]
        w = jnp.stack([-jnp.sin(yaw), jnp.cos(yaw)], -1)[..., None, :]
        return half[0] * jnp.abs(jnp.sum(u * axes, -1)) + half[1] * jnp.abs(jnp.sum(w * axes, -1))

    dist = jnp.abs(jnp.sum((c2 - c1)[..., None, :] * axes, -1))
    return jnp.all(dist < radius(yaw1) + radius(yaw2), -1)


def reward(config: Config, v, d, head_err, action, prev_action, terminal):
    """``min(v cos(head_err), target) / target`` (progress, 1 per step at the target speed)
    ``- w_lat |d - nearest lane centre| - w_head |head_err| - w_steer (steer - prev steer)^2``
    ``- crash_penalty`` if ``terminal`` (a collision or a road exit)."""
    target = config.target_speed
    progress = jnp.clip(v * jnp.cos(head_err), -target, target) / target
    lane_off = d - rd.lane_center(rd.nearest_lane(d, config.num_lanes), config.num_lanes)
    r = progress - config.w_lat * jnp.abs(lane_off) - config.w_head * jnp.abs(head_err)
    r = r - config.w_steer * (action[0] - prev_action[0]) ** 2
    return (r - jnp.where(terminal, config.crash_penalty, 0.0)).astype(jnp.float32)


def check_action(action):
    """The action as float32 [2], clipped to [-1, 1]; ValueError on a wrong shape or dtype, and
    on NaN when the action is concrete (an eager call)."""
    if not isinstance(action, jax.core.Tracer) and not np.all(
        np.isfinite(np.asarray(action, float))
    ):
        raise ValueError(f"action must be finite, got {np.asarray(action)}")
    action = jnp.asarray(action)
    if action.shape != (2,):
        raise ValueError(f"action must have shape (2,) [steer, throttle], got {action.shape}")
    if not jnp.issubdtype(action.dtype, jnp.floating):
        raise ValueError(f"action must be a float array, got dtype {action.dtype}")
    return jnp.clip(action.astype(jnp.float32), -1.0, 1.0)


def step(state: SimState, action, config: Config) -> SimState:
    """One control step (``config.dt``): ego, traffic, collision/exit checks, reward."""
    action = check_action(action)
    road = config.road
    ego = vh.step(state.ego, action, config.dt, config.substeps)
    state = state._replace(ego=ego)
    s, d, head_err = frenet(state, config)
    traffic = tr.step(road, state.traffic, s, d, ego.v * jnp.cos(head_err), config.dt)
    xy, yaw = tr.poses(road, traffic)
    crashed = jnp.any(boxes_overlap(jnp.stack([ego.x, ego.y]), ego.yaw, xy, yaw))
    offroad = jnp.abs(d) > road.half_width + config.exit_margin
    terminal = (crashed | offroad) & ~state.done
    r = reward(config, ego.v, d, head_err, action, state.prev_action, terminal)
    return SimState(
        ego, traffic, action, state.t + 1, r, crashed, offroad, state.done | crashed | offroad
    )


def _lane_neighbours(state: SimState, config: Config, s, lane, v_along):
    """[3, 4]: for lanes (right, own, left): gap ahead, its relative speed, gap behind, its."""
    road, traffic = config.road, state.traffic
    d_cars = rd.lane_center(traffic.lane, config.num_lanes)
    fwd = rd.lane_distance(road, s, traffic.s, d_cars) - vh.LENGTH
    bwd = rd.lane_distance(road, traffic.s, s, d_cars) - vh.LENGTH
    lanes = lane + jnp.arange(-1, 2)
    exists = (lanes >= 0) & (lanes < config.num_lanes)
    mask = jnp.concatenate([traffic.lane[None, :] == lanes[:, None], jnp.ones((3, 1), bool)], 1)
    v_pad = jnp.concatenate([traffic.v, v_along[None]])

    def nearest(dist):
        dist = jnp.where(mask, jnp.concatenate([dist, jnp.array([GAP_CAP])])[None, :], jnp.inf)
        gap = jnp.clip(jnp.min(dist, 1), -vh.LENGTH, GAP_CAP)
        rel = jnp.where(gap < GAP_CAP, v_pad[jnp.argmin(dist, 1)] - v_along, 0.0)
        return gap / GAP_CAP, rel / 10.0

    out = jnp.stack([*nearest(fwd), *nearest(bwd)], 1)
    return jnp.where(exists[:, None], out, 0.0)


def state_obs(state: SimState, config: Config):
    """Privileged float32 [OBS_SIZE] observation, each entry of order 1:

    speed / target, offset from the nearest lane centre / half a lane, road offset / half
    width, heading error (rad), 100 x curvature 10/30/60 m ahead, last action (2), then for
    the lanes right of, at and left of the ego's (zeros where there is no lane): gap to the
    nearest car ahead / 100 m (capped), its speed minus the ego's / 10 m/s, the same behind.
    """
    s, d, head_err = frenet(state, config)
    lane = rd.nearest_lane(d, config.num_lanes)
    v_along = state.ego.v * jnp.cos(head_err)
    lane_off = d - rd.lane_center(lane, config.num_lanes)
    curv = rd.curvature(config.road, s + jnp.asarray(LOOKAHEAD)) * 100.0
    head = jnp.stack(
        [
            state.ego.v / config.target_speed,
            lane_off / (rd.LANE_WIDTH / 2),
            d / config.road.half_width,
            head_err,
        ]
    )
    near = _lane_neighbours(state, config, s, lane, v_along).reshape(-1)
    return jnp.concatenate([head, curv, state.prev_action, near]).astype(jnp.float32)


def cars_pose(state: SimState, config: Config):
    """World positions [N+1, 2] and yaws [N+1] of every car's box centre, the ego first."""
    xy, yaw = tr.poses(config.road, state.traffic)
    ego_xy = jnp.stack([state.ego.x, state.ego.y])[None]
    return jnp.concatenate([ego_xy, xy]), jnp.concatenate([state.ego.yaw[None], yaw])


def ego_camera(state: SimState, height: float = 1.4, forward: float = 0.3, pitch: float = 0.08):
    """A driver's-eye camera on the ego: position [3] and rotation [3, 3] in MuJoCo's camera
    convention (columns: the camera's x right, y up, z backward; it looks along -z), as
    ``pvm_mbrl.render`` takes. ``forward`` m ahead of the centre, ``height`` m up, pitched
    ``pitch`` rad down."""
    ego = state.ego
    cy, sy, cp, sp = jnp.cos(ego.yaw), jnp.sin(ego.yaw), jnp.cos(pitch), jnp.sin(pitch)
    look = jnp.stack([cp * cy, cp * sy, -sp])
    right = jnp.stack([sy, -cy, jnp.zeros_like(cy)])
    up = jnp.cross(right, look)
    pos = jnp.stack([ego.x + forward * cy, ego.y + forward * sy, jnp.full_like(cy, height)])
    return pos, jnp.stack([right, up, -look], -1)
