"""DreamerV3 with a PVM encoder: fine-tuning levels in the optimiser, and feature caching (replay
stores the frozen part's output once per frame) giving the same loss and gradients as the
uncached path. Uses the tiny DINOv2 fixture (28 px, patch 14, 2 blocks)."""

import dataclasses
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from pvm_mbrl import envs
from pvm_mbrl.dreamer import Dreamer, DreamerConfig, OptimizerConfig
from pvm_mbrl.encoders import load_vit
from pvm_mbrl.envs import wrappers
from pvm_mbrl.envs.core import Space
from pvm_mbrl.train import TrainConfig, Trainer

FIXTURE = str(pathlib.Path(__file__).parent / "fixtures" / "vit" / "dinov2")
SIZE = 28
OBS = {
    "pixels": Space((SIZE, SIZE, 3), jnp.uint8, 0, 255),
    "proprio": Space((5,), jnp.float32, -np.inf, np.inf),
}
ACT = Space((3,), jnp.float32, -1.0, 1.0)
B, T = 2, 5


def config(finetune, cache, **kw):
    return DreamerConfig.preset(
        "micro",
        mlp_layers=1,
        bins=15,
        imag_horizon=3,
        encoder="dinov2-small",
        encoder_options={"checkpoint": FIXTURE, "finetune": finetune, "output": "patches"},
        encoder_cache=cache,
        replay_context=0,  # hand-made batches (the loop's stored latents are tested elsewhere)
        optimizer=OptimizerConfig(lr=1e-3, warmup=0),
        **kw,
    )


def make_batch(seed=0):
    rng = np.random.default_rng(seed)
    batch = {
        "pixels": rng.integers(0, 256, (B, T, SIZE, SIZE, 3), dtype=np.uint8),
        "proprio": rng.normal(size=(B, T, 5)).astype(np.float32),
        "action": rng.uniform(-1, 1, (B, T, 3)).astype(np.float32),
        "reward": rng.normal(size=(B, T)).astype(np.float32),
        "is_first": np.zeros((B, T), bool),
        "is_last": np.zeros((B, T), bool),
        "is_terminal": np.zeros((B, T), bool),
    }
    batch["is_last"][0, 2] = batch["is_first"][0, 3] = True
    return {k: jnp.asarray(v) for k, v in batch.items()}


def vit_leaves(params):
    flat = jax.tree_util.tree_flatten_with_path(params["encoder"]["vit"])[0]
    return {jax.tree_util.keystr(p): np.asarray(v) for p, v in flat}


@pytest.mark.parametrize("finetune", ["frozen", pytest.param("partial(1)", marks=pytest.mark.slow)])
def test_cached_and_uncached_give_the_same_loss_and_gradients(finetune):
    plain, cached = (
        Dreamer(config(finetune, False), OBS, ACT),
        Dreamer(config(finetune, True), OBS, ACT),
    )
    state = plain.init(jax.random.PRNGKey(0))
    batch = make_batch()
    cache = jax.jit(cached.encode_cache)(state, batch["pixels"])
    assert cache.shape == (B, T, *cached.cache_shape)
    key = jax.random.PRNGKey(1)

    def grads(agent, batch):
        fn = jax.jit(jax.value_and_grad(agent.loss, has_aux=True))
        (loss, _), g = fn(state.params, state.slow_critic, state.retnorm, batch, key)
        return loss, g

    loss_u, g_u = grads(plain, batch)
    loss_c, g_c = grads(cached, {**batch, cached.cache_key: cache})
    np.testing.assert_allclose(loss_c, loss_u, rtol=1e-5)
    for (path, a), b in zip(
        jax.tree_util.tree_flatten_with_path(g_u)[0], jax.tree.leaves(g_c), strict=True
    ):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6, err_msg=jax.tree_util.keystr(path))
    # The cached path really skips the frozen part: its gradients there are exactly zero.
    vit_grads = vit_leaves(g_c)
    frozen = [k for k in vit_grads if finetune == "frozen" or "[0]" in k or "embed" in k]
    assert frozen and all(not vit_grads[k].any() for k in frozen)
    # ... and the cache is required, with its shape, when the agent is set to use it.
    with pytest.raises(ValueError, match="encoder_cache"):
        cached.train(state, batch, key)


