"""The rendered Highway task: spaces, determinism, what its camera shows (lane markings in every
reset state, a car 20 m ahead big enough to see at 64 px), the study's shifts, bad inputs.
The physics is checked in tests/test_driving_sim.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pvm_mbrl import envs, shifts
from pvm_mbrl.envs.driving import road as rd
from pvm_mbrl.envs.driving import scene, scripted, sim

N = 8
SHIFTS = ("id", *shifts.DRIVING)


@pytest.fixture(scope="module")
def highway():
    """8 envs at 64 px with pixels and state, reset from key 0 (one compile)."""
    env = envs.make("Highway", obs_mode="pixels+state", num_envs=N, auto_reset=False)
    return env, jax.jit(env.reset)(jax.random.PRNGKey(0))


@pytest.fixture(scope="module")
def gallery():
    """The same reset state (key 7) under every driving shift, 64 px, and last ``clear_night``
    without its headlights."""
    presets = [*map(shifts.get, SHIFTS), shifts.Preset.of("unlit_night", {"night": 0.95})]
    env = envs.make("Highway", num_envs=len(presets), auto_reset=False, shift=presets)
    keys = jnp.stack([jax.random.PRNGKey(7)] * len(presets))
    return np.asarray(jax.jit(env.reset)(keys).obs["pixels"]).astype(float)


def test_spaces_episode_length_and_registry(highway):
    env, state = highway
    assert "Highway" in envs.registered()
    spaces = env.observation_space
    assert set(spaces) == set(state.obs) == {"pixels", "proprio", "state"}
    for k, space in spaces.items():
        assert state.obs[k].shape == (N, *space.shape) and state.obs[k].dtype == space.dtype
    assert spaces["pixels"].shape == (64, 64, 3) and env.action_space.shape == (2,)
    assert env.episode_length == 1000  # 100 s at 10 Hz
    repeated = envs.make("Highway", obs_mode="state", render=False, action_repeat=2)
    assert repeated.episode_length == 500  # the same 100 s
    assert set(state.metrics) == {"crashed", "offroad", "speed", "success"}


def test_reset_and_step_are_deterministic_and_batched(highway):
    env, state = highway
    again = jax.jit(env.reset)(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(np.asarray(state.obs["pixels"]), np.asarray(again.obs["pixels"]))
    px = np.asarray(state.obs["pixels"])
    assert len({px[i].tobytes() for i in range(N)}) == N  # each env its own start
    step = jax.jit(env.step)
    a = jnp.tile(jnp.array([[0.0, 0.3]]), (N, 1))
    one, two = step(state, a), step(state, a)
    np.testing.assert_array_equal(np.asarray(one.obs["pixels"]), np.asarray(two.obs["pixels"]))
    assert np.all(np.asarray(one.reward) > 0.3)  # driving on at 15-25 m/s in lane
    assert not np.array_equal(np.asarray(one.obs["pixels"]), px)  # the view moves


def _marking_pixels(px):
    """Pixels below the horizon (the lower half) that are grey and far brighter than the
    asphalt (about 65 of 255): lane markings covering at least ~40% of a pixel."""
    low = px[:, 32:].astype(float)
    bright = low.min(-1) > 110
    grey = low.max(-1) - low.min(-1) < 40
    return (bright & grey).sum((1, 2))


def test_lane_markings_in_view_in_every_reset_state():
    env = envs.make("Highway", num_envs=64, auto_reset=False)
    px = np.asarray(jax.jit(env.reset)(jax.random.PRNGKey(3)).obs["pixels"])
    count = _marking_pixels(px)
    assert count.min() >= 12, count  # edge lines and dividers, every start


def test_a_car_20_m_ahead_is_seen_at_64_px(highway):
    """At 64 px and 90 degrees a 1.9 x 1.5 m car 20 m ahead spans about 4 x 5 pixels; the
    threshold 9 (a 3 x 3 block) is the smallest object a stride-2 4x4 convolution, the first
    layer of DreamerV3's encoder, still resolves."""
    env, state = highway
    task = env.unwrapped
    data = state.data
    s, d, _ = jax.vmap(lambda x, y: rd.project(task.road, jnp.stack([x, y])))(
        data.ego.x, data.ego.y
    )
    lane = rd.nearest_lane(d)
    # the ego on its lane's centre, looking along the road
    ego_xy, heading = jax.vmap(lambda s, d: rd.point(task.road, s, d))(s, rd.lane_center(lane))
    ego = data.ego._replace(x=ego_xy[:, 0], y=ego_xy[:, 1], yaw=heading)
    traffic = data.traffic._replace(
        s=data.traffic.s.at[:, 0].set(rd.wrap_s(task.road, s + 20.0)),
        lane=data.traffic.lane.at[:, 0].set(lane),
    )
    placed = state.replace(data=data._replace(ego=ego, traffic=traffic))
    vis = envs.visibility(env, ["car0", "cabin0"], states=placed)
    seen = vis["car0"].pixels + vis["cabin0"].pixels
    assert seen.min() >= 9, seen
    assert seen.max() <= 60, seen  # not a wall: the car is 20 m away, not at the lens


