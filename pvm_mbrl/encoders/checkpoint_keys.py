"""Checkpoint key names -> the parameters of :class:`~pvm_mbrl.encoders.vit.ViT`.

:func:`expected_entries` lists every parameter of a ``ViT(cfg)`` with its checkpoint key (in
transformers 5's names), its shape on disk and the map to the parameter's layout;
:func:`canonical_keys` renames a checkpoint's keys to those names.

Key names. Two layouts are accepted and mapped onto the same parameters:

- the Hub's (legacy) names, which transformers 5 still writes by default on ``save_pretrained``:
  DINOv2 ``encoder.layer.N.attention.attention.{query,key,value}``,
  ``attention.output.dense``, SwiGLU ``mlp.weights_in`` (gate and up projections stacked on the
  output axis, in that order) and ``mlp.weights_out``; CLIP keys under ``vision_model.``;
- transformers 5's in-memory names, written by ``save_pretrained(save_original_format=False)``:
  DINOv2 ``attention.{q,k,v,o}_proj`` and ``mlp.{gate,up,down}_proj``; and ``CLIPVisionModel``
  keys without the ``vision_model.`` prefix (what a from-scratch 5.x CLIPVisionModel saves).

Everything else in DINOv2 / CLIP vision is named the same. Keys that are skipped on purpose:
DINOv2's ``embeddings.mask_token`` (masked pre-training only), CLIP's
``embeddings.position_ids`` buffer, and in a full CLIPModel checkpoint ``text_model.*``,
``text_projection``, ``visual_projection`` and ``logit_scale``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pvm_mbrl.encoders.vit_config import ViTConfig

# Legacy DINOv2 names -> transformers 5 names (substring renames, as transformers does them).
DINOV2_RENAMES = (
    (".attention.attention.query.", ".attention.q_proj."),
    (".attention.attention.key.", ".attention.k_proj."),
    (".attention.attention.value.", ".attention.v_proj."),
    (".attention.output.dense.", ".attention.o_proj."),
    (".mlp.weights_out.", ".mlp.down_proj."),
)
SKIPPED = {
    "dinov2": ("embeddings.mask_token",),
    "clip": ("embeddings.position_ids",),
}
CLIP_OTHER_TOWER = ("text_model.", "text_projection.", "visual_projection.", "logit_scale")


# One parameter: checkpoint key (transformers 5 names), NNX path, shape on disk, to-param map.
Entry = tuple[str, tuple[str | int, ...], tuple[int, ...], Callable[[np.ndarray], np.ndarray]]


def _same(a: np.ndarray) -> np.ndarray:
    return a


def _transpose(a: np.ndarray) -> np.ndarray:
    return a.T  # torch Linear [out, in] -> [in, out]


def _conv(a: np.ndarray) -> np.ndarray:
    return a.transpose(2, 3, 1, 0)  # torch Conv [O, I, kh, kw] -> HWIO


def _rows(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1, a.shape[-1])  # [1, n, D] -> [n, D]


def _vector(a: np.ndarray) -> np.ndarray:
    return a.reshape(-1)


def expected_entries(cfg: ViTConfig) -> list[Entry]:
    """Every parameter of ``ViT(cfg)`` with its checkpoint key and on-disk shape."""
    d, c, p, r = cfg.hidden_size, cfg.num_channels, cfg.patch_size, cfg.num_register_tokens
    inner, positions = cfg.num_heads * cfg.attn_head_dim, 1 + cfg.grid_size**2
    out: list[Entry] = []

    def linear(key: str, path: tuple, din: int, dout: int, bias: bool = True) -> None:
        out.append((f"{key}.weight", (*path, "kernel"), (dout, din), _transpose))
        if bias:
            out.append((f"{key}.bias", (*path, "bias"), (dout,), _same))

    def norm(key: str, path: tuple) -> None:
        out.append((f"{key}.weight", (*path, "scale"), (d,), _same))
        out.append((f"{key}.bias", (*path, "bias"), (d,), _same))

    if cfg.family == "dinov2":
        out.append(("embeddings.cls_token", ("cls_token",), (1, 1, d), _vector))
        out.append(("embeddings.position_embeddings", ("pos_embed",), (1, positions, d), _rows))
        if r:
            out.append(("embeddings.register_tokens", ("register_tokens",), (1, r, d), _rows))
        proj = "embeddings.patch_embeddings.projection"
        out.append((f"{proj}.weight", ("patch_embed", "kernel"), (d, c, p, p), _conv))
        out.append((f"{proj}.bias", ("patch_embed", "bias"), (d,), _same))
        layer, attn, names = "encoder.layer", "attention", ("norm1", "norm2", "o_proj")
    else:
        out.append(("embeddings.class_embedding", ("cls_token",), (d,), _same))
        out.append(("embeddings.position_embedding.weight", ("pos_embed",), (positions, d), _same))
        out.append(
            ("embeddings.patch_embedding.weight", ("patch_embed", "kernel"), (d, c, p, p), _conv)
        )
        norm("pre_layrnorm", ("pre_norm",))
        layer, attn, names = (
            "encoder.layers",
            "self_attn",
            ("layer_norm1", "layer_norm2", "out_proj"),
        )
    for i in range(cfg.num_layers):
        key, path = f"{layer}.{i}", ("blocks", i)
        norm(f"{key}.{names[0]}", (*path, "norm1"))
        norm(f"{key}.{names[1]}", (*path, "norm2"))
        for q in ("q_proj", "k_proj", "v_proj"):
            linear(f"{key}.{attn}.{q}", (*path, "attn", q), d, inner, cfg.qkv_bias)
        linear(f"{key}.{attn}.{names[2]}", (*path, "attn", "o_proj"), inner, d)
        if cfg.swiglu:
            linear(f"{key}.mlp.gate_proj", (*path, "mlp", "gate_proj"), d, cfg.mlp_dim)
            linear(f"{key}.mlp.up_proj", (*path, "mlp", "up_proj"), d, cfg.mlp_dim)
            linear(f"{key}.mlp.down_proj", (*path, "mlp", "down_proj"), cfg.mlp_dim, d)
        else:
            linear(f"{key}.mlp.fc1", (*path, "mlp", "fc1"), d, cfg.mlp_dim)
            linear(f"{key}.mlp.fc2", (*path, "mlp", "fc2"), cfg.mlp_dim, d)
        if cfg.layerscale_value is not None:
            out.append((f"{key}.layer_scale1.lambda1", (*path, "ls1"), (d,), _same))
            out.append((f"{key}.layer_scale2.lambda1", (*path, "ls2"), (d,), _same))
    norm("layernorm" if cfg.family == "dinov2" else "post_layernorm", ("norm",))
    return out


def canonical_keys(keys: list[str], family: str) -> tuple[dict[str, str], list[str]]:
    """Checkpoint keys -> ``({transformers-5 vision key: file key}, skipped file keys)``.

    A legacy SwiGLU ``mlp.weights_in.{weight,bias}`` maps to its ``gate_proj`` and ``up_proj``
    halves, both pointing at the same file key.
    """
    names: dict[str, str] = {}
    skipped: list[str] = []
    for key in keys:
        name = key
        if family == "clip":
            if key.startswith(CLIP_OTHER_TOWER):
                skipped.append(key)
                continue
            name = key.removeprefix("vision_model.")
        else:
            for old, new in DINOV2_RENAMES:
                name = name.replace(old, new)
        if name in SKIPPED[family]:
            skipped.append(key)
        elif family == "dinov2" and ".mlp.weights_in." in name:
            for half in ("gate_proj", "up_proj"):
                names[name.replace("weights_in", half)] = key
        else:
            names[name] = key
    return names, skipped
