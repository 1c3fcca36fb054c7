"""Visual shifts at graded severities, applied on device inside the compiled env step.

    from pvm_mbrl import envs, shifts
    env = envs.make("PickCube", num_envs=4, shift="strong")
    env = envs.with_shift(env, shifts.ladder("fog", [0, 0.25, 0.5, 1.0]))  # one preset per env

This package knows nothing of envs (it imports only ``pvm_mbrl.render``); ``envs`` puts a
shift on an env (``envs.make(shift=...)``, ``envs.with_shift``) and calls :func:`sample`,
:func:`advance` and :func:`render_shifted` from its rendering layer (``envs.rendered``).

Scene families edit the renderer's ``SceneParams`` before rendering (textures, colours, light,
night, fog, camera, background, distractors); image families edit the rendered pixels (colour
jitter, sensor noise, blur, rain, occluders, random convolution). See ``presets`` for names.
"""

from pvm_mbrl.shifts.families import (
    FAMILIES,
    Family,
    ShiftSpec,
    ShiftState,
    advance,
    apply_image,
    apply_scene,
    sample,
)
from pvm_mbrl.shifts.pipeline import render_shifted
from pvm_mbrl.shifts.presets import (
    DCS_LEVELS,
    DRIVING,
    PRESETS,
    STUDY_LIGHTING,
    Preset,
    ShiftBatch,
    batch,
    compose,
    get,
    ladder,
)
from pvm_mbrl.shifts.scene import SceneContext, SceneRoles

__all__ = [
    "DCS_LEVELS",
    "DRIVING",
    "FAMILIES",
    "PRESETS",
    "STUDY_LIGHTING",
    "Family",
    "Preset",
    "SceneContext",
    "SceneRoles",
    "ShiftBatch",
    "ShiftSpec",
    "ShiftState",
    "advance",
    "apply_image",
    "apply_scene",
    "batch",
    "compose",
    "get",
    "ladder",
    "render_shifted",
    "sample",
]
