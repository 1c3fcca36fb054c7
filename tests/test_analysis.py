"""pvm_mbrl.analysis: attention-mask Jaccard index, object masks, k-NN forgetting probe.

Metrics against hand-computed cases and brute-force numpy; ViT attention against a numpy
softmax from the module's weights and against the block's own attention output; object masks
against the projection of the object's centre through the camera.
"""

import functools
import pathlib

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest
from flax import nnx
from mujoco import mjx
from PIL import Image

from pvm_mbrl import analysis, envs
from pvm_mbrl.encoders import PVMEncoder, load_vit
from pvm_mbrl.encoders.vit import preprocess

FIXTURES = pathlib.Path(__file__).parent / "fixtures" / "vit"


# ----- attention mask, patch mask, Jaccard ------------------------------------------------------


def test_attention_mask_mass_rule():
    attn = jnp.array(
        [
            [0.1, 0.5, 0.15, 0.25],  # 0.5 < 0.6, 0.5 + 0.25 crosses: {1, 3}
            [0.25, 0.25, 0.25, 0.25],  # ties in patch order: 0.25, 0.5, 0.75 -> {0, 1, 2}
            [0.0, 0.0, 1.0, 0.0],  # one patch holds everything
            [2.0, 1.0, 1.0, 0.0],  # unnormalised: [0.5, 0.25, 0.25, 0] -> {0, 1}
        ]
    )
    want = np.array(
        [
            [False, True, False, True],
            [True, True, True, False],
            [False, False, True, False],
            [True, True, False, False],
        ]
    )
    np.testing.assert_array_equal(analysis.attention_mask(attn, 0.6), want)
    # Reaching the mass exactly stops there: 0.5 + 0.25 == 0.75 -> the next tie is left out.
    np.testing.assert_array_equal(
        analysis.attention_mask(jnp.array([0.25, 0.5, 0.25]), 0.75), [True, True, False]
    )
    np.testing.assert_array_equal(analysis.attention_mask(attn, 1.0)[0], [True] * 4)
    with pytest.raises(ValueError, match="mass"):
        analysis.attention_mask(attn, 0.0)


def test_patch_mask_hand_made():
    seg = np.zeros((4, 4), bool)
    seg[0, 0:2] = True  # patch (0, 0): 2/4
    seg[0, 2] = True  # patch (0, 1): 1/4
    seg[2:4, 2:4] = True  # patch (1, 1): 4/4
    np.testing.assert_allclose(analysis.patch_fractions(seg, (2, 2)), [0.5, 0.25, 0.0, 1.0])
    np.testing.assert_array_equal(analysis.patch_mask(seg, (2, 2)), [True, False, False, True])
    np.testing.assert_array_equal(
        analysis.patch_mask(seg, (2, 2), threshold=0.25), [True, True, False, True]
    )
    np.testing.assert_array_equal(
        analysis.patch_mask(seg, (2, 2), threshold=1.0), [False, False, False, True]
    )


def test_patch_fractions_non_multiple_match_supersampling():
    rng = np.random.default_rng(0)
    seg = rng.random((3, 5, 7)) < 0.4
    gh, gw = 2, 3
    # Repeating every pixel gh x gw times makes the patches exact blocks of the big image.
    big = seg.repeat(gh, axis=1).repeat(gw, axis=2)
    want = big.reshape(3, gh, 5, gw, 7).mean((2, 4)).reshape(3, gh * gw)
    np.testing.assert_allclose(analysis.patch_fractions(seg, (gh, gw)), want, atol=1e-6)
    with pytest.raises(ValueError, match="bool"):
        analysis.patch_fractions(seg.astype(np.float32), (gh, gw))
    with pytest.raises(ValueError, match="smaller than the patch grid"):
        analysis.patch_fractions(seg, (6, 3))


def test_jaccard_conventions():
    a = jnp.array([[True, True, False, False], [False, False, False, False]])
    b = jnp.array([[False, True, True, False], [False, False, False, False]])
    iou = analysis.jaccard(a, b)
    assert iou[0] == pytest.approx(1 / 3)
    assert np.isnan(iou[1])  # empty union
    assert analysis.jaccard(a[0], a[0]) == 1.0


def _object_image(patches, grid=(2, 3), block=(2, 2)):
    """Pixel mask whose patch mask is exactly ``patches`` (blocks fully on)."""
    m = np.zeros(grid[0] * grid[1], bool)
    m[list(patches)] = True
    return m.reshape(grid).repeat(block[0], 0).repeat(block[1], 1)


