"""Configuration of the ViT body (:class:`ViTConfig`) and the activations it supports.

:data:`FAMILIES` are the model families :class:`~pvm_mbrl.encoders.vit.ViT` implements;
:data:`ACTIVATIONS` maps transformers' activation names to JAX functions with the same formula.
"""

from __future__ import annotations

import dataclasses
import functools

import jax

FAMILIES = ("dinov2", "clip")


def _quick_gelu(x: jax.Array) -> jax.Array:
    return x * jax.nn.sigmoid(1.702 * x)


# transformers' ACT2FN names -> JAX functions with the same formula.
ACTIVATIONS = {
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "gelu_new": functools.partial(jax.nn.gelu, approximate=True),
    "gelu_pytorch_tanh": functools.partial(jax.nn.gelu, approximate=True),
    "quick_gelu": _quick_gelu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "relu": jax.nn.relu,
}


@dataclasses.dataclass(frozen=True)
class ViTConfig:
    """Static shape and behaviour of a :class:`ViT`.

    ``image_size // patch_size`` is the side of the stored (square) position grid. ``mlp_dim`` is
    the MLP hidden width (for SwiGLU: the width of each of the gate and up projections).
    ``layerscale_value`` is None for no LayerScale (CLIP), else LayerScale's initial value.
    ``pos_antialias`` resizes the position grid with torch's antialiased bicubic
    (``Dinov2WithRegistersModel`` does, ``Dinov2Model`` and CLIP do not).
    """

    family: str
    hidden_size: int
    num_layers: int
    num_heads: int
    mlp_dim: int
    image_size: int
    patch_size: int
    num_channels: int = 3
    head_dim: int | None = None
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-6
    qkv_bias: bool = True
    swiglu: bool = False
    layerscale_value: float | None = 1.0
    num_register_tokens: int = 0
    pos_antialias: bool = False

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        if not self.swiglu and self.hidden_act not in ACTIVATIONS:
            raise NotImplementedError(
                f"hidden_act {self.hidden_act!r} is not supported; expected one of "
                f"{sorted(ACTIVATIONS)}"
            )
        if self.head_dim is None and self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} must be divisible by num_heads {self.num_heads}"
            )
        if self.image_size < self.patch_size:
            raise ValueError(f"image_size {self.image_size} < patch_size {self.patch_size}")
        if self.family == "clip" and (
            self.swiglu or self.num_register_tokens or self.layerscale_value is not None
        ):
            raise ValueError("CLIP has no SwiGLU, register tokens or LayerScale")

    @property
    def attn_head_dim(self) -> int:
        return self.head_dim or self.hidden_size // self.num_heads

    @property
    def grid_size(self) -> int:
        """Side of the stored position-embedding grid."""
        return self.image_size // self.patch_size
