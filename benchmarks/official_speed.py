"""DreamerV3 speed side by side with the official code (danijar/dreamerv3), in one run.

Both sides on this machine, one after the other, on the cores this process may use (``taskset
-c 1 python ...`` gives both the same one core; nothing else should run on them):

1. One gradient update per size preset (``--sizes``, default size1m and size12m) on a random
   batch of ``--batch`` x ``--length`` 64x64x3 images of ``--task`` (pixels only, its action
   size, float32, replay context 1): compile seconds and the median seconds per update over
   ``--repeats`` timed updates after one untimed. Official: its ``Agent`` built by its own
   ``make_agent`` from its ``configs.yaml`` (``dmc_vision`` plus the size preset), timed in its
   own virtual environment around ``agent.train``; ours: ``benchmarks/train_step.py``'s update.
2. Env steps per second of the task from pixels at action repeat 2: the official's dm-control
   env (its ``make_env``, MuJoCo's OpenGL renderer) one step at a time, and our ``dmc/`` task
   at 1 and ``--envs`` envs in one jitted scan.
3. With ``--runs DIR`` (a finished ``benchmarks/official.py`` comparison): both programs'
   whole-loop frames per second and the minutes each took to the official's last 10k-frame
   bin's mean return, from the runs' own logs.

Appends the tables, with date, machine and command, to benchmarks/RESULTS.md unless
``--no-write``::

    python benchmarks/official_speed.py --official ~/dreamerv3 \\
        --official-python ~/dreamerv3-venv/bin/python --runs runs/official
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pvm_mbrl

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import append_results  # noqa: E402

HEADING = "## DreamerV3 speed side by side with the official code (benchmarks/official_speed.py)"

# Runs under the official interpreter: argv = checkout, size, batch, length, repeats, steps,
# task, gl; prints one JSON line.
OFFICIAL = """
import json, os, pathlib, statistics, sys, tempfile, time
root = pathlib.Path(sys.argv[1])
size, B, T, repeats, steps, task = sys.argv[2], *map(int, sys.argv[3:7]), sys.argv[7]
sys.path[:0] = [str(root)]
import elements, numpy as np, ruamel.yaml as yaml
import jax
from dreamerv3 import main as official
configs = yaml.YAML(typ="safe").load((root / "dreamerv3" / "configs.yaml").read_text())
config = elements.Config(configs["defaults"])
for name in ("dmc_vision", size):
    config = config.update(configs[name])
config = config.update({
    "logdir": tempfile.mkdtemp(), "task": "dmc_" + task, "batch_size": B, "batch_length": T,
    "replay_context": 1, "env.dmc.size": (64, 64), "env.dmc.repeat": 2,
    "jax.platform": "cpu", "jax.compute_dtype": "float32", "jax.prealloc": False,
})
out = {}
if steps:
    env = official.make_env(config, 0)
    space = env.act_space["action"]
    rng = np.random.default_rng(0)
    env.step({"action": np.zeros(space.shape, np.float32), "reset": True})
    t0 = time.perf_counter()
    for _ in range(steps):
        act = rng.uniform(-1, 1, space.shape).astype(np.float32)
        env.step({"action": act, "reset": False})
    out["env_sps"] = steps / (time.perf_counter() - t0)
    env.close()
if repeats:
    t0 = time.perf_counter()
    agent = official.make_agent(config)  # builds the params and compiles train
    out["compile_s"] = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    data = {}
    for k, v in agent.spaces.items():
        shape = (B, T + 1, *v.shape)
        if np.issubdtype(v.dtype, np.floating):
            data[k] = rng.uniform(-1, 1, shape).astype(v.dtype)
        elif v.dtype == bool:
            data[k] = rng.random(shape) < (0.02 if k == "is_first" else 0.0)
        else:
            data[k] = rng.integers(0, 256 if v.dtype == np.uint8 else 2, shape).astype(v.dtype)
    from embodied.jax import internal
    data = internal.device_put(data, agent.train_sharded)  # as the agent's own stream does
    carry = agent.init_train(B)
    times = []
    for i in range(repeats + 1):
        seed = agent._seeds(i, agent.train_mirrored)
        t0 = time.perf_counter()
        carry, _, _ = agent.train(carry, {**data, "seed": seed})
        jax.block_until_ready((agent.params, carry))
        times.append(time.perf_counter() - t0)
    out["sec"] = statistics.median(times[1:])
