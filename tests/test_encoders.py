"""PVM encoders: read-outs, heads, staged (cacheable) paths, fine-tuning levels and their
optimiser, the registry, and custom encoders (``examples/custom_encoder.py``).

Tiny models only: the 2-block checkpoints of ``tests/fixtures/vit`` and a 4-block random ViT;
damaged copies of them for the file errors.
"""

import functools
import json
import pathlib
import re
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from examples_loader import load_example
from flax import nnx

from pvm_mbrl import encoders
from pvm_mbrl.encoders import FineTune, PVMEncoder, checkpoints, make_pvm_optimizer, param_labels
from pvm_mbrl.encoders.checkpoints import load_vit
from pvm_mbrl.encoders.finetune import layer_decay_factor
from pvm_mbrl.encoders.pvm import HEADS, OUTPUTS
from pvm_mbrl.encoders.vit import ViT, preprocess
from pvm_mbrl.encoders.vit_config import ViTConfig

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "vit"
TOL = 1e-6
LEAD = (2, 3)  # leading batch dims of the test images

TINY4 = ViTConfig(
    family="dinov2", hidden_size=16, num_layers=4, num_heads=2, mlp_dim=32, image_size=28,
    patch_size=14,
)  # fmt: skip


def images(shape=(20, 20, 3), lead=LEAD, seed=0):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.integers(0, 256, (*lead, *shape), dtype=np.uint8))


def labels_of(labels) -> dict[tuple, str]:
    """``{path: label}`` of a :func:`param_labels` tree."""
    flat = jax.tree_util.tree_flatten_with_path(labels)[0]
    return {tuple(k.key for k in path[:-1]): label for path, label in flat}


def paths(state) -> set[tuple]:
    return {tuple(p) for p, _ in nnx.to_flat_state(state)}


def arrays(state) -> dict[tuple, np.ndarray]:
    return {tuple(p): np.asarray(v[...]) for p, v in nnx.to_flat_state(state)}


class Model(nnx.Module):
    """An encoder inside a bigger module (as in the agent's ``Networks``)."""

    def __init__(self, encoder: nnx.Module, *, rngs: nnx.Rngs):
        self.encoder = encoder
        self.other = nnx.Linear(encoder.output_size, 3, rngs=rngs)

    def __call__(self, x):
        return self.other(self.encoder(x))


@pytest.fixture(scope="module")
def vits():
    """Fixture checkpoints, loaded once."""
    names = ("dinov2", "dinov2_registers", "clip_vision")
    return {name: load_vit(FIXTURES / name).model for name in names}


@pytest.fixture(scope="module")
def vit4():
    return ViT(TINY4, rngs=nnx.Rngs(1))


# --- read-outs and heads ------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnums=(0,))
def _modes(graphdef, state, x):
    """Every output mode (head "none"), two layers, an interpolated size and the ViT's own
    outputs, on 20 px images."""
    vit = nnx.merge(graphdef, state)
    native = vit.config.image_size
    out = {}
    for mode in OUTPUTS:
        enc = PVMEncoder(vit, x.shape[-3:], output=mode, head="none", rngs=nnx.Rngs(0))
        out[mode] = enc(x)
    enc = PVMEncoder(vit, x.shape[-3:], layers=(0, 1), head="none", rngs=nnx.Rngs(0))
    out["layers01"] = enc(x)
    big = native + vit.patch_size
    enc = PVMEncoder(vit, x.shape[-3:], input_size=big, head="none", rngs=nnx.Rngs(0))
    out["big"] = enc(x)
    flat = x.reshape(-1, *x.shape[-3:])
    for name, size in (("", native), ("_big", big)):
        last, pooled = vit(preprocess(flat, vit.family, size))
        out["ref_last" + name], out["ref_pooled" + name] = last, pooled
    tokens = vit.embed(preprocess(flat, vit.family, native))
    out["hidden0"] = vit.blocks_forward(tokens, 0, 1)
    return out


