"""PVM encoders: encoder throughput, and world-model update time with feature caching.

1. Encoder throughput (issue 6): forward and forward+backward images/s of each of ``--encoders``
   on a random batch of ``--batch`` uint8 images at each of ``--sizes`` px. The checkpoint entries
   are built with the public models' shapes and random weights (throughput does not depend on the
   values; ``--checkpoint-dir DIR`` loads ``DIR/<name>`` instead). A ViT's input size is the
   multiple of its patch nearest to the image size (64 px -> 70 for patch 14, ties round up).
   forward+backward: ``jax.grad`` of the mean output w.r.t. every parameter (full fine-tuning).
   Compile: lower + compile; time: median of ``--repeats`` calls after a first, untimed one.
2. World-model update: ``jax.jit(Dreamer.train, donate_argnums=0)`` on ``--wm-batch`` x
   ``--wm-length`` 64x64x3 pixels for the CNN and for ``--wm-encoder`` frozen and
   partial(``--partial-k``), each uncached (the ViT runs in every update) and cached (the batch
   also holds ``agent.encode_cache`` of the pixels, computed once before timing, as replay stores
   it). The ViT sees the frames at ``--wm-input-size`` (default 224 px, the study's: 16x16
   patches, 98,304 DINOv2-S features); partial updates then keep the trainable blocks'
   activations for B x T frames (tens of GB; ``--remat`` trades them for compute). Targets:
   frozen-cached <= 1.3x CNN, partial-cached <= 0.45x partial-uncached. ``--variants`` picks
   the rows; ``full-uncached`` (not run by default) differentiates through every block, which is
   what freezing blocks only through an optimiser mask costs: the uncached partial update here
   already stops the gradient at the frozen blocks, so its backward covers only the k blocks.

Prints markdown tables and appends them, with date, machine and command, to benchmarks/RESULTS.md.

    python benchmarks/encoders.py                                  # the full measurement
    python benchmarks/encoders.py --encoders cnn dinov2-small --sizes 64 --no-wm
    python benchmarks/encoders.py --no-throughput --size size1m --wm-input-size 112
    python benchmarks/encoders.py --checkpoint-dir ~/pvm          # real weights: ~/pvm/<name>
    python benchmarks/encoders.py --quick                         # tiny smoke test, writes nothing
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import pvm_mbrl
from pvm_mbrl import encoders
from pvm_mbrl.dreamer import Dreamer, DreamerConfig
from pvm_mbrl.encoders import VIT_S14, PVMEncoder, ViT, ViTConfig
from pvm_mbrl.encoders.checkpoint_config import parse_config
from pvm_mbrl.envs.core import Space

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import append_results
from train_step import ACTION_DIM, QUICK, random_batch

HEADING = "## PVM encoders (benchmarks/encoders.py)"
ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "fixtures" / "vit" / "dinov2"  # tiny DINOv2 (2 blocks) for --quick
QUICK_XLA = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
CNN = dict(depth=16, mults=(2, 3, 4, 4), kernel=5)  # DreamerV3 size12m
CLIP = dict(family="clip", hidden_act="quick_gelu", layer_norm_eps=1e-5, layerscale_value=None)
B16 = dict(hidden_size=768, num_layers=12, num_heads=12, mlp_dim=3072, image_size=224)
# The public models' shapes (DINOv2's native 518 px grid replaced by 224 px, the input size here).
SHAPES = {
    "dinov2-small": VIT_S14,
    "dinov2-base": dataclasses.replace(VIT_S14, hidden_size=768, num_heads=12, mlp_dim=3072),
    "dinov2-large": dataclasses.replace(
        VIT_S14, hidden_size=1024, num_layers=24, num_heads=16, mlp_dim=4096
    ),
    "dinov2-small-reg": dataclasses.replace(VIT_S14, num_register_tokens=4, pos_antialias=True),
    "clip-vit-b32": ViTConfig(**CLIP, **B16, patch_size=32),
    "clip-vit-b16": ViTConfig(**CLIP, **B16, patch_size=16),
    "vit-s14-scratch": VIT_S14,
}
VARIANTS = (
    "cnn",
    "frozen-uncached",
    "frozen-cached",
    "partial-uncached",
    "partial-cached",
    "full-uncached",
)
OUTPUTS = {n: out for n, (_, out) in encoders.CHECKPOINTS.items()} | {"vit-s14-scratch": "patches"}


def random_factory(cfg: ViTConfig, output: str):
    """An encoder factory like the registry's, with a randomly initialised ViT of shape ``cfg``."""

    def factory(image_shape, *, rngs, dtype=jnp.float32, remat=False, **options):
        vit = ViT(cfg, rngs=rngs, dtype=dtype, remat=remat)
        return PVMEncoder(vit, image_shape, rngs=rngs, **{"output": output, **options})

    return factory


