"""Reacher: bring the fingertip of a two-link planar arm into a target (``reacher.xml``).

Tasks: ``easy`` (target radius 0.05 m) and ``hard`` (0.015 m). Initial state: shoulder uniform in
[-pi, pi], wrist uniform over its range (+-160 degrees), velocities zero; the target is placed at
``radius * (sin(angle), cos(angle))`` with angle uniform in [0, 2 pi) and radius uniform in
[0.05, 0.2] m. 20 s at one 0.02 s physics step per control step: 1,000 control steps.

Reward (sparse): ``tolerance(distance, (0, target radius + finger radius))``, 1 when the centres
of the finger and target spheres are at most the sum of their radii apart (in the x-y plane).

Observation: ``position`` (qpos), ``to_target`` (target minus finger, x and y), ``velocity``
(qvel). Changes for MJX: the ``target`` geom sits in a mocap body of the same name (its position
is the episode's task state, in ``mjx.Data.mocap_pos``; it has no contacts or mass, so the
dynamics are unchanged), and its radius is set to the task's in the model.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pvm_mbrl.envs.dmc import base
from pvm_mbrl.envs.dmc.randomize import random_joint_qpos
from pvm_mbrl.envs.dmc.rewards import tolerance


class Reacher(base.DMCEnv):
    domain = "reacher"
    time_limit = 20.0
    robot_geoms = ("arm", "hand", "finger")
    object_geoms = ("target",)
    floor_geoms = ("ground",)
    # Camera 0 looks straight down at the 0.6 m arena: spheres resting on its floor.
    distractor_low = (-0.22, -0.22, 0.0)
    distractor_high = (0.22, 0.22, 0.04)

    def __init__(self, *, target_size: float, **kwargs):
        self.target_size = float(target_size)
        super().__init__(**kwargs)
        m = self._mj_model
        self._target = self.name2id("geom", "target")
        self._finger = self.name2id("geom", "finger")
        self._radii = self.target_size + float(m.geom_size[self._finger, 0])
        self._target_z = float(m.body_pos[self.name2id("body", "target"), 2])

    def _edit_xml(self, root):
        world = root.find("worldbody")
        geom = world.find("geom[@name='target']")
        world.remove(geom)
        body = world.makeelement(
            "body", {"name": "target", "mocap": "true", "pos": geom.get("pos")}
        )
        geom.set("pos", "0 0 0")
        geom.set("contype", "0")
        geom.set("conaffinity", "0")
        geom.set("mass", "0")
        body.append(geom)
        world.append(body)

    def _adapt_model(self, m):
        m.geom_size[m.geom("target").id, 0] = self.target_size
        return m

    def _init_episode(self, key):
        k_qpos, k_angle, k_radius = jax.random.split(key, 3)
        qpos = random_joint_qpos(self._mj_model, k_qpos)
        angle = jax.random.uniform(k_angle, (), minval=0.0, maxval=2 * jnp.pi)
        radius = jax.random.uniform(k_radius, (), minval=0.05, maxval=0.2)
        target = radius * jnp.stack([jnp.sin(angle), jnp.cos(angle)])
        return qpos, jnp.zeros(self._mj_model.nv), {"target": target}

    def _episode_data(self, data, info):
        pos = jnp.concatenate([info["target"], jnp.array([self._target_z])])
        return data.replace(mocap_pos=data.mocap_pos.at[0].set(pos))

    def sync_oracle(self, physics, info):
        physics.named.model.geom_size["target", 0] = self.target_size
        physics.named.model.geom_pos["target", ["x", "y"]] = info["target"]

    def _to_target(self, data):
        return data.geom_xpos[self._target, :2] - data.geom_xpos[self._finger, :2]

    def _reward(self, data, info):
        return tolerance(jnp.linalg.norm(self._to_target(data)), (0.0, self._radii))

    def _observation(self, data, info):
        return {"position": data.qpos, "to_target": self._to_target(data), "velocity": data.qvel}
