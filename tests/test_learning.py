"""Learning: the agent reaches on Reach from the state vector within a CPU budget.

Budget: a small agent (deter 128, hidden 32, stoch 8 x 8, units 64), lr 3e-4, train ratio 64,
16 envs, batch 16 x 16: 22 chunks of 25 vectorised steps (8,800 env steps after a 800-step
random prefill) and 2,200 updates (``make test-learning``; CI runs it after ``make test``, which
leaves it out to stay under 15 minutes). Criterion, on 64 evaluation episodes of the actor's
mode: mean return at least 1.5x the random policy's on the same episodes and a success rate
(target reached at any step) at least 0.1 above the random one (measured 2026-12-07 with the
official defaults of replay context, online queue and dynamics KL 1.0: return 29.6 vs 3.95,
success 0.34 vs 0.00; 2026-12-05 with the paper's fresh starts and KL 0.5: 32.5 and 0.88).

Since Reach starts the gripper behind the targets' region (2026-12-04) it travels 15-30 cm to
the target instead of up to 10 cm, and the budget grew from 1,400 updates: at 1,400 the return
was 3x the random policy's (12.5 vs 3.95) but no episode ended within 2 cm; the same run in
``benchmarks/learning.py --obs state`` reached a training success_once of 0.38-0.62 from 1,900
updates on (``benchmarks/RESULTS.md``). Learning from pixels takes longer: see the pixel run
there.
"""

import jax
import pytest

from pvm_mbrl import envs, evaluate
from pvm_mbrl.dreamer import Dreamer, DreamerConfig, OptimizerConfig
from pvm_mbrl.train import TrainConfig, Trainer

ENV = dict(obs_mode="state", render=False)
CHUNKS = 22
EPISODES = 64


@pytest.mark.learning
def test_reach_from_state_beats_random():
    env = envs.make("Reach", num_envs=16, auto_reset=False, **ENV)
    # The small preset (its CNN is unused: the agent sees the state vector only).
    config = DreamerConfig.preset(
        "small", obs_keys=("state",), optimizer=OptimizerConfig(lr=3e-4, warmup=0)
    )
    agent = Dreamer(config, env.observation_space, env.action_space)
    loop = TrainConfig(
        num_envs=16,
        train_ratio=64,
        batch_size=16,
        batch_length=16,
        chunk_steps=25,
        prefill=50,
        replay_capacity=20_000,
        fused=False,
    )
    trainer = Trainer(env, agent, loop)
    state = trainer.prefill(trainer.init(jax.random.PRNGKey(0)))
    for _ in range(CHUNKS):
        state, metrics = trainer.train_chunk(state)
    assert int(metrics["updates"]) == CHUNKS * 100

    ev = evaluate.Evaluator("Reach", ENV, ("id",), EPISODES, agent)
    res = ev.evaluate([state.agent])
    ret, floor = res.returns.mean(), res.random_returns.mean()
    # The random policy's success on the same episodes, from the same compiled rollout.
    floor_success = ev.rollout(state.agent, random=True)["success_once"].mean()
    success = res.success_once.mean()
    print(f"return {ret:.2f} ({floor:.2f} random), success {success:.2f} ({floor_success:.2f})")
    assert ret >= 1.5 * floor, (ret, floor)
    assert success >= floor_success + 0.1, (success, floor_success)