@pytest.mark.parametrize("name", ["dinov2", "dinov2_registers", "clip_vision"])
def test_output_modes_match_the_vit(vits, name):
    vit = vits[name]
    x = images()
    out = jax.device_get(_modes(*nnx.split(vit), x))
    n, p, d = x.shape[0] * x.shape[1], vit.num_prefix_tokens, vit.hidden_size
    last, pooled = out["ref_last"], out["ref_pooled"]
    norm = vit.final_norm  # DINOv2: the final LayerNorm; CLIP: identity (last hidden state)
    want = {
        "patches": last[:, p:].reshape(n, -1),
        "cls": last[:, 0],
        "pooled": pooled,
        "mean": last[:, p:].mean(1),
        "big": out["ref_last_big"][:, p:].reshape(n, -1),
    }
    h0 = np.asarray(norm(jnp.asarray(out["hidden0"])))
    want["layers01"] = np.concatenate([h0[:, p:].reshape(n, -1), want["patches"]], -1)
    for key, value in want.items():
        got = out[key]
        assert got.shape == (*LEAD, value.shape[-1]), key
        np.testing.assert_allclose(got.reshape(n, -1), value, atol=TOL, rtol=0, err_msg=key)
    grid = vit.config.image_size // vit.patch_size
    assert out["patches"].shape[-1] == grid * grid * d
    assert out["big"].shape[-1] == (grid + 1) ** 2 * d  # position grid interpolated
    if vit.family == "dinov2":  # pooled = the normed CLS token
        np.testing.assert_allclose(out["cls"], out["pooled"], atol=TOL)
    else:  # CLIP's pooled output is post_layernorm(CLS); its CLS read-out is not normed
        assert np.abs(out["cls"] - out["pooled"]).max() > 1e-2


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("output", OUTPUTS)
def test_head_and_output_sizes(vits, head, output):
    vit = vits["dinov2"]
    enc = nnx.eval_shape(
        lambda: PVMEncoder(
            vit, (20, 20, 3), output=output, layers=(1, 0), head=head, proj_dim=7, rngs=nnx.Rngs(0)
        )
    )
    per_layer = 4 * 32 if output == "patches" else 32
    assert enc.feature_size == 2 * per_layer
    assert (
        enc.output_size == {"proj": 7, "rmsnorm_silu": 2 * per_layer, "none": 2 * per_layer}[head]
    )
    assert _abstract_call(enc, images()).shape == (*LEAD, enc.output_size)


