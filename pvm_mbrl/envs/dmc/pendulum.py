"""Pendulum: swing up and balance a torque-limited pole (``pendulum.xml``).

Task: ``swingup``. The hinge angle starts uniform in [-pi, pi), at rest. 20 s at one 0.02 s
physics step per control step: 1,000 control steps. The motor's torque (at most 1 N m) is too
weak to lift the pole directly, so it has to be swung up.

Reward (sparse): ``tolerance(cos(angle), (cos(8 deg), 1))``, 1 while the pole is within 8
degrees of upright and 0 otherwise, where ``cos(angle)`` is the z-z entry of the pole's frame.

Observation: ``orientation`` (z-z and x-z entries of the pole's frame: the cosine and sine of its
angle from upright), then ``velocity`` (the hinge's angular velocity). Changes for MJX: only the
ones every dmc/ task makes (``base.load_model``).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from pvm_mbrl.envs.dmc import base
from pvm_mbrl.envs.dmc.randomize import random_joint_qpos
from pvm_mbrl.envs.dmc.rewards import tolerance

_UPRIGHT_COS = float(np.cos(np.deg2rad(8.0)))


class Pendulum(base.DMCEnv):
    domain = "pendulum"
    time_limit = 20.0
    robot_geoms = ("base", "pole", "mass")
    object_geoms = ()
    distractor_low = (-0.8, 0.3, 0.15)
    distractor_high = (0.8, 1.2, 0.85)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._pole = self.name2id("body", "pole")

    def _init_episode(self, key):
        qpos = random_joint_qpos(self._mj_model, key)
        return qpos, jnp.zeros((1,)), {}

    def _reward(self, data, info):
        return tolerance(data.xmat[self._pole, 2, 2], (_UPRIGHT_COS, 1.0))

    def _observation(self, data, info):
        m = data.xmat[self._pole]
        return {"orientation": jnp.stack([m[2, 2], m[0, 2]]), "velocity": data.qvel[0]}
