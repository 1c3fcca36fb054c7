"""The exact reformulations in ``pvm_mbrl.nn.conv`` (and its ``conv_wgrad``, ``conv_phases``)
against the direct DreamerV3 stages.

References are written here with ``jax.lax.conv_general_dilated`` on the full-resolution image
(``jnp.repeat`` upsampling, reshape max-pooling), independent of the module's own code paths.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pvm_mbrl.nn import conv as C
from pvm_mbrl.nn import conv_phases, conv_wgrad


def _conv_ref(x, w):
    batch = x.shape[:-3]
    y = jax.lax.conv_general_dilated(
        x.reshape(-1, *x.shape[-3:]),
        w,
        (1, 1),
        "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    return y.reshape(*batch, *y.shape[1:])


def _upsample_conv_ref(x, w, b):
    y = _conv_ref(jnp.repeat(jnp.repeat(x, 2, -3), 2, -2), w)
    return y if b is None else y + b


def _conv_pool_ref(x, w, b):
    y = _conv_ref(x, w)
    if b is not None:
        y = y + b
    *batch, h, wd, c = y.shape
    return y.reshape(*batch, h // 2, 2, wd // 2, 2, c).max((-4, -2))


def _values_and_grads(fn, x, w, b, ct):
    """Output and gradients of ``<fn(x, w, b), ct>`` w.r.t. x, w (and b when given)."""
    argnums = (0, 1) if b is None else (0, 1, 2)

    @jax.jit
    def run(x, w, b, ct):
        loss = lambda *a: jnp.vdot(fn(*a), ct)  # noqa: E731
        return fn(x, w, b), jax.grad(loss, argnums)(x, w, b)

    return run(x, w, b, ct)


def _assert_same(fn, ref, x, w, b, atol, rtol=0.0):
    ct = jnp.asarray(np.random.default_rng(1).normal(size=ref(x, w, b).shape), x.dtype)
    y, grads = _values_and_grads(fn, x, w, b, ct)
    y0, grads0 = _values_and_grads(ref, x, w, b, ct)
    assert y.shape == y0.shape and y.dtype == y0.dtype
    np.testing.assert_allclose(y, y0, atol=atol, rtol=rtol, err_msg="output")
    for name, g, g0 in zip(("x", "w", "b"), grads, grads0):
        assert g.shape == g0.shape and g.dtype == g0.dtype
        # A gradient entry sums many products; where they cancel, the float rounding of the
        # other summation order scales with the gradients' size (weight gradients reach ~40 in
        # float32, and an entry of 0.19 then differs by 1.4e-5), so atol is relative to it.
        scale = max(1.0, float(np.abs(np.asarray(g0, np.float64)).max()))
        np.testing.assert_allclose(g, g0, atol=atol * scale, rtol=rtol, err_msg=f"grad wrt {name}")


def _inputs(rng, batch, h, wd, ci, co, k, dtype, bias=True):
    x = rng.normal(size=(*batch, h, wd, ci))
    w = rng.normal(size=(k, k, ci, co)) / np.sqrt(k * k * ci)  # outputs of order 1
    b = rng.normal(size=(co,)) if bias else None
    cast = lambda a: None if a is None else jnp.asarray(a, dtype)  # noqa: E731
    return cast(x), cast(w), cast(b)


# batch dims, H, W, Cin, Cout: odd and even channel counts, non-square images, no / 2 batch dims
SHAPES = [((3,), 6, 10, 3, 5), ((2, 2), 4, 8, 4, 2), ((), 8, 6, 1, 3)]
UP = [("direct", "im2col"), ("subpixel", "xla"), ("subpixel", "im2col")]
POOL = [("direct", "im2col"), ("s2d", "xla"), ("s2d", "im2col")]


# --- the tap map --------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 3, 5, 7, 9])
def test_phase_taps_map_every_tap_once(k):
    m = conv_phases.phase_taps(k)
    r = (k // 2 + 1) // 2
    assert m.shape == (2, 2 * r + 1, k, 2)
    np.testing.assert_array_equal(m.sum((1, 3)), np.ones((2, k)))  # each (phase, tap) once
    for ph, d in itertools.product(range(2), range(k)):
        (o,), (q,) = np.nonzero(m[ph, :, d, :])
        assert 2 * (o - r) + q == ph + d - k // 2  # the full-resolution row it reads
    # both extreme offsets are used, so the half-resolution kernel cannot be smaller
    assert m[:, 0].any() and m[:, -1].any()
    with pytest.raises(ValueError, match="odd"):
        conv_phases.phase_taps(k + 1)


def test_reference_is_same_cross_correlation():
    """The test reference itself against a loop over taps (zero padding, no kernel flip)."""
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=(2, 5, 7, 3)), rng.normal(size=(5, 5, 3, 4))
    xp = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
    want = sum(
        np.einsum("nhwc,co->nhwo", xp[:, dy : dy + 5, dx : dx + 7], w[dy, dx])
        for dy in range(5)
        for dx in range(5)
    )
    np.testing.assert_allclose(_conv_ref(jnp.asarray(x), jnp.asarray(w)), want, atol=1e-5)


# --- upsample + conv ------------------------------------------------------------------------------


@pytest.mark.parametrize("method,wgrad", UP)
@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("shape", SHAPES)
def test_upsample_conv_matches_direct_float32(shape, k, method, wgrad):
    x, w, b = _inputs(np.random.default_rng(0), *shape, k, jnp.float32)
    fn = lambda x, w, b: C.upsample_conv(x, w, b, method=method, wgrad=wgrad)  # noqa: E731
    _assert_same(fn, _upsample_conv_ref, x, w, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("k", [3, 5, 7])
def test_upsample_conv_matches_direct_float64_and_no_bias(k):
    with jax.enable_x64(True):
        x, w, _ = _inputs(np.random.default_rng(2), (2,), 5, 3, 3, 4, k, jnp.float64, False)
        for wgrad in ("xla", "im2col"):
            fn = lambda x, w, b: C.upsample_conv(x, w, b, wgrad=wgrad)  # noqa: B023, E731
            _assert_same(fn, _upsample_conv_ref, x, w, None, atol=1e-12)


def test_upsample_conv_detects_a_wrong_phase_order():
    """Swapping the two phase axes of the kernel must fail the comparison (tests can fail)."""
    x, w, b = _inputs(np.random.default_rng(3), (2,), 4, 6, 2, 3, 5, jnp.float32)

    def swapped(x, w, b):
        w3 = conv_phases.upsample_kernel(w)
        kk, ci, co = w3.shape[0], w.shape[2], w.shape[3]
        w3 = w3.reshape(kk, kk, ci, 2, 2, co).swapaxes(3, 4).reshape(kk, kk, ci, 4 * co)
        return conv_phases.depth_to_space(_conv_ref(x, w3)) + b

    with pytest.raises(AssertionError):
        _assert_same(swapped, _upsample_conv_ref, x, w, b, atol=1e-5)


# --- conv + max-pool ------------------------------------------------------------------------------


@pytest.mark.parametrize("method,wgrad", POOL)
@pytest.mark.parametrize("k", [3, 5])
@pytest.mark.parametrize("shape", SHAPES)
def test_conv_pool_matches_direct_float32(shape, k, method, wgrad):
    x, w, b = _inputs(np.random.default_rng(0), *shape, k, jnp.float32)
    fn = lambda x, w, b: C.conv_pool(x, w, b, method=method, wgrad=wgrad)  # noqa: E731
    _assert_same(fn, _conv_pool_ref, x, w, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("k", [3, 5, 7])
def test_conv_pool_matches_direct_float64_and_no_bias(k):
    with jax.enable_x64(True):
        x, w, _ = _inputs(np.random.default_rng(2), (2,), 6, 4, 3, 2, k, jnp.float64, False)
        for wgrad in ("xla", "im2col"):
            fn = lambda x, w, b: C.conv_pool(x, w, b, method="s2d", wgrad=wgrad)  # noqa: B023, E731
            _assert_same(fn, _conv_pool_ref, x, w, None, atol=1e-12)


def test_conv_pool_ties_split_the_gradient_like_the_direct_form():
    """Flat images tie inside every pooling window; with integer values all sums are exact, so
    both forms see the same ties and must share the gradient among them the same way."""
    rng = np.random.default_rng(4)
    x = np.repeat(rng.integers(-2, 3, size=(2, 4, 1, 2)), 8, axis=2)
    x[1] = 1  # flat: four-way ties in the interior
    x = jnp.asarray(x, jnp.float32)
    w = jnp.asarray(rng.integers(-2, 3, size=(3, 3, 2, 3)), jnp.float32)
    b = jnp.asarray(rng.integers(-2, 3, size=(3,)), jnp.float32)
    y = _conv_ref(x, w)
    np.testing.assert_array_equal(C.conv_pool(x, w, b, method="s2d"), _conv_pool_ref(x, w, b))
    assert (y[:, :, 2:-2:2] == y[:, :, 3:-2:2]).all()  # the interior windows do tie
    for wgrad in ("xla", "im2col"):
        fn = lambda x, w, b: C.conv_pool(x, w, b, method="s2d", wgrad=wgrad)  # noqa: B023, E731
        # another split among tied entries would move O(1) of the cotangent
        _assert_same(fn, _conv_pool_ref, x, w, b, atol=1e-5)


def test_wgrad_im2col_chunks_with_a_remainder():
    """Chunked accumulation (2 chunks of 2 images + 1 left over) equals XLA's weight gradient."""
    rng = np.random.default_rng(5)
    x, g = jnp.asarray(rng.normal(size=(5, 4, 6, 3))), jnp.asarray(rng.normal(size=(5, 4, 6, 2)))
    per_image = 4 * 6 * (9 * 3 + 2) * x.dtype.itemsize
    assert conv_wgrad._wgrad_chunk(5, per_image, 2 * per_image) == 2
    want = jax.vjp(lambda w: _conv_ref(x, w), jnp.zeros((3, 3, 3, 2)))[1](g)[0]
    for budget in (1, 2 * per_image, 10**9):
        np.testing.assert_allclose(conv_wgrad._wgrad_im2col(x, g, 3, budget), want, atol=1e-5)


