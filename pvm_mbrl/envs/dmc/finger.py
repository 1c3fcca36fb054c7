"""Finger: a two-link planar finger spins or turns a free hinged body, the spinner (``finger.xml``).

Tasks: ``spin`` (the spinner's hinge damping lowered to 0.03) and ``turn`` with target radius
0.07 m (``turn_easy``) or 0.03 m (``turn_hard``): the target is placed on the circle the tip of the
spinner travels, at angle uniform in [-pi, pi] from the hinge's vertical. Initial state:
proximal and distal joints uniform over their ranges (+-110 degrees), hinge uniform in
[-pi, pi], redrawn until no two geoms touch (C MuJoCo's contact test, at most 1,000 draws);
velocities zero. 20 s at two 0.01 s physics steps per 0.02 s control step: 1,000 control steps.

Reward (sparse): spin: 1 when the hinge's angular velocity is at most -15 rad/s; turn: 1 when the
spinner's tip is inside the target (``|target - tip| <= target radius``, in the x-z plane).

Observation: ``position`` (proximal and distal angles, tip minus hinge x and z), ``velocity``
(proximal, distal and hinge velocities), ``touch`` (``log1p`` of the two fingertip touch
sensors); turn adds ``target_position`` (target minus hinge x and z) and ``dist_to_target``
(``|target - tip| - target radius``). All read from the model's sensors, as the suite does.

Changes for MJX: the ``target`` site sits in a mocap body of the same name (the episode's target
is task state, in ``mjx.Data.mocap_pos``), with the task's radius in the model. The renderer
draws geoms only, so turn adds two visual geoms (no contacts, no mass) where the suite draws the
``target`` and ``tip`` sites; spin hides both sites, as the suite does. Spin's hinge damping is a
model constant of the task.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from pvm_mbrl.envs.dmc import base, randomize

SPIN_VELOCITY = 15.0  # rad/s: the spinner counts as spinning below minus this
SPIN_DAMPING = 0.03  # the spinner's hinge damping in the spin task
MAX_DRAWS = 1000  # initial configurations drawn before giving up on a contact-free one


class Finger(base.DMCEnv):
    domain = "finger"
    time_limit = 20.0
    control_timestep = 0.02
    robot_geoms = ("proximal_decoration", "proximal", "distal", "fingertip")
    object_geoms = ("cap1", "cap2", "spinner_decoration", "target", "tip")
    floor_geoms = ("ground",)
    # Behind the finger's plane (y = 0) as camera 0 sees it, above the ground.
    distractor_low = (-0.45, 0.25, 0.1)
    distractor_high = (0.45, 0.6, 0.65)

    def __init__(self, *, task: str, target_radius: float | None = None, **kwargs):
        if task not in ("spin", "turn"):
            raise ValueError(f"finger task must be 'spin' or 'turn', got {task!r}")
        if (task == "turn") != (target_radius is not None):
            raise ValueError("finger 'turn' needs target_radius (and 'spin' takes none)")
        self.task = task
        self.target_radius = None if target_radius is None else float(target_radius)
        super().__init__(**kwargs)
        m = self._mj_model
        d = mujoco.MjData(m)
        mujoco.mj_kinematics(m, d)
        hinge = self.name2id("joint", "hinge")
        self._hinge_xz = np.asarray(d.xanchor[hinge, [0, 2]], np.float32)
        self._target_y = float(m.body_pos[self.name2id("body", "target"), 1])
        # The tip of the spinner travels a circle of the capsules' half-length plus radius.
        self._tip_radius = float(m.geom_size[self.name2id("geom", "cap1")].sum())

    def _edit_xml(self, root):
        world = root.find("worldbody")
        site = world.find("site[@name='target']")
        world.remove(site)
        body = world.makeelement(
            "body", {"name": "target", "mocap": "true", "pos": site.get("pos")}
        )
        site.set("pos", "0 0 0")
        body.append(site)
        world.append(body)
        if self.task != "turn":
            return
        visual = {"contype": "0", "conaffinity": "0", "mass": "0", "material": "target"}
        size = str(self.target_radius)
        body.append(body.makeelement("geom", {"name": "target", "size": size, **visual}))
        spinner = world.find("body[@name='spinner']")
        tip = spinner.find("site[@name='tip']")
        attrs = {"name": "tip", "size": tip.get("size"), "pos": tip.get("pos"), **visual}
        spinner.append(spinner.makeelement("geom", attrs))

    def _adapt_model(self, m):
        if self.task == "turn":
            m.site_size[m.site("target").id, 0] = self.target_radius
        else:
            m.dof_damping[m.joint("hinge").dofadr[0]] = SPIN_DAMPING
        return m

    # ----- initial state ---------------------------------------------------------------------
    def _draw_qpos(self, key):
        """Proximal and distal uniform over their ranges, the hinge uniform in [-pi, pi]."""
        return randomize.random_joint_qpos(self._mj_model, key)

    def _init_episode(self, key):
        k_target, k_qpos = jax.random.split(key)
        qpos = randomize.reject_contacts(self._mjx_model, k_qpos, self._draw_qpos, MAX_DRAWS)
        info = {}
        if self.task == "turn":
            angle = jax.random.uniform(k_target, (), minval=-jnp.pi, maxval=jnp.pi)
            offset = self._tip_radius * jnp.stack([jnp.sin(angle), jnp.cos(angle)])
            info["target"] = jnp.asarray(self._hinge_xz) + offset
        return qpos, jnp.zeros(self._mj_model.nv), info

    def _episode_data(self, data, info):
        if self.task != "turn":
            return data
        x, z = info["target"][0], info["target"][1]
        pos = jnp.stack([x, jnp.asarray(self._target_y, x.dtype), z])
        return data.replace(mocap_pos=data.mocap_pos.at[0].set(pos))

    def sync_oracle(self, physics, info):
        if self.task == "turn":
            physics.named.model.site_size["target", 0] = self.target_radius
            physics.named.model.site_pos["target", ["x", "z"]] = info["target"]
        else:
            physics.named.model.dof_damping["hinge"] = SPIN_DAMPING

    # ----- task ------------------------------------------------------------------------------
    def _relative_xz(self, data, name):
        """Sensor ``name``'s position minus the hinge's (the spinner's frame origin), x and z."""
        return (self.sensor(data, name) - self.sensor(data, "spinner"))[jnp.array([0, 2])]

    def _to_target(self, data):
        return self._relative_xz(data, "target") - self._relative_xz(data, "tip")

    def _reward(self, data, info):
        if self.task == "spin":
            return (self.sensor(data, "hinge_velocity")[0] <= -SPIN_VELOCITY).astype(jnp.float32)
        inside = jnp.linalg.norm(self._to_target(data)) <= self.target_radius
        return inside.astype(jnp.float32)

    def _observation(self, data, info):
        def read(*names):
            return jnp.concatenate([self.sensor(data, n) for n in names])

        obs = {
            "position": jnp.concatenate(
                [read("proximal", "distal"), self._relative_xz(data, "tip")]
            ),
            "velocity": read("proximal_velocity", "distal_velocity", "hinge_velocity"),
            "touch": jnp.log1p(read("touchtop", "touchbottom")),
        }
        if self.task == "turn":
            obs["target_position"] = self._relative_xz(data, "target")
            obs["dist_to_target"] = jnp.linalg.norm(self._to_target(data)) - self.target_radius
        return obs
