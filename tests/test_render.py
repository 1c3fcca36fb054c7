"""Tests of the JAX ray caster against mjx.ray, mujoco.Renderer and shading formulas."""

import functools

import gl_oracle
import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest
from mujoco import mjx

from pvm_mbrl import render

# Every primitive, rotated, on a table; "cyl" is dropped for mjx.ray (it has no cylinder kernel).
# The unused material works around mjx.ray indexing an empty mat_rgba in material-free models.
SCENE = """
<mujoco>
  <asset><material name="unused"/></asset>
  <worldbody>
    <geom name="floor" type="plane" size="1.2 1 0.1" rgba=".8 .8 .8 1"/>
    <geom name="table" type="box" pos="0 0 0.4" size="0.5 0.4 0.02" euler="0 0 10"
          rgba=".6 .4 .2 1"/>
    <geom name="ball" type="sphere" pos="0.2 0.1 0.5" size="0.06" rgba="1 0 0 1"/>
    <geom name="caps" type="capsule" pos="-0.2 0.1 0.5" size="0.04 0.08" euler="30 60 0"
          rgba="0 1 0 1"/>
    <geom name="ell" type="ellipsoid" pos="0 -0.2 0.5" size="0.08 0.05 0.04" euler="0 20 45"
          rgba="0 0 1 1"/>
    <geom name="cube" type="box" pos="-0.1 -0.1 0.47" size="0.05 0.04 0.05" euler="10 20 30"
          rgba="1 1 0 1"/>
    <geom name="tile" type="plane" pos="0.0 0.25 0.421" size="0.1 0.08 0.1" euler="0 0 30"
          rgba="1 0 1 1"/>
    <geom name="ghost" type="sphere" pos="0 0 0.8" size="0.1" rgba="1 1 1 0"/>
    <geom name="hidden" type="sphere" pos="0 0 0.8" size="0.1" group="4"/>
    CYL
    <camera name="cam" pos="0.9 -0.9 1.2" xyaxes="1 1 0 -0.4 0.4 1" fovy="50"/>
  </worldbody>
</mujoco>
"""
CYL = (
    '<geom name="cyl" type="cylinder" pos="0.25 -0.15 0.5" size="0.04 0.06" euler="40 10 0"'
    ' rgba="0 1 1 1"/>'
)
H, W = 48, 64


def _load(xml):
    m = mujoco.MjModel.from_xml_string(xml)
    d = mujoco.MjData(m)
    mujoco.mj_forward(m, d)
    return m, d


def _args(d, cam=0):
    return (
        jnp.asarray(d.geom_xpos, jnp.float32),
        jnp.asarray(d.geom_xmat, jnp.float32).reshape(-1, 3, 3),
        jnp.asarray(d.cam_xpos[cam], jnp.float32),
        jnp.asarray(d.cam_xmat[cam], jnp.float32).reshape(3, 3),
    )


class Scene:
    def __init__(self, xml):
        self.m, self.d = _load(xml)
        self.geom = render.SceneGeometry.from_model(self.m)
        self.params = render.SceneParams.default(self.geom, "cam")
        self.args = _args(self.d)
        self._fns = {}

    def fn(self, height=H, width=W, shadows=True):
        key = (height, width, shadows)
        if key not in self._fns:
            self._fns[key] = jax.jit(
                functools.partial(
                    render.render, self.geom, height=height, width=width, shadows=shadows
                )
            )
        return self._fns[key]

    def __call__(self, params=None, **kw):
        out = self.fn(**kw)(self.params if params is None else params, *self.args)
        return jax.tree.map(np.asarray, out)


@pytest.fixture(scope="module")
def scene():
    return Scene(SCENE.replace("CYL", CYL))


@pytest.fixture(scope="module")
def scene_nocyl():
    return Scene(SCENE.replace("CYL", ""))


def test_geometry_filters_groups_and_alpha(scene):
    names = scene.geom.geom_names
    assert "ghost" not in names and "hidden" not in names
    assert set(names) == {"floor", "table", "ball", "caps", "ell", "cube", "tile", "cyl"}
    assert scene.geom.camera_fovy[scene.geom.camera_id("cam")] == pytest.approx(50.0)
    kinds = {grp.name: len(grp.geom_ids) for grp in scene.geom.groups}
    assert kinds == {"plane": 2, "sphere": 1, "capsule": 1, "ellipsoid": 1, "cylinder": 1, "box": 2}
    assert float(scene.params.fovy) == pytest.approx(50.0)


