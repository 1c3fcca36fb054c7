"""One Vision Transformer body for DINOv2 (with or without registers) and CLIP's vision tower.

Numerically it follows transformers' ``Dinov2Model``, ``Dinov2WithRegistersModel`` and
``CLIPVisionModel`` (checked against them to < 1e-4 in float32 by ``tests/test_vit.py``):

- DINOv2: patch conv (with bias) -> ``[CLS] + patches`` -> ``+ position embeddings`` -> register
  tokens inserted after CLS -> pre-norm blocks with LayerScale -> final LayerNorm on every token.
  Pooled output: the CLS token after that LayerNorm. Dropout / drop-path are not implemented
  (the forward is transformers' eval-mode one).
- CLIP: patch conv (no bias) -> ``[class embedding] + patches`` -> ``+ position embeddings`` ->
  ``pre_layrnorm`` -> pre-norm blocks -> last hidden state (not normed); pooled output:
  ``post_layernorm`` of the CLS token.

Inputs are normalised float pixels ``[N, H, W, C]`` (channels last; see :func:`preprocess`). Any
``H, W`` of at least one patch works: the position grid is resized with :func:`bicubic_resize`
exactly as transformers' ``interpolate_pos_encoding`` does (for CLIP that is its
``interpolate_pos_encoding=True`` path). Shapes are static, so one compiled function per size.

Parameters are float32; ``dtype`` sets the compute dtype (norm statistics and attention softmax
stay float32). The blocks live in the ``nnx.List`` ``blocks``, so a parameter filter can pick
"the last k blocks" by path, and :meth:`ViT.embed`, :meth:`ViT.blocks_forward`,
:meth:`ViT.final_norm` and :meth:`ViT.pooled` let callers cache activations of the frozen part;
:meth:`ViT.attention_probs` gives a block's softmax attention (for attention-map analyses).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

FAMILIES = ("dinov2", "clip")

# Per-family pixel normalisation (mean, std), as in the models' Hugging Face image processors.
NORMALISATION = {
    "dinov2": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
}


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


def _cubic(x: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution kernel with parameter ``a`` at distances ``x``."""
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x < 1, near, np.where(x < 2, far, 0.0))


@functools.lru_cache(maxsize=64)
def bicubic_weights(in_size: int, out_size: int, antialias: bool = False) -> np.ndarray:
    """``[out_size, in_size]`` matrix of torch's 1-D bicubic resampling (``align_corners=False``).

    Without antialias (``F.interpolate(mode="bicubic")``): source
    ``s = (i + 0.5) * in / out - 0.5``, the four taps ``floor(s) - 1 .. floor(s) + 2`` clamped to
    the border, ``a = -0.75``.
    With antialias (``antialias=True``, PIL's filter): taps around ``c = (i + 0.5) * in / out``
    within ``2 * max(in / out, 1)``, weights ``cubic((j + 0.5 - c) / max(in / out, 1))`` with
    ``a = -0.5``, cut at the border and normalised to sum 1.
    """
    scale = in_size / out_size
    w = np.zeros((out_size, in_size), np.float64)
    for i in range(out_size):
        if not antialias:
            src = scale * (i + 0.5) - 0.5
            base = math.floor(src)
            for k in range(-1, 3):
                w[i, min(max(base + k, 0), in_size - 1)] += _cubic(
                    np.float64(src - base - k), -0.75
                )
        else:
            support = 2.0 * max(scale, 1.0)
            centre = scale * (i + 0.5)
            lo = max(int(centre - support + 0.5), 0)
            hi = min(int(centre + support + 0.5), in_size)
            taps = np.arange(lo, hi)
            weights = _cubic((taps - centre + 0.5) / max(scale, 1.0), -0.5)
            w[i, lo:hi] = weights / weights.sum()
    return w


def bicubic_resize(x: jax.Array, size: tuple[int, int], *, antialias: bool = False) -> jax.Array:
    """Resize ``x [H, W, ...]`` to ``size`` like torch's ``F.interpolate(mode="bicubic",
    align_corners=False, antialias=antialias)``, in float32.

    Written here because ``jax.image.resize`` does not match torch: its cubic kernel uses
    ``a = -0.5`` and it always antialiases when downsampling, while torch's plain bicubic uses
    ``a = -0.75`` with border-clamped taps (see :func:`bicubic_weights`). Separable: one static
    weight matrix per axis, applied with two einsums.
    """
    h, w = x.shape[:2]
    wh = jnp.asarray(bicubic_weights(h, size[0], antialias), jnp.float32)
    ww = jnp.asarray(bicubic_weights(w, size[1], antialias), jnp.float32)
    hi = jax.lax.Precision.HIGHEST
    x = jnp.einsum("oh,hw...->ow...", wh, x.astype(jnp.float32), precision=hi)
    return jnp.einsum("pw,ow...->op...", ww, x, precision=hi)