def test_heads_compute_rmsnorm_silu_and_projection(vits):
    vit = vits["dinov2"]
    feats = np.random.default_rng(0).normal(size=(5, 128)).astype(np.float32)

    def rms_silu(v, scale):
        v = v / np.sqrt((v * v).mean(-1, keepdims=True) + 1e-4) * scale
        return v / (1 + np.exp(-v))

    enc = PVMEncoder(vit, (20, 20, 3), rngs=nnx.Rngs(0))
    enc.out_norm.scale[...] = jnp.linspace(0.5, 2.0, 128)
    np.testing.assert_allclose(
        enc.head(feats), rms_silu(feats, np.linspace(0.5, 2.0, 128)), rtol=1e-5, atol=1e-6
    )
    enc = PVMEncoder(vit, (20, 20, 3), head="proj", proj_dim=6, rngs=nnx.Rngs(0))
    proj = feats @ np.asarray(enc.out_proj.kernel[...]) + np.asarray(enc.out_proj.bias[...])
    np.testing.assert_allclose(enc.head(feats), rms_silu(proj, 1.0), rtol=1e-5, atol=1e-6)
    enc = PVMEncoder(vit, (20, 20, 3), head="none", rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(enc.head(feats), feats)
    assert enc.out_norm is None and enc.out_proj is None


# --- staged paths -------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnums=(0,))
def _staged(graphdef, state, x):
    enc = nnx.merge(graphdef, state)
    n = enc.vit.num_layers
    out = {"call": enc(x), "frozen+head": enc.head(enc.frozen_features(x))}
    out["readout"] = enc.readout([enc.run_blocks(enc.stem(x), 0, i + 1) for i in enc.layers])
    for upto in range(n + 1):
        out[f"resume{upto}"] = enc.resume(enc.trunk(x, upto), upto)
        out[f"trunk{upto}"] = enc.trunk(x, upto)
    if enc.finetune.mode != "full":
        out["cached"] = enc.from_cache(enc.cache(x))
        out["cache"] = enc.cache(x)
    return out


@pytest.mark.parametrize("finetune", ["frozen", "partial(1)", "full"])
def test_staged_paths_equal_call(vit4, finetune):
    enc = PVMEncoder(
        vit4, (20, 20, 3), layers=(0, 1, 3), head="proj", proj_dim=8, finetune=finetune,
        rngs=nnx.Rngs(0),
    )  # fmt: skip
    x = images()
    out = jax.device_get(_staged(*nnx.split(enc), x))
    call = out["call"]
    assert call.shape == (*LEAD, 8)
    for key in ["frozen+head", "readout", "cached", *(f"resume{u}" for u in range(5))]:
        if key in out:
            np.testing.assert_allclose(out[key], call, atol=TOL, rtol=0, err_msg=key)
    t, d = enc.num_tokens, 16
    # layers 0 and 1 end before block 3: their hidden states travel in front of the tokens
    assert out["trunk3"].shape == (*LEAD, 3 * t, d)
    assert out["trunk2"].shape == (*LEAD, 2 * t, d)  # layer 1 is the input of block 2
    assert out["trunk1"].shape == out["trunk0"].shape == (*LEAD, t, d)
    assert (
        enc.cache_point() == {"frozen": 4, "partial(1)": 3, "partial(3)": 1, "full": None}[finetune]
    )
    if finetune != "full":
        assert out["cache"].shape == (*LEAD, *enc.cache_shape())
    else:
        with pytest.raises(ValueError, match="nothing can be cached"):
            enc.cache(x)


# --- bad input ----------------------------------------------------------------------------------


def test_bad_images_name_the_expected_shape(vits):
    enc = PVMEncoder(vits["dinov2"], (20, 20, 3), rngs=nnx.Rngs(0))
    want = r"uint8 \[\.\.\., 20, 20, 3\]"
    with pytest.raises(ValueError, match=want + ", got dtype float32"):
        enc(np.zeros((1, 20, 20, 3), np.float32))
    with pytest.raises(ValueError, match=want + r", got shape \(1, 20, 20, 4\)"):
        enc(np.zeros((1, 20, 20, 4), np.uint8))
    with pytest.raises(ValueError, match=want + r", got shape \(20, 3\)"):
        enc(np.zeros((20, 3), np.uint8))
    with pytest.raises(ValueError, match=want + r", got shape \(2, 24, 20, 3\)"):
        enc(np.zeros((2, 24, 20, 3), np.uint8))
    with pytest.raises(ValueError, match=r"tokens must be \[\.\.\., 5, 32\]"):
        enc.resume(jnp.zeros((2, 6, 32)), 1)
    with pytest.raises(ValueError, match=r"start must be in 0\.\.2"):
        enc.resume(jnp.zeros((2, 5, 32)), 3)


def test_bad_options(vits):
    vit = vits["dinov2"]
    rngs = nnx.Rngs(0)
    with pytest.raises(ValueError, match=r"multiple of the patch size 14.*\[N, 14\*i, 14\*j, 3\]"):
        PVMEncoder(vit, (20, 20, 3), input_size=10, rngs=rngs)  # smaller than one patch
    with pytest.raises(ValueError, match=r"multiple of the patch size 14.*got 30x30"):
        PVMEncoder(vit, (20, 20, 3), input_size=30, rngs=rngs)
    with pytest.raises(ValueError, match=r"image_shape must be \(H, W, 3\)"):
        PVMEncoder(vit, (20, 20, 4), rngs=rngs)
    with pytest.raises(ValueError, match="output must be one of"):
        PVMEncoder(vit, (20, 20, 3), output="tokens", rngs=rngs)
    with pytest.raises(ValueError, match="head must be one of"):
        PVMEncoder(vit, (20, 20, 3), head="mlp", rngs=rngs)
    with pytest.raises(ValueError, match=r"block indices in \[-2, 2\)"):
        PVMEncoder(vit, (20, 20, 3), layers=(2,), rngs=rngs)
    with pytest.raises(ValueError, match="must not repeat"):
        PVMEncoder(vit, (20, 20, 3), layers=(1, -1), rngs=rngs)
    with pytest.raises(ValueError, match=r"k in 1\.\.2"):
        PVMEncoder(vit, (20, 20, 3), finetune="partial(3)", rngs=rngs)


def test_finetune_parse():
    assert FineTune.parse("frozen") == FineTune("frozen")
    assert FineTune.parse(" Full ") == FineTune("full")
    assert FineTune.parse("partial(4)") == FineTune.parse("partial:4") == FineTune("partial", 4)
    assert str(FineTune.parse("partial( 2 )")) == "partial(2)"
    for bad in ("half", "partial", "partial(x)", "partial(-1)", "frozen(1)"):
        with pytest.raises(ValueError, match="'frozen', 'full', 'partial"):
            FineTune.parse(bad)
    with pytest.raises(ValueError, match="k >= 1"):
        FineTune.parse("partial(0)")
    with pytest.raises(ValueError, match=r"k in 1\.\.12"):
        FineTune.parse("partial:13", num_layers=12)
    with pytest.raises(TypeError):
        FineTune.parse(4)


# --- damaged checkpoint files --------------------------------------------------------------------


def _copy_fixture(tmp_path, name="dinov2") -> pathlib.Path:
    return pathlib.Path(shutil.copytree(FIXTURES / name, tmp_path / name))


def _file_error(path: pathlib.Path, what: str, load, cause: type) -> None:
    """``load()`` raises a ValueError (a CheckpointFileError) naming ``path`` and ``what``,
    chained from ``cause``."""
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + what) as err:
        load()
    assert isinstance(err.value, checkpoints.CheckpointFileError)
    assert isinstance(err.value.__cause__, cause), repr(err.value.__cause__)


