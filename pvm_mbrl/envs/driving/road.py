"""A closed-loop one-way multi-lane highway, in the spirit of CARLA's Town04 loop.

The loop's reference line (the road's centre line) is a chain of straight and circular-arc
segments, counter-clockwise, that closes on itself in position and heading: an episode never
runs out of road. Frenet coordinates ``(s, d)``: ``s`` is arc length along the reference line
(wrapped modulo the loop length ``road.length``), ``d`` the lateral offset, positive to the
left. Lanes are numbered from the right: lane 0 is the rightmost, its centre at
``lane_center(0)`` < 0. Straight/arc geometry is the textbook clothoid-free road model (a
straight has curvature 0, an arc of radius R curvature +-1/R); positions on an arc use the
chord formula ``p(u) = p0 + u sinc(k u / 2) [cos, sin](h0 + k u / 2)``, exact for both kinds.

``make_road(curvy=False)`` is the training loop (bends of radius 200-300 m, 2.9 km);
``curvy=True`` is a held-out loop with bends of 100-130 m (2.05 km). All functions are
pure JAX (float32) and branch-free over the handful of segments, so ``project`` can run per
pixel under ``vmap``.
"""

from __future__ import annotations

import dataclasses
import functools

import jax.numpy as jnp
import numpy as np

LANE_WIDTH = 3.5
NUM_LANES = 3
SHOULDER_WIDTH = 2.5
ROAD_HALF_WIDTH = NUM_LANES * LANE_WIDTH / 2  # centre line to the outer lane edge, 3 lanes

# Segment specs: "S<length>" or "A<radius>/<turn in degrees; + left, - right>". The two
# straights at _FREE are stretched to close the loop exactly.
_TRAIN = "S300 A250/90 S50 A300/25 A300/-25 S100 A200/90 S250 A280/60 A220/30 S450 A200/90"
_CURVY = "S200 A100/90 S100 A120/45 A100/-45 S80 A110/90 S200 A100/60 A130/-30 A100/60 S300 A120/90"
_FREE = (0, 5)  # the straights heading along +x and +y


@dataclasses.dataclass(frozen=True, eq=False)
class Road:
    """Static loop geometry (numpy float64 arrays over K segments; hashed by identity).

    ``start_xy`` [K, 2], ``start_heading`` [K] (rad), ``seg_length`` [K] (m), ``curvature``
    [K] (1/m, + left), ``start_s`` [K] (arc length at each segment's start), ``length`` (the
    loop's total length), ``num_lanes``, ``curvy``.
    """

    start_xy: np.ndarray
    start_heading: np.ndarray
    seg_length: np.ndarray
    curvature: np.ndarray
    start_s: np.ndarray
    length: float
    num_lanes: int
    curvy: bool

    @property
    def half_width(self) -> float:
        """Centre line to the outer edge of the outermost lane (m)."""
        return self.num_lanes * LANE_WIDTH / 2


def _chord(h0, k, u):
    """Displacement and end heading after arc length ``u`` from heading ``h0``, curvature k."""
    half = k * u / 2
    c = u * jnp.sinc(half / jnp.pi)
    return jnp.stack([c * jnp.cos(h0 + half), c * jnp.sin(h0 + half)], -1), h0 + 2 * half


def _layout(spec):
    """Integrate a segment spec: arrays of start points, headings, lengths, curvatures."""
    lengths, curv = [], []
    for seg in spec:
        if seg[0] == "S":
            lengths.append(float(seg[1:]))
            curv.append(0.0)
        else:
            radius, deg = (float(x) for x in seg[1:].split("/"))
            lengths.append(radius * abs(np.radians(deg)))
            curv.append(np.sign(deg) / radius)
    lengths, curv = np.array(lengths), np.array(curv)
    xy, h, pts, heads = np.zeros(2), 0.0, [], []
    for length, k in zip(lengths, curv):
        pts.append(xy.copy())
        heads.append(h)
        if k == 0:
            xy = xy + length * np.array([np.cos(h), np.sin(h)])
        else:
            xy = (
                xy
                + np.array([np.sin(h + k * length) - np.sin(h), np.cos(h) - np.cos(h + k * length)])
                / k
            )
        h += k * length
    return np.array(pts), np.array(heads), lengths, curv, xy, h


@functools.cache
def make_road(curvy: bool = False, num_lanes: int = NUM_LANES) -> Road:
    """The training loop, or with ``curvy=True`` the held-out loop with tighter bends.

    Cached: the same arguments give the same (identity-hashed) ``Road``.
    """
    if isinstance(num_lanes, bool) or not isinstance(num_lanes, int | np.integer):
        raise ValueError(f"num_lanes must be an int, got {num_lanes!r}")
    if num_lanes < 3:
        raise ValueError(f"num_lanes must be >= 3, got {num_lanes}")
    spec = (_CURVY if curvy else _TRAIN).split()
    *_, end, h_end = _layout(spec)
    assert abs(h_end - 2 * np.pi) < 1e-9, "the loop's turns must sum to 360 degrees"
    for i, delta in zip(_FREE, -end):  # free straights head along +x and +y: close the gap
        spec[i] = f"S{float(spec[i][1:]) + float(delta)!r}"
        assert float(spec[i][1:]) > 50, "closing straight too short"
    pts, heads, lengths, curv, end, _ = _layout(spec)
    assert np.allclose(end, 0, atol=1e-6)
    starts = np.concatenate([[0.0], np.cumsum(lengths)[:-1]])
    return Road(pts, heads, lengths, curv, starts, float(lengths.sum()), int(num_lanes), curvy)


