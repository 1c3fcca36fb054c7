"""Renderer throughput: pvm_mbrl's JAX ray caster against mjx.ray, C MuJoCo + OpenGL and Warp.

Prints images/s for each batch size and image size on the current JAX device and appends the
table, with date, machine and command, to benchmarks/RESULTS.md.

    python benchmarks/render.py --batch 16 64 256 --size 64 128 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

os.environ.setdefault("MUJOCO_GL", "egl")

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

import pvm_mbrl
from pvm_mbrl import render
from pvm_mbrl.envs.mjx import mjx

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from common import append_results, best_time

# An 18-geom tabletop: floor, table with legs, a 7-geom arm, five objects, one camera. The unused
# material works around mjx.ray indexing an empty mat_rgba in material-free models.
TABLETOP = """
<mujoco model="tabletop">
  <asset><material name="unused"/></asset>
  <worldbody>
    <geom name="floor" type="plane" size="0 0 0.1" rgba="0.6 0.6 0.6 1"/>
    <body name="table" pos="0 0 0.4">
      <geom name="top" type="box" size="0.6 0.45 0.02" rgba="0.55 0.4 0.25 1"/>
      <geom name="leg1" type="box" pos="0.55 0.4 -0.2" size="0.02 0.02 0.2" rgba="0.3 0.2 0.1 1"/>
      <geom name="leg2" type="box" pos="-0.55 0.4 -0.2" size="0.02 0.02 0.2" rgba="0.3 0.2 0.1 1"/>
      <geom name="leg3" type="cylinder" pos="0.55 -0.4 -0.2" size="0.02 0.2"
            rgba="0.3 0.2 0.1 1"/>
      <geom name="leg4" type="cylinder" pos="-0.55 -0.4 -0.2" size="0.02 0.2"
            rgba="0.3 0.2 0.1 1"/>
    </body>
    <body name="arm" pos="-0.45 0 0.42">
      <geom name="base" type="cylinder" pos="0 0 0.03" size="0.07 0.03" rgba="0.2 0.2 0.2 1"/>
      <geom name="link1" type="capsule" fromto="0 0 0.06 0 0 0.3" size="0.035"
            rgba="0.9 0.9 0.9 1"/>
      <geom name="link2" type="capsule" fromto="0 0 0.3 0.25 0 0.35" size="0.03"
            rgba="0.9 0.9 0.9 1"/>
      <geom name="link3" type="capsule" fromto="0.25 0 0.35 0.4 0 0.2" size="0.025"
            rgba="0.9 0.9 0.9 1"/>
      <geom name="wrist" type="box" pos="0.42 0 0.17" size="0.03 0.04 0.02" euler="0 30 0"
            rgba="0.2 0.2 0.2 1"/>
      <geom name="finger1" type="box" pos="0.44 0.03 0.12" size="0.008 0.008 0.035"
            rgba="0.2 0.2 0.2 1"/>
      <geom name="finger2" type="box" pos="0.44 -0.03 0.12" size="0.008 0.008 0.035"
            rgba="0.2 0.2 0.2 1"/>
    </body>
    <geom name="cube" type="box" pos="0.1 0.1 0.45" size="0.03 0.03 0.03" euler="0 0 25"
          rgba="0.9 0.2 0.2 1"/>
    <geom name="ball" type="sphere" pos="0.25 -0.15 0.46" size="0.04" rgba="0.2 0.4 0.9 1"/>
    <geom name="can" type="cylinder" pos="-0.1 -0.25 0.47" size="0.03 0.05"
          rgba="0.2 0.8 0.3 1"/>
    <geom name="egg" type="ellipsoid" pos="0.3 0.25 0.45" size="0.05 0.03 0.03" euler="0 0 40"
          rgba="0.9 0.8 0.2 1"/>
    <geom name="pill" type="capsule" pos="0.0 0.28 0.45" size="0.02 0.05" euler="0 90 20"
          rgba="0.8 0.3 0.8 1"/>
    <camera name="front" pos="1.3 0 1.2" xyaxes="0 1 0 -0.6 0 0.8" fovy="45"/>
  </worldbody>
