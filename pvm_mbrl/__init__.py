"""pvm_mbrl: model-based RL from pixels with pre-trained vision encoders, on the accelerator.

Submodules are imported explicitly: ``from pvm_mbrl import envs``. Importing any part of the
library changes nothing in the process; programs call :func:`setup` first (the library's own
entry points do: ``experiment.run``, the examples, the benchmarks and the tests).
"""

from pvm_mbrl import compile_cache, hostmem

__version__ = "0.1.0"


def setup() -> dict[str, object]:
    """Set up this process as pvm_mbrl's programs run: freed host buffers reused by XLA:CPU
    (:func:`pvm_mbrl.hostmem.reuse_host_memory`; it takes effect only before JAX starts a
    backend, so call this first) and JAX's persistent compilation cache in a user cache folder
    (:func:`pvm_mbrl.compile_cache.enable`; ``PVM_MBRL_JAX_CACHE`` moves it or turns it off).
    Calling it again changes nothing. Returns what took effect: ``host_memory`` (bool) and
    ``compile_cache`` (the folder, or None)."""
    host_memory = hostmem.reuse_host_memory() or hostmem.active()
    return {"host_memory": host_memory, "compile_cache": compile_cache.enable()}
