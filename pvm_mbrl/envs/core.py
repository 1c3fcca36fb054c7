"""Environment core: ``State``, ``Space`` and the abstract ``Env``.

An env is a Python object holding static things (MuJoCo model, render geometry, image size);
everything sampled per episode lives in the traced ``State``, so ``reset`` and ``step`` are pure
functions that compose with ``jax.jit``, ``vmap`` and ``lax.scan``.

``step`` is split in two so wrappers can skip work: ``advance`` runs physics, reward and
metrics (the observation is left stale) and ``observe`` fills ``state.obs`` (rendering pixels if
the env renders). ``step(state, action) == observe(advance(state, action))``.

Actions live in ``[-1, 1]^A``. Out-of-range values are clipped (documented in
``action_space``). A wrong shape or a non-float dtype raises ``ValueError`` at trace time.
Non-finite actions (NaN or inf) raise ``ValueError`` when the action is concrete (an eager call,
batched or not); inside ``jit`` use :func:`checked_step`, which checks with
``jax.experimental.checkify``.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.experimental import checkify


@struct.dataclass
class State:
    """One env's (or a batch's) state. ``data`` is the ``mjx.Data`` of the physics.

    ``obs``: ``pixels`` uint8 [H, W, 3] (when rendering), ``proprio`` float32 [P] and, when the
    observation mode includes it, ``state`` float32 [S]. ``metrics`` holds float scalars
    (``success`` among them); ``info`` holds per-episode traced task data (goal, object choice,
    scene params under ``"scene"``) and wrapper bookkeeping.
    """

    data: Any
    obs: dict[str, jax.Array]
    reward: jax.Array
    done: jax.Array
    metrics: dict[str, jax.Array] = struct.field(default_factory=dict)
    info: dict[str, Any] = struct.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Space:
    """A box space: ``shape``, ``dtype`` and elementwise bounds ``low``/``high``."""

    shape: tuple[int, ...]
    dtype: Any
    low: float | np.ndarray
    high: float | np.ndarray
    doc: str = ""

    def contains(self, x) -> bool:
        """Whether the (concrete) array ``x`` has this shape, dtype and lies in bounds."""
        x = np.asarray(x)
        return (
            x.shape == self.shape
            and x.dtype == np.dtype(self.dtype)
            and bool(np.all(x >= self.low) & np.all(x <= self.high))
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (bounds as numbers or nested lists, infinities as strings)."""
        return {
            "shape": list(self.shape),
            "dtype": np.dtype(self.dtype).name,
            "low": _json_bound(self.low),
            "high": _json_bound(self.high),
            "doc": self.doc,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Space:
        """The space :meth:`to_dict` wrote."""
        dtype = np.dtype(d["dtype"])
        low, high = _bound(d["low"], dtype), _bound(d["high"], dtype)
        return cls(tuple(d["shape"]), dtype, low, high, d.get("doc", ""))

    def sample(self, key: jax.Array) -> jax.Array:
        """Uniform sample (floats) or uniform integers (ints) within bounds."""
        if jnp.issubdtype(self.dtype, jnp.floating):
            return jax.random.uniform(key, self.shape, self.dtype, self.low, self.high)
        return jax.random.randint(key, self.shape, self.low, np.asarray(self.high) + 1, self.dtype)


def _json_bound(x):
    """A bound as JSON: a number or nested lists, non-finite values as "inf", "-inf", "nan"."""
    a = np.asarray(x, np.float64)
    flat = [float(v) if np.isfinite(v) else str(v) for v in a.ravel()]
    return flat[0] if a.ndim == 0 else np.array(flat, dtype=object).reshape(a.shape).tolist()


def _bound(x, dtype):
    """Inverse of :func:`_json_bound`, in ``dtype``'s kind: a Python number or an array."""
    a = np.asarray(x, dtype=object).astype(np.float64)
    if np.issubdtype(dtype, np.integer):
        a = a.astype(np.int64)
    return a.item() if a.ndim == 0 else a


def check_int(name: str, value, minimum: int = 1) -> int:
    """``value`` as an ``int`` if it is an integer (Python or numpy, not bool) ``>= minimum``;
    otherwise ``ValueError`` naming ``name`` and the value."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def check_finite_action(action, batched: bool = False) -> None:
    """Raise ``ValueError`` if the concrete ``action`` holds NaN or inf (naming the env index of
    the first bad row when ``batched``); tracers pass (see :func:`checked_step`)."""
    if isinstance(action, jax.core.Tracer):
        return
    a = np.asarray(action)
    finite = np.isfinite(a)
    if finite.all():
        return
    if batched and a.ndim >= 1:
        rows = np.flatnonzero(~finite.reshape(len(a), -1).all(axis=1))
        raise ValueError(
            f"action must be finite (no NaN or inf); env {rows[0]} of {len(a)} has {a[rows[0]]}"
            + (f" (non-finite in envs {rows.tolist()})" if len(rows) > 1 else "")
        )
    raise ValueError(f"action must be finite (no NaN or inf), got {a}")


def validate_action(action, shape: tuple[int, ...]) -> jax.Array:
    """Check ``action`` against ``shape`` (trace time) and for NaN/inf (when concrete); clip to
    [-1, 1]."""
    a_shape = tuple(np.shape(action))
    if a_shape != tuple(shape):
        raise ValueError(f"action must have shape {tuple(shape)}, got {a_shape}")
    dtype = action.dtype if hasattr(action, "dtype") else np.asarray(action).dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"action must be a float array of shape {tuple(shape)}, got dtype {dtype}")
    check_finite_action(action)
    return jnp.clip(jnp.asarray(action, jnp.float32), -1.0, 1.0)


class Env(abc.ABC):
    """Abstract environment. Subclasses implement ``reset``, ``advance`` and ``observe``."""

    @abc.abstractmethod
    def reset(self, key: jax.Array) -> State:
        """Initial state of a new episode sampled from ``key``."""

    @abc.abstractmethod
    def advance(self, state: State, action: jax.Array) -> State:
        """Physics, reward, done and metrics for one step; ``state.obs`` is left stale."""

    @abc.abstractmethod
    def observe(self, state: State) -> State:
        """Fill ``state.obs`` from ``state.data`` and ``state.info``."""

    def step(self, state: State, action: jax.Array) -> State:
        """One control step: ``observe(advance(state, action))``."""
        return self.observe(self.advance(state, action))

    @property
    @abc.abstractmethod
    def observation_space(self) -> dict[str, Space]:
        """Observation spaces keyed like ``State.obs``."""

    @property
    @abc.abstractmethod
    def action_space(self) -> Space:
        """Action space (float32, [-1, 1]; out-of-range actions are clipped)."""

    @property
    def episode_length(self) -> int:
        """Steps per episode (set by the task or the ``TimeLimit`` wrapper)."""
        return self._episode_length

    @property
    def episode_counts_frames(self) -> bool:
        """Whether ``episode_length`` counts control steps (frames) that ``envs.make`` divides
        by the action repeat (the ``dmc/`` tasks), rather than agent steps."""
        return False

    @property
    def max_step_reward(self) -> float:
        """Upper bound of one step's reward."""
        return 1.0

    @property
    def max_episode_return(self) -> float:
        """Declared task maximum of an episode's return, used to normalise returns."""
        return float(self.max_step_reward * self.episode_length)

    @property
    def mj_model(self):
        """The ``mujoco.MjModel`` (static)."""
        return self._mj_model

    @property
    def mjx_model(self):
        """The ``mjx.Model`` placed on the device (static)."""
        return self._mjx_model

    @property
    def unwrapped(self) -> Env:
        return self

    def env_params(self, num_envs: int):
        """Per-env data that ``BatchEnv`` hands env ``i`` of ``num_envs`` at reset (a pytree with
        a leading ``num_envs`` axis), or None when every env of a batch is the same. An env
        keeps in its state what it needs of its row after the reset."""
        del num_envs
        return None

    def with_env_params(self, params) -> Env:
        """A copy of this env that resets with ``params``, one env's row of
        :meth:`env_params` (traced inside ``BatchEnv``'s vmap). The env itself is unchanged."""
        raise TypeError(f"{type(self).__name__} takes no per-env parameters")


def checked_step(env: Env):
    """``step`` with ``checkify`` checks that work inside ``jit``, for single and batched envs.

    Returns ``f(state, action) -> (error, state)``; call ``error.throw()`` to raise::

        err, state = jax.jit(checked_step(env))(state, action)
        err.throw()

    Checks that the action is finite (no NaN or inf) and that the returned state's physics and
    ``reward`` are finite: ``qpos`` and ``qvel`` of MuJoCo data, every float array of any other
    physics state (the Highway's vehicles). On a batched env the error names the first env at
    fault. The checks see only the step's inputs and outputs, never its (vmapped) physics
    loops. Under ``AutoReset`` an env whose physics blew up is already a new episode, so only a
    non-finite reward can show it.
    """
    act_dims = len(env.action_space.shape)

    def checks(action, physics, reward):
        n = int(np.prod(action.shape[: action.ndim - act_dims], dtype=int))
        batched = action.ndim > act_dims
        named = [(action, "action (NaN or inf)")]
        named += [(x, f"{name} after the step") for name, x in physics.items()]
        named += [(reward, "reward")]
        for x, what in named:
            ok = jnp.isfinite(x).reshape(n, -1).all(axis=1)
            if batched:
                checkify.check(ok.all(), f"non-finite {what} in env {{}}", jnp.argmin(ok))
            else:
                checkify.check(ok[0], f"non-finite {what}")

    checked = checkify.checkify(checks)

    def step(state, action):
        out = env.step(state, action)
        err, _ = checked(jnp.asarray(action), _physics(out.data), out.reward)
        return err, out

    return step


def _physics(data) -> dict[str, jax.Array]:
    """What :func:`checked_step` checks of a state's physics, by name."""
    if hasattr(data, "qpos") and hasattr(data, "qvel"):
        return {"qpos": data.qpos, "qvel": data.qvel}
    leaves = jax.tree_util.tree_flatten_with_path(data)[0]
    return {
        jax.tree_util.keystr(path): x
        for path, x in leaves
        if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)
    }
