"""Shared machinery of the table-top tasks: model set-up, action mapping, observations.

Action (4,) in [-1, 1], clipped: ``[dx, dy, dz, grip]``. The first three set the gripper's
position target to its current position plus at most ``MAX_DELTA`` metres per axis (a = 0
holds still); ``grip`` maps linearly to the finger opening, -1 closed, +1 fully open. One
control step is ``substeps`` physics steps of ``scene.TIMESTEP``.

Observations: ``proprio`` (8,) = tcp position (3), gripper velocity (3), finger positions (2);
``state`` = ``proprio`` followed by the task's state vector; both give lengths in units of
``LENGTH_UNIT`` (10 cm) and velocities in ``LENGTH_UNIT`` per second (:func:`to_obs_units`).
In metres the positions these tasks tell apart (success within 2 cm, 2.5 cm per step) differ
by 0.01-0.02, far below the unit scale the agent's ``symlog`` inputs and squared-error decoder
are built for: measured with ``benchmarks/reach_probe.py`` (tiny agent, lr 3e-4), the same
agent stays target-blind for 2,000 updates on metres and reaches after about 1,000 on
decimetres. ``pixels`` uint8 [H, W, 3] from the
``wrist`` or ``front`` camera, rendered by ``pvm_mbrl.render`` with the per-env ``SceneParams`` kept
in ``state.info["scene"]``.

Visual shifts (``envs.make(shift=...)`` or ``envs.with_shift``): the env's
``shifts.ShiftBatch`` is static; each env's severities, per-episode draws and step count
(``shifts.ShiftState``) are traced in ``state.info["shift"]``, sampled at reset (env ``i`` of a
``BatchEnv`` takes preset ``i % len(presets)``) and advanced every control step; shifts change
only what is drawn.
"""

from __future__ import annotations

import abc

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from pvm_mbrl import shifts
from pvm_mbrl.envs import core
from pvm_mbrl.envs.manipulation import scene
from pvm_mbrl.envs.mjx import mjx
from pvm_mbrl.envs.rendered import RenderedEnv, check_render_args

MAX_DELTA = 0.025
OBS_MODES = ("pixels", "state", "pixels+state")
CAMERAS = ("wrist", "front")
PROPRIO_SIZE = 8
LENGTH_UNIT = 0.1  # metres per unit of length in the proprio and state observations
START = (0.0, 0.0, 0.2)  # default gripper frame position at reset (before noise)


def to_obs_units(x: jax.Array) -> jax.Array:
    """Lengths (m) or velocities (m/s) in the observation's units of ``LENGTH_UNIT``."""
    return x / LENGTH_UNIT


