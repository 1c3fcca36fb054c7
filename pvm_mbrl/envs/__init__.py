"""Environments: MJX physics, on-device rendering, composable wrappers, a registry.

    from pvm_mbrl import envs
    env = envs.make("PickCube", image_size=64, camera="wrist", num_envs=16)
    state = env.reset(jax.random.PRNGKey(0))
    state = env.step(state, actions)                     # actions [16, 4] in [-1, 1]

Tasks: ``envs.manipulation`` (the table-top scene) and ``envs.dmc`` (the Control Suite), drawn
by their rendering layer ``envs.rendered`` with ``pvm_mbrl.render`` under ``pvm_mbrl.shifts``.
``envs.visibility`` counts the pixels each named body covers in a task's camera
(``envs.visible``). ``envs.brax_adapter`` (imported on first use: it needs brax) runs a task
under brax's training code.
"""

import importlib

from pvm_mbrl.envs import dmc, manipulation
from pvm_mbrl.envs.core import Env, Space, State, checked_step, validate_action
from pvm_mbrl.envs.registry import make, register, registered
from pvm_mbrl.envs.rendered import with_shift
from pvm_mbrl.envs.visible import Visible, visibility
from pvm_mbrl.envs.wrappers import (
    ActionRepeat,
    AutoReset,
    BatchEnv,
    PixelsOnly,
    TimeLimit,
    Wrapper,
    rollout,
    without_auto_reset,
)

__all__ = [
    "ActionRepeat",
    "AutoReset",
    "BatchEnv",
    "Env",
    "PixelsOnly",
    "Space",
    "State",
    "TimeLimit",
    "Visible",
    "Wrapper",
    "checked_step",
    "dmc",
    "make",
    "manipulation",
    "register",
    "registered",
    "rollout",
    "validate_action",
    "visibility",
    "with_shift",
    "without_auto_reset",
]


def __getattr__(name):
    if name == "brax_adapter":
        return importlib.import_module(f"pvm_mbrl.envs.{name}")
    raise AttributeError(f"module 'pvm_mbrl.envs' has no attribute {name!r}")
