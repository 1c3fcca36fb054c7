"""MJCF builder for the shared table-top scene.

The scene is built from primitive geoms only (no meshes) so the ray caster in ``pvm_mbrl.render``
can draw every geom analytically. Layout (metres, z up, table top at z = 0):

- a floor plane (visual) at ``z = -TABLE_HEIGHT`` and a table box (visual) below the top;
- one collision plane at the table top (geom group 3, never rendered);
- a Cartesian gripper: a body with x/y/z slide joints driven by position actuators, gravity
  compensated, with two box fingers on slide joints (position controlled, one actuator each);
  the *tool centre point* site ``tcp`` sits between the fingers;
- a wrist camera on the gripper looking straight down between the fingers and a fixed front
  camera;
- mocap-driven visual markers (goal, target) whose positions are per-episode data;
- ``NUM_DISTRACTORS`` visual-only mocap geoms (group 2, parked below the floor) that the
  ``distractors`` visual shift shows, moves and colours (drawn only when a shift uses them).

Collision filtering keeps the contact count small (MJX evaluates every candidate pair each
step): objects touch the table plane (bit 1) and the fingers (bit 2) only; the fingers touch
nothing else; arm, palm, table box, floor and markers have ``contype = conaffinity = 0``.

Geom groups: 0 scene and robot, 1 task objects and markers, 2 distractors, 3 collision-only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import mujoco
import numpy as np

TABLE_HEIGHT = 0.4
TABLE_HALF = (0.45, 0.45)
WORKSPACE = 0.2  # gripper x/y range is [-WORKSPACE, WORKSPACE]
TCP_OFFSET = 0.06  # tcp site below the gripper frame
FINGER_HALF = (0.012, 0.005, 0.025)  # box half-extents: along x, thickness (y), height
FINGER_Z = -0.05  # finger centre below the gripper frame
FINGER_OPEN = 0.045  # max travel of each finger from the centre line
Z_MIN = -FINGER_Z + FINGER_HALF[2] + 0.002  # lowest gripper frame height (fingers clear the table)
Z_MAX = 0.3
NUM_DISTRACTORS = 4
DISTRACTOR_SIZE = 0.03
TIMESTEP = 0.005
# The front camera looks down at 55 degrees from 1.6 m with a narrow field of view: the
# gripper's whole reachable box (palm and fingers to the top of the wrist, anywhere in the
# workspace) stays in the frame, which it fills; the table fills the view but for a strip of
# floor at the top.
FRONT_CAMERA_TARGET = (0.0, 0.05, 0.1)
FRONT_CAMERA_POS = (0.0, 0.05 - 1.6 * 0.573576, 0.1 + 1.6 * 0.819152)
FRONT_CAMERA_FOVY = 24.0
# Opaque goal / target spheres. A target the gripper reaches is 3.5 cm (about 37 px of the 64 px
# front view); a goal an object is brought to is 1.5 cm, below every object's half-extent, so
# that an object at its goal stays visible around it (a larger opaque sphere would swallow it).
MARKER_RADIUS = 0.035
GOAL_RADIUS = 0.015
MARKER_RGB = (0.1, 0.85, 0.2)


@dataclasses.dataclass(frozen=True)
class ObjectGeom:
    """A free object body: primitive ``shape`` ("box", "sphere", "capsule") with MuJoCo sizes.

    Capsules lie along x. ``park`` (x, y) and ``park_z`` (default: resting on the table) give
    the body's position when an episode does not use it.
    """

    name: str
    shape: str
    size: tuple[float, ...]
    mass: float
    rgb: tuple[float, float, float]
    park: tuple[float, float] = (0.0, -3.0)
    park_z: float | None = None

    @property
    def half_height(self) -> float:
        """Height of the centre above the table when resting."""
        return self.size[2] if self.shape == "box" else self.size[0]

    @property
    def half_width(self) -> float:
        """Half the extent along y, the axis the fingers close on."""
        return self.size[1] if self.shape == "box" else self.size[0]


def _fmt(v: Sequence[float]) -> str:
    return " ".join(f"{float(x):.6g}" for x in v)


def _xyaxes(pos: Sequence[float], target: Sequence[float]) -> str:
    """Camera ``xyaxes`` so that the camera at ``pos`` looks at ``target`` with x horizontal."""
    z = np.asarray(pos, float) - np.asarray(target, float)
    z /= np.linalg.norm(z)
    x = np.cross([0.0, 0.0, 1.0], z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return _fmt(np.concatenate([x, y]))


def _object_xml(obj: ObjectGeom) -> str:
    if obj.shape == "box":
        geom = f'type="box" size="{_fmt(obj.size)}"'
    elif obj.shape == "sphere":
        geom = f'type="sphere" size="{_fmt(obj.size[:1])}"'
    elif obj.shape == "capsule":
        geom = f'type="capsule" size="{_fmt(obj.size[:2])}" euler="0 90 0"'
    else:
        raise ValueError(f"object shape must be box, sphere or capsule, got {obj.shape!r}")
    pos = (*obj.park, obj.half_height if obj.park_z is None else obj.park_z)
    return f"""
    <body name="{obj.name}" pos="{_fmt(pos)}">
      <freejoint name="{obj.name}_joint"/>
      <geom name="{obj.name}_geom" {geom} mass="{obj.mass:.6g}" rgba="{_fmt(obj.rgb)} 1"
            group="1" contype="1" conaffinity="2" condim="3" friction="1.0 0.01 0.002"
            solref="0.01 1" solimp="0.95 0.99 0.001"/>
    </body>"""


def build_xml(
    objects: Sequence[ObjectGeom] = (),
    markers: Sequence[str] = ("goal",),
    max_contact_points: int | None = None,
    marker_radius: float = MARKER_RADIUS,
) -> str:
    """MJCF text of the scene with the given free objects and visual marker spheres of
    ``marker_radius`` metres.

    ``max_contact_points`` (MJX numeric) keeps only the deepest contacts per condim group,
    which bounds the constraint count when many objects are parked out of contact.
    """
    custom = (
        ""
        if max_contact_points is None
        else f'<custom><numeric name="max_contact_points" data="{int(max_contact_points)}"/>'
        "</custom>"
    )
    bodies = "".join(_object_xml(o) for o in objects)
    marker_xml = "".join(
        f"""
    <body name="{m}" mocap="true" pos="0 0 -1">
      <geom name="{m}_geom" type="sphere" size="{marker_radius:.6g}" rgba="{_fmt(MARKER_RGB)} 1"
            group="1" contype="0" conaffinity="0"/>
    </body>"""
        for m in markers
    )
    shapes = ("box", "sphere", "capsule", "cylinder")
    distractors = "".join(
        f"""
    <body name="distractor{i}" mocap="true" pos="{0.3 * i - 0.45} 0 {-TABLE_HEIGHT - 1.0}">
      <geom name="distractor{i}_geom" type="{shapes[i % 4]}"
            size="{DISTRACTOR_SIZE} {DISTRACTOR_SIZE} {DISTRACTOR_SIZE}"
            rgba="0.8 0.8 0.8 1" group="2" contype="0" conaffinity="0"/>
    </body>"""
        for i in range(NUM_DISTRACTORS)
    )
    fx, fy, fz = FINGER_HALF
    return f"""