def test_attention_jaccard_known_answers():
    grid = (2, 3)
    obj = _object_image([1, 4], grid)  # [4, 6] pixels
    on_object = [0, 0.5, 0, 0, 0.5, 0]
    disjoint = [1.0, 0, 0, 0, 0, 0]
    partial = [0, 0.4, 0.3, 0.2, 0.1, 0]  # mask {1, 2}: IoU with {1, 4} = 1/3
    attn = jnp.array([[on_object, disjoint], [partial, on_object]])  # [frames, heads, P]
    masks = jnp.stack([obj, obj])
    fn = jax.jit(functools.partial(analysis.attention_jaccard, grid=grid))
    mean, per = fn(attn, masks)
    np.testing.assert_allclose(per, [[1.0, 0.0], [1 / 3, 1.0]], rtol=1e-6)
    assert mean == pytest.approx((1 + 0 + 1 / 3 + 1) / 4)
    # A frame without object patches is NaN and left out of the mean.
    empty = jnp.stack([obj, np.zeros_like(obj)])
    mean, per = analysis.attention_jaccard(attn, empty, grid)
    assert np.isnan(per[1]).all()
    assert mean == pytest.approx(0.5)
    with pytest.raises(ValueError, match="heads, 6"):
        analysis.attention_jaccard(attn[..., :5], masks, grid)
    with pytest.raises(ValueError, match="leading dims"):
        analysis.attention_jaccard(attn, masks[:1], grid)


def test_upsample_patch_mask():
    m = jnp.array([True, False, False, True])
    up = analysis.upsample_patch_mask(m, (2, 2), (4, 4))
    np.testing.assert_array_equal(up, np.kron([[1, 0], [0, 1]], np.ones((2, 2))).astype(bool))


# ----- ViT attention ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vits():
    return {name: load_vit(FIXTURES / name).model for name in ("dinov2", "dinov2_registers")}


def _np_linear(lin, x):
    y = x @ np.asarray(lin.kernel[...], np.float64)
    return y if lin.bias is None else y + np.asarray(lin.bias[...], np.float64)


@pytest.mark.parametrize("layer", [0, -1])
def test_attention_probs_match_numpy_and_forward(vits, layer):
    vit = vits["dinov2"]
    pixels = jax.random.normal(jax.random.PRNGKey(0), (2, 28, 42, 3))  # grid 2 x 3
    probs = np.asarray(vit.attention_probs(pixels, layer))
    n_tok = 1 + 6
    assert probs.shape == (2, vit.config.num_heads, n_tok, n_tok)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)

    i = layer % vit.num_layers
    block = vit.blocks[i]
    x = block.norm1(vit.blocks_forward(vit.embed(pixels), 0, i))
    xn = np.asarray(x, np.float64)
    h, d = vit.config.num_heads, vit.config.attn_head_dim
    q, k, v = (
        _np_linear(p, xn).reshape(2, n_tok, h, d)
        for p in (block.attn.q_proj, block.attn.k_proj, block.attn.v_proj)
    )
    logits = np.einsum("nthd,nshd->nhts", q, k) / np.sqrt(d)
    want = np.exp(logits - logits.max(-1, keepdims=True))
    want /= want.sum(-1, keepdims=True)
    np.testing.assert_allclose(probs, want, atol=1e-5)
    # probs @ v through the output projection is the block's attention output.
    y = np.einsum("nhts,nshd->nthd", probs, v).reshape(2, n_tok, h * d)
    np.testing.assert_allclose(_np_linear(block.attn.o_proj, y), block.attn(x), atol=1e-4)
    with pytest.raises(ValueError, match="layer"):
        vit.attention_probs(pixels, vit.num_layers)


def test_cls_attention_preprocessing_and_registers(vits):
    vit = vits["dinov2_registers"]
    images = jax.random.randint(jax.random.PRNGKey(1), (3, 20, 20, 3), 0, 256).astype(jnp.uint8)
    enc = PVMEncoder(vit, (20, 20, 3), input_size=(28, 42), rngs=nnx.Rngs(0))
    attn, grid = analysis.cls_attention(enc, images, batch_size=2)  # 2 batches, one padded
    assert grid == (2, 3) and attn.shape == (3, vit.config.num_heads, 6)
    probs = vit.attention_probs(preprocess(images, "dinov2", (28, 42)))
    cls = np.asarray(probs[:, :, 0, vit.num_prefix_tokens :])
    np.testing.assert_allclose(attn, cls / cls.sum(-1, keepdims=True), atol=1e-5)
    np.testing.assert_allclose(attn.sum(-1), 1.0, atol=1e-5)
    # A bare ViT: its native size.
    attn, grid = analysis.cls_attention(vit, images)
    g = vit.config.grid_size
    assert grid == (g, g) and attn.shape == (3, vit.config.num_heads, g * g)


# ----- object masks -----------------------------------------------------------------------------


