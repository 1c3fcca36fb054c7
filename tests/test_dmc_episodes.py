"""The dmc/ tasks against dm-control over whole episodes: the same starts and the same random
actions in both, returns and trajectories (the state-wise checks are in ``test_dmc.py``)."""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest
from dmc_oracle import oracle, row, set_oracle, task_env

# One task per domain runs whole episodes (the physics is the domain's; tasks differ in reward
# and initial state, which the state-wise checks cover for every task). The four whose episode
# compiles and runs longest (1-2.5 min each on 2 cores) are ``slow`` (``make test-slow``, run
# by CI), and so is finger's 50-step trajectory (``test_finger_trajectory``).
SLOW = pytest.mark.slow
EPISODE_TASKS = (
    "cartpole_swingup",
    "reacher_easy",
    pytest.param("finger_spin", marks=SLOW),
    pytest.param("walker_walk", marks=SLOW),
    pytest.param("cheetah_run", marks=SLOW),
    pytest.param("hopper_stand", marks=SLOW),
    "pendulum_swingup",
    pytest.param("acrobot_swingup", marks=SLOW),
    pytest.param("ball_in_cup_catch", marks=SLOW),
)
# Trajectory error bound (max |qpos| difference over 50 control steps, same actions).
TRAJECTORY_TOL = {"cartpole_swingup": 1e-3, "reacher_easy": 1e-3, "finger_spin": 2e-2}


# --- whole episodes, one task per domain ---------------------------------------------------


@functools.cache
def rollout_fn(name: str):
    """Jitted ``(keys [B], actions [B, T, A]) -> (qpos, reward, observation, start)`` of the
    unwrapped task (one control step per action; time on axis 1)."""
    env = task_env(name)

    def run(key, actions):
        s0 = env.reset(key)

        def body(s, a):
            s = env.step(s, a)
            return s, (s.data.qpos, s.reward, s.obs["proprio"])

        _, (qpos, rew, obs) = jax.lax.scan(body, s0, actions)
        return qpos, rew, obs, (s0.data.qpos, s0.data.qvel, s0.info)

    return jax.jit(jax.vmap(run))


def oracle_rollout(name, start, actions):
    """dm-control's env from the same start (and task state), same actions: qpos, rewards and
    flattened observations."""
    env = task_env(name)
    dm_env = oracle(name)
    dm_env.reset()
    qpos0, qvel0, info = start
    set_oracle(env, dm_env.physics, qpos0, qvel0, np.zeros(env.mj_model.nu), info)
    qs, rs, os = [], [], []
    for a in actions:
        step = dm_env.step(a)
        qs.append(dm_env.physics.data.qpos.copy())
        rs.append(step.reward)
        os.append(np.concatenate([np.ravel(v) for v in step.observation.values()]))
    return np.stack(qs), np.asarray(rs), np.stack(os)


def compare_rollouts(name: str, steps: int, n: int = 4):
    """Our and dm-control's rollouts from the same ``n`` starts with the same uniform random
    actions for ``steps`` control steps: (our returns, their returns, the largest qpos error over
    the first 50 steps); asserts that error within ``TRAJECTORY_TOL`` and the observations close
    for the tasks listed there."""
    env = task_env(name)
    rng = np.random.default_rng(5)
    actions = rng.uniform(-1.0, 1.0, (n, steps, env.mj_model.nu)).astype(np.float32)
    keys = jax.random.split(jax.random.PRNGKey(6), n)
    qpos, rew, obs, start = jax.device_get(rollout_fn(name)(keys, actions))
    ours, theirs, errs = [], [], []
    for i in range(n):
        want_q, want_r, want_o = oracle_rollout(name, row(start, i), actions[i])
        ours.append(rew[i].sum())
        theirs.append(want_r.sum())
        errs.append(np.abs(qpos[i, :50] - want_q[:50]).max())
        if name in TRAJECTORY_TOL:
            assert errs[-1] < TRAJECTORY_TOL[name], (i, errs[-1])
            # Observations after each step, touch sensors included (one substep stale in both).
            np.testing.assert_allclose(obs[i, :50], want_o[:50], atol=0.05, rtol=0.01)
    return np.asarray(ours), np.asarray(theirs), float(max(errs))


def return_tolerance(ours: np.ndarray, theirs: np.ndarray) -> float:
    """How far the two mean returns may lie apart: 5% of dm-control's (at least 1 point) or
    three standard errors of the difference of the two means, whichever is larger. Where
    contacts or a double pendulum make the two simulators' trajectories part within an episode
    (walker, cheetah, hopper, acrobot), the same actions give two independent draws of a random
    policy's return, whose means differ by chance by more than 5% (walker_walk: 35.6 against
    33.8 on one CPU, within 5% on another); a wrong reward or a wrong scale still lies far
    outside three standard errors."""
    n = len(ours)
    se = np.sqrt(ours.var(ddof=1) / n + theirs.var(ddof=1) / n)
    return float(max(0.05 * max(abs(theirs.mean()), 20.0), 3.0 * se))


@pytest.mark.parametrize("name", EPISODE_TASKS)
def test_random_returns_and_trajectories_match_dm_control(name):
    """Same starts, same uniform random actions, whole 1,000-step episodes: the mean return of
    4 episodes within ``return_tolerance`` of dm-control's (at least 1 point: random finger_spin
    earns 1-3 points of 1,000, and contact chaos moves single rewarded steps); on cartpole,
    reacher and finger the first 50 steps' qpos within ``TRAJECTORY_TOL`` and their
    observations close, and there the returns within 5%."""
    ours, theirs, _ = compare_rollouts(name, task_env(name).episode_length)
    tol = 0.05 * max(abs(theirs.mean()), 20.0)
    if name not in TRAJECTORY_TOL:
        tol = return_tolerance(ours, theirs)
    assert abs(ours.mean() - theirs.mean()) <= tol, (ours, theirs, tol)


def test_return_tolerance():
    """Equal returns: the 5% floor; scattered ones: three standard errors of the difference."""
    flat = np.full(4, 30.0)
    assert return_tolerance(flat, flat) == pytest.approx(1.5)
    wide = np.array([20.0, 30.0, 40.0, 50.0])
    se = np.sqrt(2 * wide.var(ddof=1) / 4)
    assert return_tolerance(wide, flat + 100) == pytest.approx(3 * np.sqrt(wide.var(ddof=1) / 4))
    assert return_tolerance(wide, wide) == pytest.approx(3 * se)


@SLOW  # about 2 min cold; finger's rewards and observations are checked state by state
def test_finger_trajectory_matches_dm_control():
    """finger_spin's contacts: 50 control steps from 4 starts, qpos within 2e-2 of C MuJoCo's
    and observations (touch sensors included) close (its whole episodes are ``slow``)."""
    ours, theirs, err = compare_rollouts("finger_spin", 50)
    assert err < TRAJECTORY_TOL["finger_spin"], err
    assert ours.shape == theirs.shape == (4,)
