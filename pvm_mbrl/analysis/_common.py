"""Shared plumbing of the analyses: which ViT and input size a model means, batched jitted
application of the ViT to uint8 images, and swapping in other (e.g. fine-tuned) weights."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from pvm_mbrl.encoders.pvm import PVMEncoder
from pvm_mbrl.encoders.vit import ViT, preprocess

Model = ViT | PVMEncoder


def resolve(model: Model) -> tuple[ViT, tuple[int, int]]:
    """``(vit, (h, w))``: the ViT body and the size images are resized to before it (the
    encoder's ``input_size``; for a bare ViT its checkpoint's native ``image_size``)."""
    if isinstance(model, PVMEncoder):
        return model.vit, tuple(model.input_size)
    if isinstance(model, ViT):
        return model, (model.config.image_size, model.config.image_size)
    raise TypeError(f"expected a ViT or a PVMEncoder, got {type(model).__name__}")


def check_images(images: Any) -> np.ndarray:
    """uint8 ``[N, H, W, 3]`` as a numpy array, or a ValueError naming what was expected."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"images must be uint8 [N, H, W, 3], got {images.dtype} {tuple(images.shape)}"
        )
    return images


@functools.partial(jax.jit, static_argnames=("graphdef", "size", "what", "layer"))
def _apply(graphdef, state, images, *, size, what, layer):
    vit = nnx.merge(graphdef, state)
    pixels = preprocess(images, vit.family, size)
    if what == "pooled":
        return vit(pixels)[1].astype(jnp.float32)
    probs = vit.attention_probs(pixels, layer)
    cls = probs[:, :, 0, vit.num_prefix_tokens :]
    return cls / cls.sum(-1, keepdims=True)


def map_batches(
    model: Model, images: Any, what: str, *, batch_size: int, layer: int = -1
) -> np.ndarray:
    """The ViT of ``model`` on uint8 ``images [N, H, W, 3]`` (preprocessed as the encoder does),
    ``batch_size`` at a time (the last batch is padded, so one compilation serves all):

    - ``what="pooled"``: the pooled output ``[N, D]`` (DINOv2: CLS after the final LayerNorm;
      CLIP: ``post_layernorm`` of CLS);
    - ``what="cls_attention"``: block ``layer``'s CLS-to-patch attention ``[N, heads, P]``,
      renormalised over the patches (CLS and register keys dropped).
    """
    vit, size = resolve(model)
    images = check_images(images)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(images)
    if n == 0:
        raise ValueError("images must hold at least one image, got N = 0")
    bs = min(int(batch_size), n)
    graphdef, state = nnx.split(vit)
    out = []
    for start in range(0, n, bs):
        chunk = images[start : start + bs]
        pad = bs - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
        res = _apply(graphdef, state, chunk, size=size, what=what, layer=int(layer))
        out.append(np.asarray(res)[: bs - pad])
    return np.concatenate(out)


def with_params(model: Model, params: Any) -> Model:
    """A copy of ``model`` with its ViT weights replaced by ``params``.

    ``params`` is a PVMEncoder (returned as is), a ViT (its weights are used, so ``model``'s
    preprocessing still applies), or the ViT's parameters as an ``nnx.State`` or nested dict
    (``nnx.to_pure_dict`` layout; a dict with a top-level ``"vit"`` entry, i.e. a whole
    encoder's parameters, is read at that entry). Every ViT parameter must be given, with its
    shape.
    """
    if isinstance(params, PVMEncoder):
        return params
    vit, _ = resolve(model)
    if isinstance(params, ViT):
        params = nnx.state(params)
    if isinstance(params, nnx.State):
        params = nnx.to_pure_dict(params)
    if not isinstance(params, dict):
        raise TypeError(
            "params must be a ViT, a PVMEncoder, an nnx.State or a dict of the ViT's parameters, "
            f"got {type(params).__name__}"
        )
    if "vit" in params and "blocks" not in params:
        params = params["vit"]
    graphdef, state = nnx.split(vit)
    want = {tuple(str(k) for k in p): np.shape(v[...]) for p, v in nnx.to_flat_state(state)}
    got = {
        tuple(str(k) for k in p): np.shape(v)
        for p, v in nnx.traversals.flatten_mapping(params).items()
    }
    if want.keys() != got.keys():
        missing = sorted("/".join(k) for k in want.keys() - got.keys())[:5]
        extra = sorted("/".join(k) for k in got.keys() - want.keys())[:5]
        raise ValueError(
            f"params must hold exactly the ViT's parameters; missing {missing}, unexpected {extra}"
        )
    bad = [("/".join(k), want[k], got[k]) for k in want if want[k] != got[k]][:5]
    if bad:
        raise ValueError(f"params have wrong shapes (path, expected, got): {bad}")
    nnx.replace_by_pure_dict(state, params)
    new_vit = nnx.merge(graphdef, state)
    if isinstance(model, PVMEncoder):
        enc_graph, enc_state = nnx.split(model)
        new = nnx.merge(enc_graph, enc_state)
        new.vit = new_vit
        return new
    return new_vit
