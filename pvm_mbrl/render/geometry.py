"""Static scene description for the ray caster, read once from a ``mujoco.MjModel``.

Everything here is plain numpy / Python and never traced: which geoms are drawn, their types and
sizes, and a static split of the drawn geoms by primitive type so that each intersection kernel
runs only over the geoms of its own type. A ``SceneGeometry`` hashes by identity, so it can be a
static argument of ``jax.jit`` or a closure constant.
"""

from __future__ import annotations

import dataclasses

import mujoco
import numpy as np

PLANE = int(mujoco.mjtGeom.mjGEOM_PLANE)
SPHERE = int(mujoco.mjtGeom.mjGEOM_SPHERE)
CAPSULE = int(mujoco.mjtGeom.mjGEOM_CAPSULE)
ELLIPSOID = int(mujoco.mjtGeom.mjGEOM_ELLIPSOID)
CYLINDER = int(mujoco.mjtGeom.mjGEOM_CYLINDER)
BOX = int(mujoco.mjtGeom.mjGEOM_BOX)

SUPPORTED_TYPES = (PLANE, SPHERE, CAPSULE, ELLIPSOID, CYLINDER, BOX)
TYPE_NAMES = {
    PLANE: "plane",
    SPHERE: "sphere",
    CAPSULE: "capsule",
    ELLIPSOID: "ellipsoid",
    CYLINDER: "cylinder",
    BOX: "box",
}


@dataclasses.dataclass(frozen=True, eq=False)
class TypeGroup:
    """The drawn geoms of one primitive type.

    Attributes:
      geom_type: MuJoCo ``mjtGeom`` value.
      geom_ids: model geom ids, int32 ``[Gt]``.
      drawn_index: position of each geom in the drawn list, int32 ``[Gt]``.
      size: ``geom_size`` rows, float32 ``[Gt, 3]``.
    """

    geom_type: int
    geom_ids: np.ndarray
    drawn_index: np.ndarray
    size: np.ndarray

    @property
    def name(self) -> str:
        return TYPE_NAMES[self.geom_type]


