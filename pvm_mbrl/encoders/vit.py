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
``H, W`` of at least one patch works: the position grid is resized with
:func:`~pvm_mbrl.encoders.bicubic.bicubic_resize` exactly as transformers'
``interpolate_pos_encoding`` does (for CLIP that is its ``interpolate_pos_encoding=True`` path).
Shapes are static, so one compiled function per size.

Parameters are float32; ``dtype`` sets the compute dtype (norm statistics and attention softmax
stay float32). The blocks live in the ``nnx.List`` ``blocks``, so a parameter filter can pick
"the last k blocks" by path, and :meth:`ViT.embed`, :meth:`ViT.blocks_forward`,
:meth:`ViT.final_norm` and :meth:`ViT.pooled` let callers cache activations of the frozen part;
:meth:`ViT.attention_probs` gives a block's softmax attention (for attention-map analyses).

The configuration lives in :mod:`pvm_mbrl.encoders.vit_config`, the transformer blocks in
:mod:`pvm_mbrl.encoders.vit_layers`.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from pvm_mbrl.encoders.bicubic import bicubic_resize
from pvm_mbrl.encoders.vit_config import ViTConfig
from pvm_mbrl.encoders.vit_layers import Block, _layer_norm

# Per-family pixel normalisation (mean, std), as in the models' Hugging Face image processors.
NORMALISATION = {
    "dinov2": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
}


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
