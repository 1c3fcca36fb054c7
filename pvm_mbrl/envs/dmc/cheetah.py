"""Cheetah: a planar two-legged runner with six actuated, spring-loaded joints (``cheetah.xml``).

Task: ``run``. Every episode starts from the home pose (torso 0.7 m up, level) with each of
the six limited leg joints uniform over its range, then settles for 200 physics steps with zero
control before the first observation, as the suite does (its first settling step integrates the
accelerations computed at the home pose, which MJX reproduces with ``mjx.euler`` on a home-pose
``mjx.forward``). 10 s at one 0.01 s physics step per control step: 1,000 control steps.

Reward: ``tolerance(vx, (10, inf), margin=10, value_at_margin=0, linear)``, i.e. ``vx / 10``
clipped to [0, 1], with ``vx`` the x velocity of the cheetah's centre of mass (the
``torso_subtreelinvel`` sensor, which MJX computes).

Observation: ``position`` (qpos without the horizontal root position), then ``velocity``
(qvel). The cheetah runs along x and camera 0 (``side``) follows its centre of mass;
distractors stay in the world frame, so their box is placed around the start (x in [-1.3, 1.3],
just behind the cheetah's plane) and the cheetah leaves them behind as it runs. Changes for
MJX: only the ones every dmc/ task makes (``base.load_model``); the model's deprecated
``<compiler settotalmass="14">`` (MuJoCo prints a warning for it) is applied instead with
``mujoco.mj_setTotalmass`` and ``mujoco.mj_setConst`` after compiling (masses, inertias and
the constants derived from them equal the suite's compiled model; tested).
"""

from __future__ import annotations

import jax
import mujoco
import numpy as np

from pvm_mbrl.envs.dmc import base
from pvm_mbrl.envs.dmc.randomize import random_joint_qpos
from pvm_mbrl.envs.dmc.rewards import tolerance
from pvm_mbrl.envs.mjx import mjx

_RUN_SPEED = 10.0
_SETTLE_STEPS = 200


class Cheetah(base.DMCEnv):
    domain = "cheetah"
    time_limit = 10.0
    robot_geoms = ("torso", "head", "bthigh", "bshin", "bfoot", "fthigh", "fshin", "ffoot")
    floor_geoms = ("ground",)
    distractor_low = (-1.3, 0.3, 0.1)
    distractor_high = (1.3, 1.2, 1.4)

    def _edit_xml(self, root):
        compiler = root.find("compiler")
        self._total_mass = float(compiler.attrib.pop("settotalmass"))

    def _adapt_model(self, m):
        mujoco.mj_setTotalmass(m, self._total_mass)
        mujoco.mj_setConst(m, mujoco.MjData(m))  # the constants derived from the masses
        # and the mean inertia the solver scales by (mean of the joint-space diagonal at qpos0)
        m.stat.meaninertia = float(np.mean(m.dof_M0))
        return m

    def _init_episode(self, key):
        model = self._mjx_model
        qpos = random_joint_qpos(self._mj_model, key, unlimited_hinges=False)
        home = mjx.forward(model, mjx.make_data(model))
        data = mjx.euler(model, home.replace(qpos=qpos))
        data = jax.lax.fori_loop(1, _SETTLE_STEPS, lambda _, d: mjx.step(model, d), data)
        return data.qpos, data.qvel, {}

    def _reward(self, data, info):
        return tolerance(
            self.sensor(data, "torso_subtreelinvel")[0],
            (_RUN_SPEED, float("inf")),
            margin=_RUN_SPEED,
            value_at_margin=0.0,
            sigmoid_kind="linear",
        )

    def _observation(self, data, info):
        return {"position": data.qpos[1:], "velocity": data.qvel}
