"""Small neural-network building blocks: symlog transforms and DreamerV3's output distributions."""

from pvm_mbrl.nn.distributions import (
    BoundedNormal,
    OneHotDist,
    TwoHotSymlog,
    kl_free_bits,
    symexp_bins,
    two_hot,
)
from pvm_mbrl.nn.functional import symexp, symlog

__all__ = [
    "BoundedNormal",
    "OneHotDist",
    "TwoHotSymlog",
    "kl_free_bits",
    "symexp",
    "symexp_bins",
    "symlog",
    "two_hot",
]
