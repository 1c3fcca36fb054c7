"""`make demo`'s shipped agent (``examples/demo_agent/``): it is the run ``AGENT_RUN`` describes,
small, loads without an env, and (slow) plays cartpole_swingup far better than random actions."""

import jax
import numpy as np
import pytest
from examples_loader import load_example

from pvm_mbrl import envs, evaluate
from pvm_mbrl.experiment import Experiment, load_agent


@pytest.fixture(scope="module")
def demo():
    return load_example("demo", "demo_example")


def test_the_shipped_agent_is_the_documented_run_and_small(demo):
    exp = Experiment.load(demo.AGENT_DIR)
    assert exp == Experiment.of(**demo.AGENT_RUN, steps=exp.steps, logdir=exp.output.logdir)
    assert demo.shipped_steps() <= exp.steps
    size = sum(p.stat().st_size for p in demo.AGENT_DIR.rglob("*") if p.is_file())
    assert size < 8 * 2**20, f"the shipped agent is {size / 2**20:.1f} MiB"


def test_the_shipped_agent_loads_without_an_env(demo, monkeypatch):
    def no_env(*args, **kwargs):
        raise AssertionError("load_agent built an env")

    monkeypatch.setattr(envs, "make", no_env)
    exp, agent, (state,) = load_agent(demo.AGENT_DIR)
    assert agent.obs_space["pixels"].shape == (exp.env.image_size, exp.env.image_size, 3)
    assert int(state.step) > 0


@pytest.mark.slow
def test_the_shipped_agent_beats_random_actions(demo):
    exp, agent, (state,) = load_agent(demo.AGENT_DIR)
    env = envs.make(exp.env.task, num_envs=4, auto_reset=False, **exp.env.kwargs())
    play = evaluate.make_rollout([env], 4, agent)
    key = jax.random.PRNGKey(0)
    learned = float(np.mean(play(state, key, False)[0]["return"]))
    rand = float(np.mean(play(state, key, True)[0]["return"]))
    assert learned > 1.5 * rand, (learned, rand)
