"""The published reference curves ship with the project (``benchmarks/reference/``) and the
benchmarks read them from there; a missing file is an error that names it."""

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
import dmc_curve


def test_dmc_reference_curves_are_in_the_project():
    """DMC-Vision and DMC-proprio cartpole_swingup at 50k frames, as the official score files
    give them (benchmarks/reference/README.md)."""
    vision = dmc_curve.reference("cartpole_swingup", "pixels")
    assert vision[50_000]["mean"] == pytest.approx(322.8)
    assert vision[50_000]["seeds"] == 10
    proprio = dmc_curve.reference("cartpole_swingup", "state")
    assert proprio[50_000]["mean"] == pytest.approx(321.6)
    assert min(vision) == 10_000 and max(vision) >= 500_000


def test_missing_reference_names_the_file(tmp_path):
    missing = tmp_path / "dmc_vision_scores.csv"
    with pytest.raises(FileNotFoundError, match=str(missing)):
        dmc_curve.reference("cartpole_swingup", "pixels", missing)
