"""The progress line a user reads: no 'nan' before the first episode ends."""

from __future__ import annotations

import numpy as np

from pvm_mbrl.logging import Logger


def _chunk(episodes, ret, succ):
    return {
        "episode/count": np.float32(episodes),
        "episode/return": np.float32(ret),
        "episode/success_once": np.float32(succ),
        "loss/total": np.float32(1.0),
    }


def test_progress_line_shows_dash_until_an_episode_ends_then_the_last_value(tmp_path, capsys):
    log = Logger(tmp_path, total_steps=100)
    log.accumulate(_chunk(0, 0.0, 0.0))  # no episode ended: the loop reports zeros
    log.flush(10)
    first = capsys.readouterr().out
    assert "nan" not in first
    assert "return       - | success    - |" in first
    log.accumulate(_chunk(2, 12.5, 0.5))
    log.flush(20)
    assert "return   12.50 | success 0.50 |" in capsys.readouterr().out
    log.accumulate(_chunk(0, 0.0, 0.0))
    log.flush(30)
    assert "return   12.50 | success 0.50 |" in capsys.readouterr().out


def test_progress_line_past_the_total_shows_no_negative_time(tmp_path, capsys):
    log = Logger(tmp_path, total_steps=1700)  # chunks of 400 steps end at 2,000
    log.accumulate(_chunk(0, 0.0, 0.0))
    log.flush(2000, {"perf/env_steps_per_s": 4.0})
    line = capsys.readouterr().out
    assert (
        "2,000/1,700 env steps" in line and "ETA 00:00" in line and "-" not in line.split("ETA")[1]
    )
