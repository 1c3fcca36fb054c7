"""DreamerV3 as pure JAX functions: config and size presets, RSSM, heads, decoder, actor-critic,
returns, optimiser and the agent API (``Dreamer``: init / initial_carry / policy / train)."""

from pvm_mbrl.dreamer.agent import AgentState, Dreamer
from pvm_mbrl.dreamer.config import SIZES, DreamerConfig
from pvm_mbrl.dreamer.networks import Networks
from pvm_mbrl.dreamer.optim import OptimizerConfig, make_optimizer
from pvm_mbrl.dreamer.returns import PercentileNormalizer, lambda_returns

__all__ = [
    "SIZES",
    "AgentState",
    "Dreamer",
    "DreamerConfig",
    "Networks",
    "OptimizerConfig",
    "PercentileNormalizer",
    "lambda_returns",
    "make_optimizer",
]
