"""Compile time: the persistent compilation cache is on by default and where the user says, a
second process reads it, and a run compiles each of its functions once however long it is."""

import collections
import json
import os
import subprocess
import sys
import textwrap

import pytest
import test_experiment

from pvm_mbrl.compile_cache import CompileLog
from pvm_mbrl.experiment import Experiment, run

# tests/test_experiment.py's smallest agent on 16 px pixels, two seeds: 6 chunks, logs,
# checkpoints and videos several times over.
FLAGS = {**test_experiment.FLAGS, "steps": 64, "checkpoint_every": 16, "keep_checkpoints": 3}
PROBE = textwrap.dedent(
    """
    import jax, jax.numpy as jnp
    import pvm_mbrl
    from pvm_mbrl.compile_cache import CompileLog
    pvm_mbrl.setup()
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)

    def probe(x):
        for i in range(20):
            x = jnp.sin(x) * 1.01 + i
        return x

    with CompileLog() as log:
        jax.jit(probe)(jnp.ones(3)).block_until_ready()
    (c,) = log.named("probe")
    print(jax.config.jax_compilation_cache_dir, c.cache_hit)
    """
)


# Imports every module of the library, records what the process looks like, then sets it up.
IMPORT_ALL = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys
    import jax
    from jax._src import xla_bridge
    import pvm_mbrl
    for m in pkgutil.walk_packages(pvm_mbrl.__path__, "pvm_mbrl."):
        importlib.import_module(m.name)
    before = [jax.config.jax_compilation_cache_dir, pvm_mbrl.hostmem.active(),
              xla_bridge.backends_are_initialized()]
    done = pvm_mbrl.setup()
    print(json.dumps(before + [str(done["compile_cache"]), done["host_memory"]]))
    """
)


def test_importing_the_library_changes_nothing(tmp_path):
    """Importing every module leaves the process as it was (no compilation cache set, malloc
    untouched, no JAX backend started, so that ``setup`` can still reuse host memory);
    ``pvm_mbrl.setup()`` then turns both on."""
    out = fresh_process(tmp_path, IMPORT_ALL)
    cache_dir, reused, started, enabled, reuse_now = json.loads(out.splitlines()[-1])
    assert (cache_dir, reused, started) == (None, False, False)
    assert enabled == str(tmp_path / "home/.cache/pvm_mbrl/jax")
    assert reuse_now is sys.platform.startswith("linux")


def probe(tmp_path, **env_vars) -> tuple[str, bool]:
    """Runs ``PROBE`` in a fresh process with ``HOME`` in ``tmp_path``: (cache dir, hit)."""
    directory, hit = fresh_process(tmp_path, PROBE, **env_vars).split()
    return directory, hit == "True"


def fresh_process(tmp_path, script: str, **env_vars) -> str:
    """Runs ``script`` in a fresh process with ``HOME`` in ``tmp_path`` and no cache setting of
    the tests; returns its standard output (its standard error must be empty)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("PVM_MBRL_JAX_CACHE", "JAX_COMPILATION_CACHE_DIR", "XDG_CACHE_HOME")
    }
    env.update(HOME=str(tmp_path / "home"), JAX_PLATFORMS="cpu", **env_vars)
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stderr == "", out.stderr  # nothing on the console a user cannot act on
    return out.stdout


def test_cache_is_on_by_default_and_read_by_the_next_process(tmp_path):
    default = str(tmp_path / "home/.cache/pvm_mbrl/jax")
    assert probe(tmp_path) == (default, False)
    assert probe(tmp_path) == (default, True)
    # The configuration changes the program: a new entry, never a stale one.
    assert probe(tmp_path, XLA_FLAGS="--xla_cpu_enable_fast_math=true") == (default, False)


def test_cache_folder_is_the_users_choice(tmp_path):
    mine = str(tmp_path / "mine")
    assert probe(tmp_path, PVM_MBRL_JAX_CACHE=mine) == (mine, False)
    assert probe(tmp_path, PVM_MBRL_JAX_CACHE=mine) == (mine, True)
    assert probe(tmp_path, JAX_COMPILATION_CACHE_DIR=mine) == (mine, True)
    assert probe(tmp_path, XDG_CACHE_HOME=mine)[0] == str(tmp_path / "mine/pvm_mbrl/jax")
    for off in ("off", "0", ""):
        assert probe(tmp_path, PVM_MBRL_JAX_CACHE=off) == ("None", False)


@pytest.mark.slow  # make test-slow (CI): cold compile time
def test_run_compiles_each_function_once(tmp_path):
    with CompileLog() as log:
        run(Experiment.of(**FLAGS, logdir=str(tmp_path / "run")), progress=False)
    counts = collections.Counter(c.name for c in log.compiles)
    # init, prefill and the chunk (collection + updates), once each over 6 chunks, 8 logs,
    # 4 checkpoints and 4 media rounds; the media's open-loop rollout once.
    for name in ("_init_fn", "_prefill_fn", "_train_chunk"):
        assert counts[f"jit({name})"] == 1, counts
    # The agents initialise in one program, not one small program per initialiser and shape;
    assert counts["jit(_init)"] == 1 and not log.named("truncated_normal"), counts
    # the media select seed 0 in one program, not one op per leaf: 18 programs in all (there
    # were 190, each a compile of its own on a GPU).
    assert len(log.compiles) <= 25, counts


def test_compile_log_reads_nothing_outside_its_block():
    import jax
    import jax.numpy as jnp

    with CompileLog() as log:
        pass
    jax.jit(lambda x: x * 3)(jnp.ones(7)).block_until_ready()
    assert log.compiles == [] and not jax.config.jax_log_compiles


@pytest.mark.parametrize("name", ["jit(f)", "jit(vmap(f))"])
def test_compile_log_matches_cache_hits_to_their_compile(name):
    log = CompileLog()
    key = name.replace("(", "_").replace(")", "_").rstrip("_")
    log._read(f"Persistent compilation cache hit for '{key}' with key 'x'")
    log._read(f"Finished XLA compilation of {name} in 0.25 sec")
    log._read(f"Finished XLA compilation of {name} in 1.5 sec")
    assert [(c.name, c.seconds, c.cache_hit) for c in log.compiles] == [
        (name, 0.25, True),
        (name, 1.5, False),
    ]