def test_depth_and_ids_match_mjx_ray(scene_nocyl):
    s = scene_nocyl
    out = s()
    o, v = render.camera_rays(*s.args[2:], None, height=H, width=W, params=s.params)
    mm, md = mjx.put_model(s.m), mjx.put_data(s.m, s.d)
    groups = (1, 1, 1, 0, 0, 0)
    dist, ids = jax.jit(jax.vmap(lambda p, u: mjx.ray(mm, md, p, u, groups)))(
        o.reshape(-1, 3), v.reshape(-1, 3)
    )
    dist, ids = np.asarray(dist).reshape(H, W), np.asarray(ids).reshape(H, W)
    assert (ids >= 0).mean() > 0.5 and (ids == -1).any()  # the scene fills part of the view
    assert (out.segmentation == ids).mean() >= 0.99
    both = (ids >= 0) & np.isfinite(out.depth)
    assert np.median(np.abs(out.depth[both] - dist[both])) < 1e-3
    assert np.all(np.isinf(out.depth[out.segmentation == -1]))
    # every non-plane primitive is seen
    seen = set(np.unique(out.segmentation).tolist())
    for name in ("table", "ball", "caps", "ell", "cube", "tile", "floor"):
        assert mujoco.mj_name2id(s.m, mujoco.mjtObj.mjOBJ_GEOM, name) in seen, name


def test_segmentation_matches_mujoco_renderer(scene):
    r = gl_oracle.renderer(scene.m, H, W)
    try:
        r.enable_segmentation_rendering()
        r.update_scene(scene.d, camera="cam")
        seg = r.render()
    finally:
        r.close()
    ref = np.where(seg[..., 1] == int(mujoco.mjtObj.mjOBJ_GEOM), seg[..., 0], -1)
    out = scene()
    cyl = mujoco.mj_name2id(scene.m, mujoco.mjtObj.mjOBJ_GEOM, "cyl")
    assert (ref == cyl).sum() > 10 and (out.segmentation == cyl).sum() > 10
    assert (out.segmentation == ref).mean() >= 0.97


def test_cylinder_depth_analytic():
    xml = """<mujoco><worldbody>
      <geom name="c" type="cylinder" pos="0 0 0" size="0.2 0.1" euler="0 0 0"/>
      <geom name="s" type="cylinder" pos="0 0 -1" size="0.1 0.3" euler="90 0 0"/>
      <geom name="ground" type="plane" pos="0 0 -5" size="0 0 1"/>
      <camera name="cam" pos="0 0 1" xyaxes="1 0 0 0 1 0" fovy="40"/>
    </worldbody></mujoco>"""
    s = Scene(xml)
    out = s(height=9, width=9, shadows=False)
    # centre ray straight down hits the top cap at z = 0.1
    assert out.depth[4, 4] == pytest.approx(0.9, abs=1e-5)
    # corner rays reach the infinite ground plane at z = -5
    _, v = render.camera_rays(*s.args[2:], None, height=9, width=9, params=s.params)
    assert int(out.segmentation[0, 0]) == s.m.geom("ground").id
    assert out.depth[0, 0] == pytest.approx(6.0 / -float(v[0, 0, 2]), rel=1e-5)
    geom = render.SceneGeometry.from_model(s.m)
    far = s.m.geom("s").id
    # second cylinder lies along y (rotated about x), its side seen from above at z = -0.9
    m2 = mujoco.MjModel.from_xml_string(
        xml.replace('pos="0 0 0" size="0.2 0.1"', 'pos="3 3 0" size="0.2 0.1"')
    )
    d2 = mujoco.MjData(m2)
    mujoco.mj_forward(m2, d2)
    f = jax.jit(functools.partial(render.render, geom, height=9, width=9, shadows=False))
    o2 = f(s.params, *_args(d2))
    assert int(o2.segmentation[4, 4]) == far
    assert float(o2.depth[4, 4]) == pytest.approx(1.9, abs=1e-5)


@pytest.mark.parametrize("hw", [(64, 64), (84, 84), (128, 96)])
def test_shapes_and_dtypes(scene, hw):
    h, w = hw
    out = scene(height=h, width=w, shadows=False)
    assert out.rgb.shape == (h, w, 3) and out.rgb.dtype == np.uint8
    assert out.depth.shape == (h, w) and out.depth.dtype == np.float32
    assert out.segmentation.shape == (h, w) and out.segmentation.dtype == np.int32


