"""The ViT's transformer layers: :class:`Attention`, :class:`MLP`, :class:`SwiGLU` and the
pre-norm :class:`Block` (with optional LayerScale), with the float32-parameter ``Linear`` and
``LayerNorm`` they are built from."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from pvm_mbrl.encoders.vit_config import ACTIVATIONS, ViTConfig


def _linear(din: int, dout: int, *, bias: bool, rngs: nnx.Rngs, dtype) -> nnx.Linear:
    return nnx.Linear(
        din,
        dout,
        use_bias=bias,
        kernel_init=nnx.initializers.truncated_normal(0.02),
        dtype=dtype,
        param_dtype=jnp.float32,
        rngs=rngs,
    )


def _layer_norm(cfg: ViTConfig, *, rngs: nnx.Rngs, dtype) -> nnx.LayerNorm:
    return nnx.LayerNorm(
        cfg.hidden_size,
        epsilon=cfg.layer_norm_eps,
        use_fast_variance=False,
        dtype=dtype,
        param_dtype=jnp.float32,
        rngs=rngs,
    )


class Attention(nnx.Module):
    """Multi-head self-attention (no mask) with separate q/k/v projections."""

    def __init__(self, cfg: ViTConfig, *, rngs: nnx.Rngs, dtype=jnp.float32):
        d, inner = cfg.hidden_size, cfg.num_heads * cfg.attn_head_dim
        self.q_proj = _linear(d, inner, bias=cfg.qkv_bias, rngs=rngs, dtype=dtype)
        self.k_proj = _linear(d, inner, bias=cfg.qkv_bias, rngs=rngs, dtype=dtype)
        self.v_proj = _linear(d, inner, bias=cfg.qkv_bias, rngs=rngs, dtype=dtype)
        self.o_proj = _linear(inner, d, bias=True, rngs=rngs, dtype=dtype)
        self.num_heads, self.head_dim = cfg.num_heads, cfg.attn_head_dim

    def __call__(self, x: jax.Array) -> jax.Array:
        split = (*x.shape[:-1], self.num_heads, self.head_dim)
        q, k, v = (p(x).reshape(split) for p in (self.q_proj, self.k_proj, self.v_proj))
        y = jax.nn.dot_product_attention(q, k, v, scale=self.head_dim**-0.5)
        return self.o_proj(y.reshape(*x.shape[:-1], -1))

    def probs(self, x: jax.Array) -> jax.Array:
        """Attention probabilities ``[N, heads, T, T]`` (query, key) for input ``x [N, T, D]``:
        ``softmax(q k^T / sqrt(head_dim))`` over keys, in float32, with the projections and
        scale of :meth:`__call__` (which this does not change)."""
        split = (*x.shape[:-1], self.num_heads, self.head_dim)
        q, k = (p(x).reshape(split) for p in (self.q_proj, self.k_proj))
        logits = jnp.einsum("ntha,nsha->nhts", q, k, preferred_element_type=jnp.float32)
        return jax.nn.softmax(logits * self.head_dim**-0.5, axis=-1)


class MLP(nnx.Module):
    """``fc2(act(fc1(x)))``."""

    def __init__(self, cfg: ViTConfig, *, rngs: nnx.Rngs, dtype=jnp.float32):
        self.fc1 = _linear(cfg.hidden_size, cfg.mlp_dim, bias=True, rngs=rngs, dtype=dtype)
        self.fc2 = _linear(cfg.mlp_dim, cfg.hidden_size, bias=True, rngs=rngs, dtype=dtype)
        self.act = ACTIVATIONS[cfg.hidden_act]

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(self.act(self.fc1(x)))


class SwiGLU(nnx.Module):
    """``down_proj(silu(gate_proj(x)) * up_proj(x))`` (DINOv2's ``use_swiglu_ffn``)."""

    def __init__(self, cfg: ViTConfig, *, rngs: nnx.Rngs, dtype=jnp.float32):
        d, h = cfg.hidden_size, cfg.mlp_dim
        self.gate_proj = _linear(d, h, bias=True, rngs=rngs, dtype=dtype)
        self.up_proj = _linear(d, h, bias=True, rngs=rngs, dtype=dtype)
        self.down_proj = _linear(h, d, bias=True, rngs=rngs, dtype=dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nnx.Module):
    """Pre-norm transformer block, with LayerScale ``ls1`` / ``ls2`` when configured."""

    def __init__(self, cfg: ViTConfig, *, rngs: nnx.Rngs, dtype=jnp.float32):
        self.norm1 = _layer_norm(cfg, rngs=rngs, dtype=dtype)
        self.attn = Attention(cfg, rngs=rngs, dtype=dtype)
        self.norm2 = _layer_norm(cfg, rngs=rngs, dtype=dtype)
        self.mlp = (SwiGLU if cfg.swiglu else MLP)(cfg, rngs=rngs, dtype=dtype)
        if cfg.layerscale_value is None:
            self.ls1 = self.ls2 = None
        else:
            self.ls1 = nnx.Param(jnp.full((cfg.hidden_size,), cfg.layerscale_value, jnp.float32))
            self.ls2 = nnx.Param(jnp.full((cfg.hidden_size,), cfg.layerscale_value, jnp.float32))
        self.dtype = dtype

    def _scale(self, y: jax.Array, ls: nnx.Param | None) -> jax.Array:
        return y if ls is None else y * ls[...].astype(self.dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self._scale(self.attn(self.norm1(x)), self.ls1)
        return x + self._scale(self.mlp(self.norm2(x)), self.ls2)
