"""The rendering layer of the tasks: ``RenderedEnv`` and :func:`with_shift`.

A task is physics plus the roles of its scene's parts (:meth:`RenderedEnv._scene_roles`);
``RenderedEnv`` owns the rest of what reaches the pixels: the camera, the image size, the
static ``render.SceneGeometry``, the episode's ``render.SceneParams`` (``state.info["scene"]``)
and the visual shift (``state.info["shift"]``, sampled at reset, advanced every control step).
A subclass sets ``_mj_model``, ``_camera_id``, ``image_size``, ``render`` and
``render_shadows``, then calls :meth:`RenderedEnv._use_shift` once in its constructor.

A shift is chosen in one way: ``envs.make(..., shift=...)``, or :func:`with_shift` for a shifted
copy of an env that exists. Nothing changes an env in place. Env ``i`` of a ``BatchEnv`` takes
preset ``i % len(presets)``: the env's severities and drift reach it as batched data
(:meth:`RenderedEnv.env_params`, row ``i`` handed over by ``BatchEnv.reset``), in the manner of
Brax's and MuJoCo Playground's domain randomisation; an env outside a batch takes preset 0.

Imports run one way: ``render`` <- ``shifts`` <- ``envs``.
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from pvm_mbrl import render as render_lib
from pvm_mbrl import shifts
from pvm_mbrl.envs import core
from pvm_mbrl.envs.wrappers import rewrap


def check_render_args(obs_mode: str, modes: tuple[str, ...], render, image_size) -> bool:
    """Validate the observation and rendering arguments shared by the rendered envs; returns
    ``render`` resolved (default: whether ``obs_mode`` includes pixels)."""
    if obs_mode not in modes:
        raise ValueError(f"obs_mode must be one of {modes}, got {obs_mode!r}")
    if render is None:
        render = "pixels" in obs_mode
    if "pixels" in obs_mode and not render:
        raise ValueError(f"obs_mode={obs_mode!r} needs render=True; use obs_mode='state'")
    core.check_int("image_size", image_size, minimum=8)
    return bool(render)


class RenderedEnv(core.Env):
    """Mixin of the rendering half of an env (see the module docstring)."""

    distractor_group = 2  # model geom group of the distractor geoms (drawn only under a shift)
    paint = None  # a scene's own surface pattern (render.render's ``paint``): a painted road
    sky_distance = render_lib.SKY_DISTANCE  # metres at which the fog covers the sky

    def _use_shift(self, shift) -> None:
        """Render under ``shift`` (a preset name, list of presets or ``shifts.ShiftBatch``;
        ``None`` or ``"id"`` for the default look). Only for the constructor (with ``None``) and
        :func:`with_shift`'s copy."""
        if shift is not None and not isinstance(shift, shifts.ShiftBatch):
            shift = shifts.batch(shift)
        if shift is not None and not shift.spec.families:
            shift = None  # "id" (every env unshifted) is the default look
        if shift is not None and not self.render:
            raise ValueError("visual shifts need a rendering env (obs_mode with pixels)")
        self.shift = shift
        self._shift_row = None  # this env's (severity, drift), set by with_env_params
        if not self.render:
            self._geometry = None
            return
        # Distractors are drawn only when a shift can show them.
        with_distractors = shift is not None and "distractors" in shift.spec.families
        groups = tuple(g for g in (0, 1, 2) if g != self.distractor_group)
        groups += (self.distractor_group,) if with_distractors else ()
        self._geometry = render_lib.SceneGeometry.from_model(self._mj_model, geom_groups=groups)
        self._roles = self._scene_roles(self._geometry)

    @abc.abstractmethod
    def _scene_roles(self, geom):
        """The ``shifts.SceneRoles`` of the drawn geoms ``geom``."""

    def scene_params(self, key: jax.Array):
        """Visual properties of one episode (default look). A visual-shift module overrides it."""
        del key
        return render_lib.SceneParams.default(self._geometry, self._camera_id)

    def _render_info(self, key: jax.Array, info: dict) -> dict:
        """``info`` with the episode's scene parameters and shift state (at reset)."""
        if self.render:
            info = {**info, "scene": self.scene_params(key)}
        if self.shift is not None:
            info = {**info, "shift": self._sample_shift(jax.random.fold_in(key, 1))}
        return info

    def _advance_shift(self, info: dict) -> dict:
        """``info`` with the shift state moved on by one control step."""
        if self.shift is None:
            return info
        return {**info, "shift": shifts.advance(self.shift.spec, info["shift"])}

    def env_params(self, num_envs: int):
        """Each env's shift row ``(severity, drift)``, env ``i`` taking preset
        ``i % len(presets)`` (None without a shift)."""
        if self.shift is None:
            return None
        rows = np.arange(num_envs) % len(self.shift.names)
        sev, drift = np.asarray(self.shift.severity), np.asarray(self.shift.drift)
        return jnp.asarray(sev[rows]), jnp.asarray(drift[rows])

    def with_env_params(self, params):
        if self.shift is None:
            raise TypeError(f"{type(self).__name__} without a shift takes no per-env parameters")
        out = copy.copy(self)
        out._shift_row = params
        return out

    def _sample_shift(self, key):
        row = self._shift_row
        if row is None:  # outside a batch: the first preset
            row = jnp.asarray(self.shift.severity[0]), jnp.asarray(self.shift.drift[0])
        return shifts.sample(self.shift.spec, key, *row)

    def _frame(self, data):
        """``(geom_xpos, geom_xmat, cam_pos, cam_mat)`` of the state ``data`` (an ``mjx.Data``
        here; a task whose physics is not MuJoCo places its scene's geoms itself)."""
        i = self._camera_id
        return data.geom_xpos, data.geom_xmat, data.cam_xpos[i], data.cam_xmat[i].reshape(3, 3)

    def render_pixels(self, data, info) -> jax.Array:
        """uint8 [H, W, 3] image from this env's camera with the scene params ``info["scene"]``
        and, when the env has a shift, the shift state ``info["shift"]``."""
        return self.render_output(data, info).rgb

    def render_output(self, data, info):
        """The ``pvm_mbrl.render.RenderOutput`` (rgb, depth, segmentation) behind
        :meth:`render_pixels`: the same camera, scene parameters and shift."""
        args = self._frame(data)
        size = dict(
            height=self.image_size,
            width=self.image_size,
            shadows=self.render_shadows,
            paint=self.paint,
            sky_distance=self.sky_distance,
        )
        if self.shift is None:
            return render_lib.render(self._geometry, info["scene"], *args, **size)
        return shifts.render_shifted(
            self._geometry,
            self._roles,
            self.shift.spec,
            info["shift"],
            info["scene"],
            *args,
            **size,
        )


def with_shift(
    env, presets: str | shifts.Preset | Sequence[str | shifts.Preset] | shifts.ShiftBatch
):
    """A copy of ``env`` (its wrappers and task) whose task renders under ``presets``.

    One preset applies to every env; a list gives env ``i`` of a batch the preset
    ``i % len(presets)``, so one compiled step evaluates a whole ladder. The batch size must be
    a multiple of the number of presets. ``env`` itself is left unchanged.
    """
    shift = presets if isinstance(presets, shifts.ShiftBatch) else shifts.batch(presets)
    chain = []
    inner = env
    while hasattr(inner, "env"):
        chain.append(inner)
        inner = inner.env
    if not isinstance(inner, RenderedEnv):
        raise TypeError(
            f"{type(inner).__name__} does not support visual shifts (not a RenderedEnv)"
        )
    num_envs = next((w.num_envs for w in chain if hasattr(w, "num_envs")), 1)
    n = len(shift.names)
    if num_envs % n:
        raise ValueError(
            f"{n} presets cannot be spread over {num_envs} envs: num_envs must be a multiple of {n}"
        )
    out = copy.copy(inner)
    out._use_shift(shift)
    return rewrap(chain, out)
