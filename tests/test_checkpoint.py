"""Checkpoint integrity on a small pytree: the record committed with each step; changed,
truncated, deleted and unrecorded files named; the fallback to the newest good step (also in
``restore_agent``); directories written before the records existed."""

import json
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pvm_mbrl import checkpoint as ckpt


def small_state(step: int) -> dict:
    return {
        "agent": {"w": jnp.arange(4096, dtype=jnp.float32) + step, "b": jnp.full(3, step)},
        "rest": jnp.full(5, step, jnp.int32),
    }


TEMPLATE = jax.eval_shape(lambda: small_state(0))


@pytest.fixture
def saved(tmp_path):
    """A checkpoint directory with steps 1, 2, 3 holding ``small_state(step)``."""
    manager = ckpt.Checkpointer(tmp_path / "checkpoints", max_to_keep=10)
    for step in (1, 2, 3):
        manager.save(step, small_state(step), {"step": step})
    manager.close()
    return tmp_path / "checkpoints"


def restored(directory, step=None) -> int:
    """The step whose values ``Checkpointer.restore`` returns."""
    state = ckpt.Checkpointer(directory).restore(TEMPLATE, step)
    return int(state["rest"][0])


def largest_data_file(step_dir):
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file()]
    return max(files, key=lambda p: p.stat().st_size)


def overwrite16(path):
    """Sixteen bytes inside ``path`` flipped, its size unchanged (silent corruption)."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 16] = bytes(b ^ 0xFF for b in data[mid : mid + 16])
    path.write_bytes(bytes(data))


def test_every_step_is_committed_with_its_integrity_record(saved):
    assert sorted(p.name for p in saved.iterdir()) == ["1", "2", "3"]  # no temporary folders
    for step in (1, 2, 3):
        record = json.loads((saved / str(step) / ckpt.MANIFEST).read_text())["files"]
        assert "config/metadata" in record and any(k.startswith("state/") for k in record)
        assert all(len(v["sha256"]) == 64 for v in record.values())
        assert ckpt.check_step(saved / str(step)) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error", ckpt.CheckpointWarning)
        assert restored(saved) == 3
        assert ckpt.Checkpointer(saved).config(2) == {"step": 2}


def test_damaged_latest_step_is_named_and_skipped(saved):
    path = largest_data_file(saved / "3")
    size = path.stat().st_size
    overwrite16(path)
    assert path.stat().st_size == size
    rel = path.relative_to(saved / "3").as_posix()
    match = re.escape(f"checkpoint 3 in {saved} is damaged ({rel} does not match its recorded")
    with pytest.warns(ckpt.CheckpointWarning, match=match + r" sha256\); falling back to step 2"):
        assert restored(saved) == 2
    with pytest.raises(ckpt.DamagedCheckpointError, match=rel):
        restored(saved, 3)
    # restore_agent checks too: the agent of step 2, with the same warning.
    with pytest.warns(ckpt.CheckpointWarning, match=match):
        agent = ckpt.restore_agent(saved, TEMPLATE["agent"])
    np.testing.assert_array_equal(agent["w"], small_state(2)["agent"]["w"])
    with pytest.raises(ckpt.DamagedCheckpointError, match=rel):
        ckpt.restore_agent(saved, TEMPLATE["agent"], 3)


def test_truncated_deleted_and_unrecorded_files_are_named(saved):
    truncated = largest_data_file(saved / "3")
    truncated.write_bytes(truncated.read_bytes()[:-5])
    deleted = saved / "2" / "state" / "_METADATA"
    deleted.unlink()
    (saved / "1" / ckpt.MANIFEST).unlink()
    with pytest.raises(ckpt.DamagedCheckpointError) as error:
        restored(saved)
    message = str(error.value)
    rel = truncated.relative_to(saved / "3").as_posix()
    assert f"checkpoint 3 in {saved} is damaged: {rel} has " in message
    assert "checkpoint 2" in message and "state/_METADATA is missing" in message
    assert f"checkpoint 1 in {saved} is damaged: it has no {ckpt.MANIFEST}" in message
    # A file the record does not list is reported as well.
    (saved / "3").joinpath("state", "stray").write_text("x")
    assert "state/stray is not in integrity.json" in ckpt.check_step(saved / "3")


def test_directory_without_records_restores_unverified(saved):
    for step in (1, 2, 3):
        (saved / str(step) / ckpt.MANIFEST).unlink()
    with pytest.warns(ckpt.CheckpointWarning, match="checkpoint 3 .* restoring it unverified"):
        assert restored(saved) == 3
    with pytest.raises(FileNotFoundError, match=r"no checkpoint 7 .* steps: \[1, 2, 3\]"):
        restored(saved, 7)
