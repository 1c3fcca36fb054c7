"""TD-MPC2 (Hansen, Su, Wang, ICLR 2024), the library's second world-model agent: a decoder-free
latent model that plans with MPPI at every step. It has the DreamerV3 agent's interface
(``init``, ``initial_carry``, ``policy``, ``train``), so the trainer, replay and checkpoints
run it unchanged."""

from pvm_mbrl.tdmpc2.agent import TDMPC2, AgentState
from pvm_mbrl.tdmpc2.config import MODEL_SIZES, TDMPC2Config, discount

__all__ = ["MODEL_SIZES", "TDMPC2", "AgentState", "TDMPC2Config", "discount"]
