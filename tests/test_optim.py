"""DreamerV3's optimiser chain against a direct float64 numpy implementation of its formulas."""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from pvm_mbrl.dreamer.optim import (
    ADAM_V1_ACTOR_CRITIC,
    ADAM_V1_WORLD_MODEL,
    OptimizerConfig,
    clip_by_agc,
    kernel_mask,
    make_optimizer,
    make_schedule,
)

PMIN = 1e-3
SHAPES = {"dense": {"kernel": (4, 3), "bias": (3,)}, "conv": {"kernel": (3, 3, 2, 4)}}


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _params(rng, scale):
    params = {k: {n: scale * rng.normal(size=s) for n, s in v.items()} for k, v in SHAPES.items()}
    params["tiny"] = {"scale": np.full(5, 1e-6)}  # ||p|| far below pmin
    return jax.tree.map(lambda x: x.astype(np.float32), params)


def ref_lr(step, c):
    """The learning rate of update ``step`` (0-based), written out."""
    if step < c.warmup:
        return c.lr * step / c.warmup
    frac = 1.0 if c.schedule == "const" else min((step - c.warmup) / (c.anneal - c.warmup), 1.0)
    if c.schedule == "linear":
        return c.lr + (0.1 * c.lr - c.lr) * frac
    if c.schedule == "cosine":
        return c.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
    return c.lr


@jax.jit
def _debias(beta, t):
    return 1 - beta**t


def debias(beta, t):
    """``1 - beta^t`` as the jitted chain computes it (in float32, as optax and the official code
    do). For beta2 = 0.999 its float32 rounding is ~2e-5 relative, above the test tolerance."""
    return float(_debias(jnp.float32(beta), jnp.int32(t)))


def ref_dreamerv3(params, grads_seq, c):
    """Per-step updates and AGC factors of the official chain, in float64 numpy."""
    flat_p, treedef = jax.tree.flatten(params)
    kernel = jax.tree.leaves(kernel_mask(params))
    p = [np.asarray(x, np.float64) for x in flat_p]
    nu = [np.zeros_like(x) for x in p]
    mu = [np.zeros_like(x) for x in p]
    updates, factors = [], []
    for t, grads in enumerate(grads_seq, start=1):
        out, fac = [], []
        for i, g in enumerate(jax.tree.leaves(grads)):
            g = np.asarray(g, np.float64)
            upper = c.agc * max(PMIN, np.linalg.norm(p[i].ravel()))
            f = 1 / max(1.0, np.linalg.norm(g.ravel()) / upper)
            g = g * f
            nu[i] = c.beta2 * nu[i] + (1 - c.beta2) * g**2
            u = g / (np.sqrt(nu[i] / debias(c.beta2, t)) + c.eps)
            if c.momentum:
                mu[i] = c.beta1 * mu[i] + (1 - c.beta1) * u
                u = mu[i] / debias(c.beta1, t)
            if c.wd and kernel[i]:
                u = u + c.wd * p[i]
            u = -ref_lr(t - 1, c) * u
            p[i] = p[i] + u
            out.append(u)
            fac.append(f)
        updates.append(jax.tree.unflatten(treedef, out))
        factors.append(fac)
    return updates, np.array(factors)


def _run(tx, params, grads_seq):
    state = tx.init(params)
    step = jax.jit(tx.update)
    updates = []
    for grads in grads_seq:
        u, state = step(grads, state, params)
        params = optax.apply_updates(params, u)
        updates.append(u)
    return updates


