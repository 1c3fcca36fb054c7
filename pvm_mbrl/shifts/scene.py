"""Scene-level shift families: they edit a ``SceneParams`` before rendering, never the physics.

Each family is ``fn(ctx, roles, s, u) -> ctx`` where ``s`` is the traced severity in [0, 1] and
``u`` the family's per-episode random draws in [-1, 1] (see ``families.py``). The effect grows
with ``s`` and is exactly nothing at ``s = 0`` (``families`` also selects the input there, so
severity 0 is bitwise the identity).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
from flax import struct

from pvm_mbrl.render import SceneParams, axis_angle_to_mat
from pvm_mbrl.render.params import TEXTURE_CHECKER, TEXTURE_WOOD
from pvm_mbrl.shifts.colour import shift_hsv

MAX_DISTRACTORS = 8  # the distractors family draws for at most this many geoms
DARK_WOOD_RGB = (0.30, 0.17, 0.08)
DARK_WOOD_GRAIN_RGB = (0.13, 0.06, 0.03)


@dataclasses.dataclass(frozen=True, eq=False)
class SceneRoles:
    """Which drawn geoms (``SceneGeometry`` drawn indices) play which part in a scene.

    ``distractor_low``/``distractor_high`` bound where shown distractors are placed (world
    x, y, z of their centres); ``distractor_park`` is where hidden ones go (out of view).
    ``length_scale`` (metres) is the size of the scene the families' lengths are given for: 1
    for the table-top and ``dmc/`` scenes; a road scene sets ~50, so fog reaches as far
    relative to what the camera sees and the camera moves in proportion.
    """

    table: np.ndarray
    floor: np.ndarray
    objects: np.ndarray
    robot: np.ndarray
    distractors: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int32))
    distractor_low: tuple[float, float, float] = (-0.3, -0.3, 0.03)
    distractor_high: tuple[float, float, float] = (0.3, 0.3, 0.03)
    distractor_park: tuple[float, float, float] = (0.0, 0.0, -10.0)
    length_scale: float = 1.0

    def __post_init__(self):
        if len(self.distractors) > MAX_DISTRACTORS:
            raise ValueError(
                f"at most {MAX_DISTRACTORS} distractor geoms, got {len(self.distractors)}"
            )


@struct.dataclass
class SceneContext:
    """What scene shifts edit: the visual parameters and distractor positions ``[D, 3]``."""

    params: SceneParams
    distractor_pos: jnp.ndarray


def _lerp(a, b, t):
    return a + (b - a) * t


def _unit_rgb(u):
    return 0.5 * (u + 1.0)


def surface_texture(ctx, roles, s, u):
    """Table and floor get a random procedural pattern (checker, stripes, noise or wood) and
    colours; the pattern's contrast and the colour change scale with ``s``. u: 8 draws."""
    p = ctx.params
    idx = np.concatenate([roles.table, roles.floor])
    kind = TEXTURE_CHECKER + jnp.clip(jnp.floor((u[0] + 1.0) * 2.0), 0, 3).astype(jnp.int32)
    c1, c2 = _unit_rgb(u[1:4]), _unit_rgb(u[4:7])
    scale = 6.0 + 9.0 * (u[7] + 1.0)
    p = p.replace(
        geom_rgb=p.geom_rgb.at[idx].set(_lerp(p.geom_rgb[idx], c1, s)),
        texture_id=p.texture_id.at[idx].set(kind),
        texture_rgb=p.texture_rgb.at[idx].set(c2),
        texture_scale=p.texture_scale.at[idx].set(scale),
        texture_mix=p.texture_mix.at[idx].set(s),
    )
    return ctx.replace(params=p)


def dark_wood(ctx, roles, s, u):
    """The reference study's texture shift: the table re-textured as dark wood grain."""
    del u
    p = ctx.params
    idx = roles.table
    p = p.replace(
        geom_rgb=p.geom_rgb.at[idx].set(_lerp(p.geom_rgb[idx], jnp.array(DARK_WOOD_RGB), s)),
        texture_id=p.texture_id.at[idx].set(TEXTURE_WOOD),
        texture_rgb=p.texture_rgb.at[idx].set(jnp.array(DARK_WOOD_GRAIN_RGB)),
        texture_scale=p.texture_scale.at[idx].set(14.0),
        texture_mix=p.texture_mix.at[idx].set(s),
    )
    return ctx.replace(params=p)