def resolve(name: str, args, layers: int | None = None) -> tuple[str, dict, str]:
    """(registry name, factory options, weights) for benchmark entry ``name``: a real checkpoint
    from ``--checkpoint-dir``, else a random-weight ViT of the public shape (``layers`` blocks)."""
    if name == "cnn":
        return "cnn", dict(CNN), "random init"
    if name not in SHAPES:
        raise SystemExit(f"unknown encoder {name!r}; choose from cnn, {', '.join(SHAPES)}")
    if args.checkpoint_dir and name != "vit-s14-scratch":
        return name, {"checkpoint": str(pathlib.Path(args.checkpoint_dir) / name)}, "checkpoint"
    cfg = SHAPES[name] if layers is None else dataclasses.replace(SHAPES[name], num_layers=layers)
    encoders.register(f"{name}:random", random_factory(cfg, OUTPUTS[name]))
    return f"{name}:random", {}, "random" if name != "vit-s14-scratch" else "random init"


def patch_of(name: str, options: dict) -> int:
    """Patch size of entry ``name`` (from the checkpoint's config.json when there is one)."""
    if "checkpoint" not in options:
        return SHAPES[name].patch_size
    cfg = json.loads((pathlib.Path(options["checkpoint"]) / "config.json").read_text())
    return parse_config(cfg).patch_size


def input_size(size: int, patch: int) -> int:
    """The multiple of ``patch`` nearest to ``size`` (at least one patch; ties round up)."""
    return patch * max(1, int(size / patch + 0.5))


def timed(compiled, args_fn, repeats: int) -> float:
    """Median seconds of ``repeats`` calls of ``compiled(*args_fn())`` after an untimed one."""
    jax.block_until_ready(compiled(*args_fn()))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args_fn()))
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_encoder(enc, batch: int, size: int, repeats: int) -> dict[str, float]:
    images = jax.device_put(np.random.default_rng(0).integers(0, 256, (batch, size, size, 3)))
    images = images.astype(jnp.uint8)
    graphdef, params, rest = nnx.split(enc, nnx.Param, ...)

    def forward(params, rest, x):
        return nnx.merge(graphdef, params, rest)(x)

    def loss(params, rest, x):
        return forward(params, rest, x).astype(jnp.float32).mean()

    out = {}
    for label, fn in (("fwd", forward), ("bwd", jax.grad(loss))):
        t0 = time.perf_counter()
        compiled = jax.jit(fn).lower(params, rest, images).compile()
        out[f"{label}_compile"] = time.perf_counter() - t0
        out[label] = batch / timed(compiled, lambda: (params, rest, images), repeats)
    return out


def run_throughput(args, dtype) -> tuple[list[str], list[str]]:
    header = (
        "| encoder | weights | image (px) | ViT input (px) | output dim | forward images/s "
        "| forward compile (s) | forward+backward images/s | forward+backward compile (s) |"
    )
    rows = [header, "|" + "---|" * 9]
    print(f"\nencoder throughput, batch {args.batch}, {args.dtype}\n{header}", flush=True)
    layers = 2 if args.quick else None
    for name in args.encoders:
        reg, options, weights = resolve(name, args, layers)
        for size in args.sizes:
            ins = "-"
            if name != "cnn":
                ins = input_size(size, patch_of(name, options))
                options = {**options, "input_size": ins, "finetune": "full"}
            try:
                enc = encoders.make(reg, (size, size, 3), rngs=nnx.Rngs(0), dtype=dtype, **options)
            except ValueError as e:  # e.g. an image size the CNN's stages do not divide
                row = f"| {name} | {weights} | {size} | - | - | skipped: {e} | - | - | - |"
            else:
                r = bench_encoder(enc, args.batch, size, args.repeats)
                row = (
                    f"| {name} | {weights} | {size} | {ins} | {enc.output_size:,} "
                    f"| {r['fwd']:,.1f} | {r['fwd_compile']:.1f} | {r['bwd']:,.1f} "
                    f"| {r['bwd_compile']:.1f} |"
                )
            rows.append(row)
            print(row, flush=True)
    notes = [
        f"throughput: batch {args.batch} random uint8 images per call, image sizes {args.sizes} "
        f"px, {args.dtype}; images/s from the median of {args.repeats} calls after an untimed one; "
        "forward+backward = jax.grad of the mean output w.r.t. all parameters (full fine-tuning); "
        "compile = lower + compile; a ViT's input is the patch multiple nearest the image size",
        "weights: 'random' = the public checkpoint's architecture with random weights "
        "(throughput does not depend on the values)"
        + (f"; 'checkpoint' = {args.checkpoint_dir}/<name>" if args.checkpoint_dir else "")
        + "; CNN = DreamerV3 size12m encoder (depth 16, mults (2, 3, 4, 4), kernel 5; >= 128 px "
        "adds a stage)" + ("; --quick: random ViTs cut to 2 blocks" if args.quick else ""),
    ]
    return rows, notes


