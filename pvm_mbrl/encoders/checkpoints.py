"""Load Hugging Face DINOv2 / CLIP vision checkpoints (safetensors) into :class:`ViT`.

A checkpoint is a directory with ``config.json`` and ``model.safetensors`` (or the shards named by
``model.safetensors.index.json``), or a hub name (``facebook/dinov2-small``) that
``huggingface_hub`` resolves from its local cache, downloading only when online. Only safetensors
are read (as numpy, no torch, no pickle).

``config.json`` is parsed with transformers' config classes (``Dinov2Config``,
``Dinov2WithRegistersConfig``, ``CLIPVisionConfig``; ``CLIPConfig``'s ``vision_config``), which
import without torch. Settings the body does not implement raise NotImplementedError naming the
field; dropout and drop-path rates are ignored (inference-mode forward).

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
``text_projection``, ``visual_projection`` and ``logit_scale``. Any other missing, unexpected or
mis-shaped key raises one ValueError listing them all. Weights of any float dtype (bfloat16
included) are loaded as float32 parameters.

A file of the checkpoint that cannot be read (a truncated or corrupt ``.safetensors``, a
``config.json`` or index that is not JSON, not a JSON object, or not what it should hold)
raises :class:`CheckpointFileError`, a ValueError naming the file, chained from the original.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import nnx

from pvm_mbrl.encoders.vit import ViT, ViTConfig

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"

# model_type in config.json -> family
MODEL_TYPES = {
    "dinov2": "dinov2",
    "dinov2_with_registers": "dinov2",
    "clip_vision_model": "clip",
    "clip": "clip",
}
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


class LoadedViT(NamedTuple):
    model: ViT
    family: str


class CheckpointFileError(ValueError):
    """A checkpoint file is unreadable or malformed; the message names the file."""


def _read_json(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; :class:`CheckpointFileError` naming it otherwise."""
    try:
        doc = json.loads(path.read_bytes())
    except json.JSONDecodeError as e:
        raise CheckpointFileError(
            f"{path} is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}"
        ) from e
    except UnicodeDecodeError as e:
        raise CheckpointFileError(f"{path} is not valid JSON: not UTF-8 text ({e})") from e
    if not isinstance(doc, dict):
        raise CheckpointFileError(f"{path} must hold a JSON object, got {type(doc).__name__}")
    return doc


def _open_safetensors(path: Path):
    """``safe_open(path)``; :class:`CheckpointFileError` naming a truncated or corrupt file."""
    from safetensors import SafetensorError, safe_open

    try:
        return safe_open(str(path), framework="numpy")
    except SafetensorError as e:
        raise CheckpointFileError(
            f"{path} is not a readable safetensors file (truncated or corrupt: {e})"
        ) from e


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


class _Shards:
    """Lazy reader over one or several safetensors files: ``keys``, ``shape(key)``, ``[key]``."""

    def __init__(self, folder: Path):
        index, single = folder / INDEX_FILE, folder / WEIGHTS_FILE
        if single.is_file():
            files = {single.name: single}
            owner = None
        elif index.is_file():
            weight_map = _read_json(index).get("weight_map")
            if not isinstance(weight_map, dict) or not all(
                isinstance(v, str) for v in weight_map.values()
            ):
                raise CheckpointFileError(
                    f"{index} must hold a 'weight_map' object mapping tensor names to shard "
                    f"files, got {type(weight_map).__name__}"
                )
            files = {name: folder / name for name in sorted(set(weight_map.values()))}
            missing = [str(f) for f in files.values() if not f.is_file()]
            if missing:
                raise FileNotFoundError(f"{INDEX_FILE} names shards that are missing: {missing}")
            owner = weight_map
        else:
            found = sorted(f.name for f in folder.iterdir()) if folder.is_dir() else []
            raise FileNotFoundError(
                f"{folder} must hold {WEIGHTS_FILE} or {INDEX_FILE} with its shards (only "
                f"safetensors are read); found {found}"
            )
        self._files = files
        self._handles = {name: _open_safetensors(f) for name, f in files.items()}
        if owner is not None:
            held = {name: set(h.keys()) for name, h in self._handles.items()}
            absent = sorted(f"{k} ({n})" for k, n in owner.items() if k not in held[n])
            if absent:
                raise CheckpointFileError(
                    f"{index} names tensors that are not in their shard: "
                    + _listing("absent", absent)
                )
        self._owner = owner or {k: n for n, h in self._handles.items() for k in h.keys()}

    def keys(self) -> list[str]:
        return sorted(self._owner)

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._handles[self._owner[key]].get_slice(key).get_shape())

    def __getitem__(self, key: str) -> np.ndarray:
        handle = self._handles[self._owner[key]]
        if handle.get_slice(key).get_dtype() == "BF16":
            return _read_bf16(self._files[self._owner[key]], key)
        return handle.get_tensor(key)