CONFIGS = {
    "default-warmup": OptimizerConfig(lr=1e-5, warmup=3),
    "wd-nomomentum-linear": OptimizerConfig(
        lr=1e-5, momentum=False, wd=0.1, warmup=2, schedule="linear", anneal=5
    ),
    "cosine-bigeps": OptimizerConfig(lr=1e-5, eps=1e-3, warmup=0, schedule="cosine", anneal=4),
}


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("clipping", [True, False])
def test_dreamerv3_chain_matches_formulas(rng, name, clipping):
    c = CONFIGS[name]
    # Clipping: small params, big grads. No clipping: big params, small grads. The `tiny` leaf
    # (norm < pmin) has its bound at agc * pmin and clips in both.
    params = _params(rng, 0.01 if clipping else 10.0)
    scale = 1.0 if clipping else 1e-3
    grads_seq = [
        jax.tree.map(lambda p: (scale * rng.normal(size=p.shape)).astype(np.float32), params)
        for _ in range(6)
    ]
    expected, factors = ref_dreamerv3(params, grads_seq, c)
    paths = [jax.tree_util.keystr(k) for k, _ in jax.tree_util.tree_leaves_with_path(params)]
    tiny = paths.index("['tiny']['scale']")
    others = np.delete(factors, tiny, axis=1)
    assert (others < 0.5).all() if clipping else (others == 1.0).all()
    assert (factors[:, tiny] < 1).all()  # the pmin floor decides the tiny leaf's bound
    assert np.linalg.norm(params["tiny"]["scale"]) < PMIN
    got = _run(make_optimizer(c), params, grads_seq)
    # Updates are O(lr) per element; atol covers float32 cancellation in elements near zero.
    for g, e in zip(got, expected, strict=True):
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=2e-6 * c.lr), g, e
        )
    first = np.concatenate([np.ravel(x) for x in jax.tree.leaves(got[0])])
    assert (first == 0).all() if c.warmup else (first != 0).all()  # lr(0) = 0 under warm-up


def test_clip_by_agc_is_per_tensor(rng):
    param = {"w": rng.normal(size=(8, 4)).astype(np.float32), "t": np.full(3, 1e-5, np.float32)}
    big = {"w": 10 * rng.normal(size=(8, 4)), "t": np.ones(3)}
    big = jax.tree.map(lambda x: x.astype(np.float32), big)
    out, _ = clip_by_agc(0.3).update(big, (), param)
    np.testing.assert_allclose(np.linalg.norm(out["w"]), 0.3 * np.linalg.norm(param["w"]), 1e-6)
    np.testing.assert_allclose(np.linalg.norm(out["t"]), 0.3 * PMIN, rtol=1e-6)
    np.testing.assert_allclose(out["w"] / big["w"], out["w"][0, 0] / big["w"][0, 0], rtol=1e-5)
    small = jax.tree.map(lambda x: 1e-6 * x, big)
    out, _ = clip_by_agc(0.3).update(small, (), param)
    jax.tree.map(np.testing.assert_array_equal, out, small)
    # optax's AGC is unit-wise (one norm per kernel column), so it differs on a 2-D tensor.
    unitwise, _ = optax.adaptive_grad_clip(0.3).update(big, (), param)
    assert not np.allclose(unitwise["w"], clip_by_agc(0.3).update(big, (), param)[0]["w"])
    with pytest.raises(ValueError, match="params"):
        clip_by_agc(0.3).update(big, ())


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("const", [0.0, 5e-4, 1e-3, 1e-3, 1e-3, 1e-3]),
        ("linear", [0.0, 5e-4, 1e-3, 5.5e-4, 1e-4, 1e-4]),
        ("cosine", [0.0, 5e-4, 1e-3, 5.5e-4, 1e-4, 1e-4]),
    ],
)
def test_schedule_values(schedule, expected):
    c = OptimizerConfig(lr=1e-3, warmup=1000, schedule=schedule, anneal=3000)
    sched = make_schedule(c)
    steps = [0, 500, 1000, 2000, 3000, 10_000]
    np.testing.assert_allclose([float(sched(s)) for s in steps], expected, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(float(sched(250)), 2.5e-4, rtol=1e-5)
    no_warmup = make_schedule(dataclasses.replace(c, warmup=0, anneal=2000))
    np.testing.assert_allclose(
        [float(no_warmup(0)), float(no_warmup(2000))],
        [1e-3, 1e-3 if schedule == "const" else 1e-4],
        rtol=1e-6,
    )


def test_weight_decay_only_on_kernels(rng):
    params = _params(rng, 1.0)
    params["kernel"] = np.ones((2, 2), np.float32)  # a top-level kernel counts too
    c = OptimizerConfig(lr=0.5, wd=0.1, warmup=0)
    zeros = jax.tree.map(np.zeros_like, params)
    tx = make_optimizer(c)
    updates, _ = tx.update(zeros, tx.init(params), params)
    mask = kernel_mask(params)
    # Leaves in key order: conv/kernel, dense/bias, dense/kernel, kernel, tiny/scale.
    assert jax.tree.leaves(mask) == [True, False, True, True, False]
    for u, p, m in zip(jax.tree.leaves(updates), jax.tree.leaves(params), jax.tree.leaves(mask)):
        np.testing.assert_allclose(u, -0.05 * p if m else np.zeros_like(p), rtol=1e-6)


def test_works_on_nnx_state(rng):
    class Net(nnx.Module):
        def __init__(self, rngs):
            self.linear = nnx.Linear(3, 4, rngs=rngs)
            self.norm = nnx.LayerNorm(4, rngs=rngs)

    state = nnx.state(Net(nnx.Rngs(0)), nnx.Param)
    flat = jax.tree.leaves(kernel_mask(state))
    names = [str(p[-2].key) for p, _ in jax.tree_util.tree_leaves_with_path(state)]
    assert flat == [n == "kernel" for n in names] and sum(flat) == 1
    grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), state)
    tx = make_optimizer(OptimizerConfig(lr=1e-2, wd=0.1, warmup=0))
    u_state, _ = jax.jit(tx.update)(grads, tx.init(state), state)
    assert isinstance(u_state, nnx.State)
    pure = nnx.to_pure_dict(state)
    u_dict, _ = tx.update(nnx.to_pure_dict(grads), tx.init(pure), pure)
    jax.tree.map(np.testing.assert_array_equal, nnx.to_pure_dict(u_state), u_dict)


