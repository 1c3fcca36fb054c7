"""Reach: move the tool centre point to a target marker.

The target's x/y come from the split's position region (central disc or outer ring), its
height from [0.04, 0.2] m; the gripper starts behind that region (``Reach.start``). Reward
``1 - tanh(10 d)`` (d: tcp-target distance), so at most 1 per step; success when
``d < SUCCESS_DIST``. State vector: target (3), target - tcp (3), in
``base.LENGTH_UNIT`` units.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pvm_mbrl.envs.manipulation import base, objects, scene

SUCCESS_DIST = 0.02


class Reach(base.ManipulationEnv):
    """Reach task. Splits: "train", "outer_positions" (target x/y in the outer ring)."""

    task_state_size = 6
    default_episode_length = 50
    default_camera = "front"  # the target must be seen: from the wrist it is out of view
    # The gripper starts behind the targets' region as the front camera sees it: from above the
    # centre it hid the target below it in about 20% of reset states (``envs.visibility``).
    start = (0.0, 0.15, 0.25)
    marker_radius = scene.MARKER_RADIUS  # the target is the task: 3.5 cm, well seen at 64 px

    def __init__(self, split: str = "train", **kwargs):
        objects.check_split(split, ("train", "outer_positions"))
        self.split = split
        super().__init__(objects=(), markers=("goal",), **kwargs)

    @property
    def max_step_reward(self) -> float:
        """1: ``1 - tanh(10 d)`` reaches 1 at d = 0 (``max_episode_return`` multiplies it by
        the steps per episode, and ``ActionRepeat`` by the repeat)."""
        return 1.0

    def _init_episode(self, key, qpos, mocap_pos):
        k_xy, k_z = jax.random.split(key)
        xy = objects.sample_xy(k_xy, self.split)
        z = jax.random.uniform(k_z, (1,), minval=0.04, maxval=0.2)
        target = jnp.concatenate([xy, z])
        mocap_pos = mocap_pos.at[self._marker["goal"]].set(target)
        return qpos, mocap_pos, {}

    def _reward(self, data, info):
        d = jnp.linalg.norm(self.marker_pos(data) - self.tcp_pos(data))
        return base.tanh_reward(d), {"success": (d < SUCCESS_DIST), "distance": d}

    def _task_state(self, data, info):
        target = self.marker_pos(data)
        return base.to_obs_units(jnp.concatenate([target, target - self.tcp_pos(data)]))
