"""DreamerV3's actor-critic: imagination rollouts and the policy, value and replayed value losses.

Formulas (official ``agent.py``, ``imag_loss`` / ``repl_loss``, with ``contdisc=True``,
``slowtar=False``): the continue head is trained on ``(1 - terminal) * discount``, so imagined
returns use its probability ``c`` directly with discount 1.

* ``R = lambda_returns(r[1:], v[:-1], c[1:], v[H], 1, lam)`` over the ``H + 1`` imagined states,
  with ``v`` the critic's mean and ``r`` the reward head's mean;
* ``w = cumprod(c)`` (no gradient) weighs every step;
* actor: ``-w * (log pi(a) * sg(adv) + actent * H[pi])`` with ``adv = (R - v) / S`` and ``S`` the
  percentile scale (:class:`~pvm_mbrl.dreamer.returns.PercentileNormalizer`);
* critic: ``w * (-log p(sg(R)) - slowreg * log p(sg(v_slow)))`` (two-hot cross-entropies; the
  slow critic is an EMA of the critic's weights);
* replayed value loss: the same critic loss on the replayed posterior states with lambda returns
  of the replayed rewards, bootstrapped by the imagined returns ``R_0`` of each state and cut at
  episode ends (``lam * (1 - is_last)``), weighted by ``1 - is_last``.

Imagination runs on stop-gradient parameters: no loss here trains the world model through the
imagined states, as in DreamerV3 (REINFORCE gradients for every action type).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from pvm_mbrl.dreamer.returns import PercentileNormalizer, lambda_returns

_sg = jax.lax.stop_gradient


def imagine(nets, starts: dict[str, jax.Array], horizon: int, key: jax.Array):
    """Roll the prior ``horizon`` steps under the actor from ``starts`` (leaves ``[N, ...]``).

    Returns ``states`` with leaves ``[H + 1, N, ...]`` (the start first) and ``actions``
    ``[H + 1, N, A]``, where ``actions[t]`` is sampled from the actor at ``states[t]``.
    """
    rssm, actor = nets.rssm, nets.actor

    def act(state, k):
        return _sg(actor(_sg(rssm.features(state))).sample(k))

    def step(state, k):
        k_act, k_img = jax.random.split(k)
        action = act(state, k_act)
        nxt, _ = rssm.img_step(state, action, k_img)
        return nxt, (state, action)

    keys = jax.random.split(key, horizon + 1)
    last, (states, actions) = jax.lax.scan(step, starts, keys[:-1])
    last_action = act(last, keys[-1])
    states = jax.tree.map(lambda xs, x: jnp.concatenate([xs, x[None]], 0), states, last)
    actions = jnp.concatenate([actions, last_action[None]], 0)
    return states, actions


def imagination_loss(
    nets,
    nets_sg,
    slow_critic,
    retnorm: PercentileNormalizer,
    states: dict[str, jax.Array],
    actions: jax.Array,
    config,
):
    """Actor and critic losses on an imagined rollout (time-major ``[H + 1, N]``).

    ``nets`` carries the trainable parameters (actor, critic), ``nets_sg`` the same with stopped
    gradients (reward and continue heads), ``slow_critic`` the EMA critic. Returns
    ``(losses {policy, value: [N]}, new retnorm, returns [H, N], metrics)``.
    """
    feat = _sg(nets_sg.rssm.features(states))
    reward = nets_sg.reward(feat).mean()
    cont = jax.nn.sigmoid(nets_sg.cont(feat))
    value_dist = nets.critic(feat)
    value = _sg(value_dist.mean())
    slow_value = _sg(slow_critic(feat).mean())

    weight = _sg(jnp.cumprod(cont, 0))
    ret = lambda_returns(reward[1:], value[:-1], cont[1:], value[-1], 1.0, config.lam)
    retnorm = retnorm.update(ret)
    adv = (ret - value[:-1]) / retnorm.scale

    policy = nets.actor(feat)
    logpi = policy.log_prob(_sg(actions))[:-1]
    ent = policy.entropy()[:-1]
    policy_loss = weight[:-1] * -(logpi * _sg(adv) + config.actent * ent)

    value_nll = -value_dist.log_prob(jnp.concatenate([_sg(ret), jnp.zeros_like(ret[:1])], 0))
    slow_nll = -value_dist.log_prob(slow_value)
    critic_loss = (weight * (value_nll + config.slowreg * slow_nll))[:-1]

    metrics = {
        "imag/return": ret.mean(),
        "imag/value": value.mean(),
        "imag/slow_value": slow_value.mean(),
        "imag/reward": reward.mean(),
        "imag/cont": cont.mean(),
        "imag/weight": weight.mean(),
        "imag/adv_mag": jnp.abs(adv).mean(),
        "imag/return_scale": retnorm.scale,
        "actor/entropy": ent.mean(),
    }
    losses = {"policy": policy_loss.mean(0), "value": critic_loss.mean(0)}
    return losses, retnorm, ret, metrics


def replay_value_loss(critic, slow_critic, feat, batch, boot, config) -> jax.Array:
    """DreamerV3's replayed value loss on posterior features ``feat`` ``[B, K, F]``.

    ``batch`` holds ``reward``, ``is_last``, ``is_terminal`` ``[B, K]``; ``boot`` ``[B, K]`` is
    the imagined lambda return from each state. Returns the loss ``[B, K - 1]``.
    """
    tm = lambda x: jnp.swapaxes(x, 0, 1)  # noqa: E731
    reward, last, term = (
        tm(batch[k].astype(jnp.float32)) for k in ("reward", "is_last", "is_terminal")
    )
    boot = tm(boot)
    ret = lambda_returns(
        reward[1:],
        boot[:-1],
        1.0 - term[1:],
        boot[-1],
        config.discount,
        config.lam * (1.0 - last[1:]),
    )
    value_dist = critic(feat)
    slow_value = _sg(slow_critic(feat).mean())
    ret = tm(_sg(ret))  # [B, K - 1]
    nll = -value_dist.log_prob(jnp.concatenate([ret, jnp.zeros_like(ret[:, :1])], 1))
    slow_nll = -value_dist.log_prob(slow_value)
    weight = 1.0 - batch["is_last"].astype(jnp.float32)
    return (weight * (nll + config.slowreg * slow_nll))[:, :-1]
