"""Test set-up: JAX on the CPU, a persistent compilation cache, shared fixtures.

The tests' compilation cache lives in ``.cache/jax`` at the repository root, not in the user
cache folder the library uses by default (``pvm_mbrl.compile_cache``); ``PVM_MBRL_JAX_CACHE``
overrides it. XLA compile time dominates CPU test runs; with the cache a second ``make test``
skips most compiles. Delete the folder to start cold.
"""

import ctypes.util
import os
import pathlib

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The GL oracle's context (tests/gl_oracle.py): OSMesa where installed (software, no display
# needed), else EGL.
os.environ.setdefault("MUJOCO_GL", "osmesa" if ctypes.util.find_library("OSMesa") else "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
os.environ.setdefault(
    "PVM_MBRL_JAX_CACHE", str(pathlib.Path(__file__).resolve().parents[1] / ".cache/jax")
)

import pvm_mbrl

pvm_mbrl.setup()  # host-memory reuse and the compilation cache, before any JAX work
