"""Runs, checkpoints and logs: checkpoint round trip (with and without replay), kill -9 and
resume reproducing the uninterrupted run exactly, several seeds in one program, and the
tensorboard summaries (scalars, image grid, GIF videos) a run writes."""

import dataclasses
import os
import pathlib
import signal
import struct
import subprocess
import sys
import time

import imageio.v3 as iio
import jax
import numpy as np
import pytest
from tensorboardX.proto import event_pb2

from pvm_mbrl import checkpoint as ckpt
from pvm_mbrl.experiment import Experiment, build, load_agent, run, seed_keys
from pvm_mbrl.logging import gif_bytes, last_episode

ROOT = pathlib.Path(__file__).resolve().parents[1]
# State observations (no renderer) and the smallest agent: fast to compile.
FLAGS = dict(
    task="Reach",
    obs="state",
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
    seeds=(0, 1),
)


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
def trained(tmp_path_factory):
    """A state after prefill and one chunk, for the round-trip tests."""
    exp = Experiment(**FLAGS, logdir=str(tmp_path_factory.mktemp("rt")))
    _, _, trainer = build(exp)
    state = trainer.prefill(trainer.init(seed_keys(exp)))
    state, _ = trainer.train_chunk(state)
    return exp, trainer, state


@pytest.mark.parametrize("save_replay", [True, False])
def test_checkpoint_round_trip(trained, tmp_path, save_replay):
    exp, trainer, state = trained
    manager = ckpt.Checkpointer(tmp_path / "ck", save_replay=save_replay)
    manager.save(int(state.env_steps[0]), state, exp.to_dict())
    manager.wait()
    template = jax.eval_shape(trainer.init, seed_keys(exp))
    restored = manager.restore(template)
    assert manager.config()["size"] == "micro"
    if save_replay:
        leaves_equal(restored, state)
    else:
        assert restored.replay is None
        leaves_equal(restored.replace(replay=state.replay), state)
        refilled = trainer.refill(restored)
        assert int(refilled.replay.pos[0]) == exp.prefill
        leaves_equal(refilled.agent, state.agent)
    # The agent alone, without building envs or replay, one state per seed.
    exp.save(tmp_path)
    (tmp_path / "checkpoints").symlink_to(tmp_path / "ck")
    exp2, _, states = load_agent(tmp_path)
    assert exp2 == exp and len(states) == 2
    leaves_equal(states[1], jax.tree.map(lambda x: x[1], state.agent))
    with pytest.raises(FileNotFoundError, match="no checkpoint 7"):
        manager.restore(template, step=7)


def test_seeds_train_independently(trained):
    _, _, state = trained
    # Same config, different seeds: different parameters, the same shapes.
    a, b = (jax.tree.map(lambda x, i=i: np.asarray(x[i]), state.agent.params) for i in (0, 1))
    assert any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    # Each seed has its own env and replay stream.
    assert not np.array_equal(state.replay.data["state"][0], state.replay.data["state"][1])


def test_kill_and_resume_reproduces_the_uninterrupted_run(tmp_path):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.setdefault("PVM_MBRL_JAX_CACHE", str(ROOT / ".cache/jax"))
    env["JAX_COMPILATION_CACHE_DIR"] = env["PVM_MBRL_JAX_CACHE"]
    script = [sys.executable, str(ROOT / "examples/train.py"), "--quiet"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [*script, *cli({**FLAGS, "steps": 100_000, "logdir": killed})],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    manager = ckpt.Checkpointer(killed / "checkpoints")
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        manager.manager.reload()
        if (manager.latest_step() or 0) >= 40:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    manager.manager.reload()
    saved = manager.latest_step()
    assert saved >= 40
    final = saved + 24
    # Resume from the newest complete checkpoint and run 3 more chunks ...
    out = subprocess.run(
        [*script, "--resume", "--logdir", str(killed), "--steps", str(final)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    # ... which gives exactly what an uninterrupted run to the same step gives.
    straight = Experiment(**FLAGS, steps=final, logdir=str(tmp_path / "straight"))
    run(straight, progress=False)
    exp_a, _, resumed = load_agent(killed)
    _, _, uninterrupted = load_agent(straight.logdir)
    assert exp_a.steps == final
    for a, b in zip(resumed, uninterrupted, strict=True):
        assert int(a.step) == int(b.step) > 0
        leaves_equal(a, b)
    # Without --resume an existing run is not overwritten.
    with pytest.raises(FileExistsError, match="resume"):
        run(straight, progress=False)
    # Resuming with a changed model is refused.
    with pytest.raises(ValueError, match="size"):
        run(dataclasses.replace(straight, size="tiny"), resume=True, progress=False)


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


def test_pixel_run_writes_scalars_images_and_videos(tmp_path):
    flags = {
        **FLAGS,
        "obs": "pixels",
        "image_size": 16,
        "seeds": (0,),
        "steps": 32,
        "video_every": 16,
        "checkpoint_every": 1000,
    }
    exp = Experiment(**flags, logdir=str(tmp_path))
    last = run(exp, progress=False)
    assert np.isfinite(last["loss/total"]) and last["perf/env_steps_per_s"] > 0
    values = [v for e in read_events(tmp_path) for v in e.summary.value]
    tags = {v.tag for v in values}
    assert {"loss/rec", "loss/dyn", "episode/return", "opt/grad_norm"} <= tags
    assert {"obs/latest", "episode/env0", "world_model/open_loop"} <= tags
    video = next(v for v in values if v.tag == "world_model/open_loop")
    frames = iio.imread(video.image.encoded_image_string, extension=".gif", index=None)
    # truth / model / error stacked vertically, up to batch_length frames (GIF encoding merges
    # identical consecutive frames).
    assert 1 < frames.shape[0] <= exp.batch_length and frames.shape[1] == 3 * 16
    episode = next(v for v in values if v.tag == "episode/env0")
    frames = iio.imread(episode.image.encoded_image_string, extension=".gif", index=None)
    assert 1 < frames.shape[0] <= exp.episode_length + 1  # the reset frame and every step
    assert sorted(p.name for p in (tmp_path / "videos").iterdir())


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
    )
    ep = last_episode(buf)
    np.testing.assert_array_equal(ep[:, 0, 0, 0], [3, 4, 5, 6])
    buf = buf.replace(pos=np.int32(5), full=np.bool_(False))
    np.testing.assert_array_equal(last_episode(buf)[:, 0, 0, 0], [0, 1, 2])
    decoded = iio.imread(gif_bytes(np.repeat(pixels[0], 10, axis=1)), extension=".gif", index=None)
    assert decoded.shape[0] == 8
    with pytest.raises(ValueError, match="uint8"):
        gif_bytes(np.zeros((2, 4, 4, 3), np.float32))
