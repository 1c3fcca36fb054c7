"""The README's Python quickstart: make an env, train DreamerV3 on it, evaluate it across shifts.

    python examples/quickstart.py   # a few CPU minutes: shows the pipeline, too short to learn

``main`` takes overrides of ``SETTINGS`` (settings of ``Experiment.of``), the
shifts and the episodes per shift, so ``tests/test_quickstart.py`` runs this very code tiny.
The README's quickstart block is this file from the imports on; keep the two the same.
"""

from __future__ import annotations

import jax

import pvm_mbrl
from pvm_mbrl import envs, evaluate
from pvm_mbrl.experiment import Experiment, load_agent, run

# The CNN agent on Reach from 64 px front-camera pixels, 2,048 env steps over 16 envs.
SETTINGS = dict(task="Reach", size="tiny", steps=2048, batch_length=16, prefill=64, log_every=256)
CPU = dict(replay_capacity=16_384, chunk_steps=16, fused=False)  # a few minutes on 2 CPU cores


def main(logdir="runs/quickstart", shifts=("id", "texture", "strong"), episodes=8, **overrides):
    exp = Experiment.of(**{**SETTINGS, **CPU, "logdir": logdir, **overrides})
    # An env: 4 copies in one batch under the "strong" shift, stepped and rendered under jit.
    env = envs.make(exp.env.task, num_envs=4, shift="strong", **exp.env.kwargs())
    state = jax.jit(env.reset)(jax.random.PRNGKey(0))
    state = jax.jit(env.step)(state, jax.numpy.zeros((4, *env.action_space.shape)))
    print(state.obs["pixels"].shape, state.reward)  # (4, 64, 64, 3) uint8 images, 4 rewards
    # Train: compiled collection and updates; TensorBoard logs and checkpoints in the logdir.
    run(exp)
    # Evaluate zero-shot on every shift in one compiled rollout (one AgentState per seed).
    _, agent, states = load_agent(exp.output.logdir)
    results = evaluate.evaluate(agent, states, exp.env.task, exp.env.kwargs(), shifts, episodes)
    print(evaluate.markdown_table({"CNN": results}))  # return normalised against random actions
    return results


if __name__ == "__main__":
    pvm_mbrl.setup()  # host-memory reuse and the compilation cache, before any JAX work
    main()
