"""The ray caster: nearest hits per primitive type, shading, hard shadows, fog, sky.

One environment per call (vmap for batches). Intersections run per primitive type over
``[geoms of that type, rays]`` with rays moved into each geom's local frame by broadcasting; the
loop over types is static Python. Primary rays share their origin and shadow rays share their
direction, so one side of every transform is per geom only. Distance and geom index are packed
into one int32 so the nearest hit is a single integer min; shadow rays only need "any hit".
Attributes of the nearest geom are gathered column by column from small per-geom tables, and
normals and textures are evaluated for that hit only. Performance notes for XLA on CPU are
kept next to the code they explain (``_fence``, the column gathers).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from pvm_mbrl.render import camera, primitives, textures
from pvm_mbrl.render import geometry as g
from pvm_mbrl.render.geometry import SceneGeometry
from pvm_mbrl.render.params import SceneParams

# Distance (metres) at which fog is applied to the sky.
SKY_DISTANCE = 20.0
# Shadow-ray start offset back along the view ray: absolute plus relative to the distance.
_SHADOW_EPS = 1e-3


@struct.dataclass
class SurfaceHit:
    """What a ``paint`` function (:func:`render`) sees of each pixel's nearest hit, ``[N]``
    arrays: ``point`` the world position (tuple of x, y, z), ``index`` the drawn index of the
    geom (-1: sky), ``footprint`` the width in metres that one pixel spans across at the hit
    (distance times the pixel's angle), ``facing`` |cos| of the angle between the view ray and
    the surface normal (a pixel covers ``footprint / facing`` along the surface)."""

    point: tuple
    index: jnp.ndarray
    footprint: jnp.ndarray
    facing: jnp.ndarray


@struct.dataclass
class RenderOutput:
    """rgb uint8 ``[H, W, 3]``; depth float32 ``[H, W]`` metres along the ray (+inf for sky);
    segmentation int32 ``[H, W]`` with the MuJoCo geom id (-1 for sky)."""

    rgb: jnp.ndarray
    depth: jnp.ndarray
    segmentation: jnp.ndarray


def _local(v, mat):
    """Components of ``mat^T v`` per geom; ``mat`` is ``[Gt, 3, 3]``, results ``[Gt, N]``."""
    m = mat[:, :, :, None]
    return tuple(v[0] * m[:, 0, c] + v[1] * m[:, 1, c] + v[2] * m[:, 2, c] for c in range(3))


def _group_t(group, pos, mat, origin, dirs):
    """Distances ``[Gt, N]`` (or ``[Gt, 1]``) for one type group; rays on the last axis.

    ``origin`` and ``dirs`` are component tuples, each either shared by all rays (scalars) or
    per ray (``[N]`` arrays); geoms are on the leading axis.
    """
    p = pos[:, :, None]
    rel = tuple(origin[i] - p[:, i] for i in range(3))
    size = tuple(group.size[:, k, None] for k in range(3))
    if group.geom_type == g.SPHERE:  # rotation-invariant: stay in the world frame
        lo, ld = rel, tuple(jnp.asarray(c) for c in dirs)
    else:
        lo, ld = _local(rel, mat), _local(dirs, mat)
    return primitives.KERNELS[group.geom_type](lo, ld, size)


def _fence(x, gate):
    """Returns ``x`` through a one-trip loop whose trip count XLA cannot know at compile time.

    XLA's CPU fusion recomputes cheap elementwise producers inside every consumer; when a value
    that ends the intersection pass feeds many per-pixel and per-shadow-ray consumers, that
    multiplies the work. A loop is a fusion boundary, so the value is computed once and stored.
    ``gate`` is any traced scalar that is never NaN (the trip count is ``gate == gate``).
    """
    one = (gate == gate).astype(jnp.int32)
    # The barrier keeps XLA's while-loop simplifier from forwarding the loop-invariant ``x``
    # past the loop (which would delete the loop and with it the fusion boundary).
    body = lambda c: (c[0] + 1, jax.lax.optimization_barrier(c[1]))  # noqa: E731
    _, x = jax.lax.while_loop(lambda c: c[0] < one, body, (0, x))
    return x


def _index_bits(geom) -> int:
    return max(1, int(np.ceil(np.log2(geom.num_drawn + 1))))


def _nearest(geom, xpos, xmat, origin, dirs, n):
    """Nearest distance and drawn index per ray.

    Distance and index are packed into one int32 (non-negative floats order like their bit
    patterns; the low mantissa bits carry the drawn index), so the nearest hit over all geoms is
    a plain integer min. The distance loses ``_index_bits`` mantissa bits (relative 2^(bits-24)).
    """
    bits = _index_bits(geom)
    mask = np.int32(-(1 << bits))
    keys = []
    for group in geom.groups:
        t = _group_t(group, xpos[group.geom_ids], xmat[group.geom_ids], origin, dirs)
        t = jnp.broadcast_to(t, (len(group.geom_ids), n))
        key = jax.lax.bitcast_convert_type(t.astype(jnp.float32), jnp.int32)
        # max(., 0) maps a -0.0 distance (origin exactly on a surface) to +0.0.
        key = (jnp.maximum(key, 0) & mask) | jnp.asarray(group.drawn_index, jnp.int32)[:, None]
        keys.append(key)
    best = jnp.min(jnp.concatenate(keys, axis=0), axis=0)
    best = _fence(best, dirs[0][0])
    miss = best >= np.int32(0x7F800000)
    idx = jnp.where(miss, -1, best & np.int32((1 << bits) - 1))
    t = jax.lax.bitcast_convert_type(best & mask, jnp.float32)
    return jnp.where(miss, jnp.inf, t), idx


def _occluded(geom, xpos, xmat, origin, dirs, n):
    """Whether each ray hits any drawn geom (shadow rays share one direction)."""
    ts = []
    for group in geom.groups:
        t = _group_t(group, xpos[group.geom_ids], xmat[group.geom_ids], origin, dirs)
        ts.append(jnp.broadcast_to(t, (len(group.geom_ids), n)))
    return jnp.min(jnp.concatenate(ts, axis=0), axis=0) < jnp.inf


def _dot(a, b):
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _headlight(params, model_cam_mat, d, nw, t):
    """Irradiance ``[N]`` of a car's low beams, as one light at the camera aimed along the model
    camera's view axis (fixed to the body that carries the camera, so camera shifts do not turn
    it). The beam is wide and flat, as low beams are: Gaussian in the tangents of the angles
    off the axis, 0.5 across and 0.15 down from an aim 0.05 below it (about 27 and 9 degrees),
    so it lights the road from ~5 m on, not the bonnet. An inverse-square fall-off halves it at
    ``headlight_range`` metres, times Lambert's cosine. No shadow ray is needed: every surface
    the camera sees is in the light's line of sight."""
    ahead = jnp.maximum(-_dot(d, model_cam_mat[:, 2]), 1e-6)
    x = _dot(d, model_cam_mat[:, 0]) / ahead
    y = _dot(d, model_cam_mat[:, 1]) / ahead + 0.05
    beam = jnp.where(ahead > 1e-3, jnp.exp(-((x / 0.5) ** 2) - (y / 0.15) ** 2), 0.0)
    falloff = 1.0 / (1.0 + (t / params.headlight_range) ** 2)
    return beam * falloff * jnp.maximum(-_dot(nw, d), 0.0)


