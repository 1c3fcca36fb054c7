"""The brax adapter: a state-based Reach steps through brax's Env interface, and (marked
``slow``: ``make test-all``) trains a few PPO iterations with finite returns."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from brax.training.agents.ppo import networks as ppo_networks
from brax.training.agents.ppo import train as ppo

from pvm_mbrl.envs.brax_adapter import BraxAdapter, device_put_replicated
from pvm_mbrl.envs.manipulation import Reach


def test_brax_adapter_steps():
    env = BraxAdapter(Reach(obs_mode="state", substeps=4))
    assert env.observation_size == 14 and env.action_size == 4
    state = jax.jit(env.reset)(jax.random.PRNGKey(0))
    state = jax.jit(env.step)(state, jnp.zeros(4))
    assert state.obs.shape == (14,) and np.isfinite(float(state.reward))


@pytest.mark.slow
def test_brax_adapter_ppo_trains_with_finite_returns(monkeypatch):
    monkeypatch.setattr(jax, "device_put_replicated", device_put_replicated, raising=False)
    env = BraxAdapter(Reach(obs_mode="state", substeps=4))

    progress = []
    make_networks = functools.partial(
        ppo_networks.make_ppo_networks,
        policy_hidden_layer_sizes=(16, 16),
        value_hidden_layer_sizes=(16, 16),
    )
    _, params, _metrics = ppo.train(
        environment=env,
        num_timesteps=1200,
        episode_length=20,
        num_envs=4,
        batch_size=4,
        num_minibatches=2,
        unroll_length=10,
        num_updates_per_batch=1,
        num_evals=2,
        num_eval_envs=4,
        network_factory=make_networks,
        seed=0,
        progress_fn=lambda step, m: progress.append((step, m)),
    )
    assert progress, "PPO reported no evaluation"
    returns = [float(m["eval/episode_reward"]) for _, m in progress]
    assert all(np.isfinite(returns)), returns
    # Reach rewards lie in (0, 1] per step, so a 20-step episode returns in (0, 20].
    assert all(0.0 < r <= 20.0 for r in returns), returns
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(params))