def bench_update(config: DreamerConfig, args) -> dict[str, float]:
    image = args.wm_image
    space = {"pixels": Space((image, image, 3), jnp.uint8, 0, 255)}
    agent = Dreamer(config, space, Space((ACTION_DIM,), jnp.float32, -1.0, 1.0))
    state = jax.jit(agent.init)(jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    batch = jax.device_put(random_batch(agent, rng, args.wm_batch, args.wm_length))
    out = {"cache_bytes": 0}
    if agent.cache_key:  # what replay stores: computed once per frame, one sequence at a time
        encode = jax.jit(agent.encode_cache)
        cache = [encode(state, batch["pixels"][i : i + 1]) for i in range(args.wm_batch)]
        batch[agent.cache_key] = jax.block_until_ready(jnp.concatenate(cache))
        itemsize = jnp.dtype(agent.cache_dtype).itemsize
        out["cache_bytes"] = int(np.prod(agent.cache_shape)) * itemsize
        out["cache_shape"] = agent.cache_shape
    keys = iter(jax.random.split(jax.random.PRNGKey(1), args.repeats + 2))
    t0 = time.perf_counter()
    compiled = jax.jit(agent.train, donate_argnums=0).lower(state, batch, next(keys)).compile()
    out["compile_s"] = time.perf_counter() - t0
    carry = {"state": state}

    def step():  # the donated state threads through the calls
        carry["state"], carry["metrics"] = compiled(carry["state"], batch, next(keys))
        return carry["state"]

    out["sec"] = timed(step, tuple, args.repeats)
    out["finite"] = bool(np.isfinite(float(carry["metrics"]["loss/total"])))
    return out


def run_world_model(args) -> tuple[list[str], list[str]]:
    reg, options, weights = resolve(args.wm_encoder, args)
    if args.quick:
        reg, options, weights = "dinov2-small", {"checkpoint": str(FIXTURE)}, "tiny fixture"
    ins = input_size(args.wm_input_size, patch_of(args.wm_encoder, options))
    options = {**options, "input_size": ins, "remat": args.remat}
    if args.wm_output:
        options["output"] = args.wm_output
    partial = f"partial({args.partial_k})"
    modes = {"frozen": "frozen", "partial": partial, "full": "full"}
    variants = []
    for v in sorted(set(args.variants), key=VARIANTS.index):  # the CNN first, for 'vs CNN'
        ft, _, how = v.partition("-")
        label = "CNN" if v == "cnn" else f"{modes[ft]} {how}"
        opts = {} if v == "cnn" else {**options, "finetune": modes[ft]}
        variants.append((label, "cnn" if v == "cnn" else reg, opts, how == "cached"))
    base = dict(compute_dtype=args.dtype, obs_keys=("pixels",))
    header = (
        "| variant | encoder | s / update | vs CNN | compile (s) | replay bytes / frame "
        "(pixels + cache) | cache per frame |"
    )
    rows, res = [header, "|" + "---|" * 7], {}
    pix = args.wm_image**2 * 3
    print(
        f"\nworld-model update, batch {args.wm_batch} x {args.wm_length}, PVM {args.wm_encoder} "
        f"({weights} weights), ViT input {ins} px (nearest patch multiple)\n{header}",
        flush=True,
    )
    for label, enc, opts, cached in variants:
        kw = dict(base, encoder=enc, encoder_options=opts, encoder_cache=cached)
        if enc == "cnn":
            kw.pop("encoder_options")
        if args.quick:
            config = DreamerConfig.preset("micro", **QUICK | kw)
        else:
            config = DreamerConfig.preset(args.size, **kw)
        r = res[label] = bench_update(config, args)
        shape = "x".join(map(str, r["cache_shape"])) + f" {args.dtype}" if cached else "-"
        ratio = f"{r['sec'] / res['CNN']['sec']:.2f}x" if "CNN" in res else "-"
        row = (
            f"| {label} | {args.wm_encoder if enc != 'cnn' else 'cnn'} | {r['sec']:.3f} "
            f"| {ratio} | {r['compile_s']:.1f} | {pix:,} + {r['cache_bytes']:,} "
            f"| {shape} |"
        )
        rows.append(row)
        print(row, flush=True)
        if not r["finite"]:
            print(f"warning: {label} loss is not finite")
    checks = []
    for num, den, target in (
        ("frozen cached", "CNN", 1.3),
        (f"{partial} cached", f"{partial} uncached", 0.45),
        (f"{partial} cached", "full uncached", None),
    ):
        if num in res and den in res:
            ratio = res[num]["sec"] / res[den]["sec"]
            verdict = (
                ""
                if target is None
                else f" (target <= {target}: " + ("met)" if ratio <= target else "not met)")
            )
            checks.append(f"{num} / {den} = {ratio:.2f}{verdict}")
    if args.quick:
        checks.append("--quick: tiny models, the targets do not apply")
    print("\n".join(checks))
    rows += ["", *[f"- {c}" for c in checks]]
    size = "tiny DreamerConfig" if args.quick else args.size
    notes = [
        f"world model: one `Dreamer.train` update ({size}, {args.dtype}) at batch {args.wm_batch} "
        f"x {args.wm_length}, {args.wm_image}x{args.wm_image}x3 uint8 pixels, "
        f"{ACTION_DIM}-dim actions; s / update: median of {args.repeats} after compiling (state "
        f"donated); PVM = {args.wm_encoder} ({weights} weights) at input {ins} px, "
        f"output {options.get('output', 'default')}; cached: the batch holds "
        "`agent.encode_cache(pixels)`, computed once before timing as replay stores it (pixels "
        "stay for the decoder)" + (", PVM per-block remat" if args.remat else ""),
    ]
    return rows, notes


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoders", nargs="+", default=["cnn", *SHAPES])
    ap.add_argument("--sizes", nargs="+", type=int, default=[64, 112, 224])
    ap.add_argument("--batch", type=int, default=64, help="images per throughput call")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--checkpoint-dir", help="load real checkpoints from DIR/<encoder name>")
    ap.add_argument("--throughput", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--wm", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--size", default="size12m", help="Dreamer size preset for the updates")
    ap.add_argument("--wm-encoder", default="dinov2-small", choices=list(SHAPES))
    ap.add_argument("--wm-input-size", type=int, default=224, help="ViT input (study: 224)")
    ap.add_argument("--wm-output", help="PVM output (default: the registry's for the encoder)")
    ap.add_argument("--remat", action="store_true", help="PVM per-block remat in the updates")
    ap.add_argument("--partial-k", type=int, default=4, help="trainable blocks of partial(k)")
    ap.add_argument(
        "--variants",
        nargs="+",
        choices=VARIANTS,
        default=list(VARIANTS[:5]),
        help="world-model variants ('full-uncached': gradients through every ViT block, the "
        "cost of freezing blocks with an optimiser mask only)",
    )
    ap.add_argument("--wm-batch", type=int, default=16)
    ap.add_argument("--wm-length", type=int, default=64)
    ap.add_argument("--wm-image", type=int, default=64, help="pixel side of the replayed frames")
    ap.add_argument("--quick", action="store_true", help="tiny smoke test (no write by default)")
    ap.add_argument("--write", action=argparse.BooleanOptionalAction, help="append to RESULTS.md")
    args = ap.parse_args(argv)
    args.write = not args.quick if args.write is None else args.write
    if args.quick:  # faster, less optimised XLA compiles (the backend has not started yet)
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {QUICK_XLA}".strip()
        args.sizes, args.batch, args.repeats = [32], 2, 1
        args.wm_batch, args.wm_length, args.wm_image = 2, 4, 28
        args.wm_input_size, args.partial_k = 28, 1
    dtype = jnp.bfloat16 if args.dtype == "bfloat16" else jnp.float32
    print(
        f"device {jax.devices()[0]}; ViT weights: "
        f"{'from ' + args.checkpoint_dir if args.checkpoint_dir else 'random (public shapes)'}"
    )
    rows, notes = [], []
    if args.throughput:
        r, n = run_throughput(args, dtype)
        rows, notes = rows + r, notes + n
    if args.wm:
        r, n = run_world_model(args)
        rows, notes = rows + ([""] if rows else []) + r, notes + n
    if args.write and rows:
        append_results(HEADING, notes, rows)


if __name__ == "__main__":
    pvm_mbrl.setup()  # host-memory reuse and the compilation cache, before any JAX work
    main()
