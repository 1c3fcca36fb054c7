"""Load Hugging Face DINOv2 / CLIP vision checkpoints (safetensors) into :class:`ViT`.

A checkpoint is a directory with ``config.json`` and ``model.safetensors`` (or the shards named by
``model.safetensors.index.json``), or a hub name (``facebook/dinov2-small``) that
``huggingface_hub`` resolves from its local cache, downloading only when online. Only safetensors
are read (as numpy, no torch, no pickle).

``config.json`` is parsed by :mod:`pvm_mbrl.encoders.checkpoint_config`, and checkpoint keys (the
Hub's legacy names and transformers 5's) are mapped onto the ViT's parameters by
:mod:`pvm_mbrl.encoders.checkpoint_keys`. Any missing, unexpected or mis-shaped key raises one
ValueError listing them all. Weights of any float dtype (bfloat16 included) are loaded as float32
parameters.

A file of the checkpoint that cannot be read (a truncated or corrupt ``.safetensors``, a
``config.json`` or index that is not JSON, not a JSON object, or not what it should hold)
raises :class:`CheckpointFileError`, a ValueError naming the file, chained from the original.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import jax.numpy as jnp
import ml_dtypes
import numpy as np
from flax import nnx
from safetensors import SafetensorError, safe_open

from pvm_mbrl.encoders.checkpoint_config import parse_config
from pvm_mbrl.encoders.checkpoint_keys import canonical_keys, expected_entries
from pvm_mbrl.encoders.vit import ViT
from pvm_mbrl.encoders.vit_config import ViTConfig

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


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
    try:
        return safe_open(str(path), framework="numpy")
    except SafetensorError as e:
        raise CheckpointFileError(
            f"{path} is not a readable safetensors file (truncated or corrupt: {e})"
        ) from e


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
