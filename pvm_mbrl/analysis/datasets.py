"""Labelled image sets for the forgetting probe: an ImageFolder on disk, or rendered task objects.

Both return an :class:`ImageDataset`: uint8 images ``[N, H, W, 3]``, int32 labels ``[N]`` in
``0 .. len(class_names) - 1`` and the class names.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from pvm_mbrl.envs.manipulation import objects, scene
from pvm_mbrl.envs.manipulation.pick import PickObject

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


@dataclasses.dataclass(frozen=True)
class ImageDataset:
    """uint8 ``images [N, H, W, 3]``, int32 ``labels [N]``, ``class_names[label]``."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self):
        images, labels = np.asarray(self.images), np.asarray(self.labels)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(
                f"images must be uint8 [N, H, W, 3], got {images.dtype} {images.shape}"
            )
        if labels.shape != images.shape[:1] or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"labels must be int [{len(images)}], got {labels.dtype} {labels.shape}"
            )
        if len(labels) and (labels.min() < 0 or labels.max() >= len(self.class_names)):
            n = len(self.class_names)
            raise ValueError(f"labels must be in [0, {n}), got {labels.min()}..{labels.max()}")

    def __len__(self) -> int:
        return len(self.labels)


def _size_pair(size: int | Sequence[int]) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"size must be a positive int or (height, width), got {size!r}")
    return int(pair[0]), int(pair[1])


def load_image_folder(root: str | pathlib.Path, size: int | Sequence[int]) -> ImageDataset:
    """Images under ``root/<class_name>/*.{png,jpg,jpeg}`` (ImageFolder layout).

    Classes are the sub-folders in sorted order (label = position); files are read in sorted
    order, converted to RGB and resized (whole image, no crop) to ``size`` (side or
    ``(height, width)``) with PIL's bicubic filter. Raises if ``root`` has no class folder or a
    class folder holds no image.
    """
    from PIL import Image

    root = pathlib.Path(root)
    h, w = _size_pair(size)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ValueError(f"{root} has no class sub-folders (expected root/<class_name>/*.png)")
    images, labels = [], []
    for label, folder in enumerate(classes):
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"class folder {folder} holds no {'/'.join(IMAGE_SUFFIXES)} image")
        for path in files:
            with Image.open(path) as img:
                img = img.convert("RGB")
                if img.size != (w, h):
                    img = img.resize((w, h), Image.Resampling.BICUBIC)
                images.append(np.asarray(img, np.uint8))
            labels.append(label)
    return ImageDataset(
        np.stack(images), np.asarray(labels, np.int32), tuple(p.name for p in classes)
    )


def rendered_object_dataset(
    per_class: int = 16,
    *,
    split: str = "train",
    image_size: int = 64,
    camera: str = "wrist",
    shadows: bool = True,
    seed: int = 0,
) -> ImageDataset:
    """Rendered images of ``PickObject``'s objects, labelled by object body (shape x size).

    One class per (shape, size) body of the split's object set (``objects.split_objects``; mass
    does not change the look, so the two masses of a body share its class), named e.g.
    ``"cube0"`` (size class 0). Each of the ``per_class`` images per class puts that object on
    the table at a position from the split's region (``objects.sample_xy``) with a random yaw,
    parks the others as in the task, and places the gripper (fingers open) at a random height in
    [0.12, 0.22] m above the object's x/y jittered by up to 0.03 m per axis (the ``"wrist"``
    camera then shows the object near the image centre). Images are from ``camera`` in the
    default look (no goal marker: it stays below the table),
    rendered by the task's renderer (kinematics by C MuJoCo on the host; deterministic in
    ``seed``).
    """
    if int(per_class) < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    env = PickObject(split, image_size=image_size, camera=camera, render_shadows=shadows)
    m = env.mj_model
    bodies = sorted({o.body for o in env.object_set})
    n = len(bodies) * int(per_class)
    k_xy, k_yaw, k_arm, k_z = jax.random.split(jax.random.PRNGKey(seed), 4)
    xy = np.asarray(jax.vmap(lambda k: objects.sample_xy(k, split))(jax.random.split(k_xy, n)))
    yaw = np.asarray(jax.random.uniform(k_yaw, (n,), minval=0.0, maxval=2.0 * np.pi))
    jitter = np.asarray(jax.random.uniform(k_arm, (n, 2), minval=-0.03, maxval=0.03))
    z = np.asarray(jax.random.uniform(k_z, (n,), minval=0.12, maxval=0.22))
    labels = np.repeat(np.arange(len(bodies), dtype=np.int32), int(per_class))
    d = mujoco.MjData(m)
    xpos, xmat, cpos, cmat = [], [], [], []
    for i, label in enumerate(labels):
        obj = env.objects[bodies[label]]
        body_id = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, obj.name)
        adr = int(m.jnt_qposadr[m.body_jntadr[body_id]])
        qpos = np.array(m.qpos0)
        qpos[:3] = (*(xy[i] + jitter[i]), z[i])  # the wrist camera centres the object
        qpos[3:5] = scene.FINGER_OPEN * 0.9
        qpos[adr : adr + 3] = (*xy[i], obj.half_height)
        qpos[adr + 3 : adr + 7] = (np.cos(yaw[i] / 2), 0.0, 0.0, np.sin(yaw[i] / 2))
        d.qpos[:] = qpos
        mujoco.mj_kinematics(m, d)
        mujoco.mj_camlight(m, d)
        xpos.append(d.geom_xpos.copy())
        xmat.append(d.geom_xmat.copy())
        cpos.append(d.cam_xpos.copy())
        cmat.append(d.cam_xmat.copy())
    names = tuple(
        f"{objects.SHAPES[b // len(objects.SIZES)]}{b % len(objects.SIZES)}" for b in bodies
    )
    info = {"scene": env.scene_params(jax.random.PRNGKey(0))}
    data = _Kinematics(*(jnp.asarray(np.stack(a), jnp.float32) for a in (xpos, xmat, cpos, cmat)))
    rgb = jax.jit(jax.vmap(lambda k: env.render_pixels(k, info)))(data)
    return ImageDataset(np.asarray(rgb), labels, names)


@jax.tree_util.register_dataclass
@dataclasses.dataclass
class _Kinematics:
    """The fields of ``mjx.Data`` that ``ManipulationEnv.render_pixels`` reads."""

    geom_xpos: jnp.ndarray
    geom_xmat: jnp.ndarray
    cam_xpos: jnp.ndarray
    cam_xmat: jnp.ndarray