def _read_bf16(path: Path, key: str) -> np.ndarray:
    """Read one bfloat16 tensor straight from the file (safetensors' numpy backend has no
    bfloat16): an 8-byte header length, the JSON header, then the raw little-endian data."""
    with path.open("rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        start, end = header[key]["data_offsets"]
        f.seek(start, 1)
        data = f.read(end - start)
    if len(data) != end - start:
        raise CheckpointFileError(f"{path} is truncated: tensor {key} is cut short")
    return np.frombuffer(data, ml_dtypes.bfloat16).reshape(header[key]["shape"])


def _listing(title: str, items: list[str], limit: int = 20) -> str:
    more = f" ... and {len(items) - limit} more" if len(items) > limit else ""
    return f"{title} ({len(items)}): {', '.join(items[:limit])}{more}"


def read_params(folder: Path, cfg: ViTConfig) -> dict[tuple[str | int, ...], np.ndarray]:
    """Read and map a checkpoint's vision weights to float32 arrays keyed by NNX path."""
    shards = _Shards(folder)
    names, _ = canonical_keys(shards.keys(), cfg.family)
    entries = expected_entries(cfg)
    wanted = {e[0] for e in entries}
    missing = [e[0] for e in entries if e[0] not in names]
    unexpected = sorted({names[n] for n in names if n not in wanted})
    misshaped, params = [], {}
    for name, path, shape, to_param in entries:
        if name not in names:
            continue
        key = names[name]
        got = shards.shape(key)
        split = key != name and ".mlp.weights_in." in key
        want = (2 * shape[0], *shape[1:]) if split else shape
        if got != want:
            misshaped.append(f"{key} {got} (expected {want})")
            continue
        value = np.asarray(shards[key], np.float32)
        if split:  # gate_proj is the first half of weights_in, up_proj the second
            value = np.split(value, 2)[0 if ".gate_proj." in name else 1]
        params[path] = to_param(value)
    problems = [
        _listing(t, v)
        for t, v in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped))
        if v
    ]
    if problems:
        raise ValueError(
            f"checkpoint {folder} does not fit the {cfg.family} ViT: " + "; ".join(problems)
        )
    return params


def resolve(path_or_name: str | Path, *, cache_dir: str | Path | None = None) -> Path:
    """Local checkpoint directory, or a hub name resolved (and downloaded when online)."""
    path = Path(path_or_name).expanduser()
    if path.is_dir():
        return path
    name = str(path_or_name)
    if path.exists() or name.count("/") != 1 or name.startswith((".", "/", "~")):
        raise FileNotFoundError(
            f"{name!r} is neither a checkpoint directory ({CONFIG_FILE} + {WEIGHTS_FILE}) nor a "
            "hub name like 'facebook/dinov2-small'"
        )
    try:
        import huggingface_hub
    except ImportError as e:
        raise ImportError(
            f"loading the hub name {name!r} needs huggingface_hub: pip install 'pvm_mbrl[hub]'"
        ) from e
    patterns = [CONFIG_FILE, WEIGHTS_FILE, INDEX_FILE, "model-*.safetensors"]
    try:
        folder = huggingface_hub.snapshot_download(
            name, allow_patterns=patterns, cache_dir=cache_dir
        )
    except Exception as e:  # offline without a cached copy, unknown repo, network errors
        raise FileNotFoundError(
            f"could not get {name!r} from the Hugging Face cache or the Hub (offline with no "
            f"cached copy, or no such repository): {type(e).__name__}: {e}"
        ) from e
    return Path(folder)


def read_config(
    path_or_name: str | Path, *, cache_dir: str | Path | None = None
) -> tuple[Path, ViTConfig]:
    """The checkpoint's folder and its parsed ``config.json`` (weights are not read)."""
    folder = resolve(path_or_name, cache_dir=cache_dir)
    config_file = folder / CONFIG_FILE
    if not config_file.is_file():
        raise FileNotFoundError(f"{folder} has no {CONFIG_FILE}")
    config = _read_json(config_file)
    try:
        return folder, parse_config(config)
    except (ValueError, TypeError, KeyError, AttributeError) as e:  # not NotImplementedError
        raise CheckpointFileError(
            f"{config_file} does not describe a supported ViT: {type(e).__name__}: {e}"
        ) from e


def load_vit(
    path_or_name: str | Path,
    *,
    dtype=jnp.float32,
    remat: bool = False,
    rngs: nnx.Rngs | None = None,
    cache_dir: str | Path | None = None,
) -> LoadedViT:
    """Build a :class:`ViT` from a checkpoint directory or hub name; returns ``(model, family)``.

    ``rngs`` only seeds the (immediately replaced) initial values; every parameter comes from the
    checkpoint. ``dtype`` is the compute dtype, parameters stay float32.
    """
    folder, cfg = read_config(path_or_name, cache_dir=cache_dir)
    params = read_params(folder, cfg)
    rngs = rngs if rngs is not None else nnx.Rngs(0)
    abstract = nnx.eval_shape(lambda r: ViT(cfg, rngs=r, dtype=dtype, remat=remat), rngs)
    graphdef, state = nnx.split(abstract)
    flat = nnx.to_flat_state(state)
    paths = {tuple(path) for path, _ in flat}
    if paths != set(params):  # the entry table and the module disagree: a bug here, not in the file
        raise RuntimeError(f"parameter table mismatch: {sorted(paths ^ set(params), key=str)}")
    leaves = [(path, var.replace(jnp.asarray(params[tuple(path)]))) for path, var in flat]
    return LoadedViT(nnx.merge(graphdef, nnx.from_flat_state(leaves)), cfg.family)
