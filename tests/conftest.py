"""Test set-up: JAX on the CPU, a persistent compilation cache, shared fixtures.

The compilation cache lives in ``.cache/jax`` at the repository root (override with
``PVM_MBRL_JAX_CACHE``). XLA compile time dominates CPU test runs; with the cache a second
``make test`` skips most compiles. Delete the folder to start cold.
"""

import os
import pathlib

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MUJOCO_GL", "egl")

import jax

import pvm_mbrl  # noqa: F401  (before any JAX computation: host-memory reuse, pvm_mbrl.hostmem)

_CACHE = pathlib.Path(
    os.environ.get("PVM_MBRL_JAX_CACHE", pathlib.Path(__file__).resolve().parents[1] / ".cache/jax")
)
_CACHE.mkdir(parents=True, exist_ok=True)
jax.config.update("jax_compilation_cache_dir", str(_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
