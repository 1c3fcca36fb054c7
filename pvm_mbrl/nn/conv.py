"""Exact, faster forms of DreamerV3's CNN stages on XLA:CPU.

DreamerV3's image encoder runs ``maxpool_2x2(conv_k(x) + b)`` per stage and its decoder runs
``conv_k(upsample_nearest_2x(x)) + b``, with small channel counts (3 -> 8 at 64x64 for size1m).
On XLA:CPU, convolutions go to YNNPACK only when ``max(Cin, Cout) > 16`` (XLA's
``IsConvolutionOpSupportedByYnn``); the rest run on a slow Eigen path (10-15 GFLOP/s on two
cores). The forms below are the same functions of the same parameters (outputs and gradients
equal up to float rounding), rewritten so that the work lands on fast kernels. Kernels are
HWIO, odd ``k``, stride 1, SAME padding (cross-correlation as ``lax.conv_general_dilated``).

Phase map (:func:`phase_taps`). With ``p = k // 2``, output row ``Y = 2 i + py`` reads
full-resolution rows ``Y + d - p`` (``d = 0 .. k-1``) = ``2 (i + o) + q`` with
``o = floor((py + d - p) / 2)``, ``q = (py + d - p) mod 2``. Offsets ``o`` span ``[-r, r]``,
``r = ceil(p / 2)``, so each output phase is a size ``K = 2 r + 1`` conv at half resolution
(``K = 3`` for ``k = 5``). The kernels below are fixed 0/1 einsums of ``w`` (differentiable).

1. :func:`upsample_conv`, sub-pixel form: the nearest-upsampled rows ``2 (i + o) + q`` are
   all low-res row ``i + o``, so ``conv_k(up(x), w) = depth_to_space(conv_K(x, W))`` with
   ``W[oy, ox, ci, (py, px, co)]`` = sum of the ``w[dy, dx, ci, co]`` mapping to ``(oy, ox)``
   (:func:`upsample_kernel`). Borders agree: up-sampled row ``R`` is outside ``[0, 2H)`` iff
   ``floor(R / 2)`` is outside ``[0, H)``, so both forms read zeros at the same taps.
   FLOPs: ``H W K^2 Ci 4 Co`` instead of ``4 H W k^2 Ci Co``, 2.8x fewer for ``k = 5``.
2. :func:`conv_pool`, space-to-depth form: split ``x`` into its 4 phases
   (``[N, H/2, W/2, (qy, qx, ci)]``); one ``K x K`` conv with :func:`s2d_kernel`
   (``4 Ci -> 4 Co``, tap ``(dy, dx)`` placed at ``(oy, ox, qy, qx)``) gives the four output
   phases, and the 2x2 max-pool is the max over them. Borders agree for even ``H, W``. The
   bias is added after the max (``max(a + b, c + b) = max(a, c) + b`` exactly: rounding is
   monotone). FLOPs ``(K / k)^2 * 4`` = 1.44x more for ``k = 5``, but 4x the channels.

Two more exact changes, used by both forms:

* ``wgrad="im2col"``: XLA differentiates a conv w.r.t. its kernel as a convolution with the
  batch as feature dimension, which is slow here (2-8x slower than the forward conv). The
  custom VJP keeps the forward conv and XLA's input gradient but computes
  ``dw[dy, dx, c, o] = sum_{n,i,j} x_pad[n, i+dy, j+dx, c] g[n, i, j, o]`` as one matmul of
  im2col patches per chunk of images (<= 2 MiB working set), accumulated by ``lax.scan``.
* :func:`maxpool2` and the phase max: JAX's max-reduction gradient (``mask * ct / count``,
  ties share the cotangent equally) with ``count`` summed from the window slices instead of a
  strided reduction; bit-identical to JAX's gradient, 3-4x faster.

Ties. The pooling gradient is split equally among exactly tied maxima, as in JAX. Flat image
regions tie exactly in both forms when the sums are exact; otherwise the forms round
differently and may resolve near-ties differently (any split is a valid subgradient; the
weight gradient is unchanged where the tied windows see identical patches).

Measured (2026-11-24; 2-core AMD EPYC (Zen 4), 23 GiB, CPU JAX/jaxlib 0.10.2, float32,
batch N = 1024 = B16 x T64, 64x64x3 images, ``k = 5``; seconds, min over >= 2 runs of 3 with
another user's jobs on the machine, so +-20 %). ``fwd`` = jit forward, ``f+b`` = forward
and gradients (w, b, and the input except for the first encoder layer). "direct" is the
original code (conv + bias, reshape max-pool / ``jnp.repeat`` upsampling, XLA autodiff);
"auto" is this module's default choice::

    layer                         direct fwd / f+b     auto fwd / f+b    auto choice
    enc1m  64x64  3->8            0.381 / 1.080       0.229 / 0.541     s2d, im2col dw
    enc1m  32x32  8->12           0.117 / 0.812       0.115 / 0.442     direct, im2col dw
    enc1m  16x16 12->16           0.040 / 0.348       0.040 / 0.184     direct, im2col dw
    enc1m   8x8  16->16           0.012 / 0.040       0.011 / 0.046     direct, im2col dw
    dec1m   4->8   16->16         0.011 / 0.037       0.004 / 0.012     subpixel, im2col dw
    dec1m   8->16  16->12         0.043 / 0.357       0.013 / 0.036     subpixel, im2col dw
    dec1m  16->32  12->8          0.177 / 0.647       0.053 / 0.135     subpixel, im2col dw
    dec1m  32->64   8->3          0.424 / 1.140       0.069 / 0.190     subpixel, im2col dw
    enc12m 64x64  3->32           0.774 / 3.134       0.745 / 1.501     s2d, im2col dw
    enc12m 32x32 32->48           0.513 / 5.517       0.573 / 4.057     direct, im2col dw
    enc12m 16x16 48->64           0.234 / 4.337       0.217 / 1.593     direct, im2col dw
    enc12m  8x8  64->64           0.067 / 0.818       0.066 / 0.537     direct, im2col dw
    dec12m  4->8   64->64         0.166 / 0.748       0.030 / 0.133     subpixel, im2col dw
    dec12m  8->16  64->48         0.535 / 4.140       0.126 / 0.460     subpixel, im2col dw
    dec12m 16->32  48->32         1.232 / 3.004       0.430 / 0.887     subpixel, im2col dw
    dec12m 32->64  32->3          1.005 / 4.536       0.277 / 0.684     subpixel, im2col dw
    stacks (4 stages, RMSNorm + SiLU between; decoder grads include its input):
    encoder size1m                0.641 / 1.871       0.446 / 1.205     1.4x / 1.6x
    decoder size1m                0.646 / 2.722       0.150 / 0.570     4.3x / 4.8x
    encoder size12m               1.777 / 14.96       1.669 / 7.569     1.1x / 2.0x
    decoder size12m               2.210 / 14.82       0.952 / 2.872     2.3x / 5.2x

Alternatives measured (f+b, same setup). s2d beyond the first layer: equal or slower
(enc1m 32x32 8->12: 0.47-0.60 vs direct 0.41-0.47; enc12m 16x16 48->64: equal f+b, forward
2x slower), hence ``method="auto"`` = s2d only for ``Cin <= 4``. s2d with XLA's weight
gradient: backward slower than direct beyond the first layer (enc12m 32x32 32->48: 10.1 vs
6.1); sub-pixel with XLA's: 2-3x slower backward than with im2col. im2col weight gradient at
64x64 (direct first layer, direct decoder): no gain or slower (dec1m 64x64 8->3: 1.34-1.39 vs
1.18-1.22), hence ``wgrad="auto"`` = im2col only for convs at <= 32x32. Zero-padding channels
to 17 to reach YNNPACK: 2-5x slower (large padded outputs). A stride-2 6x6 conv instead of
explicit space-to-depth: slower forward and backward. Unchunked im2col forward or weight
gradient: mostly 2-12x slower. Chunked im2col forward: 1.2-1.4x on the s2d first-layer conv,
slower on others; not kept. Large fresh buffers are costly on this machine (~0.5 ms/MB of
first-touch page faults), which is why cache-sized chunks win.

Use :func:`conv_pool` and :func:`upsample_conv` with the defaults; ``method="direct",
wgrad="xla"`` reproduces the original computation.

The pieces: :mod:`pvm_mbrl.nn.conv_wgrad` (the conv with its weight-gradient choice, and
:func:`~pvm_mbrl.nn.conv_wgrad.conv` for a plain conv) and :mod:`pvm_mbrl.nn.conv_phases` (tap
maps, space-to-depth reshapes, max-pooling and upsampling).
"""

