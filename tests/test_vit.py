"""The ViT body and the Hugging Face checkpoint loader against transformers' PyTorch models.

The fixtures under ``tests/fixtures/vit`` (tiny random-weight DINOv2, DINOv2 with registers,
CLIP vision and full CLIP checkpoints plus their PyTorch outputs) come from
``tests/fixtures/make_vit_fixtures.py``; these tests need no torch.
"""

import dataclasses
import functools
import hashlib
import http.server
import json
import math
import pathlib
import shutil
import threading
import typing

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file, save_file

from pvm_mbrl.encoders import checkpoint_keys
from pvm_mbrl.encoders.bicubic import bicubic_resize
from pvm_mbrl.encoders.checkpoint_config import parse_config
from pvm_mbrl.encoders.checkpoints import load_vit
from pvm_mbrl.encoders.vit import NORMALISATION, ViT, preprocess
from pvm_mbrl.encoders.vit_config import ViTConfig

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "vit"
NAMES = ("dinov2", "dinov2_swiglu", "dinov2_registers", "clip_vision", "clip_full")
TOL = 1e-4


@functools.partial(jax.jit, static_argnums=0)
def _apply(graphdef, state, pixels):
    return nnx.merge(graphdef, state)(pixels)


def forward(model: ViT, pixels) -> tuple[np.ndarray, np.ndarray]:
    last, pooled = _apply(*nnx.split(model), jnp.asarray(pixels, jnp.float32))
    return np.asarray(last), np.asarray(pooled)


def params_of(model: ViT) -> dict[tuple, np.ndarray]:
    return {tuple(p): np.asarray(v[...]) for p, v in nnx.to_flat_state(nnx.state(model))}


def assert_same_params(a: ViT, b: ViT) -> None:
    pa, pb = params_of(a), params_of(b)
    assert pa.keys() == pb.keys()
    for path in pa:
        np.testing.assert_array_equal(pa[path], pb[path], err_msg=str(path))


@pytest.fixture(scope="module")
def loaded():
    """Each fixture loaded once: ``{name: (model, family, reference)}``."""
    out = {}
    for name in NAMES:
        model, family = load_vit(FIXTURES / name)
        out[name] = (model, family, load_file(str(FIXTURES / name / "reference.safetensors")))
    return out


def _sizes(name: str) -> list[str]:
    ref = load_file(str(FIXTURES / name / "reference.safetensors"))
    return sorted(k.removeprefix("pixels_") for k in ref if k.startswith("pixels_"))


def _copy(name: str, tmp_path: pathlib.Path, tensors: dict[str, np.ndarray]) -> pathlib.Path:
    """A checkpoint folder with ``name``'s config and the given tensors."""
    folder = tmp_path / name
    folder.mkdir()
    shutil.copy(FIXTURES / name / "config.json", folder)
    save_file(tensors, str(folder / "model.safetensors"))
    return folder


def _tensors(name: str) -> dict[str, np.ndarray]:
    return load_file(str(FIXTURES / name / "model.safetensors"))


# --- parity with transformers -------------------------------------------------------------------


@pytest.mark.parametrize(("name", "size"), [(n, s) for n in NAMES for s in _sizes(n)])
def test_parity_with_transformers(loaded, name, size):
    model, _, ref = loaded[name]
    last, pooled = forward(model, ref[f"pixels_{size}"].astype(np.float32))
    want_last, want_pooled = ref[f"last_hidden_state_{size}"], ref[f"pooler_output_{size}"]
    assert last.shape == want_last.shape and pooled.shape == want_pooled.shape
    assert np.abs(last - want_last).max() < TOL
    assert np.abs(pooled - want_pooled).max() < TOL
    # the references are not trivially small
    assert np.abs(want_last).max() > 1.0 and np.abs(want_pooled).max() > 0.5


