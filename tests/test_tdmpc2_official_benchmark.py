"""The TD-MPC2 side-by-side benchmark's own logic (benchmarks/tdmpc2_official.py): the CPU copy of
the official code, both command lines at equal settings, reading both sides' logs and the
binned report. The runs themselves need the official checkout and hours of CPU."""

import json
import pathlib
import sys
import types

import pytest

BENCH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
import tdmpc2_official as bench  # noqa: E402

BLUE, END = "\x1b[34m", "\x1b[0m"


def _official_line(episode, step, ret, seconds):
    """A training line as the official logger prints it (termcolor keys, padded columns)."""
    h, rest = divmod(seconds, 3600)
    t = f"{h}:{rest // 60:02d}:{rest % 60:02d}"
    parts = [
        f"{BLUE}{k}:{END} {v}"
        for k, v in (("E", episode), ("I", f"{step:,}"), ("R", f"{ret:.1f}"), ("T", t))
    ]
    return f" {BLUE}train{END}         " + "   ".join(f"{p:<22}" for p in parts)


def _fake_checkout(root: pathlib.Path, drop=None):
    for rel, old, _ in bench.CPU_PATCH:
        path = root / "tdmpc2" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        text = path.read_text() if path.exists() else ""
        if (rel, old) != drop:
            text += f"\t{old}\n"
        path.write_text(text)


def test_the_cpu_copy_replaces_every_cuda_line_and_leaves_the_checkout(tmp_path):
    _fake_checkout(tmp_path / "co")
    dest = bench.patch_copy(tmp_path / "co", tmp_path / "out" / "src")
    for rel, old, new in bench.CPU_PATCH:
        assert old not in (dest / rel).read_text() and new in (dest / rel).read_text()
        assert old in (tmp_path / "co" / "tdmpc2" / rel).read_text()
    _fake_checkout(tmp_path / "other", drop=bench.CPU_PATCH[5][:2])
    with pytest.raises(SystemExit, match=r"buffer\.py"):
        bench.patch_copy(tmp_path / "other", tmp_path / "out" / "src2")


def test_both_command_lines_carry_the_same_settings(tmp_path):
    a = types.SimpleNamespace(
        python="py", task="reacher-easy", size=1, steps=20_000, seed=3, minutes=100.0
    )
    cmds = bench.commands(a, tmp_path)
    official, _ = cmds["official"]
    ours, _ = cmds["ours"]
    for item in ("task=reacher-easy", "model_size=1", "steps=20000", "seed=3", "compile=false"):
        assert item in official
    flag = lambda name: ours[ours.index(name) + 1]  # noqa: E731
    assert flag("--task") == "dmc/reacher_easy" and flag("--td-size") == "1"
    assert flag("--num-envs") == "1" and flag("--batch") == "256" and flag("--length") == "4"
    assert flag("--train-ratio") == "1024"  # 256 x 4 replayed steps per env step: UTD 1
    assert flag("--prefill") == flag("--pretrain") == "2500"  # max(1000, 5 x 500)
    assert flag("--env-steps") == "20000" and flag("--seed") == "3"
    assert "--no-online" in ours  # uniform replay batches, as the official buffer samples


def test_logs_are_read_binned_and_reported(tmp_path, capsys):
    lines = ["Learnable parameters: 1,198,257"]
    lines += [_official_line(e, 500 * e, 10.0 * e, 60 * e) for e in range(1, 11)]
    (tmp_path / "official.log").write_text("\n".join(lines) + "\n")
    rows = [
        {"env_steps": s, "episodes": int(s % 1000 == 0), "return": s / 100, "wall": s / 6000}
        for s in range(50, 5001, 50)
    ]
    (tmp_path / "ours.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    official = bench.read_official(tmp_path / "official.log")
    assert official[0] == (500, 10.0, 60) and official[-1] == (5000, 100.0, 600)
    assert bench.binned(official) == {2500: 30.0, 5000: 80.0}
    assert bench.speed(official, 2500) == pytest.approx(500 / 60)
    ours = bench.read_ours(tmp_path / "ours.jsonl")
    assert [r[0] for r in ours] == [1000, 2000, 3000, 4000, 5000]
    assert bench.speed(ours, 2500) == pytest.approx(100.0)  # 2,000 steps in 20 seconds
    bench.report(types.SimpleNamespace(write=False), tmp_path)
    out = capsys.readouterr().out
    assert "| 2,500 | 30.0 | 15.0 |" in out and "| 5,000 | 80.0 | 40.0 |" in out
