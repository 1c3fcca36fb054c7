"""Core env API: spaces, wrappers, scan rollouts, batching, auto-reset, time limit, action
repeat, invalid actions, determinism. Physics-only Reach (no contacts) keeps compiles short."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pvm_mbrl import envs
from pvm_mbrl.envs.manipulation import Reach, scripted

B, T = 4, 5


@pytest.fixture(scope="module")
def batched():
    """Reach, state obs, 4 envs, 5-step episodes with auto-reset, and a jitted scan rollout."""
    env = envs.make("Reach", obs_mode="state", num_envs=B, episode_length=T)
    task = env.unwrapped

    def policy(state, key):
        return jax.vmap(lambda s: scripted.reach(task, s))(state)

    reset = jax.jit(env.reset)
    run = jax.jit(lambda s: envs.rollout(env, policy, s, T + 2))
    return env, reset, run


@pytest.fixture(scope="module")
def single():
    """Unwrapped Reach task with jitted reset/advance."""
    task = Reach(obs_mode="state")
    return task, jax.jit(task.reset), jax.jit(task.advance)


@pytest.fixture(scope="module")
def checked(single, batched):
    """Jitted ``checked_step`` of the single task and of the batched env."""
    return jax.jit(envs.checked_step(single[0])), jax.jit(envs.checked_step(batched[0]))


def test_spaces_match_observations(batched):
    env, reset, _ = batched
    state = reset(jax.random.PRNGKey(0))
    spaces = env.observation_space
    assert set(spaces) == set(state.obs) == {"proprio", "state"}
    for k, space in spaces.items():
        assert state.obs[k].shape == (B, *space.shape)
        assert state.obs[k].dtype == space.dtype
    a = env.action_space
    assert a.shape == (4,) and a.low == -1.0 and a.high == 1.0 and "clipped" in a.doc
    assert env.episode_length == T
    assert env.max_episode_return == pytest.approx(T * 1.0)
    assert np.all(np.asarray(state.metrics["success"]) >= 0)


def test_reset_is_deterministic_from_key(batched):
    _, reset, _ = batched
    a, b = reset(jax.random.PRNGKey(3)), reset(jax.random.PRNGKey(3))
    c = reset(jax.random.PRNGKey(4))
    chex_equal = jax.tree.map(lambda x, y: bool(jnp.array_equal(x, y)), a, b)
    assert all(jax.tree.leaves(chex_equal))
    assert not np.allclose(a.obs["state"], c.obs["state"])
    goals = np.asarray(a.obs["state"][:, 8:11])
    assert len({tuple(g) for g in goals.round(6)}) == B  # each env draws its own target


def test_scan_rollout_time_limit_and_autoreset(batched):
    _env, reset, run = batched
    state = reset(jax.random.PRNGKey(1))
    final, traj = run(state)
    done = np.asarray(traj["done"])
    assert done.shape == (T + 2, B)
    np.testing.assert_array_equal(done[T - 1], 1.0)  # time limit hits on step T
    np.testing.assert_array_equal(done[: T - 1], 0.0)
    np.testing.assert_array_equal(done[T:], 0.0)
    np.testing.assert_array_equal(np.asarray(traj["truncation"]), done)  # ended by time only
    assert np.all(np.isfinite(np.asarray(traj["reward"])))
    assert np.all((np.asarray(traj["reward"]) > 0) & (np.asarray(traj["reward"]) <= 1))
    # After the reset the step counter restarted and fresh targets were drawn.
    np.testing.assert_array_equal(np.asarray(final.info["steps"]), 2)
    goal_before = np.asarray(traj["obs"]["state"][T - 1, :, 8:11])
    goal_after = np.asarray(traj["obs"]["state"][T, :, 8:11])
    assert not np.allclose(goal_before, goal_after)
    # The episode summary: every env's episode ends at step T with the sum of its rewards.
    ep = jax.tree.map(np.asarray, traj["episode"])
    np.testing.assert_array_equal(ep["ended"], done.astype(bool))
    reward = np.asarray(traj["reward"])
    np.testing.assert_allclose(ep["return"][T - 1], reward[:T].sum(0), rtol=1e-5)
    success = np.asarray(traj["metrics"]["success"])
    np.testing.assert_array_equal(ep["success_once"][T - 1], success[:T].max(0))
    np.testing.assert_array_equal(ep["success_end"][T - 1], success[T - 1])


def test_episode_stats_count_valid_steps_and_restart_after_an_end():
    from pvm_mbrl.envs import episodes

    run = episodes.start((2,))
    steps = [  # reward, success, done, valid for envs 0 and 1
        ([1.0, 2.0], [0.0, 1.0], [False, False], [True, True]),
        ([3.0, 5.0], [1.0, 0.0], [True, False], [True, True]),
        ([7.0, 4.0], [1.0, 0.0], [False, True], [False, True]),  # env 0: a reset step
        ([2.0, 9.0], [0.0, 1.0], [True, True], [True, False]),  # env 1: after its end
    ]
    out = []
    for r, s, d, v in steps:
        run, ended = episodes.update(run, jnp.array(r), jnp.array(s), jnp.array(d), jnp.array(v))
        out.append(jax.tree.map(np.asarray, ended))
    assert out[1]["ended"].tolist() == [True, False] and out[1]["return"][0] == 4.0
    assert out[1]["success_once"][0] == 1.0 and out[1]["success_end"][0] == 1.0
    assert out[2]["ended"].tolist() == [False, True] and out[2]["return"][1] == 11.0
    assert out[2]["success_once"][1] == 1.0 and out[2]["success_end"][1] == 0.0
    # env 0's second episode starts from zero and skips the reset step's reward
    assert out[3]["ended"].tolist() == [True, False] and out[3]["return"][0] == 2.0
    assert out[3]["success_once"][0] == 0.0
    totals = jax.tree.map(float, episodes.totals(out[1]))
    assert totals == {"episodes": 1.0, "return": 4.0, "success_once": 1.0, "success_end": 1.0}
    first = {**{k: jnp.zeros(2) for k in episodes.SUMMARY}, "ended": jnp.zeros(2, bool)}
    for ended in out:
        first = episodes.keep_first(first, ended)
    assert np.asarray(first["return"]).tolist() == [4.0, 11.0]  # each env's first episode


def test_batch_matches_single_env(batched, single):
    _env, reset, _ = batched
    _task, reset1, _ = single
    key = jax.random.PRNGKey(5)
    batch = reset(key)
    # AutoReset splits off the envs' key, BatchEnv splits it into one key per env.
    keys = jax.random.split(jax.random.split(key)[0], B)
    one = reset1(keys[2])
    np.testing.assert_allclose(batch.obs["state"][2], one.obs["state"], rtol=1e-6, atol=1e-6)


def test_action_repeat_sums_rewards_and_repeats_physics(single):
    task, reset1, advance = single
    rep = envs.ActionRepeat(task, 2)
    state = reset1(jax.random.PRNGKey(2))
    a = jnp.array([0.5, -0.3, 0.2, 1.0])
    twice = advance(advance(state, a), a)
    once = advance(state, a)
    repeated = jax.jit(rep.advance)(state, a)
    np.testing.assert_allclose(repeated.data.qpos, twice.data.qpos, atol=1e-6)
    np.testing.assert_allclose(repeated.reward, once.reward + twice.reward, rtol=1e-5)
    assert rep.max_step_reward == 2.0 * task.max_step_reward


def test_out_of_range_actions_are_clipped(single):
    _task, reset1, advance = single
    state = reset1(jax.random.PRNGKey(0))
    big = advance(state, jnp.array([5.0, -7.0, 3.0, 9.0]))
    unit = advance(state, jnp.array([1.0, -1.0, 1.0, 1.0]))
    np.testing.assert_allclose(big.data.qpos, unit.data.qpos)


def test_invalid_actions_raise(single, batched, checked):
    task, reset1, _ = single
    state = reset1(jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"\(4,\)"):
        task.step(state, jnp.zeros(3))
    with pytest.raises(ValueError, match="float"):
        task.step(state, jnp.zeros(4, jnp.int32))
    with pytest.raises(ValueError, match="NaN"):
        task.step(state, jnp.array([0.0, jnp.nan, 0.0, 0.0]))
    with pytest.raises(ValueError, match="finite"):
        task.step(state, jnp.array([0.0, 0.0, -jnp.inf, 0.0]))
    with pytest.raises(ValueError, match=r"\(4,\)"):  # also when traced under jit
        jax.jit(task.step)(state, jnp.zeros((2, 4)))
    env, reset, _ = batched
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        env.step(reset(jax.random.PRNGKey(0)), jnp.zeros((3, 4)))
    # Inside jit NaNs are caught with checkify.
    checked1, _ = checked
    err, _ = checked1(state, jnp.array([jnp.nan, 0.0, 0.0, 0.0]))
    with pytest.raises(Exception, match="NaN"):
        err.throw()
    err, _ = checked1(state, jnp.zeros(4))
    err.throw()
    # ... and physics that is no longer finite after the step.
    broken = state.replace(data=state.data.replace(qvel=state.data.qvel.at[0].set(jnp.inf)))
    err, _ = checked1(broken, jnp.zeros(4))
    with pytest.raises(Exception, match="non-finite q"):
        err.throw()


def test_batched_env_rejects_non_finite_action_before_stepping(batched):
    env, reset, _ = batched
    state = reset(jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"finite.*env 2 of 4"):
        env.step(state, jnp.zeros((B, 4)).at[2, 1].set(jnp.nan))
    with pytest.raises(ValueError, match=r"env 1 of 4.*envs \[1, 3\]"):
        env.step(state, jnp.zeros((B, 4)).at[1, 0].set(jnp.inf).at[3, 3].set(jnp.nan))
    with pytest.raises(ValueError, match="env 0"):  # BatchEnv.advance checks too
        env.env.advance(state, jnp.full((B, 4), jnp.nan))


def test_checked_step_on_batched_env(batched, checked):
    _env, reset, _ = batched
    _, checked_b = checked
    state = reset(jax.random.PRNGKey(0))
    err, out = checked_b(state, jnp.zeros((B, 4)))
    err.throw()  # valid actions pass
    assert out.reward.shape == (B,)
    err, _ = checked_b(state, jnp.zeros((B, 4)).at[3, 2].set(jnp.nan))
    with pytest.raises(Exception, match=r"non-finite action \(NaN or inf\) in env 3"):
        err.throw()
    # Env 1's physics blows up: AutoReset starts it anew, its step's reward is not finite.
    qpos = state.data.qpos.at[1, 0].set(jnp.nan)
    err, out = checked_b(state.replace(data=state.data.replace(qpos=qpos)), jnp.zeros((B, 4)))
    with pytest.raises(Exception, match=r"non-finite \w+ in env 1"):
        err.throw()


def test_make_errors():
    with pytest.raises(ValueError, match="PickCube"):
        envs.make("NoSuchTask")
    with pytest.raises(ValueError, match="render"):
        envs.make("Reach", obs_mode="pixels", render=False)
    with pytest.raises(ValueError, match="split"):
        envs.make("Reach", split="novel_objects")
    with pytest.raises(ValueError, match="camera"):
        envs.make("Reach", camera="top")
    assert set(envs.registered()) >= {"Reach", "Push", "PickCube", "PickObject"}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"image_size": 16.7},
        {"image_size": "16"},
        {"image_size": True},
        {"image_size": 4},
        {"num_envs": 2.5},
        {"num_envs": 0},
        {"episode_length": 0},
        {"episode_length": -3},
        {"episode_length": 5.0},
        {"action_repeat": 1.5},
        {"substeps": 0},
        {"substeps": 2.0},
    ],
    ids=lambda kw: "-".join(f"{k}={v!r}" for k, v in kw.items()),
)
def test_make_rejects_non_integer_or_small_sizes(kwargs):
    ((name, value),) = kwargs.items()
    with pytest.raises(ValueError, match=rf"{name} must be an integer >= \d+, got {value!r}"):
        envs.make("Reach", obs_mode="state", **kwargs)


def test_integer_arguments_accept_numpy_ints_and_none_means_default(single):
    env = envs.make("Reach", obs_mode="state", num_envs=np.int64(2), episode_length=np.int32(7))
    assert env.episode_length == 7 and env.num_envs == 2 and type(env.num_envs) is int
    assert envs.make("Reach", obs_mode="state", episode_length=None).episode_length == 50
    task = single[0]
    for wrap, bad in ((envs.TimeLimit, 0), (envs.BatchEnv, 2.5), (envs.ActionRepeat, True)):
        with pytest.raises(ValueError, match=f"must be an integer >= 1, got {bad!r}"):
            wrap(task, bad)
    with pytest.raises(ValueError, match="episode_length must be an integer >= 1, got 0"):
        Reach(obs_mode="state", episode_length=0)


def test_pixel_observations_and_scene_params():
    env = envs.make("Reach", image_size=16, camera="front", obs_mode="pixels+state", num_envs=2)
    state = jax.jit(env.reset)(jax.random.PRNGKey(0))
    px = state.obs["pixels"]
    assert px.shape == (2, 16, 16, 3) and px.dtype == jnp.uint8
    assert env.observation_space["pixels"].shape == (16, 16, 3)
    assert "scene" in state.info  # per-env traced visual properties
    assert int(px.max()) > int(px.min())  # a real image, not a constant
    view = envs.PixelsOnly(env)
    assert view.observation_space.shape == (16, 16, 3)


def test_without_auto_reset_copies_the_chain_and_leaves_the_env_alone():
    env = envs.make("Reach", obs_mode="state", render=False, num_envs=2)
    plain = envs.without_auto_reset(env)
    assert isinstance(env, envs.AutoReset) and isinstance(plain, envs.BatchEnv)
    assert plain.num_envs == 2 and plain.unwrapped is env.unwrapped
    assert isinstance(env.env, envs.BatchEnv)  # the env passed in is unchanged
    assert envs.without_auto_reset(plain) is plain  # nothing to leave out: the same object
