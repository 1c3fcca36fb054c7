"""Our TD-MPC2 and the official code side by side at equal settings, on this machine's CPU.

Runs the official ``tdmpc2/train.py`` from a checkout you point to (``--official``, a
nicklashansen/tdmpc2 checkout, with ``--python`` an interpreter that has its requirements) and
``benchmarks/learning.py --agent tdmpc2`` at the same settings, both at once, each on a core:
the same task from its state vector, model size, one env, seed steps of random actions then as
many updates, one update per env step on batches of 256 x 4 drawn uniformly from replay (no
DreamerV3 online queue), and the official planner.

The official code assumes a CUDA device in a few lines (the agent's and the buffer's device,
the running scale's buffers, an assert in ``train.py``, CUDA-graph step markers). The script
copies its ``tdmpc2/`` folder into ``--out`` and replaces exactly those lines for the CPU (each
replacement must match, or it stops and names the file); ``compile=false`` skips
``torch.compile``. The checkout itself is not changed, and the library never imports it.

Reported per 2,500-step bin: the mean training-episode return of each side (both explore with
the planner's noise), and each side's speed in agent steps per second after seeding.

    python benchmarks/tdmpc2_official.py --official ~/tdmpc2 --python ~/tdmpc2-venv/bin/python \\
        --task cartpole-swingup --steps 20000 --minutes 170
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import append_results  # noqa: E402

HEADING = "## TD-MPC2 against the official code (benchmarks/tdmpc2_official.py)"
# (file under tdmpc2/, text, its CPU replacement): the official code's CUDA assumptions.
CPU_PATCH = [
    ("tdmpc2.py", "torch.device('cuda:0')", "torch.device('cpu')"),
    ("tdmpc2.py", "device='cuda:0'", "device='cpu'"),
    ("tdmpc2.py", "torch.compiler.cudagraph_mark_step_begin()", "pass"),
    ("common/scale.py", "torch.device('cuda:0')", "torch.device('cpu')"),
    ("common/buffer.py", "torch.device('cuda:0')", "torch.device('cpu')"),
    ("common/buffer.py", "mem_free, _ = torch.cuda.mem_get_info()", "mem_free = 0"),
    ("common/seed.py", "torch.cuda.manual_seed_all(seed)", "pass"),
    ("train.py", "assert torch.cuda.is_available()", "pass"),
    ("trainer/online_trainer.py", "torch.compiler.cudagraph_mark_step_begin()", "pass"),
]
ANSI = re.compile(r"\x1b\[[0-9;]*m")
TRAIN_LINE = re.compile(r"train\s.*?I:\s*([\d,]+).*?R:\s*([-\d.,]+).*?T:\s*(\d+):(\d+):(\d+)")
BIN = 2_500


def patch_copy(official: pathlib.Path, dest: pathlib.Path) -> pathlib.Path:
    """``official/tdmpc2`` copied to ``dest`` with :data:`CPU_PATCH` applied."""
    src = official / "tdmpc2"
    if not (src / "train.py").exists():
        raise SystemExit(f"no tdmpc2/train.py under {official} (a nicklashansen/tdmpc2 checkout?)")
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("logs", "__pycache__"))
    for rel, old, new in CPU_PATCH:
        path = dest / rel
        text = path.read_text()
        if old not in text:
            raise SystemExit(f"{path}: expected {old!r} (a different official version?)")
        path.write_text(text.replace(old, new))
    return dest


def commands(a, out: pathlib.Path) -> dict[str, tuple[list[str], pathlib.Path]]:
    """The command and working folder of each side."""
    official = [
        a.python, "train.py", f"task={a.task}", f"model_size={a.size}", f"steps={a.steps}",
        f"seed={a.seed}", f"eval_freq={10 * a.steps}", "compile=false", "enable_wandb=false",
        "save_video=false", "save_agent=false", "obs=state", "eval_episodes=1",
    ]  # fmt: skip
    seed_steps = max(1000, 5 * 500)  # the official rule for the Control Suite's 500 steps
    ours = [
        sys.executable, str(HERE / "learning.py"), "--agent", "tdmpc2", "--td-size", str(a.size),
        "--task", "dmc/" + a.task.replace("-", "_"), "--obs", "state", "--action-repeat", "2",
        "--lr", "3e-4", "--num-envs", "1", "--batch", "256", "--length", "4",
        "--train-ratio", "1024", "--prefill", str(seed_steps), "--pretrain", str(seed_steps),
        "--no-fused", "--no-online", "--chunk-steps", "50",
        "--replay", str(a.steps + seed_steps + 100),
        "--env-steps", str(a.steps), "--minutes", str(a.minutes), "--seed", str(a.seed),
        "--eval-episodes", "4", "--random-episodes", "8", "--no-write", "--no-plot",
        "--curve-out", str(out / "ours.jsonl"),
    ]  # fmt: skip
    return {"official": (official, out / "official_src"), "ours": (ours, HERE.parent)}


def read_official(log: pathlib.Path) -> list[tuple[int, float, float]]:
    """(agent step, episode return, elapsed seconds) of each training episode in the log."""
    rows = []
    for line in ANSI.sub("", log.read_text()).splitlines():
        m = TRAIN_LINE.search(line)
        if m:
            h, mi, s = (int(x) for x in m.group(3, 4, 5))
            rows.append(
                (int(m.group(1).replace(",", "")), float(m.group(2)), h * 3600 + mi * 60 + s)
            )
    return rows


def read_ours(path: pathlib.Path) -> list[tuple[int, float, float]]:
    """(agent step, mean return of the chunk's episodes, wall seconds) per chunk with one."""
    rows = []
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if r["episodes"]:
            rows.append((r["env_steps"], r["return"], 60 * r["wall"]))
    return rows


def binned(rows) -> dict[int, float]:
    out: dict[int, list[float]] = {}
    for step, ret, _ in rows:
        out.setdefault((step - 1) // BIN * BIN + BIN, []).append(ret)
    return {k: sum(v) / len(v) for k, v in sorted(out.items())}


def speed(rows, start: int) -> float | None:
    """Agent steps per second between the first episode after ``start`` steps and the last."""
    after = [r for r in rows if r[0] > start]
    if len(after) < 2 or after[-1][2] <= after[0][2]:
        return None
    return (after[-1][0] - after[0][0]) / (after[-1][2] - after[0][2])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", required=True, help="path of a nicklashansen/tdmpc2 checkout")
    ap.add_argument("--python", required=True, help="interpreter with the official requirements")
    ap.add_argument("--task", default="cartpole-swingup", help="official name, e.g. reacher-easy")
    ap.add_argument("--size", type=int, default=1, help="model_size (millions of parameters)")
    ap.add_argument("--steps", type=int, default=20_000, help="agent steps per side")
    ap.add_argument("--minutes", type=float, default=170.0, help="wall-time limit per side")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default="runs/tdmpc2_official")
    ap.add_argument("--report", action="store_true", help="only read the logs in --out")
    ap.add_argument("--write", action="store_true", help="append to benchmarks/RESULTS.md")
    a = ap.parse_args(argv)
    out = pathlib.Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if not a.report:
        patch_copy(pathlib.Path(a.official).expanduser().resolve(), out / "official_src")
        (out / "ours.jsonl").unlink(missing_ok=True)
        env = {
            **os.environ,
            "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
            "PYTHONUNBUFFERED": "1",
        }
        procs = {}
        for side, (cmd, cwd) in commands(a, out).items():
            log = open(out / f"{side}.log", "w")
            procs[side] = subprocess.Popen(
                cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env
            )
        deadline = time.time() + 60 * (a.minutes + 10)
        while any(p.poll() is None for p in procs.values()) and time.time() < deadline:
            time.sleep(30)
        for side, p in procs.items():
            if p.poll() is None:
                p.terminate()
                print(f"{side}: stopped at the time limit")
    report(a, out)


def report(a, out: pathlib.Path) -> None:
    sides = {"official": read_official(out / "official.log"), "ours": read_ours(out / "ours.jsonl")}
    seed_steps = max(1000, 5 * 500)
    curves = {k: binned(v) for k, v in sides.items()}
    steps = sorted(set().union(*curves.values()))
    header = "| agent steps | official return | ours return |"
    rows = [header, "|---|---|---|"]
    for s in steps:
        cells = [f"{curves[k][s]:.1f}" if s in curves[k] else "-" for k in ("official", "ours")]
        rows.append(f"| {s:,} | " + " | ".join(cells) + " |")
    speeds = {k: speed(v, seed_steps) for k, v in sides.items()}
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    rows += ["", "| side | agent steps/s after seeding | episodes |", "|---|---|---|"]
    rows += [f"| {k} | {fmt(speeds[k])} | {len(sides[k])} |" for k in sides]
    print("\n".join(rows))
    if a.write:
        notes = [
            f"{a.task} from state, model_size {a.size}, seed {a.seed}, one env per side, both "
            f"at once on the 2 cores; seed steps {seed_steps} then as many updates; batch 256 "
            "x 4, one update per step; official planner settings; training-episode returns "
            f"(exploring) in {BIN:,}-step bins",
        ]
        append_results(HEADING, notes, rows)


if __name__ == "__main__":
    main()
