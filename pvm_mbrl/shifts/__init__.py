"""Visual shifts at graded severities, applied on device inside the compiled env step.

    from pvm_mbrl import envs, shifts
    env = envs.make("PickCube", shift="strong")              # or shifts.apply(env, "strong")
    env = shifts.apply(env, shifts.ladder("fog", [0, 0.25, 0.5, 1.0]))  # one preset per env

Scene families edit the renderer's ``SceneParams`` before rendering (textures, colours, light,
night, fog, camera, background, distractors); image families edit the rendered pixels (colour
jitter, sensor noise, blur, rain, occluders, random convolution). See ``presets`` for names.
"""

from pvm_mbrl.shifts.apply import apply, env_index
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
    PRESETS,
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
    "FAMILIES",
    "PRESETS",
    "Family",
    "Preset",
    "SceneContext",
    "SceneRoles",
    "ShiftBatch",
    "ShiftSpec",
    "ShiftState",
    "advance",
    "apply",
    "apply_image",
    "apply_scene",
    "batch",
    "compose",
    "env_index",
    "get",
    "ladder",
    "render_shifted",
    "sample",
]
