"""Attention-mask Jaccard index: how well a ViT's CLS attention covers the task object.

The study (arXiv 2509.12531) reports it (DINOv2 0.42 vs CLIP 0.34 frozen, lower after
fine-tuning) without code; this is our definition:

1. **Attention.** The last block's softmax attention of the CLS query over the *patch* keys only
   (CLS and register keys dropped, the rest renormalised to sum 1), per head:
   ``attn_cls [..., heads, P]`` with patches in row-major order (:func:`cls_attention`).
2. **Attention mask** (:func:`attention_mask`). Per head, the smallest set of patches holding at
   least ``mass`` (default 0.6) of the attention: sort descending, accumulate, keep every patch
   up to and including the one where the running sum first reaches ``mass``. Equal values are
   taken in patch order (lower index first).
3. **Object mask** (:func:`patch_mask`). The pixel mask ``[..., H, W]`` of the object is reduced
   to the ``(gh, gw)`` patch grid: patch ``(i, j)`` covers the image rectangle
   ``[i H/gh, (i+1) H/gh) x [j W/gw, (j+1) W/gw)`` (exactly the pixels the resized ViT input
   patch came from), its *object fraction* is the area-weighted share of object pixels in that
   rectangle (pixels cut by its border count with the part inside), and the patch is object
   when that fraction is ``>= threshold`` (default 0.5). When ``H, W`` are multiples of the grid
   this is the plain fraction of object pixels in each ``H/gh x W/gw`` block.
4. **Jaccard** (:func:`jaccard`): ``|A & B| / |A | B|``; NaN when the union is empty.
5. **Index** (:func:`attention_jaccard`): the Jaccard of each head's attention mask with the
   object mask, per frame and head; frames whose object mask is empty (object out of view or
   smaller than half a patch) get NaN and are left out; the index is the mean over the rest
   (NaN if none is left).

Steps 2-5 are pure, jittable JAX functions; :func:`cls_attention` runs the ViT on the host in
jitted batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from pvm_mbrl.analysis._common import Model, map_batches, resolve

# Tolerance on the object-fraction threshold for float rounding of the area weights.
_FRACTION_EPS = 1e-6


def _grid(grid: Sequence[int]) -> tuple[int, int]:
    g = tuple(int(x) for x in grid)
    if len(g) != 2 or min(g) < 1:
        raise ValueError(f"grid must be (gh, gw) with positive entries, got {grid!r}")
    return g


def cls_attention(
    model: Model, images: Any, *, layer: int = -1, batch_size: int = 32
) -> tuple[np.ndarray, tuple[int, int]]:
    """CLS-to-patch attention of block ``layer`` (default the last) for uint8 ``images``.

    ``model`` is a :class:`~pvm_mbrl.encoders.ViT` (images resized to its native size) or a
    :class:`~pvm_mbrl.encoders.PVMEncoder` (resized to its ``input_size``), with the family's
    preprocessing as in the encoder. Returns ``(attn [N, heads, P] float32, (gh, gw))``: softmax
    probabilities of the CLS query over the ``P = gh * gw`` patch keys (row-major), renormalised
    to sum 1 over the patches.
    """
    vit, (h, w) = resolve(model)
    attn = map_batches(model, images, "cls_attention", batch_size=batch_size, layer=layer)
    return attn, (h // vit.patch_size, w // vit.patch_size)


def attention_mask(attn_cls: jnp.ndarray, mass: float = 0.6) -> jnp.ndarray:
    """bool ``[..., heads, P]``: per head, the smallest set of patches holding at least ``mass``
    of the attention ``attn_cls [..., heads, P]`` (normalised to sum 1 over ``P`` first).

    Patches are taken by decreasing attention (equal values in patch order) up to and including
    the one where the running sum first reaches ``mass``. (With ``mass=1`` float rounding of
    the running sum may also keep zero-attention patches.)
    """
    if not 0.0 < float(mass) <= 1.0:
        raise ValueError(f"mass must be in (0, 1], got {mass}")
    attn_cls = jnp.asarray(attn_cls)
    if attn_cls.ndim < 1 or not jnp.issubdtype(attn_cls.dtype, jnp.floating):
        raise ValueError(
            f"attn_cls must be float [..., heads, P], got {attn_cls.dtype} {attn_cls.shape}"
        )
    p = attn_cls / attn_cls.sum(-1, keepdims=True)
    order = jnp.argsort(-p, axis=-1, stable=True)
    sorted_p = jnp.take_along_axis(p, order, axis=-1)
    before = jnp.cumsum(sorted_p, axis=-1) - sorted_p  # mass of the patches ranked higher
    keep_sorted = before < mass
    return jnp.take_along_axis(keep_sorted, jnp.argsort(order, axis=-1), axis=-1)


def _area_weights(size: int, cells: int) -> np.ndarray:
    """``[cells, size]``: share of cell ``i`` (of ``cells`` equal cells over ``size`` pixels)
    covered by pixel ``y``; rows sum to 1."""
    edges = np.arange(cells + 1) * (size / cells)
    lo = np.maximum(edges[:-1, None], np.arange(size)[None, :])
    hi = np.minimum(edges[1:, None], np.arange(size)[None, :] + 1)
    return np.clip(hi - lo, 0.0, None) / (size / cells)


def patch_fractions(seg_mask: jnp.ndarray, grid: Sequence[int]) -> jnp.ndarray:
    """float32 ``[..., gh * gw]``: the object fraction of each patch (row-major) of the bool
    pixel mask ``seg_mask [..., H, W]``, area-weighted (see the module docs); needs
    ``H >= gh`` and ``W >= gw``."""
    gh, gw = _grid(grid)
    seg_mask = jnp.asarray(seg_mask)
    if seg_mask.ndim < 2 or seg_mask.dtype != jnp.bool_:
        raise ValueError(
            f"seg_mask must be bool [..., H, W], got {seg_mask.dtype} {seg_mask.shape}"
        )
    h, w = seg_mask.shape[-2:]
    if h < gh or w < gw:
        raise ValueError(f"seg_mask [..., {h}, {w}] is smaller than the patch grid ({gh}, {gw})")
    wh = jnp.asarray(_area_weights(h, gh), jnp.float32)
    ww = jnp.asarray(_area_weights(w, gw), jnp.float32)
    m = seg_mask.astype(jnp.float32)
    frac = jnp.einsum("ih,...hw,jw->...ij", wh, m, ww, precision="highest")
    return frac.reshape(*frac.shape[:-2], gh * gw)


def patch_mask(seg_mask: jnp.ndarray, grid: Sequence[int], threshold: float = 0.5) -> jnp.ndarray:
    """bool ``[..., gh * gw]``: patches (row-major) whose object fraction (:func:`patch_fractions`)
    of the bool pixel mask ``seg_mask [..., H, W]`` is ``>= threshold``.

    ``H, W`` need not be multiples of the grid: patches cover equal rectangles of the image and
    pixels cut by a patch border count with their covered area.
    """
    if not 0.0 < float(threshold) <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    return patch_fractions(seg_mask, grid) >= float(threshold) - _FRACTION_EPS


def jaccard(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """Jaccard index (IoU) ``|a & b| / |a | b|`` of bool masks over the last axis
    (broadcasting the rest); NaN where the union is empty."""
    a, b = jnp.asarray(a), jnp.asarray(b)
    if a.dtype != jnp.bool_ or b.dtype != jnp.bool_:
        raise ValueError(f"jaccard needs bool masks, got {a.dtype} and {b.dtype}")
    if a.shape[-1:] != b.shape[-1:]:
        raise ValueError(f"masks must agree on the last axis, got {a.shape} and {b.shape}")
    inter = jnp.sum(a & b, axis=-1)
    union = jnp.sum(a | b, axis=-1)
    return jnp.where(union > 0, inter / jnp.maximum(union, 1), jnp.nan).astype(jnp.float32)


def attention_jaccard(
    attn_cls: jnp.ndarray,
    object_mask: jnp.ndarray,
    grid: Sequence[int],
    mass: float = 0.6,
    threshold: float = 0.5,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """The attention-mask Jaccard index (module docs) of ``attn_cls [..., heads, P]`` against
    the bool pixel masks ``object_mask [..., H, W]`` on the patch ``grid`` (``P = gh * gw``).

    Returns ``(mean, per_frame_per_head [..., heads])``; frames with no object patch are NaN in
    the second and left out of the mean (NaN when no frame is left).
    """
    gh, gw = _grid(grid)
    attn_cls, object_mask = jnp.asarray(attn_cls), jnp.asarray(object_mask)
    if attn_cls.ndim < 2 or attn_cls.shape[-1] != gh * gw:
        raise ValueError(
            f"attn_cls must be [..., heads, {gh * gw}] for grid ({gh}, {gw}), got {attn_cls.shape}"
        )
    if object_mask.shape[:-2] != attn_cls.shape[:-2]:
        raise ValueError(
            f"object_mask [..., H, W] must have the leading dims {attn_cls.shape[:-2]} of "
            f"attn_cls, got {object_mask.shape}"
        )
    att = attention_mask(attn_cls, mass)
    obj = patch_mask(object_mask, (gh, gw), threshold)
    iou = jaccard(att, obj[..., None, :])
    iou = jnp.where(obj.any(-1)[..., None], iou, jnp.nan)
    return jnp.nanmean(iou), iou


def upsample_patch_mask(mask: jnp.ndarray, grid: Sequence[int], size: Sequence[int]) -> jnp.ndarray:
    """bool ``[..., H, W]`` from a patch mask ``[..., gh * gw]``: each pixel takes the patch its
    centre falls in (for overlays)."""
    gh, gw = _grid(grid)
    h, w = (int(s) for s in size)
    mask = jnp.asarray(mask)
    if mask.shape[-1:] != (gh * gw,):
        raise ValueError(f"mask must be [..., {gh * gw}] for grid ({gh}, {gw}), got {mask.shape}")
    rows = ((np.arange(h) + 0.5) * gh / h).astype(int)
    cols = ((np.arange(w) + 0.5) * gw / w).astype(int)
    m = mask.reshape(*mask.shape[:-1], gh, gw)
    return m[..., rows, :][..., cols]