def test_every_driving_shift_changes_the_image_and_id_is_the_default_look(gallery):
    clean = gallery[0]
    for name, img in zip(SHIFTS[1:], gallery[1:]):
        assert np.abs(img - clean).mean() > 4.0, name
    brightness = {name: img.mean() for name, img in zip(SHIFTS, gallery)}
    assert brightness["soft_high_light"] > brightness["id"] > brightness["hard_low_light"]
    assert brightness["hard_low_light"] < brightness["soft_noisy_low_light"]
    default = envs.make("Highway", auto_reset=False)
    plain = np.asarray(jax.jit(default.reset)(jax.random.PRNGKey(7)).obs["pixels"])
    np.testing.assert_array_equal(plain, gallery[0].astype(np.uint8))


def test_clear_night_headlights_light_the_road_ahead_not_the_sky(gallery):
    lit, unlit = gallery[SHIFTS.index("clear_night")], gallery[-1]
    gain = (lit - unlit).mean(axis=-1)  # [64, 64]
    assert gain.min() >= 0.0
    np.testing.assert_array_equal(gain[:20], 0.0)  # sky and far horizon: beyond the beam
    # A low beam: the lit band is the road ~5-25 m ahead (rows 33-44 with the horizon at 32),
    # brightest mid-image, not the bonnet's view of the nearest metres.
    profile = gain[:, 16:48].mean(axis=1)
    assert 33 <= np.argmax(profile) <= 42 and profile.max() > 30.0, profile
    assert profile[50:].max() < 2.0
    assert gain[36, 32] > 2.0 * gain[36, 8]  # brightest straight ahead


def test_the_scripted_driver_drives_the_env_cleanly():
    env = envs.make("Highway", obs_mode="state", render=False, num_envs=4, auto_reset=False)
    config = env.unwrapped.config

    def policy(state, key):
        return jax.vmap(lambda d: scripted.policy(d, config))(state.data)

    run = jax.jit(lambda k: envs.rollout(env, policy, env.reset(k), 300))
    _, traj = run(jax.random.PRNGKey(1))
    assert not np.asarray(traj["metrics"]["crashed"]).any()
    assert not np.asarray(traj["metrics"]["offroad"]).any()
    assert np.asarray(traj["reward"]).mean() > 0.6


def test_checked_step_names_a_non_finite_vehicle_state():
    env = envs.make("Highway", obs_mode="state", render=False, num_envs=2, auto_reset=False)
    step = jax.jit(envs.checked_step(env))
    state = env.reset(jax.random.PRNGKey(0))
    err, _ = step(state, jnp.zeros((2, 2)))
    assert err.get() is None
    err, _ = step(state, jnp.array([[0.0, 0.0], [jnp.nan, 0.0]]))
    assert "action" in err.get() and "env 1" in err.get()
    ego = state.data.ego._replace(v=state.data.ego.v.at[0].set(jnp.inf))
    err, _ = step(state.replace(data=state.data._replace(ego=ego)), jnp.zeros((2, 2)))
    assert ".ego." in err.get() and "env 0" in err.get()


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="camera must be one of"):
        envs.make("Highway", camera="wrist")
    with pytest.raises(ValueError, match="split must be one of"):
        envs.make("Highway", split="snowy")
    with pytest.raises(ValueError, match="num_cars"):
        envs.make("Highway", num_cars=-1)
    with pytest.raises(ValueError, match="obs_mode"):
        envs.make("Highway", obs_mode="proprio")
    env = envs.make("Highway", obs_mode="state", render=False, auto_reset=False)
    with pytest.raises(ValueError, match="action must have shape"):
        env.step(env.reset(jax.random.PRNGKey(0)), jnp.zeros(3))
    assert scene.FOVY == 90.0 and sim.OBS_SIZE == env.observation_space["state"].shape[0]