def test_jit_vmap_matches_single(scene):
    keys = jax.random.split(jax.random.key(0), 3)
    params = jax.vmap(
        lambda k: scene.params.replace(
            geom_rgb=jax.random.uniform(k, scene.params.geom_rgb.shape),
            cam_pos_offset=jax.random.normal(k, (3,)) * 0.02,
        )
    )(keys)
    args = jax.tree.map(lambda x: jnp.broadcast_to(x, (3, *x.shape)), scene.args)
    f = jax.jit(
        jax.vmap(functools.partial(render.render, scene.geom, height=H, width=W, shadows=True))
    )
    out = jax.tree.map(np.asarray, f(params, *args))
    assert out.rgb.shape == (3, H, W, 3)
    for i in range(3):
        one = scene(jax.tree.map(lambda x, i=i: x[i], params))
        np.testing.assert_array_equal(out.segmentation[i], one.segmentation)
        assert np.abs(out.rgb[i].astype(int) - one.rgb).max() <= 1
    assert not np.array_equal(out.rgb[0], out.rgb[1])


def test_texture_changes_only_its_geom(scene):
    base = scene()
    i = scene.geom.index("table")
    for tex in ("checker", "stripes", "noise", "wood"):
        p = scene.params.with_texture(i, tex, rgb=(0.0, 0.0, 1.0), scale=20.0)
        out = scene(p)
        changed = np.any(out.rgb != base.rgb, axis=-1)
        table = out.segmentation == scene.m.geom("table").id
        assert changed.sum() > 0.2 * table.sum(), tex
        assert not np.any(changed & ~table), tex
        np.testing.assert_array_equal(out.depth, base.depth)


def test_shadows_darken(scene):
    lit = scene(shadows=False).rgb.astype(int)
    sh = scene(shadows=True).rgb.astype(int)
    assert np.all(sh <= lit)
    darker = np.all(sh < lit, axis=-1)
    assert darker.mean() > 0.02
    # the floor under the table is shadowed from a light shining down
    floor = scene().segmentation == scene.m.geom("floor").id
    assert (darker & floor).sum() > 10


def test_fog_blends_with_distance(scene):
    p = scene.params.replace(fog_density=jnp.float32(0.8), fog_rgb=jnp.array([1.0, 0.0, 1.0]))
    base, fog = scene(), scene(p)
    hit = (base.segmentation >= 0) & np.all(base.rgb < 255, axis=-1)  # unsaturated
    assert hit.sum() > 100
    f = np.exp(-0.8 * base.depth[hit])[:, None]
    expect = base.rgb[hit] / 255.0 * f + np.array([1.0, 0.0, 1.0]) * (1 - f)
    assert np.abs(fog.rgb[hit] / 255.0 - expect).max() < 1.5 / 255
    hit = base.segmentation >= 0
    # sky is fogged at SKY_DISTANCE
    fs = np.exp(-0.8 * render.SKY_DISTANCE)
    sky = base.rgb[~hit] / 255.0 * fs + np.array([1.0, 0.0, 1.0]) * (1 - fs)
    assert np.abs(fog.rgb[~hit] / 255.0 - sky).max() < 1.5 / 255


def test_background_colour(scene):
    p = scene.params.replace(background_rgb=jnp.array([0.1, 0.9, 0.3]))
    out = scene(p)
    sky = out.segmentation == -1
    assert sky.sum() > 50
    assert np.all(out.rgb[sky] == np.round(np.array([0.1, 0.9, 0.3]) * 255).astype(np.uint8))
    grad = p.replace(background_texture_id=jnp.int32(1), background_rgb2=jnp.array([0.0, 0.0, 0.0]))
    g = scene(grad)
    assert not np.array_equal(g.rgb[sky], out.rgb[sky])
    np.testing.assert_array_equal(g.rgb[~sky], out.rgb[~sky])


def test_sphere_lit_head_on_is_brightest_at_centre():
    xml = """<mujoco><worldbody>
      <geom name="s" type="sphere" pos="0 0 0" size="0.3" rgba="1 1 1 1"/>
      <camera name="cam" pos="0 0 2" xyaxes="1 0 0 0 1 0" fovy="30"/>
    </worldbody></mujoco>"""
    s = Scene(xml)
    p = s.params.replace(
        light_dir=jnp.array([0.0, 0.0, -1.0]),
        specular=jnp.float32(0.0),
        ambient=jnp.zeros(3),
        light_intensity=jnp.float32(1.0),
    )
    out = s(p, height=33, width=33, shadows=True)
    lum = out.rgb[..., 0].astype(int)
    assert lum[16, 16] == 255 and lum.max() == 255
    row = lum[16, 16:]
    on = out.segmentation[16, 16:] >= 0
    assert np.all(np.diff(row[on]) <= 0) and row[on][-1] < 200
    # Lambert: brightness = cos(angle between normal and light) for this view
    out_t = out.depth[16, 20]
    o, v = render.camera_rays(*s.args[2:], None, height=33, width=33, params=p)
    hit = np.asarray(o[16, 20] + out_t * v[16, 20])
    assert lum[16, 20] == pytest.approx(255 * hit[2] / 0.3, abs=1.0)


