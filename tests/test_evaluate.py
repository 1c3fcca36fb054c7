"""Evaluation across shifts: the formulas, the task maximum, the batched rollout against
un-batched rollouts of the same envs and keys, the random floor and its cache, and the writers."""

import csv
import json
import math

import jax
import numpy as np
import pytest

from pvm_mbrl import envs, evaluate
from pvm_mbrl.dreamer import Dreamer, DreamerConfig

KW = dict(image_size=16, camera="front", episode_length=4, render_shadows=False)
SHIFTS = ("id", "strong", "outer_positions", "novel_objects")
EPISODES = 2
SEED = 3
TINY = dict(
    deter=32, hidden=8, stoch=4, classes=4, blocks=4, depth=2, mults=(1, 2), bspace=4, units=8,
    mlp_layers=1, bins=15, imag_horizon=3,
)  # fmt: skip


@pytest.fixture(scope="module")
def run():
    env = envs.make("Reach", num_envs=1, auto_reset=False, **KW)
    agent = Dreamer(DreamerConfig(**TINY), env.observation_space, env.action_space)
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
