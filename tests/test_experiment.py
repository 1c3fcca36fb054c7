"""Runs, checkpoints and logs: checkpoint round trip (with and without replay), kill -9 and
resume reproducing the uninterrupted run exactly, several seeds in one program, and the
tensorboard summaries (scalars, image grid, GIF videos) a run writes. Faults: a damaged
checkpoint skipped for the newest good one, ``--resume-step``, the run-directory lock, resume
errors, loop settings checked before anything is written."""

import dataclasses
import json
import logging
import os
import pathlib
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

import imageio.v3 as iio
import jax
import numpy as np
import pytest
from examples_loader import load_example
from tensorboardX.proto import event_pb2

from pvm_mbrl import checkpoint as ckpt
from pvm_mbrl.experiment import Experiment, build, load_agent, run
from pvm_mbrl.logging import gif_bytes, last_episode
from pvm_mbrl.rundir import RunDirLocked, RunLock
from pvm_mbrl.train import TrainConfig

ROOT = pathlib.Path(__file__).resolve().parents[1]
# The smallest agent on 16 px pixels, two seeds in one program; media every 16 env steps.
FLAGS = dict(
    task="Reach",
    image_size=16,
    size="micro",
    num_envs=2,
    batch_size=2,
    batch_length=4,
    replay_capacity=64,
    prefill=8,
    chunk_steps=4,
    train_ratio=16,
    episode_length=6,
    log_every=8,
    checkpoint_every=8,
    video_every=16,
    keep_checkpoints=1000,
    seeds=(0, 1),
)
RESUME_FROM, REFERENCE = 32, 56  # env steps (prefill: 16, then 8 per chunk)


def cli(flags: dict) -> list[str]:
    out = []
    for k, v in flags.items():
        out.append("--" + k.replace("_", "-"))
        out.extend(str(x) for x in v) if isinstance(v, tuple) else out.append(str(v))
    return out


