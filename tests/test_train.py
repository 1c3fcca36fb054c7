"""The on-device training loop: train-ratio arithmetic, DreamerV3's record convention in replay,
a compiled chunk, and the same result on a 2-device mesh as on one device."""

import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from pvm_mbrl import envs
from pvm_mbrl.dreamer import Dreamer, DreamerConfig
from pvm_mbrl.train import TrainConfig, Trainer

EPISODE = 5
SETUP = """
from pvm_mbrl import envs
from pvm_mbrl.dreamer import Dreamer, DreamerConfig, OptimizerConfig
from pvm_mbrl.train import TrainConfig, Trainer

def tiny_env(num_envs=2, pixels=True, **kw):
    mode = dict(obs_mode="pixels") if pixels else dict(obs_mode="state", render=False)
    return envs.make("Reach", image_size=16, camera="front", num_envs=num_envs, episode_length=5,
                     render_shadows=False, **mode, **kw)

def tiny_trainer(mesh=None, num_envs=2, pixels=True, train_ratio=16, fused=True, **loop):
    env = tiny_env(num_envs, pixels, auto_reset=False)
    config = DreamerConfig.preset("micro", mlp_layers=1, bins=15, imag_horizon=3,
                                  optimizer=OptimizerConfig(lr=1e-3, warmup=0))
    agent = Dreamer(config, env.observation_space, env.action_space)
    loop = TrainConfig(num_envs=num_envs, train_ratio=train_ratio, batch_size=2, batch_length=4,
                       replay_capacity=200, chunk_steps=4, prefill=14, fused=fused, **loop)
    return Trainer(env, agent, loop, mesh=mesh)
"""
namespace: dict = {}
exec(SETUP, namespace)
tiny_trainer, tiny_env = namespace["tiny_trainer"], namespace["tiny_env"]


def test_train_ratio_arithmetic():
    c = TrainConfig()  # DreamerV3 defaults: 16 envs, ratio 32, batch 16 x 64
    assert c.updates_per_step == 0.5 and c.cycle == (2, 1) and c.chunk_updates == 32
    c = TrainConfig(num_envs=1, train_ratio=512, chunk_steps=8)
    assert c.cycle == (2, 1) and c.chunk_updates == 4
    c = TrainConfig(num_envs=4, train_ratio=1024, batch_size=4, batch_length=16, chunk_steps=3)
    assert c.cycle == (1, 64) and c.chunk_updates == 192
    with pytest.raises(ValueError, match="multiple of 2"):
        TrainConfig(chunk_steps=63)
    with pytest.raises(ValueError, match="prefill"):
        TrainConfig(prefill=10)
    with pytest.raises(ValueError, match="train_ratio"):
        TrainConfig(train_ratio=0)


@pytest.fixture(scope="module")
def run():
    trainer = tiny_trainer(pixels=False)  # the loop is obs-agnostic; state obs compile fast
    state = trainer.prefill(trainer.init(jax.random.PRNGKey(0)))
    prefilled = jax.device_get(state.replay)
    state, metrics1 = trainer.train_chunk(state)
    state, metrics2 = trainer.train_chunk(state)
    return trainer, prefilled, state, jax.device_get((metrics1, metrics2))


def test_records_follow_dreamer_convention(run):
    trainer, replay, _, _ = run
    data = {k: np.asarray(v) for k, v in replay.data.items()}
    steps = trainer.config.prefill
    first, last, term = data["is_first"][:, :steps], data["is_last"][:, :steps], data["is_terminal"]
    period = EPISODE + 1  # the final observation of every episode is stored, then the reset
    expect_first = np.arange(steps) % period == 0
    expect_last = np.arange(steps) % period == EPISODE
    np.testing.assert_array_equal(first, np.broadcast_to(expect_first, first.shape))
    np.testing.assert_array_equal(last, np.broadcast_to(expect_last, last.shape))
    assert not term.any()  # time limits truncate; nothing terminates
    reward = data["reward"][:, :steps]
    assert np.all(reward[first] == 0.0)  # no reward arrives at a first observation
    assert np.all(reward[~first] > 0.0)  # Reach's reward 1 - tanh(10 d) is positive
    # random prefill actions in [-1, 1]; observations are the env's (targets differ per episode)
    assert np.abs(data["action"][:, :steps]).max() <= 1.0
    target = data["state"][:, :steps, 8:11]
    np.testing.assert_array_equal(target[:, 1 : EPISODE + 1], target[:, :EPISODE])
    assert not np.allclose(target[:, 0], target[:, period])


