"""Task registry and ``make``: name -> fully wrapped env."""

from __future__ import annotations

from collections.abc import Callable

from pvm_mbrl.envs import core, dmc, wrappers
from pvm_mbrl.envs.driving.highway import Highway
from pvm_mbrl.envs.manipulation import PickCube, PickObject, Push, Reach
from pvm_mbrl.envs.rendered import with_shift

_REGISTRY: dict[str, Callable[..., core.Env]] = {}


def register(name: str, factory: Callable[..., core.Env]) -> None:
    """Register ``factory(**task_kwargs) -> Env`` under ``name`` (replacing an earlier one)."""
    _REGISTRY[name] = factory


def registered() -> tuple[str, ...]:
    """Names of the registered tasks, sorted."""
    return tuple(sorted(_REGISTRY))


def make(
    name: str,
    *,
    image_size: int = 64,
    camera: str | int | None = None,
    obs_mode: str = "pixels",
    split: str = "train",
    action_repeat: int = 1,
    episode_length: int | None = None,
    render_shadows: bool = True,
    render: bool | None = None,
    num_envs: int | None = None,
    auto_reset: bool = True,
    shift=None,
    **task_kwargs,
) -> core.Env:
    """Build task ``name`` wrapped as ``AutoReset(BatchEnv(TimeLimit(ActionRepeat(task))))``.

    ``episode_length`` counts agent steps (after action repeat). Its default (``None``) is the
    task's: for a manipulation task that many agent steps, for a ``dmc/`` task 1,000 frames
    (control steps) divided by the action repeat, as the suite's benchmarks count them.
    Integer arguments must be integers (``int`` or numpy), never bools, floats or strings.
    ``camera=None`` is the task's ``default_camera``: ``"front"`` for Reach, ``"wrist"`` for the
    other table-top tasks, camera 0 for ``dmc/``, ``"front"`` for Highway.
    ``num_envs=None`` leaves out ``BatchEnv``; ``auto_reset=False`` leaves out ``AutoReset``
    (the trainer and the evaluation leave it out themselves: they reset ended episodes after
    reading their last step).
    ``render=False`` (only with ``obs_mode="state"``) skips the renderer for physics speed.
    ``shift`` renders under a visual shift preset, or one preset per env (``envs.with_shift``);
    ``None`` and ``"id"`` both mean the default look.
    Other keyword arguments go to the task (e.g. ``substeps``, ``impl``).
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown env {name!r}; registered: {', '.join(registered())}")
    action_repeat = core.check_int("action_repeat", action_repeat)
    if episode_length is not None:
        episode_length = core.check_int("episode_length", episode_length)
    if num_envs is not None:
        num_envs = core.check_int("num_envs", num_envs)
    env = _REGISTRY[name](
        image_size=image_size,
        **({} if camera is None else {"camera": camera}),
        obs_mode=obs_mode,
        split=split,
        render=render,
        render_shadows=render_shadows,
        **task_kwargs,
    )
    length = episode_length
    if length is None:
        length = env.episode_length
        if env.episode_counts_frames:
            length = -(-length // action_repeat)
    env = wrappers.ActionRepeat(env, action_repeat)
    env = wrappers.TimeLimit(env, length)
    if num_envs is not None:
        env = wrappers.BatchEnv(env, num_envs)
    if auto_reset:
        env = wrappers.AutoReset(env)
    if shift is not None:
        env = with_shift(env, shift)
    return env


def _register_builtin() -> None:
    for cls in (Reach, Push, PickCube, PickObject):
        register(cls.__name__, cls)
    for task in dmc.TASKS:
        register(f"dmc/{task}", dmc.factory(task))
    register("Highway", Highway)


_register_builtin()
