"""The highway driving physics (pvm_mbrl.envs.driving): road geometry, the bicycle model's
closed forms, IDM traffic, and whole-episode figures of the scripted and random drivers."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pvm_mbrl.envs.driving import road as rd
from pvm_mbrl.envs.driving import scripted, sim
from pvm_mbrl.envs.driving import traffic as tr
from pvm_mbrl.envs.driving import vehicle as vh

ROADS = {"train": rd.make_road(), "curvy": rd.make_road(curvy=True)}
reset = jax.jit(sim.reset, static_argnums=1)
state_obs = jax.jit(sim.state_obs, static_argnums=1)


def _keys(n, seed=0):
    return jax.random.split(jax.random.PRNGKey(seed), n)


# --- road ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ROADS)
def test_road_shape(name):
    road = ROADS[name]
    assert 1500 < road.length < 3000
    radii = 1 / np.abs(road.curvature[road.curvature != 0])
    assert radii.min() >= 100 and radii.max() <= 300
    if name == "curvy":
        assert radii.max() <= 130
    else:
        assert radii.min() >= 200
    assert np.isclose(road.seg_length.sum(), road.length)
    assert road.half_width == rd.NUM_LANES * rd.LANE_WIDTH / 2 == rd.ROAD_HALF_WIDTH
    centres = np.asarray(rd.lane_center(jnp.arange(3)))
    np.testing.assert_allclose(centres, [-3.5, 0.0, 3.5])
    assert list(np.asarray(rd.nearest_lane(jnp.array([-9.0, -2.0, 1.6, 1.8, 9.0])))) == [
        0,
        0,
        1,
        2,
        2,
    ]


@pytest.mark.parametrize("name", ROADS)
def test_point_project_round_trip(name):
    road = ROADS[name]
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    s = jax.random.uniform(k1, (4096,), maxval=road.length)
    edge = road.half_width + rd.SHOULDER_WIDTH
    d = jax.random.uniform(k2, (4096,), minval=-edge, maxval=edge)
    xy, heading = jax.jit(lambda s, d: rd.point(road, s, d))(s, d)
    s2, d2, h2 = jax.jit(lambda xy: rd.project(road, xy))(xy)
    ds = (s2 - s + road.length / 2) % road.length - road.length / 2
    assert float(jnp.abs(ds).max()) < 2e-3
    assert float(jnp.abs(d2 - d).max()) < 2e-3
    assert float(jnp.abs(rd.heading_error(h2, heading)).max()) < 1e-4
    # Per pixel: a [64, 64] grid of ground points in one vmapped call.
    grid = xy[:4096].reshape(64, 64, 2)
    s3, d3, _ = jax.jit(jax.vmap(jax.vmap(lambda p: rd.project(road, p))))(grid)
    assert s3.shape == d3.shape == (64, 64)
    np.testing.assert_allclose(np.asarray(d3).ravel(), np.asarray(d2), atol=1e-5)


@pytest.mark.parametrize("name", ROADS)
def test_joints_continuous_and_loop_closes(name):
    road = ROADS[name]
    eps = 1e-2
    joints = jnp.asarray(np.append(road.start_s[1:], road.length), jnp.float32)
    for d in (-5.0, 0.0, 5.0):
        before, hb = rd.point(road, joints - eps, d)
        after, ha = rd.point(road, joints + eps, d)
        gap = np.linalg.norm(np.asarray(after - before), axis=-1)
        assert gap.max() < 2 * eps * (1 + 0.06) + 1e-3, gap
        assert float(jnp.abs(rd.heading_error(ha, hb)).max()) < 1e-3
    p0, h0 = rd.point(road, 0.0, 2.0)
    p1, h1 = rd.point(road, road.length, 2.0)
    np.testing.assert_allclose(p0, p1, atol=1e-3)
    assert abs(float(rd.heading_error(h0, h1))) < 1e-5
    np.testing.assert_allclose(rd.point(road, road.length - 1e-3, 2.0)[0], p0, atol=5e-3)


@pytest.mark.parametrize("name", ROADS)
def test_arc_curvature_is_one_over_radius(name):
    road = ROADS[name]
    for i in np.flatnonzero(road.curvature != 0):
        mid = road.start_s[i] + road.seg_length[i] / 2
        assert np.isclose(float(rd.curvature(road, mid)), road.curvature[i], rtol=1e-5)
        # Circle through three reference-line points 20 m apart: radius 1/|k|.
        a, b, c = (np.asarray(rd.point(road, mid + o)[0], np.float64) for o in (-10.0, 0.0, 10.0))
        area2 = abs((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))
        radius = np.linalg.norm(b - a) * np.linalg.norm(c - b) * np.linalg.norm(c - a) / (2 * area2)
        assert np.isclose(radius, 1 / abs(road.curvature[i]), rtol=2e-3)
    straight = road.start_s[0] + road.seg_length[0] / 2
    assert float(rd.curvature(road, straight)) == 0.0


def test_lane_distance_across_the_wrap():
    road = ROADS["train"]  # segment 0 is straight from s = 0; the last is a left arc of 200 m
    assert road.curvature[0] == 0 and np.isclose(road.curvature[-1], 1 / 200)
    for d in (-3.5, 0.0, 3.5):
        dist = float(rd.lane_distance(road, road.length - 10.0, 5.0, d))
        assert np.isclose(dist, 10 * (1 - d / 200) + 5, atol=2e-3)
        assert np.isclose(float(rd.lane_distance(road, 100.0, 300.0, d)), 200.0, atol=1e-3)


# --- vehicle -----------------------------------------------------------------------------


def _drive(car, action, steps):
    def body(c, _):
        c = vh.step(c, action)
        return c, c

    return jax.jit(lambda c: jax.lax.scan(body, c, None, length=steps))(car)


def _circle_radius(x, y):
    """Least-squares circle fit (Kasa): x^2 + y^2 = 2 a x + 2 b y + c."""
    a = np.stack([2 * x, 2 * y, np.ones_like(x)], 1)
    (cx, cy, c), *_ = np.linalg.lstsq(a, x**2 + y**2, rcond=None)
    return np.sqrt(c + cx**2 + cy**2)


@pytest.mark.parametrize(("v", "steer"), [(3.0, 1.0), (10.0, 0.6), (20.0, -0.8)])
def test_turning_radius_closed_form(v, steer):
    _, path = _drive(vh.make(0, 0, 0, v), jnp.array([steer, 0.0]), 300)
    delta = steer * float(vh.steer_limit(v))
    beta = np.arctan(0.5 * np.tan(delta))  # l_r / (l_f + l_r) = 1/2
    expected = vh.L_REAR / abs(np.sin(beta))
    assert np.isclose(float(vh.turn_radius(delta)), expected, rtol=1e-5)
    radius = _circle_radius(np.asarray(path.x, np.float64), np.asarray(path.y, np.float64))
    assert np.isclose(radius, expected, rtol=2e-3), (radius, expected)
    np.testing.assert_allclose(path.v, v)  # throttle 0 holds the speed
    if v <= 3:
        assert np.isclose(delta, vh.MAX_STEER)
    else:  # the speed-dependent limit caps lateral acceleration
        assert v**2 / expected <= vh.MAX_LAT_ACCEL * 1.01


@pytest.mark.parametrize("v0", [10.0, 20.0, 30.0])
def test_stopping_distance(v0):
    final, path = _drive(vh.make(0, 0, 0, v0), jnp.array([0.0, -1.0]), 60)
    assert float(final.v) == 0.0
    assert np.isclose(float(final.x), v0**2 / (2 * vh.MAX_BRAKE), atol=1e-2)
    assert abs(float(final.y)) < 1e-4
    stop_step = int(np.argmax(np.asarray(path.v) == 0))
    assert stop_step == int(np.ceil(v0 / vh.MAX_BRAKE / 0.1 - 1e-6)) - 1


def test_straight_acceleration_and_speed_limits():
    final, _ = _drive(vh.make(0, 0, 0, 0.0), jnp.array([0.0, 1.0]), 30)  # 3 s
    assert np.isclose(float(final.v), 3 * vh.MAX_ACCEL, atol=1e-4)
    assert np.isclose(float(final.x), 0.5 * vh.MAX_ACCEL * 9, atol=1e-3)
    clipped, _ = _drive(vh.make(0, 0, 0, 0.0), jnp.array([0.0, 7.0]), 30)  # clipped to 1
    assert np.isclose(float(clipped.x), float(final.x))
    fast, _ = _drive(vh.make(0, 0, 0, vh.MAX_SPEED - 0.1), jnp.array([0.0, 1.0]), 5)
    assert float(fast.v) == vh.MAX_SPEED
    still, _ = _drive(vh.make(1, 2, 0.3, 0.0), jnp.array([1.0, -1.0]), 5)  # no reversing
    assert float(still.v) == 0 and float(still.x) == 1 and float(still.y) == 2


# --- traffic -----------------------------------------------------------------------------


def _traffic(s, lane, v, v0):
    f = functools.partial(jnp.asarray, dtype=jnp.float32)
    return tr.Traffic(f(s), jnp.asarray(lane, jnp.int32), f(v), f(v0))


def test_leader_found_round_the_wrap():
    road = ROADS["train"]
    t = _traffic([road.length - 10.0, 5.0, 200.0, 150.0], [1, 1, 1, 0], [20] * 4, [25] * 4)
    gaps = np.asarray(tr.same_lane_gaps(road, t))
    np.testing.assert_allclose(
        gaps[:3], [15 - vh.LENGTH, 195 - vh.LENGTH, road.length - 210 - vh.LENGTH], atol=2e-2
    )
    assert gaps[3] == tr.FREE  # alone in its lane


def test_idm_free_road_speed_and_braking_for_the_ego():
    road = ROADS["train"]
    t = _traffic([400.0, 1000.0], [1, 0], [10.0, 10.0], [22.0, 26.0])

    def run(ego_s, ego_d, steps):
        def body(t, _):
            t = tr.step(road, t, ego_s, ego_d, 0.0, 0.1)
            return t, tr.same_lane_gaps(road, t)

        return jax.jit(lambda t: jax.lax.scan(body, t, None, length=steps))(t)

    free, _ = run(0.0, 50.0, 900)  # ego off the road: free flow
    np.testing.assert_allclose(free.v, [22.0, 26.0], atol=0.05)
    # A stopped ego 300 m ahead of car 0 in its lane: car 0 stops behind it, s0 away.
    t = t._replace(v=jnp.array([25.0, 25.0]))
    stopped, _ = run(700.0, rd.lane_center(1), 400)
    gap = float(rd.lane_distance(road, stopped.s[0], 700.0, 0.0)) - vh.LENGTH
    assert float(stopped.v[0]) < 0.05 and 0.9 * tr.MIN_GAP < gap < 1.5 * tr.MIN_GAP
    assert float(stopped.v[1]) > 20  # the other lane drives on


def test_idm_accel_formula():
    a = tr.idm_accel(jnp.float32(20.0), 25.0, 40.0, 5.0)
    s_star = tr.MIN_GAP + 20 * tr.HEADWAY + 20 * 5 / (2 * np.sqrt(tr.IDM_ACCEL * tr.IDM_DECEL))
    expected = tr.IDM_ACCEL * (1 - (20 / 25) ** 4 - (s_star / 40) ** 2)
    assert np.isclose(float(a), max(expected, -tr.EMERGENCY_BRAKE), rtol=1e-5)


def test_reset_spacing_and_near_cars():
    config = sim.Config(split="dense")

    @jax.jit
    @jax.vmap
    def start(key):
        state = sim.reset(key, config)
        ego_s = sim.frenet(state, config)[0]
        ahead = jnp.mod(state.traffic.s - ego_s, config.road.length)
        return state.traffic.lane, ahead, tr.same_lane_gaps(config.road, state.traffic)

    lanes, ahead, gaps = (np.asarray(x) for x in start(_keys(256, 3)))
    assert gaps.min() >= tr.SLOT - tr.JITTER - vh.LENGTH - 1e-2
    for lane in range(3):
        first = ahead[:, lanes[0] == lane].min(1)
        assert (first >= tr.NEAR_AHEAD[0] - 0.01).all() and (first <= tr.NEAR_AHEAD[1] + 0.01).all()
    assert ahead.max() <= config.road.length - 70  # nobody starts right behind the ego


# --- whole episodes ----------------------------------------------------------------------


@functools.cache
def _rollout(config, steps):
    """jit(vmap(episode)) over keys; ``random`` picks the uniform random policy."""

    def episode(key, random):
        k0, k1 = jax.random.split(key)

        def body(state, k):
            noise = jax.random.uniform(k, (2,), minval=-1.0, maxval=1.0)
            action = jnp.where(random, noise, scripted.policy(state, config))
            nxt = sim.step(state, action, config)
            live = ~state.done
            gap = jnp.min(tr.same_lane_gaps(config.road, nxt.traffic), initial=tr.FREE)
            return nxt, (jnp.where(live, nxt.reward, 0.0), nxt.done, nxt.crashed & live, gap)

        _, out = jax.lax.scan(body, sim.reset(k0, config), jax.random.split(k1, steps))
        return out

    return jax.jit(jax.vmap(episode, in_axes=(0, None)))


@pytest.fixture(scope="module")
def train_episodes():
    run = _rollout(sim.Config(), 1000)
    return {kind: run(_keys(64), kind == "random") for kind in ("scripted", "random")}


def test_scripted_driver_finishes_and_scores(train_episodes):
    rewards, done, crashed, gaps = (np.asarray(x) for x in train_episodes["scripted"])
    assert (~done[:, -1]).mean() >= 0.95
    assert not crashed.any()
    per_step = rewards.sum(1) / rewards.shape[1]
    assert per_step.mean() > 0.7, per_step.mean()
    assert gaps.min() > 0


def test_random_policy_scores_below_zero(train_episodes):
    rewards, _, _, _ = (np.asarray(x) for x in train_episodes["random"])
    random_return = rewards.sum(1).mean()
    assert random_return < 0
    scripted_return = np.asarray(train_episodes["scripted"][0]).sum(1).mean()
    assert scripted_return > 10 * abs(random_return)


@pytest.mark.parametrize("split", ["dense", "curvy"])
def test_traffic_never_overlaps_and_held_out_splits(split):
    steps = 2000 if split == "dense" else 1000
    rewards, done, crashed, gaps = (
        np.asarray(x) for x in _rollout(sim.Config(split=split), steps)(_keys(64, 1), False)
    )
    assert gaps.min() > 0, gaps.min()  # bumper-to-bumper, same lane, every step
    assert (~done[:, -1]).mean() >= 0.95 and not crashed.any()
    assert rewards.sum(1).mean() / steps > 0.6


def test_deterministic_batched_obs_and_poses():
    config = sim.Config()

    @jax.jit
    @jax.vmap
    def go(key):
        actions = jnp.array([[0.1, 0.5], [-0.2, 0.0], [0.0, -0.3]])
        state, _ = jax.lax.scan(
            lambda s, a: (sim.step(s, a, config), None), sim.reset(key, config), actions
        )
        return state, sim.state_obs(state, config), sim.cars_pose(state, config)

    a, obs, (xy, yaw) = go(_keys(8))
    b, obs2, _ = go(_keys(8))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(obs, obs2)
    assert obs.shape == (8, sim.OBS_SIZE) and obs.dtype == jnp.float32
    assert np.isfinite(obs).all() and np.abs(obs).max() < 5
    assert xy.shape == (8, config.cars + 1, 2) and yaw.shape == (8, config.cars + 1)
    assert len(set(np.asarray(a.ego.x).tolist())) == 8  # seeds differ
    assert (np.asarray(a.t) == 3).all()


def test_state_obs_reads_the_neighbours():
    config = sim.Config(num_cars=3)
    state = reset(jax.random.PRNGKey(0), config)
    s, d, _ = jax.jit(sim.frenet, static_argnums=1)(state, config)
    lane = int(rd.nearest_lane(d))
    ego_v = float(state.ego.v)
    # One car 40 m ahead in the ego's lane, one 30 m behind in the lane to its left (if any).
    other = min(lane + 1, 2) if lane < 2 else lane - 1
    traffic = _traffic(
        [s + 40.0, s - 30.0, s + 500.0], [lane, other, other], [ego_v - 5] * 3, [25.0] * 3
    )
    obs = np.asarray(state_obs(state._replace(traffic=traffic), config))
    near = obs[9:].reshape(3, 4)  # lanes right, own, left; [gap ahead, rel v, gap behind, rel v]
    own = near[1]
    assert np.isclose(own[0] * 100, 40 - vh.LENGTH, atol=0.5)  # lane curvature changes it a bit
    assert np.isclose(own[1] * 10, -5.0, atol=0.2)
    assert own[2] == 1.0 and own[3] == 0.0  # nobody behind within 100 m
    side = near[2] if other > lane else near[0]
    assert np.isclose(side[2] * 100, 30 - vh.LENGTH, atol=1.0)
    if lane in (0, 2):  # no lane beyond the edge: zeros
        assert (near[0 if lane == 0 else 2] == 0).all()


def test_other_lane_counts_and_no_traffic():
    for config in (sim.Config(num_lanes=4, num_cars=0), sim.Config(num_lanes=4, num_cars=5)):
        state = jax.jit(sim.step, static_argnums=2)(
            reset(jax.random.PRNGKey(1), config), jnp.array([0.0, 0.2]), config
        )
        assert not bool(state.done) and np.isfinite(np.asarray(state_obs(state, config))).all()


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="num_cars"):
        sim.Config(num_cars=-1)
    with pytest.raises(ValueError, match="num_cars"):
        sim.Config(num_cars=10_000)
    with pytest.raises(ValueError, match="num_lanes"):
        sim.Config(num_lanes=2)
    with pytest.raises(ValueError, match="num_lanes"):
        rd.make_road(num_lanes=2)
    with pytest.raises(ValueError, match="split"):
        sim.Config(split="night")
    with pytest.raises(ValueError, match="dt"):
        sim.Config(dt=0.0)
    with pytest.raises(ValueError, match="num_cars"):
        tr.reset(jax.random.PRNGKey(0), ROADS["train"], 0.0, -2)
    config = sim.Config()
    state = sim.reset(jax.random.PRNGKey(0), config)
    with pytest.raises(ValueError, match="action"):
        sim.step(state, jnp.zeros(3), config)
    with pytest.raises(ValueError, match="action"):
        sim.step(state, jnp.zeros(2, jnp.int32), config)
    with pytest.raises(ValueError, match="action"):
        sim.step(state, jnp.array([0.0, jnp.nan]), config)
    with pytest.raises(ValueError, match="episode_steps"):
        sim.Config(episode_steps=0)


def test_ego_camera_frame():
    state = reset(jax.random.PRNGKey(2), sim.Config())
    pos, mat = sim.ego_camera(state, pitch=0.0)
    np.testing.assert_allclose(mat.T @ mat, np.eye(3), atol=1e-6)
    assert np.isclose(float(jnp.linalg.det(mat)), 1.0, atol=1e-6)
    yaw = float(state.ego.yaw)
    np.testing.assert_allclose(
        -mat[:, 2], [np.cos(yaw), np.sin(yaw), 0.0], atol=1e-6
    )  # looks ahead
    np.testing.assert_allclose(mat[:, 1], [0.0, 0.0, 1.0], atol=1e-6)  # y up
    assert np.isclose(float(pos[2]), 1.4)
