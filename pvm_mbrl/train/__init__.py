"""Training: the loop's settings (``config``), the compiled collect / insert / update loop
(``loop``: ``Trainer``, ``TrainState``) and its env stepping and recording (``collect``).

    from pvm_mbrl.train import TrainConfig, Trainer
"""

from pvm_mbrl.train.config import PREFILL_POLICIES, TrainConfig
from pvm_mbrl.train.loop import Trainer, TrainState

__all__ = ["PREFILL_POLICIES", "TrainConfig", "TrainState", "Trainer"]
