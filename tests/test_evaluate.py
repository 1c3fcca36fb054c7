"""Evaluation across shifts: the formulas, the task maximum, the batched rollout against
un-batched rollouts of the same envs and keys, the random floor and its cache, and the writers."""

import csv
import dataclasses
import json
import math
import pathlib
import re

import jax
import numpy as np
import pytest
from examples_loader import load_example

from pvm_mbrl import envs, evaluate, shifts
from pvm_mbrl.dreamer import Dreamer, DreamerConfig
from pvm_mbrl.evaluate import results as evaluate_results
from pvm_mbrl.experiment import Experiment

KW = dict(image_size=16, camera="front", episode_length=4, render_shadows=False)
SHIFTS = ("id", "strong", "outer_positions", "novel_objects")
EPISODES = 2
SEED = 3
QUICK = dict(mlp_layers=1, bins=15, imag_horizon=3)  # with the micro preset: compiles fast


@pytest.fixture(scope="module")
def run():
    env = envs.make("Reach", num_envs=1, auto_reset=False, **KW)
    agent = Dreamer(DreamerConfig.preset("micro", **QUICK), env.observation_space, env.action_space)
    states = [agent.init(jax.random.PRNGKey(i)) for i in range(2)]
    ev = evaluate.Evaluator("Reach", KW, SHIFTS, EPISODES, agent)
    floors = {}
    res = ev.evaluate(states, seed=SEED, floors=floors)
    return agent, states, ev, res, floors


def test_normalised_return_formula():
    assert evaluate.normalised_return(30.0, 10.0, 50.0) == pytest.approx(0.5)
    got = evaluate.normalised_return([10.0, 50.0, 0.0], [10.0, 10.0, 10.0], 50.0)
    np.testing.assert_allclose(got, [0.0, 1.0, -0.25])
    assert np.isnan(evaluate.normalised_return(5.0, 10.0, 10.0))  # R_max <= R_random


def test_summarise_matches_numpy():
    x = np.random.default_rng(0).normal(size=(5, 3))
    mean, se = evaluate.summarise(x)
    np.testing.assert_allclose(mean, x.mean(0))
    np.testing.assert_allclose(se, np.std(x, 0, ddof=1) / math.sqrt(5))
    mean, se = evaluate.summarise(x[:1])
    np.testing.assert_allclose(mean, x[0])
    assert np.all(np.isnan(se))  # one seed: undefined
    x[:, 1] = np.nan
    assert np.isnan(evaluate.summarise(x)[0][1])


def test_max_return_counts_steps_and_action_repeat():
    state_only = dict(obs_mode="state", render=False)
    assert evaluate.max_return(envs.make("Reach", **state_only)) == 50.0
    assert evaluate.max_return(envs.make("Reach", episode_length=7, **state_only)) == 7.0
    env = envs.make("Reach", episode_length=7, action_repeat=3, num_envs=2, **state_only)
    assert evaluate.max_return(env) == 21.0  # ActionRepeat sums its 3 rewards per agent step
    assert env.unwrapped.max_step_reward == 1.0


def test_parse_shift_and_bad_inputs():
    assert evaluate.parse_shift("strong") == ("train", "strong")
    assert evaluate.parse_shift("novel_objects") == ("novel_objects", "id")
    assert evaluate.parse_shift("outer_positions+fog@0.5") == ("outer_positions", "fog@0.5")
    with pytest.raises(ValueError, match="unknown shift 'nope'"):
        evaluate.Evaluator("Reach", KW, ("id", "nope"))
    with pytest.raises(ValueError, match="num_envs"):
        evaluate.Evaluator("Reach", {**KW, "num_envs": 4})
    with pytest.raises(ValueError, match="unique"):
        evaluate.Evaluator("Reach", KW, ("id", "id"))
    with pytest.raises(ValueError, match="do not apply to Reach"):
        evaluate.Evaluator("Reach", KW, ("novel_objects",), strict=True)


