"""Attention-mask Jaccard index of pre-trained encoders on rendered task frames.

Renders frames of a manipulation task (reset, then the scripted controller for a few steps),
takes each encoder's last-layer CLS-to-patch attention, keeps per head the patches holding 60%
of it and prints the mean Jaccard index with the task object's patches
(``pvm_mbrl.analysis.attention`` has the exact definition). Runs offline with local checkpoints:

    python examples/attention_jaccard.py --encoders dinov2-small clip-vit-b16 \\
        --checkpoints /ckpt/dinov2-small /ckpt/clip-vit-base-patch16 --overlay attn.png
    python examples/attention_jaccard.py --checkpoints tests/fixtures/vit/dinov2 \\
        --input-size 112 --episodes 4  # smoke test with the tiny test checkpoint
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import pvm_mbrl
from pvm_mbrl import analysis, encoders, envs, media
from pvm_mbrl.envs.manipulation import scripted


def render_frames(args) -> tuple[np.ndarray, np.ndarray]:
    """``(rgb [N, H, W, 3], object masks [N, H, W])`` at steps 0, stride, 2 stride, ..."""
    env = envs.make(
        args.task,
        image_size=args.image_size,
        camera=args.camera,
        num_envs=args.episodes,
        auto_reset=False,
        shift=args.shift,
    )
    task = env.unwrapped
    policy = jax.vmap(lambda s: scripted.POLICIES[args.task](task, s))
    keys = jax.random.split(jax.random.PRNGKey(args.seed), args.episodes)
    state = jax.jit(env.reset)(keys)

    @jax.jit
    def advance(s):
        return jax.lax.fori_loop(0, args.stride, lambda _, s: env.step(s, policy(s)), s)

    @jax.jit
    def observe(s):
        return s.obs["pixels"], analysis.object_masks(task, s)

    rgb, masks = [], []
    for i in range(args.frames_per_episode):
        if i:
            state = advance(state)
        r, m = observe(state)
        rgb.append(np.asarray(r))
        masks.append(np.asarray(m))
    return np.concatenate(rgb), np.concatenate(masks)


def tint(image: np.ndarray, mask: np.ndarray, colour=(255, 40, 40)) -> np.ndarray:
    out = image.astype(np.float32)
    out[mask] = 0.45 * out[mask] + 0.55 * np.asarray(colour, np.float32)
    return out.astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoders", nargs="+", default=["dinov2-small"])
    parser.add_argument(
        "--checkpoints",
        nargs="+",
        default=None,
        help="local checkpoint folder per encoder (same order); default: the hub name, cached",
    )
    parser.add_argument("--input-size", type=int, default=None, help="ViT input side")
    parser.add_argument("--task", default="PickCube", choices=["PickCube", "PickObject", "Push"])
    parser.add_argument("--camera", default="wrist", choices=["wrist", "front"])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--shift", default=None, help="visual shift preset (pvm_mbrl.shifts)")
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--frames-per-episode", type=int, default=1)
    parser.add_argument("--stride", type=int, default=10, help="control steps between frames")
    parser.add_argument("--mass", type=float, default=0.6)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--layer", type=int, default=-1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overlay", default=None, help="write a PNG of attention overlays")
    args = parser.parse_args()
    ckpts = args.checkpoints or [None] * len(args.encoders)
    if len(ckpts) != len(args.encoders):
        parser.error(f"give one checkpoint per encoder ({len(args.encoders)}), got {len(ckpts)}")

    rgb, masks = render_frames(args)
    print(
        f"{len(rgb)} frames of {args.task} ({args.camera}, {args.image_size} px); object visible "
        f"in {int(masks.any((1, 2)).sum())}"
    )
    shape = (args.image_size, args.image_size, 3)
    rows, overlays = [], []
    for name, ckpt in zip(args.encoders, ckpts):
        options = {"checkpoint": ckpt} if ckpt else {}
        if args.input_size:
            options["input_size"] = args.input_size
        enc = encoders.make(name, shape, rngs=nnx.Rngs(0), **options)
        attn, grid = analysis.cls_attention(enc, rgb, layer=args.layer, batch_size=args.batch_size)
        mean, per = analysis.attention_jaccard(attn, masks, grid, args.mass, args.threshold)
        per = np.asarray(per)
        used = int((~np.isnan(per[:, 0])).sum())
        if used == 0:
            print(
                f"{name}: no frame has an object patch (object fraction >= {args.threshold} on "
                f"the {grid[0]}x{grid[1]} grid); try a larger --input-size or --image-size, a "
                "lower --threshold or the wrist camera"
            )
        per_head = [np.mean(h[~np.isnan(h)]) if used else np.nan for h in per.T]
        heads = " ".join(f"{v:.2f}" for v in per_head)
        label = f"{name} ({ckpt})" if ckpt else name
        rows.append((label, f"{float(mean):.3f}", f"{grid[0]}x{grid[1]}", str(used), heads))
        # Overlay: object patches (green), then the attention mask of the head-mean attention
        # (red), both upsampled from this encoder's patch grid to the frame.
        att = analysis.attention_mask(jnp.asarray(attn.mean(1)), args.mass)
        obj = analysis.patch_mask(masks, grid, args.threshold)
        overlays.append(
            tuple(np.asarray(analysis.upsample_patch_mask(m, grid, shape[:2])) for m in (obj, att))
        )

    header = ("encoder", "jaccard", "grid", "frames", "per head")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))

    if args.overlay:
        n = min(6, len(rgb))
        cols = [rgb[:n], np.stack([tint(rgb[i], masks[i], (40, 220, 40)) for i in range(n)])]
        for obj, att in overlays:
            cols.append(
                np.stack([tint(tint(rgb[i], obj[i], (40, 220, 40)), att[i]) for i in range(n)])
            )
        col_labels = ["frame", "object", *(f"{e}: attn (red)" for e in args.encoders)]
        path = media.labelled_grid(
            np.stack(cols, axis=1), [f"frame {i}" for i in range(n)], col_labels, args.overlay
        )
        print(f"wrote {path}")


if __name__ == "__main__":
    pvm_mbrl.setup()  # host-memory reuse and the compilation cache, before any JAX work
    main()
