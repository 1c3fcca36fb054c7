"""What the highway's front camera sees: the scene's geoms, where they stand, and the road
painted on the ground.

The ground is one infinite plane. The road on it (asphalt, shoulders, dashed lane dividers, solid
edge lines) and the grass verges are painted per pixel from the hit point's Frenet coordinates
(``road.project``), so the road costs one geom however long it is. Each marking is box-filtered
over the pixel's footprint (across the line: the footprint; along it: the footprint over the
facing angle), so a 15 cm line 50 m away still shows at 64 px as a faint stripe instead of
flickering in and out.

Geoms: the ground, two boxes per traffic car (body and cabin), ``NUM_TREES`` trees (capsules)
on the verges and ``len(HILLS)`` far hills (ellipsoids) on the horizon. Trees stand in slots
that tile the loop (``slot_spacing``); the ``NUM_TREES`` slots around the ego are drawn, each
at a side and offset fixed by its slot number, so they stay put in the world as the ego passes
and make its motion visible.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from pvm_mbrl.envs.driving import road as rd
from pvm_mbrl.envs.driving import traffic as tr
from pvm_mbrl.envs.driving import vehicle as vh
from pvm_mbrl.render import textures

FOVY = 90.0  # degrees, as CARLA's default front camera (square image: also horizontal)
NUM_TREES = 16
TREES_BEHIND = 2  # slots drawn behind the ego
TREE_SPACING = 18.0  # metres between slots (stretched so that whole slots tile the loop)
TREE_RADIUS, TREE_HALF = 1.6, 2.2  # capsule radius and half-length of its axis (m)
TREE_SETBACK = (4.0, 18.0)  # range of a tree's distance beyond the shoulder (m)
# Far hills: (angle around the loop's centre in degrees, distance (m), half sizes (m)).
HILLS = (
    (10, 2600, (700, 500, 260)),
    (80, 2400, (500, 700, 200)),
    (150, 2800, (800, 600, 320)),
    (230, 2500, (600, 600, 220)),
    (300, 2700, (700, 800, 280)),
)
BODY = (vh.LENGTH / 2, vh.WIDTH / 2, 0.45)  # half sizes of a car's body, centre 0.2 m up
CABIN = (1.2, vh.WIDTH / 2 - 0.1, 0.3)  # half sizes of the cabin on top, 0.3 m back
CAR_COLOURS = (
    (0.75, 0.1, 0.1),
    (0.1, 0.25, 0.7),
    (0.85, 0.85, 0.85),
    (0.1, 0.1, 0.1),
    (0.8, 0.65, 0.1),
    (0.2, 0.5, 0.25),
)
ASPHALT = (0.22, 0.22, 0.23)
GRASS = (0.25, 0.42, 0.16)
GRASS_DARK = (0.16, 0.3, 0.1)
MARKING = (0.92, 0.92, 0.88)
MARKING_WIDTH = 0.15  # m
DASH, DASH_PERIOD = 3.0, 12.0  # lane dividers: 3 m painted in every 12 m
SHOULDER_TONE = 1.15  # the shoulders' asphalt is this much lighter than the lanes'


def build_xml(num_cars: int) -> str:
    """The scene's MJCF: geoms only (the task's physics is its own), placed by ``poses``."""
    geoms = ['<geom name="ground" type="plane" size="0 0 1" rgba="{} {} {} 1"/>'.format(*ASPHALT)]
    for i in range(num_cars):
        r, g, b = CAR_COLOURS[i % len(CAR_COLOURS)]
        geoms.append(
            f'<geom name="car{i}" type="box" size="{BODY[0]} {BODY[1]} {BODY[2]}" '
            f'pos="0 0 -50" rgba="{r} {g} {b} 1"/>'
        )
        geoms.append(
            f'<geom name="cabin{i}" type="box" size="{CABIN[0]} {CABIN[1]} {CABIN[2]}" '
            'pos="0 0 -50" rgba="0.12 0.14 0.18 1"/>'
        )
    for i in range(NUM_TREES):
        geoms.append(
            f'<geom name="tree{i}" type="capsule" size="{TREE_RADIUS} {TREE_HALF}" '
            'pos="0 0 -50" rgba="0.12 0.3 0.1 1"/>'
        )
    for i, (_, _, size) in enumerate(HILLS):
        geoms.append(
            f'<geom name="hill{i}" type="ellipsoid" size="{size[0]} {size[1]} {size[2]}" '
            'pos="0 0 -5000" rgba="0.3 0.38 0.3 1"/>'
        )
    body = "\n    ".join(geoms)
    return (
        '<mujoco model="highway"><worldbody>\n    '
        f'{body}\n    <camera name="front" pos="0 0 1.4" fovy="{FOVY}"/>\n'
        "</worldbody></mujoco>"
    )


def build_model(num_cars: int) -> mujoco.MjModel:
    return mujoco.MjModel.from_xml_string(build_xml(num_cars))


def _rot_z(yaw):
    c, s = jnp.cos(yaw), jnp.sin(yaw)
    z, o = jnp.zeros_like(c), jnp.ones_like(c)
    return jnp.stack(
        [jnp.stack([c, -s, z], -1), jnp.stack([s, c, z], -1), jnp.stack([z, z, o], -1)], -2
    )


def _hash(i, salt: int):
    """A fixed number in [0, 1) per integer in ``i`` (the trees' sides and offsets)."""
    base = jax.random.key(salt)
    return jax.vmap(lambda j: jax.random.uniform(jax.random.fold_in(base, j)))(i)


def slot_spacing(road: rd.Road) -> float:
    """Spacing of the tree slots: ``TREE_SPACING`` stretched so whole slots tile the loop."""
    return road.length / max(1, round(road.length / TREE_SPACING))


def tree_positions(road: rd.Road, ego_s):
    """World centres ``[NUM_TREES, 3]`` of the trees in the slots around ``ego_s``."""
    spacing = slot_spacing(road)
    slots_total = round(road.length / spacing)
    first = jnp.floor(ego_s / spacing).astype(jnp.int32) - TREES_BEHIND
    slot = jnp.mod(first + jnp.arange(NUM_TREES), slots_total)
    side = jnp.where(_hash(slot, 1) < 0.5, -1.0, 1.0)
    lo, hi = TREE_SETBACK
    edge = road.half_width + rd.SHOULDER_WIDTH + TREE_RADIUS
    d = side * (edge + lo + (hi - lo) * _hash(slot, 2))
    s = (slot.astype(jnp.float32) + 0.8 * _hash(slot, 3)) * spacing
    xy, _ = rd.point(road, s, d)
    z = jnp.full((NUM_TREES, 1), TREE_HALF + TREE_RADIUS * 0.6)
    return jnp.concatenate([xy, z], -1)


def hill_positions(road: rd.Road) -> np.ndarray:
    """World centres ``[len(HILLS), 3]`` of the far hills around the loop's centre."""
    centre = (road.start_xy.min(0) + road.start_xy.max(0)) / 2
    out = []
    for angle, dist, _ in HILLS:
        a = np.radians(angle)
        out.append([centre[0] + dist * np.cos(a), centre[1] + dist * np.sin(a), 0.0])
    return np.asarray(out, np.float32)


def poses(road: rd.Road, traffic: tr.Traffic, ego_s):
    """``(geom_xpos [G, 3], geom_xmat [G, 3, 3])`` of every geom of ``build_xml``'s model."""
    xy, yaw = tr.poses(road, traffic)
    n = xy.shape[0]
    fwd = jnp.stack([jnp.cos(yaw), jnp.sin(yaw)], -1)
    body = jnp.concatenate([xy, jnp.full((n, 1), 0.2 + BODY[2])], -1)
    cabin_xy = xy - 0.3 * fwd
    cabin = jnp.concatenate([cabin_xy, jnp.full((n, 1), 0.2 + 2 * BODY[2] + CABIN[2])], -1)
    car_pos = jnp.stack([body, cabin], 1).reshape(2 * n, 3)
    car_mat = jnp.repeat(_rot_z(yaw), 2, axis=0)
    eye = jnp.broadcast_to(jnp.eye(3), (NUM_TREES + len(HILLS) + 1, 3, 3))
    pos = jnp.concatenate(
        [jnp.zeros((1, 3)), car_pos, tree_positions(road, ego_s), jnp.asarray(hill_positions(road))]
    )
    mat = jnp.concatenate([eye[:1], car_mat, eye[1:]])
    return pos.astype(jnp.float32), mat.astype(jnp.float32)


def _coverage(x, lo, hi, width):
    """Fraction of the pixel interval ``[x - width/2, x + width/2]`` inside ``[lo, hi]``."""
    half = width / 2
    return jnp.clip((jnp.minimum(x + half, hi) - jnp.maximum(x - half, lo)) / width, 0.0, 1.0)


def _dashes(s, width):
    """Fraction of ``[s - width/2, s + width/2]`` on a painted dash (``DASH`` in every
    ``DASH_PERIOD`` metres): the exact box filter of the dash pattern."""

    def painted_up_to(x):
        return jnp.floor(x / DASH_PERIOD) * DASH + jnp.clip(jnp.mod(x, DASH_PERIOD), 0.0, DASH)

    half = width / 2
    return (painted_up_to(s + half) - painted_up_to(s - half)) / width


def road_colour(road: rd.Road, xy, asphalt, across, along):
    """Colour ``[N, 3]`` of the ground at points ``xy`` (tuple of ``[N]``) whose pixels span
    ``across`` metres across the road and ``along`` metres along it; ``asphalt`` ``[N, 3]``."""
    s, d, _ = rd.project(road, jnp.stack(xy, -1))
    hw = road.half_width
    paved = _coverage(d, -hw - rd.SHOULDER_WIDTH, hw + rd.SHOULDER_WIDTH, across)
    lanes = _coverage(d, -hw, hw, across)
    w = MARKING_WIDTH
    edges = _coverage(d, hw - 1.5 * w, hw - 0.5 * w, across)
    edges += _coverage(d, -hw + 0.5 * w, -hw + 1.5 * w, across)
    dividers = sum(
        _coverage(d, c - w / 2, c + w / 2, across)
        for c in (-hw + rd.LANE_WIDTH * i for i in range(1, road.num_lanes))
    )
    marked = jnp.clip(edges + dividers * _dashes(s, along), 0.0, 1.0)
    noise = textures.value_noise(xy[0] * 0.15, xy[1] * 0.15, 0.5)
    grass = jnp.asarray(GRASS) + (jnp.asarray(GRASS_DARK) - jnp.asarray(GRASS)) * noise[:, None]
    tarmac = asphalt * (SHOULDER_TONE + (1.0 - SHOULDER_TONE) * lanes)[:, None]
    colour = grass + (tarmac - grass) * paved[:, None]
    return colour + (jnp.asarray(MARKING) - colour) * marked[:, None]


def make_paint(road: rd.Road, ground: int):
    """The ``render.render`` paint function of the highway: the road on drawn geom ``ground``."""

    def paint(params, hit, albedo):
        del params
        across = jnp.maximum(hit.footprint, 1e-3)
        along = across / hit.facing
        on_ground = (hit.index == ground)[:, None]
        painted = road_colour(road, hit.point[:2], albedo, across, along)
        return jnp.where(on_ground, painted, albedo)

    return jax.named_call(paint, name="paint_road")
