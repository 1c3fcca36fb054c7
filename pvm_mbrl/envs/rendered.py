"""``RenderedEnv``: what every env that draws its pixels with ``envs.render`` shares.

It keeps the static ``SceneGeometry`` and ``shifts.SceneRoles`` of the model, samples each
env's shift state at reset and renders the camera's view with the episode's ``SceneParams``
(``state.info["scene"]``) and, under a visual shift, ``state.info["shift"]``. A subclass sets
``_mj_model``, ``_camera_id``, ``image_size``, ``render`` and ``render_shadows`` before calling
:meth:`set_shift`, and says which geoms play which part in :meth:`_scene_roles`.
"""

from __future__ import annotations

import abc

import jax

from pvm_mbrl.envs import core


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

    def set_shift(self, shift) -> None:
        """Render under ``shift`` (a preset name, list of presets or ``shifts.ShiftBatch``;
        ``None`` for none). Changes this object: use ``shifts.apply`` for a shifted copy."""
        from pvm_mbrl import shifts

        if shift is not None and not isinstance(shift, shifts.ShiftBatch):
            shift = shifts.batch(shift)
        if shift is not None and not self.render:
            raise ValueError("visual shifts need a rendering env (obs_mode with pixels)")
        self.shift = shift
        if not self.render:
            self._geometry = None
            return
        from pvm_mbrl.envs import render as render_lib

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
        from pvm_mbrl.envs import render as render_lib

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
        from pvm_mbrl import shifts

        return {**info, "shift": shifts.advance(self.shift.spec, info["shift"])}

    def _sample_shift(self, key):
        import jax.numpy as jnp

        from pvm_mbrl import shifts

        row = shifts.env_index() % len(self.shift.names)
        sev, drift = jnp.asarray(self.shift.severity), jnp.asarray(self.shift.drift)
        return shifts.sample(self.shift.spec, key, sev[row], drift[row])

    def render_pixels(self, data, info) -> jax.Array:
        """uint8 [H, W, 3] image from this env's camera with the scene params ``info["scene"]``
        and, when the env has a shift, the shift state ``info["shift"]``."""
        return self.render_output(data, info).rgb

    def render_output(self, data, info):
        """The ``envs.render.RenderOutput`` (rgb, depth, segmentation) behind
        :meth:`render_pixels`: the same camera, scene parameters and shift."""
        from pvm_mbrl import shifts
        from pvm_mbrl.envs import render as render_lib

        i = self._camera_id
        args = (
            data.geom_xpos,
            data.geom_xmat,
            data.cam_xpos[i],
            data.cam_xmat[i].reshape(3, 3),
        )
        size = dict(height=self.image_size, width=self.image_size, shadows=self.render_shadows)
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
