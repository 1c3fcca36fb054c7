"""The side-by-side benchmark's own logic (benchmarks/official.py): the comparison of the two
resolved configurations and the per-bin report. The runs themselves need the official checkout
and hours of CPU: they live in the benchmark, not here.

The fixture is the configuration the official code (danijar/dreamerv3 at e3f0224) resolves for
the benchmark's default settings, as ``official_settings.resolve_official`` printed it."""

import dataclasses
import json
import pathlib
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
import official  # noqa: E402
import official_speed  # noqa: E402
from official_settings import Settings, compare, learning_flags, official_flags  # noqa: E402

FIXTURE = pathlib.Path(__file__).resolve().parent / "fixtures" / "official_dmc_vision_e3f0224.json"


@pytest.fixture(scope="module")
def resolved():
    return json.loads(FIXTURE.read_text())


def test_equal_settings_differ_nowhere_and_a_change_is_named(resolved):
    table, differ = compare(Settings(), resolved)
    assert differ == [] and len(table) > 60
    assert any(r.startswith("| replay context | 1 | 1 |") for r in table)
    # Our side changed: the difference is named with both values.
    _, differ = compare(Settings(lr=1e-4, replay_context=0, prefill_policy="random"), resolved)
    assert differ == [
        "replay context: official 1, ours 0",
        "who acts before the first update: official agent, ours random",
        "lr: official 0.0003, ours 0.0001",
    ]
    # The official's side changed (a default that moved upstream): named as well.
    moved = {**resolved, "agent.loss_scales.dyn": 0.5, "agent.imag_length": 16}
    _, differ = compare(Settings(), moved)
    assert differ == [
        "loss scale dyn: official 0.5, ours 1.0",
        "imagination horizon: official 16, ours 15",
    ]


def test_both_command_lines_carry_the_settings():
    s = Settings(frames=20_000, lr=1e-4)
    off = official_flags(s, 3, "/tmp/run")
    pairs = dict(zip(off[::2], off[1::2]))
    assert pairs["--run.steps"] == "10000" and pairs["--seed"] == "3"
    assert pairs["--agent.opt.lr"] == "0.0001" and pairs["--replay_context"] == "1"
    assert pairs["--agent.enc.simple.mults"] == "1,2,3,4"
    ours = learning_flags(s, 3, "/tmp/curve.jsonl")
    assert "--env-steps=10000" in ours and "--lr=0.0001" in ours and "--seed=3" in ours
    assert "--prefill=160" in ours and "--prefill-policy=agent" in ours and "--online" in ours


def write_runs(tmp: pathlib.Path):
    """Two official seeds (its scores.jsonl, step in frames) and one of ours (curve.jsonl rows:
    episodes that ended in a chunk and their mean return)."""
    for seed, scores in (
        (0, [(5_000, 40), (15_000, 100), (25_000, 300)]),
        (1, [(6_000, 60), (16_000, 200), (26_000, 500)]),
    ):
        run = tmp / f"official_s{seed}"
        run.mkdir()
        lines = [json.dumps({"step": f, "episode/score": r}) for f, r in scores]
        (run / "scores.jsonl").write_text("\n".join(lines) + "\n")
        clock = [json.dumps({"minutes": m, "frames": f}) for m, f in ((0, 0), (100, 30_000))]
        (run / "wall.jsonl").write_text("\n".join(clock) + "\n")
    run = tmp / "ours_s0"
    run.mkdir()
    rows = [
        (4_000, 2, 50.0, 1.0),
        (8_000, 0, 0.0, 2.0),
        (14_000, 4, 150.0, 3.0),
        (24_000, 1, 600.0, 4.0),
    ]
    lines = [
        json.dumps({"frames": f, "episodes": n, "return": r, "wall": w}) for f, n, r, w in rows
    ]
    (run / "curve.jsonl").write_text("\n".join(lines) + "\n")


def test_report_bins_and_verdict(tmp_path):
    write_runs(tmp_path)
    rows = official.report(tmp_path, Settings(frames=30_000), write=False, floor=45.0)
    assert rows[2] == "| 0k-10k | 50.0 [40.0, 60.0] | 50.0 (1 seed) | yes |"
    assert rows[3] == "| 10k-20k | 150.0 [100.0, 200.0] | 150.0 (1 seed) | yes |"
    assert rows[4] == "| 20k-30k | 400.0 [300.0, 500.0] | 600.0 (1 seed) | no |"
    assert "- ours inside the official's seed range from 20k frames on: False" in rows
    # ours: 16,000 frames between the second and the last chunk in 2 minutes of wall time
    assert "- ours: 133.33 frames/s whole loop (mean of 1 seeds, one core each)" in rows
    # The official's last bin averages 400: its seed 1 got there at 26k frames (86.7 minutes on
    # its clock), seed 0 never; ours at 24k frames, after 4 minutes.
    want = "time to the official's last bin's mean return (400.0, 20k-30k frames): official 87 min"
    assert f"- {want} (1 of 2 seeds), ours 4 min (1 of 1 seeds)" in rows


def test_speed_benchmark_reads_the_runs(tmp_path):
    """official_speed.py's whole-loop lines are the comparison report's, from the same runs."""
    write_runs(tmp_path)
    (tmp_path / "settings.json").write_text(json.dumps(dataclasses.asdict(Settings())))
    lines = official_speed.whole_loop(tmp_path)
    assert lines[1] == "ours: 133.33 frames/s whole loop (mean of 1 seeds, one core each)"
    assert lines[2].endswith("official 87 min (1 of 2 seeds), ours 4 min (1 of 1 seeds)")


def test_settings_are_the_cli():
    a = official.parse(["--report", "x", "--lr", "1e-4", "--no-online", "--frames", "1000"])
    s = official.settings_of(a)
    assert s == dataclasses.replace(Settings(), lr=1e-4, online=False, frames=1000)
    with pytest.raises(SystemExit):
        official.parse(["--frames", "10"])  # no checkout and no --report
