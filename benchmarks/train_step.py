"""DreamerV3 update cost and training-loop throughput on the current JAX device.

1. One update (``Dreamer.train``) per size preset on a random batch of ``--batch`` x
   ``--length`` 64x64x3 uint8 images with 4-dim continuous actions (observations: ``pixels``
   only): compile time (lower + compile), seconds per update (median of ``--repeats`` calls after
   compiling, ``jax.jit(agent.train, donate_argnums=0)``, ``jax.block_until_ready``), FLOPs per
   update and achieved GFLOP/s. XLA's cost analysis of the compiled update counts the body of
   each ``lax.scan`` once, whatever its trip count (RSSM over T, imagination over the horizon,
   lambda returns); the full count adds what unrolling every scan adds to the count of the
   unoptimised HLO, and GFLOP/s uses the full count. The counts are taken on the CPU only:
   XLA:GPU's cost analysis leaves out the cuBLAS / cuDNN calls (the convolutions and matrix
   products), so a GPU run prints ``n/a``; the graph, and so its count, is the same.
2. The whole loop (``--loop``): ``Trainer.train_chunk`` on Reach (front camera, 64 px, pixels only)
   with 16 envs, train ratio 32, batch 16 x 64, timed after a warm-up chunk: env steps/s,
   updates/s, and env steps/s of collection alone (a jitted scan of the policy-driven env step
   with its replay insert, no updates), so one can see which of the two limits the loop.

Prints the tables, next to the official DreamerV3 CPU figures (quoted, not measured here), and
appends them, with date, machine and command, to benchmarks/RESULTS.md.

    python benchmarks/train_step.py --sizes size1m size12m --repeats 10
    python benchmarks/train_step.py --quick        # tiny smoke test, writes nothing
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import pvm_mbrl
from pvm_mbrl import envs
from pvm_mbrl.dreamer.agent import Dreamer
from pvm_mbrl.dreamer.config import DreamerConfig
from pvm_mbrl.dreamer.optim import OptimizerConfig
from pvm_mbrl.envs.core import Space
from pvm_mbrl.train import TrainConfig, Trainer

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import append_results

HEADING = "## DreamerV3 update and training loop (benchmarks/train_step.py)"
ACTION_DIM = 4
# Official DreamerV3 on the same kind of 2-core CPU machine, float32, B=16, T=64, 64x64x3:
# seconds per update (with XLA's older CPU runtime in brackets) and the target for this code.
REFERENCE = {"size1m": (6.7, 5.8, 3.9), "size12m": (26.2, 21.6, 14.4)}
REFERENCE_COMPILE = "25-60"
# What the smoke runs (--quick) add to the micro preset: fewer layers, two-hot bins and
# imagined steps, so that they compile in seconds.
QUICK = dict(mlp_layers=1, bins=15, imag_horizon=4, optimizer=OptimizerConfig(lr=1e-3, warmup=0))


def make_config(size: str, dtype: str, **overrides) -> DreamerConfig:
    extra = QUICK if size == "micro" else {}
    return DreamerConfig.preset(size, compute_dtype=dtype, **extra | overrides)


def random_batch(agent: Dreamer, rng, b: int, t: int) -> dict[str, np.ndarray]:
    """Random data in the shape of ``agent.batch_spec(b, t)`` (with replay context: stored
    latents of the same scale as the model's)."""
    out = {}
    for k, spec in agent.batch_spec(b, t).items():
        if spec.dtype == jnp.uint8:
            out[k] = rng.integers(0, 256, spec.shape, dtype=np.uint8)
        elif spec.dtype == jnp.bool_:
            out[k] = rng.random(spec.shape) < (0.02 if k == "is_first" else 0.0)
        elif k == "stoch":
            idx = rng.integers(0, spec.shape[-1], spec.shape[:-1])
            out[k] = np.eye(spec.shape[-1], dtype=np.float32)[idx]
        elif k in ("action", "deter"):
            out[k] = rng.uniform(-1, 1, spec.shape).astype(np.float32)
        else:
            out[k] = rng.normal(size=spec.shape).astype(np.float32)
    return out


def flops_of(cost) -> float:
    """The ``flops`` entry of a cost analysis that is a dict or a list of dicts (one per module)."""
    if cost is None:
        return float("nan")
    items = [cost] if isinstance(cost, dict) else list(cost)
    return float(sum(c.get("flops", 0.0) for c in items if c))


def gflop(x: float) -> str:
    """GFLOP with 3 significant digits, or ``n/a`` where XLA gave no count."""
    return "n/a" if np.isnan(x) else f"{x / 1e9:.3g}"


def scan_flops(agent: Dreamer, state, batch, key) -> float:
    """FLOPs that XLA's cost analysis leaves out by counting each ``lax.scan`` body once: the
    unoptimised HLO's count with every ``jax.lax.scan`` unrolled minus that without (fresh
    traces, lowering only)."""
    scan = jax.lax.scan
    counts = []
    for unroll in (False, True):
        if unroll:
            jax.lax.scan = lambda *a, **k: scan(*a, **{**k, "unroll": True})
        try:
            lowered = jax.jit(lambda s, b, k: agent.train(s, b, k)).lower(state, batch, key)
        finally:
            jax.lax.scan = scan
        counts.append(flops_of(lowered.cost_analysis()))
    return max(0.0, counts[1] - counts[0])


def bench_update(
    size, dtype, b, t, image, repeats, action_dim=ACTION_DIM, count_flops=True
) -> dict[str, float]:
    space = {"pixels": Space((image, image, 3), jnp.uint8, 0, 255)}
    act = Space((action_dim,), jnp.float32, -1.0, 1.0)
    agent = Dreamer(make_config(size, dtype), space, act)
    state = jax.jit(agent.init)(jax.random.PRNGKey(0))
    batch = jax.device_put(random_batch(agent, np.random.default_rng(0), b, t))
    keys = jax.random.split(jax.random.PRNGKey(1), repeats + 1)

    t0 = time.perf_counter()
    compiled = jax.jit(agent.train, donate_argnums=0).lower(state, batch, keys[0]).compile()
    compile_s = time.perf_counter() - t0
    if count_flops and jax.devices()[0].platform == "cpu":
        xla_flops = flops_of(compiled.cost_analysis())
        full_flops = xla_flops + scan_flops(agent, state, batch, keys[0])
    else:  # not asked for, or XLA:GPU, whose count leaves out the cuBLAS / cuDNN calls
        xla_flops = full_flops = float("nan")
    print(f"{size}: compiled in {compile_s:.1f} s, timing {repeats} updates", flush=True)

    state, _ = jax.block_until_ready(compiled(state, batch, keys[0]))  # first run, not timed
    times = []
    for k in keys[1:]:
        t0 = time.perf_counter()
        state, metrics = jax.block_until_ready(compiled(state, batch, k))
        times.append(time.perf_counter() - t0)
    if not np.isfinite(float(metrics["loss/total"])):
        print(f"warning: {size} loss is not finite")
    sec = statistics.median(times)
    return dict(compile_s=compile_s, sec=sec, xla_flops=xla_flops, flops=full_flops)


def bench_loop(
    size, dtype, num_envs, b, t, image, chunk_steps, chunks, train_ratio, prefill, fused=True
):
    env = envs.make("Reach", image_size=image, camera="front", num_envs=num_envs, auto_reset=False)
    agent = Dreamer(
        make_config(size, dtype, obs_keys=("pixels",)), env.observation_space, env.action_space
    )
    cfg = TrainConfig(
        num_envs=num_envs,
        train_ratio=train_ratio,
        batch_size=b,
        batch_length=t,
        chunk_steps=chunk_steps,
        prefill=prefill,
        replay_capacity=num_envs * max(4 * t, 512),
        fused=fused,
    )
    trainer = Trainer(env, agent, cfg)
    t0 = time.perf_counter()
    state = jax.block_until_ready(trainer.prefill(trainer.init(jax.random.PRNGKey(0))))
    print(f"loop: init + prefill (compiles) {time.perf_counter() - t0:.1f} s", flush=True)
    t0 = time.perf_counter()
    state, _ = jax.block_until_ready(trainer.train_chunk(state))  # warm-up chunk (compiles)
    warmup_s = time.perf_counter() - t0
    print(f"loop: warm-up chunk (compiles) {warmup_s:.1f} s", flush=True)
    t0 = time.perf_counter()
    for _ in range(chunks):
        state, metrics = jax.block_until_ready(trainer.train_chunk(state))
    loop_s = (time.perf_counter() - t0) / chunks

    collect = jax.jit(lambda s: trainer._collect(s, chunk_steps, random=False)[0], donate_argnums=0)
    t0 = time.perf_counter()
    state = jax.block_until_ready(collect(state))  # compiles
    print(f"loop: collection-only compile + run {time.perf_counter() - t0:.1f} s", flush=True)
    times = []
    for _ in range(max(chunks, 2)):
        t0 = time.perf_counter()
        state = jax.block_until_ready(collect(state))
        times.append(time.perf_counter() - t0)
    collect_s = statistics.median(times)
    steps = chunk_steps * num_envs
    return dict(
        updates=cfg.chunk_updates,
        warmup_s=warmup_s,
        loop_sps=steps / loop_s,
        ups=cfg.chunk_updates / loop_s,
        collect_sps=steps / collect_s,
        update_share=max(0.0, 1.0 - collect_s / loop_s),
        finite=bool(np.isfinite(float(metrics["loss/total"]))),
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="*", default=["size1m", "size12m"], help="none: loop only")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--image", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--loop", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--loop-size", default="size1m")
    ap.add_argument("--num-envs", type=int, default=16)
    ap.add_argument("--train-ratio", type=float, default=32.0)
    ap.add_argument("--chunk-steps", type=int, default=16, help="vectorised env steps per chunk")
    ap.add_argument("--chunks", type=int, default=1, help="timed chunks after the warm-up one")
    ap.add_argument(
        "--fused",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="whole chunk in one compiled scan (TrainConfig.fused); --no-fused: one call per "
        "cycle and per update",
    )
    ap.add_argument("--quick", action="store_true", help="tiny smoke test (no write by default)")
    ap.add_argument("--write", action=argparse.BooleanOptionalAction, help="append to RESULTS.md")
    args = ap.parse_args(argv)
    args.write = not args.quick if args.write is None else args.write
    # The loop's replayed sequences hold the replay context and the batch length.
    loop_image, prefill = args.image, args.length + DreamerConfig().replay_context
    if args.quick:
        args.sizes, args.loop_size, args.repeats, args.chunks = ["micro"], "micro", 1, 1
        args.batch, args.length, args.num_envs, args.chunk_steps = 2, 8, 2, 4
        args.image, loop_image, prefill = 16, 16, 9
    b, t, image = args.batch, args.length, args.image

    print(f"device {jax.devices()[0]}, {args.dtype}, batch {b} x {t}, {image}x{image}x3 pixels")
    header = (
        "| size | dtype | compile (s) | s / update | GFLOP / update (XLA, scans once) "
        "| GFLOP / update (full, scans unrolled) | GFLOP/s | official DreamerV3 (quoted) | target |"
    )
    rows = [header, "|" + "---|" * 9]
    print(header)
    for size in args.sizes:
        r = bench_update(size, args.dtype, b, t, image, args.repeats)
        ref = REFERENCE.get(size)
        ref_s = f"{ref[0]} s ({ref[1]} s older XLA CPU runtime)" if ref else "-"
        if not ref:
            target = "-"
        elif jax.devices()[0].platform != "cpu":
            target = "CPU target, not comparable"
        else:
            target = f"<= {ref[2]} s: {'met' if r['sec'] <= ref[2] else 'not met'}"
        row = (
            f"| {size} | {args.dtype} | {r['compile_s']:.1f} | {r['sec']:.3f} "
            f"| {gflop(r['xla_flops'])} | {gflop(r['flops'])} "
            f"| {gflop(r['flops'] / r['sec'])} | {ref_s} | {target} |"
        )
        rows.append(row)
        print(row, flush=True)
    for size, (sec, old, target) in REFERENCE.items():
        row = (
            f"| {size}, official DreamerV3 (quoted, not measured in this run) | float32 "
            f"| {REFERENCE_COMPILE} | {sec} ({old} older XLA CPU runtime) | - | - | - | - "
            f"| <= {target} |"
        )
        rows.append(row)
        print(row)

    notes = [
        f"one update of `Dreamer.train` at batch {b} x length {t}, {image}x{image}x3 uint8 "
        f"pixels only, {ACTION_DIM}-dim continuous actions, random batch, {args.dtype}; "
        f"s / update: median of {args.repeats} after compiling (state donated); compile: "
        "lower + compile; XLA's cost analysis counts each lax.scan body once; the full count "
        "adds the FLOPs that unrolling every scan adds to the unoptimised HLO's count and gives "
        "GFLOP/s; FLOPs are counted on the CPU only (XLA:GPU's cost analysis leaves out the "
        "cuBLAS / cuDNN calls)",
        "official DreamerV3 rows are quoted figures (same kind of 2-core CPU machine, float32, "
        "B=16, T=64, 64x64x3), not measured in this run",
    ]
    if args.loop:
        r = bench_loop(
            args.loop_size,
            args.dtype,
            args.num_envs,
            b,
            t,
            loop_image,
            args.chunk_steps,
            args.chunks,
            args.train_ratio,
            prefill,
            args.fused,
        )
        lh = (
            "| loop | envs | train ratio | updates / chunk | env steps/s (whole loop) | updates/s "
            "| env steps/s (collection only) | update share of loop time | warm-up chunk (s) |"
        )
        lrow = (
            f"| {args.loop_size} Reach {loop_image}px{'' if args.fused else ', unfused'} "
            f"| {args.num_envs} | {args.train_ratio:g} "
            f"| {r['updates']} | {r['loop_sps']:,.1f} | {r['ups']:.3f} | {r['collect_sps']:,.1f} "
            f"| {r['update_share']:.0%} | {r['warmup_s']:.1f} |"
        )
        print(f"\n{lh}\n{lrow}")
        if not r["finite"]:
            print("warning: loop loss is not finite")
        rows += ["", lh, "|" + "---|" * 9, lrow]
        notes.append(
            f"loop: `Trainer.train_chunk` on Reach (front camera, {loop_image} px, pixels only), "
            f"{args.loop_size}, batch {b} x {t}, {args.chunk_steps} vectorised env steps per "
            f"chunk, mean of {args.chunks} chunk(s) after a warm-up chunk (includes compile); "
            "collection only: jitted scan of the policy env step + replay insert, no updates "
            "(median of >= 2 after compiling); update share = 1 - collection time / loop time"
        )
    if args.write:
        append_results(HEADING, notes, rows)


if __name__ == "__main__":
    pvm_mbrl.setup()  # host-memory reuse and the compilation cache, before any JAX work
    main()
