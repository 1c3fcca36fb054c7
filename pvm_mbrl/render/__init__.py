"""Pure-JAX ray-casting renderer for MuJoCo primitive scenes.

Written here rather than taken from a library because no maintained JAX renderer draws MuJoCo
primitives with traced colours, textures, lights, fog and camera offsets inside ``jit``/``vmap``
(``mujoco.Renderer`` is OpenGL on the host; ``mjx.ray`` gives distances only).

    geom = render.SceneGeometry.from_model(mj_model)       # static
    params = render.SceneParams.default(geom)              # traced pytree, one env
    out = render.render(geom, params, d.geom_xpos, d.geom_xmat, d.cam_xpos[0],
                        d.cam_xmat[0].reshape(3, 3), height=64, width=64)
"""

from pvm_mbrl.render.camera import apply_offsets, axis_angle_to_mat, camera_rays
from pvm_mbrl.render.geometry import SceneGeometry, TypeGroup
from pvm_mbrl.render.params import (
    BACKGROUNDS,
    TEXTURES,
    SceneParams,
)
from pvm_mbrl.render.renderer import SKY_DISTANCE, RenderOutput, SurfaceHit, render

__all__ = [
    "BACKGROUNDS",
    "SKY_DISTANCE",
    "TEXTURES",
    "RenderOutput",
    "SceneGeometry",
    "SceneParams",
    "SurfaceHit",
    "TypeGroup",
    "apply_offsets",
    "axis_angle_to_mat",
    "camera_rays",
    "render",
]
