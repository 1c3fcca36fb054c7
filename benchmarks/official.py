"""DreamerV3 side by side with the official code (danijar/dreamerv3) at equal settings.

Runs the official ``dreamerv3/main.py`` from a checkout you point to (``--official``), with the
interpreter of its own virtual environment (``--official-python``), and ours
(``benchmarks/learning.py``) on the same Control Suite task from pixels, with the same image
size, action repeat, envs, model sizes, batch, train ratio, learning rate and warm-up, AGC, loss
scales, horizon, replay context and online queue. Before anything runs it prints both resolved
configurations side by side (the official one as its own ``configs.yaml`` and flag parser
resolve it) and every setting that still differs. The official side uses dm-control's own task,
drawn by MuJoCo's OpenGL renderer (``MUJOCO_GL=egl``, or ``osmesa``); ours the ``dmc/`` task of
the same name, whose rewards match dm-control's (tests/test_dmc.py).

Each side runs its seeds one after another on its own CPU core (``--cores``), both sides at once.
When they finish (or with ``--report`` on an earlier ``--out``) it bins the training episodes'
returns by 10k frames, prints per bin the mean and the seed range of both, with a uniform random
policy's return as the floor, the whole-loop speed of both (frames per second of wall time,
from each program's own log) and the minutes each took to reach the official's final return;
``--write`` appends the tables to benchmarks/RESULTS.md and saves a plot.

Make the official environment once (outside this project; never a dependency of it)::

    git clone https://github.com/danijar/dreamerv3 ~/dreamerv3   # tested at commit e3f0224
    python3 -m venv ~/dreamerv3-venv
    ~/dreamerv3-venv/bin/pip install "jax==0.4.33" chex einops "elements>=3.19.1" \\
        "granular>=0.20.3" "ninjax>=3.5.1" "numpy<2" optax "portal>=3.5.0" "scope>=0.4.4" \\
        tqdm dm_control colored_traceback jaxtyping

Then::

    python benchmarks/official.py --official ~/dreamerv3 \\
        --official-python ~/dreamerv3-venv/bin/python --out runs/official --seeds 0 1 --write
    python benchmarks/official.py ... --dry-run                 # the two configurations only
    python benchmarks/official.py --report runs/official --write  # tables of finished runs
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import subprocess
import sys
import threading
import time

import numpy as np

import pvm_mbrl

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from official_settings import (  # noqa: E402
    Settings,
    compare,
    learning_flags,
    official_flags,
    resolve_official,
)

HEADING = "## DreamerV3 side by side with the official code (benchmarks/official.py)"
BIN = 10_000


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--official", help="path of a danijar/dreamerv3 checkout")
    ap.add_argument("--official-python", help="python of the official's virtual environment")
    ap.add_argument("--out", default="runs/official", help="run directories go here")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument(
        "--sides", nargs="+", choices=["official", "ours"], default=["official", "ours"]
    )
    ap.add_argument("--cores", type=int, nargs=2, default=[0, 1], help="official core, our core")
    ap.add_argument("--gl", default="egl", choices=["egl", "osmesa"], help="MUJOCO_GL (official)")
    ap.add_argument("--dry-run", action="store_true", help="print the configurations and stop")
    ap.add_argument("--report", metavar="DIR", help="only tabulate the runs in DIR")
    ap.add_argument("--write", action="store_true", help="append to RESULTS.md, save the plot")
    for f in dataclasses.fields(Settings):
        kind = f.type if f.type in ("int", "float", "str") else "str"
        if f.name == "online":
            ap.add_argument("--online", action=argparse.BooleanOptionalAction, default=True)
            continue
        ap.add_argument(
            "--" + f.name.replace("_", "-"),
            type={"int": int, "float": float, "str": str}[kind],
            default=f.default,
        )
    a = ap.parse_args(argv)
    if not a.report and not (a.official and a.official_python):
        ap.error("--official and --official-python are needed to run (or --report DIR)")
    return a


def settings_of(a) -> Settings:
    return Settings(**{f.name: getattr(a, f.name) for f in dataclasses.fields(Settings)})


# -- running ---------------------------------------------------------------------------------


def command(side: str, a, s: Settings, seed: int, run: pathlib.Path) -> tuple[list[str], dict]:
    """The command line and environment of one run of ``side``, pinned to its core."""
    core = a.cores[0 if side == "official" else 1]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if side == "official":
        env["MUJOCO_GL"] = a.gl
        main = str(pathlib.Path(a.official) / "dreamerv3" / "main.py")
        cmd = [a.official_python, main, *official_flags(s, seed, str(run))]
    else:
        run.mkdir(parents=True, exist_ok=True)
        cmd = [
            sys.executable,
            str(HERE / "learning.py"),
            *learning_flags(s, seed, str(run / "curve.jsonl")),
        ]
    return ["taskset", "-c", str(core), *cmd], env


def run_side(side: str, a, s: Settings, out: pathlib.Path, status: dict) -> None:
    """Every seed of ``side`` in turn; each run's output goes to ``<run>/stdout.log``."""
    for seed in a.seeds:
        run = out / f"{side}_s{seed}"
        if run.exists() and any(run.iterdir()):
            raise SystemExit(f"{run} exists: choose another --out or remove it")
        cmd, env = command(side, a, s, seed, run)
        run.mkdir(parents=True, exist_ok=True)
        (run / "command.txt").write_text(" ".join(cmd) + "\n")
        (run / "start_time").write_text(f"{time.time()}\n")
        status[side] = f"seed {seed} running"
        with open(run / "stdout.log", "w") as log:
            code = subprocess.call(
                cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=HERE.parent
            )
        status[side] = f"seed {seed} exited {code}"
        if code:
            print(f"{side} seed {seed} failed (exit {code}); see {run / 'stdout.log'}", flush=True)
            return