@pytest.mark.parametrize("keep", [0, 7, 100, -1000])
def test_truncated_safetensors_names_the_file(tmp_path, keep):
    from safetensors import SafetensorError

    folder = _copy_fixture(tmp_path)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:keep])
    _file_error(weights, "truncated or corrupt", lambda: load_vit(folder), SafetensorError)


def test_config_json_errors_name_the_file(tmp_path):
    folder = _copy_fixture(tmp_path)
    config = folder / "config.json"
    good = json.loads(config.read_text())
    config.write_text('{"model_type": "dinov2",\n "hidden_size": 16,,\n}')
    _file_error(
        config,
        r"not valid JSON: Expecting property name .* at line 2, column 20",
        lambda: load_vit(folder),
        json.JSONDecodeError,
    )
    # The same through the registry, which reads only the architecture.
    scratch = lambda: encoders.make(  # noqa: E731
        "vit-scratch", (28, 28, 3), rngs=nnx.Rngs(0), checkpoint=folder
    )
    _file_error(config, "line 2, column 20", scratch, json.JSONDecodeError)
    config.write_bytes(b'{"model_type": "\xff"}')
    _file_error(config, "not UTF-8", lambda: load_vit(folder), UnicodeDecodeError)
    config.write_text("[1, 2]")
    with pytest.raises(ValueError, match=re.escape(str(config)) + " must hold a JSON object"):
        load_vit(folder)
    config.write_text(json.dumps({**good, "model_type": "vit"}))
    _file_error(config, "unknown model family", lambda: load_vit(folder), ValueError)


def test_sharded_index_errors_name_the_file(tmp_path):
    from safetensors import SafetensorError, safe_open

    folder = _copy_fixture(tmp_path)
    shard = folder / "model-00001-of-00001.safetensors"
    (folder / "model.safetensors").rename(shard)
    with safe_open(str(shard), framework="numpy") as f:
        keys = list(f.keys())
    index = folder / "model.safetensors.index.json"
    weight_map = dict.fromkeys(keys, shard.name)
    index.write_text(json.dumps({"weight_map": weight_map}))
    load_vit(folder)  # the good index loads
    index.write_text('{"weight_map": {')
    _file_error(index, "not valid JSON", lambda: load_vit(folder), json.JSONDecodeError)
    index.write_text('{"metadata": {}}')
    with pytest.raises(ValueError, match=re.escape(str(index)) + " must hold a 'weight_map'"):
        load_vit(folder)
    index.write_text(json.dumps({"weight_map": {**weight_map, "extra.weight": shard.name}}))
    absent = r" names tensors that are not in their shard: absent \(1\): extra.weight \("
    with pytest.raises(ValueError, match=re.escape(str(index)) + absent):
        load_vit(folder)
    index.write_text(json.dumps({"weight_map": weight_map}))
    shard.write_bytes(shard.read_bytes()[:-10])
    _file_error(shard, "truncated or corrupt", lambda: load_vit(folder), SafetensorError)


# --- fine-tuning levels -------------------------------------------------------------------------


def _vit_paths(model_paths, prefix=("encoder", "vit")):
    return {p for p in model_paths if p[: len(prefix)] == prefix}


@pytest.mark.parametrize("finetune", ["frozen", "partial(1)", "partial(2)", "full"])
def test_trainable_filter_selects_the_right_params(vit4, finetune):
    model = Model(
        PVMEncoder(vit4, (20, 20, 3), head="proj", proj_dim=4, finetune=finetune, rngs=nnx.Rngs(0)),
        rngs=nnx.Rngs(1),
    )
    spec = model.encoder.finetune
    trainable = paths(nnx.state(model, spec.trainable_filter(model.encoder, ("encoder",))))
    frozen = paths(nnx.state(model, spec.frozen_filter(model.encoder, ("encoder",))))
    everything = paths(nnx.state(model, nnx.Param))
    encoder = {p for p in everything if p[0] == "encoder"}
    assert trainable | frozen == encoder and not trainable & frozen
    head = {p for p in encoder if p[1] in ("out_norm", "out_proj")}
    assert len(head) == 3  # projection kernel and bias, norm scale
    k = {"frozen": 0, "partial(1)": 1, "partial(2)": 2, "full": 4}[finetune]
    blocks = {p for p in encoder if p[1:3] == ("vit", "blocks") and p[3] >= 4 - k}
    norm = {p for p in encoder if p[1:3] == ("vit", "norm")}
    want = {
        "frozen": head,
        "partial(1)": head | blocks | norm,
        "partial(2)": head | blocks | norm,
        "full": encoder,
    }[finetune]
    assert trainable == want
    # the labels for optax agree with the filter
    labels = param_labels(nnx.state(model), finetune)
    flat = labels_of(labels)
    assert {p for p, v in flat.items() if v == "pvm"} == trainable - head
    assert {p for p, v in flat.items() if v == "pvm_frozen"} == frozen
    assert {p for p, v in flat.items() if v == "rest"} == head | {
        p for p in flat if p[0] == "other"
    }