def test_chunk_updates_and_metrics(run):
    trainer, _, state, (metrics1, metrics) = run
    config = trainer.config
    assert int(state.updates) == 2 * config.chunk_updates
    assert int(state.env_steps) == config.num_envs * (config.prefill + 2 * config.chunk_steps)
    assert int(state.agent.step) == int(state.updates)
    for k, v in metrics.items():
        assert np.isfinite(v), k
    # Episodes end at records 5, 11, 17, ...: the first chunk (steps 14-17) ends one per env,
    # the second (steps 18-21) none.
    assert metrics1["episode/count"] == config.num_envs and metrics["episode/count"] == 0
    assert 0.0 < metrics1["episode/return"] <= EPISODE


@pytest.mark.slow  # make test-slow (CI): cold compile time
def test_replay_context_latents_are_stored_and_written_back(run):
    """Replay context in the loop: the random prefill stores the initial state, the policy
    its posterior after each observation, and each update writes the posterior latents of its
    trained steps back where it sampled them (the online queue first), with the official
    sequence length ``replay_context + batch_length``."""
    from pvm_mbrl import replay as replay_lib

    trainer, prefilled, state, _ = run
    agent, c = trainer.agent, trainer.config
    k = agent.config.replay_context
    assert k == 1 and c.replay_online
    steps = c.prefill
    for name in ("deter", "stoch"):
        assert not np.asarray(prefilled.data[name][:, :steps]).any(), name
    # Just collected (before an update writes over it), the newest record of each env holds
    # the policy's posterior, the carry after that step.
    collected, _ = trainer._collect_cycle(jax.tree.map(lambda x: x.copy(), state))
    last = (int(collected.replay.pos) - 1) % collected.replay.steps_per_env
    for name in ("deter", "stoch"):
        stored = collected.replay.data[name][:, last]
        np.testing.assert_array_equal(stored, collected.carry[name], err_msg=name)

    # One more update by hand, with the draw the trainer makes from the same key.
    _, k_sample, k_train = jax.random.split(state.key, 3)
    length = k + c.batch_length
    rows, times, _ = replay_lib.sample_online(state.replay, k_sample, c.batch_size, length)
    batch = replay_lib.gather(state.replay, rows, times)
    _, _, latents = jax.jit(agent.train_with_latents)(state.agent, batch, k_train)
    assert int(state.replay.online) > 0  # the queue was served
    after = trainer._update_once(jax.tree.map(lambda x: x.copy(), state))[0]
    rows, times = np.asarray(rows), np.asarray(times)[:, k:]
    written = np.zeros(state.replay.data["deter"].shape[:2], int)
    np.add.at(written, (rows[:, None], times), 1)
    once = written[rows[:, None], times] == 1
    got = np.asarray(after.replay.data["deter"])[rows[:, None], times]
    np.testing.assert_allclose(got[once], np.asarray(latents["deter"])[once], rtol=1e-5, atol=1e-6)
    untouched = written == 0
    np.testing.assert_array_equal(
        np.asarray(after.replay.data["deter"])[untouched],
        np.asarray(state.replay.data["deter"])[untouched],
    )
    with pytest.raises(ValueError, match="replay_context \\+ batch_length = 5 steps"):
        Trainer(
            trainer.env,
            agent,
            TrainConfig(
                num_envs=2,
                batch_size=2,
                batch_length=4,
                prefill=4,
                chunk_steps=4,
                replay_capacity=200,
                train_ratio=16,
            ),
        )


@pytest.mark.slow  # make test-slow (CI): cold compile time
def test_prefill_with_the_agents_policy(run):
    """``prefill_policy="agent"`` collects the first steps with the untrained agent, as the
    official code does (no random prefill): its actions are the policy's samples, unclipped in
    replay, and replay holds the policy's latents; the random prefill stores the initial state."""
    trainer = tiny_trainer(pixels=False, prefill_policy="agent")
    init = trainer.init(jax.random.PRNGKey(0))
    state = trainer.prefill(jax.tree.map(lambda x: x.copy(), init))
    steps = trainer.config.prefill
    data = {k: np.asarray(v[:, :steps]) for k, v in state.replay.data.items()}
    assert np.abs(data["deter"]).min(axis=-1).max() > 0  # every record has a posterior
    assert np.abs(data["action"]).max() > 1.0  # unclipped samples (uniform ones stay in [-1, 1])
    np.testing.assert_array_equal(data["deter"][:, -1], state.carry["deter"])
    _, prefilled, _, _ = run  # the random prefill of the same trainer settings
    assert not np.asarray(prefilled.data["deter"][:, :steps]).any()
    with pytest.raises(ValueError, match="prefill_policy must be one of"):
        TrainConfig(prefill_policy="expert")


