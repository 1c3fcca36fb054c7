"""Seconds from ``python`` to the first update, with an empty and with a warm compilation cache.

Starts a fresh process twice on the same, initially empty, cache folder (``PVM_MBRL_JAX_CACHE``):
the first compiles everything, the second reads the persistent compilation cache
(``pvm_mbrl.compile_cache``). Each builds the official ``dmc_vision`` training setup
(``benchmarks/dmc_curve.py``: size12m, train ratio 512, 16 envs, batch 16 x 64, action repeat 2,
64 px) on ``--task``, initialises, prefills ``--length`` random steps per env and runs the first
chunk (one collection cycle and its updates). Prints, per start, when each phase ended (seconds
since the parent started the process: imports, building the env and agent, init, prefill, the
first chunk) and the compiled programs (count, seconds, cache hits), the largest named. Targets
on an H200: the first update within 60 s of the start, 20 s with a warm cache.

    python benchmarks/startup.py --task dmc/cartpole_swingup --size size12m
    python benchmarks/startup.py --quick        # tiny smoke test, writes nothing
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

HEADING = "## Start-up: process start to first update (benchmarks/startup.py)"
PHASES = ("imports", "build", "init", "prefill", "first update")
TARGET = {"cold": 60.0, "warm": 20.0}  # seconds, on an H200


def child(a, t0: float) -> dict:
    """Runs in the measured process: the phases' end times since ``t0`` and the compiles."""
    import jax

    import pvm_mbrl
    from pvm_mbrl.compile_cache import CompileLog
    from pvm_mbrl.experiment import Experiment, build, seed_keys

    pvm_mbrl.setup()  # the cache folder comes from PVM_MBRL_JAX_CACHE, set by the parent
    ends = {"imports": time.time() - t0}
    with CompileLog() as log:
        exp = experiment(a, Experiment)
        _, _, trainer = build(exp)
        ends["build"] = time.time() - t0
        state = jax.block_until_ready(trainer.init(seed_keys(exp)))
        ends["init"] = time.time() - t0
        state = jax.block_until_ready(trainer.prefill(state))
        ends["prefill"] = time.time() - t0
        state, metrics = jax.block_until_ready(trainer.train_chunk(state))
        ends["first update"] = time.time() - t0
    top = sorted(log.compiles, key=lambda c: -c.seconds)[:4]
    return dict(
        ends=ends,
        updates=int(max(jax.device_get(metrics["updates"]).reshape(-1))),
        compiles=len(log.compiles),
        compile_s=sum(c.seconds for c in log.compiles),
        hits=sum(c.cache_hit for c in log.compiles),
        top=[(c.name, round(c.seconds, 1), c.cache_hit) for c in top],
        device=str(jax.devices()[0]),
    )


def experiment(a, cls):
    """The ``dmc_vision`` setup with a prefill of one sequence and a chunk of one cycle."""
    kw = dict(
        task=a.task,
        action_repeat=2,
        image_size=a.image,
        size=a.size,
        lr=4e-5,
        warmup=1000,
        train_ratio=a.train_ratio,
        num_envs=a.num_envs,
        batch_size=a.batch,
        batch_length=a.length,
        replay_capacity=a.num_envs * 4 * a.length,
        prefill=a.length + 1,  # one step of replay context
        seeds=tuple(range(a.seeds)),
        logdir=tempfile.mkdtemp(),
    )
    probe = cls.of(**kw, chunk_steps=1)
    return probe.replace(chunk_steps=probe.loop.cycle[0])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="dmc/cartpole_swingup")
    ap.add_argument("--size", default="size12m")
    ap.add_argument("--seeds", type=int, default=1, help="agents vmapped in one program")
    ap.add_argument("--num-envs", type=int, default=16)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--image", type=int, default=64)
    ap.add_argument("--train-ratio", type=float, default=512.0)
    ap.add_argument("--cache", default=None, help="cache folder (default: a new empty one)")
    ap.add_argument("--quick", action="store_true", help="tiny smoke test (no write by default)")
    ap.add_argument("--write", action=argparse.BooleanOptionalAction, help="append to RESULTS.md")
    ap.add_argument("--child", type=float, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child is not None:
        print("RESULT " + json.dumps(child(a, a.child)), flush=True)
        return
    a.write = not a.quick if a.write is None else a.write
    args = sys.argv[1:] if argv is None else list(argv)
    if a.quick:
        args += ["--size", "micro", "--num-envs", "2", "--batch", "2", "--length", "4"]
        args += ["--image", "16", "--train-ratio", "16"]
    cache = pathlib.Path(a.cache or tempfile.mkdtemp(prefix="pvm_mbrl_cache_"))
    env = {**os.environ, "PVM_MBRL_JAX_CACHE": str(cache), "PYTHONUNBUFFERED": "1"}
    header = "| cache | " + " | ".join(f"{p} (s)" for p in PHASES) + " | compiles | largest |"
    rows = [header, "|" + "---|" * (len(PHASES) + 3)]
    results = {}
    for start in ("cold", "warm"):
        t0 = time.time()
        cmd = [sys.executable, __file__, *args, "--child", repr(t0)]
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        lines = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
        if out.returncode or not lines:
            sys.exit(f"the {start} start failed:\n{out.stderr[-3000:]}")
        r = results[start] = json.loads(lines[-1][len("RESULT ") :])
        largest = ", ".join(f"{n} {s} s{' (hit)' if h else ''}" for n, s, h in r["top"][:2])
        row = (
            f"| {start} | "
            + " | ".join(f"{r['ends'][p]:.1f}" for p in PHASES)
            + f" | {r['compiles']} ({r['compile_s']:.1f} s, {r['hits']} cache hits) | {largest} |"
        )
        rows.append(row)
        print(row if start == "warm" else f"{header}\n{rows[1]}\n{row}", flush=True)
    gpu = not results["cold"]["device"].startswith("cpu")
    verdict = ", ".join(
        f"{s} {results[s]['ends']['first update']:.0f} s (target {t:.0f} s"
        + (f": {'met' if results[s]['ends']['first update'] <= t else 'not met'})" if gpu else ")")
        for s, t in TARGET.items()
    )
    print(f"first update: {verdict}" + ("" if gpu else "; the targets are for an H200"))
    seeds = f"{a.seeds} seed{'s' if a.seeds > 1 else ''}"
    notes = [
        f"{a.task}, dmc_vision setup: {a.size}, {seeds}, {a.num_envs} envs, batch {a.batch} x "
        f"{a.length}, train ratio {a.train_ratio:g}, {a.image} px, action repeat 2; prefill "
        f"{a.length} steps per env; first chunk = one cycle ({results['cold']['updates']} "
        "update(s)); times are the phases' ends in seconds since the parent started the "
        "process; cold: empty cache folder, warm: the same folder a second time",
        f"first update: {verdict}",
    ]
    if a.write:
        sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
        from common import append_results

        append_results(HEADING, notes, rows)


if __name__ == "__main__":
    main()
