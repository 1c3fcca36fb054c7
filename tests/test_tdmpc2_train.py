"""TD-MPC2 through the library's trainer on a Control Suite task from its state vector (seeding,
pretraining, planning in the compiled loop, the official one update per env step, the agent
state saved and restored by the checkpoints) and as an ``Experiment`` from pixels (slow: each
compiles the planner into the loop)."""

import jax
import numpy as np
import pytest

from pvm_mbrl import checkpoint, envs, evaluate
from pvm_mbrl.experiment import Experiment, build, load_agent, run
from pvm_mbrl.tdmpc2 import TDMPC2, TDMPC2Config
from pvm_mbrl.train import TrainConfig, Trainer

pytestmark = pytest.mark.slow  # the planner inside the loop: about a minute of compiles

TINY = dict(
    obs_keys=("state",), enc_dim=32, mlp_dim=32, latent_dim=16, num_q=2, simnorm_dim=4,
    num_samples=16, num_elites=4, num_pi_trajs=2, iterations=2, num_bins=21,
)  # fmt: skip


def test_tdmpc2_trains_in_the_loop_and_checkpoints(tmp_path):
    n = 2
    env = envs.make(
        "dmc/cartpole_swingup", obs_mode="state", render=False, num_envs=n, action_repeat=2,
        episode_length=20, auto_reset=False,
    )  # fmt: skip
    agent = TDMPC2(TDMPC2Config(**TINY), env.observation_space, env.action_space, 20)
    config = TrainConfig(
        num_envs=n, batch_size=8, batch_length=4, train_ratio=32, replay_capacity=n * 200,
        chunk_steps=10, prefill=12, fused=False,
    )  # fmt: skip
    assert config.cycle == (1, 2)  # one update per env step: 2 envs, 32 / (8 x 4) x 2
    trainer = Trainer(env, agent, config)
    state = trainer.pretrain(trainer.prefill(trainer.init(jax.random.PRNGKey(0))), 5)
    assert int(state.updates) == 5 and int(state.env_steps) == 24
    first = jax.device_get(state.agent.params)  # the chunk donates the state
    state, m = trainer.train_chunk(state)
    assert int(m["updates"]) == 25 and int(m["env_steps"]) == 44
    assert all(np.isfinite(float(v)) for v in jax.device_get(m).values())
    assert int(m["episode/count"]) >= 1  # 20-step episodes end inside the loop
    moved = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), first, state.agent.params)
    assert max(jax.tree.leaves(moved)) > 0

    saver = checkpoint.Checkpointer(tmp_path / "ckpt", save_replay=False)
    saver.save(int(state.updates), state, {"agent": "tdmpc2"})
    saver.close()
    template = jax.eval_shape(agent.init, jax.random.PRNGKey(0))
    restored = checkpoint.restore_agent(tmp_path / "ckpt", template)
    for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state.agent), strict=True):
        np.testing.assert_array_equal(a, b)

    # The evaluation's rollout plays the restored agent's eval policy (the planner, no noise).
    play = evaluate.make_rollout([env], n, agent)
    (out,) = jax.device_get(play(restored, jax.random.PRNGKey(1), False))
    assert out["return"].shape == (n,) and np.all(np.isfinite(out["return"]))


def test_an_experiment_trains_resumes_and_evaluates_tdmpc2(tmp_path):
    """``Experiment(algorithm="tdmpc2")`` end to end on 16 px Reach pixels with two seeds:
    the run, its logs and checkpoints, ``load_agent`` and the evaluation across shifts."""
    exp = Experiment.of(
        task="Reach", image_size=16, algorithm="tdmpc2", tdmpc2_size=1, num_envs=2,
        batch_size=4, batch_length=4, replay_capacity=64, prefill=8, chunk_steps=4,
        train_ratio=16, episode_length=6, log_every=8, checkpoint_every=8, video_every=8,
        steps=24, seeds=(0, 1), logdir=str(tmp_path / "run"),
    )  # fmt: skip
    _, agent, _ = build(exp)
    assert isinstance(agent, TDMPC2) and agent.discount == 0.95  # 6-step episodes
    run(exp, progress=False)
    loaded, agent, states = load_agent(tmp_path / "run")
    assert loaded == exp and isinstance(agent, TDMPC2) and len(states) == 2
    assert int(states[0].step) > 0
    results = evaluate.evaluate(agent, states, exp.env.task, exp.env.kwargs(), ["id", "strong"], 2)
    assert results.shifts == ("id", "strong") and results.returns.shape == (2, 2, 2)
    assert np.isfinite(results.returns).all()
    with pytest.raises(ValueError, match="TD-MPC2 takes"):
        Experiment.of(algorithm="tdmpc2", encoder="dinov2-s14", finetune="frozen")
    with pytest.raises(ValueError, match="algorithm"):
        Experiment.of(algorithm="ppo")