def _hsv_family(role: str):
    def fn(ctx, roles, s, u):
        idx = getattr(roles, role)
        p = ctx.params
        rgb = shift_hsv(p.geom_rgb[idx], 0.5 * s * u[0], s * u[1], 0.5 * s * u[2])
        return ctx.replace(params=p.replace(geom_rgb=p.geom_rgb.at[idx].set(rgb)))

    fn.__doc__ = (
        f"Hue (up to half a turn), saturation (+-1) and value (+-0.5) of the {role} geoms,"
        " each scaled by s. u: 3 draws."
    )
    return fn


object_colour = _hsv_family("objects")
robot_colour = _hsv_family("robot")


def light(ctx, roles, s, u):
    """The main light turns by up to 60 degrees, its intensity changes by up to +-50% and its
    colour is tinted, all scaled by s. u: 6 draws."""
    del roles
    p = ctx.params
    axis = jnp.array([u[0], u[1], 0.0]) + jnp.array([1e-3, 0.0, 0.0])
    axis = axis / jnp.linalg.norm(axis)
    rot = axis_angle_to_mat(axis * (jnp.deg2rad(60.0) * s))
    tint = 1.0 + 0.4 * u[3:6]
    p = p.replace(
        light_dir=rot @ p.light_dir,
        light_intensity=p.light_intensity * (1.0 + 0.5 * s * u[2]),
        light_rgb=jnp.clip(p.light_rgb * _lerp(1.0, tint, s), 0.0, 1.5),
    )
    return ctx.replace(params=p)


def night(ctx, roles, s, u):
    """Darkness: ambient light, the main light and the sky dim by up to 85%, 80% and 85%."""
    del roles, u
    p = ctx.params
    p = p.replace(
        ambient=p.ambient * (1.0 - 0.85 * s),
        light_intensity=p.light_intensity * (1.0 - 0.8 * s),
        background_rgb=p.background_rgb * (1.0 - 0.85 * s),
        background_rgb2=p.background_rgb2 * (1.0 - 0.85 * s),
        fog_rgb=p.fog_rgb * (1.0 - 0.85 * s),
    )
    return ctx.replace(params=p)


def bright(ctx, roles, s, u):
    """Over-exposure (the study's high light): the main light up to 2.2x, ambient light up to
    2x and the sky up to 1.5x as bright (clipped at white)."""
    del roles, u
    p = ctx.params
    p = p.replace(
        light_intensity=p.light_intensity * (1.0 + 1.2 * s),
        ambient=p.ambient * (1.0 + s),
        background_rgb=jnp.clip(p.background_rgb * (1.0 + 0.5 * s), 0.0, 1.0),
        background_rgb2=jnp.clip(p.background_rgb2 * (1.0 + 0.5 * s), 0.0, 1.0),
    )
    return ctx.replace(params=p)


def overcast(ctx, roles, s, u):
    """Cloud cover: the sun's direct light falls by up to 75% and ambient light rises by up to
    40%, the sky turns a flat grey."""
    del roles, u
    p = ctx.params
    grey = jnp.array([0.62, 0.64, 0.67])
    p = p.replace(
        light_intensity=p.light_intensity * (1.0 - 0.75 * s),
        ambient=p.ambient * (1.0 + 0.4 * s),
        specular=p.specular * (1.0 - 0.8 * s),
        background_rgb=_lerp(p.background_rgb, grey, s),
        background_rgb2=_lerp(p.background_rgb2, grey * 0.9, s),
        fog_rgb=_lerp(p.fog_rgb, grey, s),
    )
    return ctx.replace(params=p)


def wet(ctx, roles, s, u):
    """A wet surface: the table (a road's asphalt) darkens by up to 45% and turns glossy
    (specular strength up to 4x, sharper highlights)."""
    del u
    p = ctx.params
    idx = roles.table
    p = p.replace(
        geom_rgb=p.geom_rgb.at[idx].set(p.geom_rgb[idx] * (1.0 - 0.45 * s)),
        specular=p.specular * (1.0 + 3.0 * s),
        shininess=p.shininess * (1.0 + 2.0 * s),
    )
    return ctx.replace(params=p)


