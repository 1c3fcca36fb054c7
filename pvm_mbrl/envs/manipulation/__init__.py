"""Table-top manipulation tasks on a shared MJX scene (see ``scene``)."""

from pvm_mbrl.envs.manipulation import objects, scene, scripted
from pvm_mbrl.envs.manipulation.base import ManipulationEnv
from pvm_mbrl.envs.manipulation.pick import PickCube, PickObject
from pvm_mbrl.envs.manipulation.push import Push
from pvm_mbrl.envs.manipulation.reach import Reach

__all__ = [
    "ManipulationEnv",
    "PickCube",
    "PickObject",
    "Push",
    "Reach",
    "objects",
    "scene",
    "scripted",
]