def _loss(model, x, target):
    return jnp.mean((model(x) - target) ** 2)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _train_steps(graphdef, tx, params, opt_state, x, target, steps=3):
    for _ in range(steps):
        grads = jax.grad(lambda p: _loss(nnx.merge(graphdef, p), x, target))(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
    return params, opt_state


@pytest.mark.parametrize("finetune", ["frozen", "partial(1)"])
def test_optimizer_freezes_exactly_and_keeps_no_state_for_frozen(vits, finetune):
    encoder = PVMEncoder(vits["dinov2"], (20, 20, 3), finetune=finetune, rngs=nnx.Rngs(0))
    model = Model(encoder, rngs=nnx.Rngs(1))
    graphdef, params = nnx.split(model)
    labels = param_labels(params, finetune)
    tx = make_pvm_optimizer(optax.adam(1e-2), optax.adam(1e-3), labels)
    opt_state = tx.init(params)
    x = images()
    target = jnp.asarray(np.random.default_rng(1).normal(size=(*LEAD, 3)), jnp.float32)
    new, _ = _train_steps(graphdef, tx, params, opt_state, x, target)
    before, after = arrays(params), arrays(new)
    flat_labels = labels_of(labels)
    counts = {"pvm": 0, "pvm_frozen": 0, "rest": 0}
    for path, label in flat_labels.items():
        counts[label] += 1
        if label == "pvm_frozen":
            assert before[path].tobytes() == after[path].tobytes(), path  # bit-identical
        else:
            assert np.abs(before[path] - after[path]).max() > 0, path
    # fixture: 2 blocks of 18 tensors, embeddings 4, final norm 2; head 1; other 2
    assert counts == (
        {"pvm": 0, "pvm_frozen": 42, "rest": 3}
        if finetune == "frozen"
        else {"pvm": 20, "pvm_frozen": 22, "rest": 3}
    )
    # optimiser state: Adam's mu and nu for trainable leaves only, none for frozen ones
    frozen = {p for p, v in flat_labels.items() if v == "pvm_frozen"}
    state_paths = [
        tuple(k for k in (getattr(e, "key", None) for e in path) if k is not None)
        for path, _ in jax.tree_util.tree_flatten_with_path(opt_state)[0]
    ]
    starts = [
        next((i for i, k in enumerate(p) if k in ("encoder", "other")), None) for p in state_paths
    ]
    param_like = [p[i:] for p, i in zip(state_paths, starts) if i is not None]
    assert not [p for p in param_like if p in frozen]
    assert len(param_like) == 2 * (counts["pvm"] + counts["rest"])


def test_layer_decay_scales_pvm_updates():
    vit = ViT(TINY4, rngs=nnx.Rngs(2))
    model = Model(PVMEncoder(vit, (20, 20, 3), rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1))
    params = nnx.state(model)
    labels = param_labels(params, "full")
    decay, n = 0.5, 4
    tx = make_pvm_optimizer(optax.adam(1e-2), optax.adam(1e-3), labels, layer_decay=decay)
    plain = {"rest": optax.adam(1e-2), "pvm": optax.adam(1e-3)}
    rng = np.random.default_rng(0)
    grads = [
        jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
        for _ in range(2)
    ]

    @jax.jit
    def run(params, grads):
        """Updates of each step: ours and the plain optax runs."""
        state = tx.init(params)
        plain_state = {k: t.init(params) for k, t in plain.items()}
        out = []
        for g in grads:
            updates, state = tx.update(g, state, params)
            want = {}
            for k, t in plain.items():
                want[k], plain_state[k] = t.update(g, plain_state[k], params)
            out.append((updates, want))
        return out

    for updates, want in run(params, grads):
        ref = {k: arrays(u) for k, u in want.items()}
        for path, value in arrays(updates).items():
            if path[:2] == ("encoder", "vit"):
                factor = layer_decay_factor(path[1:], n, decay)
                np.testing.assert_allclose(value, ref["pvm"][path] * factor, rtol=1e-6, atol=0)
            else:
                np.testing.assert_allclose(value, ref["rest"][path], rtol=1e-6, atol=0)
    assert layer_decay_factor(("vit", "blocks", 3), n, decay) == 0.5
    assert layer_decay_factor(("vit", "blocks", 0), n, decay) == 0.5**4
    assert layer_decay_factor(("vit", "patch_embed", "kernel"), n, decay) == 0.5**5
    assert layer_decay_factor(("vit", "norm", "scale"), n, decay) == 1.0
    with pytest.raises(ValueError, match="layer_decay"):
        make_pvm_optimizer(optax.sgd(1.0), optax.sgd(1.0), labels, layer_decay=1.5)


@functools.partial(jax.jit, static_argnums=(0, 2))
def _grads(graphdef, params, cached, x, target):
    """Loss and gradients through ``__call__`` and through ``from_cache(cache(x))``; and
    ``nnx.grad`` restricted to the trainable filter."""

    def loss(p, cache=None):
        model = nnx.merge(graphdef, p)
        if cache is None:
            return _loss(model, x, target)
        return jnp.mean((model.other(model.encoder.from_cache(cache)) - target) ** 2)

    model = nnx.merge(graphdef, params)
    cache = model.encoder.cache(x)
    full = jax.value_and_grad(loss)(params)
    via_cache = jax.value_and_grad(loss)(params, cache)
    trainable = nnx.Any(
        model.encoder.finetune.trainable_filter(model.encoder, ("encoder",)),
        nnx.PathContains("other"),
    )
    filtered = nnx.grad(_loss, argnums=nnx.DiffState(0, trainable))(model, x, target)
    return full, via_cache, nnx.state(filtered)


@pytest.mark.parametrize("finetune", ["frozen", "partial(1)"])
def test_gradients_cached_equal_uncached_and_skip_frozen(vits, finetune):
    encoder = PVMEncoder(
        vits["dinov2"], (20, 20, 3), layers=(0, 1), finetune=finetune, rngs=nnx.Rngs(0)
    )
    graphdef, params = nnx.split(Model(encoder, rngs=nnx.Rngs(1)))
    target = jnp.asarray(np.random.default_rng(1).normal(size=(*LEAD, 3)), jnp.float32)
    (loss, grads), (loss_c, grads_c), filtered = _grads(graphdef, params, True, images(), target)
    np.testing.assert_allclose(loss_c, loss, rtol=1e-6)
    g, gc, gf = arrays(grads), arrays(grads_c), arrays(filtered)
    labels = labels_of(param_labels(params, finetune))
    trainable = {p for p, v in labels.items() if v != "pvm_frozen"}
    assert set(gf) == trainable  # nnx.grad with the filter: no gradient for frozen blocks at all
    for path, value in g.items():
        np.testing.assert_allclose(gc[path], value, rtol=1e-5, atol=1e-7, err_msg=str(path))
        if path in trainable:
            np.testing.assert_allclose(gf[path], value, rtol=1e-5, atol=1e-7, err_msg=str(path))
        else:  # stop-gradient at the cache point: exact zeros, no backward pass through them
            assert not value.any(), path


# --- registry -----------------------------------------------------------------------------------


def test_registry_lists_all_names():
    names = set(encoders.registered())
    assert {
        "cnn", "dinov2-small", "dinov2-base", "dinov2-large", "dinov2-small-reg", "clip-vit-b32",
        "clip-vit-b16", "vit-s14-scratch",
    } <= names  # fmt: skip
    with pytest.raises(ValueError, match=r"unknown encoder 'dinov3'; registered: .*dinov2-small"):
        encoders.make("dinov3", (64, 64, 3), rngs=nnx.Rngs(0))


def _abstract(name, image_shape, **options):
    """``encoders.make`` with abstract arrays (``nnx.eval_shape``)."""
    return nnx.eval_shape(lambda: encoders.make(name, image_shape, rngs=nnx.Rngs(0), **options))


def _abstract_call(encoder, x):
    graphdef, state = nnx.split(encoder)
    return jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state, x)


