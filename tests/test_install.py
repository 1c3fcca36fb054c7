"""Smoke test of the install: imports, pinned versions, JAX devices, MJX stepping."""

import importlib.metadata as md
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

LOCK = pathlib.Path(__file__).resolve().parents[1] / "requirements.lock"


def _locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        if "==" in line:
            name, version = line.strip().split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


@pytest.mark.parametrize(
    "dist", ["jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "chex", "mujoco", "mujoco-mjx"]
)
def test_installed_versions_match_lock(dist):
    assert md.version(dist) == _locked()[dist]


def test_mujoco_pair_matches():
    assert md.version("mujoco") == md.version("mujoco-mjx")


def test_package_imports():
    import pvm_mbrl

    assert pvm_mbrl.__version__ == md.version("pvm_mbrl")


def test_jax_runs_on_cpu():
    assert jax.devices()[0].platform == "cpu"
    x = jax.jit(lambda a: (a @ a.T).sum())(jnp.ones((4, 3)))
    assert float(x) == 48.0


def test_mjx_steps_a_falling_box():
    import mujoco
    from mujoco import mjx

    xml = """<mujoco><worldbody><geom type="plane" size="1 1 .1"/>
      <body pos="0 0 .5"><freejoint/><geom type="box" size=".05 .05 .05"/></body>
      </worldbody></mujoco>"""
    m = mujoco.MjModel.from_xml_string(xml)
    mx = mjx.put_model(m)
    d = mjx.make_data(mx)
    step = jax.jit(mjx.step)
    for _ in range(10):
        d = step(mx, d)
    # Free fall for 10 steps of dt: z = 0.5 - g t^2 / 2 (semi-implicit Euler adds one step of lag).
    t = 10 * m.opt.timestep
    assert float(d.qpos[2]) < 0.5
    np.testing.assert_allclose(float(d.qpos[2]), 0.5 - 0.5 * 9.81 * t * t, atol=2e-3)


def test_making_a_task_prints_nothing_to_stdout():
    """A new user sees no import noise (mjx prints two 'Failed to import warp' lines when the
    optional GPU-only warp package is missing; the library imports mjx without them)."""
    import subprocess
    import sys

    code = "from pvm_mbrl import envs; envs.make('Reach', obs_mode='state', render=False)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "", out.stdout
