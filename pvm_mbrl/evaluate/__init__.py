"""Zero-shot evaluation across shifts: returns, normalised returns, success, tables and a chart.

```python
from pvm_mbrl import evaluate

res = evaluate.evaluate(agent, states, "PickObject", env_kwargs, episodes=16)  # one state per seed
print(evaluate.markdown_table({"dinov2 partial": res}))  # models x shifts, "0.62 ± 0.04"
evaluate.write_results({"dinov2 partial": res}, "out")  # out/results.{json,csv,md,png}
```

Shift names: a visual preset (anything ``shifts.get`` knows: ``id``, ``texture``, ``weak``,
``strong``, ``fog@0.5``, ...), a task split (``novel_objects``, ``outer_positions``), or a split
and a preset joined by "+" (``outer_positions+strong``). Every name becomes ``episodes`` envs;
the names of one split share one batched env (``envs.with_shift``: env ``i`` renders preset
``i % n``), and the rollouts of all splits run in one ``lax.scan`` under one ``jit`` with the
policy in ``mode="eval"``. Each env plays exactly one episode (``auto_reset=False``) of the
env's episode length; per env we keep the return, ``success_once`` (solved at any step) and
``success_end`` (solved at the last step).

Conventions:
- A split the task does not have (``novel_objects`` on ``Reach``) is not applicable: its numbers
  are NaN, ``Results.notes`` says why, tables print "n/a". ``strict=True`` raises instead.
- Keys: the state of seed ``k`` is evaluated with key ``PRNGKey(seed + k)``; episode ``j`` of
  every shift resets from the same key and its policy draws from its own key stream, so shifts
  differ only in what they change, and an env's result does not depend on what else is batched.
- Random floor: a uniform random policy on the same episodes (same keys, same shifts), run by
  the same compiled rollout (a traced flag picks the actions). Shifts do not touch physics, so
  it is the same for every preset of a split. Cached per (task, env settings, shift, episodes,
  seed) in a ``floors`` dict and written to the output JSON (``load_floors`` reads it back).
- Normalised return ``(R - R_random) / (R_max - R_random)`` per seed, from the seed's mean
  return and floor; ``R_max`` is the task's declared maximum (:func:`max_return`).
- Mean and standard error over seeds (``std(ddof=1) / sqrt(n)``); with one seed the SE is NaN
  (undefined) and tables show the mean alone.
- Files: :func:`write_results` (and :func:`evaluate_runs`) merge into ``out/results.json`` by
  model name, keeping the models already there; a model evaluated again replaces its entry only
  with ``overwrite=True``. The package: :mod:`~pvm_mbrl.evaluate.targets` (what to
  evaluate), :mod:`~pvm_mbrl.evaluate.results` (the record, statistics, JSON/CSV, merging; its
  rules there), :mod:`~pvm_mbrl.evaluate.rollout` (the compiled rollout, :class:`Evaluator`),
  :mod:`~pvm_mbrl.evaluate.report` (table, chart, :func:`write_results`) and
  :mod:`~pvm_mbrl.evaluate.runs` (:func:`evaluate_runs`); each imports only those before it.
"""

from pvm_mbrl.evaluate.report import (
    bar_chart,
    caption,
    markdown_table,
    study_lines,
    write_results,
)
from pvm_mbrl.evaluate.results import (
    METRICS,
    RESULTS_FILES,
    Results,
    check_merge,
    floor_key,
    load_floors,
    merge_results,
    normalised_return,
    read_earlier,
    read_json,
    settings,
    summarise,
    write_csv,
    write_json,
)
from pvm_mbrl.evaluate.rollout import Evaluator, evaluate, make_rollout, random_floor
from pvm_mbrl.evaluate.runs import evaluate_runs
from pvm_mbrl.evaluate.targets import (
    DEFAULT_SHIFTS,
    DRIVING_SHIFTS,
    SPLIT_SHIFTS,
    default_shifts,
    max_return,
    parse_shift,
)

__all__ = [
    "DEFAULT_SHIFTS",
    "DRIVING_SHIFTS",
    "METRICS",
    "RESULTS_FILES",
    "SPLIT_SHIFTS",
    "Evaluator",
    "Results",
    "bar_chart",
    "caption",
    "check_merge",
    "default_shifts",
    "evaluate",
    "evaluate_runs",
    "floor_key",
    "load_floors",
    "make_rollout",
    "markdown_table",
    "max_return",
    "merge_results",
    "normalised_return",
    "parse_shift",
    "random_floor",
    "read_earlier",
    "read_json",
    "settings",
    "study_lines",
    "summarise",
    "write_csv",
    "write_json",
    "write_results",
]
