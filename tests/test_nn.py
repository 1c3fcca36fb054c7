"""Numbers of the DreamerV3 building blocks against direct numpy / scipy computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats

from pvm_mbrl.dreamer import PercentileNormalizer, lambda_returns
from pvm_mbrl.nn import (
    BoundedNormal,
    OneHotDist,
    TwoHotSymlog,
    kl_free_bits,
    symexp,
    symexp_bins,
    symlog,
    two_hot,
)


@pytest.fixture
def rng():
    """A fresh generator per test, so results do not depend on test order (or xdist)."""
    return np.random.default_rng(0)


# --- symlog / symexp ---------------------------------------------------------------------------


def test_symlog_symexp_inverse_and_values():
    x = np.array([-1e8, -12345.6, -3.0, -1e-6, 0.0, 1e-6, 0.5, 7.0, 1e4, 3e8], np.float32)
    np.testing.assert_allclose(symexp(symlog(x)), x, rtol=2e-6, atol=0)
    np.testing.assert_allclose(symlog(x), np.sign(x) * np.log1p(np.abs(x)), rtol=1e-6)
    y = np.linspace(-19.0, 19.0, 101, dtype=np.float32)
    np.testing.assert_allclose(symlog(symexp(y)), y, rtol=1e-6, atol=1e-6)
    assert float(symlog(0.0)) == 0.0 and float(symexp(0.0)) == 0.0
    # close to the identity near zero, logarithmic far away
    np.testing.assert_allclose(symlog(1e-4), 1e-4, rtol=1e-4)
    np.testing.assert_allclose(symlog(np.float32(np.e**10 - 1)), 10.0, rtol=1e-6)


# --- bins, two-hot ------------------------------------------------------------------------------


def test_symexp_bins_match_definition():
    bins = np.asarray(symexp_bins(255))
    expected = np.sign(np.linspace(-20, 20, 255)) * np.expm1(np.abs(np.linspace(-20, 20, 255)))
    np.testing.assert_allclose(bins, expected, rtol=1e-5)
    assert bins.shape == (255,) and bins[127] == 0.0
    np.testing.assert_array_equal(bins, -bins[::-1])  # exactly symmetric
    assert np.all(np.diff(bins) > 0)
    with pytest.raises(ValueError, match="odd"):
        symexp_bins(256)


def test_two_hot_round_trip_and_weights(rng):
    bins = symexp_bins(255)
    x = np.concatenate(
        [rng.normal(size=50) * 3, rng.normal(size=50) * 1e3, [0.0, 1e-3, -7.5, 2e6]]
    ).astype(np.float32)
    enc = np.asarray(two_hot(x, bins))
    np.testing.assert_allclose(enc.sum(-1), 1.0, rtol=1e-6)
    assert np.all(enc >= 0) and np.all((enc > 0).sum(-1) <= 2)
    # expected value recovers the input
    np.testing.assert_allclose(enc @ np.asarray(bins, np.float64), x, rtol=1e-5, atol=1e-6)
    # the two nonzero weights sit on neighbouring bins enclosing x, linear in between
    b = np.asarray(bins, np.float64)
    for row, v in zip(enc, x, strict=True):
        i = np.searchsorted(b, v, side="right") - 1
        w_hi = (v - b[i]) / (b[i + 1] - b[i])
        np.testing.assert_allclose([row[i], row[i + 1]], [1 - w_hi, w_hi], atol=1e-6)


def test_two_hot_exact_at_centres_and_clamped_outside():
    bins = symexp_bins(255)
    enc = np.asarray(two_hot(bins, bins))
    np.testing.assert_array_equal(enc, np.eye(255, dtype=np.float32))
    b = np.asarray(bins)
    out = np.asarray(two_hot(np.array([b[0] * 10, b[-1] * 10]), bins))
    np.testing.assert_array_equal(out[0], np.eye(255)[0])
    np.testing.assert_array_equal(out[1], np.eye(255)[-1])
    # a small hand-made grid
    small = jnp.array([-2.0, 0.0, 1.0, 5.0])
    np.testing.assert_allclose(two_hot(0.25, small), [0, 0.75, 0.25, 0], atol=1e-7)
    np.testing.assert_allclose(two_hot(4.0, small), [0, 0, 0.25, 0.75], atol=1e-7)
    np.testing.assert_allclose(two_hot(-3.0, small), [1, 0, 0, 0], atol=0)


def test_twohot_symlog_mean_and_log_prob(rng):
    dist = TwoHotSymlog.from_logits(jnp.zeros((3, 255)))
    np.testing.assert_array_equal(dist.mean(), 0.0)  # exactly the centre at zero logits
    logits = rng.normal(size=(4, 255)).astype(np.float32) * 2
    dist = TwoHotSymlog.from_logits(logits)
    probs = scipy.special.softmax(logits.astype(np.float64), -1)
    bins = np.asarray(symexp_bins(255), np.float64)
    np.testing.assert_allclose(dist.mean(), probs @ bins, rtol=1e-4, atol=1e-3)
    target = np.array([0.3, -40.0, 1234.5, 0.0], np.float32)
    enc = np.asarray(two_hot(target, bins), np.float64)
    logp = scipy.special.log_softmax(logits.astype(np.float64), -1)
    np.testing.assert_allclose(dist.log_prob(target), (enc * logp).sum(-1), rtol=1e-5)
    # a sharply peaked two-hot prediction decodes to the target
    peaked = TwoHotSymlog.from_logits(jnp.log(two_hot(target, bins) + 1e-30))
    np.testing.assert_allclose(peaked.mean(), target, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="bins"):
        TwoHotSymlog.from_logits(jnp.zeros((2, 7)), symexp_bins(5))
    with pytest.raises(ValueError, match="mirror"):
        TwoHotSymlog.from_logits(jnp.zeros((2, 5)), symexp_bins(5) + 1.0)


@pytest.mark.parametrize("batch", [1, 4, 64])
def test_twohot_symlog_mean_is_precise_under_jit(rng, batch):
    """Near-uniform predictions (a fresh or young head) put mass on bins up to 4.9e8: the mean
    must not carry the float32 residue of summing probs * bins (0.17 at zero logits, batch 1)."""
    mean = jax.jit(lambda x: TwoHotSymlog.from_logits(x).mean())
    np.testing.assert_array_equal(mean(jnp.zeros((batch, 255))), 0.0)
    logits = rng.normal(size=(batch, 255)) * 1e-3
    probs = scipy.special.softmax(logits, -1)
    want = probs @ np.asarray(symexp_bins(255), np.float64)
    np.testing.assert_allclose(mean(jnp.asarray(logits, jnp.float32)), want, rtol=1e-4, atol=1e-3)


# --- one-hot categorical -------------------------------------------------------------------------


def test_unimix_probabilities_exact(rng):
    logits = rng.normal(size=(5, 3, 16)).astype(np.float32) * 3
    dist = OneHotDist.from_logits(logits, unimix=0.01)
    expected = 0.99 * jax.nn.softmax(jnp.asarray(logits), -1) + 0.01 / 16
    np.testing.assert_array_equal(dist.probs, expected)
    np.testing.assert_allclose(dist.probs.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(jax.nn.softmax(dist.logits, -1), expected, rtol=1e-6)
    assert float(dist.probs.min()) >= 0.01 / 16 * (1 - 1e-6)
    plain = OneHotDist.from_logits(logits, unimix=0.0)
    np.testing.assert_allclose(plain.probs, scipy.special.softmax(logits, -1), rtol=1e-5)
    with pytest.raises(ValueError, match="unimix"):
        OneHotDist.from_logits(logits, unimix=1.0)


def test_straight_through_sample_value_and_gradient(rng):
    logits = jnp.asarray(rng.normal(size=(4, 8)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(4, 8)), jnp.float32)
    key = jax.random.key(1)

    def f_sample(lg):
        return jnp.sum(w * OneHotDist.from_logits(lg).sample(key))

    def f_probs(lg):
        return jnp.sum(w * OneHotDist.from_logits(lg).probs)

    sample = OneHotDist.from_logits(logits).sample(key)
    np.testing.assert_array_equal(np.sort(sample, -1)[:, :-1], 0.0)
    np.testing.assert_allclose(sample.max(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(jax.grad(f_sample)(logits), jax.grad(f_probs)(logits), rtol=1e-6)
    assert float(jnp.abs(jax.grad(f_sample)(logits)).sum()) > 0


def test_sample_frequencies_follow_probs():
    logits = jnp.array([2.0, 0.0, -1.0, 0.5])
    dist = OneHotDist.from_logits(logits, unimix=0.01)
    keys = jax.random.split(jax.random.key(0), 20000)
    freq = jax.vmap(dist.sample)(keys).mean(0)
    np.testing.assert_allclose(freq, dist.probs, atol=0.015)
    np.testing.assert_array_equal(dist.mode(), [1, 0, 0, 0])


def test_onehot_log_prob_entropy_kl_against_scipy(rng):
    a = rng.normal(size=(6, 10)).astype(np.float32)
    b = rng.normal(size=(6, 10)).astype(np.float32)
    p = OneHotDist.from_logits(a, unimix=0.01)
    q = OneHotDist.from_logits(b, unimix=0.01)
    pn = 0.99 * scipy.special.softmax(a.astype(np.float64), -1) + 0.001
    qn = 0.99 * scipy.special.softmax(b.astype(np.float64), -1) + 0.001
    idx = rng.integers(0, 10, size=6)
    onehot = np.eye(10)[idx]
    np.testing.assert_allclose(p.log_prob(onehot), np.log(pn[np.arange(6), idx]), rtol=1e-5)
    np.testing.assert_allclose(p.entropy(), scipy.stats.entropy(pn, axis=-1), rtol=1e-5)
    np.testing.assert_allclose(p.kl(q), scipy.stats.entropy(pn, qn, axis=-1), rtol=1e-4)


# --- free-bits KL --------------------------------------------------------------------------------


def _np_kl(post, prior, unimix=0.01):
    p = (1 - unimix) * scipy.special.softmax(post.astype(np.float64), -1) + unimix / post.shape[-1]
    q = (1 - unimix) * scipy.special.softmax(prior.astype(np.float64), -1)
    q = q + unimix / post.shape[-1]
    return (p * (np.log(p) - np.log(q))).sum((-1, -2))


def test_kl_free_bits_values_and_gradients(rng):
    stoch, classes = 8, 6
    post = rng.normal(size=(2, stoch, classes)).astype(np.float32)
    prior = np.stack([post[0] + 0.05 * rng.normal(size=(stoch, classes)), 3 * post[1]])
    prior = prior.astype(np.float32)
    kl = _np_kl(post, prior)
    assert kl[0] < 1.0 < kl[1]  # one sample in each branch
    dyn, rep = kl_free_bits(jnp.asarray(post), jnp.asarray(prior), free=1.0)
    np.testing.assert_allclose(dyn, np.maximum(kl, 1.0), rtol=1e-5)
    np.testing.assert_allclose(rep, np.maximum(kl, 1.0), rtol=1e-5)

    g_dyn = jax.grad(lambda a, b: kl_free_bits(a, b)[0].sum(), (0, 1))(post, prior)
    g_rep = jax.grad(lambda a, b: kl_free_bits(a, b)[1].sum(), (0, 1))(post, prior)
    np.testing.assert_array_equal(g_dyn[0], 0.0)  # dyn trains the prior only
    np.testing.assert_array_equal(g_rep[1], 0.0)  # rep trains the posterior only
    np.testing.assert_array_equal(g_dyn[1][0], 0.0)  # below free bits: no gradient
    np.testing.assert_array_equal(g_rep[0][0], 0.0)
    assert np.abs(g_dyn[1][1]).sum() > 0 and np.abs(g_rep[0][1]).sum() > 0
    # above the free bits the gradient is the KL's own (finite differences on the prior)
    eps = 1e-2
    d = np.zeros_like(prior)
    d[1, 2, 3] = eps
    fd = (_np_kl(post, prior + d)[1] - _np_kl(post, prior - d)[1]) / (2 * eps)
    np.testing.assert_allclose(g_dyn[1][1, 2, 3], fd, rtol=1e-2, atol=1e-4)


# --- bounded normal ------------------------------------------------------------------------------


def test_bounded_normal_against_formula(rng):
    raw_mean = rng.normal(size=(5, 3)).astype(np.float32) * 2
    raw_std = rng.normal(size=(5, 3)).astype(np.float32) * 3
    dist = BoundedNormal.from_raw(raw_mean, raw_std, minstd=0.1, maxstd=1.0)
    mean = np.tanh(raw_mean.astype(np.float64))
    std = 0.9 / (1 + np.exp(-(raw_std.astype(np.float64) + 2.0))) + 0.1
    np.testing.assert_allclose(dist.mean, mean, rtol=1e-6)
    np.testing.assert_allclose(dist.std, std, rtol=1e-6)
    assert np.all((std >= 0.1) & (std <= 1.0))
    x = rng.normal(size=(5, 3)).astype(np.float32)
    direct = (-0.5 * ((x - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)).sum(-1)
    np.testing.assert_allclose(dist.log_prob(x), direct, rtol=1e-5)
    np.testing.assert_allclose(
        dist.log_prob(x), scipy.stats.norm(mean, std).logpdf(x).sum(-1), rtol=1e-5
    )
    np.testing.assert_allclose(
        dist.entropy(), scipy.stats.norm(mean, std).entropy().sum(-1), rtol=1e-5
    )
    np.testing.assert_array_equal(dist.mode(), dist.mean)
    samples = jax.vmap(dist.sample)(jax.random.split(jax.random.key(2), 4000))
    np.testing.assert_allclose(samples.mean(0), mean, atol=0.1)
    np.testing.assert_allclose(samples.std(0), std, rtol=0.1)


# --- lambda returns ------------------------------------------------------------------------------


def _loop_lambda_returns(rewards, values, continues, bootstrap, discount, lam):
    T = len(rewards)
    out = np.zeros_like(rewards, dtype=np.float64)
    nxt = bootstrap
    for t in reversed(range(T)):
        v_next = values[t + 1] if t + 1 < T else bootstrap
        nxt = rewards[t] + discount * continues[t] * ((1 - lam) * v_next + lam * nxt)
        out[t] = nxt
    return out


@pytest.mark.parametrize("lam", [0.0, 0.95, 1.0])
def test_lambda_returns_against_loop(rng, lam):
    T, B = 15, 4
    rewards = rng.normal(size=(T, B))
    values = rng.normal(size=(T, B)) * 5
    continues = (rng.random((T, B)) > 0.15).astype(np.float64)
    continues[3, 1] = 0.4  # soft continue probabilities are allowed
    bootstrap = rng.normal(size=B) * 5
    discount = 1 - 1 / 333
    got = lambda_returns(
        jnp.asarray(rewards, jnp.float32),
        jnp.asarray(values, jnp.float32),
        jnp.asarray(continues, jnp.float32),
        jnp.asarray(bootstrap, jnp.float32),
        discount,
        lam,
    )
    want = _loop_lambda_returns(rewards, values, continues, bootstrap, discount, lam)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    if lam == 0.0:  # one-step TD targets
        v_next = np.concatenate([values[1:], bootstrap[None]], 0)
        np.testing.assert_allclose(
            got, rewards + discount * continues * v_next, rtol=1e-5, atol=1e-5
        )


def test_lambda_returns_shape_errors():
    with pytest.raises(ValueError, match="bootstrap"):
        lambda_returns(jnp.zeros((5, 2)), jnp.zeros((5, 2)), jnp.ones((5, 2)), jnp.zeros(3), 1, 1)


# --- percentile normaliser -----------------------------------------------------------------------


def test_percentile_normalizer_against_numpy(rng):
    norm = PercentileNormalizer.create()
    update = jax.jit(PercentileNormalizer.update)
    lo = hi = 0.0
    for i in range(30):
        x = rng.normal(size=(15, 16)) * (1 + i) + i
        norm = update(norm, jnp.asarray(x, jnp.float32))
        lo = 0.99 * lo + 0.01 * np.percentile(x, 5)
        hi = 0.99 * hi + 0.01 * np.percentile(x, 95)
    np.testing.assert_allclose([norm.lo, norm.hi], [lo, hi], rtol=1e-4)
    assert hi - lo > 1.0
    np.testing.assert_allclose(norm.scale, hi - lo, rtol=1e-4)
    np.testing.assert_allclose(norm.normalize(jnp.float32(3.0)), 3.0 / (hi - lo), rtol=1e-4)
    # the floor: small spreads are not blown up
    small = PercentileNormalizer.create().update(jnp.linspace(-0.1, 0.1, 100))
    np.testing.assert_array_equal(small.scale, 1.0)
    np.testing.assert_array_equal(small.normalize(jnp.float32(0.3)), np.float32(0.3))
