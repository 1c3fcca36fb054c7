"""``Highway``: drive a closed-loop three-lane highway in traffic from a front camera.

The physics is ``driving.sim`` (kinematic bicycle ego, IDM traffic, reward); this module is its
rendering layer: the scene of ``driving.scene`` drawn by ``pvm_mbrl.render`` from a driver's-eye
camera (90 degree field of view, as CARLA's default), under the same visual shifts as every task.

Action ``[steer, throttle/brake]`` in [-1, 1] at 10 Hz. An episode is 1,000 control steps
(100 s; ``envs.make`` divides it by the action repeat) and ends early at a collision or a road
exit (with the ``crash_penalty``). Observations: ``pixels`` uint8 ``[H, W, 3]``, ``proprio``
(speed / target speed, the last action) and, with ``obs_mode`` including ``"state"``,
``state`` (``sim.state_obs``: lane and heading errors, curvature ahead, gaps to the nearest
cars). Metrics: ``crashed``, ``offroad``, ``speed`` (m/s) and ``success`` (1 while the episode is
clean: the evaluation's ``success_end`` is the fraction of episodes that finish without a
collision or a road exit). Splits (non-visual held-out conditions): ``"train"``, ``"dense"``
(twice the traffic) and ``"curvy"`` (a loop with 100-130 m bends).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from pvm_mbrl import render as render_lib
from pvm_mbrl import shifts
from pvm_mbrl.envs import core
from pvm_mbrl.envs.driving import road as rd
from pvm_mbrl.envs.driving import scene
from pvm_mbrl.envs.driving import sim as sim_lib
from pvm_mbrl.envs.rendered import RenderedEnv, check_render_args

OBS_MODES = ("pixels", "state", "pixels+state")
CAMERAS = ("front",)
LENGTH_SCALE = 50.0  # metres: the scene size the shift families' lengths are scaled to
SKY_DISTANCE = 400.0  # metres at which the fog covers the sky


class Highway(RenderedEnv):
    """The highway task (see the module docstring).

    Args:
      image_size: square image side in pixels (64 default; 224 as the reference study).
      camera: only ``"front"``.
      obs_mode: "pixels", "state" or "pixels+state".
      split: "train", "dense" or "curvy".
      render: whether to render; default: when ``obs_mode`` includes pixels.
      render_shadows: shadow rays in the renderer (the cars' shadows on the road).
      num_cars, target_speed, crash_penalty: ``sim.Config`` settings (None: the split's).
    """

    default_camera = "front"

    def __init__(
        self,
        *,
        image_size: int = 64,
        camera: str = "front",
        obs_mode: str = "pixels",
        split: str = "train",
        render: bool | None = None,
        render_shadows: bool = True,
        num_cars: int | None = None,
        target_speed: float = 25.0,
        crash_penalty: float = 50.0,
    ):
        render = check_render_args(obs_mode, OBS_MODES, render, image_size)
        if camera not in CAMERAS:
            raise ValueError(f"camera must be one of {CAMERAS}, got {camera!r}")
        self.config = sim_lib.Config(
            split=split, num_cars=num_cars, target_speed=target_speed, crash_penalty=crash_penalty
        )
        self.road = self.config.road
        self.image_size, self.obs_mode, self.camera = int(image_size), obs_mode, camera
        self.render, self.render_shadows = bool(render), bool(render_shadows)
        self._mj_model = scene.build_model(self.config.cars)
        self._mjx_model = None
        self._camera_id = 0
        self._episode_length = self.config.episode_steps
        self.sky_distance = SKY_DISTANCE
        self._use_shift(None)  # envs.make(shift=...) / envs.with_shift give a shifted copy

    # ----- rendering layer -------------------------------------------------------------------
    def _use_shift(self, shift) -> None:
        super()._use_shift(shift)
        self.paint = None
        if self.render:
            self.paint = scene.make_paint(self.road, self._geometry.index("ground"))

    def _scene_roles(self, geom):
        """The road surface plays the table's part (texture shifts re-surface it) and the
        traffic cars the objects'; the ego is not in view."""
        n = self.config.cars
        return shifts.SceneRoles(
            table=geom.drawn(["ground"]),
            floor=np.zeros(0, np.int32),
            objects=geom.drawn([f"car{i}" for i in range(n)]),
            robot=np.zeros(0, np.int32),
            length_scale=LENGTH_SCALE,
        )

    def scene_params(self, key):
        """Midday: a high sun, a blue gradient sky and a light haze towards the horizon."""
        p = super().scene_params(key)
        f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
        return p.replace(
            light_dir=f32([0.4, 0.3, -1.0]),
            light_intensity=f32(0.85),
            ambient=f32([0.35, 0.35, 0.38]),
            specular=f32(0.15),
            background_texture_id=jnp.asarray(render_lib.BACKGROUNDS["gradient"], jnp.int32),
            background_rgb=f32([0.75, 0.8, 0.85]),
            background_rgb2=f32([0.3, 0.5, 0.85]),
            fog_rgb=f32([0.75, 0.8, 0.85]),
            fog_density=f32(0.0015),
        )

    def _frame(self, data):
        s, _, _ = rd.project(self.road, jnp.stack([data.ego.x, data.ego.y]))
        pos, mat = scene.poses(self.road, data.traffic, s)
        cam_pos, cam_mat = sim_lib.ego_camera(data)
        return pos, mat, cam_pos, cam_mat

    # ----- Env API ---------------------------------------------------------------------------
    @property
    def episode_counts_frames(self) -> bool:
        return True

    @property
    def action_space(self) -> core.Space:
        return core.Space(
            (2,), jnp.float32, -1.0, 1.0, "[steer, throttle/brake]; values outside are clipped"
        )

    @property
    def observation_space(self) -> dict[str, core.Space]:
        spaces = {"proprio": core.Space((3,), jnp.float32, -np.inf, np.inf)}
        if "state" in self.obs_mode:
            spaces["state"] = core.Space((sim_lib.OBS_SIZE,), jnp.float32, -np.inf, np.inf)
        if "pixels" in self.obs_mode:
            s = self.image_size
            spaces["pixels"] = core.Space((s, s, 3), jnp.uint8, 0, 255)
        return spaces

    def reset(self, key: jax.Array) -> core.State:
        k_sim, k_scene = jax.random.split(key)
        data = sim_lib.reset(k_sim, self.config)
        info = self._render_info(k_scene, {})
        zero = jnp.zeros((), jnp.float32)
        return self.observe(core.State(data, {}, zero, zero, self._metrics(data), info))

    def advance(self, state: core.State, action: jax.Array) -> core.State:
        a = core.validate_action(action, self.action_space.shape)
        data = sim_lib.step(state.data, a, self.config)
        return state.replace(
            data=data,
            reward=data.reward,
            done=data.done.astype(jnp.float32),
            metrics=self._metrics(data),
            info=self._advance_shift(state.info),
        )

    def observe(self, state: core.State) -> core.State:
        data = state.data
        speed = data.ego.v / self.config.target_speed
        obs = {"proprio": jnp.concatenate([speed[None], data.prev_action]).astype(jnp.float32)}
        if "state" in self.obs_mode:
            obs["state"] = sim_lib.state_obs(data, self.config)
        if "pixels" in self.obs_mode:
            obs["pixels"] = self.render_pixels(data, state.info)
        return state.replace(obs=obs)

    def _metrics(self, data) -> dict[str, jax.Array]:
        f32 = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
        return {
            "crashed": f32(data.crashed),
            "offroad": f32(data.offroad),
            "speed": f32(data.ego.v),
            "success": f32(~data.done),
        }
