"""Object set and position sampling for the generalisation splits.

Objects are shape x size x mass: 4 shapes (cube, bar, sphere, capsule) x 2 sizes x 2 masses
= 16 objects, 12 for training and 4 held out (``HELD_OUT``: one per shape, each a size/mass
pairing never seen in training).

Splits (``split=``):
- ``"train"``: training objects, positions in the central disc (radius ``TRAIN_RADIUS``);
- ``"novel_objects"``: held-out objects, central positions;
- ``"outer_positions"``: training objects, positions in the outer ring
  (``OUTER_RADII``), never seen in training.

MJX geometry is static, and a geom's size is also baked into the renderer's static
``SceneGeometry``, so each (shape, size) pair is its own free body (8 bodies). The bodies an
episode does not use are parked in the air far behind the front camera and held there by
gravity compensation (``body_gravcomp`` is traced per episode), so they touch nothing; with the
MJX numeric ``max_contact_points`` only the deepest contacts enter the solver, which keeps the
step nearly as cheap as a one-object scene. Mass does not change what is drawn, so it is
traced too: the episode's mass (and inertia, scaled with it) is written into the ``mjx.Model``
used for that episode's steps.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from pvm_mbrl.envs.manipulation.scene import ObjectGeom

SHAPES = ("cube", "bar", "sphere", "capsule")
SIZES = (0.016, 0.021)  # characteristic half-extent per size class
MASSES = (0.05, 0.2)
SPLITS = ("train", "novel_objects", "outer_positions")
TRAIN_RADIUS = 0.10
OUTER_RADII = (0.12, 0.17)
_RGB = {
    "cube": (0.85, 0.2, 0.2),
    "bar": (0.2, 0.35, 0.85),
    "sphere": (0.9, 0.75, 0.15),
    "capsule": (0.6, 0.25, 0.75),
}


@dataclasses.dataclass(frozen=True)
class ObjectSpec:
    """One object of the set: ``shape`` name, size class index, mass (kg)."""

    shape: str
    size: int
    mass: float

    @property
    def body(self) -> int:
        """Index of the scene body (shape, size) carrying this object."""
        return SHAPES.index(self.shape) * len(SIZES) + self.size


ALL_OBJECTS = tuple(
    ObjectSpec(shape, size, mass)
    for shape in SHAPES
    for size in range(len(SIZES))
    for mass in MASSES
)
HELD_OUT = (
    ObjectSpec("cube", 1, 0.2),
    ObjectSpec("bar", 0, 0.05),
    ObjectSpec("sphere", 1, 0.05),
    ObjectSpec("capsule", 0, 0.2),
)
TRAIN_OBJECTS = tuple(o for o in ALL_OBJECTS if o not in HELD_OUT)


PARK_Z = 0.3


def object_geom(
    shape: str, size: int, name: str | None = None, park=(0.0, -3.0), park_z=None
) -> ObjectGeom:
    """Scene body for (shape, size class) with nominal mass ``MASSES[0]``."""
    s = SIZES[size]
    sizes = {
        "cube": ("box", (s, s, s)),
        "bar": ("box", (2.0 * s, s, s)),
        "sphere": ("sphere", (1.1 * s,)),
        "capsule": ("capsule", (s, 1.5 * s)),
    }
    kind, extent = sizes[shape]
    return ObjectGeom(name or f"{shape}{size}", kind, extent, MASSES[0], _RGB[shape], park, park_z)


def scene_bodies() -> tuple[ObjectGeom, ...]:
    """All (shape, size) bodies, in ``ObjectSpec.body`` order, parked apart from each other."""
    return tuple(
        object_geom(shape, size, park=(-1.0 + 0.3 * (i * len(SIZES) + size), -3.0), park_z=PARK_Z)
        for i, shape in enumerate(SHAPES)
        for size in range(len(SIZES))
    )


def split_objects(split: str) -> tuple[ObjectSpec, ...]:
    check_split(split)
    return HELD_OUT if split == "novel_objects" else TRAIN_OBJECTS


def check_split(split: str, allowed=SPLITS) -> None:
    if split not in allowed:
        raise ValueError(f"split must be one of {tuple(allowed)}, got {split!r}")


def object_table(objects) -> dict[str, jax.Array]:
    """Per-object arrays (body index, mass) for traced selection by index."""
    return {
        "body": jnp.asarray([o.body for o in objects], jnp.int32),
        "mass": jnp.asarray([o.mass for o in objects], jnp.float32),
    }


def sample_xy(key: jax.Array, split: str, center=(0.0, 0.0)) -> jax.Array:
    """Uniform position in the central disc (train, novel_objects) or the outer ring."""
    lo, hi = (0.0, TRAIN_RADIUS) if split != "outer_positions" else OUTER_RADII
    k_r, k_a = jax.random.split(key)
    u = jax.random.uniform(k_r)
    r = jnp.sqrt(lo**2 + u * (hi**2 - lo**2))  # uniform over the annulus area
    a = jax.random.uniform(k_a, minval=0.0, maxval=2.0 * np.pi)
    return jnp.asarray(center) + r * jnp.stack([jnp.cos(a), jnp.sin(a)])
