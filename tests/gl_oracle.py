"""``mujoco.Renderer`` (MuJoCo's OpenGL renderer) as the segmentation oracle of the ray caster.

It needs a GL context: ``tests/conftest.py`` picks OSMesa (software, no display) where its
library is installed, else EGL. Without any context the cross-checks skip with the reason,
unless ``PVM_MBRL_REQUIRE_GL=1`` (set by ``.ci/run``, which installs OSMesa first): then they fail.
"""

import os

import mujoco
import pytest

REQUIRE = "PVM_MBRL_REQUIRE_GL"


def renderer(m: mujoco.MjModel, height: int, width: int) -> mujoco.Renderer:
    """A ``mujoco.Renderer`` of ``m``; skips (or fails under ``PVM_MBRL_REQUIRE_GL=1``) where
    no GL context can be made."""
    try:
        return mujoco.Renderer(m, height, width)
    except Exception as e:  # no OSMesa / EGL context on this machine
        why = (
            f"mujoco.Renderer could not create a GL context (MUJOCO_GL="
            f"{os.environ.get('MUJOCO_GL')!r}): {type(e).__name__}: {e}; install OSMesa "
            "(Debian: apt-get install libosmesa6)"
        )
        if os.environ.get(REQUIRE) == "1":
            pytest.fail(why)
        pytest.skip(why)