print(json.dumps(out))
"""


def official_measure(a, size: str, repeats: int, steps: int) -> dict:
    """What the official code measures of itself (``OFFICIAL``), run in its own environment."""
    args = [a.official, size, a.batch, a.length, repeats, steps, a.task]
    env = {**os.environ, "MUJOCO_GL": a.gl, "PYTHONUNBUFFERED": "1"}
    out = subprocess.run(
        [a.official_python, "-c", textwrap.dedent(OFFICIAL), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=3600,
    )
    if out.returncode:
        raise SystemExit(f"the official measurement failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def ours_update(a, size: str) -> dict:
    from train_step import bench_update

    from pvm_mbrl import envs

    act = envs.make(f"dmc/{a.task}", obs_mode="state", render=False).action_space.shape[0]
    return bench_update(
        size, "float32", a.batch, a.length, 64, a.repeats, action_dim=act, count_flops=False
    )


def ours_env(a, batch: int) -> float:
    from env_step import bench_env

    return bench_env(f"dmc/{a.task}", batch, 64, a.env_steps // 10, 3, None, action_repeat=2)


def whole_loop(out: pathlib.Path) -> list[str]:
    """Whole-loop speed and minutes to the official's last bin, from a comparison's runs."""
    from official import loop_notes, read_sides
    from official_settings import Settings

    s = Settings(**json.loads((out / "settings.json").read_text()))
    return [f"runs in {out} (both at once, one core each):", *loop_notes(read_sides(out), out, s)]


def ratio(official: float, ours: float) -> str:
    return f"{official / ours:.1f}x"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", required=True, help="path of a danijar/dreamerv3 checkout")
    ap.add_argument("--official-python", required=True, help="its virtual environment's python")
    ap.add_argument("--task", default="cartpole_swingup", help="a Control Suite task")
    ap.add_argument("--sizes", nargs="+", default=["size1m", "size12m"])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3, help="timed updates per size")
    ap.add_argument("--env-steps", type=int, default=500, help="official env steps timed")
    ap.add_argument("--envs", type=int, default=4, help="our batched env count")
    ap.add_argument("--gl", default="egl", choices=["egl", "osmesa"])
    ap.add_argument("--runs", help="a finished benchmarks/official.py --out directory")
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args(argv)

    rows = [
        "| measure | official | ours | ours faster by |",
        "|---|---|---|---|",
    ]

    def add(name, off, mine, unit, slower_is_more=True):
        r = ratio(off, mine) if slower_is_more else ratio(mine, off)
        rows.append(f"| {name} | {off:.2f} {unit} | {mine:.2f} {unit} | {r} |")
        print(rows[-1], flush=True)

    print("\n".join(rows), flush=True)
    for size in a.sizes:
        off = official_measure(a, size, a.repeats, 0)
        mine = ours_update(a, size)
        add(f"{size} update, batch {a.batch} x {a.length}", off["sec"], mine["sec"], "s")
        add(f"{size} compile", off["compile_s"], mine["compile_s"], "s")
    off_env = official_measure(a, a.sizes[0], 0, a.env_steps)["env_sps"]
    add("env steps/s, 1 env", off_env, ours_env(a, 1), "", slower_is_more=False)
    ours_many = ours_env(a, a.envs)
    rows.append(
        f"| env steps/s, {a.envs} envs | {a.envs} processes in the official loop | "
        f"{ours_many:.0f} (one jitted scan) | - |"
    )
    print(rows[-1])
    cores = sorted(os.sched_getaffinity(0))
    notes = [
        f"task: {a.task} from 64x64 pixels, action repeat 2, float32, replay context 1; both "
        f"sides one after the other on the same {len(cores)} core(s) ({cores}; taskset picks "
        "them), nothing else on them",
        "official: danijar/dreamerv3 in its own virtual environment (its make_agent and "
        "make_env; dm-control with MuJoCo's OpenGL renderer); ours: benchmarks/train_step.py's "
        "update and the dmc/ task in one jitted scan",
        f"update: median of {a.repeats} timed updates after one untimed; compile: building "
        "the agent and compiling its update, both cold (ours without its compilation cache)",
        "env steps: policy steps (2 frames each) per second, random actions",
    ]
    if a.runs:
        notes += whole_loop(pathlib.Path(a.runs))
    print("\n".join("- " + n for n in notes))
    if not a.no_write:
        append_results(HEADING, notes, rows)


if __name__ == "__main__":
    # Compiles are compared cold: the official code keeps no compilation cache between runs.
    os.environ.setdefault("PVM_MBRL_JAX_CACHE", "off")
    pvm_mbrl.setup()  # host-memory reuse and the compilation cache, before any JAX work
    main()
