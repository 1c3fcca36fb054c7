"""Cartpole: swing up and balance an unactuated pole by pushing its cart (``cartpole.xml``).

Tasks: ``balance`` (pole starts near upright, cart uniform in [-0.1, 0.1] m, hinge uniform in
[-0.034, 0.034] rad), ``swingup`` (pole starts hanging, cart and hinge offsets ~ N(0, 0.01^2));
both with velocities ~ N(0, 0.01^2), and each with a ``sparse`` variant. 10 s at one 0.01 s
physics step per control step: 1,000 control steps.

Reward (smooth): ``upright * centered * small_control * small_velocity`` with
``upright = (cos(angle) + 1) / 2``, ``centered = (1 + tolerance(cart, margin=2)) / 2``,
``small_control = (4 + tolerance(ctrl, margin=1, value_at_margin=0, quadratic)) / 5``,
``small_velocity = (1 + tolerance(angular velocity, margin=5)) / 2``. Sparse:
``tolerance(cart, (-0.25, 0.25)) * tolerance(cos(angle), (0.995, 1))``.

Observation: ``position`` (cart x, cos and sin of the pole angle from the pole's frame), then
``velocity`` (qvel). Changes for MJX: only the ones every dmc/ task makes (``base.load_model``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pvm_mbrl.envs.dmc import base
from pvm_mbrl.envs.dmc.rewards import tolerance


class Cartpole(base.DMCEnv):
    domain = "cartpole"
    time_limit = 10.0
    robot_geoms = ("cart", "pole_1")
    object_geoms = ("rail1", "rail2")
    distractor_low = (-1.8, 0.6, 0.2)
    distractor_high = (1.8, 1.5, 1.8)

    def __init__(self, *, swing_up: bool, sparse: bool, **kwargs):
        self.swing_up = bool(swing_up)
        self.sparse = bool(sparse)
        super().__init__(**kwargs)
        self._pole = self.name2id("body", "pole_1")

    def _init_episode(self, key):
        k_pos, k_vel = jax.random.split(key)
        nv = self._mj_model.nv
        if self.swing_up:
            qpos = jnp.array([0.0, jnp.pi]) + 0.01 * jax.random.normal(k_pos, (2,))
        else:
            k_cart, k_pole = jax.random.split(k_pos)
            cart = jax.random.uniform(k_cart, (1,), minval=-0.1, maxval=0.1)
            pole = jax.random.uniform(k_pole, (nv - 1,), minval=-0.034, maxval=0.034)
            qpos = jnp.concatenate([cart, pole])
        qvel = 0.01 * jax.random.normal(k_vel, (nv,))
        return qpos, qvel, {}

    def _pole_cos(self, data):
        return data.xmat[self._pole, 2, 2]

    def _reward(self, data, info):
        cart, cos = data.qpos[0], self._pole_cos(data)
        if self.sparse:
            return tolerance(cart, (-0.25, 0.25)) * tolerance(cos, (0.995, 1.0))
        upright = (cos + 1.0) / 2.0
        centered = (1.0 + tolerance(cart, margin=2.0)) / 2.0
        small_control = tolerance(
            data.ctrl[0], margin=1.0, value_at_margin=0.0, sigmoid_kind="quadratic"
        )
        small_control = (4.0 + small_control) / 5.0
        small_velocity = (1.0 + jnp.min(tolerance(data.qvel[1:], margin=5.0))) / 2.0
        return upright * small_control * small_velocity * centered

    def _observation(self, data, info):
        m = data.xmat[self._pole]
        return {"position": jnp.stack([data.qpos[0], m[2, 2], m[0, 2]]), "velocity": data.qvel}
