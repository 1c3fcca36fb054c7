"""The dmc/ tasks against dm-control itself (the oracle), state by state: the models' dynamics,
rewards, observations and initial states, plus registration and bad input (whole episodes:
``test_dmc_episodes.py``).

Rewards and observations are checked on states forwarded by C MuJoCo and moved to the device
with ``mjx.put_data``, so only the task's reward / observation function is compiled here; the
physics of a whole episode is compiled once per domain (one task each) for the trajectory and
random-return checks.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest
import scipy.stats
from dmc_oracle import oracle, row, set_oracle, task_env

from pvm_mbrl import envs
from pvm_mbrl.envs import dmc
from pvm_mbrl.envs.dmc import rewards
from pvm_mbrl.envs.mjx import mjx

TASKS = sorted(dmc.TASKS)
N_STATES = 200  # states per task in the state-wise checks
ONE_PER_DOMAIN = sorted(
    {min(t for t in TASKS if dmc.TASKS[t][0] == d) for d, _ in dmc.TASKS.values()}
)


@functools.cache
def init_fn(name: str):
    """Jitted, vmapped ``_init_episode`` of task ``name`` (shared by the tests of this file)."""
    return jax.jit(jax.vmap(task_env(name)._init_episode))


def sample_states(name: str, n: int, seed: int):
    """``n`` states: the first half from the task's initial distribution (velocities perturbed),
    the second half with every hinge / slide joint uniform over its range (+-pi or +-1 m when
    unlimited); velocities ~ N(0, 2^2) added (N(0, 20^2) for every fourth state, so that fast
    rotations such as finger_spin's -15 rad/s occur), controls uniform in [-1, 1]."""
    m = task_env(name).mj_model
    keys = jax.random.split(jax.random.PRNGKey(seed), n)
    qpos, qvel, info = jax.device_get(init_fn(name)(keys))
    qpos, qvel = np.array(qpos, np.float64), np.array(qvel, np.float64)
    rng = np.random.default_rng(seed)
    half = n // 2
    for j in range(m.njnt):
        kind = m.jnt_type[j]
        if kind not in (mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE):
            continue
        if m.jnt_limited[j]:
            lo, hi = m.jnt_range[j]
        else:
            lo, hi = (-np.pi, np.pi) if kind == mujoco.mjtJoint.mjJNT_HINGE else (-1.0, 1.0)
        qpos[half:, m.jnt_qposadr[j]] = rng.uniform(lo, hi, n - half)
    qvel = qvel + rng.normal(0.0, 2.0, qvel.shape)
    qvel[::4] *= 10.0
    ctrl = rng.uniform(-1.0, 1.0, (n, m.nu))
    return qpos, qvel, ctrl, info


def _stack(datas):
    return jax.tree.map(lambda *x: jnp.stack(x), *datas)


# --- the shaping function ------------------------------------------------------------------


@pytest.mark.parametrize("kind", rewards.SIGMOIDS)
def test_tolerance_matches_dm_control(kind):
    from dm_control.utils import rewards as dm_rewards

    x = np.linspace(-3.0, 3.0, 601)
    for bounds, margin, value in (((0.0, 0.0), 1.0, 0.1), ((-0.5, 1.0), 2.0, 0.3)):
        want = dm_rewards.tolerance(x, bounds, margin, kind, value)
        got = rewards.tolerance(x, bounds, margin, kind, value)
        np.testing.assert_allclose(np.asarray(got), want, atol=1e-6)
    np.testing.assert_array_equal(
        np.asarray(rewards.tolerance(x, (-1.0, 0.5))), dm_rewards.tolerance(x, (-1.0, 0.5))
    )


def test_tolerance_rejects_bad_arguments():
    with pytest.raises(ValueError, match="sigmoid"):
        rewards.tolerance(1.0, margin=1.0, sigmoid_kind="logistic")
    with pytest.raises(ValueError, match="lower <= upper"):
        rewards.tolerance(1.0, (1.0, 0.0))
    with pytest.raises(ValueError, match="value_at_1"):
        rewards.tolerance(1.0, margin=1.0, value_at_margin=0.0)


# --- the models --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ONE_PER_DOMAIN)
def test_model_dynamics_equal_the_suite(name):
    """Body by body (by name) the masses and inertias, joint by joint the damping, range and
    the joint-space inertia at qpos0, the actuators, the options and the solver's mean-inertia
    scale equal those of dm-control's model after its reset (only what is drawn was changed)."""
    env, dm_env = task_env(name), oracle(name)
    dm_env.reset()
    a, b = env.mj_model, dm_env.physics.model.ptr

    def ids(m, kind, n):
        obj = getattr(mujoco.mjtObj, f"mjOBJ_{kind}")
        return [mujoco.mj_name2id(m, obj, mujoco.mj_id2name(b, obj, i)) for i in range(n)]

    bodies = ids(a, "BODY", b.nbody)[1:]  # the world body has no name in some models
    np.testing.assert_allclose(a.body_mass[bodies], b.body_mass[1:], rtol=1e-12)
    np.testing.assert_allclose(a.body_inertia[bodies], b.body_inertia[1:], rtol=1e-12)
    joints = ids(a, "JOINT", b.njnt)
    np.testing.assert_array_equal(a.jnt_range[joints], b.jnt_range)
    np.testing.assert_allclose(a.dof_damping, b.dof_damping)
    np.testing.assert_allclose(a.dof_M0, b.dof_M0, rtol=1e-10)
    np.testing.assert_array_equal(a.actuator_gear, b.actuator_gear)
    np.testing.assert_array_equal(a.actuator_ctrlrange, b.actuator_ctrlrange)
    assert (a.opt.timestep, a.opt.integrator, a.opt.solver, a.opt.iterations) == (
        b.opt.timestep,
        b.opt.integrator,
        b.opt.solver,
        b.opt.iterations,
    )
    assert a.stat.meaninertia == pytest.approx(b.stat.meaninertia, rel=1e-10)


# --- every task, state by state ------------------------------------------------------------


# Tasks that only change a parameter of a code path another task checks in make test run in
# the slow checks (one MJX compile, 30-60 s, each): reacher_hard (also 1,000 states for its rare
# reward) beside reacher_easy, finger_turn_hard beside finger_turn_easy, walker_run beside
# walker_walk, cartpole_balance_sparse beside cartpole_swingup_sparse; finger_turn_easy beside
# finger_spin; and cheetah_run, whose model compiles longest (75 s cold).
VARIANTS = (
    "reacher_hard",
    "finger_turn_easy",
    "finger_turn_hard",
    "walker_run",
    "cartpole_balance_sparse",
    "cheetah_run",
)


def _slow_variants(tasks):
    return [pytest.param(t, marks=pytest.mark.slow) if t in VARIANTS else t for t in tasks]


@pytest.mark.parametrize("name", _slow_variants(TASKS))
def test_reward_and_observation_match_dm_control(name):
    """200 states (1,000 for reacher_hard; qpos, qvel, ctrl and task state set identically in
    both): reward to 1e-4,
    the flattened observation to 1e-4 (relative for large velocities)."""
    env = task_env(name)
    dm_env = oracle(name)
    physics, task = dm_env.physics, dm_env.task
    # Rare sparse rewards (reacher_hard's 1.5 cm target) need more random states to occur.
    n = 1000 if name == "reacher_hard" else N_STATES
    qpos, qvel, ctrl, info = sample_states(name, n, seed=1)
    datas, want_r, want_o = [], [], []
    for i in range(len(qpos)):
        inf = row(info, i)
        datas.append(mjx.put_data(env.mj_model, env.host_data(qpos[i], qvel[i], inf, ctrl[i])))
        set_oracle(env, physics, qpos[i], qvel[i], ctrl[i], inf)
        want_r.append(task.get_reward(physics))
        want_o.append(np.concatenate([np.ravel(v) for v in task.get_observation(physics).values()]))
    batch = _stack(datas)

    def reward_obs(d, inf):
        obs = env._observation(d, inf)
        return env._reward(d, inf), jnp.concatenate([jnp.ravel(v) for v in obs.values()])

    got_r, got_o = jax.device_get(jax.jit(jax.vmap(reward_obs))(batch, info))
    want_r, want_o = np.asarray(want_r, np.float64), np.stack(want_o)
    np.testing.assert_allclose(got_r, want_r, atol=1e-4, rtol=0)
    np.testing.assert_allclose(got_o, want_o, atol=1e-4, rtol=1e-4)
    assert want_r.std() > 0 or name.endswith("sparse"), "the states do not exercise the reward"


@pytest.mark.parametrize("name", _slow_variants(TASKS))
def test_initial_state_distribution_matches_dm_control(name):
    """Reset observations of 200 episodes each (the reward test's batch, so the compiled
    sampler is shared): the same distribution, coordinate by coordinate."""
    env = task_env(name)
    dm_env = oracle(name, seed=3)
    want = np.stack(
        [
            np.concatenate([np.ravel(v) for v in dm_env.reset().observation.values()])
            for _ in range(N_STATES)
        ]
    )
    keys = jax.random.split(jax.random.PRNGKey(4), N_STATES)
    qpos, qvel, info = jax.device_get(init_fn(name)(keys))
    datas = [
        mjx.put_data(
            env.mj_model,
            env.host_data(qpos[i], qvel[i], row(info, i)),
        )
        for i in range(len(qpos))
    ]

    def obs(d, inf):
        return jnp.concatenate([jnp.ravel(v) for v in env._observation(d, inf).values()])

    got = np.asarray(jax.jit(jax.vmap(obs))(_stack(datas), info))
    assert got.shape == want.shape
    # Two-sample Kolmogorov-Smirnov test per coordinate (fixed seeds, so not flaky; 1e-4 leaves
    # room for the ~20 coordinates of a task).
    got, want = got.astype(np.float32), want.astype(np.float32)  # constants equal in float32
    for j in range(want.shape[1]):
        p = scipy.stats.ks_2samp(got[:, j], want[:, j]).pvalue
        assert p > 1e-4, f"observation coordinate {j}: KS p-value {p:.2g}"


# --- registration and bad input ------------------------------------------------------------


def test_every_task_is_registered_with_the_suite_episode():
    names = envs.registered()
    assert all(f"dmc/{t}" in names for t in TASKS)
    env = envs.make("dmc/cartpole_swingup", action_repeat=2, obs_mode="state", render=False)
    assert env.episode_length == 500 and env.max_episode_return == 1000.0
    assert env.action_space.shape == (1,)
    assert env.observation_space["state"].shape == (5,)


def test_unknown_task_lists_the_valid_ones():
    with pytest.raises(ValueError, match="dmc/cartpole_swingup"):
        envs.make("dmc/cartpole_swing")
    with pytest.raises(ValueError, match=r"valid: .*walker_walk"):
        dmc.make_task("walker_jog")


def test_missing_dm_control_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "dm_control" else real(n, *a)
    )
    with pytest.raises(ImportError, match=r"pvm_mbrl\[dmc\]"):
        dmc.make_task("cartpole_balance", obs_mode="state", render=False)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="split"):
        dmc.make_task("cartpole_balance", split="test")
    with pytest.raises(ValueError, match="camera"):
        dmc.make_task("cartpole_balance", camera="wrist")
    with pytest.raises(ValueError, match="obs_mode"):
        dmc.make_task("cartpole_balance", obs_mode="proprio")