</mujoco>
"""

HEADING = "## Renderer (benchmarks/render.py)"


def scene_from_env(name: str) -> mujoco.MjModel | None:
    """The ``mj_model`` of environment ``name``, or None (with a message) if that fails."""
    try:
        from pvm_mbrl import envs

        return envs.make(name).mj_model
    except Exception as e:  # any failure falls back to the built-in scene
        print(
            f"--scene-from-env {name}: could not build ({type(e).__name__}: {e}); "
            "using the built-in tabletop scene"
        )
        return None


def _batched_inputs(m: mujoco.MjModel, d: mujoco.MjData, batch: int):
    def bx(x):
        return jnp.broadcast_to(jnp.asarray(x, jnp.float32), (batch, *np.shape(x)))

    return (
        bx(d.geom_xpos),
        bx(d.geom_xmat.reshape(-1, 3, 3)),
        bx(d.cam_xpos[0]),
        bx(d.cam_xmat[0].reshape(3, 3)),
    )


def bench_jax(m, d, geom, batch, size, repeats, shadows=True):
    params = render.SceneParams.default(geom, 0)
    pb = jax.tree.map(lambda x: jnp.broadcast_to(x, (batch, *x.shape)), params)
    args = _batched_inputs(m, d, batch)

    def one(p, *a):
        return render.render(geom, p, *a, height=size, width=size, shadows=shadows).rgb

    f = jax.jit(jax.vmap(one))
    return batch / best_time(lambda: f(pb, *args), repeats)


def bench_mjx_ray(m, d, geom, batch, size, repeats):
    mm = mjx.put_model(m)
    md = mjx.put_data(m, d)
    mdb = jax.tree.map(lambda x: jnp.broadcast_to(x, (batch, *x.shape)), md)
    params = render.SceneParams.default(geom, 0)
    groups = tuple(int(i in (0, 1, 2)) for i in range(mujoco.mjNGROUP))

    def one(dd, p):
        o, v = render.camera_rays(
            dd.cam_xpos[0], dd.cam_xmat[0].reshape(3, 3), None, height=size, width=size, params=p
        )
        dist, _ = jax.vmap(lambda q, u: mjx.ray(mm, dd, q, u, groups))(
            o.reshape(-1, 3), v.reshape(-1, 3)
        )
        return dist

    f = jax.jit(jax.vmap(one, in_axes=(0, None)))
    return batch / best_time(lambda: f(mdb, params), repeats)


def bench_mujoco_gl(m, d, batch, size, repeats):
    try:
        r = mujoco.Renderer(m, size, size)
    except Exception as e:
        print(f"mujoco.Renderer unavailable: {type(e).__name__}: {e}")
        return None
    try:

        def run():
            for _ in range(batch):
                r.update_scene(d, camera=0)
                r.render()

        run()
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - t0)
        return batch / best
    finally:
        r.close()


def warp_status() -> str:
    try:
        import warp  # noqa: F401
    except Exception:
        return "not importable"
    return "importable (not benchmarked by this script)"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, nargs="+", default=[16, 64, 256])
    ap.add_argument("--size", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--scene-from-env", default=None, metavar="NAME")
    ap.add_argument("--no-write", action="store_true", help="do not append to RESULTS.md")
    args = ap.parse_args(argv)

    m = scene_from_env(args.scene_from_env) if args.scene_from_env else None
    scene = args.scene_from_env if m is not None else "built-in tabletop"
    if m is None:
        m = mujoco.MjModel.from_xml_string(TABLETOP)
    d = mujoco.MjData(m)
    mujoco.mj_forward(m, d)
    geom = render.SceneGeometry.from_model(m)
    warp = warp_status()
    print(f"scene: {scene}, {geom.num_drawn} drawn geoms; device {jax.devices()[0]}")
    print(f"MuJoCo Warp: {warp}")

    header = (
        "| size | batch | JAX render (shadows) | JAX render (no shadows) | vmap(mjx.ray) depth "
        "| MuJoCo + OpenGL (1 thread) | MuJoCo Warp |"
    )
    rows = [header, "|" + "---|" * 7]
    print(header)
    for size in args.size:
        gl = bench_mujoco_gl(m, d, 16, size, args.repeats)
        for batch in args.batch:
            r_sh = bench_jax(m, d, geom, batch, size, args.repeats, shadows=True)
            r_ns = bench_jax(m, d, geom, batch, size, args.repeats, shadows=False)
            try:
                r_ray = f"{bench_mjx_ray(m, d, geom, batch, size, args.repeats):,.0f}"
            except Exception as e:  # e.g. mesh geoms mjx.ray cannot take
                print(f"vmap(mjx.ray) failed: {type(e).__name__}: {e}")
                r_ray = "n/a"
            gl_s = f"{gl:,.0f}" if gl is not None else "n/a"
            row = (
                f"| {size}x{size} | {batch} | {r_sh:,.0f} | {r_ns:,.0f} | {r_ray} "
                f"| {gl_s} | {warp} |"
            )
            rows.append(row)
            print(row, flush=True)

    if args.no_write:
        return
    append_results(
        HEADING,
        [
            f"scene: {scene} ({geom.num_drawn} drawn geoms), images/s, render only, "
            f"batch sizes {args.batch} (vmap); MuJoCo + OpenGL renders one image at a time "
            "(a loop of 16, update_scene + render, EGL; no GPU on a CPU-only machine); "
            "mjx.ray has no cylinder kernel, so it skips them"
        ],
        rows,
    )


if __name__ == "__main__":
    pvm_mbrl.setup()  # host-memory reuse and the compilation cache, before any JAX work
    main()
