"""``mujoco.mjx``, imported without the two lines it prints on stdout when the optional
``warp`` package (MuJoCo Warp, NVIDIA GPUs only) is missing: the JAX implementation this
library uses does not need it, and a user cannot act on them. Anything else the import prints
still reaches stdout. Import mjx from here: ``from pvm_mbrl.envs.mjx import mjx``.
"""

from __future__ import annotations

import contextlib
import io
import sys

_QUIET = ("Failed to import warp:", "Failed to import mujoco_warp:")

with contextlib.redirect_stdout(io.StringIO()) as _printed:
    from mujoco import mjx

for _line in _printed.getvalue().splitlines():
    if not _line.startswith(_QUIET):
        print(_line, file=sys.stdout)

__all__ = ["mjx"]
