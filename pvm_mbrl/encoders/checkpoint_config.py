"""Parse a checkpoint's ``config.json`` into a :class:`~pvm_mbrl.encoders.vit_config.ViTConfig`.

``config.json`` is parsed with transformers' config classes (``Dinov2Config``,
``Dinov2WithRegistersConfig``, ``CLIPVisionConfig``; ``CLIPConfig``'s ``vision_config``), which
import without torch. Settings the body does not implement raise NotImplementedError naming the
field; dropout and drop-path rates are ignored (inference-mode forward).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from pvm_mbrl.encoders.vit_config import ViTConfig

# model_type in config.json -> family
MODEL_TYPES = {
    "dinov2": "dinov2",
    "dinov2_with_registers": "dinov2",
    "clip_vision_model": "clip",
    "clip": "clip",
}


def _square(value: Any, field: str) -> int:
    """``image_size`` / ``patch_size`` as one int; non-square ones are not implemented."""
    if isinstance(value, list | tuple):
        if len(value) != 2 or value[0] != value[1]:
            raise NotImplementedError(f"non-square {field} {value!r} is not supported")
        value = value[0]
    return int(value)


def _import_transformers():
    """``import transformers``, without its "PyTorch was not found" notice (we need no torch)."""
    if "transformers" in sys.modules:
        return sys.modules["transformers"]
    log = logging.getLogger("transformers")

    def no_torch_notice(record: logging.LogRecord) -> bool:
        return "PyTorch was not found" not in record.getMessage()

    log.addFilter(no_torch_notice)
    try:
        import transformers
    finally:
        log.removeFilter(no_torch_notice)
    return transformers


def parse_config(config: dict[str, Any]) -> ViTConfig:
    """``config.json`` contents -> :class:`ViTConfig`, via transformers' config classes."""
    transformers = _import_transformers()
    model_type = config.get("model_type")
    classes = {
        "dinov2": transformers.Dinov2Config,
        "dinov2_with_registers": transformers.Dinov2WithRegistersConfig,
        "clip_vision_model": transformers.CLIPVisionConfig,
        "clip": transformers.CLIPConfig,
    }
    if model_type not in classes:
        raise ValueError(
            f"unknown model family: model_type {model_type!r}; expected one of {sorted(classes)}"
        )
    hf = classes[model_type].from_dict(config)
    if model_type == "clip":
        hf = hf.vision_config
    common = dict(
        hidden_size=hf.hidden_size,
        num_layers=hf.num_hidden_layers,
        num_heads=hf.num_attention_heads,
        image_size=_square(hf.image_size, "image_size"),
        patch_size=_square(hf.patch_size, "patch_size"),
        num_channels=hf.num_channels,
        hidden_act=hf.hidden_act,
        layer_norm_eps=hf.layer_norm_eps,
    )
    if MODEL_TYPES[model_type] == "clip":
        return ViTConfig(
            family="clip", mlp_dim=hf.intermediate_size, layerscale_value=None, **common
        )
    mlp_dim = int(hf.hidden_size * hf.mlp_ratio)
    if hf.use_swiglu_ffn:  # two thirds of the MLP width, rounded up to a multiple of 8
        mlp_dim = (int(mlp_dim * 2 / 3) + 7) // 8 * 8
    registers = hf.num_register_tokens if model_type == "dinov2_with_registers" else 0
    return ViTConfig(
        family="dinov2",
        mlp_dim=mlp_dim,
        head_dim=getattr(hf, "head_dim", None),
        qkv_bias=hf.qkv_bias,
        swiglu=hf.use_swiglu_ffn,
        layerscale_value=hf.layerscale_value,
        num_register_tokens=registers,
        pos_antialias=model_type == "dinov2_with_registers",
        **common,
    )
