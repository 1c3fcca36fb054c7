"""The README's Python quickstart: ``examples/quickstart.py`` runs end to end (env, training,
evaluation across shifts) at the smallest settings, and the README shows exactly its code."""

import pathlib
import textwrap

import numpy as np
import pytest
from examples_loader import EXAMPLES, load_example

ROOT = pathlib.Path(__file__).resolve().parents[1]
# The smallest agent on 16 px pixels: prefill 8 steps x 2 envs, then one chunk of 16 updates.
TINY = dict(
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
    steps=24,
    log_every=8,
)


def quickstart_code() -> str:
    """The example from its imports to its ``__main__`` block, then that block's body."""
    source = (EXAMPLES / "quickstart.py").read_text()
    main_block = 'if __name__ == "__main__":\n'
    body, entry = source.split(main_block)
    body = body[body.index("import jax") :].strip()
    return body + "\n\n\n" + textwrap.dedent(entry).strip()


def test_readme_shows_the_quickstart():
    readme = (ROOT / "README.md").read_text()
    assert f"```python\n{quickstart_code()}\n```" in readme, (
        "README.md's quickstart block differs from examples/quickstart.py: copy the example "
        "from `import jax` on, with its __main__ block's two lines unindented"
    )


@pytest.mark.slow  # 2-6 min on 2 CPU cores (compiles): make test-slow, which CI runs
def test_quickstart_runs_tiny(tmp_path, capsys):
    quickstart = load_example("quickstart", "quickstart_example")
    logdir = tmp_path / "run"
    shifts = ("id", "fog@0.5")
    results = quickstart.main(logdir=str(logdir), shifts=shifts, episodes=2, **TINY)
    out = capsys.readouterr().out
    assert "(4, 16, 16, 3)" in out  # the shifted env's pixels
    assert (logdir / "experiment.json").is_file() and (logdir / "checkpoints").is_dir()
    assert results.task == "Reach" and results.shifts == shifts and results.episodes == 2
    assert results.returns.shape == results.random_returns.shape == (1, 2, 2)
    assert np.isfinite(results.returns).all() and np.isfinite(results.random_returns).all()
    assert all(shift in out for shift in shifts)  # the printed table