@pytest.mark.slow  # make test-slow (CI): cold compile time
def test_fine_tuning_levels_in_the_optimiser():
    finetune = "partial(1)"
    agent = Dreamer(config(finetune, True, pvm_lr=1e-2), OBS, ACT)
    state = agent.init(jax.random.PRNGKey(0))
    batch = make_batch()
    batch[agent.cache_key] = agent.encode_cache(state, batch["pixels"])
    train = jax.jit(agent.train)
    new, _ = train(state, batch, jax.random.PRNGKey(1))
    new, _ = train(new, batch, jax.random.PRNGKey(2))
    before, after = vit_leaves(state.params), vit_leaves(new.params)
    changed = {k for k in before if not np.array_equal(before[k], after[k])}
    # The last block and the final norm train; everything before stays bit-identical.
    assert changed and all("[1]" in k or "norm" in k for k in changed), changed
    assert any("[1]" in k for k in changed)
    assert not any("[0]" in k or "embed" in k for k in changed)
    head = jax.tree.leaves(state.params["encoder"]["out_norm"])
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(head, jax.tree.leaves(new.params["encoder"]["out_norm"]))
    )
    # Frozen PVM weights carry no optimiser state (moments exist only for trainable leaves).
    plain = Dreamer(config("full", False), OBS, ACT)
    full_state = jax.eval_shape(plain.init, jax.random.PRNGKey(0))
    n_full = len(jax.tree.leaves(full_state.opt_state))
    n_here = len(jax.tree.leaves(state.opt_state))
    assert n_here < n_full


def test_bad_settings_raise():
    cnn = dataclasses.replace(config("frozen", False), encoder="cnn", encoder_options={})
    with pytest.raises(ValueError, match="pvm_lr"):
        Dreamer(dataclasses.replace(cnn, pvm_lr=1e-5), OBS, ACT)
    with pytest.raises(ValueError, match="encoder_cache"):
        Dreamer(dataclasses.replace(cnn, encoder_cache=True), OBS, ACT)
    with pytest.raises(ValueError, match="full"):
        Dreamer(config("full", True), OBS, ACT)


class StatePixels(wrappers.Wrapper):
    """Adds a ``pixels`` image painted from the state vector (no renderer: compiles fast)."""

    def _paint(self, s):
        colour = (jnp.tanh(s.obs["state"][..., :3]) * 127.0 + 128.0).astype(jnp.uint8)
        img = jnp.broadcast_to(colour[..., None, None, :], (*colour.shape[:-1], SIZE, SIZE, 3))
        return s.replace(obs={**s.obs, "pixels": img})

    def reset(self, key):
        return self._paint(self.env.reset(key))

    def step(self, state, action):
        return self._paint(self.env.step(state, action))

    @property
    def observation_space(self):
        return {**self.env.observation_space, "pixels": OBS["pixels"]}


@pytest.mark.slow  # make test-slow (CI): cold compile time
def test_trainer_stores_the_cache_in_replay():
    env = envs.make(
        "Reach", obs_mode="state", render=False, num_envs=2, episode_length=5, auto_reset=False
    )
    env = StatePixels(env)
    cfg = config("frozen", True, obs_keys=("pixels", "proprio"))
    agent = Dreamer(cfg, env.observation_space, env.action_space)
    loop = TrainConfig(
        num_envs=2,
        train_ratio=16,
        batch_size=2,
        batch_length=4,
        replay_capacity=200,
        chunk_steps=4,
        prefill=14,
    )
    trainer = Trainer(env, agent, loop)
    # Prefill runs the same per-step recording as train_chunk (whose cached updates the loss and
    # gradient tests above cover) and compiles much faster.
    key = jax.random.PRNGKey(0)
    state = trainer.init(key)
    # The checkpoint's weights reach the train state intact, as arguments of the compiled init:
    # none of them is baked into the program as a constant.
    vit, _ = load_vit(FIXTURE)
    for (path, want), got in zip(
        jax.tree_util.tree_flatten_with_path(nnx.state(vit))[0],
        jax.tree.leaves(state.agent.params["encoder"]["vit"]),
        strict=True,
    ):
        np.testing.assert_array_equal(got, want, err_msg=jax.tree_util.keystr(path))
    hlo = jax.jit(trainer._init_fn).lower(key, state.agent).as_text()
    constants = set(re.findall(r"constant dense<.*?> : tensor<([0-9x]+)xf32>", hlo))
    shapes = {"x".join(map(str, w.shape)) for w in jax.tree.leaves(nnx.state(vit)) if w.ndim > 1}
    assert not constants & shapes, constants & shapes
    state = trainer.prefill(state)
    data, n = state.replay.data, int(state.replay.pos)
    assert n == 14
    pixels, cache = data["pixels"][:, :n], data[agent.cache_key][:, :n]
    # Every stored frame's features equal a fresh encoding of its stored pixels.
    want = jax.jit(agent.encode_cache)(state.agent, pixels)
    np.testing.assert_allclose(cache, want, rtol=1e-4, atol=1e-5)
    assert np.abs(np.asarray(cache)).sum() > 0