def test_vit_s14_scratch_abstract():
    """Built and run with abstract shapes only (no 22M-parameter arrays)."""
    cases = [  # image side, input_size, output, output size
        (64, None, "patches", 256 * 384),  # 64 px images resized to the native 224: the study's
        (112, 112, "patches", 64 * 384),  # 98,304 features; 112 px: the grid interpolated to 8x8
        (224, 224, "pooled", 384),
        (64, 56, "mean", 384),
    ]
    for image, input_size, output, size in cases:
        opts = {} if input_size is None else {"input_size": input_size}
        enc = _abstract("vit-s14-scratch", (image, image, 3), output=output, **opts)
        assert enc.output_size == enc.feature_size == size
        assert enc.finetune == FineTune("full")
        if output == "patches":
            out = _abstract_call(enc, jax.ShapeDtypeStruct((2, image, image, 3), jnp.uint8))
            assert out.shape == (2, size) and out.dtype == jnp.float32
    vit_params = sum(int(np.prod(v.shape)) for v in jax.tree.leaves(nnx.state(enc.vit)))
    assert 21_000_000 < vit_params < 23_000_000  # ViT-S/14: ~22M
    with pytest.raises(ValueError, match=r"multiple of the patch size 14.*got 64x64"):
        _abstract("vit-s14-scratch", (64, 64, 3), input_size=64)


