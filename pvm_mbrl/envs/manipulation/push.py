"""Push: push a cube across the table into a goal region.

The cube starts at a position from the split's region; the goal lies ``GOAL_OFFSET`` away in a
random direction. Reward ``0.3 (1 - tanh(10 d_tcp)) + 0.7 (1 - tanh(10 d_goal))`` (at most 1),
d_tcp: tcp to cube, d_goal: cube to goal in x/y. Success when ``d_goal < SUCCESS_DIST``.
State vector: cube position (3), quaternion (4), linear velocity (3), goal (3); lengths and
velocities in ``base.LENGTH_UNIT`` units.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from pvm_mbrl.envs.manipulation import base, objects
from pvm_mbrl.envs.manipulation.scene import ObjectGeom

SUCCESS_DIST = 0.03
GOAL_OFFSET = 0.1
CUBE = ObjectGeom("puck", "box", (0.022, 0.022, 0.022), 0.1, (0.2, 0.6, 0.85))


class Push(base.ManipulationEnv):
    """Push task. Splits: "train", "outer_positions" (start in the outer ring)."""

    task_state_size = 13
    default_episode_length = 80

    def __init__(self, split: str = "train", **kwargs):
        objects.check_split(split, ("train", "outer_positions"))
        self.split = split
        super().__init__(objects=(CUBE,), markers=("goal",), **kwargs)

    @property
    def max_step_reward(self) -> float:
        """1 = 0.3 + 0.7, both shaping terms at distance 0: an upper bound, since the tcp cannot
        sit at the cube's centre (``max_episode_return`` scales it by the episode length)."""
        return 1.0

    def _init_episode(self, key, qpos, mocap_pos):
        k_xy, k_a = jax.random.split(key)
        xy = objects.sample_xy(k_xy, self.split)
        a = jax.random.uniform(k_a, minval=0.0, maxval=2.0 * np.pi)
        goal = jnp.clip(xy + GOAL_OFFSET * jnp.stack([jnp.cos(a), jnp.sin(a)]), -0.2, 0.2)
        adr = int(self._obj_qadr[0])
        qpos = qpos.at[adr : adr + 3].set(jnp.concatenate([xy, jnp.array([CUBE.half_height])]))
        mocap_pos = mocap_pos.at[self._marker["goal"]].set(jnp.concatenate([goal, jnp.zeros(1)]))
        return qpos, mocap_pos, {}

    def _reward(self, data, info):
        obj = self.object_pos(data)
        d_tcp = jnp.linalg.norm(obj - self.tcp_pos(data))
        d_goal = jnp.linalg.norm(obj[:2] - self.marker_pos(data)[:2])
        reward = 0.3 * base.tanh_reward(d_tcp) + 0.7 * base.tanh_reward(d_goal)
        return reward, {"success": d_goal < SUCCESS_DIST, "distance": d_goal}

    def _task_state(self, data, info):
        u = base.to_obs_units
        return jnp.concatenate(
            [
                u(self.object_pos(data)),
                self.object_quat(data),
                u(self.object_vel(data)),
                u(self.marker_pos(data)),
            ]
        )
