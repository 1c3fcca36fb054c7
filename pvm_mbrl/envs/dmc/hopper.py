"""Hopper: a planar one-legged robot (torso, pelvis, thigh, calf, foot) stands or hops
(``hopper.xml``).

Tasks: ``stand`` (``hopping=False``) and ``hop`` (``hopping=True``). Every episode starts at
rest from the model's home pose (torso 1 m up) with the torso's pitch uniform in [-pi, pi] and
the four limited joints (waist, hip, knee, ankle) uniform over their ranges (the suite's
``randomize_limited_and_rotational_joints``; the suite does not redraw penetrating states here).
20 s at 0.02 s per control step (four 0.005 s physics steps): 1,000 control steps.

Reward: ``standing = tolerance(torso z - foot z, (0.6, 2))`` (centres of mass; 1 inside, else
0); ``hop``: ``standing * tolerance(vx, (2, inf), margin=1, value_at_margin=0.5, linear)`` with
``vx`` the x velocity of the hopper's centre of mass (the ``torso_subtreelinvel`` sensor);
``stand``: ``standing * (4 + small_control) / 5`` with ``small_control`` the mean over the
actuators of ``tolerance(ctrl, margin=1, value_at_margin=0, quadratic)``.

Observation: ``position`` (qpos without the horizontal root position), ``velocity`` (qvel),
then ``touch`` (``log1p`` of the toe and heel touch sensors; MJX computes both sensors). The
hopper moves along x and camera 0 (``cam0``) follows the centre of mass; distractors stay in
the world frame, so their box is placed around the start (x in [-1, 1], just behind the
hopper's plane) and the hopper leaves them behind as it hops. Changes for MJX: only the ones
every dmc/ task makes (``base.load_model``).
"""

from __future__ import annotations

import jax.numpy as jnp

from pvm_mbrl.envs.dmc import base
from pvm_mbrl.envs.dmc.randomize import random_joint_qpos
from pvm_mbrl.envs.dmc.rewards import tolerance

_STAND_HEIGHT = 0.6
_HOP_SPEED = 2.0


class Hopper(base.DMCEnv):
    domain = "hopper"
    time_limit = 20.0
    control_timestep = 0.02
    robot_geoms = ("torso", "nose", "pelvis", "thigh", "calf", "foot")
    distractor_low = (-1.0, 0.3, 0.1)
    distractor_high = (1.0, 1.0, 1.4)

    def __init__(self, *, hopping: bool, **kwargs):
        self.hopping = bool(hopping)
        super().__init__(**kwargs)
        self._torso = self.name2id("body", "torso")
        self._foot = self.name2id("body", "foot")

    def _init_episode(self, key):
        qpos = random_joint_qpos(self._mj_model, key)
        return qpos, jnp.zeros(self._mj_model.nv), {}

    def _reward(self, data, info):
        height = data.xipos[self._torso, 2] - data.xipos[self._foot, 2]
        standing = tolerance(height, (_STAND_HEIGHT, 2.0))
        if self.hopping:
            hopping = tolerance(
                self.sensor(data, "torso_subtreelinvel")[0],
                (_HOP_SPEED, float("inf")),
                margin=_HOP_SPEED / 2,
                value_at_margin=0.5,
                sigmoid_kind="linear",
            )
            return standing * hopping
        small_control = tolerance(
            data.ctrl, margin=1.0, value_at_margin=0.0, sigmoid_kind="quadratic"
        ).mean()
        return standing * (4.0 + small_control) / 5.0

    def _observation(self, data, info):
        touch = jnp.concatenate([self.sensor(data, "touch_toe"), self.sensor(data, "touch_heel")])
        return {"position": data.qpos[1:], "velocity": data.qvel, "touch": jnp.log1p(touch)}
