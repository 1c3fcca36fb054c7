"""What :class:`~pvm_mbrl.dreamer.agent.Dreamer` reads: the layout of training batches
(:data:`BATCH_FLAGS`, the replay-context latents :data:`LATENT_KEYS`) and, in the mixin
:class:`InputLayout`, their shapes (``batch_spec``, ``latent_spec``) and the trace-time checks
of policy observations, carries and training batches."""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

BATCH_FLAGS = ("reward", "is_first", "is_last", "is_terminal")
LATENT_KEYS = ("deter", "stoch")  # what replay context stores per step


def check_batch_size(batch) -> None:
    """Raises unless ``batch`` (a number of envs) is an integer >= 1."""
    if isinstance(batch, bool | np.bool_) or not isinstance(batch, int | np.integer):
        raise ValueError(f"batch must be an integer >= 1, got {batch!r}")
    if batch < 1:
        raise ValueError(f"batch must be an integer >= 1, got {batch}")


class InputLayout:
    """Input shapes and checks of :class:`~pvm_mbrl.dreamer.agent.Dreamer` (a mixin: it reads the
    agent's ``config``, ``obs_space``, ``obs_keys``, ``action_size``, ``cache_key``,
    ``cache_shape`` and ``_carry_shapes``)."""

    def batch_spec(self, batch: int, length: int) -> dict[str, jax.ShapeDtypeStruct]:
        """Shapes and dtypes of a training batch of ``batch`` sequences that train on ``length``
        steps: ``replay_context + length`` steps of the observation keys, ``action``, ``reward``,
        the flags and, with replay context, the stored latents."""
        lead = (batch, self.config.replay_context + length)
        spec = {
            k: jax.ShapeDtypeStruct(lead + tuple(self.obs_space[k].shape), self.obs_space[k].dtype)
            for k in self.obs_keys
        }
        spec["action"] = jax.ShapeDtypeStruct((*lead, self.action_size), jnp.float32)
        spec["reward"] = jax.ShapeDtypeStruct(lead, jnp.float32)
        for flag in ("is_first", "is_last", "is_terminal"):
            spec[flag] = jax.ShapeDtypeStruct(lead, jnp.bool_)
        if self.config.replay_context:
            for k, v in self.latent_spec().items():
                spec[k] = jax.ShapeDtypeStruct(lead + v.shape, v.dtype)
        return spec

    def latent_spec(self) -> dict[str, jax.ShapeDtypeStruct]:
        """Per-step shapes of the latents replay stores for replay context."""
        c = self.config
        return {
            "deter": jax.ShapeDtypeStruct((c.deter,), jnp.float32),
            "stoch": jax.ShapeDtypeStruct((c.stoch, c.classes), jnp.float32),
        }

    # -- input checks (trace time) -----------------------------------------------------------

    @property
    def _input_keys(self) -> tuple[str, ...]:
        """Observation keys the networks read (the cache stands in for the image's encoding;
        the image itself is still read by the decoder in training)."""
        return self.obs_keys + ((self.cache_key,) if self.cache_key else ())

    def _check_obs(self, obs, batch_dims):
        for k in (*self._input_keys, "is_first"):
            if k not in obs:
                raise ValueError(f"obs must contain {k!r}; got keys {sorted(obs)}")
        lead = None
        for k in self.obs_keys:
            expected = tuple(self.obs_space[k].shape)
            shape = tuple(jnp.shape(obs[k]))
            if shape[batch_dims:] != expected or len(shape) != batch_dims + len(expected):
                raise ValueError(
                    f"obs[{k!r}] must have shape [{'B, T' if batch_dims == 2 else 'B'}, "
                    f"{', '.join(map(str, expected))}], got {shape}"
                )
            lead = lead or shape[:batch_dims]
        if self.cache_key:
            shape, want = tuple(jnp.shape(obs[self.cache_key])), (*lead, *self.cache_shape)
            if shape != want:
                raise ValueError(
                    f"obs[{self.cache_key!r}] must have shape {want} (agent.encode_cache of the "
                    f"images), got {shape}"
                )
        if tuple(jnp.shape(obs["is_first"])) != lead:
            raise ValueError(f"is_first must have shape {lead}, got {jnp.shape(obs['is_first'])}")

    def _check_carry(self, carry, lead):
        want = self._carry_shapes
        if not isinstance(carry, Mapping) or set(carry) != set(want):
            got = sorted(carry) if isinstance(carry, Mapping) else type(carry).__name__
            raise ValueError(f"carry must be agent.initial_carry(B) keys {sorted(want)}, got {got}")
        for k, w in want.items():
            shape, expected = tuple(jnp.shape(carry[k])), (*lead, *w)
            if shape != expected:
                raise ValueError(
                    f"carry[{k!r}] must have shape {expected} for an obs batch of {lead[0]}, got "
                    f"{shape} (carry batch {shape[0] if shape else None}); use "
                    f"agent.initial_carry({lead[0]})"
                )

    def _check_batch(self, batch):
        k = self.config.replay_context
        need = (*BATCH_FLAGS, "action") + (LATENT_KEYS if k else ())
        for name in need:
            if name not in batch:
                extra = (
                    f" (replay_context={k} needs the latents stored in replay: "
                    f"{', '.join(LATENT_KEYS)}; replay_context=0 trains without)"
                    if name in LATENT_KEYS
                    else ""
                )
                raise ValueError(
                    f"training batch must contain {name!r}{extra}; got keys {sorted(batch)}"
                )
        self._check_obs(batch, batch_dims=2)
        lead = tuple(jnp.shape(batch["is_first"]))
        if len(lead) != 2 or lead[1] <= k:
            raise ValueError(
                f"training batch must hold more than replay_context={k} steps, got shape {lead}"
            )
        for name, spec in (self.latent_spec() if k else {}).items():
            want = (*lead, *spec.shape)
            if tuple(jnp.shape(batch[name])) != want:
                raise ValueError(
                    f"batch[{name!r}] must have shape {want}, got {jnp.shape(batch[name])}"
                )
        expected = (*lead, self.action_size)
        if tuple(jnp.shape(batch["action"])) != expected:
            raise ValueError(
                f"batch['action'] must have shape {expected}, got {batch['action'].shape}"
            )
        for k in BATCH_FLAGS:
            if tuple(jnp.shape(batch[k])) != lead:
                raise ValueError(f"batch[{k!r}] must have shape {lead}, got {jnp.shape(batch[k])}")
