"""Ray-primitive intersections and surface normals in a geom's local frame.

Vectors are tuples of three component arrays so that a ray batch ``[N, 1]`` broadcasts against a
geom batch ``[1, Gt]`` inside one fused elementwise loop (no trailing axis of size 3). Each kernel
returns the smallest distance ``t >= 0`` along the ray, ``+inf`` on a miss. Directions are unit
length (rotations keep them so), which the sphere kernel relies on. Conventions follow MuJoCo:
boxes, ellipsoids take half-sizes; capsules and cylinders are ``(radius, half-length)`` along
local z; planes face +z, are hit only from the front, and are infinite along an axis whose
half-size is 0.
"""

from __future__ import annotations

import jax.numpy as jnp

from pvm_mbrl.render import geometry as g

INF = jnp.inf


def _dot(a, b):
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _first_root(a, b, c):
    """Smallest root >= 0 of ``a t^2 + 2 b t + c = 0`` (``+inf`` if none)."""
    det = b * b - a * c
    sq = jnp.sqrt(jnp.maximum(det, 0.0))
    inv_a = 1.0 / a
    t0 = (-b - sq) * inv_a
    t1 = (-b + sq) * inv_a
    t = jnp.where(t0 >= 0, t0, jnp.where(t1 >= 0, t1, INF))
    return jnp.where(det >= 0, t, INF)


def _first_root_unit(b, c):
    """As ``_first_root`` with ``a = 1``."""
    det = b * b - c
    sq = jnp.sqrt(jnp.maximum(det, 0.0))
    t0 = -b - sq
    t1 = -b + sq
    t = jnp.where(t0 >= 0, t0, jnp.where(t1 >= 0, t1, INF))
    return jnp.where(det >= 0, t, INF)


def ray_sphere(o, d, radius):
    """Sphere of ``radius`` at the origin; ``d`` must be unit length."""
    return _first_root_unit(_dot(o, d), _dot(o, o) - radius * radius)


def ray_ellipsoid(o, d, size):
    inv = tuple(1.0 / s for s in size)
    os_ = tuple(o[i] * inv[i] for i in range(3))
    ds_ = tuple(d[i] * inv[i] for i in range(3))
    return _first_root(_dot(ds_, ds_), _dot(ds_, os_), _dot(os_, os_) - 1.0)


def ray_plane(o, d, size):
    sx, sy = size[0], size[1]
    t = -o[2] / jnp.minimum(d[2], -1e-12)
    valid = (d[2] <= -1e-10) & (t >= 0)
    valid &= (sx <= 0) | (jnp.abs(o[0] + t * d[0]) <= sx)
    valid &= (sy <= 0) | (jnp.abs(o[1] + t * d[1]) <= sy)
    return jnp.where(valid, t, INF)


def ray_box(o, d, size):
    tnear, tfar = -INF, INF
    for i in range(3):
        # d[i] == 0 gives +-inf slab distances (NaN only if the origin lies exactly on a face,
        # which then counts as a miss through the comparisons below).
        inv = 1.0 / d[i]
        t1 = (-size[i] - o[i]) * inv
        t2 = (size[i] - o[i]) * inv
        tnear = jnp.maximum(tnear, jnp.minimum(t1, t2))
        tfar = jnp.minimum(tfar, jnp.maximum(t1, t2))
    t = jnp.where(tnear >= 0, tnear, tfar)
    return jnp.where((tnear <= tfar) & (tfar >= 0), t, INF)


def _side(o, d, radius, half):
    """Round side of a z-axis cylinder of ``radius`` between ``z = -half`` and ``z = half``."""
    a = d[0] * d[0] + d[1] * d[1]
    b = o[0] * d[0] + o[1] * d[1]
    c = o[0] * o[0] + o[1] * o[1] - radius * radius
    t = _first_root(a, b, c)
    return jnp.where(jnp.abs(o[2] + t * d[2]) <= half, t, INF)


def ray_capsule(o, d, size):
    radius, half = size[0], size[1]
    t = _side(o, d, radius, half)
    b = _dot(o, d)
    oo = o[0] * o[0] + o[1] * o[1] + o[2] * o[2] + half * half - radius * radius
    # Caps: full spheres at z = +-half (their union with the side is the capsule).
    top = _first_root_unit(b - half * d[2], oo - 2.0 * half * o[2])
    bot = _first_root_unit(b + half * d[2], oo + 2.0 * half * o[2])
    return jnp.minimum(t, jnp.minimum(top, bot))


def ray_cylinder(o, d, size):
    radius, half = size[0], size[1]
    t = _side(o, d, radius, half)
    dz = jnp.where(jnp.abs(d[2]) < 1e-12, 1e-12, d[2])
    inv = 1.0 / dz
    r2 = radius * radius
    for zc in (half, -half):
        tc = (zc - o[2]) * inv
        x = o[0] + tc * d[0]
        y = o[1] + tc * d[1]
        ok = (tc >= 0) & (x * x + y * y <= r2)
        t = jnp.minimum(t, jnp.where(ok, tc, INF))
    return t


KERNELS = {
    g.PLANE: ray_plane,
    g.SPHERE: lambda o, d, size: ray_sphere(o, d, size[0]),
    g.CAPSULE: ray_capsule,
    g.ELLIPSOID: ray_ellipsoid,
    g.CYLINDER: ray_cylinder,
    g.BOX: ray_box,
}


def _normalize(v):
    inv = 1.0 / jnp.sqrt(jnp.maximum(_dot(v, v), 1e-20))
    return tuple(c * inv for c in v)


def local_normal(p, size, geom_type):
    """Outward unit normal at local surface point ``p`` (per-pixel arrays; ``geom_type`` traced)."""
    x, y, z = p
    zero = jnp.zeros_like(x)
    one = jnp.ones_like(x)
    s0, s1, s2 = size
    sphere = _normalize(p)
    capsule = _normalize((x, y, z - jnp.clip(z, -s1, s1)))
    ellipsoid = _normalize((x / (s0 * s0), y / (s1 * s1), z / (s2 * s2)))
    rxy = jnp.sqrt(x * x + y * y)
    cap = jnp.abs(jnp.abs(z) - s1) < jnp.abs(rxy - s0)
    inv_r = 1.0 / jnp.maximum(rxy, 1e-12)
    cylinder = (
        jnp.where(cap, 0.0, x * inv_r),
        jnp.where(cap, 0.0, y * inv_r),
        jnp.where(cap, jnp.sign(z), 0.0),
    )
    qx, qy, qz = jnp.abs(x) / s0, jnp.abs(y) / s1, jnp.abs(z) / s2
    ax = (qx >= qy) & (qx >= qz)
    ay = ~ax & (qy >= qz)
    az = ~ax & ~ay
    box = (
        jnp.where(ax, jnp.sign(x), 0.0),
        jnp.where(ay, jnp.sign(y), 0.0),
        jnp.where(az, jnp.sign(z), 0.0),
    )
    plane = (zero, zero, one)
    table = (
        (g.SPHERE, sphere),
        (g.CAPSULE, capsule),
        (g.ELLIPSOID, ellipsoid),
        (g.CYLINDER, cylinder),
        (g.BOX, box),
    )
    n = plane
    for t, v in table:
        sel = geom_type == t
        n = tuple(jnp.where(sel, v[i], n[i]) for i in range(3))
    return n