def test_headlight_is_a_low_beam_fixed_to_the_camera_body():
    xml = """<mujoco><worldbody>
      <geom name="wall" type="box" pos="0 0 -4" size="5 5 0.01" rgba="1 1 1 1"/>
      <camera name="cam" pos="0 0 0" xyaxes="1 0 0 0 1 0" fovy="60"/>
    </worldbody></mujoco>"""
    s = Scene(xml)
    dark = s.params.replace(
        light_intensity=jnp.float32(0.0), ambient=jnp.zeros(3), specular=jnp.float32(0.0)
    )
    assert s(dark, height=33, width=33, shadows=False).rgb.max() == 0
    p = dark.replace(headlight_rgb=jnp.ones(3), headlight_range=jnp.float32(4.0))
    out = s(p, height=33, width=33, shadows=False)
    lum = out.rgb[..., 0].astype(float) / 255.0
    # The centre ray meets the wall head-on at 3.99 m: beam exp(-(0.05/0.15)^2) at the axis,
    # fall-off 1 / (1 + (t / range)^2), cosine 1.
    t = float(out.depth[16, 16])
    expected = np.exp(-((0.05 / 0.15) ** 2)) / (1.0 + (t / 4.0) ** 2)
    assert lum[16, 16] == pytest.approx(expected, abs=1 / 255)
    # Wide and flat: brighter 10 px to the side than 10 px up or down; aimed a little down.
    assert lum[16, 26] > lum[26, 16] > lum[6, 16]
    # Fixed to the body: turning the camera moves the image, not the light on the wall.
    turned = s(
        p.replace(cam_rot_offset=jnp.array([0.0, 0.1, 0.0])), height=33, width=33, shadows=False
    )
    assert np.abs(turned.rgb.astype(int) - out.rgb.astype(int)).max() > 0
    assert turned.rgb[16, 16, 0] < out.rgb[16, 16, 0]


def test_camera_offsets_move_the_view(scene):
    out = scene(height=9, width=9, shadows=False)
    p = scene.params.replace(cam_pos_offset=jnp.array([0.0, 0.0, -0.1]))  # forward 10 cm
    moved = scene(p, height=9, width=9, shadows=False)
    c = (4, 4)  # the centre ray runs along the camera axis
    assert moved.depth[c] == pytest.approx(out.depth[c] - 0.1, abs=1e-4)
    rot = scene.params.replace(cam_rot_offset=jnp.array([0.0, 0.05, 0.0]))
    turned = scene(rot, height=9, width=9, shadows=False)
    assert not np.array_equal(turned.depth, out.depth)


def test_bad_inputs_raise(scene):
    with pytest.raises(ValueError, match="geom_xpos"):
        render.render(
            scene.geom, scene.params, jnp.zeros((3, 3)), *scene.args[1:], height=8, width=8
        )
    with pytest.raises(ValueError, match="unknown camera"):
        render.SceneParams.default(scene.geom, "nope")
    mesh_free = mujoco.MjModel.from_xml_string(
        '<mujoco><worldbody><geom type="hfield" hfield="h"/></worldbody>'
        '<asset><hfield name="h" nrow="2" ncol="2" size="1 1 1 1"/></asset></mujoco>'
    )
    with pytest.raises(ValueError, match="unsupported"):
        render.SceneGeometry.from_model(mesh_free)


def test_gl_oracle_fails_instead_of_skipping_when_required(monkeypatch):
    def no_context(*args):
        raise RuntimeError("no GL")

    monkeypatch.setattr(mujoco, "Renderer", no_context)
    monkeypatch.setenv(gl_oracle.REQUIRE, "1")
    with pytest.raises(pytest.fail.Exception, match="libosmesa6"):
        gl_oracle.renderer(None, 8, 8)
    monkeypatch.delenv(gl_oracle.REQUIRE)
    with pytest.raises(pytest.skip.Exception, match="no GL"):
        gl_oracle.renderer(None, 8, 8)