def _project(point, cam_pos, cam_mat, fovy, size):
    """(row, col) of a world point in the renderer's pinhole camera (module camera docs)."""
    x, y, z = np.asarray(cam_mat).reshape(3, 3).T @ (np.asarray(point) - np.asarray(cam_pos))
    half = np.tan(np.deg2rad(fovy) / 2)
    col = ((x / -z / half + 1) / 2) * size - 0.5
    row = ((1 - y / -z / half) / 2) * size - 0.5
    return int(np.rint(row)), int(np.rint(col))


def test_object_masks_pick_cube():
    size = 32
    task = envs.make("PickCube", image_size=size, render_shadows=False).unwrapped
    m = task.mj_model
    states = []
    for seed, lift in ((0, 0.14), (1, 0.18)):
        qpos, mocap_pos, info = task.sample_task(jax.random.PRNGKey(seed))
        d = mujoco.MjData(m)
        d.qpos[:] = np.asarray(qpos)
        d.qpos[:3] = (*np.asarray(qpos)[task._obj_qadr[0] : task._obj_qadr[0] + 2], lift)
        d.mocap_pos[:] = np.asarray(mocap_pos)
        mujoco.mj_forward(m, d)
        info = {**info, "scene": task.scene_params(jax.random.PRNGKey(seed))}
        states.append(envs.core.State(mjx.put_data(m, d), {}, 0.0, 0.0, {}, info))
    batch = jax.tree.map(lambda *x: jnp.stack([jnp.asarray(a) for a in x]), *states)

    @jax.jit
    def run(s):
        out = analysis.render_output(task, s)
        pixels = jax.vmap(task.render_pixels)(s.data, s.info)
        return out, pixels, analysis.object_masks(task, s)

    out, pixels, masks = run(batch)
    np.testing.assert_array_equal(out.rgb, pixels)  # the observation the agent sees
    cube = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_GEOM, "cube_geom")
    assert analysis.object_geom_ids(task).tolist() == [cube]
    assert masks.shape == (2, size, size) and masks.dtype == jnp.bool_
    np.testing.assert_array_equal(masks, np.asarray(out.segmentation) == cube)
    for i, s in enumerate(states):
        assert masks[i].sum() >= 4
        d = s.data
        cam = task._camera_id
        r, c = _project(
            d.geom_xpos[cube], d.cam_xpos[cam], d.cam_xmat[cam], s.info["scene"].fovy, size
        )
        assert masks[i, r, c], f"cube centre at pixel {(r, c)} is not in the mask of state {i}"
    with pytest.raises(ValueError, match="no task object"):
        analysis.object_masks(envs.make("Reach", image_size=size).unwrapped, states[0])


# ----- k-NN -------------------------------------------------------------------------------------


def _knn_brute(train, train_y, test, test_y, k, exclude_self=False):
    """Loop-and-sort k-NN with the documented tie-breaks."""
    tn = train / np.maximum(np.linalg.norm(train, axis=1, keepdims=True), 1e-12)
    qn = test / np.maximum(np.linalg.norm(test, axis=1, keepdims=True), 1e-12)
    correct = 0
    for i, q in enumerate(qn):
        sim = tn @ q
        if exclude_self:
            sim[i] = -np.inf
        order = np.argsort(-sim, kind="stable")[:k]
        labels = train_y[order]
        counts = {c: int((labels == c).sum()) for c in set(labels.tolist())}
        best = max(counts.values())
        pred = next(c for c in labels.tolist() if counts[c] == best)  # best-ranked tied class
        correct += pred == test_y[i]
    return correct / len(test)


def test_knn_against_brute_force():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 8))
    train_y = rng.integers(0, 4, 60)
    test_y = rng.integers(0, 4, 25)
    train = centres[train_y] + rng.normal(scale=1.2, size=(60, 8))
    test = centres[test_y] + rng.normal(scale=1.2, size=(25, 8))
    train[7] = train[3]  # exact duplicates: ties in similarity
    for k in (1, 5):
        got = analysis.knn_accuracy(train, train_y, test, test_y, k)
        assert float(got) == pytest.approx(_knn_brute(train, train_y, test, test_y, k))
        loo = analysis.knn_accuracy_loo(train, train_y, k)
        assert float(loo) == pytest.approx(_knn_brute(train, train_y, train, train_y, k, True))
    jitted = jax.jit(functools.partial(analysis.knn_accuracy, k=5, num_classes=4))
    assert float(jitted(train, train_y, test, test_y)) == pytest.approx(
        _knn_brute(train, train_y, test, test_y, 5)
    )


