"""DreamerV3 on a dmc/ task against the published DMC-Vision (or DMC-proprio) learning curve.

Trains any number of seeds vmapped in one program (``Trainer(..., seeds=S)``) with the official
``dmc_vision`` config of danijar/dreamerv3 at commit 2411f7d, the commit of the reference scores:
size12m, train ratio 512, action repeat 2, 16 envs, batch 16 x 64, 64 x 64 pixels from camera
0, optimiser lr 4e-5 (warm-up 1,000 updates, AGC 0.3, eps 1e-20). ``--obs state`` is the
``dmc_proprio`` config (the suite's observation vector, same agent) against
``dmc_proprio_scores.csv``. Replay context and the online queue are on, as in the official
code; the one deviation left is a uniform random prefill of ``--prefill`` steps per env (the
official's untrained agent collects until its first batch).

The reference files' x-axis counts environment frames: the official logger multiplies its
policy-step counter by the action repeat (the ``multiplier`` of ``make_logger`` in
``dreamerv3/main.py``), and its scores reach 1M (vision) and 490k (proprio) frames at action
repeat 2. Here ``frames = policy steps x action repeat``. As in the reference, the
curve is the return of the training episodes (the policy samples its actions), per seed the
mean of the episodes that end in a 10k-frame bin (centred on multiples of 10k), then mean /
std / min / max over seeds; each bin is compared with the reference's mean +- 2 std.

    python benchmarks/dmc_curve.py --task dmc/cartpole_swingup --seeds 3 --frames 100000
    python benchmarks/dmc_curve.py --quick        # tiny CPU smoke test, writes nothing
"""

from __future__ import annotations

import argparse
import csv
import pathlib
import sys
import time

import jax
import numpy as np

import pvm_mbrl
from pvm_mbrl import envs
from pvm_mbrl.dreamer.agent import Dreamer
from pvm_mbrl.dreamer.config import PRESETS, DreamerConfig
from pvm_mbrl.dreamer.optim import OptimizerConfig
from pvm_mbrl.train import TrainConfig, Trainer

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import append_results, overrides

HEADING = "## DMC learning curves against the published DreamerV3 (benchmarks/dmc_curve.py)"
REFERENCE = pathlib.Path(__file__).resolve().parent / "reference"  # see its README.md
BIN = 10_000


def reference(task: str, obs: str, path: pathlib.Path | None = None) -> dict[int, dict]:
    """``{frames: {mean, std, min, max, seeds}}`` of the official DreamerV3 on ``task``
    (``cartpole_swingup``) from ``dmc_vision_scores.csv`` or ``dmc_proprio_scores.csv``."""
    name = "dmc_proprio_scores.csv" if obs == "state" else "dmc_vision_scores.csv"
    path = path or REFERENCE / name
    if not path.is_file():
        raise FileNotFoundError(
            f"no reference curves at {path}: the published DreamerV3 scores ship in "
            "benchmarks/reference/ (see its README.md); restore the file or pass its path"
        )
    out = {}
    with path.open() as f:
        for row in csv.DictReader(f):
            if row["method"] == "dreamerv3" and row["task"] == task:
                out[int(row["frames"])] = {
                    k: float(row[k]) for k in ("mean", "std", "min", "max", "seeds")
                }
    return out


def bin_curve(chunks: list[dict], seeds: int) -> dict[int, np.ndarray]:
    """Per 10k-frame bin, each seed's mean training-episode return (NaN without an episode)."""
    sums, counts = {}, {}
    for c in chunks:
        b = round(c["frames"] / BIN) * BIN
        sums.setdefault(b, np.zeros(seeds))
        counts.setdefault(b, np.zeros(seeds))
        sums[b] += c["return"] * c["count"]
        counts[b] += c["count"]
    return {
        b: np.where(counts[b] > 0, sums[b] / np.maximum(counts[b], 1), np.nan) for b in sorted(sums)
    }