def _size_pair(size: int | Sequence[int]) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"size must be a positive int or (height, width), got {size!r}")
    return int(pair[0]), int(pair[1])


def preprocess(images: jax.Array, family: str, size: int | Sequence[int]) -> jax.Array:
    """uint8 images ``[..., H, W, 3]`` -> normalised float32 ``[..., h, w, 3]`` for ``family``.

    Our own on-device preprocessing, not the Hugging Face processors': the whole image is resized
    to ``size`` (no shortest-edge resize + centre crop) with ``jax.image.resize`` bicubic
    (antialiased when shrinking) and clipped to ``[0, 1]`` (the range a uint8 resize keeps), then
    ``(x - mean) / std`` with the family's :data:`NORMALISATION`.
    """
    if family not in NORMALISATION:
        raise ValueError(f"family must be one of {tuple(NORMALISATION)}, got {family!r}")
    h, w = _size_pair(size)
    shape = tuple(images.shape)
    if images.dtype != jnp.uint8:
        raise ValueError(f"images must be uint8 [..., H, W, 3], got dtype {images.dtype}")
    if len(shape) < 3 or shape[-1] != 3:
        raise ValueError(f"images must have shape [..., H, W, 3], got {shape}")
    x = jnp.asarray(images).astype(jnp.float32) / 255.0
    if shape[-3:-1] != (h, w):
        x = jax.image.resize(x, (*shape[:-3], h, w, 3), method="bicubic", antialias=True)
        x = jnp.clip(x, 0.0, 1.0)
    mean, std = (jnp.asarray(v, jnp.float32) for v in NORMALISATION[family])
    return (x - mean) / std


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


@nnx.remat
def _remat_block(block: Block, x: jax.Array) -> jax.Array:
    return block(x)


