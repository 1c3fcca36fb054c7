"""The DeepMind Control Suite's tasks as MJX envs rendered by ``pvm_mbrl.render`` (DMC-Vision).

    env = envs.make("dmc/cartpole_swingup", action_repeat=2, num_envs=16)   # 64 px, camera 0

Every task loads the suite's own MJCF from the installed ``dm-control`` package (the ``dmc``
extra) and follows the suite's reward, initial-state distribution and episode length (1,000
control steps); ``envs.make`` divides the episode by the action repeat, so returns are on the
published 0-1,000 scale. Each domain module's docstring gives its definitions and what was
changed for MJX. ``TASKS`` maps every registered name to its domain class and arguments.
"""

from __future__ import annotations

from pvm_mbrl.envs.dmc import (
    acrobot,
    ball_in_cup,
    cartpole,
    cheetah,
    finger,
    hopper,
    pendulum,
    reacher,
    walker,
)

_DOMAINS = {
    "acrobot": acrobot.Acrobot,
    "ball_in_cup": ball_in_cup.BallInCup,
    "cartpole": cartpole.Cartpole,
    "cheetah": cheetah.Cheetah,
    "finger": finger.Finger,
    "hopper": hopper.Hopper,
    "pendulum": pendulum.Pendulum,
    "reacher": reacher.Reacher,
    "walker": walker.Walker,
}

TASKS: dict[str, tuple[str, dict]] = {
    "cartpole_balance": ("cartpole", dict(swing_up=False, sparse=False)),
    "cartpole_balance_sparse": ("cartpole", dict(swing_up=False, sparse=True)),
    "cartpole_swingup": ("cartpole", dict(swing_up=True, sparse=False)),
    "cartpole_swingup_sparse": ("cartpole", dict(swing_up=True, sparse=True)),
    "reacher_easy": ("reacher", dict(target_size=0.05)),
    "reacher_hard": ("reacher", dict(target_size=0.015)),
    "finger_spin": ("finger", dict(task="spin")),
    "finger_turn_easy": ("finger", dict(task="turn", target_radius=0.07)),
    "finger_turn_hard": ("finger", dict(task="turn", target_radius=0.03)),
    "walker_stand": ("walker", dict(move_speed=0.0)),
    "walker_walk": ("walker", dict(move_speed=1.0)),
    "walker_run": ("walker", dict(move_speed=8.0)),
    "cheetah_run": ("cheetah", {}),
    "hopper_stand": ("hopper", dict(hopping=False)),
    "hopper_hop": ("hopper", dict(hopping=True)),
    "pendulum_swingup": ("pendulum", {}),
    "acrobot_swingup": ("acrobot", dict(sparse=False)),
    "acrobot_swingup_sparse": ("acrobot", dict(sparse=True)),
    "ball_in_cup_catch": ("ball_in_cup", {}),
}


def make_task(task: str, **kwargs):
    """The unwrapped env of ``task`` (e.g. ``"cartpole_swingup"``)."""
    if task not in TASKS:
        raise ValueError(f"unknown dmc task {task!r}; valid: {', '.join(sorted(TASKS))}")
    domain, task_kwargs = TASKS[task]
    env = _DOMAINS[domain](**task_kwargs, **kwargs)
    env.task_name = task
    return env


def factory(task: str):
    """``factory(**kwargs) -> Env`` for ``envs.register``."""

    def make(**kwargs):
        return make_task(task, **kwargs)

    return make
