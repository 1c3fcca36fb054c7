"""Write a PNG grid of tasks x shift presets x severities (the gallery in docs/environments.md).

Every (preset, severity) pair is one env of a batch, so each task compiles one step that
renders the whole grid.

    python examples/shift_gallery.py [--out docs/shift_gallery.png] [--size 96]
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

import pvm_mbrl
from pvm_mbrl import envs, media, shifts

PRESETS = (
    "texture",
    "weak",
    "strong",
    "color-hard",
    "camera-hard",
    "scene-hard",
    "dcs-0.5",
    "color_jitter@1",
    "blur@1",
    "occlusion@1",
    "random_conv@1",
)
SEVERITIES = (0.0, 0.25, 0.5, 0.75, 1.0)


def gallery(task: str, camera: str, size: int, presets, severities, seed: int = 0):
    """Images ``[len(presets), len(severities), H, W, 3]`` of one reset of ``task``."""
    ladder = [p for name in presets for p in shifts.ladder(name, severities)]
    env = envs.make(task, image_size=size, camera=camera, num_envs=len(ladder), auto_reset=False)
    env = envs.with_shift(env, ladder)
    # Every env starts from the same episode (same key for the physics) so only the shift differs.
    keys = jax.numpy.stack([jax.random.PRNGKey(seed)] * len(ladder))
    pixels = jax.jit(env.reset)(keys).obs["pixels"]
    return np.asarray(pixels).reshape(len(presets), len(severities), size, size, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="docs/shift_gallery.png")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--tasks", nargs="+", default=["PickCube:front", "Push:wrist"])
    args = parser.parse_args()
    images, rows = [], []
    for spec in args.tasks:
        task, _, camera = spec.partition(":")
        images.append(gallery(task, camera or "front", args.size, PRESETS, SEVERITIES))
        rows += [f"{task} {camera}\n{p}" for p in PRESETS]
    cols = [f"severity {s:g}" for s in SEVERITIES]
    path = media.labelled_grid(np.concatenate(images), rows, cols, args.out, cell_inches=1.1)
    print(f"wrote {path}")


if __name__ == "__main__":
    pvm_mbrl.setup()  # host-memory reuse and the compilation cache, before any JAX work
    main()