def test_vit_scratch_takes_only_the_architecture_of_a_checkpoint():
    folder = FIXTURES / "dinov2"
    enc = encoders.make("vit-scratch", (28, 28, 3), rngs=nnx.Rngs(0), checkpoint=folder)
    loaded, _ = encoders.load_vit(folder)
    want = jax.tree.map(np.shape, nnx.state(loaded))
    assert jax.tree.map(np.shape, nnx.state(enc.vit)) == want
    assert enc.finetune == FineTune("full")
    # Random weights, not the checkpoint's.
    a = np.asarray(nnx.state(enc.vit)["blocks"][0]["mlp"]["fc1"]["kernel"][...])
    b = np.asarray(nnx.state(loaded)["blocks"][0]["mlp"]["fc1"]["kernel"][...])
    assert a.shape == b.shape and not np.allclose(a, b)


@pytest.mark.parametrize(
    ("name", "fixture", "family", "size"),
    [
        ("dinov2-small", "dinov2", "dinov2", 4 * 32),
        ("dinov2-base", "dinov2_swiglu", "dinov2", 4 * 32),
        ("dinov2-small-reg", "dinov2_registers", "dinov2", 9 * 32),
        ("clip-vit-b32", "clip_full", "clip", 32),
        ("clip-vit-b16", "clip_vision", "clip", 32),
    ],
)
def test_registry_loads_checkpoint_override(vits, name, fixture, family, size):
    enc = encoders.make(name, (20, 20, 3), rngs=nnx.Rngs(0), checkpoint=FIXTURES / fixture)
    assert isinstance(enc, PVMEncoder) and enc.vit.family == family
    assert enc.output == ("pooled" if family == "clip" else "patches")
    assert enc.finetune == FineTune("frozen") and enc.output_size == size
    want = arrays(nnx.state(load_vit(FIXTURES / fixture).model))
    got = arrays(nnx.state(enc.vit))
    assert got.keys() == want.keys()
    for path in want:
        np.testing.assert_array_equal(got[path], want[path], err_msg=str(path))


def test_registry_options_pass_through():
    enc = nnx.eval_shape(
        lambda: encoders.make(
            "dinov2-small", (20, 20, 3), rngs=nnx.Rngs(0), checkpoint=FIXTURES / "dinov2",
            input_size=42, output="mean", layers=(0, 1), head="proj", proj_dim=5,
            finetune="partial:1", dtype=jnp.bfloat16, remat=True,
        )
    )  # fmt: skip
    assert (enc.input_size, enc.output, enc.layers, enc.head_kind) == (
        (42, 42),
        "mean",
        (0, 1),
        "proj",
    )
    assert (enc.output_size, enc.feature_size, enc.num_tokens) == (5, 64, 10)
    assert enc.finetune == FineTune("partial", 1) and enc.vit.remat and enc.dtype == jnp.bfloat16
    out = _abstract_call(enc, images())
    assert out.shape == (*LEAD, 5) and out.dtype == jnp.bfloat16
    assert jax.tree.leaves(nnx.state(enc))[0].dtype == jnp.float32  # parameters stay float32
    with pytest.raises(FileNotFoundError, match="neither a checkpoint directory"):
        encoders.make("clip-vit-b16", (20, 20, 3), rngs=nnx.Rngs(0), checkpoint="/no/such/dir")


# --- custom encoders and the agent --------------------------------------------------------------


@pytest.fixture(scope="module")
def example():
    return load_example("custom_encoder", "custom_encoder")


@functools.partial(jax.jit, static_argnums=0)
def _encoder_grads(graphdef, params, x):
    return jax.grad(lambda p: jnp.mean(nnx.merge(graphdef, p)(x) ** 2))(params)


