"""The registry of shift families and the traced per-env shift state.

A *family* is one kind of visual change (fog, camera, sensor noise, ...) with a severity
``s`` in [0, 1]. A ``ShiftSpec`` (static) names the families one compiled step applies; a
``ShiftState`` (traced, one per env) holds their severities, the per-episode random draws and
the step count, so a batch of envs can run a whole ladder of severities in one compiled step.

Per-episode sampling happens in :func:`sample` (at reset): every family draws ``u`` uniform in
[-1, 1] once, so the shift is fixed for the episode. In the dynamic mode (``drift > 0``) the
draws of the families that can drift take a reflected random walk of step ``drift`` each env
step (:func:`advance`), as in the Distracting Control Suite's dynamic variants.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import struct

from pvm_mbrl.shifts import image, scene


@dataclasses.dataclass(frozen=True)
class Family:
    """One shift family: ``kind`` is "scene" (edits SceneParams) or "image" (edits pixels);
    ``draws`` is how many per-episode uniform draws it uses; ``drifts`` whether the dynamic mode
    moves them."""

    name: str
    kind: str
    fn: Callable
    draws: int
    drifts: bool = True

    @property
    def doc(self) -> str:
        return " ".join((self.fn.__doc__ or "").split())


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("surface_texture", "scene", scene.surface_texture, 8, drifts=False),
        Family("dark_wood", "scene", scene.dark_wood, 0),
        Family("object_colour", "scene", scene.object_colour, 3),
        Family("robot_colour", "scene", scene.robot_colour, 3),
        Family("light", "scene", scene.light, 6),
        Family("night", "scene", scene.night, 0),
        Family("bright", "scene", scene.bright, 0),
        Family("overcast", "scene", scene.overcast, 0),
        Family("wet", "scene", scene.wet, 0),
        Family("sunset", "scene", scene.sunset, 0),
        Family("headlights", "scene", scene.headlights, 0),
        Family("fog", "scene", scene.fog, 0),
        Family("camera", "scene", scene.camera, 7),
        Family("background", "scene", scene.background, 7),
        Family("distractors", "scene", scene.distractors, 6 * scene.MAX_DISTRACTORS),
        Family("color_jitter", "image", image.color_jitter, 4),
        Family("sensor_noise", "image", image.sensor_noise, 0),
        Family("blur", "image", image.blur, 0),
        Family("rain", "image", image.rain, 3 * image.RAIN_STREAKS, drifts=False),
        Family("occlusion", "image", image.occlusion, 5 * image.OCCLUDERS),
        Family("random_conv", "image", image.random_conv, 81, drifts=False),
    )
}


def check_family(name: str) -> Family:
    """The family called ``name``; raises ``ValueError`` listing the valid names."""
    if name not in FAMILIES:
        raise ValueError(f"unknown shift family {name!r}; valid families: {sorted(FAMILIES)}")
    return FAMILIES[name]


@dataclasses.dataclass(frozen=True)
class ShiftSpec:
    """The families one compiled step applies (static; order = application order)."""

    families: tuple[str, ...] = ()

    def __post_init__(self):
        for name in self.families:
            check_family(name)

    def of_kind(self, kind: str) -> list[tuple[int, Family]]:
        return [(i, FAMILIES[n]) for i, n in enumerate(self.families) if FAMILIES[n].kind == kind]

    @property
    def num_draws(self) -> int:
        return max([FAMILIES[n].draws for n in self.families] + [1])


@struct.dataclass
class ShiftState:
    """Traced shift state of one env: severity ``[F]``, draws ``[F, num_draws]``, drift ``[]``
    (random-walk step per env step; 0 = fixed for the episode), step count ``t`` and ``key``."""

    severity: jnp.ndarray
    u: jnp.ndarray
    drift: jnp.ndarray
    t: jnp.ndarray
    key: jnp.ndarray


def sample(spec: ShiftSpec, key, severity, drift=0.0) -> ShiftState:
    """Per-episode draws for ``spec`` at the given severities (``[F]``) and drift."""
    k_u, k_state = jax.random.split(key)
    severity = jnp.asarray(severity, jnp.float32).reshape(len(spec.families))
    u = jax.random.uniform(k_u, (len(spec.families), spec.num_draws), jnp.float32, -1.0, 1.0)
    return ShiftState(severity, u, jnp.asarray(drift, jnp.float32), jnp.int32(0), k_state)


def _reflect(x):
    """Folds ``x`` back into [-1, 1] like a ball bouncing between walls."""
    y = (x + 1.0) % 4.0
    return jnp.where(y > 2.0, 4.0 - y, y) - 1.0


def advance(spec: ShiftSpec, state: ShiftState) -> ShiftState:
    """One env step: the step count grows and, where ``drift > 0``, drifting draws move."""
    if not spec.families:
        return state.replace(t=state.t + 1)
    step_key = jax.random.fold_in(state.key, state.t)
    mask = jnp.array([FAMILIES[n].drifts for n in spec.families], jnp.float32)[:, None]
    walk = state.drift * jax.random.normal(step_key, state.u.shape) * mask
    u = jnp.where(state.drift > 0, _reflect(state.u + walk), state.u)
    return state.replace(u=u, t=state.t + 1)


def _select(on, new, old):
    return jax.tree.map(lambda a, b: jnp.where(on, a, b), new, old)


def apply_scene(
    spec: ShiftSpec, state: ShiftState, ctx: scene.SceneContext, roles: scene.SceneRoles
) -> scene.SceneContext:
    """Applies the scene families in order; a family at severity 0 leaves ``ctx`` untouched."""
    for i, fam in spec.of_kind("scene"):
        s = state.severity[i]
        ctx = _select(s > 0, fam.fn(ctx, roles, s, state.u[i]), ctx)
    return ctx


def apply_image(spec: ShiftSpec, state: ShiftState, rgb: jnp.ndarray) -> jnp.ndarray:
    """Applies the image families to a uint8 ``[H, W, 3]`` image; bitwise identity when every
    image family is at severity 0. Values are rounded and kept in [0, 255]."""
    fams = spec.of_kind("image")
    if not fams:
        return rgb
    img = rgb.astype(jnp.float32) / 255.0
    step_key = jax.random.fold_in(jax.random.fold_in(state.key, 1 << 20), state.t)
    for i, fam in fams:
        s = state.severity[i]
        key = jax.random.fold_in(step_key, i)
        img = jnp.where(s > 0, fam.fn(img, s, state.u[i], state.t.astype(jnp.float32), key), img)
    out = jnp.round(jnp.clip(img, 0.0, 1.0) * 255.0).astype(jnp.uint8)
    active = jnp.any(jnp.stack([state.severity[i] > 0 for i, _ in fams]))
    return jnp.where(active, out, rgb)
