"""DreamerV3's training loss on a replayed batch (world model, actor and critic in imagination,
replay value), in the mixin :class:`DreamerLoss` of :class:`~pvm_mbrl.dreamer.agent.Dreamer`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from pvm_mbrl.dreamer import actor_critic
from pvm_mbrl.dreamer.decoder import ImageDecoder, VectorDecoder
from pvm_mbrl.dreamer.heads import BinaryHead
from pvm_mbrl.dreamer.inputs import BATCH_FLAGS, LATENT_KEYS
from pvm_mbrl.nn import kl_free_bits

_sg = jax.lax.stop_gradient


class DreamerLoss:
    """:meth:`loss` of :class:`~pvm_mbrl.dreamer.agent.Dreamer` (a mixin: it reads the agent's
    ``config``, ``nets``, ``critic_graphdef``, ``action_size`` and ``_input_keys``)."""

    def loss(self, params, slow_params, retnorm, batch, key):
        """Total scaled loss and ``(new retnorm, metrics, posterior latents)``; differentiable
        in ``params``."""
        c = self.config
        nets = self.nets(params)
        trainable, rest = nnx.split_state(params, nnx.Param, ...)
        nets_sg = self.nets(nnx.merge_state(_sg(trainable), rest))
        slow_critic = nnx.merge(self.critic_graphdef, _sg(slow_params))
        k_obs, k_img = jax.random.split(key)
        init, first_action, batch = self._split_context(batch)
        is_first = batch["is_first"].astype(bool)
        if not c.replay_context:
            is_first = is_first.at[:, 0].set(True)
        action = batch["action"].astype(jnp.float32)
        bsz, tlen = is_first.shape
        prev_action = jnp.concatenate([first_action[:, None], action[:, :-1]], 1)

        # World model.
        embed = nets.embed({k: batch[k] for k in self._input_keys})
        _, post, post_logits = nets.rssm.observe(init, prev_action, embed, is_first, k_obs)
        prior_logits = nets.rssm.prior_logits(post["deter"])
        dyn, rep = kl_free_bits(post_logits, prior_logits, c.free_nats, c.unimix)
        feat = nets.rssm.features(post)
        losses = {"dyn": dyn, "rep": rep}
        rec = jnp.zeros((bsz, tlen), jnp.float32)
        if nets.images:
            (key_img,) = nets.images
            pred = nets.image_decoder(post["deter"], post["stoch"])
            rec = rec + ImageDecoder.loss(pred, batch[key_img])
        if nets.vectors:
            preds = nets.vector_decoder(feat)
            for k, p in preds.items():
                rec = rec + VectorDecoder.loss(p, batch[k])
        losses["rec"] = rec
        losses["rew"] = -nets.reward(feat).log_prob(batch["reward"].astype(jnp.float32))
        cont_target = (1.0 - batch["is_terminal"].astype(jnp.float32)) * c.discount
        losses["con"] = BinaryHead.loss(nets.cont(feat), cont_target)

        # Actor-critic in imagination from (the last imag_last) posterior states.
        k = min(c.imag_last or tlen, tlen)
        starts = jax.tree.map(lambda x: _sg(x[:, -k:]).reshape(bsz * k, *x.shape[2:]), post)
        states, actions = actor_critic.imagine(nets_sg, starts, c.imag_horizon, k_img)
        ac_losses, retnorm, ret, ac_metrics = actor_critic.imagination_loss(
            nets, nets_sg, slow_critic, retnorm, states, actions, c
        )
        losses.update({n: v.reshape(bsz, k) for n, v in ac_losses.items()})
        if c.repval:
            tail = {n: batch[n][:, -k:] for n in BATCH_FLAGS}
            boot = _sg(ret[0]).reshape(bsz, k)
            losses["repval"] = actor_critic.replay_value_loss(
                nets.critic, slow_critic, feat[:, -k:], tail, boot, c
            )

        total = sum(c.loss_scales[n] * v.mean() for n, v in losses.items())
        post_dist, prior_dist = nets.rssm.dist(post_logits), nets.rssm.dist(prior_logits)
        metrics = {f"loss/{n}": v.mean() for n, v in losses.items()}
        metrics.update(ac_metrics)
        metrics["loss/total"] = total
        metrics["wm/kl"] = post_dist.kl(prior_dist).sum(-1).mean()
        metrics["wm/post_entropy"] = post_dist.entropy().sum(-1).mean()
        metrics["wm/prior_entropy"] = prior_dist.entropy().sum(-1).mean()
        latents = {k: _sg(post[k]) for k in LATENT_KEYS}
        return total, (retnorm, metrics, latents)

    def _split_context(self, batch):
        """``(start latent, action before step 0, the trained steps)`` of a batch: with replay
        context ``K`` the latent stored at step ``K - 1``, the action taken there and steps
        ``K..``; without, the initial state, a zero action and the whole batch."""
        k = self.config.replay_context
        if not k:
            bsz = batch["is_first"].shape[0]
            init = {"deter": jnp.zeros((bsz, self.config.deter), jnp.float32)}
            init["stoch"] = jnp.zeros((bsz, self.config.stoch, self.config.classes), jnp.float32)
            return init, jnp.zeros((bsz, self.action_size), jnp.float32), batch
        init = {n: _sg(batch[n][:, k - 1].astype(jnp.float32)) for n in LATENT_KEYS}
        first_action = batch["action"][:, k - 1].astype(jnp.float32)
        rest = {n: v[:, k:] for n, v in batch.items() if n not in LATENT_KEYS}
        return init, first_action, rest
