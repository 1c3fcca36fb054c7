"""Named shift presets, severity ladders and composition.

A ``Preset`` maps family names to severities in [0, 1] (plus a drift for the dynamic mode).
Names accepted by :func:`get`:

- ``id`` (no shift), ``texture`` (the reference study's dark-wood table), ``weak`` and
  ``strong`` (the study's CARLA weather presets mirrored on a table-top: weak ~ cloud 20-80,
  fog 20-30, low sun, some rain; strong ~ cloud 100, fog 100, sun below the horizon, heavy rain);
- Distracting Control Suite levels ``dcs-S`` for S in 0.025 ... 0.5 (colour, camera and
  background at intensity S; ``dcs-S-dynamic`` drifts during the episode);
- DMControl-GB style ``color-easy``/``color-hard``, ``video-easy``/``video-hard`` (a moving
  procedural background stands in for videos);
- RL-ViGen style ``appearance-``, ``camera-``, ``lighting-``, ``scene-`` ``easy``/``hard``;
- the reference study's CARLA lighting shifts ``soft_high_light``, ``soft_noisy_low_light``,
  ``hard_low_light``, ``hard_noisy_low_light`` (:data:`STUDY_LIGHTING`), and CARLA's weather
  presets ``cloudy``, ``wet_road``, ``hard_rain``, ``clear_sunset``, ``clear_night``,
  ``foggy`` (:data:`DRIVING`; made for the ``Highway`` task, valid on every task);
- any single family at a severity, ``FAMILY@S`` (e.g. ``fog@0.5``);
- a composition with ``+`` (e.g. ``texture+fog@0.3``): the larger severity wins per family.

The non-visual splits of the study (novel objects, outer positions) are task options
(``envs.make(..., split=...)``), not shifts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from pvm_mbrl.shifts.families import FAMILIES, ShiftSpec, check_family

DCS_LEVELS = (0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)


@dataclasses.dataclass(frozen=True)
class Preset:
    """Severities per family (a sorted tuple of ``(family, severity)``) and a drift."""

    name: str
    severity: tuple[tuple[str, float], ...] = ()
    drift: float = 0.0

    def __post_init__(self):
        for fam, s in self.severity:
            check_family(fam)
            if not 0.0 <= float(s) <= 1.0:
                raise ValueError(f"severity must be in [0, 1], got {s} for family {fam!r}")
        if not 0.0 <= float(self.drift) <= 1.0:
            raise ValueError(f"drift must be in [0, 1], got {self.drift}")

    @classmethod
    def of(cls, name: str, severity: Mapping[str, float], drift: float = 0.0) -> Preset:
        return cls(name, tuple(sorted((k, float(v)) for k, v in severity.items())), float(drift))

    @property
    def families(self) -> dict[str, float]:
        return dict(self.severity)

    def scaled(self, s: float) -> Preset:
        """The same preset with every severity multiplied by ``s`` in [0, 1]."""
        _check_unit(s, "ladder severity")
        return Preset.of(f"{self.name}@{s:g}", {k: v * s for k, v in self.severity}, self.drift)


def _check_unit(s: float, what: str) -> None:
    if not 0.0 <= float(s) <= 1.0:
        raise ValueError(f"{what} must be in [0, 1], got {s}")


def _dcs(s: float, dynamic: bool) -> Preset:
    fams = {"object_colour": s, "robot_colour": s, "camera": s, "background": s}
    name = f"dcs-{s:g}" + ("-dynamic" if dynamic else "")
    return Preset.of(name, fams, drift=0.1 if dynamic else 0.0)


def _driving() -> dict[str, Preset]:
    """The reference study's four CARLA lighting shifts (by name and meaning: light up, or
    down with and without sensor noise) and CARLA's weather presets (clear noon is ``id``)."""
    out = [
        Preset.of("soft_high_light", {"bright": 0.6}),
        Preset.of("soft_noisy_low_light", {"night": 0.5, "sensor_noise": 0.25}),
        Preset.of("hard_low_light", {"night": 0.9}),
        Preset.of("hard_noisy_low_light", {"night": 0.9, "sensor_noise": 0.5}),
        Preset.of("cloudy", {"overcast": 0.8}),
        Preset.of("wet_road", {"overcast": 0.5, "wet": 1.0}),
        Preset.of("hard_rain", {"overcast": 1.0, "wet": 1.0, "rain": 1.0, "fog": 0.3}),
        Preset.of("clear_sunset", {"sunset": 1.0}),
        Preset.of("clear_night", {"night": 0.95, "headlights": 1.0}),
        Preset.of("foggy", {"overcast": 0.6, "fog": 0.7}),
    ]
    return {p.name: p for p in out}