def _check_inputs(geom, geom_xpos, geom_xmat, cam_pos, cam_mat, height, width):
    if not isinstance(geom, SceneGeometry):
        raise TypeError(f"geom must be a SceneGeometry, got {type(geom).__name__}")
    if int(height) <= 0 or int(width) <= 0:
        raise ValueError(f"height and width must be positive, got {height}x{width}")
    if tuple(geom_xpos.shape) != (geom.ngeom, 3):
        raise ValueError(f"geom_xpos must be [{geom.ngeom}, 3], got {tuple(geom_xpos.shape)}")
    if tuple(geom_xmat.shape) not in ((geom.ngeom, 3, 3), (geom.ngeom, 9)):
        raise ValueError(f"geom_xmat must be [{geom.ngeom}, 3, 3], got {tuple(geom_xmat.shape)}")
    if tuple(cam_pos.shape) != (3,):
        raise ValueError(f"cam_pos must be [3], got {tuple(cam_pos.shape)}")
    if tuple(cam_mat.shape) not in ((3, 3), (9,)):
        raise ValueError(f"cam_mat must be [3, 3], got {tuple(cam_mat.shape)}")


def render(
    geom: SceneGeometry,
    params: SceneParams,
    geom_xpos: jax.Array,
    geom_xmat: jax.Array,
    cam_pos: jax.Array,
    cam_mat: jax.Array,
    *,
    height: int,
    width: int,
    shadows: bool = True,
    paint=None,
    sky_distance: float = SKY_DISTANCE,
) -> RenderOutput:
    """Renders one image of the drawn geoms (see module and ``RenderOutput`` docs).

    ``geom_xpos``/``geom_xmat`` are ``mjx.Data.geom_xpos``/``geom_xmat`` (all model geoms);
    ``cam_pos``/``cam_mat`` are ``mjx.Data.cam_xpos[i]``/``cam_xmat[i]``.
    ``paint(params, hit, albedo) -> albedo`` (static; ``hit`` a :class:`SurfaceHit`, ``albedo``
    ``[N, 3]``) recolours surfaces after the textures, before lighting: a scene's own pattern
    in world coordinates, such as a road's lane markings on a ground plane. ``sky_distance``
    (metres) is how far away the sky counts for the fog.
    """
    _check_inputs(geom, geom_xpos, geom_xmat, cam_pos, cam_mat, height, width)
    n = int(height) * int(width)
    xpos = jnp.asarray(geom_xpos, jnp.float32)
    xmat = jnp.asarray(geom_xmat, jnp.float32).reshape(-1, 3, 3)
    model_cam_mat = jnp.asarray(cam_mat, jnp.float32).reshape(3, 3)
    cam_pos, cam_mat = camera.apply_offsets(
        jnp.asarray(cam_pos, jnp.float32),
        model_cam_mat,
        params.cam_pos_offset,
        params.cam_rot_offset,
    )
    d = camera.world_dirs(int(height), int(width), params.fovy, cam_mat)
    origin = (cam_pos[0], cam_pos[1], cam_pos[2])
    t, idx = _nearest(geom, xpos, xmat, origin, d, n)
    hit = idx >= 0
    t_hit = jnp.where(hit, t, 0.0)

    # Per-geom attributes of the hit geom: one scalar gather per attribute column (on CPU much
    # faster than gathering whole rows and slicing them), stacked so that XLA computes them in
    # one pass.
    ids = geom.geom_ids
    xpos_d, xmat_d = xpos[ids], xmat[ids]
    ii = jnp.maximum(idx, 0)
    columns = [
        *(xpos_d[:, i] for i in range(3)),
        *(xmat_d[:, i, c] for i in range(3) for c in range(3)),
        *(jnp.asarray(geom.geom_size[:, k]) for k in range(3)),
        jnp.asarray(geom.geom_type, jnp.float32),
        *(params.geom_rgb[:, c] for c in range(3)),
        *(params.texture_rgb[:, c] for c in range(3)),
        params.texture_scale,
        params.texture_mix,
        params.texture_id.astype(jnp.float32),
        jnp.asarray(ids, jnp.float32),
    ]
    col = jnp.stack([c.astype(jnp.float32).at[ii].get(mode="promise_in_bounds") for c in columns])
    pos = (col[0], col[1], col[2])
    rot = [[col[3 + 3 * i + c] for c in range(3)] for i in range(3)]
    size = (col[12], col[13], col[14])
    gtype = col[15]
    tscale, tmix, tid, gid = col[22], col[23], col[24], col[25]

    ph = tuple(origin[i] + t_hit * d[i] for i in range(3))
    rel = tuple(ph[i] - pos[i] for i in range(3))
    pl = tuple(sum(rel[i] * rot[i][c] for i in range(3)) for c in range(3))
    pl = (pl[0], pl[1], jnp.where(gtype == g.PLANE, 0.0, pl[2]))
    nl = primitives.local_normal(pl, size, gtype)
    nw = tuple(sum(rot[i][c] * nl[c] for c in range(3)) for i in range(3))
    facing = jnp.where(_dot(nw, d) > 0, -1.0, 1.0)
    nw = tuple(c * facing for c in nw)

    ldir = params.light_dir / jnp.linalg.norm(params.light_dir)
    to_light = (-ldir[0], -ldir[1], -ldir[2])
    ndl = jnp.maximum(_dot(nw, to_light), 0.0)
    half = tuple(to_light[i] - d[i] for i in range(3))
    half = tuple(c / jnp.sqrt(jnp.maximum(_dot(half, half), 1e-20)) for c in half)
    ndh = jnp.maximum(_dot(nw, half), 0.0)
    spec = params.specular * jnp.where(ndl > 0, ndh**params.shininess, 0.0)

    if shadows:
        # Start just in front of the hit along the view ray: cheap (no normal needed) and
        # outside the surface; surfaces facing away from the light get no direct light anyway.
        back = t_hit - _SHADOW_EPS * (1.0 + t_hit)
        so = _fence(tuple(origin[i] + back * d[i] for i in range(3)), back[0])
        lit = ~_occluded(geom, xpos, xmat, so, to_light, n) & hit
        lit = lit.astype(jnp.float32)
    else:
        lit = 1.0

    w = textures.pattern(pl, tid, tscale) * tmix
    rgb, trgb = col[16:19].T, col[19:22].T
    albedo = rgb + (trgb - rgb) * w[:, None]
    if paint is not None:
        pixel_angle = 2.0 * jnp.tan(jnp.deg2rad(params.fovy) / 2.0) / int(height)
        facing = jnp.maximum(jnp.abs(_dot(nw, d)), 1e-3)
        albedo = paint(params, SurfaceHit(ph, idx, t_hit * pixel_angle, facing), albedo)
    light = params.light_rgb * params.light_intensity
    diffuse = params.ambient + light * (ndl * lit)[:, None]
    diffuse = (
        diffuse + _headlight(params, model_cam_mat, d, nw, t_hit)[:, None] * params.headlight_rgb
    )
    color = albedo * diffuse + light * (spec * lit)[:, None]
    color = jnp.where(hit[:, None], color, textures.background(d, params))
    dist = jnp.where(hit, t, sky_distance)
    fog = jnp.exp(-params.fog_density * dist)[:, None]
    color = color * fog + params.fog_rgb * (1.0 - fog)
    img = jnp.round(jnp.clip(color, 0.0, 1.0) * 255.0).astype(jnp.uint8)
    seg = jnp.where(hit, gid.astype(jnp.int32), -1)
    shape = (int(height), int(width))
    return RenderOutput(
        rgb=img.reshape(*shape, 3),
        depth=jnp.where(hit, t, jnp.inf).astype(jnp.float32).reshape(shape),
        segmentation=seg.astype(jnp.int32).reshape(shape),
    )