def test_trainer_leaves_out_autoreset_and_checks_the_batch():
    env = tiny_env(2, pixels=False)  # envs.make's default: auto-reset
    agent = Dreamer(DreamerConfig.preset("size1m"), env.observation_space, env.action_space)
    cfg = TrainConfig(num_envs=2, batch_length=4, prefill=5, chunk_steps=4)
    trainer = Trainer(env, agent, cfg)
    assert isinstance(env, envs.AutoReset) and not isinstance(trainer.env, envs.AutoReset)
    assert trainer.env.num_envs == 2 and trainer.env.unwrapped is env.unwrapped
    env = tiny_env(4, pixels=False, auto_reset=False)
    with pytest.raises(ValueError, match="num_envs=2"):
        Trainer(env, agent, TrainConfig(num_envs=2, batch_length=4, prefill=4, chunk_steps=4))


MESH_SCRIPT = SETUP + textwrap.dedent(
    """
    import jax, numpy as np
    from pvm_mbrl import parallel
    assert jax.device_count() == 2, jax.devices()
    out = {}
    for name, mesh in (("one", None), ("two", parallel.make_mesh())):
        # state obs compile fast; ratio 1: one update after the chunk's 4 steps, so both runs
        # update the same parameters on the same batch
        trainer = tiny_trainer(mesh, num_envs=2, pixels=False, train_ratio=1)
        state = trainer.prefill(trainer.init(jax.random.PRNGKey(0)))
        state, metrics = trainer.train_chunk(state)
        if mesh is not None:
            stored = state.replay.data["state"]
            assert len(stored.sharding.device_set) == 2, stored.sharding
            assert stored.addressable_shards[0].data.shape[0] == 1  # one env per device
        out[name] = jax.device_get((state.agent.params, state.replay.data, metrics))
        out["init"] = jax.device_get(trainer.init(jax.random.PRNGKey(0)).agent.params)
    (p1, r1, m1), (p2, r2, m2) = out["one"], out["two"]
    assert m1["updates"] == m2["updates"] == 1
    np.testing.assert_array_equal(r1["is_first"], r2["is_first"])
    np.testing.assert_allclose(r1["state"], r2["state"], rtol=1e-5, atol=1e-6)
    for k in ("loss/total", "loss/rec", "loss/dyn", "loss/value", "opt/grad_norm", "imag/return"):
        np.testing.assert_allclose(m1[k], m2[k], rtol=1e-4, atol=1e-6, err_msg=k)
    # The optimiser divides each gradient by its RMS, so a parameter whose gradient is at
    # float-noise level may move by up to +-lr in either run: the bound is lr, not a tolerance.
    lr = 1e-3
    moved = 0
    for a, b, a0 in zip(jax.tree.leaves(p1), jax.tree.leaves(p2), jax.tree.leaves(out["init"])):
        assert np.abs(a - b).max() <= lr + 1e-6
        moved += int(np.any(a != a0))
    assert moved > 0
    print("MATCH", m1["loss/total"], m2["loss/total"])
    """
)


@pytest.mark.slow  # a fresh process on 2 host devices compiles everything again (4.5 min cold)
def test_two_device_mesh_matches_one_device(tmp_path):
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": jax.config.jax_compilation_cache_dir or "",
        "PYTHONPATH": str(pathlib.Path(__file__).resolve().parents[1]),
    }
    script = tmp_path / "mesh.py"
    script.write_text(MESH_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "MATCH" in proc.stdout


@pytest.mark.slow  # make test-slow (CI): cold compile time
def test_unfused_chunk_matches_the_fused_one(run):
    """fused=False (one compiled call per cycle and per update, faster on XLA:CPU) takes the
    same steps in the same order as the single compiled chunk."""
    _, _, fused_state, (_, fused_metrics) = run
    trainer = tiny_trainer(pixels=False, fused=False)
    state = trainer.prefill(trainer.init(jax.random.PRNGKey(0)))
    state, _ = trainer.train_chunk(state)
    state, metrics = trainer.train_chunk(state)
    assert int(metrics["updates"]) == int(fused_metrics["updates"])
    assert int(metrics["episode/count"]) == int(fused_metrics["episode/count"])
    for k in ("loss/total", "loss/rec", "episode/return"):
        np.testing.assert_allclose(metrics[k], fused_metrics[k], rtol=1e-3, atol=1e-5, err_msg=k)
    np.testing.assert_array_equal(
        state.replay.data["action"].shape, fused_state.replay.data["action"].shape
    )
    for a, b in zip(jax.tree.leaves(state.agent.params), jax.tree.leaves(fused_state.agent.params)):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
