"""Ball in cup: swing a ball on a string into a cup moved in a vertical plane
(``ball_in_cup.xml``).

Task: ``catch``. The cup starts at rest at its home position; the ball's two slide joints
start uniform in x in [-0.2, 0.2] m and z in [0.2, 0.5] m (above its body's home, which is
0.2 m above the floor), redrawn until the ball touches no geom (MJX's collision detection), at
rest. The string is a spatial tendon of length at most 0.3 m from the ball to the cup's
bottom. 20 s at 0.02 s per control step (ten 0.002 s physics steps): 1,000 control steps.

Reward (sparse): 1 when the ball's centre is inside the cup's target box shrunk by the ball's
radius in both x and z (``|target - ball| < target half-size - ball radius``), else 0.

Observation: ``position`` (qpos: cup x, cup z, ball x, ball z), then ``velocity`` (qvel).
Changes for MJX: only the ones every dmc/ task makes (``base.load_model``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from pvm_mbrl.envs.dmc import base, randomize

_XZ = np.array([0, 2])  # numpy: importing starts no JAX backend


class BallInCup(base.DMCEnv):
    domain = "ball_in_cup"
    time_limit = 20.0
    control_timestep = 0.02
    robot_geoms = tuple(f"cup_part_{i}" for i in range(5))
    object_geoms = ("ball",)
    floor_geoms = ("ground",)
    distractor_low = (-0.4, 0.25, 0.2)
    distractor_high = (0.4, 0.8, 0.7)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        m = self._mj_model
        self._ball = self.name2id("body", "ball")
        self._target = self.name2id("site", "target")
        ball_radius = float(m.geom_size[self.name2id("geom", "ball"), 0])
        self._in_target = jnp.asarray(m.site_size[self._target, [0, 2]] - ball_radius)
        self._ball_qpos = jnp.array(
            [m.jnt_qposadr[self.name2id("joint", n)] for n in ("ball_x", "ball_z")]
        )

    def _init_episode(self, key):
        qpos0 = jnp.asarray(self._mj_model.qpos0, jnp.float32)

        def draw(key):
            k_x, k_z = jax.random.split(key)
            x = jax.random.uniform(k_x, minval=-0.2, maxval=0.2)
            z = jax.random.uniform(k_z, minval=0.2, maxval=0.5)
            return qpos0.at[self._ball_qpos].set(jnp.stack([x, z]))

        qpos = randomize.reject_contacts(self._mjx_model, key, draw)
        return qpos, jnp.zeros_like(qpos), {}

    def _reward(self, data, info):
        gap = data.site_xpos[self._target, _XZ] - data.xpos[self._ball, _XZ]
        return jnp.all(jnp.abs(gap) < self._in_target).astype(jnp.float32)

    def _observation(self, data, info):
        return {"position": data.qpos, "velocity": data.qvel}