class ManipulationEnv(RenderedEnv):
    """Base class of the table-top tasks. Subclasses set the scene and implement the hooks
    ``_init_episode``, ``_reward`` and ``_task_state``.

    Args:
      objects, markers: scene content (see ``scene.build_xml``).
      image_size: square image side in pixels.
      camera: "wrist" or "front"; ``None``: the task's ``default_camera``.
      obs_mode: "pixels", "state" or "pixels+state".
      render: whether to render; default: when ``obs_mode`` includes pixels.
      render_shadows: shadow rays in the renderer.
      episode_length: control steps per episode (applied by ``TimeLimit``); ``None``: the
        task's ``default_episode_length``.
      substeps: physics steps per control step.
      impl: MJX implementation passed to ``mjx.put_model`` ("jax"; "warp" where installed).
    """

    task_state_size = 0
    default_episode_length = 80
    default_camera = "wrist"  # the study's view of the objects
    start = START  # gripper frame position at reset, before +-3 cm of x/y noise
    marker_radius = scene.GOAL_RADIUS  # goal spheres (see ``scene.MARKER_RADIUS``)

    def __init__(
        self,
        objects=(),
        markers=("goal",),
        *,
        image_size: int = 64,
        camera: str | None = None,
        obs_mode: str = "pixels",
        render: bool | None = None,
        render_shadows: bool = True,
        episode_length: int | None = None,
        substeps: int = 8,
        impl: str = "jax",
        max_contact_points: int | None = None,
    ):
        render = check_render_args(obs_mode, OBS_MODES, render, image_size)
        substeps = core.check_int("substeps", substeps)
        if episode_length is None:
            episode_length = self.default_episode_length
        episode_length = core.check_int("episode_length", episode_length)
        camera = self.default_camera if camera is None else camera
        if camera not in CAMERAS:
            raise ValueError(f"camera must be one of {CAMERAS}, got {camera!r}")
        self.objects = tuple(objects)
        self.image_size = int(image_size)
        self.camera = camera
        self.obs_mode = obs_mode
        self.render = bool(render)
        self.render_shadows = bool(render_shadows)
        self.substeps = substeps
        self._episode_length = episode_length
        self._mj_model = scene.build_model(
            self.objects, markers, max_contact_points, self.marker_radius
        )
        self._mjx_model = mjx.put_model(self._mj_model, impl=impl)
        m = self._mj_model
        self._tcp = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, "tcp")
        self._camera_id = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_CAMERA, camera)
        self._marker = {
            name: int(m.body_mocapid[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, name)])
            for name in markers
        }
        self._obj_body = np.array(
            [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, o.name) for o in self.objects], int
        )
        self._obj_qadr = np.array([m.jnt_qposadr[m.body_jntadr[b]] for b in self._obj_body], int)
        self._obj_dadr = np.array([m.jnt_dofadr[m.body_jntadr[b]] for b in self._obj_body], int)
        self._ctrl_low = jnp.asarray(m.actuator_ctrlrange[:, 0], jnp.float32)
        self._ctrl_high = jnp.asarray(m.actuator_ctrlrange[:, 1], jnp.float32)
        self._geometry = None
        self._use_shift(None)  # envs.make(shift=...) / envs.with_shift give a shifted copy

    def _scene_roles(self, geom):
        half = scene.TABLE_HALF
        return shifts.SceneRoles(
            table=geom.drawn(["table"]),
            floor=geom.drawn(["floor"]),
            objects=geom.drawn([f"{o.name}_geom" for o in self.objects]),
            robot=geom.drawn(["palm", "wrist", "finger_left_geom", "finger_right_geom"]),
            distractors=geom.drawn([f"distractor{i}_geom" for i in range(scene.NUM_DISTRACTORS)]),
            distractor_low=(-0.7 * half[0], -0.7 * half[1], scene.DISTRACTOR_SIZE),
            distractor_high=(0.7 * half[0], 0.7 * half[1], scene.DISTRACTOR_SIZE),
            distractor_park=(0.0, 0.0, -scene.TABLE_HEIGHT - 1.0),
        )

    # ----- hooks -----------------------------------------------------------------------------
    @abc.abstractmethod
    def _init_episode(self, key, qpos, mocap_pos):
        """Task sampling: returns ``(qpos, mocap_pos, info)``."""

    @abc.abstractmethod
    def _reward(self, data, info):
        """Returns ``(reward, metrics)``; metrics must include ``success``."""

    @abc.abstractmethod
    def _task_state(self, data, info) -> jax.Array:
        """Task part of the state observation, shape ``(task_state_size,)``; lengths and
        velocities in observation units (:func:`to_obs_units`)."""

    def _physics_model(self, info):
        """The ``mjx.Model`` used for this episode (tasks may replace traced fields)."""
        return self._mjx_model

    # ----- helpers ---------------------------------------------------------------------------
    def tcp_pos(self, data) -> jax.Array:
        return data.site_xpos[self._tcp]

    def finger_gap(self, data) -> jax.Array:
        """Distance between the inner finger faces."""
        return data.qpos[3] + data.qpos[4]

    def object_pos(self, data, index=0) -> jax.Array:
        adr = jnp.asarray(self._obj_qadr)[index]
        return jax.lax.dynamic_slice(data.qpos, (adr,), (3,))

    def object_quat(self, data, index=0) -> jax.Array:
        adr = jnp.asarray(self._obj_qadr)[index] + 3
        return jax.lax.dynamic_slice(data.qpos, (adr,), (4,))

    def object_vel(self, data, index=0) -> jax.Array:
        adr = jnp.asarray(self._obj_dadr)[index]
        return jax.lax.dynamic_slice(data.qvel, (adr,), (3,))

    def marker_pos(self, data, name="goal") -> jax.Array:
        return data.mocap_pos[self._marker[name]]

    def sample_task(self, key: jax.Array):
        """The task's per-episode draw without physics: ``(qpos, mocap_pos, info)``."""
        m = self._mj_model
        qpos = jnp.asarray(m.qpos0, jnp.float32)
        mocap = m.body_mocapid >= 0
        mocap_pos = jnp.asarray(m.body_pos[mocap], jnp.float32)[np.argsort(m.body_mocapid[mocap])]
        return self._init_episode(key, qpos, mocap_pos)

    # ----- Env API ---------------------------------------------------------------------------
    @property
    def action_space(self) -> core.Space:
        return core.Space(
            (4,), jnp.float32, -1.0, 1.0, "[dx, dy, dz, grip]; values outside [-1, 1] are clipped"
        )

    @property
    def observation_space(self) -> dict[str, core.Space]:
        spaces = {"proprio": core.Space((PROPRIO_SIZE,), jnp.float32, -np.inf, np.inf)}
        if "state" in self.obs_mode:
            n = PROPRIO_SIZE + self.task_state_size
            spaces["state"] = core.Space((n,), jnp.float32, -np.inf, np.inf)
        if "pixels" in self.obs_mode:
            s = self.image_size
            spaces["pixels"] = core.Space((s, s, 3), jnp.uint8, 0, 255)
        return spaces

    def reset(self, key: jax.Array) -> core.State:
        k_arm, k_task, k_scene = jax.random.split(key, 3)
        arm = jnp.asarray(self.start) + jnp.concatenate(
            [jax.random.uniform(k_arm, (2,), minval=-0.03, maxval=0.03), jnp.zeros(1)]
        )
        open_ = jnp.full((2,), scene.FINGER_OPEN * 0.9)
        qpos, mocap_pos, info = self.sample_task(k_task)
        qpos = qpos.at[:5].set(jnp.concatenate([arm, open_]))
        model = self._physics_model(info)
        data = mjx.make_data(model).replace(
            qpos=qpos.astype(jnp.float32),
            mocap_pos=mocap_pos.astype(jnp.float32),
            ctrl=jnp.concatenate([arm, open_]).astype(jnp.float32),
        )
        data = mjx.forward(model, data)
        info = self._render_info(k_scene, info)
        _, metrics = self._reward(data, info)
        zero = jnp.zeros((), jnp.float32)
        state = core.State(data, {}, zero, zero, _f32(metrics), info)
        return self.observe(state)

    def advance(self, state: core.State, action: jax.Array) -> core.State:
        a = core.validate_action(action, self.action_space.shape)
        data = state.data
        arm = data.qpos[:3]
        target = arm + MAX_DELTA * a[:3]
        fingers = jnp.full((2,), (a[3] + 1.0) * 0.5 * scene.FINGER_OPEN)
        ctrl = jnp.clip(jnp.concatenate([target, fingers]), self._ctrl_low, self._ctrl_high)
        model = self._physics_model(state.info)
        data = data.replace(ctrl=ctrl)
        data = jax.lax.fori_loop(0, self.substeps, lambda _, d: mjx.step(model, d), data)
        reward, metrics = self._reward(data, state.info)
        state = state.replace(info=self._advance_shift(state.info))
        unstable = jnp.any(~jnp.isfinite(data.qpos)).astype(jnp.float32)
        return state.replace(
            data=data,
            reward=jnp.asarray(reward, jnp.float32),
            done=unstable,
            metrics=_f32(metrics),
        )

    def observe(self, state: core.State) -> core.State:
        data = state.data
        proprio = to_obs_units(
            jnp.concatenate([self.tcp_pos(data), data.qvel[:3], data.qpos[3:5]])
        ).astype(jnp.float32)
        obs = {"proprio": proprio}
        if "state" in self.obs_mode:
            task = self._task_state(data, state.info)
            obs["state"] = jnp.concatenate([proprio, task]).astype(jnp.float32)
        if "pixels" in self.obs_mode:
            obs["pixels"] = self.render_pixels(data, state.info)
        return state.replace(obs=obs)


def _f32(tree):
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), tree)


def tanh_reward(dist, scale: float = 10.0):
    """Dense shaping term in (0, 1]: ``1 - tanh(scale * dist)``."""
    return 1.0 - jnp.tanh(scale * dist)
