"""Forgetting probe: leave-one-out k-NN accuracy of the CLS features, original vs fine-tuned.

Data: an ImageFolder (``root/<class>/*.png|jpg``) or rendered images of PickObject's objects
(one class per shape x size). Weights: the original checkpoint and a fine-tuned one (a folder in
the same Hugging Face layout), or ``--perturb S``, a synthetic control that adds Gaussian noise of
``S`` times each tensor's standard deviation. Runs offline with local checkpoints:

    python examples/forgetting_probe.py --encoder dinov2-small --checkpoint /ckpt/dinov2-small \\
        --finetuned /ckpt/dinov2-small-finetuned --image-folder /data/imagenette/val
    python examples/forgetting_probe.py --checkpoint tests/fixtures/vit/dinov2 --perturb 1.0 \\
        --per-class 8  # smoke test with the tiny test checkpoint
    python examples/forgetting_probe.py --run runs/dinov2_full   # a trained agent's encoder
"""

from __future__ import annotations

import argparse

import jax
import numpy as np
from flax import nnx

import pvm_mbrl
from pvm_mbrl import analysis, encoders


def perturbed(vit, scale: float, seed: int) -> dict:
    """The ViT's parameters plus Gaussian noise of ``scale`` times each tensor's std."""
    params = nnx.to_pure_dict(nnx.state(vit))
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    noisy = [
        x + scale * float(np.std(x) or 1.0) * jax.random.normal(k, x.shape, x.dtype)
        for x, k in zip(leaves, keys)
    ]
    return jax.tree.unflatten(tree, noisy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encoder", default="dinov2-small", help="registry name (encoders.make)")
    parser.add_argument("--checkpoint", default=None, help="original weights (local folder)")
    parser.add_argument("--finetuned", default=None, help="fine-tuned weights (local folder)")
    parser.add_argument(
        "--run",
        default=None,
        help="a training run directory (examples/train.py --logdir): its "
        "agent's fine-tuned encoder, seed --run-seed, against the run's original checkpoint",
    )
    parser.add_argument("--run-seed", type=int, default=0, help="index into the run's seeds")
    parser.add_argument("--perturb", type=float, default=None, help="synthetic noise control")
    parser.add_argument("--input-size", type=int, default=None, help="ViT input side")
    parser.add_argument("--image-folder", default=None, help="ImageFolder root; default: render")
    parser.add_argument("--size", type=int, default=64, help="image side (both data sources)")
    parser.add_argument("--per-class", type=int, default=32, help="rendered images per object")
    parser.add_argument("--split", default="train", help="PickObject split of the objects")
    parser.add_argument("--camera", default="wrist", choices=["wrist", "front"])
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if sum(x is not None for x in (args.finetuned, args.run, args.perturb)) != 1:
        parser.error("give exactly one of --finetuned DIR, --run DIR and --perturb SCALE")
    run_params = None
    if args.run:
        from pvm_mbrl.experiment import load_agent

        exp, _, states = load_agent(args.run)
        if exp.agent.encoder == "cnn":
            parser.error(f"{args.run} trained the CNN encoder; the probe needs a PVM")
        args.encoder, args.checkpoint = exp.agent.encoder, args.checkpoint or exp.agent.checkpoint
        args.input_size = args.input_size or exp.agent.input_size
        run_params = nnx.to_pure_dict(states[args.run_seed].params["encoder"]["vit"])

    if args.image_folder:
        data = analysis.load_image_folder(args.image_folder, args.size)
        source = args.image_folder
    else:
        data = analysis.rendered_object_dataset(
            args.per_class,
            split=args.split,
            image_size=args.size,
            camera=args.camera,
            seed=args.seed,
        )
        source = f"rendered PickObject objects ({args.split}, {args.camera})"
    counts = np.bincount(data.labels, minlength=len(data.class_names))
    print(
        f"{len(data)} images, {len(data.class_names)} classes ({counts.min()}-{counts.max()} "
        f"per class) from {source}"
    )

    options = {"checkpoint": args.checkpoint} if args.checkpoint else {}
    if args.input_size:
        options["input_size"] = args.input_size
    shape = data.images.shape[1:]
    original = encoders.make(args.encoder, shape, rngs=nnx.Rngs(0), **options)
    if args.finetuned:
        tuned, _ = encoders.load_vit(args.finetuned)
        label = args.finetuned
    elif run_params is not None:
        tuned, label = run_params, f"{args.run} (seed index {args.run_seed})"
    else:
        tuned = perturbed(original.vit, args.perturb, args.seed)
        label = f"original + noise x{args.perturb:g} std"
    acc = analysis.forgetting(original, tuned, data, k=args.k, batch_size=args.batch_size)
    chance = counts.max() / counts.sum()
    print(f"{args.k}-NN leave-one-out accuracy of the CLS features (majority class {chance:.3f})")
    print(f"  original   {acc['original']:.3f}  {args.checkpoint or args.encoder}")
    print(f"  fine-tuned {acc['finetuned']:.3f}  {label}")


if __name__ == "__main__":
    pvm_mbrl.setup()  # host-memory reuse and the compilation cache, before any JAX work
    main()