def test_families_and_token_layout(loaded):
    expect = {
        "dinov2": ("dinov2", 1),
        "dinov2_swiglu": ("dinov2", 1),
        "dinov2_registers": ("dinov2", 3),
        "clip_vision": ("clip", 1),
        "clip_full": ("clip", 1),
    }
    for name, (family, prefix) in expect.items():
        model, got_family, ref = loaded[name]
        assert (got_family, model.family, model.num_prefix_tokens) == (family, family, prefix)
        for size in _sizes(name):
            h, w = map(int, size.split("x"))
            tokens = ref[f"last_hidden_state_{size}"].shape[1]
            assert tokens == prefix + model.num_patches(h, w)
    model = loaded["dinov2"][0]
    assert (model.patch_size, model.hidden_size, model.num_layers) == (14, 32, 2)
    assert model.config.layer_norm_eps == 1e-6 and model.config.hidden_act == "gelu"
    clip = loaded["clip_full"][0]
    assert (clip.patch_size, clip.config.hidden_act, clip.config.layer_norm_eps) == (
        8,
        "quick_gelu",
        1e-5,
    )
    assert (
        loaded["dinov2_swiglu"][0].config.swiglu and not loaded["dinov2_swiglu"][0].config.qkv_bias
    )


def test_registers_need_antialiased_position_resize(loaded):
    """Dinov2WithRegisters resizes positions with antialias: the plain bicubic would be wrong."""
    model, _, ref = loaded["dinov2_registers"]
    wrong, _ = load_vit(FIXTURES / "dinov2_registers")
    wrong.config = dataclasses.replace(model.config, pos_antialias=False)
    pixels = ref["pixels_28x28"].astype(np.float32)
    assert np.abs(forward(wrong, pixels)[0] - ref["last_hidden_state_28x28"]).max() > 1e-2


# --- the module's pieces ------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnums=0)
def _staged(graphdef, state, pixels):
    model = nnx.merge(graphdef, state)
    tokens = model.embed(pixels)
    out = model.blocks_forward(model.blocks_forward(tokens, 0, 1), 1)
    return tokens, out, model.final_norm(out), model.pooled(out)


def test_staged_forward_matches_call(loaded):
    model, _, ref = loaded["dinov2_registers"]
    pixels = jnp.asarray(ref["pixels_42x42"], jnp.float32)
    tokens, out, last, pooled = _staged(*nnx.split(model), pixels)
    assert tokens.shape == (2, 3 + 9, 32)
    want_last, want_pooled = forward(model, pixels)
    np.testing.assert_allclose(last, want_last, atol=1e-5)
    np.testing.assert_allclose(pooled, want_pooled, atol=1e-5)
    np.testing.assert_array_equal(model.blocks_forward(tokens, 1, 1), tokens)
    with pytest.raises(ValueError, match="start <= stop"):
        model.blocks_forward(tokens, 2, 1)
    clip = loaded["clip_vision"][0]
    _, out, last, _ = _staged(*nnx.split(clip), pixels[:, :32, :32])
    np.testing.assert_array_equal(last, out)  # CLIP: the last hidden state is not normed


def test_last_blocks_selectable_by_path(loaded):
    model = loaded["dinov2"][0]
    paths = list(params_of(model))
    last = [p for p in paths if p[0] == "blocks" and p[1] >= model.num_layers - 1]
    assert last and all(p[:2] == ("blocks", 1) for p in last)
    assert any(p[-1] == "ls1" for p in last) and len(last) * 2 == sum(
        p[0] == "blocks" for p in paths
    )


@functools.partial(jax.jit, static_argnums=0)
def _grads(graphdef, state, pixels):
    def loss(state):
        last, pooled = nnx.merge(graphdef, state)(pixels)
        return jnp.sum(last**2) + jnp.sum(pooled)

    return jax.grad(loss)(state)


def test_remat_and_bfloat16_match(loaded):
    base = loaded["dinov2"][0]
    pixels = jnp.asarray(loaded["dinov2"][2]["pixels_28x28"], jnp.float32)
    remat = load_vit(FIXTURES / "dinov2", remat=True).model
    g0, g1 = (_grads(*nnx.split(m), pixels) for m in (base, remat))
    for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    half = load_vit(FIXTURES / "dinov2", dtype=jnp.bfloat16).model
    last, _ = _apply(*nnx.split(half), pixels)
    assert last.dtype == jnp.bfloat16 and half.cls_token[...].dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(last, np.float32), forward(base, pixels)[0], atol=0.2)


def test_random_init_runs_jitted():
    cfg = ViTConfig("dinov2", 16, 1, 2, 32, image_size=28, patch_size=14, num_register_tokens=1)
    model = ViT(cfg, rngs=nnx.Rngs(0))
    last, pooled = forward(model, np.zeros((1, 42, 28, 3), np.float32))
    assert last.shape == (1, 2 + 6, 16) and pooled.shape == (1, 16)
    with pytest.raises(ValueError, match="family"):
        ViTConfig("vit", 16, 1, 2, 32, image_size=28, patch_size=14)