class ViT(nnx.Module):
    """Normalised pixels ``[N, H, W, C]`` -> ``(last_hidden_state [N, T, D], pooled [N, D])``.

    ``T = num_prefix_tokens + num_patches(H, W)``; tokens are ``[CLS, registers..., patches...]``
    with patches in row-major order. ``remat=True`` rematerialises each block in the backward pass.
    """

    def __init__(
        self, config: ViTConfig, *, rngs: nnx.Rngs, dtype=jnp.float32, remat: bool = False
    ):
        cfg, d, p = config, config.hidden_size, config.patch_size
        init = nnx.initializers.truncated_normal(0.02)
        self.config, self.dtype, self.remat = cfg, dtype, remat
        self.patch_embed = nnx.Conv(
            cfg.num_channels,
            d,
            (p, p),
            strides=(p, p),
            padding="VALID",
            use_bias=cfg.family == "dinov2",
            kernel_init=init,
            dtype=dtype,
            param_dtype=jnp.float32,
            rngs=rngs,
        )
        self.cls_token = nnx.Param(init(rngs.params(), (d,), jnp.float32))
        self.pos_embed = nnx.Param(init(rngs.params(), (1 + cfg.grid_size**2, d), jnp.float32))
        r = cfg.num_register_tokens
        self.register_tokens = nnx.Param(jnp.zeros((r, d), jnp.float32)) if r else None
        self.pre_norm = _layer_norm(cfg, rngs=rngs, dtype=dtype) if cfg.family == "clip" else None
        self.blocks = nnx.List([Block(cfg, rngs=rngs, dtype=dtype) for _ in range(cfg.num_layers)])
        self.norm = _layer_norm(cfg, rngs=rngs, dtype=dtype)

    @property
    def family(self) -> str:
        return self.config.family

    @property
    def patch_size(self) -> int:
        return self.config.patch_size

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    @property
    def num_layers(self) -> int:
        return self.config.num_layers

    @property
    def num_prefix_tokens(self) -> int:
        """CLS plus register tokens before the patch tokens."""
        return 1 + self.config.num_register_tokens

    def num_patches(self, height: int, width: int) -> int:
        return (height // self.patch_size) * (width // self.patch_size)

    def check_pixels(self, pixels: jax.Array) -> None:
        """Raise a ValueError unless ``pixels`` is float ``[N, H, W, C]`` with H, W >= patch."""
        c, p = self.config.num_channels, self.patch_size
        want = f"float [N, H, W, {c}] with H, W >= patch size {p}"
        shape = tuple(pixels.shape)
        if not jnp.issubdtype(pixels.dtype, jnp.floating):
            raise ValueError(f"pixels must be {want} (see preprocess), got dtype {pixels.dtype}")
        if len(shape) != 4 or shape[-1] != c or min(shape[1:3]) < p:
            raise ValueError(f"pixels must be {want}, got shape {shape}")

    def position_embeddings(self, grid_h: int, grid_w: int) -> jax.Array:
        """``[1 + grid_h * grid_w, D]``: CLS position as stored, patch grid resized bicubically."""
        g, pos = self.config.grid_size, self.pos_embed[...]
        if (grid_h, grid_w) == (g, g):
            return pos
        grid = pos[1:].reshape(g, g, -1)
        grid = bicubic_resize(grid, (grid_h, grid_w), antialias=self.config.pos_antialias)
        return jnp.concatenate([pos[:1], grid.reshape(grid_h * grid_w, -1)])

    def embed(self, pixels: jax.Array) -> jax.Array:
        """Normalised pixels ``[N, H, W, C]`` -> input tokens of block 0, ``[N, T, D]``."""
        self.check_pixels(pixels)
        x = self.patch_embed(pixels.astype(self.dtype))
        n, gh, gw, d = x.shape
        cls = jnp.broadcast_to(self.cls_token[...].astype(x.dtype), (n, 1, d))
        x = jnp.concatenate([cls, x.reshape(n, gh * gw, d)], axis=1)
        x = x + self.position_embeddings(gh, gw).astype(x.dtype)
        if self.register_tokens is not None:
            reg = self.register_tokens[...].astype(x.dtype)
            x = jnp.concatenate([x[:, :1], jnp.broadcast_to(reg, (n, *reg.shape)), x[:, 1:]], 1)
        if self.pre_norm is not None:
            x = self.pre_norm(x)
        return x

    def blocks_forward(
        self, tokens: jax.Array, start: int = 0, stop: int | None = None
    ) -> jax.Array:
        """Run blocks ``start .. stop - 1`` (all remaining ones when ``stop`` is None)."""
        stop = self.num_layers if stop is None else stop
        if not 0 <= start <= stop <= self.num_layers:
            raise ValueError(f"need 0 <= start <= stop <= {self.num_layers}, got {start}, {stop}")
        for i in range(start, stop):
            tokens = _remat_block(self.blocks[i], tokens) if self.remat else self.blocks[i](tokens)
        return tokens

    def final_norm(self, tokens: jax.Array) -> jax.Array:
        """Last hidden state from the last block's output: LayerNorm (DINOv2) or as is (CLIP)."""
        return self.norm(tokens) if self.family == "dinov2" else tokens

    def pooled(self, tokens: jax.Array) -> jax.Array:
        """Pooled output from the last block's output: the CLS token after the final norm
        (DINOv2's ``layernorm``, CLIP's ``post_layernorm``; both act per token)."""
        return self.norm(tokens[:, 0])

    def attention_probs(self, pixels: jax.Array, layer: int = -1) -> jax.Array:
        """Softmax attention probabilities ``[N, heads, T, T]`` (query, key; float32) of block
        ``layer`` (negative counts from the end) for normalised pixels ``[N, H, W, C]``.

        Token order as in :meth:`__call__`: ``[CLS, registers..., patches...]``. Uses the same
        q/k projections and scale as the forward pass (see :meth:`Attention.probs`).
        """
        n = self.num_layers
        if not -n <= int(layer) < n:
            raise ValueError(f"layer must be a block index in [-{n}, {n}), got {layer}")
        layer = int(layer) % n
        tokens = self.blocks_forward(self.embed(pixels), 0, layer)
        block = self.blocks[layer]
        return block.attn.probs(block.norm1(tokens))

    def __call__(self, pixels: jax.Array) -> tuple[jax.Array, jax.Array]:
        tokens = self.blocks_forward(self.embed(pixels))
        return self.final_norm(tokens), self.pooled(tokens)