def _named() -> dict[str, Preset]:
    out = [
        Preset.of("id", {}),
        Preset.of("texture", {"dark_wood": 1.0}),
        Preset.of("weak", {"fog": 0.25, "light": 0.5, "night": 0.2, "rain": 0.3}),
        Preset.of("strong", {"fog": 1.0, "light": 1.0, "night": 1.0, "rain": 1.0}),
        Preset.of(
            "color-easy", {"object_colour": 0.3, "robot_colour": 0.3, "surface_texture": 0.3}
        ),
        Preset.of(
            "color-hard", {"object_colour": 1.0, "robot_colour": 1.0, "surface_texture": 1.0}
        ),
        Preset.of("video-easy", {"background": 0.5}, drift=0.05),
        Preset.of("video-hard", {"background": 1.0, "surface_texture": 1.0}, drift=0.1),
        Preset.of("appearance-easy", {"object_colour": 0.3, "surface_texture": 0.3}),
        Preset.of("appearance-hard", {"object_colour": 0.8, "surface_texture": 1.0}),
        Preset.of("camera-easy", {"camera": 0.3}),
        Preset.of("camera-hard", {"camera": 0.8}),
        Preset.of("lighting-easy", {"light": 0.4, "night": 0.2}),
        Preset.of("lighting-hard", {"light": 1.0, "night": 0.7}),
        Preset.of("scene-easy", {"distractors": 0.5, "background": 0.3}),
        Preset.of("scene-hard", {"distractors": 1.0, "background": 1.0, "surface_texture": 0.7}),
    ]
    out += [_dcs(s, dyn) for s in DCS_LEVELS for dyn in (False, True)]
    out += list(DRIVING.values())
    return {p.name: p for p in out}


DRIVING: dict[str, Preset] = _driving()
STUDY_LIGHTING = (
    "soft_high_light",
    "soft_noisy_low_light",
    "hard_low_light",
    "hard_noisy_low_light",
)
PRESETS: dict[str, Preset] = _named()


def get(name: str | Preset) -> Preset:
    """The preset called ``name`` (see the module docstring for the accepted forms)."""
    if isinstance(name, Preset):
        return name
    if not isinstance(name, str) or not name:
        raise ValueError(f"a shift preset is a non-empty name or a Preset, got {name!r}")
    if "+" in name:
        return compose(*name.split("+"))
    if name in PRESETS:
        return PRESETS[name]
    if "@" in name:
        fam, _, sev = name.partition("@")
        try:
            s = float(sev)
        except ValueError:
            raise ValueError(
                f"bad severity in {name!r}; expected FAMILY@S with S in [0, 1]"
            ) from None
        check_family(fam)
        return Preset.of(name, {fam: s})
    raise ValueError(
        f"unknown shift preset {name!r}; valid presets: {sorted(PRESETS)}, or FAMILY@S with "
        f"FAMILY in {sorted(FAMILIES)} and S in [0, 1], or a composition A+B"
    )


def compose(*presets: str | Preset) -> Preset:
    """One preset applying all of ``presets``; the larger severity and drift win."""
    items = [get(p) for p in presets]
    sev: dict[str, float] = {}
    for p in items:
        for fam, s in p.severity:
            sev[fam] = max(sev.get(fam, 0.0), s)
    return Preset.of("+".join(p.name for p in items), sev, max([p.drift for p in items] + [0.0]))


def ladder(name: str | Preset, severities: Iterable[float]) -> list[Preset]:
    """A severity ladder: a family (``ladder("fog", ...)``) or a preset scaled by each value."""
    if isinstance(name, str) and name in FAMILIES:
        return [get(f"{name}@{float(s):g}") for s in severities]
    base = get(name)
    return [base.scaled(float(s)) for s in severities]


@dataclasses.dataclass(frozen=True)
class ShiftBatch:
    """Presets for a batch of envs: the static ``spec`` (union of active families) and the
    per-env ``severity [N, F]`` and ``drift [N]`` arrays."""

    spec: ShiftSpec
    severity: np.ndarray
    drift: np.ndarray
    names: tuple[str, ...]


def batch(presets: str | Preset | Sequence[str | Preset]) -> ShiftBatch:
    """Resolves one preset or one per env into a ``ShiftBatch``."""
    items = [get(presets)] if isinstance(presets, str | Preset) else [get(p) for p in presets]
    if not items:
        raise ValueError("need at least one shift preset")
    active = [f for f in FAMILIES if any(p.families.get(f, 0.0) > 0 for p in items)]
    spec = ShiftSpec(tuple(active))
    sev = np.array([[p.families.get(f, 0.0) for f in active] for p in items], np.float32)
    sev = sev.reshape(len(items), len(active))
    drift = np.array([p.drift for p in items], np.float32)
    return ShiftBatch(spec, sev, drift, tuple(p.name for p in items))