# --- bicubic position resize --------------------------------------------------------------------


def _torch_bicubic_loop(x: np.ndarray, size: tuple[int, int], antialias: bool) -> np.ndarray:
    """Direct per-output-pixel transcription of torch's CPU bicubic (``UpSampleKernel.cpp``)."""

    def cubic(t, a):
        t = abs(t)
        if t < 1:
            return ((a + 2) * t - (a + 3)) * t * t + 1
        return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a if t < 2 else 0.0

    def taps(i, n_in, n_out):
        scale = n_in / n_out
        if not antialias:
            src = scale * (i + 0.5) - 0.5
            f = math.floor(src)
            return [
                (min(max(f + k, 0), n_in - 1), cubic(src - f - k, -0.75)) for k in (-1, 0, 1, 2)
            ]
        support = 2 * scale if scale >= 1 else 2.0
        inv = 1 / scale if scale >= 1 else 1.0
        centre = scale * (i + 0.5)
        lo, hi = max(int(centre - support + 0.5), 0), min(int(centre + support + 0.5), n_in)
        ws = [cubic((j - centre + 0.5) * inv, -0.5) for j in range(lo, hi)]
        return [(j, w / sum(ws)) for j, w in zip(range(lo, hi), ws)]

    out = np.zeros((*size, *x.shape[2:]))
    for i in range(size[0]):
        for j in range(size[1]):
            for yi, wy in taps(i, x.shape[0], size[0]):
                for xj, wx in taps(j, x.shape[1], size[1]):
                    out[i, j] += wy * wx * x[yi, xj]
    return out


def test_bicubic_hand_values():
    # [0, 1] -> 4 samples with torch's a = -0.75: taps clamped at both borders
    got = np.asarray(bicubic_resize(jnp.array([[0.0], [1.0]]), (4, 1)))[:, 0]
    np.testing.assert_allclose(got, [-0.10546875, 0.2265625, 0.7734375, 1.10546875], atol=1e-7)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((3, 4, 2)), jnp.float32)
    np.testing.assert_array_equal(bicubic_resize(x, (3, 4)), x)  # same size: identity
    np.testing.assert_array_equal(bicubic_resize(x, (3, 4), antialias=True), x)


def test_bicubic_matches_torch_and_loop_reference():
    ref = load_file(str(FIXTURES / "interp.safetensors"))
    grid = ref.pop("grid")
    assert len(ref) == 10
    for key, want in ref.items():
        size, aa = key.split("_aa")
        hw = tuple(map(int, size.split("x")))
        got = np.asarray(bicubic_resize(grid, hw, antialias=aa == "1"))
        np.testing.assert_allclose(got, want, atol=1e-5, err_msg=key)
        loop = _torch_bicubic_loop(grid.astype(np.float64), hw, aa == "1")
        np.testing.assert_allclose(loop, want, atol=1e-5, err_msg=key)
    # jax.image.resize's bicubic (a = -0.5, antialiased when shrinking) is not torch's
    jax_up = jax.image.resize(grid, (7, 9, 3), "bicubic")
    assert np.abs(np.asarray(jax_up) - ref["7x9_aa0"]).max() > 1e-2


# --- checkpoint key layouts ---------------------------------------------------------------------


def test_fixture_key_layouts():
    keys = {name: set(_tensors(name)) for name in NAMES}
    assert "encoder.layer.0.attention.attention.query.weight" in keys["dinov2"]
    assert "embeddings.mask_token" in keys["dinov2"]
    assert "encoder.layer.0.attention.q_proj.weight" in keys["dinov2_swiglu"]
    assert "encoder.layer.0.mlp.gate_proj.weight" in keys["dinov2_swiglu"]
    assert "embeddings.register_tokens" in keys["dinov2_registers"]
    assert "encoder.layers.0.self_attn.q_proj.weight" in keys["clip_vision"]
    assert "vision_model.pre_layrnorm.weight" in keys["clip_full"]
    assert any(k.startswith("text_model.") for k in keys["clip_full"])
    assert "logit_scale" in keys["clip_full"]


def _to_new_dinov2(key: str) -> str:
    for old, new in checkpoint_keys.DINOV2_RENAMES:
        key = key.replace(old, new)
    return key


