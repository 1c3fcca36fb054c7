"""TD-MPC2 piece by piece against the paper's formulas and the official code's: SimNorm, two-hot
regression in symlog space, the policy prior's entropy, the ensemble's two-member targets, the
planner (converges on a problem with a known optimum; with the true model it solves a control
task), the horizon-weighted losses, the target update and the agent's interface."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from pvm_mbrl.envs.core import Space
from pvm_mbrl.nn import symlog
from pvm_mbrl.tdmpc2 import MODEL_SIZES, TDMPC2, TDMPC2Config, discount, heads, planner
from pvm_mbrl.tdmpc2.networks import simnorm

OBS = {"state": Space((5,), jnp.float32, -np.inf, np.inf)}
ACT = Space((2,), jnp.float32, -1.0, 1.0)
TINY = dict(
    enc_dim=32, mlp_dim=32, latent_dim=16, num_q=3, simnorm_dim=4,
    num_samples=32, num_elites=4, num_pi_trajs=4, iterations=2, num_bins=21,
)  # fmt: skip


@pytest.fixture(scope="module")
def agent():
    a = TDMPC2(TDMPC2Config(**TINY), OBS, ACT, episode_length=500)
    return a, a.init(jax.random.PRNGKey(0))


def _batch(b=6, t=4, key=1):
    ks = jax.random.split(jax.random.PRNGKey(key), 3)
    return {
        "state": jax.random.normal(ks[0], (b, t, 5)),
        "action": jax.random.uniform(ks[1], (b, t, 2), minval=-1, maxval=1),
        "reward": jax.random.uniform(ks[2], (b, t)),
        "is_first": jnp.zeros((b, t), bool).at[0, 2].set(True).at[1, 1].set(True),
        "is_last": jnp.zeros((b, t), bool),
        "is_terminal": jnp.zeros((b, t), bool),
    }


def test_simnorm_is_a_softmax_per_group():
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 16)) * 3
    y = np.asarray(simnorm(x, 4)).reshape(3, 4, 4)
    e = np.exp(np.asarray(x).reshape(3, 4, 4))
    np.testing.assert_allclose(y, e / e.sum(-1, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-6)


def test_two_hot_regression_in_symlog_space():
    c = TDMPC2Config(num_bins=101)  # bins 0.2 apart in symlog space over [-10, 10]
    y = 3.0  # symlog = ln 4 = 1.3863: between bins 56 (1.2) and 57 (1.4), 93.1% on 57
    logits = jnp.log(jnp.zeros(101).at[56].set(1 - 0.93147).at[57].set(0.93147) + 1e-30)
    assert float(heads.decode(logits, c)) == pytest.approx(y, rel=1e-4)
    loss = heads.soft_ce(logits, jnp.float32(y), c)
    other = heads.soft_ce(logits, jnp.float32(-3.0), c)
    assert float(loss) == pytest.approx(
        -(0.06853 * math.log(0.06853) + 0.93147 * math.log(0.93147)), abs=2e-3
    )
    assert float(other) > 10 * float(loss)
    # Targets beyond the range clamp to the edge bin: symexp(10) is the largest prediction.
    big = jnp.zeros(101).at[-1].set(50.0)
    assert float(heads.decode(big, c)) == pytest.approx(math.expm1(10.0), rel=1e-4)
    assert float(heads.soft_ce(big, jnp.float32(1e9), c)) < 1e-6
    assert float(symlog(jnp.float32(y))) == pytest.approx(math.log(4.0))


def test_policy_prior_squash_and_scaled_entropy():
    c = TDMPC2Config()
    raw = jnp.array([[0.3, -0.5, 0.2, -1.0]])  # mean [0.3, -0.5], raw log-std [0.2, -1.0]
    key = jax.random.PRNGKey(3)
    action, mean, ent = heads.sample_policy(raw, key, c)
    eps = np.asarray(jax.random.normal(key, (1, 2)))
    log_std = -10 + 0.5 * 12 * (np.tanh([0.2, -1.0]) + 1)
    np.testing.assert_allclose(action[0], np.tanh([0.3, -0.5] + eps[0] * np.exp(log_std)), 1e-5)
    np.testing.assert_allclose(mean[0], np.tanh([0.3, -0.5]), 1e-6)
    log_prob = np.sum(-0.5 * eps[0] ** 2 - log_std - 0.5 * np.log(2 * np.pi))
    assert float(ent[0]) == pytest.approx(-log_prob * 2, rel=1e-5)


def test_q_pair_uses_two_distinct_random_members():
    values = jnp.arange(5.0)[:, None] * jnp.ones((5, 3))  # member i predicts i
    seen_min, seen_mean = set(), set()
    for i in range(200):
        k = jax.random.PRNGKey(i)
        lo, avg = heads.q_pair(values, k, "min"), heads.q_pair(values, k, "mean")
        a, b = float(lo[0]), 2 * float(avg[0]) - float(lo[0])  # the pair, a < b
        assert a < b and a.is_integer() and b.is_integer()
        seen_min.add(a)
        seen_mean.add(float(avg[0]))
    assert seen_min == {0.0, 1.0, 2.0, 3.0}  # every member but the largest can be the min
    assert len(seen_mean) == 7  # the pair sums 1..7, each pair of distinct members
    with pytest.raises(ValueError, match="reduce"):
        heads.q_pair(values, jax.random.PRNGKey(0), "max")


class _PointMass:
    """A known system for the planner: z' = z + 0.5 a (per dimension), reward -|z'|^2, value 0."""

    def next(self, z, a):
        return z + 0.5 * a

    def reward(self, z, a):
        return -jnp.sum((z + 0.5 * a) ** 2, -1)

    def policy(self, z, key):
        return jax.random.uniform(key, z.shape, minval=-1, maxval=1)

    def value(self, z, a, key):
        return jnp.zeros(z.shape[:-1])


def test_planner_converges_to_the_known_optimum():
    # From z = 0.6 the best 3-step plan moves to 0 at once: a0 = -1.2 clipped to -1, then
    # a1 = -0.4 (z = 0.1 -> -0.1 is worse than 0.1 -> 0: a1 = -0.2), a2 = 0.
    c = TDMPC2Config(num_samples=512, num_elites=32, num_pi_trajs=0, iterations=8, min_std=0.01)
    z = jnp.array([0.6])
    _, mean = planner.plan(
        _PointMass(), c, z, jnp.zeros((3, 1)), True, jax.random.PRNGKey(0), False, 0.99
    )
    np.testing.assert_allclose(np.asarray(mean)[:, 0], [-1.0, -0.2, 0.0], atol=0.06)


def test_planner_with_the_true_model_solves_a_control_task():
    c = TDMPC2Config()  # the official planner settings
    model = _PointMass()
    step = jax.jit(
        lambda z, m, first, k, explore: planner.plan(model, c, z, m, first, k, explore, 0.99),
        static_argnums=4,
    )
    z0 = jnp.array([2.5, -1.5])
    for explore, tol in ((False, 0.15), (True, 0.4)):
        z, mean = z0, jnp.zeros((3, 2))
        for t in range(12):
            a, mean = step(z, mean, t == 0, jax.random.PRNGKey(t), explore)
            assert a.shape == (2,) and np.all(np.abs(np.asarray(a)) <= 1.0)
            z = model.next(z, a)
        assert float(jnp.linalg.norm(z)) < tol, explore  # 2.9 away at first, <= 0.7 per step
    # Warm start: the last plan shifted by a step, or zeros on an episode's first step.
    m = jnp.arange(6.0).reshape(3, 2)
    np.testing.assert_array_equal(planner.warm_start(m, False), [[2, 3], [4, 5], [0, 0]])
    np.testing.assert_array_equal(planner.warm_start(m, True), np.zeros((3, 2)))


def test_losses_are_the_horizon_weighted_formulas(agent):
    ag, st = agent
    c = ag.config
    batch = _batch()
    _, (_zs, valid, m) = ag._model_loss(st.params, st, batch, jax.random.PRNGKey(5))
    wm = ag.model(st)
    obs = jnp.swapaxes(batch["state"], 0, 1)
    act = jnp.swapaxes(batch["action"], 0, 1)
    z = wm.encode({"state": obs[0]})
    expect, rho = 0.0, [c.rho**t for t in range(3)]
    first = np.asarray(batch["is_first"])
    for t in range(3):
        z = wm.next(z, act[t])
        alive = 1.0 - first[:, 1 : t + 2].any(1)  # no episode start up to step t + 1
        err = jnp.mean((z - wm.encode({"state": obs[t + 1]})) ** 2, -1)
        expect += rho[t] * float(jnp.mean(alive * err))
        np.testing.assert_array_equal(valid[t], alive)
    assert float(m["loss/consistency"]) == pytest.approx(expect / 3, rel=1e-4)
    # Fresh heads predict 0 (zero output weights): reward loss is the cross-entropy of a
    # uniform prediction, log(num_bins), on every valid term.
    mask = np.asarray(valid)
    uniform = sum(rho[t] * mask[t].mean() for t in range(3)) / 3 * math.log(c.num_bins)
    assert float(m["loss/reward"]) == pytest.approx(uniform, rel=1e-4)
    assert float(m["loss/value"]) == pytest.approx(uniform, rel=1e-4)


def test_update_moves_targets_by_polyak_and_keeps_shapes(agent):
    ag, st = agent
    new, metrics = jax.jit(ag.train)(st, _batch(), jax.random.PRNGKey(2))
    for old_t, new_q, new_t in zip(
        jax.tree.leaves(st.target_q),
        jax.tree.leaves(new.params["qs"]),
        jax.tree.leaves(new.target_q),
    ):
        np.testing.assert_allclose(
            new_t, old_t + ag.config.tau * (new_q - old_t), rtol=1e-5, atol=1e-7
        )
    assert jax.tree.structure(new) == jax.tree.structure(st)
    assert int(new.step) == 1 and all(np.isfinite(float(v)) for v in metrics.values())
    assert float(new.scale) == pytest.approx(1.0)  # fresh Qs: range < 1, the scale stays at 1
    with pytest.raises(ValueError, match="horizon"):
        ag.train(st, _batch(t=5), jax.random.PRNGKey(0))


def test_policy_interface_plans_and_warm_starts(agent):
    ag, st = agent
    carry = ag.initial_carry(3)
    obs = {"state": jnp.ones((3, 5)), "is_first": jnp.array([True, False, True])}
    act, new = jax.jit(ag.policy, static_argnums=4)(st, carry, obs, jax.random.PRNGKey(0), "eval")
    assert act.shape == (3, 2) and new["mean"].shape == (3, 3, 2)
    np.testing.assert_array_equal(new["action"], act)
    assert np.all(np.abs(np.asarray(act)) <= 1.0)
    with pytest.raises(ValueError, match="mode"):
        ag.policy(st, carry, obs, jax.random.PRNGKey(0), "greedy")
    with pytest.raises(ValueError, match="obs lacks"):
        ag.policy(st, carry, {"state": obs["state"]}, jax.random.PRNGKey(0))


def test_presets_discount_and_bad_config():
    assert discount(500) == pytest.approx(0.99)
    assert discount(10) == 0.95 and discount(10_000) == 0.995
    for size, lo, hi in ((1, 0.8e6, 1.5e6), (5, 4.0e6, 6.0e6), (19, 17e6, 22e6)):
        c = TDMPC2Config.sized(size)
        ag = TDMPC2(
            c,
            {"state": Space((24,), jnp.float32, -np.inf, np.inf)},
            Space((6,), jnp.float32, -1, 1),
            episode_length=500,
        )
        model = nnx.eval_shape(lambda ag=ag: ag._build(jax.random.PRNGKey(0)))
        n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
        assert lo < n < hi, (size, n)
    assert set(MODEL_SIZES) == {1, 5, 19, 48, 317}
    for bad, match in (
        (dict(num_q=1), "num_q"),
        (dict(latent_dim=30), "simnorm_dim"),
        (dict(num_pi_trajs=600), "num_pi_trajs"),
        (dict(min_std=3.0), "min_std"),
        (dict(discount=1.0), "discount"),
    ):
        with pytest.raises(ValueError, match=match):
            TDMPC2Config(**bad)
    with pytest.raises(ValueError, match="size"):
        TDMPC2Config.sized(7)
    with pytest.raises(ValueError, match="episode_length"):
        TDMPC2(TDMPC2Config(), OBS, ACT)
    with pytest.raises(ValueError, match="continuous"):
        TDMPC2(TDMPC2Config(), OBS, Space((), jnp.int32, 0, 3), episode_length=500)