def test_batched_rollout_shapes_and_not_applicable(run):
    _, _, ev, res, _ = run
    assert res.returns.shape == res.random_returns.shape == (2, len(SHIFTS), EPISODES)
    ok = np.array([s != "novel_objects" for s in SHIFTS])
    for a in (res.returns, res.success_once, res.success_end, res.random_returns):
        assert np.all(np.isfinite(a[:, ok])) and np.all(np.isnan(a[:, ~ok]))
    assert "not applicable" in res.notes["novel_objects"] and len(res.notes) == 1
    assert np.all((res.returns[:, ok] > 0) & (res.returns[:, ok] <= ev.max_return))
    assert set(np.unique(res.success_once[:, ok])) <= {0.0, 1.0}
    assert np.all(res.success_once[:, ok] >= res.success_end[:, ok])
    # The random policy does not see pixels: the same episodes give the same floor per preset.
    np.testing.assert_array_equal(res.random_returns[:, 0], res.random_returns[:, 1])
    summary = res.summary()
    assert summary["normalised"][0].shape == (len(SHIFTS),)
    assert np.isnan(summary["normalised"][0][3]) and np.all(np.isfinite(summary["return"][1][:3]))


@pytest.mark.slow  # make test-slow (CI): cold compile time
def test_batching_does_not_mix_shifts(run):
    """A shift's episodes equal a rollout of its env alone (not batched with other presets or
    splits) with the same keys."""
    agent, states, _, res, _ = run
    # id and strong must differ, or this test could not see them swapped.
    assert not np.allclose(res.returns[:, 0], res.returns[:, 1])
    alone = evaluate.Evaluator("Reach", KW, ("strong",), EPISODES, agent)
    for k in range(2):
        out = alone.rollout(states[k], seed=SEED + k)
        np.testing.assert_allclose(out["return"][0], res.returns[k, 1], rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(out["success_once"][0], res.success_once[k, 1])
        np.testing.assert_array_equal(out["success_end"][0], res.success_end[k, 1])
    floor = alone.random_floor(seed=SEED, seeds=2, agent_state=states[0])
    np.testing.assert_allclose(floor[:, 0], res.random_returns[:, 1], rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # make test-slow (CI): cold compile time
def test_rollout_frames_are_what_the_first_env_saw():
    env = envs.make("Reach", num_envs=2, auto_reset=False, **KW)
    key = jax.random.PRNGKey(SEED)
    (out,) = evaluate.make_rollout([env], EPISODES, frames=True)(None, key, True)
    frames = np.asarray(out["frames"])
    assert frames.shape == (KW["episode_length"], 16, 16, 3) and frames.dtype == np.uint8
    k_reset = jax.random.split(key)[0]
    first = jax.jit(env.reset)(jax.vmap(jax.random.fold_in, (None, 0))(k_reset, np.arange(2)))
    np.testing.assert_array_equal(frames[0], np.asarray(first.obs["pixels"][0]))
    # the env moves: later frames differ from the first (the arm follows random actions)
    assert np.abs(frames[-1].astype(int) - frames[0]).sum() > 0


def test_random_floor_reproducible_and_cached(run):
    _, _, ev, res, floors = run
    np.testing.assert_array_equal(ev.random_floor(seed=SEED, seeds=2), res.random_returns)
    np.testing.assert_array_equal(ev.random_floor(seed=SEED + 1)[0], res.random_returns[1])
    assert not np.allclose(ev.random_floor(seed=SEED + 7)[0, 0], res.random_returns[0, 0])
    # One cache entry per applicable (shift, seed); a cached entry is used as it is.
    assert len(floors) == 3 * 2
    key = evaluate.floor_key("Reach", KW, "strong", EPISODES, SEED)
    assert floors[key] == pytest.approx(res.random_returns[0, 1].tolist())
    doctored = {k: [100.0] * EPISODES for k in floors}
    np.testing.assert_array_equal(ev.random_floor(SEED, 2, doctored)[:, :3], 100.0)


def _fake(task="Reach", seeds=3, shifts=("id", "strong", "novel_objects"), seed=0):
    rng = np.random.default_rng(seed)
    shape = (seeds, len(shifts), 4)
    res = evaluate.Results(
        task=task,
        shifts=shifts,
        episodes=4,
        seed=seed,
        env_kwargs=dict(KW),
        max_return=4.0,
        returns=rng.uniform(1, 4, shape),
        success_once=rng.integers(0, 2, shape).astype(float),
        success_end=rng.integers(0, 2, shape).astype(float),
        random_returns=rng.uniform(0, 1, shape),
        notes={"novel_objects": "not applicable"},
    )
    for a in (res.returns, res.success_once, res.success_end, res.random_returns):
        a[:, 2] = np.nan
    return res


def test_writers_round_trip(tmp_path):
    models = {
        "cnn": _fake(seed=0),
        "dinov2 partial": _fake(seed=10),
        "one seed": _fake(seeds=1, seed=20),
    }
    path = evaluate.write_json(models, tmp_path / "r.json")
    back = evaluate.read_json(path)
    for name, res in models.items():
        for field in ("returns", "success_once", "success_end", "random_returns"):
            np.testing.assert_array_equal(getattr(back[name], field), getattr(res, field))
        assert back[name].shifts == res.shifts and back[name].notes == res.notes
    doc = json.loads(path.read_text())
    mean, se = models["cnn"].summary()["normalised"]
    cell = doc["models"]["cnn"]["summary"]["normalised"]["strong"]
    assert cell["mean"] == pytest.approx(mean[1]) and cell["se"] == pytest.approx(se[1])
    assert doc["models"]["cnn"]["summary"]["normalised"]["novel_objects"]["mean"] is None
    floors = evaluate.load_floors(path)
    assert len(floors) == (3 + 3 + 1) * 2  # per seed and applicable shift
    key = evaluate.floor_key("Reach", KW, "strong", 4, 2)
    assert floors[key] == pytest.approx(models["cnn"].random_returns[2, 1].tolist())

    rows = list(csv.DictReader(open(evaluate.write_csv(models, tmp_path / "r.csv"))))
    assert len(rows) == 3 * 3
    for row in rows:
        res = models[row["model"]]
        i = res.shifts.index(row["shift"])
        for m in evaluate.METRICS:
            mean, se = res.summary()[m]
            for got, want in ((row[f"{m}_mean"], mean[i]), (row[f"{m}_se"], se[i])):
                assert (got == "") if np.isnan(want) else float(got) == pytest.approx(want)

    table = evaluate.markdown_table(models).splitlines()
    assert len(table) == 2 + len(models)
    assert table[0] == "| model | id | strong | novel_objects |"
    cells = [c.strip() for c in table[2].strip("|").split("|")]
    mean, se = models["cnn"].summary()["normalised"]
    assert cells == ["cnn", f"{mean[0]:.2f} ± {se[0]:.2f}", f"{mean[1]:.2f} ± {se[1]:.2f}", "n/a"]
    assert "±" not in table[4] and table[4].count("|") == 5  # one seed: the mean alone

    png = evaluate.bar_chart(models, tmp_path / "r.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ----- merging into an output directory ----------------------------------------------------------

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _model(rng_seed, **changes):
    """A fake model evaluated with seed 0 (its numbers drawn from ``rng_seed``)."""
    return dataclasses.replace(_fake(seed=rng_seed), **{"seed": 0, **changes})


def _snapshot(out):
    return {p.name: p.read_bytes() for p in sorted(pathlib.Path(out).iterdir())}


def test_write_results_merges_by_model_name(tmp_path):
    a, b = _model(0), _model(1)
    evaluate.write_results({"cnn": a}, tmp_path)
    merged = evaluate.write_results({"vit": b}, tmp_path)
    assert list(merged) == ["cnn", "vit"]
    back = evaluate.read_json(tmp_path / "results.json")
    assert list(back) == ["cnn", "vit"]
    np.testing.assert_array_equal(back["cnn"].returns, a.returns)
    np.testing.assert_array_equal(back["vit"].returns, b.returns)
    assert len(evaluate.load_floors(tmp_path / "results.json")) == 3 * 2  # (seed, shift): shared
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert [r["model"] for r in rows] == ["cnn"] * 3 + ["vit"] * 3
    md = (tmp_path / "results.md").read_text()
    assert md.startswith("normalised on Reach: ") and "4 episodes" in md
    assert md.endswith(evaluate.markdown_table(merged) + "\n")
    assert (tmp_path / "results.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(evaluate.RESULTS_FILES)


def test_write_results_replaces_a_model_only_with_overwrite(tmp_path):
    a, b, a2 = _model(0), _model(1), _model(2)
    evaluate.write_results({"cnn": a, "vit": b}, tmp_path)
    before = _snapshot(tmp_path)
    path = tmp_path / "results.json"
    with pytest.raises(
        ValueError, match=re.escape(f"{path} already holds results of model(s) ['cnn']")
    ):
        evaluate.write_results({"cnn": a2, "new": _model(3)}, tmp_path)
    assert _snapshot(tmp_path) == before  # nothing written
    merged = evaluate.write_results({"cnn": a2}, tmp_path, overwrite=True)
    back = evaluate.read_json(path)
    assert list(merged) == list(back) == ["cnn", "vit"]  # replaced in place, vit kept
    np.testing.assert_array_equal(back["cnn"].returns, a2.returns)
    np.testing.assert_array_equal(back["vit"].returns, b.returns)


@pytest.mark.parametrize(
    ("change", "shown"),
    [
        (dict(task="PickObject"), "task PickObject"),
        (dict(episodes=8), "8 episodes"),
        (dict(seed=5), "seed 5"),
        (dict(shifts=("id", "strong", "outer_positions")), "'outer_positions'"),
    ],
)
def test_write_results_refuses_earlier_results_of_other_settings(tmp_path, change, shown):
    evaluate.write_results({"cnn": _model(0)}, tmp_path)
    before = _snapshot(tmp_path)
    other = _model(1, **change)
    path = tmp_path / "results.json"
    with pytest.raises(ValueError, match="other settings") as err:
        evaluate.write_results({"other": other}, tmp_path)
    msg = str(err.value)
    assert str(path) in msg and shown in msg and "'cnn': task Reach" in msg
    assert "--overwrite" in msg
    assert _snapshot(tmp_path) == before
    merged = evaluate.write_results({"other": other}, tmp_path, overwrite=True)
    assert list(merged) == list(evaluate.read_json(path)) == ["cnn", "other"]
    md = (tmp_path / "results.md").read_text()
    if "task" in change:
        assert md.startswith("normalised on PickObject, Reach: ")
    if "episodes" in change:
        assert "4 or 8 episodes" in md
    if "shifts" in change:
        assert "-: the model was not evaluated on that shift" in md


def test_unreadable_or_foreign_results_are_never_replaced(tmp_path):
    path = tmp_path / "results.json"
    for text, match in (
        ('{"models": {"cnn": ', "invalid JSON"),  # truncated
        ('{"rows": []}', "expected a JSON object with a 'models' object"),
        ('{"models": {"cnn": {"task": "Reach"}}}', "model 'cnn' is not a Results record"),
    ):
        path.write_text(text)
        for overwrite in (False, True):
            with pytest.raises(ValueError, match=match) as err:
                evaluate.write_results({"vit": _model(1)}, tmp_path, overwrite=overwrite)
            assert str(path) in str(err.value)
            assert path.read_text() == text and sorted(tmp_path.iterdir()) == [path]
    # Table, data or chart without the JSON they were drawn from: replaced only with overwrite.
    path.unlink()
    (tmp_path / "results.md").write_text("someone's table")
    with pytest.raises(ValueError, match=r"holds \['results.md'\] but no results.json"):
        evaluate.write_results({"vit": _model(1)}, tmp_path)
    assert (tmp_path / "results.md").read_text() == "someone's table"
    evaluate.write_results({"vit": _model(1)}, tmp_path, overwrite=True)
    assert list(evaluate.read_json(path)) == ["vit"]


def test_interrupted_write_keeps_the_earlier_file(tmp_path, monkeypatch):
    evaluate.write_csv({"cnn": _model(0)}, tmp_path / "results.csv")
    before = _snapshot(tmp_path)
    calls = []

    def failing(x):
        calls.append(x)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return repr(float(x))

    monkeypatch.setattr(evaluate_results, "_csv", failing)
    with pytest.raises(KeyboardInterrupt):
        evaluate.write_csv({"vit": _model(1)}, tmp_path / "results.csv")
    assert _snapshot(tmp_path) == before  # no truncated csv, no temporary file left


@pytest.fixture(scope="module")
def example():
    return load_example("evaluate", "evaluate_example")


def test_example_checks_the_merge_before_evaluating(example, tmp_path):
    """``examples/evaluate.py`` into an ``--out`` with another run's results: the same model name
    or another task stop it before any run is loaded, and nothing in ``--out`` changes."""
    out = tmp_path / "evaluation"
    evaluate.write_json({"cnn": _model(0)}, out / "results.json")
    before = _snapshot(out)
    reach, pick = tmp_path / "cnn", tmp_path / "pick"
    Experiment.of(task="Reach", logdir=str(reach)).save(reach)  # no checkpoints: loading would fail
    Experiment.of(task="PickObject", logdir=str(pick)).save(pick)
    common = ["--out", str(out), "--episodes", "4", "--shifts", "id", "strong", "novel_objects"]
    with pytest.raises(ValueError, match=r"already holds results of model\(s\) \['cnn'\]"):
        example.main(["--runs", str(reach), *common])
    with pytest.raises(ValueError, match=r"'cnn': task Reach.*--overwrite"):
        example.main(["--runs", str(pick), *common])
    assert _snapshot(out) == before
    # --overwrite passes the checks: the run is loaded (and fails here: it has no checkpoint).
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        example.main(["--runs", str(reach), *common, "--overwrite"])
    assert _snapshot(out) == before


def test_study_lines_follow_the_reference_layout():
    res = _fake(task="Highway", shifts=("id", "hard_low_light", "novel_objects"))
    lines = evaluate.study_lines({"CNN": res}).splitlines()
    assert len(lines) == 2  # the shift that does not apply is left out
    mean = res.returns[:, 1].mean(1).mean()
    assert f"('carla', 'hard_low_light', 'CNN') seeds 3 mean {mean:.1f} eps/seed [4, 4, 4]" in lines
    assert lines[0].startswith("('carla', 'ID', 'CNN') seeds 3 mean ")
    assert evaluate.study_lines({"CNN": _fake()}).startswith("('pick_ycb', 'ID', 'CNN')")
    # the reference file's own lines parse the same way
    ref = pathlib.Path(__file__).resolve().parents[1] / "benchmarks/reference/study_seed_scores.txt"
    pattern = r"^\('(\w+)', '(\w+)', '(\w+)'\) seeds \d+ mean -?[\d.]+ eps/seed \[[\d, ]+\]$"
    for line in ref.read_text().splitlines()[:5] + lines:
        assert re.match(pattern, line), line


def test_driving_evaluates_its_own_shifts_by_default():
    assert evaluate.default_shifts("Highway") == ("id", "dense", "curvy", *shifts.STUDY_LIGHTING)
    assert evaluate.default_shifts("Reach") == evaluate.DEFAULT_SHIFTS
    assert evaluate.parse_shift("curvy+hard_low_light") == ("curvy", "hard_low_light")
