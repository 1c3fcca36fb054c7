"""Images and videos on disk: labelled PNG grids (contact sheets) and GIFs from uint8 frames."""

from __future__ import annotations

import pathlib
from collections.abc import Sequence

import imageio.v3 as iio
import numpy as np


def _check_frames(frames: np.ndarray, what: str) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim < 3 or frames.shape[-1] != 3:
        raise ValueError(f"{what} must be uint8 [..., H, W, 3], got {frames.dtype} {frames.shape}")
    return frames


def grid(images: np.ndarray, pad: int = 2, fill: int = 255) -> np.ndarray:
    """Tiles uint8 images ``[rows, cols, H, W, 3]`` into one image with ``pad`` px gaps."""
    images = _check_frames(images, "images")
    if images.ndim != 5:
        raise ValueError(f"images must be [rows, cols, H, W, 3], got {images.shape}")
    r, c, h, w, _ = images.shape
    out = np.full((r * (h + pad) + pad, c * (w + pad) + pad, 3), fill, np.uint8)
    for i in range(r):
        for j in range(c):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            out[y : y + h, x : x + w] = images[i, j]
    return out


def labelled_grid(
    images: np.ndarray,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    path: str | pathlib.Path,
    title: str | None = None,
    cell_inches: float = 1.3,
) -> pathlib.Path:
    """Writes a PNG of ``[rows, cols, H, W, 3]`` images with row and column labels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = _check_frames(images, "images")
    r, c = images.shape[:2]
    if len(row_labels) != r or len(col_labels) != c:
        raise ValueError(f"need {r} row and {c} column labels for images {images.shape}")
    fig, axes = plt.subplots(r, c, figsize=(c * cell_inches + 1.2, r * cell_inches + 0.4))
    axes = np.asarray(axes).reshape(r, c)
    for i in range(r):
        for j in range(c):
            ax = axes[i, j]
            ax.imshow(images[i, j], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(col_labels[j], fontsize=8)
            if j == 0:
                ax.set_ylabel(row_labels[i], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def save_gif(frames: np.ndarray, path: str | pathlib.Path, fps: int = 15) -> pathlib.Path:
    """Writes uint8 frames ``[T, H, W, 3]`` as a looping GIF."""
    frames = _check_frames(frames, "frames")
    if frames.ndim != 4:
        raise ValueError(f"frames must be [T, H, W, 3], got {frames.shape}")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, frames, duration=1000 / fps, loop=0)
    return path