<mujoco model="pvm_table">
  <compiler angle="degree" autolimits="true"/>
  <!-- mjx.ray indexes mat_rgba even for geoms without a material; one unused material lets it
       cast rays through this scene (the renderer cross-checks and benchmarks use it). -->
  <asset><material name="unused"/></asset>
  <option timestep="{TIMESTEP}" iterations="6" ls_iterations="8" solver="Newton"
          integrator="Euler" cone="pyramidal" impratio="10">
    <flag eulerdamp="disable"/>
  </option>
  <visual><global offwidth="256" offheight="256"/></visual>
  {custom}
  <worldbody>
    <light name="sun" pos="0.3 -0.3 1.5" dir="-0.2 0.2 -1" directional="true"/>
    <geom name="floor" type="plane" size="3 3 0.05" pos="0 0 {-TABLE_HEIGHT}"
          rgba="0.55 0.5 0.45 1" group="0" contype="0" conaffinity="0"/>
    <geom name="table" type="box" size="{TABLE_HALF[0]} {TABLE_HALF[1]} {TABLE_HEIGHT / 2}"
          pos="0 0 {-TABLE_HEIGHT / 2}" rgba="0.62 0.46 0.32 1" group="0"
          contype="0" conaffinity="0"/>
    <geom name="table_plane" type="plane" size="0 0 0.05" group="3" contype="0"
          conaffinity="1" condim="3" friction="0.6 0.01 0.002"/>
    <camera name="front" pos="{_fmt(FRONT_CAMERA_POS)}"
            xyaxes="{_xyaxes(FRONT_CAMERA_POS, FRONT_CAMERA_TARGET)}" fovy="{FRONT_CAMERA_FOVY}"/>
    <body name="gripper" pos="0 0 0" gravcomp="1">
      <joint name="arm_x" type="slide" axis="1 0 0" range="{-WORKSPACE} {WORKSPACE}"
             armature="0.05"/>
      <joint name="arm_y" type="slide" axis="0 1 0" range="{-WORKSPACE} {WORKSPACE}"
             armature="0.05"/>
      <joint name="arm_z" type="slide" axis="0 0 1" range="{Z_MIN} {Z_MAX}" armature="0.05"/>
      <geom name="palm" type="box" size="0.02 0.055 0.012" pos="0 0 -0.012" mass="0.4"
            rgba="0.25 0.25 0.3 1" group="0" contype="0" conaffinity="0"/>
      <geom name="wrist" type="cylinder" size="0.018 0.025" pos="0 0 0.025" mass="0.1"
            rgba="0.7 0.7 0.72 1" group="0" contype="0" conaffinity="0"/>
      <site name="tcp" pos="0 0 {-TCP_OFFSET}" size="0.005"/>
      <camera name="wrist" pos="0.09 0 0.05" xyaxes="0 -1 0 1 0 -0.6" fovy="70"/>
      <body name="finger_left" pos="0 0 {FINGER_Z}" gravcomp="1">
        <joint name="finger_left" type="slide" axis="0 1 0" range="0 {FINGER_OPEN}"
               armature="0.01"/>
        <geom name="finger_left_geom" type="box" size="{fx} {fy} {fz}" pos="0 {fy} 0" mass="0.05"
              rgba="0.85 0.85 0.88 1" group="0" contype="2" conaffinity="0" condim="4"
              friction="1.2 0.01 0.002" solref="0.01 1" solimp="0.95 0.99 0.001"/>
      </body>
      <body name="finger_right" pos="0 0 {FINGER_Z}" gravcomp="1">
        <joint name="finger_right" type="slide" axis="0 -1 0" range="0 {FINGER_OPEN}"
               armature="0.01"/>
        <geom name="finger_right_geom" type="box" size="{fx} {fy} {fz}" pos="0 {-fy} 0"
              mass="0.05" rgba="0.85 0.85 0.88 1" group="0" contype="2" conaffinity="0"
              condim="4" friction="1.2 0.01 0.002" solref="0.01 1" solimp="0.95 0.99 0.001"/>
      </body>
    </body>{bodies}{marker_xml}{distractors}
  </worldbody>
  <actuator>
    <position name="arm_x" joint="arm_x" kp="1000" kv="60" ctrlrange="{-WORKSPACE} {WORKSPACE}"/>
    <position name="arm_y" joint="arm_y" kp="1000" kv="60" ctrlrange="{-WORKSPACE} {WORKSPACE}"/>
    <position name="arm_z" joint="arm_z" kp="1000" kv="60" ctrlrange="{Z_MIN} {Z_MAX}"/>
    <position name="finger_left" joint="finger_left" kp="300" kv="6"
              ctrlrange="0 {FINGER_OPEN}" forcerange="-12 12"/>
    <position name="finger_right" joint="finger_right" kp="300" kv="6"
              ctrlrange="0 {FINGER_OPEN}" forcerange="-12 12"/>
  </actuator>
</mujoco>
"""


def build_model(
    objects=(),
    markers=("goal",),
    max_contact_points: int | None = None,
    marker_radius: float = MARKER_RADIUS,
):
    """Compiled ``mujoco.MjModel`` of :func:`build_xml`."""
    xml = build_xml(objects, markers, max_contact_points, marker_radius)
    return mujoco.MjModel.from_xml_string(xml)