def test_conv_with_im2col_wgrad_matches_xla():
    x, w, b = _inputs(np.random.default_rng(6), (2, 2), 5, 7, 3, 4, 5, jnp.float32)
    fn = lambda x, w, b: conv_wgrad.conv(x, w, b, wgrad="im2col")  # noqa: E731
    _assert_same(fn, lambda x, w, b: _conv_ref(x, w) + b, x, w, b, atol=1e-5, rtol=1e-5)


# --- bad inputs -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [C.conv_pool, C.upsample_conv, conv_wgrad.conv])
def test_bad_inputs_raise(fn):
    x = jnp.zeros((2, 8, 8, 3))
    with pytest.raises(ValueError, match="odd size"):
        fn(x, jnp.zeros((4, 4, 3, 5)))
    with pytest.raises(ValueError, match="square"):
        fn(x, jnp.zeros((3, 5, 3, 5)))
    with pytest.raises(ValueError, match="HWIO"):
        fn(x, jnp.zeros((3, 3, 3)))
    with pytest.raises(ValueError, match="Cin"):
        fn(x, jnp.zeros((3, 3, 4, 5)))
    with pytest.raises(ValueError, match="Cin"):
        fn(jnp.zeros((8, 3)), jnp.zeros((3, 3, 3, 5)))
    with pytest.raises(ValueError, match="bias"):
        fn(x, jnp.zeros((3, 3, 3, 5)), jnp.zeros((4,)))
    with pytest.raises(ValueError, match="wgrad"):
        fn(x, jnp.zeros((3, 3, 3, 5)), wgrad="fast")


def test_bad_method_and_odd_image_raise():
    w = jnp.zeros((5, 5, 3, 4))
    with pytest.raises(ValueError, match="even image size, got 7x8"):
        C.conv_pool(jnp.zeros((2, 7, 8, 3)), w)
    with pytest.raises(ValueError, match="even image size, got 8x9"):
        C.conv_pool(jnp.zeros((8, 9, 3)), w, method="direct")
    with pytest.raises(ValueError, match="method"):
        C.conv_pool(jnp.zeros((2, 8, 8, 3)), w, method="subpixel")
    with pytest.raises(ValueError, match="method"):
        C.upsample_conv(jnp.zeros((2, 8, 8, 3)), w, method="s2d")