def test_legacy_dinov2_names_renamed_to_new_load_the_same(loaded, tmp_path):
    tensors = {_to_new_dinov2(k): v for k, v in _tensors("dinov2").items()}
    assert "encoder.layer.1.attention.o_proj.weight" in tensors
    assert_same_params(load_vit(_copy("dinov2", tmp_path, tensors)).model, loaded["dinov2"][0])


def test_new_swiglu_names_renamed_to_legacy_load_the_same(loaded, tmp_path):
    new = _tensors("dinov2_swiglu")
    legacy = {}
    for key, value in new.items():
        if ".mlp.up_proj." in key:
            continue
        if ".mlp.gate_proj." in key:  # legacy weights_in stacks gate then up on the output axis
            up = new[key.replace("gate_proj", "up_proj")]
            legacy[key.replace("gate_proj", "weights_in")] = np.concatenate([value, up])
            continue
        for old, repl in checkpoint_keys.DINOV2_RENAMES:
            key = key.replace(repl, old)
        legacy[key] = value
    assert "encoder.layer.0.attention.attention.key.weight" in legacy
    assert "encoder.layer.0.mlp.weights_out.bias" in legacy
    folder = _copy("dinov2_swiglu", tmp_path, legacy)
    assert_same_params(load_vit(folder).model, loaded["dinov2_swiglu"][0])


def test_clip_vision_prefixed_hub_layout_loads_the_same(loaded, tmp_path):
    tensors = {f"vision_model.{k}": v for k, v in _tensors("clip_vision").items()}
    tensors["vision_model.embeddings.position_ids"] = np.arange(5)[None]  # old Hub buffer
    folder = _copy("clip_vision", tmp_path, tensors)
    assert_same_params(load_vit(folder).model, loaded["clip_vision"][0])


