"""Pinhole camera rays with MuJoCo's conventions.

The camera looks along its frame's -z with y up and x right (``mjx.Data.cam_xmat`` columns are the
camera axes in the world). Rays pass through pixel centres; the vertical field of view is ``fovy``
and the horizontal extent follows from ``width / height``, as in ``mujoco.Renderer``. Row 0 is the
top of the image.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def axis_angle_to_mat(v: jnp.ndarray) -> jnp.ndarray:
    """Rotation matrix of an axis-angle vector (Rodrigues), smooth at zero."""
    theta = jnp.sqrt(jnp.sum(v * v))
    k = jnp.array(
        [[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]],
        dtype=v.dtype,
    )
    a = jnp.sinc(theta / jnp.pi)  # sin(theta) / theta
    b = 0.5 * jnp.sinc(theta / (2 * jnp.pi)) ** 2  # (1 - cos(theta)) / theta^2
    return jnp.eye(3, dtype=v.dtype) + a * k + b * (k @ k)


def apply_offsets(
    cam_pos: jnp.ndarray, cam_mat: jnp.ndarray, pos_offset: jnp.ndarray, rot_offset: jnp.ndarray
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Moves the camera by ``pos_offset`` and turns it by ``rot_offset``, both in its own frame."""
    cam_pos = cam_pos + cam_mat @ pos_offset
    cam_mat = cam_mat @ axis_angle_to_mat(rot_offset)
    return cam_pos, cam_mat


def camera_frame_dirs(height: int, width: int, fovy) -> tuple[jnp.ndarray, ...]:
    """Unit ray directions in the camera frame as three ``[H*W]`` component arrays."""
    half = jnp.tan(jnp.deg2rad(jnp.asarray(fovy, jnp.float32)) * 0.5)
    aspect = width / height
    u = (jnp.arange(width, dtype=jnp.float32) + 0.5) / width * 2.0 - 1.0
    v = 1.0 - (jnp.arange(height, dtype=jnp.float32) + 0.5) / height * 2.0
    x = jnp.broadcast_to((u * half * aspect)[None, :], (height, width)).reshape(-1)
    y = jnp.broadcast_to((v * half)[:, None], (height, width)).reshape(-1)
    inv = 1.0 / jnp.sqrt(x * x + y * y + 1.0)
    return x * inv, y * inv, -inv


def world_dirs(height: int, width: int, fovy, cam_mat: jnp.ndarray) -> tuple[jnp.ndarray, ...]:
    """Unit world-frame ray directions as three ``[H*W]`` component arrays.

    The rotation is a matrix product, which XLA materialises once instead of recomputing it in
    every fused consumer (each intersection kernel reads the directions once per geom).
    """
    cam = jnp.stack(camera_frame_dirs(height, width, fovy), axis=0)  # [3, N]
    world = jnp.dot(cam_mat, cam, precision=jax.lax.Precision.HIGHEST)
    return world[0], world[1], world[2]


def camera_rays(
    cam_pos: jnp.ndarray,
    cam_mat: jnp.ndarray,
    fovy,
    *,
    height: int,
    width: int,
    params=None,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Ray origins and unit directions, each ``[H, W, 3]``, for a camera.

    ``cam_pos``/``cam_mat`` are ``mjx.Data.cam_xpos[i]`` and ``cam_xmat[i].reshape(3, 3)``; with
    ``params`` (a ``SceneParams``) its camera offsets and ``fovy`` are applied exactly as
    ``render`` does, and the ``fovy`` argument is ignored.
    """
    cam_pos = jnp.asarray(cam_pos, jnp.float32)
    cam_mat = jnp.asarray(cam_mat, jnp.float32).reshape(3, 3)
    if params is not None:
        cam_pos, cam_mat = apply_offsets(
            cam_pos, cam_mat, params.cam_pos_offset, params.cam_rot_offset
        )
        fovy = params.fovy
    d = jnp.stack(world_dirs(height, width, fovy, cam_mat), axis=-1).reshape(height, width, 3)
    o = jnp.broadcast_to(cam_pos, d.shape)
    return o, d
