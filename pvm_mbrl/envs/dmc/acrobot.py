"""Acrobot: swing up a two-link pendulum actuated only at the elbow (``acrobot.xml``).

Tasks: ``swingup`` and its ``sparse`` variant. Both hinge angles (shoulder, elbow) start
uniform in [-pi, pi), at rest. 10 s at one 0.01 s physics step (RK4) per control step: 1,000
control steps.

Reward: with ``d`` the distance from the lower arm's tip to the target site 4 m above the
floor (radius 0.2 m), ``tolerance(d, (0, 0.2), margin=1)`` (Gaussian fall-off, 0.1 at 1 m
outside the target); sparse: ``tolerance(d, (0, 0.2))``, 1 inside the target and 0 elsewhere.

Observation: ``orientations`` (x-z entries of the upper and lower arm frames, then their z-z
entries: the sines and cosines of the links' angles from upright), then ``velocity`` (qvel).
Changes for MJX: only the ones every dmc/ task makes (``base.load_model``).
"""

from __future__ import annotations

import jax.numpy as jnp

from pvm_mbrl.envs.dmc import base
from pvm_mbrl.envs.dmc.randomize import random_joint_qpos
from pvm_mbrl.envs.dmc.rewards import tolerance


class Acrobot(base.DMCEnv):
    domain = "acrobot"
    time_limit = 10.0
    robot_geoms = ("upper_arm_decoration", "upper_arm", "lower_arm")
    object_geoms = ()
    distractor_low = (-2.5, 0.5, 0.3)
    distractor_high = (2.5, 1.5, 4.2)

    def __init__(self, *, sparse: bool, **kwargs):
        self.sparse = bool(sparse)
        super().__init__(**kwargs)
        self._arms = jnp.array([self.name2id("body", n) for n in ("upper_arm", "lower_arm")])
        self._tip = self.name2id("site", "tip")
        self._target = self.name2id("site", "target")
        self._target_radius = float(self._mj_model.site_size[self._target, 0])

    def _init_episode(self, key):
        qpos = random_joint_qpos(self._mj_model, key)
        return qpos, jnp.zeros((2,)), {}

    def _reward(self, data, info):
        d = jnp.linalg.norm(data.site_xpos[self._target] - data.site_xpos[self._tip])
        margin = 0.0 if self.sparse else 1.0
        return tolerance(d, (0.0, self._target_radius), margin=margin)

    def _observation(self, data, info):
        m = data.xmat[self._arms]
        return {"orientations": jnp.concatenate([m[:, 0, 2], m[:, 2, 2]]), "velocity": data.qvel}