def test_sharded_checkpoint(loaded, tmp_path):
    tensors = _tensors("dinov2_registers")
    keys = sorted(tensors)
    folder = tmp_path / "sharded"
    folder.mkdir()
    shutil.copy(FIXTURES / "dinov2_registers" / "config.json", folder)
    weight_map = {}
    for i, part in enumerate((keys[: len(keys) // 2], keys[len(keys) // 2 :])):
        shard = f"model-{i + 1:05d}-of-00002.safetensors"
        save_file({k: tensors[k] for k in part}, str(folder / shard))
        weight_map.update(dict.fromkeys(part, shard))
    index = {"metadata": {}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    assert_same_params(load_vit(folder).model, loaded["dinov2_registers"][0])
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="missing"):
        load_vit(folder)


def _save_by_hand(tensors: dict[str, np.ndarray], path: pathlib.Path, dtype: str) -> None:
    """Write a safetensors file from its spec (8-byte header size, JSON header, raw data)."""
    header, blobs, offset = {}, [], 0
    for key, value in tensors.items():
        blob = np.ascontiguousarray(value).tobytes()
        header[key] = {"dtype": dtype, "shape": list(value.shape)}
        header[key]["data_offsets"] = [offset, offset + len(blob)]
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(len(text).to_bytes(8, "little") + text + b"".join(blobs))


def test_bfloat16_checkpoint(loaded, tmp_path):
    bf16 = {k: v.astype(ml_dtypes.bfloat16) for k, v in _tensors("dinov2").items()}
    folder = _copy("dinov2", tmp_path, {})
    _save_by_hand(bf16, folder / "model.safetensors", "BF16")
    got = params_of(load_vit(folder).model)
    for path, value in params_of(loaded["dinov2"][0]).items():
        assert got[path].dtype == np.float32
        want = value.astype(ml_dtypes.bfloat16).astype(np.float32)
        np.testing.assert_array_equal(got[path], want, err_msg=str(path))


def test_missing_unexpected_and_misshaped_keys_are_listed(tmp_path):
    tensors = _tensors("dinov2")
    del tensors["encoder.layer.1.norm2.bias"]
    del tensors["layernorm.weight"]
    tensors["encoder.layer.0.attention.attention.extra.weight"] = np.zeros((2, 2), np.float32)
    tensors["encoder.layer.0.mlp.fc1.weight"] = np.zeros((3, 32), np.float32)
    with pytest.raises(ValueError) as err:
        load_vit(_copy("dinov2", tmp_path, tensors))
    msg = str(err.value)
    for part in (
        "missing (2)",
        "encoder.layer.1.norm2.bias",
        "layernorm.weight",
        "unexpected (1): encoder.layer.0.attention.attention.extra.weight",
        "mis-shaped (1): encoder.layer.0.mlp.fc1.weight (3, 32) (expected (128, 32))",
    ):
        assert part in msg


def test_clip_full_ignores_text_tower_but_not_extra_vision_keys(tmp_path):
    tensors = _tensors("clip_full")
    tensors["vision_model.encoder.layers.2.mlp.fc1.bias"] = np.zeros(64, np.float32)
    with pytest.raises(ValueError, match=r"unexpected \(1\): vision_model.encoder.layers.2"):
        load_vit(_copy("clip_full", tmp_path, tensors))


# --- configs ------------------------------------------------------------------------------------


def _config(name: str) -> dict:
    return json.loads((FIXTURES / name / "config.json").read_text())


def test_config_fields_come_from_config_json():
    cfg = parse_config(_config("dinov2_swiglu"))
    assert (cfg.mlp_dim, cfg.swiglu, cfg.qkv_bias, cfg.image_size) == (64, True, False, 28)
    cfg = parse_config(_config("dinov2_registers"))
    assert (cfg.num_register_tokens, cfg.pos_antialias, cfg.grid_size) == (2, True, 3)
    cfg = parse_config(_config("clip_full"))  # nested vision_config
    assert (cfg.family, cfg.patch_size, cfg.mlp_dim, cfg.layerscale_value) == ("clip", 8, 64, None)


def test_unknown_family_and_unsupported_settings(tmp_path):
    with pytest.raises(ValueError, match="unknown model family: model_type 'vit'"):
        parse_config({**_config("dinov2"), "model_type": "vit"})
    with pytest.raises(NotImplementedError, match="image_size"):
        parse_config({**_config("dinov2"), "image_size": [28, 42]})
    with pytest.raises(NotImplementedError, match="hidden_act 'mish'"):
        parse_config({**_config("clip_vision"), "hidden_act": "mish"})
    folder = _copy("dinov2", tmp_path, _tensors("dinov2"))
    (folder / "config.json").write_text(json.dumps({**_config("dinov2"), "model_type": "vit"}))
    with pytest.raises(ValueError, match="unknown model family"):
        load_vit(folder)


def test_folder_without_safetensors(tmp_path):
    shutil.copy(FIXTURES / "dinov2" / "config.json", tmp_path)
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="only safetensors"):
        load_vit(tmp_path)


# --- hub names ----------------------------------------------------------------------------------


def test_hub_name_from_offline_cache(loaded, tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    repo = tmp_path / "models--tiny--dinov2"
    commit = "0" * 40
    shutil.copytree(FIXTURES / "dinov2", repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    model, family = load_vit("tiny/dinov2", cache_dir=tmp_path)
    assert family == "dinov2"
    assert_same_params(model, loaded["dinov2"][0])
    with pytest.raises(FileNotFoundError, match="offline"):
        load_vit("tiny/not-cached", cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="neither a checkpoint directory"):
        load_vit(tmp_path / "no" / "such" / "dir")
    monkeypatch.setitem(__import__("sys").modules, "huggingface_hub", None)
    with pytest.raises(ImportError, match=r"pvm_mbrl\[hub\]"):
        load_vit("tiny/dinov2", cache_dir=tmp_path)


# --- preprocessing and input checks -------------------------------------------------------------


def test_preprocess_normalisation():
    for family, (mean, std) in NORMALISATION.items():
        mean, std = np.array(mean), np.array(std)
        images = np.zeros((2, 1, 8, 8, 3), np.uint8)
        images[0, 0] = 255
        images[1, 0, ..., 1] = 51
        out = np.asarray(jax.jit(preprocess, static_argnums=(1, 2))(images, family, 8))
        assert out.shape == (2, 1, 8, 8, 3) and out.dtype == np.float32
        np.testing.assert_allclose(out[0, 0], np.broadcast_to((1 - mean) / std, (8, 8, 3)), 1e-6)
        want = (np.array([0.0, 0.2, 0.0]) - mean) / std
        np.testing.assert_allclose(out[1, 0], np.broadcast_to(want, (8, 8, 3)), rtol=1e-6)
    # resizing keeps a constant image constant and the range clipped; sizes may be rectangular
    img = np.full((16, 12, 3), 200, np.uint8)
    out = np.asarray(preprocess(img, "clip", (7, 5)))
    assert out.shape == (7, 5, 3)
    np.testing.assert_allclose(out, np.broadcast_to(out[0, 0], out.shape), atol=1e-5)
    checker = np.indices((16, 16)).sum(0)[..., None].repeat(3, -1) % 2 * 255
    out = np.asarray(preprocess(checker.astype(np.uint8), "dinov2", 24))
    lo, hi = (-np.array(NORMALISATION["dinov2"][0]) + v for v in (0, 1))
    std = np.array(NORMALISATION["dinov2"][1])
    assert (out >= lo / std - 1e-5).all() and (out <= hi / std + 1e-5).all()


def test_preprocess_bad_input():
    ok = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match=r"uint8 \[\.\.\., H, W, 3\]"):
        preprocess(ok.astype(np.float32), "dinov2", 4)
    with pytest.raises(ValueError, match=r"\[\.\.\., H, W, 3\], got \(4, 4, 4\)"):
        preprocess(np.zeros((4, 4, 4), np.uint8), "dinov2", 4)
    with pytest.raises(ValueError, match=r"got \(4, 3\)"):
        preprocess(np.zeros((4, 3), np.uint8), "clip", 4)
    with pytest.raises(ValueError, match="family"):
        preprocess(ok, "resnet", 4)
    with pytest.raises(ValueError, match="size"):
        preprocess(ok, "clip", 0)


def test_model_input_checks(loaded):
    model = loaded["dinov2"][0]
    with pytest.raises(ValueError, match="float"):
        model(np.zeros((1, 28, 28, 3), np.uint8))
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\].*got shape \(1, 28, 28, 4\)"):
        model(np.zeros((1, 28, 28, 4), np.float32))
    with pytest.raises(ValueError, match=r"got shape \(28, 28, 3\)"):
        model(np.zeros((28, 28, 3), np.float32))
    with pytest.raises(ValueError, match=r"patch size 14.*got shape \(1, 13, 28, 3\)"):
        model(np.zeros((1, 13, 28, 3), np.float32))


class _FakeHub(http.server.BaseHTTPRequestHandler):
    """The few Hub endpoints ``snapshot_download`` calls, serving one fixture folder (plus a
    listed ``pytorch_model.bin`` that must never be fetched) as the repo ``tiny/dinov2``."""

    folder = FIXTURES / "dinov2"
    commit = "a" * 40
    fetched: typing.ClassVar[list[str]] = []

    def log_message(self, *args):
        pass

    def _send(self, data: bytes, body: bool, **headers):
        self.send_response(200)
        for k, v in {"Content-Length": str(len(data)), **headers}.items():
            self.send_header(k, v)
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _serve(self, body: bool):
        path = self.path.split("?")[0]
        files = {p.name: p.read_bytes() for p in self.folder.iterdir()}
        files["pytorch_model.bin"] = b"pickle"
        if path.startswith("/api/models/tiny/dinov2/tree/"):
            tree = [
                {"type": "file", "path": n, "size": len(d), "oid": hashlib.sha1(d).hexdigest()}
                for n, d in files.items()
            ]
            return self._send(json.dumps(tree).encode(), body)
        if path.startswith("/api/models/tiny/dinov2/revision/"):
            info = {"id": "tiny/dinov2", "sha": self.commit}
            info["siblings"] = [{"rfilename": n} for n in files]
            return self._send(json.dumps(info).encode(), body)
        name = path.removeprefix(f"/tiny/dinov2/resolve/{self.commit}/")
        if name not in files:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            return self.end_headers()
        if body:
            self.fetched.append(name)
        etag = '"' + hashlib.sha256(files[name]).hexdigest() + '"'
        self._send(files[name], body, ETag=etag, **{"X-Repo-Commit": self.commit})

    def do_GET(self):
        self._serve(True)

    def do_HEAD(self):
        self._serve(False)


def test_hub_name_downloads_only_config_and_safetensors(loaded, tmp_path, monkeypatch):
    """A hub name not in the cache is downloaded (from a local stand-in for the Hub): the config
    and the safetensors weights only, never the pickled PyTorch file; then it loads offline."""
    from huggingface_hub import constants

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    _FakeHub.fetched.clear()
    try:
        model, family = load_vit("tiny/dinov2", cache_dir=tmp_path)
    finally:
        server.shutdown()
    assert family == "dinov2" and sorted(_FakeHub.fetched) == ["config.json", "model.safetensors"]
    assert_same_params(model, loaded["dinov2"][0])
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert_same_params(load_vit("tiny/dinov2", cache_dir=tmp_path)[0], model)
