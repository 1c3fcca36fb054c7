"""Host-memory reuse for XLA:CPU: keep freed buffers in the process instead of unmapping them.

XLA:CPU allocates a compiled call's buffers with ``malloc`` and frees them when the call ends.
glibc serves blocks above 32 MiB (and any block too large for a worker thread's arena) with a
fresh ``mmap`` and unmaps it on ``free``, so every call of a large computation page-faults all
of its buffers in again and the kernel zeroes them: on a 2-core CPU a DreamerV3 size12m update
(batch 16 x 64) took 16.4-19.0 s with the system malloc against 14.3-14.8 s with the setting
below (alternating runs of ``benchmarks/train_step.py``, 2026-11-24; size1m unchanged at 2.3 s).
:func:`reuse_host_memory` asks glibc, through ``mallopt``, for one arena (``M_ARENA_MAX`` 1:
XLA's worker threads share the main heap), no ``mmap`` blocks (``M_MMAP_MAX`` 0) and no trimming
of the heap (``M_TRIM_THRESHOLD``), so freed buffers are reused by the next call. No allocator
library does this from inside a running Python process (jemalloc or tcmalloc need ``LD_PRELOAD``
before start-up), hence ``ctypes``.

``pvm_mbrl.setup()`` calls it (the library's programs call that first; importing pvm_mbrl
changes nothing), on Linux with glibc, unless ``PVM_MBRL_HOST_MALLOC=system``. It must run
before JAX starts a backend (XLA's worker threads pick their arena on their first allocation);
once one is running it changes nothing and returns ``False``, so call ``setup`` before the
first JAX computation. After a few calls of the same computation the heap holds
its buffers and further calls fault nothing in (tested). The cost: the process keeps its peak
host memory instead of returning freed blocks to the system.
"""

from __future__ import annotations

import ctypes
import os
import sys

ENV = "PVM_MBRL_HOST_MALLOC"
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
# A trim threshold of -1 becomes SIZE_MAX inside glibc: the heap is never trimmed.
_SETTINGS = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1))
_applied = False


def _jax_started() -> bool:
    """Whether JAX is imported and its backends are up (without importing or starting them)."""
    if "jax" not in sys.modules:
        return False
    from jax._src import xla_bridge  # JAX has no public query that does not start a backend

    return xla_bridge.backends_are_initialized()


def reuse_host_memory() -> bool:
    """Apply the ``mallopt`` settings above; ``True`` if they took effect for JAX's threads.

    ``False`` (and nothing changed) off Linux, without glibc, with ``PVM_MBRL_HOST_MALLOC=system``
    or once a JAX backend is running; any other value of that variable than ``reuse`` or
    ``system`` raises ``ValueError``.
    """
    mode = os.environ.get(ENV, "reuse")
    if mode not in ("reuse", "system"):
        raise ValueError(f"{ENV} must be 'reuse' (the default) or 'system', got {mode!r}")
    if mode == "system" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    if _jax_started():
        return False
    global _applied
    _applied = all(mallopt(param, value) == 1 for param, value in _SETTINGS) or _applied
    return _applied


def active() -> bool:
    """Whether :func:`reuse_host_memory` took effect in this process (benchmarks record it)."""
    return _applied