def test_moments_are_float32_for_bfloat16_params(rng):
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.bfloat16), _params(rng, 1.0))
    tx = make_optimizer(OptimizerConfig())
    state = tx.init(params)
    moments = [x for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.floating)]
    assert len(moments) == 2 * len(jax.tree.leaves(params))
    assert all(x.dtype == jnp.float32 for x in moments)
    grads = jax.tree.map(jnp.ones_like, params)
    _, state = tx.update(grads, state, params)
    assert all(x.dtype != jnp.bfloat16 for x in jax.tree.leaves(state))


def test_adam_matches_optax_adam_after_clipping(rng):
    c = OptimizerConfig(kind="adam", lr=1e-3, eps=1e-5, beta1=0.8, clip=1.0, warmup=3)
    params = _params(rng, 1.0)
    grads_seq = [
        jax.tree.map(lambda p: (3 * rng.normal(size=p.shape)).astype(np.float32), params)
        for _ in range(6)
    ]
    assert all(float(optax.tree.norm(g)) > 1.0 for g in grads_seq)  # clipping is active
    sched = optax.join_schedules(
        [optax.linear_schedule(0.0, 1e-3, 3), optax.constant_schedule(1e-3)], [3]
    )
    want = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(sched, 0.8, 0.999, 1e-5))
    for g, e in zip(_run(make_optimizer(c), params, grads_seq), _run(want, params, grads_seq)):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=0), g, e)


def test_paper_v1_adam_presets():
    """arXiv 2301.04104v1: world model lr 1e-4, eps 1e-8, clip 1000; actor-critic 3e-5/1e-5/100."""
    fields = ("kind", "lr", "eps", "clip", "warmup")
    wm = tuple(getattr(ADAM_V1_WORLD_MODEL, f) for f in fields)
    ac = tuple(getattr(ADAM_V1_ACTOR_CRITIC, f) for f in fields)
    assert (wm, ac) == (("adam", 1e-4, 1e-8, 1000.0, 0), ("adam", 3e-5, 1e-5, 100.0, 0))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "sgd"}, "kind must be one of .*dreamerv3.*adam"),
        ({"schedule": "exp"}, "schedule must be one of .*const.*linear.*cosine"),
        ({"lr": -1e-4}, "lr"),
        ({"lr": 0.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"agc": -0.1}, "agc"),
        ({"eps": -1.0}, "eps"),
        ({"wd": -0.1}, "wd"),
        ({"clip": -1.0}, "clip"),
        ({"beta1": 1.0}, "beta1"),
        ({"beta2": -0.1}, "beta2"),
        ({"warmup": -1}, "warmup"),
        ({"warmup": 1.5}, "warmup"),
        ({"anneal": -5}, "anneal"),
        ({"schedule": "linear"}, "anneal"),
        ({"schedule": "cosine", "anneal": 1000, "warmup": 1000}, "anneal"),
    ],
)
def test_invalid_configs_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OptimizerConfig(**kwargs)
