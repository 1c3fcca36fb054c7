"""Highway driving physics (no rendering): a closed-loop multi-lane road, the ego's kinematic
bicycle, IDM traffic, and the task's pure step/reward/observation functions.

    from pvm_mbrl.envs.driving import sim, scripted
    config = sim.Config(split="train")                   # or "dense", "curvy"
    state = sim.reset(key, config)
    state = sim.step(state, scripted.policy(state, config), config)
    state.reward, state.done, sim.state_obs(state, config), sim.cars_pose(state, config)

Modules: ``road`` (geometry, Frenet ``point``/``project``), ``vehicle`` (bicycle model),
``traffic`` (IDM followers), ``sim`` (the task), ``scripted`` (a pure-pursuit driver),
``scene`` (what the camera sees: geoms and the painted road) and ``highway`` (the rendered env,
``envs.make("Highway")``).
"""

from pvm_mbrl.envs.driving import highway, road, scene, scripted, sim, traffic, vehicle
from pvm_mbrl.envs.driving.highway import Highway
from pvm_mbrl.envs.driving.road import LANE_WIDTH, Road, make_road
from pvm_mbrl.envs.driving.sim import (
    OBS_SIZE,
    Config,
    SimState,
    cars_pose,
    ego_camera,
    reset,
    state_obs,
    step,
)

__all__ = [
    "LANE_WIDTH",
    "OBS_SIZE",
    "Config",
    "Highway",
    "Road",
    "SimState",
    "cars_pose",
    "ego_camera",
    "highway",
    "make_road",
    "reset",
    "road",
    "scene",
    "scripted",
    "sim",
    "state_obs",
    "step",
    "traffic",
    "vehicle",
]
