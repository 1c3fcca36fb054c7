"""DreamerV3 agent: size presets, layers, RSSM, losses and updates against direct computations."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from pvm_mbrl.dreamer import actor_critic
from pvm_mbrl.dreamer.agent import Dreamer
from pvm_mbrl.dreamer.config import SIZES, SMALL_SIZES, DreamerConfig
from pvm_mbrl.dreamer.optim import OptimizerConfig
from pvm_mbrl.envs.core import Space
from pvm_mbrl.nn.layers import BlockLinear, linear

OBS = {
    "pixels": Space((16, 16, 3), jnp.uint8, 0, 255),
    "proprio": Space((5,), jnp.float32, -np.inf, np.inf),
}
ACT = Space((3,), jnp.float32, -1.0, 1.0)
B, T = 3, 6


def tiny_config(**kw):
    """The micro preset with fewer layers, bins and imagined steps: compiles in seconds."""
    base = dict(
        mlp_layers=1,
        bins=15,
        imag_horizon=4,
        replay_context=0,  # hand-made batches; replay context has its own tests
        optimizer=OptimizerConfig(lr=1e-3, warmup=0),
    )
    return DreamerConfig.preset("micro", **{**base, **kw})


def make_batch(rng, obs=OBS, act=ACT, b=B, t=T):
    batch = {
        "pixels": rng.integers(0, 256, (b, t, *obs["pixels"].shape), dtype=np.uint8),
        "proprio": rng.normal(size=(b, t, 5)).astype(np.float32),
        "action": rng.uniform(-1, 1, (b, t, act.shape[0])).astype(np.float32),
        "reward": rng.normal(size=(b, t)).astype(np.float32),
        "is_first": np.zeros((b, t), bool),
        "is_last": np.zeros((b, t), bool),
        "is_terminal": np.zeros((b, t), bool),
    }
    batch["is_first"][0, 3] = True
    batch["is_last"][0, 2] = True
    batch["is_terminal"][1, 4] = True
    return {k: jnp.asarray(v) for k, v in batch.items()}


@pytest.fixture(scope="module")
def agent():
    return Dreamer(tiny_config(), OBS, ACT)


@pytest.fixture(scope="module")
def trained(agent):
    """State before and after 3 jitted updates, and the metrics of each."""
    state0 = agent.init(jax.random.PRNGKey(0))
    train = jax.jit(agent.train)
    batch = make_batch(np.random.default_rng(0))
    state, history = state0, []
    for i in range(3):
        state, metrics = train(state, batch, jax.random.PRNGKey(i))
        history.append(jax.device_get(metrics))
    return state0, state, history


# --- presets -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(SIZES))
def test_size_presets_shapes_and_abstract_update(name):
    size = SIZES[name]
    config = DreamerConfig.preset(name)
    assert (config.deter, config.hidden, config.classes, config.depth, config.units) == (
        size.deter,
        size.hidden,
        size.classes,
        size.depth,
        size.units,
    )
    obs = {"pixels": Space((64, 64, 3), jnp.uint8, 0, 255)}
    agent = Dreamer(config, obs, Space((4,), jnp.float32, -1, 1))
    state = jax.eval_shape(agent.init, jax.random.PRNGKey(0))
    params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
    nominal = float(name[4:-1]) * 1e6
    assert 0.5 * nominal < params < 2.0 * nominal, (name, params)
    rssm = state.params["rssm"]
    assert rssm["gru"]["kernel"].shape == (8, size.deter // 8, 3 * size.deter // 8)
    assert state.params["encoder"]["convs"][0]["kernel"].shape == (5, 5, 3, 2 * size.depth)
    length = 64 + config.replay_context  # the official default: one step of context
    batch = {
        "pixels": jax.ShapeDtypeStruct((16, length, 64, 64, 3), jnp.uint8),
        "action": jax.ShapeDtypeStruct((16, length, 4), jnp.float32),
        **{k: jax.ShapeDtypeStruct((16, length), jnp.float32) for k in ("reward",)},
        **{
            k: jax.ShapeDtypeStruct((16, length), jnp.bool_)
            for k in ("is_first", "is_last", "is_terminal")
        },
        "deter": jax.ShapeDtypeStruct((16, length, size.deter), jnp.float32),
        "stoch": jax.ShapeDtypeStruct((16, length, 32, size.classes), jnp.float32),
    }
    new, metrics = jax.eval_shape(agent.train, state, batch, jax.random.PRNGKey(0))
    assert jax.tree.map(lambda x: (x.shape, x.dtype), new.params) == jax.tree.map(
        lambda x: (x.shape, x.dtype), state.params
    )
    for key in ("loss/rec", "loss/dyn", "loss/rep", "loss/policy", "loss/value", "loss/repval"):
        assert metrics[key].shape == () and metrics[key].dtype == jnp.float32


@pytest.mark.parametrize("name", list(SMALL_SIZES))
def test_small_presets_build_an_agent(name):
    """micro, tiny and small: every shape field they set is applied, overrides win, and each
    builds an agent from 64 px images."""
    config = DreamerConfig.preset(name, units=16)
    shape = {k: v for k, v in SMALL_SIZES[name].items() if k != "units"}
    assert {k: getattr(config, k) for k in shape} == shape and config.units == 16
    obs = {"pixels": Space((64, 64, 3), jnp.uint8, 0, 255)}
    state = jax.eval_shape(Dreamer(config, obs, ACT).init, jax.random.PRNGKey(0))
    assert state.params["rssm"]["gru"]["kernel"].shape[0] == config.blocks


def test_unknown_preset_and_bad_config():
    with pytest.raises(ValueError, match="micro, tiny, small, size1m, size12m"):
        DreamerConfig.preset("size7m")
    with pytest.raises(ValueError, match="divisible"):
        DreamerConfig(deter=100, blocks=8)
    with pytest.raises(ValueError, match="loss scales"):
        DreamerConfig(loss_scales={"recon": 1.0})
    config = DreamerConfig.preset("size1m", loss_scales={"dyn": 1.0})
    assert config.loss_scales["dyn"] == 1.0 and config.loss_scales["rep"] == 0.1
    assert DreamerConfig.from_dict(config.to_dict()) == config


# --- layers and RSSM ---------------------------------------------------------------------------


def test_block_linear_is_block_diagonal_dense():
    layer = BlockLinear(12, 8, 4, rngs=nnx.Rngs(0))
    layer.bias[...] = jnp.arange(8.0)
    x = jax.random.normal(jax.random.PRNGKey(1), (5, 12))
    dense = np.zeros((12, 8), np.float32)
    kernel = np.asarray(layer.kernel[...])
    for g in range(4):
        dense[3 * g : 3 * g + 3, 2 * g : 2 * g + 2] = kernel[g]
    np.testing.assert_allclose(
        layer(x), np.asarray(x) @ dense + np.arange(8.0), rtol=1e-5, atol=1e-5
    )
    # The official trunc_normal_in takes the fan-in over the whole input: std = 1 / sqrt(din),
    # not 1 / sqrt(din / blocks) (which would be sqrt(8) = 2.8 times larger here).
    big = BlockLinear(4096, 512, 8, rngs=nnx.Rngs(0))
    assert abs(float(big.kernel[...].std()) * np.sqrt(4096) - 1.0) < 0.02
    assert float(np.abs(big.kernel[...]).max()) <= 2.0 * 1.1369 / np.sqrt(4096)


def test_outscale_scales_the_weights():
    # Official Linear: weights = outscale * trunc_normal_in, so std = outscale / sqrt(fan_in)
    # (the actor's output layer, outscale 0.01, starts at 0.01 / sqrt(din), not 0.1 / sqrt(din)).
    for outscale in (1.0, 0.01):
        layer = linear(1024, 512, rngs=nnx.Rngs(0), outscale=outscale)
        std = float(layer.kernel[...].std()) * np.sqrt(1024) / outscale
        assert abs(std - 1.0) < 0.02, (outscale, std)
    assert np.all(np.asarray(linear(8, 4, rngs=nnx.Rngs(0), outscale=0.0).kernel[...]) == 0)


def test_initial_predictions_are_zero(agent):
    state = agent.init(jax.random.PRNGKey(0))
    nets = agent.nets(state.params)
    feat = jax.random.normal(jax.random.PRNGKey(1), (7, nets.rssm.feature_size))
    assert np.all(np.asarray(nets.reward(feat).mean()) == 0.0)
    assert np.all(np.asarray(nets.critic(feat).mean()) == 0.0)


def test_rssm_resets_at_episode_start(agent):
    state = agent.init(jax.random.PRNGKey(0))
    rssm = agent.nets(state.params).rssm
    nets = agent.nets(state.params)
    obs = make_batch(np.random.default_rng(1))
    embed = nets.embed({k: obs[k][:, 0] for k in ("pixels", "proprio")})
    action = jnp.ones((B, ACT.shape[0]))
    garbage = {
        "deter": jax.random.normal(jax.random.PRNGKey(2), (B, 32)),
        "stoch": jax.nn.one_hot(jnp.ones((B, 4), int), 4),
    }
    first = jnp.ones(B, bool)
    key = jax.random.PRNGKey(3)
    out_a, logits_a = rssm.obs_step(garbage, action, embed, first, key)
    out_b, logits_b = rssm.obs_step(rssm.initial(B), 0 * action, embed, first, key)
    np.testing.assert_array_equal(out_a["deter"], out_b["deter"])
    np.testing.assert_array_equal(logits_a, logits_b)
    out_c, _ = rssm.obs_step(garbage, action, embed, ~first, key)
    assert not np.allclose(out_c["deter"], out_a["deter"])
    # the stochastic state is one-hot per categorical
    np.testing.assert_array_equal(np.asarray(out_a["stoch"]).sum(-1), 1.0)


# --- updates -------------------------------------------------------------------------------------


def test_update_losses_finite_and_params_move(agent, trained):
    state0, state, history = trained
    for metrics in history:
        for k, v in metrics.items():
            assert np.isfinite(v), k
    assert int(state.step) == 3
    moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state0.params, state.params)
    assert all(jax.tree.leaves(moved))
    # KL terms are clipped at the free bits from below
    assert all(m["loss/dyn"] >= 1.0 - 1e-6 and m["loss/rep"] >= 1.0 - 1e-6 for m in history)
    # the reconstruction loss of a fixed batch falls over three updates at lr 1e-3
    assert history[-1]["loss/rec"] < history[0]["loss/rec"]


def test_slow_critic_is_ema_of_critic(agent, trained):
    state0, state, _ = trained
    for a, b in zip(jax.tree.leaves(state0.slow_critic), jax.tree.leaves(state0.params["critic"])):
        np.testing.assert_array_equal(a, b)  # starts as a copy
    batch = make_batch(np.random.default_rng(0))
    new, _ = jax.jit(agent.train)(state, batch, jax.random.PRNGKey(9))
    rate = agent.config.slow_rate
    want = jax.tree.map(
        lambda s, p: (1 - rate) * s + rate * p, state.slow_critic, new.params["critic"]
    )
    for a, b in zip(jax.tree.leaves(new.slow_critic), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    lag = [
        float(jnp.abs(s - p).max())
        for s, p in zip(jax.tree.leaves(new.slow_critic), jax.tree.leaves(new.params["critic"]))
    ]
    assert max(lag) > 0


def test_replay_value_loss_against_loop():
    rng = np.random.default_rng(0)
    b, k, bins = 2, 7, 15
    config = tiny_config(bins=bins)

    class Const:
        """A critic whose prediction is given per position (two-hot head stand-in)."""

        def __init__(self, values):
            from pvm_mbrl.nn import TwoHotSymlog, symexp_bins, two_hot

            probs = two_hot(jnp.asarray(values), symexp_bins(bins))
            self.dist = TwoHotSymlog(jnp.log(probs + 1e-8), symexp_bins(bins))

        def __call__(self, feat):
            return self.dist

    values = rng.normal(size=(b, k)).astype(np.float32)
    batch = {
        "reward": rng.normal(size=(b, k)).astype(np.float32),
        "is_last": np.zeros((b, k), bool),
        "is_terminal": np.zeros((b, k), bool),
    }
    batch["is_last"][0, 3] = True
    batch["is_terminal"][1, 5] = True
    boot = rng.normal(size=(b, k)).astype(np.float32)
    loss = actor_critic.replay_value_loss(
        Const(values),
        Const(values),
        None,
        {n: jnp.asarray(v) for n, v in batch.items()},
        jnp.asarray(boot),
        dataclasses.replace(config, slowreg=0.0),
    )
    # direct loop of the official formula
    disc, lam = config.discount, config.lam
    want = np.zeros((b, k - 1))
    for i in range(b):
        ret = boot[i, -1]
        rets = [0.0] * (k - 1)
        for t in reversed(range(k - 1)):
            live = (1 - batch["is_terminal"][i, t + 1]) * disc
            cont = (1 - batch["is_last"][i, t + 1]) * lam
            ret = batch["reward"][i, t + 1] + live * ((1 - cont) * boot[i, t + 1] + cont * ret)
            rets[t] = ret
        want[i] = rets
    dist = Const(values).dist
    nll = -np.asarray(dist.log_prob(jnp.asarray(np.concatenate([want, 0 * want[:, :1]], 1))))
    weight = 1.0 - batch["is_last"]
    np.testing.assert_allclose(loss, (weight * nll)[:, :-1], rtol=1e-4, atol=1e-4)


# --- policy and input checks -------------------------------------------------------------------


def test_policy_modes_and_carry(agent, trained):
    _, state, _ = trained
    batch = make_batch(np.random.default_rng(2))
    obs = {k: batch[k][:, 0] for k in ("pixels", "proprio")}
    obs["is_first"] = jnp.ones(B, bool)
    policy = jax.jit(agent.policy, static_argnames="mode")
    carry = agent.initial_carry(B)
    a1, c1 = policy(state, carry, obs, jax.random.PRNGKey(0), mode="eval")
    a2, _ = policy(state, carry, obs, jax.random.PRNGKey(1), mode="eval")
    a3, c3 = policy(state, carry, obs, jax.random.PRNGKey(1), mode="explore")
    assert a1.shape == (B, 3) and np.all(np.abs(np.asarray(a3)) <= 1.0)
    np.testing.assert_array_equal(c1["action"], a1)
    # The env gets the clipped sample; the model (and replay) keep the sample itself.
    np.testing.assert_array_equal(a3, np.clip(c3["action"], -1.0, 1.0))
    assert not np.allclose(a2, a3)
    assert c1["deter"].shape == (B, 32) and c1["stoch"].shape == (B, 4, 4)
    with pytest.raises(ValueError, match="mode"):
        agent.policy(state, carry, obs, jax.random.PRNGKey(0), mode="greedy")


@pytest.mark.slow  # make test-slow (CI): cold compile time
def test_discrete_actions():
    agent = Dreamer(tiny_config(), OBS, Space((), jnp.int32, 0, 4))
    state = agent.init(jax.random.PRNGKey(0))
    batch = make_batch(np.random.default_rng(0), act=Space((5,), jnp.float32, 0, 1))
    idx = jax.random.randint(jax.random.PRNGKey(0), (B, T), 0, 5)
    batch["action"] = jax.nn.one_hot(idx, 5)
    new, metrics = jax.jit(agent.train)(state, batch, jax.random.PRNGKey(1))
    assert np.isfinite(float(metrics["loss/total"]))
    obs = {k: batch[k][:, 0] for k in ("pixels", "proprio")} | {"is_first": jnp.ones(B, bool)}
    action, carry = agent.policy(new, agent.initial_carry(B), obs, jax.random.PRNGKey(2))
    assert action.dtype == jnp.int32 and np.all((action >= 0) & (action < 5))
    np.testing.assert_array_equal(carry["action"], jax.nn.one_hot(action, 5))


def test_bad_inputs_raise(agent):
    state = jax.eval_shape(agent.init, jax.random.PRNGKey(0))
    batch = make_batch(np.random.default_rng(0))
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="pixels"):
        agent.train(state, {**batch, "pixels": batch["pixels"][..., :2]}, key)
    with pytest.raises(ValueError, match="uint8"):
        agent.train(state, {**batch, "pixels": batch["pixels"].astype(jnp.float32)}, key)
    with pytest.raises(ValueError, match="reward"):
        agent.train(state, {k: v for k, v in batch.items() if k != "reward"}, key)
    with pytest.raises(ValueError, match="action"):
        agent.train(state, {**batch, "action": batch["action"][..., :2]}, key)
    with pytest.raises(ValueError, match="is_first"):
        obs = {k: batch[k][:, 0] for k in ("pixels", "proprio")}
        agent.policy(state, agent.initial_carry(B), obs, key)
    with pytest.raises(ValueError, match="obs_keys"):
        Dreamer(tiny_config(obs_keys=("depth",)), OBS, ACT)
    with pytest.raises(ValueError, match="uint8"):
        Dreamer(tiny_config(), {"pixels": Space((8, 8, 3), jnp.float32, 0, 1)}, ACT)


def test_policy_rejects_carry_of_another_batch(agent):
    state = jax.eval_shape(agent.init, jax.random.PRNGKey(0))
    batch = make_batch(np.random.default_rng(0))
    obs = {k: batch[k][:, 0] for k in ("pixels", "proprio")} | {"is_first": jnp.ones(B, bool)}
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match=rf"obs batch of {B}.*carry batch {B + 1}"):
        agent.policy(state, agent.initial_carry(B + 1), obs, key)
    with pytest.raises(ValueError, match=rf"obs batch of {B}.*carry batch {B + 1}"):
        jax.jit(agent.policy)(state, agent.initial_carry(B + 1), obs, key)  # static under jit
    carry = agent.initial_carry(B)
    with pytest.raises(ValueError, match="deter"):
        agent.policy(state, {k: v for k, v in carry.items() if k != "deter"}, obs, key)
    for bad in (2.5, "3", True, 0):
        with pytest.raises(ValueError, match=f"batch must be an integer >= 1, got {bad!r}"):
            agent.initial_carry(bad)
    assert agent.initial_carry(np.int64(2))["deter"].shape == (2, 32)


@pytest.mark.slow  # make test-slow (CI): cold compile time
def test_bfloat16_losses_and_gradients_match_float32():
    """bfloat16 compute (float32 parameters, as the official DreamerV3 runs on accelerators)
    keeps every loss within 2% (or 0.02) of float32's and the gradient's direction."""
    a32 = Dreamer(tiny_config(), OBS, ACT)
    a16 = Dreamer(tiny_config(compute_dtype="bfloat16"), OBS, ACT)
    state = a32.init(jax.random.PRNGKey(0))
    batch = make_batch(np.random.default_rng(0), b=8, t=16)
    trainable, rest = nnx.split_state(state.params, nnx.Param, ...)

    def losses_and_grads(agent):
        def loss(tr):
            params = nnx.merge_state(tr, rest)
            key = jax.random.PRNGKey(3)
            return agent.loss(params, state.slow_critic, state.retnorm, batch, key)

        (_, (_, metrics, _)), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(trainable)
        flat = jnp.concatenate([g.ravel().astype(jnp.float32) for g in jax.tree.leaves(grads)])
        return {k: float(v) for k, v in metrics.items() if k.startswith("loss/")}, flat

    (m32, g32), (m16, g16) = losses_and_grads(a32), losses_and_grads(a16)
    assert set(m32) == set(m16) and len(m32) >= 8
    for k in m32:
        assert abs(m16[k] - m32[k]) <= max(0.02 * abs(m32[k]), 0.02), (k, m32[k], m16[k])
    cosine = float(g32 @ g16 / (jnp.linalg.norm(g32) * jnp.linalg.norm(g16)))
    assert cosine > 0.99 and abs(float(jnp.linalg.norm(g16) / jnp.linalg.norm(g32)) - 1) < 0.05


# --- replay context ------------------------------------------------------------------------------


def context_batch(rng, agent, k=1, t=T):
    """``make_batch`` of ``k + t`` steps with random stored latents (one-hot ``stoch``)."""
    c = agent.config
    batch = make_batch(rng, t=k + t)
    batch["deter"] = jnp.asarray(rng.normal(size=(B, k + t, c.deter)).astype(np.float32))
    idx = rng.integers(0, c.classes, (B, k + t, c.stoch))
    batch["stoch"] = jax.nn.one_hot(idx, c.classes, dtype=jnp.float32)
    return batch


@pytest.mark.slow  # make test-slow (CI): cold compile time
def test_replay_context_starts_from_the_stored_latent():
    """K=1: the posterior starts from the latent stored at step 0 with the action taken there,
    and the loss covers steps 1.. only (checked against RSSM.observe run by hand); where step 1
    begins an episode the stored latent is dropped and K=1 equals K=0 on steps 1.."""
    ctx = Dreamer(tiny_config(replay_context=1), OBS, ACT)
    plain = Dreamer(tiny_config(), OBS, ACT)
    state = ctx.init(jax.random.PRNGKey(0))
    batch = context_batch(np.random.default_rng(5), ctx)
    key = jax.random.PRNGKey(4)
    train_ctx = jax.jit(ctx.train_with_latents)
    _, _, lat = train_ctx(state, batch, key)
    assert lat["deter"].shape == (B, T, 32) and lat["stoch"].shape == (B, T, 4, 4)

    # By hand: observe steps 1.. from the stored latent of step 0 (same key as the loss uses).
    nets = ctx.nets(state.params)
    k_obs, _ = jax.random.split(key)
    rest = {n: v[:, 1:] for n, v in batch.items()}
    prev = jnp.concatenate([batch["action"][:, :1], rest["action"][:, :-1]], 1)
    start = {"deter": batch["deter"][:, 0], "stoch": batch["stoch"][:, 0]}
    embed = nets.embed({n: rest[n] for n in ("pixels", "proprio")})
    _, post, _ = nets.rssm.observe(start, prev, embed, rest["is_first"], k_obs)
    np.testing.assert_allclose(lat["deter"], post["deter"], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(lat["stoch"], post["stoch"])

    # The plain agent on steps 1.. starts from zeros: a different posterior...
    _, m_plain, lat_plain = jax.jit(plain.train_with_latents)(state, rest, key)
    assert float(jnp.abs(lat_plain["deter"][:, 0] - lat["deter"][:, 0]).max()) > 1e-3
    # ... unless step 1 starts an episode, which resets whatever was stored.
    reset = {**batch, "is_first": batch["is_first"].at[:, 1].set(True)}
    _, m_reset, lat_reset = train_ctx(state, reset, key)
    _, m_plain, lat_plain = jax.jit(plain.train_with_latents)(
        state, {n: v[:, 1:] for n, v in reset.items()}, key
    )
    np.testing.assert_allclose(lat_reset["deter"], lat_plain["deter"], rtol=1e-5, atol=1e-6)
    for name in ("loss/rec", "loss/dyn", "loss/rew", "loss/policy", "loss/total"):
        np.testing.assert_allclose(m_reset[name], m_plain[name], rtol=1e-5, err_msg=name)


def test_replay_context_batch_checks():
    ctx = Dreamer(tiny_config(replay_context=1), OBS, ACT)
    state = jax.eval_shape(ctx.init, jax.random.PRNGKey(0))
    batch = context_batch(np.random.default_rng(0), ctx)
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match=r"'deter' .*replay_context=1 needs the latents"):
        ctx.train(state, {n: v for n, v in batch.items() if n != "deter"}, key)
    with pytest.raises(ValueError, match=r"batch\['stoch'\] must have shape \(3, 7, 4, 4\)"):
        ctx.train(state, {**batch, "stoch": batch["stoch"][..., :3]}, key)
    with pytest.raises(ValueError, match="more than replay_context=1 steps"):
        ctx.train(state, {n: v[:, :1] for n, v in batch.items()}, key)
    for bad in (-1, 1.0, True):
        with pytest.raises(ValueError, match="replay_context must be an int >= 0"):
            tiny_config(replay_context=bad)