def leaves_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
    """A run killed with SIGKILL after its checkpoint at ``REFERENCE`` env steps.

    Its checkpoints are the uninterrupted run's. Returns the run directory and the agent
    states at ``REFERENCE``; the checkpoints after ``RESUME_FROM`` are then deleted, as if the
    kill had come right after that one."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env["JAX_COMPILATION_CACHE_DIR"] = str(jax.config.jax_compilation_cache_dir or "")
    logdir = tmp_path_factory.mktemp("run") / "killed"
    proc = subprocess.Popen(
        [*SCRIPT, *cli({**FLAGS, "steps": 100_000, "logdir": logdir})],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    manager = ckpt.Checkpointer(logdir / "checkpoints")
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        manager.manager.reload()
        if (manager.latest_step() or 0) > REFERENCE:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    manager.manager.reload()
    assert {RESUME_FROM, REFERENCE} <= set(manager.all_steps())
    _, _, reference = load_agent(logdir, REFERENCE)
    saved = manager.restore(jax.eval_shape(build(Experiment.load(logdir))[2].init, KEYS))
    for step in manager.all_steps():
        if step > RESUME_FROM:
            shutil.rmtree(logdir / "checkpoints" / str(step))
    return logdir, reference, saved, env


SCRIPT = [sys.executable, str(ROOT / "examples/train.py"), "--quiet"]
KEYS = jax.numpy.stack([jax.random.PRNGKey(s) for s in FLAGS["seeds"]])


@pytest.mark.slow  # make test-slow (CI): cold compile time
def test_kill_and_resume_reproduces_the_uninterrupted_run(killed_run, caplog):
    logdir, reference, _, env = killed_run
    out = subprocess.run(
        [*SCRIPT, "--resume", "--logdir", str(logdir), "--steps", str(REFERENCE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    with caplog.at_level(logging.INFO):
        exp, _, resumed = load_agent(logdir)
    # Reading a run is quiet: orbax's notes that the read-only manager is read only are not shown.
    assert "read only" not in caplog.text and "read_only" not in caplog.text
    assert exp.steps == REFERENCE
    for a, b in zip(resumed, reference, strict=True):
        assert int(a.step) == int(b.step) > 0
        leaves_equal(a, b)
    # Without --resume an existing run is not overwritten; a changed model is refused.
    with pytest.raises(FileExistsError, match="resume"):
        run(exp, progress=False)
    with pytest.raises(ValueError, match="size"):
        run(exp.replace(size="tiny"), resume=True, progress=False)


@pytest.mark.parametrize("save_replay", [True, False])
@pytest.mark.slow  # make test-slow (CI): cold compile time
def test_checkpoint_round_trip(killed_run, tmp_path, save_replay):
    logdir, _, state, _ = killed_run
    exp = Experiment.load(logdir)
    _, _, trainer = build(exp)
    manager = ckpt.Checkpointer(tmp_path / "checkpoints", save_replay=save_replay)
    manager.save(7, state, exp.to_dict())
    manager.wait()
    restored = manager.restore(jax.eval_shape(trainer.init, KEYS))
    assert manager.config()["agent"]["size"] == "micro"
    if save_replay:
        leaves_equal(restored, state)
    else:
        assert restored.replay is None
        leaves_equal(restored.replace(replay=state.replay), state)
    # The agent alone, without building envs or replay, one state per seed.
    exp.save(tmp_path)
    exp2, _, states = load_agent(tmp_path)
    assert exp2 == exp and len(states) == 2
    leaves_equal(states[1], jax.tree.map(lambda x: x[1], state.agent))
    with pytest.raises(FileNotFoundError, match="no checkpoint 8"):
        manager.restore(jax.eval_shape(trainer.init, KEYS), step=8)


@pytest.mark.slow  # make test-slow (CI): cold compile time
def test_load_agent_builds_no_env(killed_run, monkeypatch):
    """A run records its env's spaces in experiment.json: loading its agent builds no env, and
    the agent sees the same spaces as one built from the env."""
    logdir = killed_run[0]
    exp = Experiment.load(logdir)
    env = exp.make_env(num_envs=1)
    want = ({k: v.to_dict() for k, v in env.observation_space.items()}, env.action_space)
    monkeypatch.setattr(Experiment, "make_env", lambda *a, **k: pytest.fail("built an env"))
    _, agent, states = load_agent(logdir)
    assert {k: v.to_dict() for k, v in agent.obs_space.items()} == want[0]
    assert agent.act_space.to_dict() == want[1].to_dict() and len(states) == len(exp.seeds)


@pytest.mark.slow  # make test-slow (CI): cold compile time
def test_seeds_train_independently(killed_run):
    _, _, state, _ = killed_run
    a, b = (jax.tree.map(lambda x, i=i: np.asarray(x[i]), state.agent.params) for i in (0, 1))
    assert any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    # Each seed has its own env and replay stream.
    assert not np.array_equal(state.replay.data["pixels"][0], state.replay.data["pixels"][1])


def read_events(logdir: pathlib.Path) -> list:
    """Events of the tfevents files in ``logdir`` (TFRecord framing: length, crc, data, crc)."""
    events = []
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        data = path.read_bytes()
        i = 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i : i + 8])
            events.append(event_pb2.Event.FromString(data[i + 12 : i + 12 + n]))
            i += 12 + n + 4
    return events


@pytest.mark.slow  # make test-slow (CI): cold compile time
def test_run_writes_scalars_images_and_videos(killed_run):
    logdir = killed_run[0]
    values = [v for e in read_events(logdir) for v in e.summary.value]
    tags = {v.tag for v in values}
    assert {"loss/rec", "loss/dyn", "episode/return", "opt/grad_norm"} <= tags
    assert {"perf/env_steps_per_s", "perf/updates_per_s"} <= tags
    assert {"obs/latest", "episode/env0", "world_model/open_loop"} <= tags
    video = next(v for v in values if v.tag == "world_model/open_loop")
    frames = iio.imread(video.image.encoded_image_string, extension=".gif", index=None)
    # truth / model / error stacked vertically, up to batch_length frames (GIF encoding merges
    # identical consecutive frames).
    assert 1 < frames.shape[0] <= FLAGS["batch_length"] and frames.shape[1] == 3 * 16
    episode = next(v for v in values if v.tag == "episode/env0")
    frames = iio.imread(episode.image.encoded_image_string, extension=".gif", index=None)
    assert 1 < frames.shape[0] <= FLAGS["episode_length"] + 1  # the reset frame and every step
    assert sorted(p.name for p in (logdir / "videos").iterdir())


def test_last_episode_and_gif():
    from pvm_mbrl.replay import Replay

    first = np.zeros((1, 8), bool)
    last = np.zeros((1, 8), bool)
    first[0, [0, 3]] = True
    last[0, [2, 6]] = True
    pixels = np.arange(8, dtype=np.uint8)[None, :, None, None, None] * np.ones(
        (1, 8, 2, 2, 3), np.uint8
    )
    buf = Replay(
        data={"pixels": pixels, "is_first": first, "is_last": last},
        pos=np.int32(0),
        full=np.bool_(True),
        added=np.int32(8),
        online=np.int32(0),
    )
    ep = last_episode(buf)
    np.testing.assert_array_equal(ep[:, 0, 0, 0], [3, 4, 5, 6])
    buf = buf.replace(pos=np.int32(5), full=np.bool_(False))
    np.testing.assert_array_equal(last_episode(buf)[:, 0, 0, 0], [0, 1, 2])
    decoded = iio.imread(gif_bytes(np.repeat(pixels[0], 10, axis=1)), extension=".gif", index=None)
    assert decoded.shape[0] == 8
    with pytest.raises(ValueError, match="uint8"):
        gif_bytes(np.zeros((2, 4, 4, 3), np.float32))


def train_script():
    """``examples/train.py`` as a module (its ``parse`` and ``main``)."""
    return load_example("train", "train_script")


def steps_in(logdir: pathlib.Path) -> list[int]:
    return sorted(int(p.name) for p in (logdir / "checkpoints").iterdir() if p.name.isdigit())


@pytest.mark.slow  # make test-slow (CI): cold compile time
def test_damaged_checkpoint_falls_back_and_resume_step_chooses(killed_run, tmp_path):
    logdir = tmp_path / "run"
    shutil.copytree(killed_run[0], logdir)
    for step in steps_in(logdir):  # the resume test may have continued it
        if step > RESUME_FROM:
            shutil.rmtree(logdir / "checkpoints" / str(step))
    assert steps_in(logdir) == [24, RESUME_FROM]  # the first after the prefill (16 steps)
    step_dir = logdir / "checkpoints" / str(RESUME_FROM)
    data = max((p for p in step_dir.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    raw = bytearray(data.read_bytes())
    raw[1000:1016] = bytes(b ^ 0xFF for b in raw[1000:1016])  # 16 bytes, size unchanged
    data.write_bytes(bytes(raw))
    rel = data.relative_to(step_dir).as_posix()
    # Reading the agent checks it: the damaged file is named, the newest good step is used.
    with pytest.warns(ckpt.CheckpointWarning, match=f"checkpoint 32 .*{rel}.*step 24"):
        _, _, states = load_agent(logdir)
    leaves_equal(states, load_agent(logdir, 24)[2])
    with pytest.raises(ckpt.DamagedCheckpointError, match=rel):
        load_agent(logdir, RESUME_FROM)
    # --resume falls back to step 24, keeps the damaged step aside and trains on.
    exp = Experiment.load(logdir).replace(logdir=str(logdir), steps=40)
    with pytest.warns(ckpt.CheckpointWarning) as caught:
        run(exp, resume=True, progress=False)
    messages = "\n".join(str(w.message) for w in caught)
    assert f"checkpoint 32 in {logdir / 'checkpoints'} is damaged ({rel} " in messages
    assert "falling back to step 24" in messages and "moved the newer checkpoints [32]" in messages
    assert steps_in(logdir) == [24, 32, 40]
    for step in steps_in(logdir):
        assert ckpt.check_step(logdir / "checkpoints" / str(step)) is None
    assert rel in ckpt.check_step(logdir / "checkpoints_set_aside" / "32")
    # --resume-step (the --logdir=PATH form) restores that step and sets the newer ones aside.
    with pytest.warns(ckpt.CheckpointWarning, match=r"moved the newer checkpoints \[32, 40\]"):
        train_script().main(
            ["--quiet", "--resume-step", "24", f"--logdir={logdir}", "--steps", "24"]
        )
    assert steps_in(logdir) == [24]
    set_aside = sorted(p.name for p in (logdir / "checkpoints_set_aside").iterdir())
    assert set_aside == ["32", "32.1", "40"]
    with pytest.raises(FileNotFoundError, match=r"no checkpoint 99 .* available steps: \[24\]"):
        run(exp, resume=True, resume_step=99, progress=False)


def test_second_writer_is_refused_at_once(tmp_path):
    logdir = tmp_path / "run"
    exp = Experiment.of(**{**FLAGS, "steps": 8, "logdir": str(logdir)})
    with RunLock(logdir):
        holder = f"pid {os.getpid()} on host {socket.gethostname()}, started "
        with pytest.raises(
            RunDirLocked, match=re.escape(f"{logdir} is in use by another run ({holder}")
        ):
            run(exp, progress=False)
        assert [p.name for p in logdir.iterdir()] == [".lock"]  # nothing else was written
        # Another process is refused as well, naming this one.
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from pvm_mbrl.rundir import RunLock; RunLock(sys.argv[1]).acquire()",
                str(logdir),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode != 0 and "RunDirLocked" in out.stderr and holder in out.stderr
    assert (logdir / ".lock").read_text() == ""
    # run releases the lock when it raises (here: a changed experiment).
    exp.save(logdir)
    with pytest.raises(ValueError, match="size"):
        run(exp.replace(size="tiny"), resume=True, progress=False)
    RunLock(logdir).acquire().release()


@pytest.mark.slow  # make test-slow (CI): cold compile time
def test_resume_needs_a_run_directory(tmp_path, killed_run):
    missing = tmp_path / "mistyped"
    exp = Experiment.of(**{**FLAGS, "steps": 8, "logdir": str(missing)})
    with pytest.raises(
        FileNotFoundError, match=f"cannot resume {missing}: it has no experiment.json"
    ):
        run(exp, resume=True, progress=False)
    with pytest.raises(ValueError, match="resume_step=8 needs resume=True"):
        run(exp, resume_step=8, progress=False)
    script = train_script()
    for argv in (
        ["--resume", "--logdir", str(missing)],
        [f"--logdir={missing}", "--resume-step", "8"],
    ):
        with pytest.raises(FileNotFoundError, match=f"{missing} has no experiment.json"):
            script.parse(argv)
    assert not missing.exists()
    # Both forms of --logdir find the saved experiment; only the flags given change it.
    logdir = killed_run[0]
    saved = Experiment.load(logdir)
    for argv in (["--logdir", str(logdir)], [f"--logdir={logdir}"]):
        args = script.parse(["--resume", *argv, "--steps", "64"])
        assert args.resume and args.exp == dataclasses.replace(saved, steps=64)
    args = script.parse([f"--logdir={logdir}", "--resume-step=16"])
    assert args.resume_step == 16 and args.exp == saved


def test_loop_settings_are_checked_before_anything_is_written(tmp_path):
    logdir = tmp_path / "run"
    # One sequence (batch_length 4) per env (2 envs) needs 8 steps of capacity.
    with pytest.raises(ValueError, match=r"replay_capacity \(6\) .* batch_length \(4\)"):
        Experiment.of(**{**FLAGS, "replay_capacity": 6, "logdir": str(logdir)})
    with pytest.raises(ValueError, match="multiple of num_envs"):
        Experiment.of(**{**FLAGS, "replay_capacity": 65})
    for field, value in [
        ("replay_capacity", 0),
        ("num_envs", 2.5),
        ("prefill", 8.0),
        ("batch_size", True),
        ("train_ratio", float("nan")),
        ("train_ratio", float("inf")),
        ("fused", "no"),
    ]:
        with pytest.raises(ValueError, match=field):
            TrainConfig(**{"batch_length": 4, "prefill": 8, "chunk_steps": 4, field: value})
    with pytest.raises(ValueError, match="steps must be an int"):
        Experiment.of(**{**FLAGS, "steps": 1e5})
    assert not logdir.exists()


def test_parts_hold_each_setting_once_and_old_flat_files_load(tmp_path):
    exp = Experiment.of(**FLAGS, logdir="runs/x")
    assert (exp.env.task, exp.agent.size, exp.loop.num_envs, exp.output.logdir) == (
        "Reach",
        "micro",
        2,
        "runs/x",
    )
    assert Experiment.from_dict(exp.to_dict()) == exp
    assert exp.replace(size="tiny").agent.size == "tiny" and exp.agent.size == "micro"
    with pytest.raises(ValueError, match=r"unknown experiment settings \['sise'\]"):
        exp.replace(sise="tiny")
    # experiment.json written before the parts existed: every setting at the top level
    flat = {**FLAGS, "seeds": list(FLAGS["seeds"]), "logdir": "runs/x", "steps": 1_000_000}
    (tmp_path / "experiment.json").write_text(json.dumps(flat))
    assert Experiment.load(tmp_path) == exp
    with pytest.raises(ValueError, match=r"unknown experiment fields \['colour'\]"):
        Experiment.from_dict({**flat, "colour": "red"})