def table(curve: dict[int, np.ndarray], ref: dict[int, dict]) -> list[str]:
    rows = [
        "| frames | ours mean | ours std | ours min-max | seeds | reference mean +- std "
        "| reference min-max | within 2 std |",
        "|" + "---|" * 8,
    ]
    for b, per_seed in curve.items():
        ok = per_seed[np.isfinite(per_seed)]
        if not len(ok):
            continue
        mean, std = ok.mean(), ok.std()
        r = ref.get(b)
        if r:
            inside = "yes" if abs(mean - r["mean"]) <= 2 * r["std"] else "no"
            refs = (f"{r['mean']:.1f} +- {r['std']:.1f}", f"{r['min']:.1f}-{r['max']:.1f}")
        else:
            inside, refs = "-", ("-", "-")
        rows.append(
            f"| {b:,} | {mean:.1f} | {std:.1f} | {ok.min():.1f}-{ok.max():.1f} | {len(ok)} "
            f"| {refs[0]} | {refs[1]} | {inside} |"
        )
    return rows


def plot(curve, ref, path, title) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    if ref:
        x = np.array(sorted(ref))
        last = max(curve) if curve else x[-1]
        x = x[x <= max(last * 1.5, 2 * BIN)]
        m = np.array([ref[k]["mean"] for k in x])
        s = np.array([ref[k]["std"] for k in x])
        ax.fill_between(
            x,
            [ref[k]["min"] for k in x],
            [ref[k]["max"] for k in x],
            alpha=0.15,
            color="gray",
            label="official min-max",
        )
        ax.fill_between(
            x, m - 2 * s, m + 2 * s, alpha=0.3, color="gray", label="official mean +- 2 std"
        )
        ax.plot(x, m, color="black", label="official mean")
    xs = [b for b, v in curve.items() if np.isfinite(v).any()]
    for i in range(len(next(iter(curve.values()))) if curve else 0):
        ax.plot(xs, [curve[b][i] for b in xs], ".", alpha=0.5, color="C0")
    ax.plot(xs, [np.nanmean(curve[b]) for b in xs], "-o", color="C0", label="pvm_mbrl mean")
    ax.set_xlabel("environment frames")
    ax.set_ylabel("episode return")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=7, wrap=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"saved {path}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="dmc/cartpole_swingup")
    ap.add_argument("--obs", choices=["pixels", "state"], default="pixels")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--frames", type=int, default=100_000, help="frame budget per seed")
    ap.add_argument("--minutes", type=float, default=None, help="wall-time budget")
    ap.add_argument("--size", default="size12m", choices=PRESETS, help="DreamerConfig preset")
    ap.add_argument("--set", nargs="*", default=[], help="DreamerConfig overrides, key=value")
    ap.add_argument("--train-ratio", type=float, default=512.0)
    ap.add_argument("--num-envs", type=int, default=16)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--action-repeat", type=int, default=2)
    ap.add_argument("--image", type=int, default=64)
    ap.add_argument("--lr", type=float, default=4e-5)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--chunk-steps", type=int, default=32, help="vectorised steps per chunk")
    ap.add_argument(
        "--prefill", type=int, default=65, help="random steps per env (>= length + 1 of context)"
    )
    ap.add_argument("--replay", type=int, default=1_000_000, help="replay capacity (steps)")
    ap.add_argument("--fused", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--plot", default=None, help="PNG path (default: next to this script)")
    ap.add_argument("--quick", action="store_true", help="tiny smoke test (writes nothing)")
    ap.add_argument("--write", action=argparse.BooleanOptionalAction, help="append to RESULTS.md")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    a.write = not a.quick if a.write is None else a.write
    if a.quick:
        a.size, a.image, a.num_envs, a.batch, a.length = "micro", 16, 2, 2, 8
        a.chunk_steps, a.prefill, a.frames, a.seeds, a.train_ratio = 16, 10, 2_500, 2, 16.0

    task = a.task.removeprefix("dmc/")
    mode = dict(obs_mode="state", render=False) if a.obs == "state" else {}
    env = envs.make(
        a.task,
        **mode,
        image_size=a.image,
        action_repeat=a.action_repeat,
        num_envs=a.num_envs,
        auto_reset=False,
    )
    opt = OptimizerConfig(lr=a.lr, warmup=a.warmup)
    kw = dict(compute_dtype=a.dtype, obs_keys=("state",) if a.obs == "state" else ("pixels",))
    kw |= dict(optimizer=opt) | overrides(a.set)
    config = DreamerConfig.preset(a.size, **kw)
    agent = Dreamer(config, env.observation_space, env.action_space)
    tc = TrainConfig(
        num_envs=a.num_envs,
        train_ratio=a.train_ratio,
        batch_size=a.batch,
        batch_length=a.length,
        chunk_steps=a.chunk_steps,
        prefill=a.prefill,
        replay_capacity=max(a.replay // a.num_envs, a.length) * a.num_envs,
        fused=a.fused,
    )
    trainer = Trainer(env, agent, tc, seeds=a.seeds)
    frames_per_chunk = a.chunk_steps * a.num_envs * a.action_repeat
    desc = (
        f"{a.task} from {a.obs} ({a.image} px, camera 0, action repeat {a.action_repeat}), "
        f"{a.size}{''.join(' ' + x for x in a.set)}, {a.seeds} seeds vmapped, {a.num_envs} envs, "
        f"train ratio {a.train_ratio:g}, batch {a.batch} x {a.length}, lr {a.lr:g} (warm-up "
        f"{a.warmup}), {a.dtype}, prefill {a.prefill} steps per env, {tc.chunk_updates} updates "
        f"and {frames_per_chunk:,} frames per chunk"
    )
    print(desc, flush=True)
    ref = reference(task, a.obs)
    if not ref:
        print(f"(no reference curve for {task!r}: the table shows ours only)")

    t0 = time.perf_counter()
    keys = jax.random.split(jax.random.PRNGKey(a.seed), a.seeds)
    state = trainer.prefill(trainer.init(keys))
    chunks, first = [], None
    print("| frames | updates | wall (min) | episodes | mean return over seeds |", flush=True)
    while True:
        state, m = trainer.train_chunk(state)
        m = jax.device_get(m)
        frames = int(np.max(m["env_steps"])) * a.action_repeat
        wall = (time.perf_counter() - t0) / 60
        first = first if first is not None else wall
        count = np.asarray(m["episode/count"], np.float64)
        ret = np.asarray(m["episode/return"], np.float64)
        chunks.append(dict(frames=frames, count=count, **{"return": ret}))
        shown = f"{ret[count > 0].mean():.1f}" if (count > 0).any() else "-"
        print(
            f"| {frames:,} | {int(np.max(m['updates'])):,} | {wall:.2f} | {int(count.sum())} "
            f"| {shown} |",
            flush=True,
        )
        if frames >= a.frames or (a.minutes and wall >= a.minutes):
            break
    if not all(np.isfinite(np.asarray(v)).all() for k, v in m.items() if k.startswith("loss")):
        print("warning: a loss is not finite")
    wall = (time.perf_counter() - t0) / 60
    curve = bin_curve(chunks, a.seeds)
    rows = table(curve, ref)
    print("\n" + "\n".join(rows))
    print(f"wall {wall:.1f} min (first chunk, compiles included: {first:.1f} min)")
    if a.quick:
        return
    path = (
        pathlib.Path(a.plot)
        if a.plot
        else pathlib.Path(__file__).resolve().parent / (f"dmc_curve_{task}_{a.obs}.png")
    )
    plot(curve, ref, path, desc)
    if a.write:
        notes = [
            desc,
            f"wall {wall:.1f} min for {chunks[-1]['frames']:,} frames per seed (first chunk, "
            f"compiles included: {first:.1f} min); plot {path.name}",
            "ours: training-episode returns per 10k-frame bin (per seed the mean of the episodes "
            "ending in the bin; then over seeds); reference: official DreamerV3, same binning",
        ]
        append_results(HEADING, notes, rows)


if __name__ == "__main__":
    pvm_mbrl.setup()  # host-memory reuse and the compilation cache, before any JAX work
    main()
