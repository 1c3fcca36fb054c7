"""Many agents in one compiled program: the time of one update step of N DreamerV3 agents.

The study trains many agents of one shape (seeds, and the cells that share shapes); a GPU runs a
single size12m update latency-bound (the sequential RSSM and imagination scans launch small
kernels), so N agents vmapped into one program (``jax.vmap(agent.train)``, which is what
``Trainer(..., seeds=N)`` compiles) should cost far less than N times one. This prints, per N,
the compile time and the seconds per step of all N agents (each agent one update on its own
random batch of ``--batch`` x ``--length`` 64x64x3 pixels), next to N = 1; the target is 8
agents in at most 1.5x the time of one on a GPU (on a CPU the cores are already busy with one
agent, so N agents take about N times as long).

    python benchmarks/agents.py --size size12m --agents 1 2 4 8
    python benchmarks/agents.py --quick        # tiny smoke test, writes nothing
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
from pvm_mbrl.dreamer.agent import Dreamer
from pvm_mbrl.envs.core import Space

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import append_results
from train_step import ACTION_DIM, make_config, random_batch

HEADING = "## Many agents in one program (benchmarks/agents.py)"
TARGET = (8, 1.5)  # 8 agents in at most 1.5x the time of one, on a GPU


def bench(agent: Dreamer, n: int, b: int, t: int, image: int, repeats: int) -> dict[str, float]:
    """Compile time and median seconds per step of ``n`` agents vmapped in one program."""
    keys = jax.random.split(jax.random.PRNGKey(0), n)
    states = jax.jit(jax.vmap(agent.init))(keys)
    rng = np.random.default_rng(n)
    batches = [random_batch(agent, rng, b, t) for _ in range(n)]
    batch = jax.device_put({k: np.stack([x[k] for x in batches]) for k in batches[0]})
    step = jax.jit(jax.vmap(agent.train), donate_argnums=0)
    t0 = time.perf_counter()
    compiled = step.lower(states, batch, keys).compile()
    compile_s = time.perf_counter() - t0
    states, _ = jax.block_until_ready(compiled(states, batch, keys))  # first call, not timed
    times = []
    for i in range(repeats):
        keys = jax.random.split(jax.random.PRNGKey(i + 1), n)
        t0 = time.perf_counter()
        states, metrics = jax.block_until_ready(compiled(states, batch, keys))
        times.append(time.perf_counter() - t0)
    finite = bool(np.isfinite(np.asarray(metrics["loss/total"])).all())
    return dict(compile_s=compile_s, sec=statistics.median(times), finite=finite)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="size12m")
    ap.add_argument("--agents", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--image", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--quick", action="store_true", help="tiny smoke test (no write by default)")
    ap.add_argument("--write", action=argparse.BooleanOptionalAction, help="append to RESULTS.md")
    a = ap.parse_args(argv)
    a.write = not a.quick if a.write is None else a.write
    if a.quick:
        a.size, a.agents, a.batch, a.length, a.image, a.repeats = "tiny", [1, 2], 2, 8, 16, 1
    if 1 not in a.agents:
        a.agents = [1, *a.agents]
    space = {"pixels": Space((a.image, a.image, 3), jnp.uint8, 0, 255)}
    act = Space((ACTION_DIM,), jnp.float32, -1.0, 1.0)
    agent = Dreamer(make_config(a.size, a.dtype), space, act)
    gpu = jax.devices()[0].platform != "cpu"
    header = (
        "| size | agents | compile (s) | s / step (all agents) | vs 1 agent | s / agent-update "
        "| target (GPU: 8 agents <= 1.5x) |"
    )
    rows = [header, "|" + "---|" * 7]
    print(f"device {jax.devices()[0]}, {a.dtype}, batch {a.batch} x {a.length}, {a.image} px")
    print(header, flush=True)
    one = None
    for n in sorted(set(a.agents)):
        r = bench(agent, n, a.batch, a.length, a.image, a.repeats)
        one = r["sec"] if n == 1 else one
        ratio = r["sec"] / one
        if n != TARGET[0]:
            target = "-"
        elif not gpu:
            target = "GPU target, not comparable"
        else:
            target = "met" if ratio <= TARGET[1] else "not met"
        row = (
            f"| {a.size} | {n} | {r['compile_s']:.1f} | {r['sec']:.3f} | {ratio:.2f}x "
            f"| {r['sec'] / n:.3f} | {target} |"
        )
        rows.append(row)
        print(row, flush=True)
        if not r["finite"]:
            print(f"warning: a loss of the {n}-agent program is not finite")
    notes = [
        f"one compiled `jax.vmap(agent.train)` over N agents (own parameters, optimiser state "
        f"and random batch each), batch {a.batch} x {a.length}, {a.image}x{a.image}x3 uint8 "
        f"pixels, {ACTION_DIM}-dim actions, {a.dtype}; s / step: median of {a.repeats} calls "
        "after compiling (states donated); compile: lower + compile"
    ]
    if a.write:
        append_results(HEADING, notes, rows)


if __name__ == "__main__":
    pvm_mbrl.setup()  # host-memory reuse and the compilation cache, before any JAX work
    main()
