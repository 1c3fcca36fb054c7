"""PickCube and PickObject: grasp an object and lift it to a goal point in the air.

The object starts at a position from the split's region; the goal has x/y from the same region
and a height in [0.08, 0.18] m. ``grasped`` means the object sits between the fingers (within
``GRASP_DIST`` of the tcp, finger gap at most its width plus 6 mm). Reward
``0.25 reach + 0.25 grasped + 0.5 grasped * place`` with ``reach = 1 - tanh(10 d_tcp)`` and
``place = 1 - tanh(10 d_goal)``, so at most 1 per step. Success when ``d_goal < SUCCESS_DIST``.
State vector: object position (3), quaternion (4), linear velocity (3), goal (3),
object - tcp (3), object half-width and half-height (2); lengths and velocities in
``base.LENGTH_UNIT`` units.

PickObject draws the object per episode from the split's set (``objects.split_objects``):
every (shape, size) body is in the scene, unused ones stay parked, and the episode's mass is
written into the traced ``mjx.Model`` (see ``objects`` for why).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from pvm_mbrl.envs.manipulation import base, objects

SUCCESS_DIST = 0.025
GRASP_DIST = 0.02


class _Pick(base.ManipulationEnv):
    task_state_size = 18
    default_episode_length = 80

    def __init__(self, bodies, object_set, split, **kwargs):
        self.split = split
        self.object_set = tuple(object_set)
        super().__init__(objects=bodies, markers=("goal",), **kwargs)
        table = objects.object_table(self.object_set)
        self._set_body, self._set_mass = table["body"], table["mass"]
        self._half_width = jnp.asarray([b.half_width for b in bodies], jnp.float32)
        self._half_height = jnp.asarray([b.half_height for b in bodies], jnp.float32)
        self._nominal_mass = np.array([b.mass for b in bodies], np.float32)

    @property
    def max_step_reward(self) -> float:
        """1 = 0.25 + 0.25 + 0.5: tcp at the object, grasped, object at the goal
        (``max_episode_return`` multiplies it by the steps per episode)."""
        return 1.0

    def _init_episode(self, key, qpos, mocap_pos):
        k_obj, k_xy, k_goal, k_z = jax.random.split(key, 4)
        i = jax.random.randint(k_obj, (), 0, len(self.object_set))
        body = self._set_body[i]
        xy = objects.sample_xy(k_xy, self.split)
        pos = jnp.concatenate([xy, self._half_height[body][None]])
        adr = jnp.asarray(self._obj_qadr)[body]
        qpos = jax.lax.dynamic_update_slice(qpos, pos.astype(qpos.dtype), (adr,))
        goal_xy = objects.sample_xy(k_goal, self.split)
        goal_z = jax.random.uniform(k_z, (1,), minval=0.08, maxval=0.18)
        goal = jnp.concatenate([goal_xy, goal_z])
        mocap_pos = mocap_pos.at[self._marker["goal"]].set(goal)
        return qpos, mocap_pos, {"object": body, "mass": self._set_mass[i]}

    def _physics_model(self, info):
        m = self._mjx_model
        body = jnp.asarray(self._obj_body)[info["object"]]
        scale = info["mass"] / jnp.asarray(self._nominal_mass)[info["object"]]
        parked = jnp.zeros(m.nbody).at[jnp.asarray(self._obj_body)].set(1.0).at[body].set(0.0)
        return m.replace(
            body_mass=m.body_mass.at[body].set(info["mass"]),
            body_inertia=m.body_inertia.at[body].multiply(scale),
            body_gravcomp=jnp.maximum(m.body_gravcomp, parked),
        )

    def object_dims(self, info):
        """(half-width along the finger axis, half-height) of the episode's object."""
        return self._half_width[info["object"]], self._half_height[info["object"]]

    def grasped(self, data, info):
        obj = self.object_pos(data, info["object"])
        half_width, _ = self.object_dims(info)
        near = jnp.linalg.norm(obj - self.tcp_pos(data)) < GRASP_DIST
        return near & (self.finger_gap(data) < 2.0 * half_width + 0.006)

    def _reward(self, data, info):
        obj = self.object_pos(data, info["object"])
        d_tcp = jnp.linalg.norm(obj - self.tcp_pos(data))
        d_goal = jnp.linalg.norm(obj - self.marker_pos(data))
        grasped = self.grasped(data, info).astype(jnp.float32)
        reward = (
            0.25 * base.tanh_reward(d_tcp)
            + 0.25 * grasped
            + 0.5 * grasped * base.tanh_reward(d_goal)
        )
        metrics = {
            "success": d_goal < SUCCESS_DIST,
            "distance": d_goal,
            "grasped": grasped,
            "object_height": obj[2] - self.object_dims(info)[1],
        }
        return reward, metrics

    def _task_state(self, data, info):
        i = info["object"]
        obj = self.object_pos(data, i)
        u = base.to_obs_units
        return jnp.concatenate(
            [
                u(obj),
                self.object_quat(data, i),
                u(self.object_vel(data, i)),
                u(self.marker_pos(data)),
                u(obj - self.tcp_pos(data)),
                u(jnp.stack(self.object_dims(info))),
            ]
        )


class PickCube(_Pick):
    """Pick up a cube (4.2 cm, 50 g) and lift it to the goal. Splits: "train",
    "outer_positions"."""

    def __init__(self, split: str = "train", **kwargs):
        objects.check_split(split, ("train", "outer_positions"))
        cube = objects.object_geom("cube", 1, name="cube")
        spec = objects.ObjectSpec("cube", 0, cube.mass)
        super().__init__((cube,), (spec,), split, **kwargs)
        self._set_body = jnp.zeros((1,), jnp.int32)


class PickObject(_Pick):
    """Pick up an object drawn per episode from the split's set and lift it to the goal.
    Splits: "train", "novel_objects", "outer_positions"."""

    def __init__(self, split: str = "train", **kwargs):
        objects.check_split(split)
        kwargs.setdefault("max_contact_points", 8)
        super().__init__(objects.scene_bodies(), objects.split_objects(split), split, **kwargs)
