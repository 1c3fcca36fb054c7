"""``DMCEnv``: a Control Suite task as an MJX env rendered by ``pvm_mbrl.render``.

The model is the suite's own MJCF, read from the installed ``dm-control`` package
(``dm_control/suite/<domain>.xml`` and its ``common/`` includes) and changed only where MJX needs it
(:func:`load_model`; each domain lists its own changes). dm-control is never called inside
``reset`` or ``step``; the tests use it as the oracle for rewards, physics and images.

One control step sets ``ctrl`` from the action (``[-1, 1]`` mapped linearly onto the actuators'
``ctrlrange``, which is ``[-1, 1]`` in every task here), runs ``n_sub_steps`` physics steps and
then ``mjx.forward``, so that positions, velocities and their sensors belong to the new state as
they do after dm-control's step (which ends with ``mj_step1``); acceleration-stage sensors
(touch) keep the values of the last physics step, as ``mj_step1`` leaves them. Rewards are
computed on that state.
An episode is ``time_limit / control_timestep`` control steps (1,000 in every task here);
``envs.make`` divides it by the action repeat. No task terminates early; a state that is no
longer finite ends the episode with ``done`` (dm-control raises a ``PhysicsError`` there).

Observations: ``proprio`` float32 is the suite's observation dict flattened in its order (what
the suite calls the proprioceptive / state observation), ``state`` the same vector when
``obs_mode`` includes ``"state"``, ``pixels`` uint8 ``[H, W, 3]`` from camera ``camera``
(default: the one DreamerV3 uses, id 0).
"""

from __future__ import annotations

import abc
import importlib.util
import math
import pathlib
import xml.etree.ElementTree as ET

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from pvm_mbrl import render as render_lib
from pvm_mbrl import shifts
from pvm_mbrl.envs import core
from pvm_mbrl.envs.mjx import mjx
from pvm_mbrl.envs.rendered import RenderedEnv, check_render_args

OBS_MODES = ("pixels", "state", "pixels+state")
NUM_DISTRACTORS = 4
DISTRACTOR_GROUP = 5  # hidden by default in MuJoCo's viewers; drawn by us only under a shift
DISTRACTOR_SIZE = 0.08


def suite_dir() -> pathlib.Path:
    """The ``suite`` folder of the installed dm-control package (found without importing it,
    which would start its OpenGL set-up); a clear error when dm-control is not installed."""
    spec = importlib.util.find_spec("dm_control")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "the dmc/ tasks load the Control Suite's MJCF from the dm-control package, which is "
            "not installed: pip install 'pvm_mbrl[dmc]'"
        )
    return pathlib.Path(next(iter(spec.submodule_search_locations))) / "suite"


def suite_look() -> dict[str, tuple[float, ...]]:
    """The suite's grid floor and sky colours (``rgb1``/``rgb2`` of the ``grid`` and ``skybox``
    textures in its ``common/`` files), which the compiled model keeps only as bitmaps."""
    folder = suite_dir() / "common"
    out = {}
    for file, name in (("materials.xml", "grid"), ("skybox.xml", "skybox")):
        tex = ET.parse(folder / file).getroot().find(f".//texture[@name='{name}']")
        for k in ("rgb1", "rgb2"):
            out[f"{name}_{k}"] = tuple(float(v) for v in tex.get(k).split())
    return out


def load_model(domain: str, edit=None) -> mujoco.MjModel:
    """The suite's model ``<domain>.xml`` (with its ``common/`` includes) with the changes
    every dmc/ task makes for MJX:

    - ``energy`` is disabled (MJX does not compute it; no reward or observation reads it);
    - ``NUM_DISTRACTORS`` sphere geoms are added in a static body at the end of the world body
      (group ``DISTRACTOR_GROUP``, no contacts, no mass), so the ``distractors`` shift has geoms
      to draw; they do not change the ids of the suite's own geoms or bodies, or the dynamics;
    - ``edit(root)``, when given, changes the parsed MJCF (``xml.etree`` root) in place first.
    """
    folder = suite_dir()
    path = folder / f"{domain}.xml"
    if not path.is_file():
        raise ValueError(f"dm-control has no suite model {path.name} (in {folder})")
    assets = {f"./common/{f.name}": f.read_bytes() for f in (folder / "common").glob("*.xml")}
    root = ET.fromstring(path.read_text())
    if edit is not None:
        edit(root)
    world = root.find("worldbody")
    body = ET.SubElement(world, "body", name="distractors", pos="0 0 0")
    for i in range(NUM_DISTRACTORS):
        ET.SubElement(
            body,
            "geom",
            name=f"distractor{i}_geom",
            type="sphere",
            size=str(DISTRACTOR_SIZE),
            pos=f"0 0 {-20 - i}",
            group=str(DISTRACTOR_GROUP),
            contype="0",
            conaffinity="0",
            mass="0",
            rgba="0.8 0.3 0.3 1",
        )
    m = mujoco.MjModel.from_xml_string(ET.tostring(root, encoding="unicode"), assets)
    m.opt.enableflags &= ~int(mujoco.mjtEnableBit.mjENBL_ENERGY)
    return m


