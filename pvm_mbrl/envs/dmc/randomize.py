"""The suite's initial-state randomisers, jittable: random joint angles and rejection of
configurations in contact (both written from the suite's definitions)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from pvm_mbrl.envs.mjx import mjx


def random_joint_qpos(m: mujoco.MjModel, key, unlimited_hinges: bool = True) -> jax.Array:
    """``qpos0`` with every limited hinge or slide joint uniform over its range and (when
    ``unlimited_hinges``) every unlimited hinge uniform in [-pi, pi]; unlimited slides keep
    their ``qpos0``. The suite's joint randomizer for models with only hinge and slide joints."""
    hinge, slide = mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE
    if not np.isin(m.jnt_type, (hinge, slide)).all():
        kinds = sorted({mujoco.mjtJoint(t).name for t in m.jnt_type})
        raise ValueError(f"random_joint_qpos expects hinge and slide joints only, got {kinds}")
    limited = m.jnt_limited.astype(bool)
    drawn = limited | ((m.jnt_type == hinge) & unlimited_hinges)
    low = np.where(limited, m.jnt_range[:, 0], -np.pi)
    high = np.where(limited, m.jnt_range[:, 1], np.pi)
    u = jax.random.uniform(key, (m.njnt,), minval=low, maxval=high)
    qpos0 = jnp.asarray(m.qpos0, jnp.float32)
    adr = m.jnt_qposadr
    return qpos0.at[adr].set(jnp.where(drawn, u, qpos0[adr]))


def in_contact(model, qpos: jax.Array) -> jax.Array:
    """Whether any two geoms touch in configuration ``qpos`` (C MuJoCo's ``ncon > 0`` after
    ``mj_forward``; checked against it in the tests of the tasks that use it)."""
    data = mjx.kinematics(model, mjx.make_data(model).replace(qpos=qpos))
    # mujoco-mjx 3.17 keeps the contact candidates in ``_impl`` (``Data.contact`` is deprecated).
    return jnp.any(mjx.collision(model, data)._impl.contact.dist < 0.0)


def reject_contacts(model, key, draw, max_draws: int | None = None) -> jax.Array:
    """``draw(key) -> qpos`` repeated with fresh keys while the configuration is in contact
    (at most ``max_draws`` draws when given, keeping the last, as the suite does)."""
    limit = jnp.inf if max_draws is None else max_draws

    def again(carry):
        _, qpos, n = carry
        return (n < limit) & in_contact(model, qpos)

    def redraw(carry):
        key, _, n = carry
        key, sub = jax.random.split(key)
        return key, draw(sub), n + 1

    key, sub = jax.random.split(key)
    _, qpos, _ = jax.lax.while_loop(again, redraw, (key, draw(sub), 1))
    return qpos
