"""Write the Highway shift gallery (docs/driving_shifts.png): one reset state of the driving
task under the study's four lighting shifts and CARLA's weather presets, each on a severity
ladder. Every (preset, severity) pair is one env of a batch: one compile renders the grid.

    python examples/driving_gallery.py [--out docs/driving_shifts.png] [--size 96] [--seed 7]
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

import pvm_mbrl
from pvm_mbrl import envs, media, shifts

SEVERITIES = (0.25, 0.5, 0.75, 1.0)


def gallery(size: int, seed: int, presets, severities) -> np.ndarray:
    """Images ``[len(presets), len(severities), H, W, 3]`` of one Highway reset state."""
    ladder = [p for name in presets for p in shifts.ladder(name, severities)]
    env = envs.make("Highway", image_size=size, num_envs=len(ladder), auto_reset=False)
    env = envs.with_shift(env, ladder)
    keys = jax.numpy.stack([jax.random.PRNGKey(seed)] * len(ladder))  # one state, every shift
    pixels = jax.jit(env.reset)(keys).obs["pixels"]
    return np.asarray(pixels).reshape(len(presets), len(severities), size, size, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="docs/driving_shifts.png")
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    presets = list(shifts.DRIVING)
    images = gallery(args.size, args.seed, presets, SEVERITIES)
    cols = [f"severity {s:g}" for s in SEVERITIES]
    path = media.labelled_grid(images, presets, cols, args.out, cell_inches=1.1)
    print(f"wrote {path}")


if __name__ == "__main__":
    pvm_mbrl.setup()  # host-memory reuse and the compilation cache, before any JAX work
    main()
