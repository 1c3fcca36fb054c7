"""pvm_mbrl: model-based RL from pixels with pre-trained vision encoders, on the accelerator.

Submodules are imported explicitly: ``from pvm_mbrl import envs``.
"""

from pvm_mbrl import compile_cache, hostmem

__version__ = "0.1.0"

# Before any submodule starts JAX: reuse freed host buffers (see pvm_mbrl.hostmem).
hostmem.reuse_host_memory()
# A persistent compilation cache in a user cache folder (see pvm_mbrl.compile_cache).
compile_cache.enable()
