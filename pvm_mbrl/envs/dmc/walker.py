"""Walker: a planar biped with two three-joint legs stands, walks or runs (``walker.xml``).

Tasks: ``stand`` (``move_speed=0``), ``walk`` (1 m/s) and ``run`` (8 m/s). Every episode
starts at rest from the model's home pose (torso 1.3 m up) with the torso's pitch uniform in
[-pi, pi] and every limited joint (hips, knees, ankles) uniform over its range (the suite's
``randomize_limited_and_rotational_joints``; the suite does not redraw penetrating states here).
25 s at 0.025 s per control step (ten 0.0025 s physics steps): 1,000 control steps.

Reward: ``standing = tolerance(torso height, (1.2, inf), margin=0.6)``, ``upright = (1 + torso
z-axis . world z) / 2``, ``stand = (3 * standing + upright) / 4``; ``stand`` alone when
``move_speed == 0``, else ``stand * (5 * move + 1) / 6`` with ``move = tolerance(vx, (speed, inf),
margin=speed / 2, value_at_margin=0.5, linear)``, ``vx`` the x velocity of the walker's centre of
mass (the ``torso_subtreelinvel`` sensor, which MJX computes).

Observation: ``orientations`` (xx and xz entries of every walker body's rotation matrix, torso
first), ``height`` (torso z), then ``velocity`` (qvel). The walker moves along x and camera 0
(``side``) follows its centre of mass; distractors stay in the world frame, so their box is
placed around the start (x in [-0.8, 0.8], just behind the walker's plane, low enough to stay
in view when the walker lies down) and the walker leaves them behind as it walks. Changes for
MJX: only the ones every dmc/ task makes (``base.load_model``).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from pvm_mbrl.envs.dmc import base
from pvm_mbrl.envs.dmc.randomize import random_joint_qpos
from pvm_mbrl.envs.dmc.rewards import tolerance

_STAND_HEIGHT = 1.2


class Walker(base.DMCEnv):
    domain = "walker"
    time_limit = 25.0
    control_timestep = 0.025
    robot_geoms = (
        "torso",
        *(f"{side}_{part}" for side in ("right", "left") for part in ("thigh", "leg", "foot")),
    )
    distractor_low = (-0.8, 0.3, 0.1)
    distractor_high = (0.8, 1.0, 1.0)

    def __init__(self, *, move_speed: float, **kwargs):
        self.move_speed = float(move_speed)
        super().__init__(**kwargs)
        m = self._mj_model
        self._torso = self.name2id("body", "torso")
        skip = (0, self.name2id("body", "distractors"))
        self._bodies = np.array([b for b in range(m.nbody) if b not in skip])

    def _init_episode(self, key):
        qpos = random_joint_qpos(self._mj_model, key)
        return qpos, jnp.zeros(self._mj_model.nv), {}

    def _reward(self, data, info):
        standing = tolerance(
            data.xpos[self._torso, 2], (_STAND_HEIGHT, float("inf")), margin=_STAND_HEIGHT / 2
        )
        upright = (1.0 + data.xmat[self._torso, 2, 2]) / 2.0
        stand = (3.0 * standing + upright) / 4.0
        if self.move_speed == 0:
            return stand
        move = tolerance(
            self.sensor(data, "torso_subtreelinvel")[0],
            (self.move_speed, float("inf")),
            margin=self.move_speed / 2,
            value_at_margin=0.5,
            sigmoid_kind="linear",
        )
        return stand * (5.0 * move + 1.0) / 6.0

    def _observation(self, data, info):
        return {
            "orientations": data.xmat[self._bodies][:, 0, jnp.array([0, 2])],
            "height": data.xpos[self._torso, 2],
            "velocity": data.qvel,
        }