from __future__ import annotations

import jax

from pvm_mbrl.nn.conv_phases import (
    _tied_max,
    depth_to_space,
    maxpool2,
    s2d_kernel,
    space_to_depth,
    upsample2,
    upsample_kernel,
)
from pvm_mbrl.nn.conv_wgrad import _check, _conv4, _flat, _resolve_wgrad

__all__ = ["conv_pool", "upsample_conv"]

# "auto" policy, from the measurements above: the s2d form pays off for few input channels
# (RGB / grayscale first layer).
_S2D_MAX_CIN = 4


def conv_pool(
    x: jax.Array,
    w: jax.Array,
    b: jax.Array | None = None,
    *,
    method: str = "auto",
    wgrad: str = "auto",
) -> jax.Array:
    """``maxpool_2x2(conv_k(x, w) + b)``: ``[..., H, W, Cin]`` -> ``[..., H/2, W/2, Cout]``.

    ``method``: ``"direct"`` (conv at full resolution, then pool), ``"s2d"`` (one conv of the
    space-to-depth input with :func:`s2d_kernel` giving the four output phases, max over them)
    or ``"auto"``. ``wgrad``: weight-gradient algorithm, ``"xla"``, ``"im2col"`` or ``"auto"``.
    """
    _check(x, w, b, "conv_pool")
    h, wd = x.shape[-3:-1]
    if h % 2 or wd % 2:
        raise ValueError(f"conv_pool: 2x2 pooling needs an even image size, got {h}x{wd}")
    if method == "auto":
        method = "s2d" if w.shape[2] <= _S2D_MAX_CIN else "direct"
    if method not in ("direct", "s2d"):
        raise ValueError(f"conv_pool: method must be 'auto', 'direct' or 's2d', got {method!r}")
    batch, x4 = _flat(x)
    if method == "direct":
        y = _conv4(x4, w, _resolve_wgrad(wgrad, x4))
        if b is not None:
            y = y + b
        y = maxpool2(y)
        return y.reshape(*batch, *y.shape[1:])
    co = w.shape[-1]
    xs = space_to_depth(x4)
    y = _conv4(xs, s2d_kernel(w), _resolve_wgrad(wgrad, xs))
    y = _tied_max(y.reshape(*y.shape[:-1], 4, co), (y.ndim - 1,))
    if b is not None:  # max(a + b, c + b) == max(a, c) + b exactly (rounding is monotone)
        y = y + b
    return y.reshape(*batch, *y.shape[1:])


