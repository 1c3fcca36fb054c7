"""Traced visual properties of one scene: colours, textures, light, fog, sky and camera offsets.

A ``SceneParams`` is a ``flax.struct`` pytree whose leaves are all ``jnp`` arrays, so visual
shifts can sample, vmap or interpolate it and one compiled renderer serves every shift. Per-geom
fields are indexed by drawn index (``SceneGeometry.index``), not by model geom id.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import struct

from pvm_mbrl.render.geometry import SceneGeometry

TEXTURE_NONE, TEXTURE_CHECKER, TEXTURE_STRIPES, TEXTURE_NOISE, TEXTURE_WOOD = range(5)
TEXTURES = {"none": 0, "checker": 1, "stripes": 2, "noise": 3, "wood": 4}
BACKGROUND_FLAT, BACKGROUND_GRADIENT, BACKGROUND_NOISE = range(3)
BACKGROUNDS = {"flat": 0, "gradient": 1, "noise": 2}


@struct.dataclass
class SceneParams:
    """Visual properties of one environment (every field a ``jnp`` array).

    Attributes:
      geom_rgb: base colour of each drawn geom, ``[G, 3]`` in [0, 1].
      texture_id: procedural texture per geom, int32 ``[G]``: 0 none, 1 checker, 2 stripes,
        3 value noise, 4 wood grain (evaluated in the geom's local frame).
      texture_rgb: second colour of the texture, ``[G, 3]``.
      texture_scale: pattern frequency per metre, ``[G]``.
      texture_mix: how strongly the pattern blends towards ``texture_rgb``, ``[G]`` in [0, 1].
      light_dir: direction the light travels (world frame, need not be unit), ``[3]``.
      light_rgb, light_intensity: colour ``[3]`` and scalar strength ``[]`` of the light.
      ambient: ambient light colour ``[3]``.
      specular, shininess: Blinn-Phong strength ``[]`` and exponent ``[]``.
      fog_rgb, fog_density: fog colour ``[3]`` and density per metre ``[]`` (0 = no fog);
        the colour at distance d is mixed towards ``fog_rgb`` with weight 1 - exp(-density d).
      background_rgb, background_rgb2: sky colours ``[3]``.
      background_texture_id: int32 ``[]``: 0 flat ``background_rgb``, 1 vertical gradient from
        ``background_rgb`` (straight down) to ``background_rgb2`` (straight up), 2 value-noise
        clouds mixing the two colours.
      background_scale: frequency of the noise sky per unit of direction, ``[]``.
      cam_pos_offset: camera translation in the camera frame (metres), ``[3]``.
      cam_rot_offset: camera rotation as an axis-angle vector (radians) in the camera frame,
        applied after the model camera orientation, ``[3]``.
      fovy: vertical field of view in degrees, ``[]``.
      headlight_rgb: colour times strength of a spot light at the camera, aimed along the model
        camera's axis (a car's headlights), ``[3]``; zero (the default) turns it off.
      headlight_range: distance in metres at which the headlight's light has halved, ``[]``.
    """

    geom_rgb: jnp.ndarray
    texture_id: jnp.ndarray
    texture_rgb: jnp.ndarray
    texture_scale: jnp.ndarray
    texture_mix: jnp.ndarray
    light_dir: jnp.ndarray
    light_rgb: jnp.ndarray
    light_intensity: jnp.ndarray
    ambient: jnp.ndarray
    specular: jnp.ndarray
    shininess: jnp.ndarray
    fog_rgb: jnp.ndarray
    fog_density: jnp.ndarray
    background_rgb: jnp.ndarray
    background_rgb2: jnp.ndarray
    background_texture_id: jnp.ndarray
    background_scale: jnp.ndarray
    cam_pos_offset: jnp.ndarray
    cam_rot_offset: jnp.ndarray
    fovy: jnp.ndarray
    headlight_rgb: jnp.ndarray
    headlight_range: jnp.ndarray

    @classmethod
    def default(cls, geom: SceneGeometry, camera: int | str | None = 0) -> SceneParams:
        """Model colours, no textures, a light from above-front, no fog, a plain sky.

        ``fovy`` comes from the model camera ``camera`` (id or name); with ``camera=None``, or a
        model without cameras, it is MuJoCo's default 45 degrees.
        """
        if camera is None or len(geom.camera_fovy) == 0:
            fovy = 45.0
        else:
            fovy = float(geom.camera_fovy[geom.camera_id(camera)])
        g = geom.num_drawn
        rgb = np.asarray(geom.geom_rgba[:, :3], np.float32)
        f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
        return cls(
            geom_rgb=f32(rgb),
            texture_id=jnp.zeros((g,), jnp.int32),
            texture_rgb=f32(rgb * 0.5),
            texture_scale=jnp.full((g,), 8.0, jnp.float32),
            texture_mix=jnp.ones((g,), jnp.float32),
            light_dir=f32([0.3, 0.4, -1.0]),
            light_rgb=f32([1.0, 1.0, 1.0]),
            light_intensity=f32(0.8),
            ambient=f32([0.3, 0.3, 0.3]),
            specular=f32(0.3),
            shininess=f32(32.0),
            fog_rgb=f32([0.7, 0.7, 0.75]),
            fog_density=f32(0.0),
            background_rgb=f32([0.35, 0.45, 0.6]),
            background_rgb2=f32([0.1, 0.2, 0.45]),
            background_texture_id=jnp.asarray(BACKGROUND_FLAT, jnp.int32),
            background_scale=f32(3.0),
            cam_pos_offset=f32([0.0, 0.0, 0.0]),
            cam_rot_offset=f32([0.0, 0.0, 0.0]),
            fovy=f32(fovy),
            headlight_rgb=f32([0.0, 0.0, 0.0]),
            headlight_range=f32(1.0),
        )

    def with_texture(
        self,
        index: int,
        texture: int | str,
        rgb=None,
        scale: float | None = None,
        mix: float | None = None,
    ) -> SceneParams:
        """Sets the texture of drawn geom ``index`` (see ``SceneGeometry.index``)."""
        tid = TEXTURES[texture] if isinstance(texture, str) else int(texture)
        if not 0 <= tid < len(TEXTURES):
            raise ValueError(f"texture must be one of {TEXTURES}, got {texture!r}")
        out = self.replace(texture_id=self.texture_id.at[index].set(tid))
        if rgb is not None:
            out = out.replace(texture_rgb=out.texture_rgb.at[index].set(jnp.asarray(rgb)))
        if scale is not None:
            out = out.replace(texture_scale=out.texture_scale.at[index].set(scale))
        if mix is not None:
            out = out.replace(texture_mix=out.texture_mix.at[index].set(mix))
        return out
