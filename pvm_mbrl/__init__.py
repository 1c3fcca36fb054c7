"""pvm_mbrl: model-based RL from pixels with pre-trained vision encoders, on the accelerator.

Submodules are imported explicitly: ``from pvm_mbrl import envs``.
"""

__version__ = "0.1.0"