def test_custom_encoders_follow_the_protocol_and_learn(example):
    nnx_name, linen_name = example.register_examples()
    assert {nnx_name, linen_name} <= set(encoders.registered())
    x = images((16, 16, 3))
    for name in (nnx_name, linen_name):
        enc = encoders.make(name, (16, 16, 3), rngs=nnx.Rngs(0))
        assert enc(x).shape == (*LEAD, enc.output_size)
        params = nnx.state(enc)
        assert all(jnp.issubdtype(v.dtype, jnp.floating) for v in jax.tree.leaves(params))
        grads = arrays(_encoder_grads(nnx.graphdef(enc), params, x))
        assert len(grads) == 4 and all(g.any() for g in grads.values())
        with pytest.raises(ValueError, match=r"uint8 \[\.\.\., 16, 16, 3\]"):
            enc(x.astype(jnp.float32))


@pytest.mark.parametrize("kind", ["nnx", "linen"])
def test_custom_encoder_example_agent_step(example, kind):
    """The example's agent update with each encoder, traced with abstract shapes (the real
    update runs in ``python examples/custom_encoder.py``; compiling it costs ~30 s of CPU)."""
    names = dict(zip(("nnx", "linen"), example.register_examples()))
    agent = example.make_agent(names[kind])
    step = functools.partial(example.train_one_step, agent)
    state0, state, metrics = jax.eval_shape(step, jax.random.PRNGKey(0))
    assert metrics["loss/total"].shape == ()
    assert jax.tree.structure(state0.params) == jax.tree.structure(state.params)
    encoder = state.params["encoder"]
    dense = encoder["inner"]["Dense_0"] if kind == "linen" else encoder["out"]
    assert dense["kernel"].shape == (16, 16)


class _BufferedEncoder(nnx.Module):
    """A custom encoder with non-parameter variables: a float buffer and an integer counter."""

    def __init__(self, image_shape, *, rngs: nnx.Rngs, dtype=jnp.float32):
        self.mean = nnx.BatchStat(jnp.full((image_shape[-1],), 0.5, jnp.float32))
        self.calls = nnx.Variable(jnp.zeros((), jnp.int32))
        self.out = nnx.Linear(image_shape[-1], 8, rngs=rngs)
        self.output_size = 8

    def __call__(self, images):
        x = images.astype(jnp.float32).mean((-3, -2)) / 255.0 - self.mean[...]
        return self.out(x)


def test_agent_trains_params_only_and_keeps_other_variables(example):
    """Only ``nnx.Param`` leaves are differentiated and optimised: an integer counter (which
    ``jax.grad`` refuses) and a float buffer get no optimiser state and pass through."""
    encoders.register("test-buffered", _BufferedEncoder)
    agent = example.make_agent("test-buffered")
    state0, state, metrics = jax.eval_shape(
        functools.partial(example.train_one_step, agent), jax.random.PRNGKey(0)
    )
    assert metrics["loss/total"].shape == ()
    enc = state.params["encoder"]
    assert enc["calls"].dtype == jnp.int32 and enc["mean"].shape == (3,)
    n_params = len(jax.tree.leaves(nnx.state(agent.nets(state0.params), nnx.Param)))
    n_all = len(jax.tree.leaves(state0.params))
    assert n_all == n_params + 2
    # Every optimiser moment is shaped like a Param: none was made for the buffers.
    shapes = [x.shape for x in jax.tree.leaves(nnx.state(agent.nets(state0.params), nnx.Param))]
    moments = [x for x in jax.tree.leaves(state0.opt_state) if x.ndim and x.shape != ()]
    assert len(moments) % n_params == 0
    assert sorted(x.shape for x in moments) == sorted(shapes * (len(moments) // n_params))


def test_pvm_encoder_in_the_agent(example):
    """A fixture checkpoint registered as an agent encoder: the agent builds and updates it
    (abstractly), the weights load under jit, and the labels cover its parameters."""
    name = "test-tiny-dinov2"
    factory = functools.partial(
        encoders.pretrained, str(FIXTURES / "dinov2"), finetune="partial(1)"
    )
    encoders.register(name, factory)
    agent = example.make_agent(name)
    state0, _, metrics = jax.eval_shape(
        functools.partial(example.train_one_step, agent), jax.random.PRNGKey(0)
    )
    assert metrics["loss/total"].shape == ()
    labels = jax.tree.leaves(param_labels(state0.params, "partial(1)"))
    assert (labels.count("pvm"), labels.count("pvm_frozen")) == (20, 22)
    built = jax.jit(lambda: nnx.state(factory((16, 16, 3), rngs=nnx.Rngs(0)).vit))()
    want = arrays(nnx.state(load_vit(FIXTURES / "dinov2").model))
    got = arrays(built)
    assert all(np.array_equal(got[p], want[p]) for p in want)