def lane_center(i, num_lanes: int = NUM_LANES):
    """Lateral offset (m) of lane ``i``'s centre; lane 0 is the rightmost."""
    return (jnp.asarray(i, jnp.float32) - (num_lanes - 1) / 2) * LANE_WIDTH


def nearest_lane(d, num_lanes: int = NUM_LANES):
    """Index (int32) of the lane whose centre is nearest to offset ``d``."""
    i = jnp.round(jnp.asarray(d, jnp.float32) / LANE_WIDTH + (num_lanes - 1) / 2)
    return jnp.clip(i, 0, num_lanes - 1).astype(jnp.int32)


def wrap_s(road: Road, s):
    """Arc length wrapped into ``[0, road.length)``."""
    return jnp.mod(jnp.asarray(s, jnp.float32), road.length)


def _segment(road: Road, s):
    """Index of the segment holding wrapped arc length ``s`` (branch-free count)."""
    starts = jnp.asarray(road.start_s[1:], jnp.float32)
    return jnp.sum(s[..., None] >= starts, -1)


def point(road: Road, s, d=0.0):
    """World position [..., 2] and tangent heading [...] at arc length ``s``, offset ``d``."""
    s = wrap_s(road, s)
    d = jnp.asarray(d, jnp.float32)
    i = _segment(road, s)
    u = s - jnp.asarray(road.start_s, jnp.float32)[i]
    h0 = jnp.asarray(road.start_heading, jnp.float32)[i]
    k = jnp.asarray(road.curvature, jnp.float32)[i]
    disp, h = _chord(h0, k, u)
    normal = jnp.stack([-jnp.sin(h), jnp.cos(h)], -1)
    xy = jnp.asarray(road.start_xy, jnp.float32)[i] + disp + d[..., None] * normal
    return xy, jnp.mod(h, 2 * jnp.pi)


def curvature(road: Road, s):
    """Reference-line curvature (1/m, + left) at arc length ``s``."""
    return jnp.asarray(road.curvature, jnp.float32)[_segment(road, wrap_s(road, s))]


def project(road: Road, xy):
    """Nearest point on the reference line to ``xy`` [..., 2]: ``(s, d, heading)``.

    Exact per segment (a straight: clamp the along-track coordinate; an arc: the angle about
    its centre, clamped to the arc), then the nearest of the K candidates.
    """
    xy = jnp.asarray(xy, jnp.float32)[..., None, :]  # [..., 1, 2] against K segments
    p0 = jnp.asarray(road.start_xy, jnp.float32)
    h0 = jnp.asarray(road.start_heading, jnp.float32)
    k = jnp.asarray(road.curvature, jnp.float32)
    length = jnp.asarray(road.seg_length, jnp.float32)
    rel = xy - p0
    t0 = jnp.stack([jnp.cos(h0), jnp.sin(h0)], -1)
    n0 = jnp.stack([-jnp.sin(h0), jnp.cos(h0)], -1)
    straight = jnp.abs(k) < 1e-9
    u_straight = jnp.sum(rel * t0, -1)
    # Arc: angle swept from the start point as seen from the centre (wrapped about mid-arc).
    ks = jnp.where(straight, 1.0, k)
    r = rel - n0 / ks[:, None]  # from the centre
    start = -n0 / ks[:, None]  # the start point, from the centre
    cross = start[..., 0] * r[..., 1] - start[..., 1] * r[..., 0]
    ang = jnp.arctan2(cross, jnp.sum(start * r, -1)) * jnp.sign(ks)
    sweep = jnp.abs(ks) * length
    ang = jnp.mod(ang - sweep / 2 + jnp.pi, 2 * jnp.pi) - jnp.pi + sweep / 2
    u = jnp.where(straight, u_straight, ang / jnp.abs(ks))
    u = jnp.clip(u, 0.0, length)
    disp, h = _chord(h0, k, u)
    foot = p0 + disp
    off = xy - foot
    dist2 = jnp.sum(off * off, -1)
    best = jnp.argmin(dist2, -1)
    take = lambda a: jnp.take_along_axis(a, best[..., None], -1)[..., 0]  # noqa: E731
    hb = take(h)
    d = take(off[..., 1]) * jnp.cos(hb) - take(off[..., 0]) * jnp.sin(hb)
    s = wrap_s(road, jnp.asarray(road.start_s, jnp.float32)[best] + take(u))
    return s, d, jnp.mod(hb, 2 * jnp.pi)


def _heading(road: Road, s):
    """Unwrapped tangent heading in ``[0, 2 pi)`` at wrapped arc length ``s``."""
    i = _segment(road, s)
    u = s - jnp.asarray(road.start_s, jnp.float32)[i]
    k = jnp.asarray(road.curvature, jnp.float32)[i]
    return jnp.asarray(road.start_heading, jnp.float32)[i] + k * u


def lane_distance(road: Road, s_from, s_to, d):
    """Distance (m) driven along the parallel at offset ``d`` from ``s_from`` forward to ``s_to``.

    Going round the loop: ``ds`` is ``(s_to - s_from) mod length`` and the parallel's length is
    ``ds - d * (heading change)`` (exact for any curvature, since d(heading)/ds = curvature).
    """
    s_from, s_to = wrap_s(road, s_from), wrap_s(road, s_to)
    ds = jnp.mod(s_to - s_from, road.length)
    turn = _heading(road, s_to) - _heading(road, s_from) + jnp.where(s_to < s_from, 2 * jnp.pi, 0)
    return ds - jnp.asarray(d, jnp.float32) * turn


def heading_error(yaw, road_heading):
    """``yaw - road_heading`` wrapped into ``[-pi, pi)``."""
    return jnp.mod(yaw - road_heading + jnp.pi, 2 * jnp.pi) - jnp.pi