def sunset(ctx, roles, s, u):
    """A low, warm sun: the light turns towards 8 degrees above the horizon (keeping its
    compass direction), its colour and the sky's warm to orange, and it dims by 30%."""
    del roles, u
    p = ctx.params
    d = p.light_dir / jnp.linalg.norm(p.light_dir)
    flat = jnp.array([d[0], d[1], 0.0]) + jnp.array([1e-3, 0.0, 0.0])
    flat = flat / jnp.linalg.norm(flat)
    low = flat * jnp.cos(jnp.deg2rad(8.0)) - jnp.array([0.0, 0.0, jnp.sin(jnp.deg2rad(8.0))])
    orange = jnp.array([1.0, 0.55, 0.25])
    p = p.replace(
        light_dir=_lerp(d, low, s),
        light_rgb=_lerp(p.light_rgb, orange, s),
        light_intensity=p.light_intensity * (1.0 - 0.3 * s),
        background_rgb=_lerp(p.background_rgb, jnp.array([0.95, 0.55, 0.3]), s),
        background_rgb2=_lerp(p.background_rgb2, jnp.array([0.35, 0.3, 0.5]), s),
        fog_rgb=_lerp(p.fog_rgb, jnp.array([0.9, 0.6, 0.4]), s),
    )
    return ctx.replace(params=p)


def headlights(ctx, roles, s, u):
    """Headlights: a warm spot light at the camera along its axis, up to 8 times the default
    sun's strength at the lamp, halving at 0.4 ``length_scale`` (20 m on the road)."""
    del u
    p = ctx.params
    warm = jnp.array([1.0, 0.93, 0.8])
    p = p.replace(
        headlight_rgb=p.headlight_rgb + 8.0 * s * warm,
        headlight_range=jnp.full_like(p.headlight_range, 0.4 * roles.length_scale),
    )
    return ctx.replace(params=p)


def fog(ctx, roles, s, u):
    """Exponential fog of density up to 3 per ``length_scale`` metres (s = 1 hides the far
    table)."""
    del u
    p = ctx.params
    return ctx.replace(params=p.replace(fog_density=p.fog_density + 3.0 * s / roles.length_scale))


def camera(ctx, roles, s, u):
    """Camera moves by up to 8 cm (times ``length_scale``), turns by up to 0.35 rad about each
    of its axes and its field of view changes by up to +-15 degrees (zoom), all scaled by s.
    u: 7 draws."""
    p = ctx.params
    p = p.replace(
        cam_pos_offset=p.cam_pos_offset + 0.08 * roles.length_scale * s * u[0:3],
        cam_rot_offset=p.cam_rot_offset + 0.35 * s * u[3:6],
        fovy=p.fovy + 15.0 * s * u[6],
    )
    return ctx.replace(params=p)


def background(ctx, roles, s, u):
    """The sky becomes random value-noise clouds in two random colours, mixed in by s. u: 7."""
    del roles
    p = ctx.params
    p = p.replace(
        background_rgb=_lerp(p.background_rgb, _unit_rgb(u[0:3]), s),
        # Both cloud colours start from the plain sky colour so the change grows from zero.
        background_rgb2=_lerp(p.background_rgb, _unit_rgb(u[3:6]), s),
        background_texture_id=jnp.asarray(2, jnp.int32),
        background_scale=2.0 + 2.0 * (u[6] + 1.0),
    )
    return ctx.replace(params=p)


def distractors(ctx, roles, s, u):
    """Shows ceil(s * D) of the D reserved visual-only geoms at random places on the table in
    random colours; the rest stay parked. u: 6 draws per distractor."""
    d = len(roles.distractors)
    if d == 0:
        return ctx
    u = u[: 6 * d].reshape(d, 6)
    low, high = jnp.array(roles.distractor_low), jnp.array(roles.distractor_high)
    pos = low + (high - low) * _unit_rgb(u[:, 0:3])
    shown = (jnp.arange(d) < jnp.ceil(s * d))[:, None]
    p = ctx.params
    idx = roles.distractors
    p = p.replace(geom_rgb=p.geom_rgb.at[idx].set(_unit_rgb(u[:, 3:6])))
    return ctx.replace(
        params=p,
        distractor_pos=jnp.where(shown, pos, jnp.array(roles.distractor_park)),
    )
