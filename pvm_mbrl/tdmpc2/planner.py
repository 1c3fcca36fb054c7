"""TD-MPC2's planner: MPPI in the latent space, warm-started and seeded with policy samples.

For one latent state ``z`` (vmap for a batch of envs), :func:`plan` runs ``iterations`` rounds:
``num_samples`` action sequences of length ``horizon`` (``num_pi_trajs`` of them rolled out by
the policy prior, drawn once, the rest from ``N(mean, std)`` clipped to [-1, 1]) are scored by
the model's return estimate :func:`trajectory_value` (discounted predicted rewards plus the
discounted value ``Q(z_H, pi(z_H))``, the mean of two random ensemble members); the
``num_elites`` best set the new mean and standard deviation as a softmax over their scores
(temperature ``temperature``; std clipped to ``[min_std, max_std]``). The action is the first
step of an elite drawn in proportion to its weight, plus ``std[0]`` Gaussian noise when
exploring. The mean starts from the last plan shifted by one step (zero after a reset) and the
std at ``max_std``. Everything is pure and static-shaped, so planning compiles into the env loop.

``model`` is any object with ``next(z, a)``, ``reward(z, a)`` (scalars), ``policy(z, key)``
(actions), ``value(z, a, key)`` (scalars) and, with ``episodic``, ``terminal(z)`` (probability):
the agent passes its world model, the tests a known system.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pvm_mbrl.tdmpc2.config import TDMPC2Config


def trajectory_value(model, c, z, actions, key, discount):
    """Return estimates ``[N]`` of action sequences ``[H, N, A]`` from latents ``z`` ``[N, L]``."""
    k_pi, k_q = jax.random.split(key)
    ret = jnp.zeros(z.shape[:-1])
    weight = jnp.ones(z.shape[:-1])  # discount^t, times 0 after a predicted termination
    for t in range(actions.shape[0]):
        ret = ret + weight * model.reward(z, actions[t])
        z = model.next(z, actions[t])
        weight = weight * discount
        if c.episodic:
            weight = weight * (model.terminal(z) <= 0.5)
    return ret + weight * model.value(z, model.policy(z, k_pi), k_q)


def policy_rollout(model, z, horizon, count, key):
    """``count`` action sequences ``[horizon, count, A]`` of the policy prior from ``z``."""
    zs = jnp.broadcast_to(z, (count, z.shape[-1]))

    def step(zz, k):
        a = model.policy(zz, k)
        return model.next(zz, a), a

    _, actions = jax.lax.scan(step, zs, jax.random.split(key, horizon))
    return actions


def warm_start(prev_mean, first):
    """The first mean of a plan: the last plan shifted by one step (its last step 0), or all
    zeros on an episode's first step."""
    shifted = jnp.concatenate([prev_mean[1:], jnp.zeros_like(prev_mean[:1])], 0)
    return jnp.where(first, jnp.zeros_like(prev_mean), shifted)


def plan(model, c: TDMPC2Config, z, prev_mean, first, key, explore: bool, discount: float):
    """One MPPI plan from latent ``z`` ``[L]``; ``prev_mean`` ``[H, A]`` is the last plan's mean
    and ``first`` whether this is an episode's first step. Returns ``(action [A], mean [H, A])``.
    """
    horizon, adim = prev_mean.shape
    k_pi, k_iter, k_pick, k_noise = jax.random.split(key, 4)
    p, n = c.num_pi_trajs, c.num_samples
    pi_actions = policy_rollout(model, z, horizon, p, k_pi) if p else None
    mean = warm_start(prev_mean, first)
    std = jnp.full_like(prev_mean, c.max_std)
    zs = jnp.broadcast_to(z, (n, z.shape[-1]))

    def iteration(carry, k):
        mean, std = carry
        k_sample, k_value = jax.random.split(k)
        noise = jax.random.normal(k_sample, (horizon, n - p, adim))
        actions = jnp.clip(mean[:, None] + std[:, None] * noise, -1.0, 1.0)
        if p:
            actions = jnp.concatenate([pi_actions, actions], 1)
        value = jnp.nan_to_num(trajectory_value(model, c, zs, actions, k_value, discount), nan=0.0)
        elite_value, idx = jax.lax.top_k(value, c.num_elites)
        elites = actions[:, idx]  # [H, E, A]
        score = jnp.exp(c.temperature * (elite_value - elite_value.max()))
        score = score / score.sum()
        w = score[None, :, None]
        mean = jnp.sum(w * elites, 1) / (score.sum() + 1e-9)
        std = jnp.sqrt(jnp.sum(w * (elites - mean[:, None]) ** 2, 1) / (score.sum() + 1e-9))
        return (mean, jnp.clip(std, c.min_std, c.max_std)), (score, elites)

    (mean, std), (scores, elites) = jax.lax.scan(
        iteration, (mean, std), jax.random.split(k_iter, c.iterations)
    )
    pick = jax.random.categorical(k_pick, jnp.log(scores[-1]))
    action = elites[-1][0, pick]
    if explore:
        action = action + std[0] * jax.random.normal(k_noise, (adim,))
    return jnp.clip(action, -1.0, 1.0), mean