def upsample_conv(
    x: jax.Array,
    w: jax.Array,
    b: jax.Array | None = None,
    *,
    method: str = "auto",
    wgrad: str = "auto",
) -> jax.Array:
    """``conv_k(upsample_nearest_2x(x), w) + b``: ``[..., H, W, Cin]`` -> ``[..., 2H, 2W, Cout]``.

    ``method``: ``"direct"`` (upsample, then conv at full resolution), ``"subpixel"`` (one conv
    of the low-resolution input with :func:`upsample_kernel`, then depth-to-space) or
    ``"auto"``. ``wgrad``: weight-gradient algorithm, ``"xla"``, ``"im2col"`` or ``"auto"``.
    """
    _check(x, w, b, "upsample_conv")
    if method == "auto":
        method = "subpixel"
    if method not in ("direct", "subpixel"):
        raise ValueError(
            f"upsample_conv: method must be 'auto', 'direct' or 'subpixel', got {method!r}"
        )
    batch, x4 = _flat(x)
    if method == "direct":
        up = upsample2(x4)
        y = _conv4(up, w, _resolve_wgrad(wgrad, up))
    else:
        y = depth_to_space(_conv4(x4, upsample_kernel(w), _resolve_wgrad(wgrad, x4)))
    if b is not None:
        y = y + b
    return y.reshape(*batch, *y.shape[1:])