def test_knn_hand_made_and_tie_break():
    train = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9], [0.2, 0.8]])
    train_y = np.array([0, 0, 1, 1, 1])
    test = np.array([[5.0, 0.2], [0.0, 3.0]])  # scale does not matter (cosine)
    np.testing.assert_array_equal(analysis.knn_predict(train, train_y, test, 1), [0, 1])
    assert float(analysis.knn_accuracy(train, train_y, test, np.array([0, 1]), 3)) == 1.0
    # k = 2 with one neighbour of each class: the nearest one's class wins, not the lower label.
    tie_train = np.array([[1.0, 0.0], [0.8, 0.6]])
    tie_y = np.array([1, 0])
    assert int(analysis.knn_predict(tie_train, tie_y, np.array([[1.0, 0.1]]), 2)[0]) == 1
    assert int(analysis.knn_predict(tie_train, tie_y, np.array([[0.8, 0.7]]), 2)[0]) == 0
    with pytest.raises(ValueError, match="k must be"):
        analysis.knn_accuracy_loo(train, train_y, 5)


# ----- data and the forgetting probe ------------------------------------------------------------


def test_load_image_folder(tmp_path):
    colours = {"apple": [(200, 10, 10), (190, 20, 10)], "sky": [(10, 20, 220), (0, 0, 255)]}
    for name, cols in colours.items():
        (tmp_path / name).mkdir()
        for i, c in enumerate(cols):
            size = (12, 9) if i else (20, 20)
            suffix = ".jpg" if (name, i) == ("sky", 1) else ".png"
            Image.new("RGB", size, c).save(tmp_path / name / f"{i}{suffix}")
    (tmp_path / "sky" / "notes.txt").write_text("not an image")
    ds = analysis.load_image_folder(tmp_path, 16)
    assert ds.class_names == ("apple", "sky")
    assert ds.images.shape == (4, 16, 16, 3) and ds.images.dtype == np.uint8
    np.testing.assert_array_equal(ds.labels, [0, 0, 1, 1])
    want = np.array([c for cols in colours.values() for c in cols], np.uint8)
    np.testing.assert_allclose(ds.images.reshape(4, -1, 3), want[:, None].repeat(256, 1), atol=3)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no"):
        analysis.load_image_folder(tmp_path, 16)


def _toy_dataset():
    """Three colours under heavy noise (hard enough that the two models below differ)."""
    rng = np.random.default_rng(0)
    colours = np.array([[220, 30, 30], [30, 220, 30], [30, 30, 220]])
    labels = np.repeat(np.arange(3), 5).astype(np.int32)
    images = colours[labels][:, None, None] + rng.integers(-200, 200, (15, 28, 28, 3))
    return analysis.ImageDataset(np.clip(images, 0, 255).astype(np.uint8), labels, ("r", "g", "b"))


def test_forgetting_same_and_noisy_weights(vits):
    vit = vits["dinov2"]
    ds = _toy_dataset()
    feats = analysis.cls_features(vit, ds.images, batch_size=8)  # 2 batches, one padded
    graphdef, state = nnx.split(vit)
    pooled = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x)[1])(
        state, preprocess(jnp.asarray(ds.images), "dinov2", 28)
    )
    np.testing.assert_allclose(feats, pooled, atol=1e-5)

    same = analysis.forgetting(vit, vit, ds, batch_size=8)
    assert same["original"] == same["finetuned"]
    assert same["original"] == pytest.approx(float(analysis.knn_accuracy_loo(feats, ds.labels)))

    keys = iter(jax.random.split(jax.random.PRNGKey(0), 1000))
    noise = jax.tree.map(
        lambda x: jax.random.normal(next(keys), x.shape), nnx.to_pure_dict(nnx.state(vit))
    )
    noisy = analysis.forgetting(vit, noise, ds, batch_size=8)
    noisy_vit = analysis.with_params(vit, noise)
    noisy_feats = analysis.cls_features(noisy_vit, ds.images, batch_size=8)
    again = analysis.with_params(vit, nnx.state(noisy_vit))  # an nnx.State works too
    np.testing.assert_array_equal(analysis.cls_features(again, ds.images, 8), noisy_feats)
    assert not np.allclose(noisy_feats, feats)
    assert noisy["original"] == same["original"]
    assert noisy["finetuned"] == pytest.approx(
        float(analysis.knn_accuracy_loo(noisy_feats, ds.labels))
    )
    assert noisy["finetuned"] != noisy["original"]
    bad = {**noise, "cls_token": np.zeros(3)}
    with pytest.raises(ValueError, match="wrong shapes"):
        analysis.forgetting(vit, bad, ds, batch_size=8)


def test_rendered_object_dataset():
    ds = analysis.rendered_object_dataset(2, image_size=24, shadows=False, split="novel_objects")
    assert ds.class_names == ("cube1", "bar0", "sphere1", "capsule0")
    assert ds.images.shape == (8, 24, 24, 3)
    np.testing.assert_array_equal(ds.labels, [0, 0, 1, 1, 2, 2, 3, 3])
    # The object's colour dominates some pixels: red cube, blue bar.
    img = ds.images.astype(int)
    assert ((img[0, ..., 0] - img[0, ..., 2]) > 80).sum() >= 4
    assert ((img[2, ..., 2] - img[2, ..., 0]) > 80).sum() >= 4
