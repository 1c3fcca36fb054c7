"""One training run as a config: build the env, agent and loop from it, train with logs and
checkpoints, resume, and load the trained agent back.

```python
from pvm_mbrl.experiment import Experiment, run, load_agent

exp = Experiment.of(task="Reach", encoder="dinov2-small", finetune="partial(4)",
                    checkpoint="/data/dinov2-small", size="size12m", steps=500_000,
                    logdir="runs/dinov2_partial")
exp.env.task, exp.agent.size, exp.loop.train_ratio, exp.output.logdir   # its four parts
run(exp)                                    # tensorboard logs, GIFs, checkpoints in the logdir
run(exp, resume=True)                       # continue from the last checkpoint after a kill
exp, agent, states = load_agent("runs/dinov2_partial")   # one AgentState per seed
```

``config`` holds the parts (``EnvConfig``, ``AgentConfig``, ``train.TrainConfig``,
``OutputConfig``) and ``Experiment``; ``run`` the rest. ``examples/train.py`` exposes every
setting on the command line (tyro). The run directory holds ``experiment.json`` (this config),
``checkpoints/`` (orbax, with the config JSON and an integrity record next to each step),
``events.out.tfevents.*`` (tensorboardX), ``videos/`` and ``.lock`` (held by the one process
writing it). Several seeds train as one compiled program (``vmap`` over the seed axis of the
train state).
"""

from pvm_mbrl.experiment.config import (
    CONFIG_FILE,
    AgentConfig,
    EnvConfig,
    Experiment,
    OutputConfig,
)
from pvm_mbrl.experiment.run import build, load_agent, run, seed_keys

__all__ = [
    "CONFIG_FILE",
    "AgentConfig",
    "EnvConfig",
    "Experiment",
    "OutputConfig",
    "build",
    "load_agent",
    "run",
    "seed_keys",
]