class DMCEnv(RenderedEnv):
    """Base class of the dmc/ tasks. A domain subclass sets ``domain``, ``time_limit``,
    ``control_timestep`` and the geom roles, and implements ``_init_episode``, ``_reward`` and
    ``_observation``; tasks of a domain are its constructor arguments.

    Args:
      image_size: square image side in pixels (64 for DMC-Vision).
      camera: camera id or name; default ``default_camera`` (DreamerV3's choice).
      obs_mode: "pixels", "state" or "pixels+state".
      render: whether to render; default: when ``obs_mode`` includes pixels.
      render_shadows: shadow rays in the renderer.
      split: only "train" (the suite has no held-out split).
      impl: MJX implementation passed to ``mjx.put_model``.
    """

    domain: str = ""
    time_limit: float = 20.0  # seconds per episode (the suite's default for the domain)
    control_timestep: float | None = None  # None: one physics step per control step
    default_camera: int = 0
    distractor_group = DISTRACTOR_GROUP
    # World-frame box where a shown distractor's centre is placed (in front of camera 0).
    distractor_low: tuple[float, float, float] = (-1.0, 0.5, 0.2)
    distractor_high: tuple[float, float, float] = (1.0, 1.5, 1.2)
    robot_geoms: tuple[str, ...] = ()  # the agent's body (``SceneRoles.robot``)
    object_geoms: tuple[str, ...] = ()  # task objects: targets, balls (``SceneRoles.objects``)
    floor_geoms: tuple[str, ...] = ("floor",)

    def __init__(
        self,
        *,
        image_size: int = 64,
        camera: int | str | None = None,
        obs_mode: str = "pixels",
        render: bool | None = None,
        render_shadows: bool = True,
        split: str = "train",
        impl: str = "jax",
    ):
        render = check_render_args(obs_mode, OBS_MODES, render, image_size)
        if split != "train":
            raise ValueError(f"the dmc/ tasks have only the split 'train', got {split!r}")
        self.image_size = int(image_size)
        self.obs_mode = obs_mode
        self.render = bool(render)
        self.render_shadows = bool(render_shadows)
        m = self._mj_model = self._adapt_model(load_model(self.domain, self._edit_xml))
        self._mjx_model = mjx.put_model(m, impl=impl)
        camera = self.default_camera if camera is None else camera
        self._camera_id = _camera_id(m, camera)
        self.camera = camera
        dt = float(m.opt.timestep)
        control = self.control_timestep or dt
        self.n_sub_steps = _whole(control / dt, "control_timestep / timestep")
        self._episode_length = _whole(self.time_limit / control, "time_limit / control_timestep")
        acc = m.sensor_needstage == int(mujoco.mjtStage.mjSTAGE_ACC)
        self._acc_sensors = np.repeat(acc, m.sensor_dim) if m.nsensor else np.zeros(0, bool)
        self._ctrl_low = jnp.asarray(m.actuator_ctrlrange[:, 0], jnp.float32)
        self._ctrl_high = jnp.asarray(m.actuator_ctrlrange[:, 1], jnp.float32)
        self._geometry = None
        self._look = suite_look()
        self._use_shift(None)  # envs.make(shift=...) / envs.with_shift give a shifted copy
        self._obs_size = None

    # ----- hooks -----------------------------------------------------------------------------
    def _edit_xml(self, root: ET.Element) -> None:
        """Domain-specific MJCF changes for MJX, made in place (listed in its docstring)."""

    def _adapt_model(self, m: mujoco.MjModel) -> mujoco.MjModel:
        """Domain-specific changes for MJX (listed in the domain's docstring)."""
        return m

    @abc.abstractmethod
    def _init_episode(self, key):
        """The suite's initial-state distribution: ``(qpos, qvel, info)``; ``info`` holds the
        episode's task state (e.g. a target), traced."""

    @abc.abstractmethod
    def _reward(self, data, info) -> jax.Array:
        """The suite's reward of the (forwarded) state ``data``."""

    @abc.abstractmethod
    def _observation(self, data, info) -> dict[str, jax.Array]:
        """The suite's observation dict, in its order."""

    def _episode_data(self, data, info):
        """``data`` with the episode's task state from ``info`` written into it (e.g. a target
        as ``mocap_pos``). Task state lives in ``mjx.Data``, never in model fields, so one
        ``mjx.Model`` serves every env of a batch."""
        return data

    def sync_oracle(self, physics, info) -> None:
        """Set the task state ``info`` in a dm-control ``physics`` (for the cross-checks)."""

    # ----- Env API ---------------------------------------------------------------------------
    @property
    def episode_counts_frames(self) -> bool:
        """The episode length is fixed in control steps (frames), whatever the action repeat."""
        return True

    @property
    def action_space(self) -> core.Space:
        n = int(self._mj_model.nu)
        return core.Space(
            (n,), jnp.float32, -1.0, 1.0, "actuator controls; values outside [-1, 1] are clipped"
        )

    @property
    def observation_space(self) -> dict[str, core.Space]:
        if self._obs_size is None:
            shapes = jax.eval_shape(self.reset, jax.random.PRNGKey(0)).obs
            self._obs_size = int(shapes["proprio"].shape[0])
        vec = core.Space((self._obs_size,), jnp.float32, -np.inf, np.inf)
        spaces = {"proprio": vec}
        if "state" in self.obs_mode:
            spaces["state"] = vec
        if "pixels" in self.obs_mode:
            s = self.image_size
            spaces["pixels"] = core.Space((s, s, 3), jnp.uint8, 0, 255)
        return spaces

    def reset(self, key: jax.Array) -> core.State:
        k_task, k_scene = jax.random.split(key)
        qpos, qvel, info = self._init_episode(k_task)
        model = self._mjx_model
        data = mjx.make_data(model).replace(
            qpos=jnp.asarray(qpos, jnp.float32), qvel=jnp.asarray(qvel, jnp.float32)
        )
        data = mjx.forward(model, self._episode_data(data, info))
        info = self._render_info(k_scene, info)
        zero = jnp.zeros((), jnp.float32)
        return self.observe(core.State(data, {}, zero, zero, {}, info))

    def advance(self, state: core.State, action: jax.Array) -> core.State:
        a = core.validate_action(action, self.action_space.shape)
        ctrl = self._ctrl_low + (a + 1.0) * 0.5 * (self._ctrl_high - self._ctrl_low)
        model = self._mjx_model
        data = state.data.replace(ctrl=ctrl)
        stepped = jax.lax.fori_loop(0, self.n_sub_steps, lambda _, d: mjx.step(model, d), data)
        data = mjx.forward(model, stepped)
        if self._acc_sensors.any():
            sensordata = jnp.where(self._acc_sensors, stepped.sensordata, data.sensordata)
            data = data.replace(sensordata=sensordata)
        reward = jnp.asarray(self._reward(data, state.info), jnp.float32)
        unstable = ~(jnp.all(jnp.isfinite(data.qpos)) & jnp.all(jnp.isfinite(data.qvel)))
        return state.replace(
            data=data,
            reward=jnp.where(unstable, 0.0, reward),
            done=unstable.astype(jnp.float32),
            info=self._advance_shift(state.info),
        )

    def observe(self, state: core.State) -> core.State:
        parts = self._observation(state.data, state.info).values()
        vec = jnp.concatenate([jnp.ravel(jnp.asarray(p, jnp.float32)) for p in parts])
        obs = {"proprio": vec}
        if "state" in self.obs_mode:
            obs["state"] = vec
        if "pixels" in self.obs_mode:
            obs["pixels"] = self.render_pixels(state.data, state.info)
        return state.replace(obs=obs)

    def scene_params(self, key: jax.Array):
        """The default look with the suite's grid floor (a checker of its two colours, 0.5 m
        squares as its 2 x 2 checker texture repeated once per metre) and its gradient sky."""
        p = super().scene_params(key)
        look, m = self._look, self._mj_model
        grid = [
            self._geometry.index(int(g))
            for g in self._geometry.geom_ids
            if m.geom_matid[g] >= 0
            and mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_MATERIAL, m.geom_matid[g]) == "grid"
        ]
        if grid:
            idx = np.array(grid)
            p = p.replace(
                geom_rgb=p.geom_rgb.at[idx].set(jnp.asarray(look["grid_rgb1"])),
                texture_id=p.texture_id.at[idx].set(render_lib.TEXTURES["checker"]),
                texture_rgb=p.texture_rgb.at[idx].set(jnp.asarray(look["grid_rgb2"])),
                texture_scale=p.texture_scale.at[idx].set(2.0),
                texture_mix=p.texture_mix.at[idx].set(1.0),
            )
        return p.replace(
            background_texture_id=jnp.asarray(render_lib.BACKGROUNDS["gradient"], jnp.int32),
            background_rgb=jnp.asarray(look["skybox_rgb2"], jnp.float32),
            background_rgb2=jnp.asarray(look["skybox_rgb1"], jnp.float32),
        )

    def _scene_roles(self, geom):
        """The floor plays the table's part (the surface the task happens on: the ``texture``
        preset's dark wood and ``surface_texture`` re-texture it)."""
        return shifts.SceneRoles(
            table=geom.drawn(self.floor_geoms),
            floor=np.zeros(0, np.int32),
            objects=geom.drawn(self.object_geoms),
            robot=geom.drawn(self.robot_geoms),
            distractors=geom.drawn([f"distractor{i}_geom" for i in range(NUM_DISTRACTORS)]),
            distractor_low=self.distractor_low,
            distractor_high=self.distractor_high,
            distractor_park=(0.0, 0.0, -20.0),
        )

    # ----- helpers ---------------------------------------------------------------------------
    def host_data(self, qpos, qvel, info, ctrl=None) -> mujoco.MjData:
        """C MuJoCo ``MjData`` of this model in the state ``qpos, qvel`` with the task state
        ``info`` (one episode, not batched) and ``ctrl``, forwarded: for checks against
        dm-control and ``mujoco.Renderer`` (``mjx.put_data`` moves it to the device)."""
        m = self._mj_model
        d = mujoco.MjData(m)
        d.qpos[:], d.qvel[:] = np.asarray(qpos), np.asarray(qvel)
        if ctrl is not None:
            d.ctrl[:] = np.asarray(ctrl)
        if m.nmocap:
            dev = mjx.make_data(self._mjx_model).replace(qpos=jnp.asarray(qpos, jnp.float32))
            dev = self._episode_data(dev, jax.tree.map(jnp.asarray, info))
            d.mocap_pos[:], d.mocap_quat[:] = np.asarray(dev.mocap_pos), np.asarray(dev.mocap_quat)
        mujoco.mj_forward(m, d)
        return d

    def name2id(self, kind: str, name: str) -> int:
        """Model id of the ``kind`` ("body", "geom", "joint", "site", "sensor") ``name``."""
        obj = getattr(mujoco.mjtObj, f"mjOBJ_{kind.upper()}")
        i = mujoco.mj_name2id(self._mj_model, obj, name)
        if i < 0:
            raise ValueError(f"{self.domain} has no {kind} named {name!r}")
        return i

    def sensor(self, data, name: str) -> jax.Array:
        """``sensordata`` of the sensor ``name``."""
        i = self.name2id("sensor", name)
        m = self._mj_model
        adr, dim = int(m.sensor_adr[i]), int(m.sensor_dim[i])
        return data.sensordata[adr : adr + dim]


def _camera_id(m: mujoco.MjModel, camera) -> int:
    names = [mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(m.ncam)]
    if isinstance(camera, str):
        if camera not in names:
            raise ValueError(f"unknown camera {camera!r}; the model has {names}")
        return names.index(camera)
    if not 0 <= int(camera) < m.ncam:
        raise ValueError(f"camera id {camera} out of range [0, {m.ncam}) (cameras {names})")
    return int(camera)


def _whole(x: float, what: str) -> int:
    n = round(x)
    if n < 1 or not math.isclose(x, n, rel_tol=1e-6):
        raise ValueError(f"{what} must be a whole number >= 1, got {x}")
    return int(n)