@dataclasses.dataclass(frozen=True, eq=False)
class SceneGeometry:
    """Static geometry of the drawn geoms of a model (hashes by identity).

    Attributes:
      ngeom: number of geoms in the model (length of ``mjx.Data.geom_xpos``).
      geom_ids: model ids of the drawn geoms in drawn order (ascending id), int32 ``[G]``.
      geom_type: ``mjtGeom`` of each drawn geom, int32 ``[G]``.
      geom_size: float32 ``[G, 3]``.
      geom_rgba: default colour (material colour where the geom has a material), ``[G, 4]``.
      drawn_index: model geom id -> drawn index, or -1 for geoms not drawn, int32 ``[ngeom]``.
      groups: per-type groups, in a fixed type order, only types that occur.
      geom_names: drawn geom names (may be empty strings).
      camera_fovy: vertical field of view of each model camera in degrees, ``[ncam]``.
      camera_names: model camera names, ``camera_ids`` maps name -> id.
    """

    ngeom: int
    geom_ids: np.ndarray
    geom_type: np.ndarray
    geom_size: np.ndarray
    geom_rgba: np.ndarray
    drawn_index: np.ndarray
    groups: tuple[TypeGroup, ...]
    geom_names: tuple[str, ...]
    camera_fovy: np.ndarray
    camera_names: tuple[str, ...]

    @property
    def num_drawn(self) -> int:
        return len(self.geom_ids)

    @property
    def camera_ids(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.camera_names) if n}

    def camera_id(self, camera: int | str) -> int:
        """Camera id from an id or a name; raises ``ValueError`` for an unknown camera."""
        if isinstance(camera, str):
            if camera not in self.camera_ids:
                raise ValueError(f"unknown camera {camera!r}; model has {self.camera_names}")
            return self.camera_ids[camera]
        if not 0 <= int(camera) < len(self.camera_fovy):
            raise ValueError(f"camera id {camera} out of range [0, {len(self.camera_fovy)})")
        return int(camera)

    def index(self, geom: int | str) -> int:
        """Drawn index of a geom given its model id or name (for indexing ``SceneParams``)."""
        if isinstance(geom, str):
            if geom not in self.geom_names:
                raise ValueError(f"geom {geom!r} is not drawn; drawn geoms: {self.geom_names}")
            return self.geom_names.index(geom)
        i = int(self.drawn_index[geom]) if 0 <= geom < self.ngeom else -1
        if i < 0:
            raise ValueError(f"geom id {geom} is not drawn (groups / alpha filter)")
        return i

    def drawn(self, names) -> np.ndarray:
        """int32 drawn indices of the geoms ``names`` that are drawn (the others are left out)."""
        return np.array([self.index(n) for n in names if n in self.geom_names], np.int32)

    @classmethod
    def from_model(
        cls,
        mj_model: mujoco.MjModel,
        geom_groups: tuple[int, ...] = (0, 1, 2),
        skip_unsupported: bool = False,
    ) -> SceneGeometry:
        """Reads the drawn geoms: those in ``geom_groups`` whose colour has alpha > 0.

        Geoms of types the ray caster has no kernel for (height fields, meshes, SDFs) raise a
        ``ValueError`` unless ``skip_unsupported=True``, in which case they are left out.
        """
        m = mj_model
        rgba = np.array(m.geom_rgba, dtype=np.float32)
        matid = np.asarray(m.geom_matid)
        if m.nmat:
            has_mat = matid >= 0
            rgba[has_mat] = np.asarray(m.mat_rgba, dtype=np.float32)[matid[has_mat]]
        groups_ok = np.isin(np.asarray(m.geom_group), np.asarray(geom_groups, dtype=np.int64))
        drawn = groups_ok & (rgba[:, 3] > 0)
        types = np.asarray(m.geom_type).astype(np.int32)
        unsupported = drawn & ~np.isin(types, SUPPORTED_TYPES)
        if unsupported.any():
            bad = [
                (int(i), mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_GEOM, int(i)), int(types[i]))
                for i in np.nonzero(unsupported)[0]
            ]
            if not skip_unsupported:
                raise ValueError(
                    "geoms of unsupported type (id, name, mjtGeom) "
                    f"{bad}; supported: {sorted(TYPE_NAMES.values())}. "
                    "Pass skip_unsupported=True to leave them out of the image."
                )
            drawn &= ~unsupported
        ids = np.nonzero(drawn)[0].astype(np.int32)
        if ids.size == 0:
            raise ValueError(f"no drawable geoms in groups {geom_groups}")
        drawn_index = np.full(m.ngeom, -1, np.int32)
        drawn_index[ids] = np.arange(ids.size, dtype=np.int32)
        size = np.asarray(m.geom_size, dtype=np.float32)[ids]
        dtypes = types[ids]
        groups = []
        for t in SUPPORTED_TYPES:
            sel = np.nonzero(dtypes == t)[0].astype(np.int32)
            if sel.size:
                groups.append(TypeGroup(t, ids[sel], sel, size[sel]))
        names = tuple(mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_GEOM, int(i)) or "" for i in ids)
        cam_names = tuple(
            mujoco.mj_id2name(m, mujoco.mjtObj.mjOBJ_CAMERA, i) or "" for i in range(m.ncam)
        )
        for a in (ids, dtypes, size, rgba, drawn_index):
            a.setflags(write=False)
        return cls(
            ngeom=int(m.ngeom),
            geom_ids=ids,
            geom_type=dtypes,
            geom_size=size,
            geom_rgba=rgba[ids],
            drawn_index=drawn_index,
            groups=tuple(groups),
            geom_names=names,
            camera_fovy=np.asarray(m.cam_fovy, dtype=np.float32).copy(),
            camera_names=cam_names,
        )
