"""DreamerV3 pieces as pure JAX functions: returns and normalisers (more to come with the agent)."""

from pvm_mbrl.dreamer.returns import PercentileNormalizer, lambda_returns

__all__ = ["PercentileNormalizer", "lambda_returns"]
