"""Visual shifts: identity at severity 0, reproducible from a key, growing with severity,
clear errors for bad names and severities."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

from pvm_mbrl import render, shifts

XML = """<mujoco><worldbody>
  <geom name="floor" type="plane" size="2 2 .1" rgba=".5 .5 .5 1"/>
  <geom name="table" type="box" size=".4 .4 .02" pos="0 0 .2" rgba=".6 .45 .3 1"/>
  <body name="obj" pos="0 0 .27"><freejoint/>
    <geom name="obj" type="box" size=".05 .05 .05" rgba=".8 .1 .1 1"/></body>
  <geom name="arm" type="capsule" fromto=".2 0 .3 .2 0 .6" size=".03" rgba=".3 .3 .8 1"/>
  <body name="d0" mocap="true" pos="0 0 -5"><geom name="d0" type="sphere" size=".04"/></body>
  <body name="d1" mocap="true" pos="0 0 -5"><geom name="d1" type="box" size=".03 .03 .03"/></body>
  <camera name="c" pos="0 -1 .8" xyaxes="1 0 0 0 .6 1"/>
</worldbody></mujoco>"""

SEVERITIES = (0.0, 0.25, 0.5, 1.0)


@pytest.fixture(scope="module")
def scene():
    m = mujoco.MjModel.from_xml_string(XML)
    d = mujoco.MjData(m)
    mujoco.mj_forward(m, d)
    geom = render.SceneGeometry.from_model(m)
    idx = lambda *names: np.array([geom.index(n) for n in names], np.int32)  # noqa: E731
    roles = shifts.SceneRoles(
        table=idx("table"),
        floor=idx("floor"),
        objects=idx("obj"),
        robot=idx("arm"),
        distractors=idx("d0", "d1"),
        distractor_low=(-0.3, -0.3, 0.27),
        distractor_high=(0.3, 0.3, 0.27),
        distractor_park=(0.0, 0.0, -5.0),
    )
    params = render.SceneParams.default(geom, "c")
    frame = (
        jnp.asarray(d.geom_xpos),
        jnp.asarray(d.geom_xmat).reshape(-1, 3, 3),
        jnp.asarray(d.cam_xpos[0]),
        jnp.asarray(d.cam_xmat[0]).reshape(3, 3),
    )
    return geom, roles, params, frame


@pytest.fixture(scope="module")
def renderer(scene):
    """One compiled function per shift spec: (severity [N, F], drift [N], keys [N]) -> rgb."""
    geom, roles, params, frame = scene
    cache = {}

    def run(spec, severity, keys, drift=None, steps=0):
        if spec not in cache:

            def one(sev, dr, key):
                state = shifts.sample(spec, key, sev, dr)
                for _ in range(steps):
                    state = shifts.advance(spec, state)
                out = shifts.render_shifted(
                    geom, roles, spec, state, params, *frame, height=48, width=48
                )
                return out.rgb

            cache[spec] = jax.jit(jax.vmap(one))
        severity = jnp.asarray(severity, jnp.float32)
        drift = jnp.zeros(len(severity)) if drift is None else jnp.asarray(drift, jnp.float32)
        return np.asarray(cache[spec](severity, drift, keys))

    return run


@pytest.fixture(scope="module")
def clean(scene, renderer):
    return renderer(shifts.ShiftSpec(()), np.zeros((1, 0)), jax.random.split(jax.random.key(0), 1))[
        0
    ]


def _dist(a, b):
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


ALL = shifts.ShiftSpec(tuple(shifts.FAMILIES))


@pytest.fixture(scope="module")
def every_family(renderer):
    """One compiled call: each family alone at each severity (rows family-major)."""
    n, k = len(ALL.families), len(SEVERITIES)
    severity = np.zeros((n * k, n), np.float32)
    for f in range(n):
        severity[f * k : (f + 1) * k, f] = SEVERITIES
    keys = jnp.stack([jax.random.key(3)] * (n * k))
    return renderer(ALL, severity, keys).reshape(n, k, 48, 48, 3)


@pytest.mark.parametrize("family", ALL.families)
def test_family_identity_at_zero_and_grows_with_severity(family, every_family, clean):
    imgs = every_family[ALL.families.index(family)]
    np.testing.assert_array_equal(imgs[0], clean)  # bitwise identity at severity 0
    d = [_dist(im, clean) for im in imgs]
    assert d[1] > 0, f"{family} changes nothing at severity 0.25"
    assert d[1] <= d[2] * 1.05 and d[2] <= d[3] * 1.05, f"{family} distances {d} not growing"
    # Object and robot colour only touch the few pixels those geoms cover at 48 px.
    assert d[3] > 0.2, f"{family} at full severity moves pixels by only {d[3]:.2f}"


def test_same_key_same_image_different_keys_differ(renderer):
    b = shifts.batch(["dcs-0.3", "dcs-0.3", "dcs-0.3"])
    keys = jnp.stack([jax.random.key(1), jax.random.key(1), jax.random.key(2)])
    imgs = renderer(b.spec, b.severity, keys)
    np.testing.assert_array_equal(imgs[0], imgs[1])
    assert _dist(imgs[0], imgs[2]) > 1.0


def test_a_batch_evaluates_a_whole_ladder(renderer, clean):
    presets = shifts.ladder("strong", SEVERITIES)
    b = shifts.batch(presets)
    assert b.severity.shape == (4, 4) and b.names[0] == "strong@0"
    keys = jnp.stack([jax.random.key(0)] * 4)
    imgs = renderer(b.spec, b.severity, keys)
    np.testing.assert_array_equal(imgs[0], clean)
    d = [_dist(im, clean) for im in imgs]
    assert d[0] == 0 < d[1] < d[2] < d[3]


def test_dynamic_mode_drifts_static_mode_does_not(renderer):
    spec = shifts.ShiftSpec(("camera",))
    keys = jnp.stack([jax.random.key(5)] * 2)
    sev, drift = [[0.5], [0.5]], [0.0, 0.2]
    first = renderer(spec, sev, keys, drift=drift)
    later = renderer(shifts.ShiftSpec(("camera", "fog")), [[0.5, 0], [0.5, 0]], keys, drift, 3)
    np.testing.assert_array_equal(first[0], later[0])  # fixed for the episode
    assert _dist(first[1], later[1]) > 0.5  # drifts step by step
    u = jax.vmap(
        lambda k: (
            jax.lax.fori_loop(
                0, 200, lambda _, st: shifts.advance(spec, st), shifts.sample(spec, k, [1.0], 0.5)
            ).u
        )
    )(keys)
    assert np.all(np.abs(np.asarray(u)) <= 1.0)  # the walk stays inside [-1, 1]


def test_presets_resolve_and_compose():
    assert shifts.get("id").families == {}
    assert shifts.get("texture").families == {"dark_wood": 1.0}
    assert set(shifts.get("strong").families) == {"fog", "light", "night", "rain"}
    for s in shifts.DCS_LEVELS:
        p = shifts.get(f"dcs-{s:g}")
        assert set(p.families.values()) == {s} and p.drift == 0
        assert shifts.get(f"dcs-{s:g}-dynamic").drift > 0
    c = shifts.get("texture+fog@0.3+weak")
    assert c.families["dark_wood"] == 1.0 and c.families["fog"] == 0.3
    assert shifts.compose("weak", "strong").families == shifts.get("strong").families
    assert [p.families["fog"] for p in shifts.ladder("fog", [0.1, 0.2])] == [0.1, 0.2]


@pytest.mark.parametrize(
    "name, match",
    [
        ("sunny", "valid presets: .*'strong'"),
        ("fog@1.5", r"severity must be in \[0, 1\], got 1.5"),
        ("fog@-0.1", r"severity must be in \[0, 1\]"),
        ("smoke@0.5", "unknown shift family 'smoke'; valid families: .*'fog'"),
        ("fog@lots", "expected FAMILY@S"),
        ("", "non-empty name"),
    ],
)
def test_bad_names_and_severities_raise(name, match):
    with pytest.raises(ValueError, match=match):
        shifts.get(name)


def test_ladder_rejects_out_of_range():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        shifts.ladder("strong", [0.5, 2.0])


@pytest.fixture(scope="module")
def reach_pair():
    """Reach with and without a per-env ladder; 4 envs, 32 px, one compiled rollout each."""
    from pvm_mbrl import envs

    plain = envs.make("Reach", image_size=32, camera="front", num_envs=4, auto_reset=False)
    ladder = [*shifts.ladder("strong", [0.0, 1.0]), "distractors@1", "dcs-0.5-dynamic"]
    shifted = envs.with_shift(plain, ladder)
    actions = jax.random.uniform(jax.random.key(7), (6, 4, 4), minval=-1, maxval=1)

    def run(env):
        def body(state, a):
            state = env.step(state, a)
            return state, (state.data.qpos, state.obs["pixels"])

        return jax.jit(lambda k: jax.lax.scan(body, env.reset(k), actions)[1])(
            jax.random.PRNGKey(0)
        )

    return run(plain), run(shifted)


def test_scene_shifts_leave_physics_untouched(reach_pair):
    (qpos_a, pix_a), (qpos_b, pix_b) = reach_pair
    np.testing.assert_array_equal(np.asarray(qpos_a), np.asarray(qpos_b))
    pix_a, pix_b = np.asarray(pix_a), np.asarray(pix_b)
    np.testing.assert_array_equal(pix_b[:, 0], pix_a[:, 0])  # env 0: strong@0 is the identity
    for env in (1, 2, 3):
        assert _dist(pix_b[:, env], pix_a[:, env]) > 2.0, f"env {env} not shifted"


def test_make_takes_a_shift_and_checks_it():
    from pvm_mbrl import envs

    env = envs.make("Reach", image_size=16, shift="texture", auto_reset=False)
    assert env.unwrapped.shift.names == ("texture",)
    with pytest.raises(ValueError, match="valid presets"):
        envs.make("Reach", image_size=16, shift="sunny")
    with pytest.raises(ValueError, match="multiple of 3"):
        envs.with_shift(envs.make("Reach", image_size=16, num_envs=4), ["id", "weak", "strong"])
    with pytest.raises(ValueError, match="need a rendering env"):
        envs.make("Reach", obs_mode="state", render=False, shift="weak")

    class Unrendered(envs.Env):  # an env without the rendering layer
        reset = advance = observe = action_space = observation_space = None

    with pytest.raises(TypeError, match="not a RenderedEnv"):
        envs.with_shift(envs.ActionRepeat(Unrendered(), 1), "weak")


def test_with_shift_returns_a_copy_and_id_is_the_default_look():
    from pvm_mbrl import envs

    plain = envs.make("Reach", image_size=16, num_envs=2, auto_reset=False)
    shifted = envs.with_shift(plain, ["id", "fog@0.5"])
    assert plain.unwrapped.shift is None  # the original env is left as it was
    assert shifted.unwrapped.shift.names == ("id", "fog@0.5")
    assert shifted.num_envs == plain.num_envs == 2 and shifted.unwrapped is not plain.unwrapped
    # None and "id" mean one thing: the default look, drawn without the shift pipeline
    assert envs.make("Reach", image_size=16, shift="id").unwrapped.shift is None


def test_render_and_shifts_do_not_import_envs():
    code = (
        "import sys, pvm_mbrl.render, pvm_mbrl.shifts; "
        "print(sorted(m for m in sys.modules if m.startswith('pvm_mbrl.envs')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_each_env_gets_its_preset_as_batched_data():
    """BatchEnv hands env ``i`` row ``i`` of ``env.env_params(n)`` through its vmap (rows
    ``i % len(presets)`` of the presets' severities and drift for a shifted task); nothing in
    the envs reads its position on a vmap axis. (End to end, with pixels:
    test_scene_shifts_leave_physics_untouched.)"""
    import pathlib

    from pvm_mbrl import envs

    class Tagged(envs.Env):  # resets to the parameter row it was handed
        row = None
        action_space = observation_space = None

        def env_params(self, num_envs):
            return jnp.arange(num_envs, dtype=jnp.float32) * 10.0

        def with_env_params(self, params):
            out = Tagged()
            out.row = params
            return out

        def reset(self, key):
            zero = jnp.zeros(())
            return envs.State(None, {"row": self.row}, zero, zero)

        advance = observe = None

    batch = envs.BatchEnv(envs.TimeLimit(Tagged(), 5), 4)
    rows = jax.jit(batch.reset)(jax.random.PRNGKey(0)).obs["row"]
    np.testing.assert_array_equal(np.asarray(rows), [0.0, 10.0, 20.0, 30.0])
    assert batch.env_params(4) is None  # consumed: an outer batch sees one env

    env = envs.make("Reach", image_size=8, num_envs=4, auto_reset=False)
    task = envs.with_shift(env, ["fog@0.25", "video-easy"]).unwrapped
    sev, drift = task.env_params(4)
    np.testing.assert_array_equal(np.asarray(sev), task.shift.severity[[0, 1, 0, 1]])
    np.testing.assert_array_equal(np.asarray(drift), task.shift.drift[[0, 1, 0, 1]])
    key = jax.random.PRNGKey(1)
    got = task.with_env_params((sev[1], drift[1]))._sample_shift(key)
    np.testing.assert_array_equal(np.asarray(got.severity), task.shift.severity[1])
    first = task._sample_shift(key)  # an env outside a batch takes the first preset
    np.testing.assert_array_equal(np.asarray(first.severity), task.shift.severity[0])
    with pytest.raises(TypeError, match="takes no per-env parameters"):
        env.unwrapped.with_env_params(None)
    root = pathlib.Path(envs.__file__).parent
    assert not [p for p in root.rglob("*.py") if "axis_index" in p.read_text()]
