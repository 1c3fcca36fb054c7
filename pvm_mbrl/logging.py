"""What a training run reports: tensorboardX scalars, image grids and GIF videos, and a
progress line.

Videos are written as animated GIFs inside TensorBoard image summaries (TensorBoard's image
tab plays them) and as ``.gif`` files under ``<logdir>/videos/``. tensorboardX's own
``add_video`` needs moviepy, which is not a dependency; encoding the GIF with imageio and
writing the summary directly needs nothing else, so that is the path taken here.
"""

from __future__ import annotations

import io
import pathlib
import sys
import time

import imageio.v3 as iio
import jax
import numpy as np
from tensorboardX import SummaryWriter
from tensorboardX.proto.summary_pb2 import Summary

from pvm_mbrl import media
from pvm_mbrl import replay as replay_lib

EPISODE_KEYS = ("episode/return", "episode/success_once", "episode/success_end")


def gif_bytes(frames: np.ndarray, fps: int = 10) -> bytes:
    """uint8 frames ``[T, H, W, 3]`` encoded as a looping GIF."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    buf = io.BytesIO()
    iio.imwrite(buf, frames, extension=".gif", duration=1000 / fps, loop=0)
    return buf.getvalue()


class Logger:
    """tensorboardX writer plus a progress line for one run directory.

    Per chunk, :meth:`accumulate` collects the loop's metrics (leading seed axis allowed:
    scalars are averaged over seeds, episode statistics weighted by episode counts); :meth:`flush`
    writes their means at a step, with throughput, and updates the progress line (env steps,
    env steps/s, updates/s, recent return and success, ETA).
    """

    def __init__(self, logdir, total_steps: int, progress: bool = True):
        self.logdir = pathlib.Path(logdir)
        self.writer = SummaryWriter(str(self.logdir))
        self.total = int(total_steps)
        self.progress = progress
        self.t0, self.s0 = time.time(), None
        self._sums: dict[str, float] = {}
        self._counts: dict[str, float] = {}
        self._open_loop_fn = None
        self._recent: dict[str, float] = {}  # last return / success shown on the progress line

    # -- scalars --------------------------------------------------------------------------

    def accumulate(self, metrics: dict) -> None:
        metrics = jax.device_get(metrics)
        episodes = np.asarray(metrics.get("episode/count", 0.0), np.float64)
        for k, v in metrics.items():
            if k in ("env_steps", "updates", "episode/count"):
                continue
            v = np.asarray(v, np.float64)
            w = episodes if k in EPISODE_KEYS else np.ones_like(v)
            self._sums[k] = self._sums.get(k, 0.0) + float(np.sum(v * w))
            self._counts[k] = self._counts.get(k, 0.0) + float(np.sum(w))
        self._sums["episode/count"] = self._sums.get("episode/count", 0.0) + float(episodes.sum())
        self._counts["episode/count"] = 1.0

    def flush(self, step: int, extra: dict[str, float] | None = None) -> dict[str, float]:
        """Writes the accumulated means (and ``extra``) at ``step``; returns what it wrote."""
        out = {k: self._sums[k] / self._counts[k] for k in self._sums if self._counts[k] > 0}
        out.update(extra or {})
        for k, v in out.items():
            if np.isfinite(v):
                self.writer.add_scalar(k, v, step)
        self.writer.flush()
        self._sums, self._counts = {}, {}
        self._print(step, out)
        return out

    def _print(self, step: int, out: dict[str, float]) -> None:
        if not self.progress:
            return
        if self.s0 is None:
            self.s0 = step
        elapsed = time.time() - self.t0
        rate = out.get("perf/env_steps_per_s", 0.0)
        # The last chunk may end past the total: nothing is left then, not a negative time.
        eta = max(self.total - step, 0) / rate if rate > 0 else float("nan")
        frac = min(step / self.total, 1.0)
        bar = "#" * int(frac * 20)
        # Return and success of the episodes that ended since the last line; until the first
        # episode ends there is none ("-"), and a line without new episodes repeats the last.
        for key in ("episode/return", "episode/success_once"):
            if np.isfinite(out.get(key, np.nan)):
                self._recent[key] = out[key]
        ret = _fmt_value(self._recent.get("episode/return"), 7, 2)
        succ = _fmt_value(self._recent.get("episode/success_once"), 4, 2)
        line = (
            f"[{bar:<20s}] {step:>9,d}/{self.total:,d} env steps | "
            f"{rate:7.1f} steps/s | {out.get('perf/updates_per_s', 0.0):5.2f} updates/s | "
            f"return {ret} | success {succ} | {_fmt_time(elapsed)} elapsed, "
            f"ETA {_fmt_time(eta)}"
        )
        print(line, file=sys.stdout, flush=True)

    # -- images and videos ----------------------------------------------------------------

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        """uint8 ``[H, W, 3]``."""
        self.writer.add_image(tag, np.asarray(image), step, dataformats="HWC")

    def video(self, tag: str, frames: np.ndarray, step: int, fps: int = 10) -> pathlib.Path:
        """uint8 ``[T, H, W, 3]`` as an animated GIF summary and ``videos/<tag>_<step>.gif``."""
        data = gif_bytes(frames, fps)
        _, h, w, c = np.shape(frames)
        summary = Summary(
            value=[
                Summary.Value(
                    tag=tag,
                    image=Summary.Image(height=h, width=w, colorspace=c, encoded_image_string=data),
                )
            ]
        )
        self.writer._get_file_writer().add_summary(summary, step)
        path = self.logdir / "videos" / f"{tag.replace('/', '_')}_{step}.gif"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def media(self, agent, state, trainer, step: int, key=None, rows: int = 4) -> None:
        """Observation grid, the last finished episode of env 0 and, for an agent with a decoder
        (DreamerV3's ``open_loop``), world-model open-loop predictions next to the truth (seed 0
        of a multi-seed state)."""
        if trainer.seeds is not None:  # one compiled selection, not one op per leaf and shape
            state = _first_seed(state.replace(env=None, carry=None))
        (img,) = (k for k in agent.obs_keys if len(agent.obs_space[k].shape) == 3)
        buffer = jax.device_get(state.replay)
        pos, pixels = int(buffer.pos), buffer.data[img]
        latest = pixels[:, (pos - 1) % pixels.shape[1]]
        n = min(len(latest), rows * rows)
        cols = int(np.ceil(n / rows))
        tiles = np.zeros((rows * cols, *latest.shape[1:]), np.uint8)
        tiles[:n] = latest[:n]
        self.image("obs/latest", media.grid(tiles.reshape(rows, cols, *latest.shape[1:])), step)
        episode = last_episode(buffer, img)
        if episode is not None:
            self.video("episode/env0", episode, step)
        length = trainer.config.batch_length
        decoder = hasattr(agent, "open_loop")
        if decoder and replay_lib.can_sample(state.replay, length) and length > 1:
            key = jax.random.PRNGKey(step) if key is None else key
            truth, model = self._open_loop(agent, trainer)(state.agent, state.replay, key)
            truth, model = np.asarray(truth), np.asarray(model)
            err = np.abs(truth.astype(np.int16) - model.astype(np.int16)).astype(np.uint8)
            # rows: truth / model / error; columns: up to 4 sequences
            k = min(truth.shape[0], 4)
            frames = np.concatenate(
                [np.concatenate(list(x[:k]), axis=2) for x in (truth, model, err)], axis=1
            )
            self.video("world_model/open_loop", frames, step)

    def _open_loop(self, agent, trainer):
        """``agent.open_loop`` on a replayed batch of up to 4 sequences, compiled once."""
        if self._open_loop_fn is None:
            length = trainer.config.batch_length
            context = min(5, length - 1)

            def run(agent_state, buffer, key):
                k1, k2 = jax.random.split(key)
                batch = replay_lib.sample(buffer, k1, min(4, trainer.config.batch_size), length)
                return agent.open_loop(agent_state, batch, k2, context)

            self._open_loop_fn = jax.jit(run)
        return self._open_loop_fn

    def close(self) -> None:
        self.writer.close()


def last_episode(buffer, key: str = "pixels", env: int = 0) -> np.ndarray | None:
    """Frames of the newest complete episode of ``env`` in a (host) replay buffer, or None."""
    data = {k: np.asarray(buffer.data[k][env]) for k in (key, "is_first", "is_last")}
    cap, pos, full = data[key].shape[0], int(buffer.pos), bool(buffer.full)
    order = np.arange(pos - cap, pos) % cap if full else np.arange(pos)
    first, last = data["is_first"][order], data["is_last"][order]
    ends = np.flatnonzero(last)
    for end in ends[::-1]:
        starts = np.flatnonzero(first[: end + 1])
        if starts.size:
            return data[key][order[starts[-1] : end + 1]]
    return None


def _fmt_value(x: float | None, width: int, digits: int) -> str:
    """``x`` right-aligned in ``width`` with ``digits`` decimals, or "-" when it has no value."""
    return f"{x:{width}.{digits}f}" if x is not None else f"{'-':>{width}s}"


def _fmt_time(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "--:--"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


@jax.jit
def _first_seed(tree):
    return jax.tree.map(lambda x: x[0], tree)
