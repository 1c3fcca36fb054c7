"""Render one frame under a shift: scene families, the ray caster, then image families."""

from __future__ import annotations

import jax.numpy as jnp

from pvm_mbrl import render as rendering
from pvm_mbrl.shifts.families import ShiftSpec, ShiftState, apply_image, apply_scene
from pvm_mbrl.shifts.scene import SceneContext, SceneRoles


def render_shifted(
    geom: rendering.SceneGeometry,
    roles: SceneRoles,
    spec: ShiftSpec,
    state: ShiftState,
    params: rendering.SceneParams,
    geom_xpos: jnp.ndarray,
    geom_xmat: jnp.ndarray,
    cam_pos: jnp.ndarray,
    cam_mat: jnp.ndarray,
    *,
    height: int,
    width: int,
    shadows: bool = True,
    paint=None,
    sky_distance: float = rendering.SKY_DISTANCE,
) -> rendering.RenderOutput:
    """``render.render`` of the shifted scene, with the image families applied to ``rgb``.

    ``paint`` and ``sky_distance`` go to ``render.render``. Distractor geoms are drawn at the
    positions the ``distractors`` family chose; this moves only what is drawn, never the
    physics state.
    """
    ids = geom.geom_ids[roles.distractors]
    ctx = SceneContext(params, distractor_pos=geom_xpos[ids])
    ctx = apply_scene(spec, state, ctx, roles)
    if len(ids):
        geom_xpos = geom_xpos.at[ids].set(ctx.distractor_pos)
    out = rendering.render(
        geom,
        ctx.params,
        geom_xpos,
        geom_xmat,
        cam_pos,
        cam_mat,
        height=height,
        width=width,
        shadows=shadows,
        paint=paint,
        sky_distance=sky_distance,
    )
    return out.replace(rgb=apply_image(spec, state, out.rgb))