def progress(out: pathlib.Path, s: Settings) -> str:
    """One line of where every run stands; appends ``(minutes, frames)`` to each running run's
    ``wall.jsonl``, the clock the report reads minutes-to-a-return from."""
    parts = []
    for run in sorted(out.glob("*_s*")):
        frames = frames_done(run)
        start = run / "start_time"
        if start.exists() and frames < s.frames:
            minutes = (time.time() - float(start.read_text())) / 60.0
            with open(run / "wall.jsonl", "a") as f:
                f.write(json.dumps({"minutes": round(minutes, 2), "frames": frames}) + "\n")
        parts.append(f"{run.name} {frames:,}/{s.frames:,} frames")
    return " | ".join(parts)


def frames_done(run: pathlib.Path) -> int:
    """Frames the run has collected so far (official: its logger's step, in frames)."""
    for name, key in (("metrics.jsonl", "step"), ("curve.jsonl", "frames")):
        path = run / name
        if path.exists() and path.stat().st_size:
            return int(json.loads(path.read_text().splitlines()[-1])[key])
    return 0


# -- reading the runs ------------------------------------------------------------------------


def read_run(run: pathlib.Path) -> list[tuple[int, float]]:
    """``(frame, return)`` of every training episode the run finished (ours: one entry per
    chunk with episodes, the chunk's mean return, repeated once per episode)."""
    out = []
    scores, curve = run / "scores.jsonl", run / "curve.jsonl"
    if scores.exists():
        for line in scores.read_text().splitlines():
            row = json.loads(line)
            out.append((int(row["step"]), float(row["episode/score"])))
    elif curve.exists():
        for line in curve.read_text().splitlines():
            row = json.loads(line)
            out += [(int(row["frames"]), float(row["return"]))] * int(row["episodes"])
    return out


def speed(run: pathlib.Path, repeat: int) -> float | None:
    """Whole-loop frames per second of wall time once training runs, from the run's own log
    (official: its ``fps/policy`` per log window after the first; ours: frames over wall time
    between the second and the last chunk)."""
    metrics, curve = run / "metrics.jsonl", run / "curve.jsonl"
    if metrics.exists():
        rows = [json.loads(x) for x in metrics.read_text().splitlines()]
        fps = [r["fps/policy"] for r in rows if r.get("fps/policy")]
        return repeat * float(np.mean(fps[1:] or fps)) if fps else None
    if curve.exists():
        rows = [json.loads(x) for x in curve.read_text().splitlines()]
        if len(rows) > 2:
            first, last = rows[1], rows[-1]
            return (last["frames"] - first["frames"]) / (60.0 * (last["wall"] - first["wall"]))
    return None


