"""Image encoders behind one protocol: an NNX module mapping uint8 images ``[..., H, W, 3]`` to
features ``[..., output_size]`` (an ``output_size`` attribute declares ``D``).

``make(name, image_shape, rngs=..., **options)`` builds a registered encoder; ``register`` adds
one (any NNX module with the protocol, or a Linen module through ``flax.nnx.bridge``: see
``examples/custom_encoder.py``). Registered:

- ``"cnn"``: DreamerV3's baseline CNN (:mod:`pvm_mbrl.encoders.cnn`);
- ``"dinov2-small"``, ``"dinov2-base"``, ``"dinov2-large"``, ``"dinov2-small-reg"`` (with
  registers), ``"clip-vit-b32"``, ``"clip-vit-b16"``: the public Hugging Face checkpoints
  (:data:`CHECKPOINTS`) in a :class:`PVMEncoder` with the study's read-out (DINOv2: all patch
  tokens; CLIP: the pooled output), frozen by default. ``checkpoint=`` (a local directory or
  another hub name) overrides the checkpoint, ``cache_dir=`` the Hugging Face cache;
- ``"vit-s14-scratch"``: the same ViT-S/14 body randomly initialised (the study's inductive-bias
  control), fully trained by default; ``"vit-scratch"`` takes the architecture from
  ``checkpoint=`` (its config only) instead.

PVM options: ``input_size``, ``output``, ``layers``, ``head``, ``proj_dim``, ``finetune``
(see :class:`PVMEncoder`), ``dtype`` (compute dtype) and ``remat`` (per-block
rematerialisation).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import jax.numpy as jnp
from flax import nnx

from pvm_mbrl.encoders.checkpoints import LoadedViT, load_vit, read_config
from pvm_mbrl.encoders.cnn import CNNEncoder
from pvm_mbrl.encoders.finetune import FineTune, make_pvm_optimizer, param_labels
from pvm_mbrl.encoders.pvm import PVMEncoder
from pvm_mbrl.encoders.vit import ViT
from pvm_mbrl.encoders.vit_config import ViTConfig

load = load_vit

# registry name -> (Hugging Face checkpoint, the study's output)
CHECKPOINTS = {
    "dinov2-small": ("facebook/dinov2-small", "patches"),
    "dinov2-base": ("facebook/dinov2-base", "patches"),
    "dinov2-large": ("facebook/dinov2-large", "patches"),
    "dinov2-small-reg": ("facebook/dinov2-with-registers-small", "patches"),
    "clip-vit-b32": ("openai/clip-vit-base-patch32", "pooled"),
    "clip-vit-b16": ("openai/clip-vit-base-patch16", "pooled"),
}

# ViT-S/14 as in facebook/dinov2-small (LayerScale starts at transformers' default 1.0).
VIT_S14 = ViTConfig(
    family="dinov2",
    hidden_size=384,
    num_layers=12,
    num_heads=6,
    mlp_dim=1536,
    image_size=224,
    patch_size=14,
    layer_norm_eps=1e-6,
    layerscale_value=1.0,
)


def pretrained(
    hub_name: str,
    image_shape: tuple[int, int, int],
    *,
    rngs: nnx.Rngs,
    checkpoint: str | Path | None = None,
    cache_dir: str | Path | None = None,
    dtype=jnp.float32,
    remat: bool = False,
    output: str = "patches",
    finetune: str | FineTune = "frozen",
    **options,
) -> PVMEncoder:
    """A :class:`PVMEncoder` around the checkpoint ``checkpoint or hub_name``."""
    vit, _ = load_vit(checkpoint or hub_name, dtype=dtype, remat=remat, cache_dir=cache_dir)
    return PVMEncoder(vit, image_shape, output=output, finetune=finetune, rngs=rngs, **options)


def vit_scratch(
    image_shape: tuple[int, int, int],
    *,
    rngs: nnx.Rngs,
    checkpoint: str | Path | None = None,
    cache_dir: str | Path | None = None,
    dtype=jnp.float32,
    remat: bool = False,
    output: str = "patches",
    finetune: str | FineTune = "full",
    **options,
) -> PVMEncoder:
    """A randomly initialised ViT (the study's inductive-bias control): ViT-S/14 (DINOv2's shape
    and preprocessing), or the architecture of ``checkpoint`` (only its ``config.json`` is
    read, never its weights)."""
    cfg = VIT_S14 if checkpoint is None else read_config(checkpoint, cache_dir=cache_dir)[1]
    vit = ViT(cfg, rngs=rngs, dtype=dtype, remat=remat)
    return PVMEncoder(vit, image_shape, output=output, finetune=finetune, rngs=rngs, **options)


_REGISTRY: dict[str, Callable[..., nnx.Module]] = {"cnn": CNNEncoder}
for _name, (_hub, _output) in CHECKPOINTS.items():
    _REGISTRY[_name] = functools.partial(pretrained, _hub, output=_output)
_REGISTRY["vit-s14-scratch"] = vit_scratch
_REGISTRY["vit-scratch"] = vit_scratch


def register(name: str, factory: Callable[..., nnx.Module]) -> None:
    """Register ``factory(image_shape, *, rngs, **options) -> encoder`` under ``name``.

    The agent calls it with ``dtype=`` (its compute dtype), so a factory should accept that.
    """
    _REGISTRY[name] = factory


def registered() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def make(name: str, image_shape: tuple[int, int, int], *, rngs: nnx.Rngs, **options) -> nnx.Module:
    """Build encoder ``name`` for images of ``image_shape`` (H, W, C)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown encoder {name!r}; registered: {', '.join(registered())}")
    return _REGISTRY[name](tuple(image_shape), rngs=rngs, **options)


__all__ = [
    "CHECKPOINTS",
    "VIT_S14",
    "CNNEncoder",
    "FineTune",
    "LoadedViT",
    "PVMEncoder",
    "ViT",
    "ViTConfig",
    "load",
    "load_vit",
    "make",
    "make_pvm_optimizer",
    "param_labels",
    "pretrained",
    "register",
    "registered",
    "vit_scratch",
]