def minutes_at(run: pathlib.Path, frame: int) -> float | None:
    """Wall minutes at which the run reached ``frame`` (from its ``wall.jsonl``, or ours'
    chunk rows), interpolated; None past what was recorded."""
    points = []
    for name, key in (("wall.jsonl", "minutes"), ("curve.jsonl", "wall")):
        path = run / name
        if path.exists():
            points = [json.loads(x) for x in path.read_text().splitlines()]
            points = [(p["frames"], p[key]) for p in points]
            break
    if not points or frame > points[-1][0]:
        return None
    frames, minutes = zip(*points)
    return float(np.interp(frame, frames, minutes))


def time_to(runs: dict, out: pathlib.Path, side: str, target: float) -> str:
    """Minutes (mean over seeds) until a seed's 10k-frame bin mean first reached ``target``,
    counted to the last episode of that bin."""
    got = []
    for seed, curve in runs.items():
        for b in range(max(f for f, _ in curve) // BIN + 1):
            frames = [(f, r) for f, r in curve if b * BIN < f <= (b + 1) * BIN]
            if frames and np.mean([r for _, r in frames]) >= target:
                got.append(minutes_at(out / f"{side}_s{seed}", max(f for f, _ in frames)))
                break
    got = [m for m in got if m is not None]
    if not got:
        return "not reached"
    return f"{np.mean(got):.0f} min ({len(got)} of {len(runs)} seeds)"


def bins(runs: dict[int, list[tuple[int, float]]], frames: int) -> list[list[float | None]]:
    """Per 10k-frame bin, each seed's mean training return (None where it has no episode)."""
    n = -(-frames // BIN)
    table = []
    for b in range(n):
        row = []
        for curve in runs.values():
            vals = [r for f, r in curve if b * BIN < f <= (b + 1) * BIN]
            row.append(float(np.mean(vals)) if vals else None)
        table.append(row)
    return table


def cell(values: list[float | None]) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{vals[0]:.1f} (1 seed)"
    return f"{np.mean(vals):.1f} [{min(vals):.1f}, {max(vals):.1f}]"


def report(out: pathlib.Path, s: Settings, write: bool, floor: float | None = None) -> list[str]:
    """The per-bin table, speeds and verdict of the runs in ``out`` (printed; returned).
    ``floor``: the random policy's return (measured when None)."""
    sides = read_sides(out)
    floor = random_return(s) if floor is None else floor
    rows = [
        "| frames | official: mean [seed range] | ours: mean [seed range] | ours inside |",
        "|---|---|---|---|",
    ]
    table = {side: bins(runs, s.frames) for side, runs in sides.items()}
    verdicts = []
    for b in range(-(-s.frames // BIN)):
        off, ours = table["official"][b], table["ours"][b]
        got = [v for v in off if v is not None]
        mine = [v for v in ours if v is not None]
        inside = "-"
        if got and mine:
            lo, hi = min(got), max(got)
            ok = lo <= float(np.mean(mine)) <= hi if len(got) > 1 else None
            inside = "n/a (1 official seed)" if ok is None else ("yes" if ok else "no")
            if (b + 1) * BIN > 20_000 and ok is not None:
                verdicts.append(ok)
        span = f"{b * BIN // 1000}k-{(b + 1) * BIN // 1000}k"
        rows.append(f"| {span} | {cell(off)} | {cell(ours)} | {inside} |")
    notes = [
        f"random policy (uniform actions, 64 episodes of dmc/{s.task}): return {floor:.1f}",
        "per bin: each seed's mean return over the training episodes that ended in it; "
        "mean over seeds [lowest, highest seed]",
    ]
    if verdicts:
        notes.append(f"ours inside the official's seed range from 20k frames on: {all(verdicts)}")
    notes += loop_notes(sides, out, s)
    print("\n".join(rows))
    print("\n".join("- " + n for n in notes))
    if write:
        from common import append_results

        plot(sides, floor, s, HERE / "official_curve.png")
        append_results(HEADING, [*notes, f"settings: {dataclasses.asdict(s)}"], rows)
    return [*rows, "", *("- " + n for n in notes)]


def read_sides(out: pathlib.Path) -> dict[str, dict[int, list[tuple[int, float]]]]:
    """Each side's runs in ``out``: ``{side: {seed: [(frame, return), ...]}}``."""
    sides = {}
    for side in ("official", "ours"):
        runs = {}
        for run in sorted(out.glob(f"{side}_s*")):
            curve = read_run(run)
            if curve:
                runs[int(run.name.rsplit("_s", 1)[1])] = curve
        sides[side] = runs
    return sides


def loop_notes(sides: dict, out: pathlib.Path, s: Settings) -> list[str]:
    """Each side's whole-loop frames per second (its own log) and the minutes each took to the
    mean return of the official's last 10k-frame bin."""
    notes = []
    for side, runs in sides.items():
        fps = [speed(out / f"{side}_s{seed}", s.repeat) for seed in runs]
        fps = [f for f in fps if f]
        if fps:
            each = f"mean of {len(fps)} seeds, one core each"
            notes.append(f"{side}: {np.mean(fps):.2f} frames/s whole loop ({each})")
    table = bins(sides["official"], s.frames)
    filled = [b for b, row in enumerate(table) if any(x is not None for x in row)]
    if filled and sides["ours"]:
        b = filled[-1]
        last = float(np.mean([x for x in table[b] if x is not None]))
        times = {side: time_to(sides[side], out, side, last) for side in sides}
        notes.append(
            f"time to the official's last bin's mean return ({last:.1f}, {b * 10}k-"
            f"{b * 10 + 10}k frames): official {times['official']}, ours {times['ours']}"
        )
    return notes


def random_return(s: Settings) -> float:
    """Mean return of uniform random actions over 64 episodes of our ``dmc/`` task (its
    rewards are dm-control's), physics only."""
    from learning import random_baseline

    return random_baseline(f"dmc/{s.task}", 64, None, seed=0, action_repeat=s.repeat)[0]


def plot(sides, floor, s: Settings, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    centres = [(b + 0.5) * BIN for b in range(-(-s.frames // BIN))]
    for (side, runs), colour in zip(sides.items(), ("tab:gray", "tab:blue")):
        if not runs:
            continue
        table = bins(runs, s.frames)
        mean = [
            np.mean([v for v in r if v is not None]) if any(v is not None for v in r) else np.nan
            for r in table
        ]
        lo = [min([v for v in r if v is not None], default=np.nan) for r in table]
        hi = [max([v for v in r if v is not None], default=np.nan) for r in table]
        label = f"{'official DreamerV3' if side == 'official' else 'pvm_mbrl'} ({len(runs)} seeds)"
        ax.plot(centres, mean, marker="o", color=colour, label=label)
        ax.fill_between(centres, lo, hi, color=colour, alpha=0.2)
    ax.axhline(floor, color="k", ls="--", lw=1, label="random policy")
    ax.set_xlabel("env frames")
    ax.set_ylabel(f"training return, {s.task}")
    ax.set_title(
        f"{s.size}, ratio {s.train_ratio:g}, batch {s.batch}x{s.length}, lr {s.lr:g}", fontsize=9
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"saved {path}")


def main(argv=None):
    a = parse(argv)
    s = settings_of(a)
    if a.report:
        saved = pathlib.Path(a.report) / "settings.json"
        if saved.exists():  # the settings the runs were made with
            s = Settings(**json.loads(saved.read_text()))
        report(pathlib.Path(a.report), s, a.write)
        return
    flags = official_flags(s, a.seeds[0], str(pathlib.Path(a.out) / "resolved"))
    table, differ = compare(s, resolve_official(a.official_python, a.official, flags))
    print("\n".join(table))
    print(
        "\nsettings that still differ:" + "".join(f"\n- {d}" for d in differ)
        if differ
        else "\nno setting differs"
    )
    if a.dry_run:
        return
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "settings.json").write_text(json.dumps(dataclasses.asdict(s), indent=1))
    status: dict[str, str] = {}
    threads = [
        threading.Thread(target=run_side, args=(side, a, s, out, status)) for side in a.sides
    ]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        time.sleep(60)
        print(time.strftime("%H:%M"), progress(out, s), flush=True)
    report(out, s, a.write)


if __name__ == "__main__":
    pvm_mbrl.setup()  # host-memory reuse and the compilation cache, before any JAX work
    main()
