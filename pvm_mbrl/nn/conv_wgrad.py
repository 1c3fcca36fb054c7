"""Stride-1 SAME convolution with a choice of weight-gradient algorithm, and the input checks
shared by the stages of :mod:`pvm_mbrl.nn.conv`.

:func:`conv` with ``wgrad="xla"`` is ``lax.conv_general_dilated`` differentiated by XLA; with
``wgrad="im2col"`` it keeps the forward conv and XLA's input gradient but computes the kernel
gradient as chunked im2col matmuls accumulated by ``lax.scan``; ``"auto"`` picks im2col for
convs at up to 32x32. Measurements and rationale: :mod:`pvm_mbrl.nn.conv`'s docstring.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["conv"]

_DN = ("NHWC", "HWIO", "NHWC")
# Per-chunk working set (im2col patches + cotangent) of the im2col weight gradient, in bytes.
_WGRAD_CHUNK_BYTES = 2 << 20


def _check(x: jax.Array, w: jax.Array, b: jax.Array | None, what: str) -> int:
    """Validate NHWC ``x``, HWIO ``w`` (square, odd) and ``b``; return the kernel size."""
    wshape, xshape = tuple(jnp.shape(w)), tuple(jnp.shape(x))
    if len(wshape) != 4:
        raise ValueError(f"{what}: kernel must be HWIO [k, k, Cin, Cout], got shape {wshape}")
    k, kw, cin, cout = wshape
    if k != kw or k % 2 == 0:
        raise ValueError(
            f"{what}: kernel must be square with an odd size (SAME padding is then symmetric), "
            f"got {k}x{kw}"
        )
    if len(xshape) < 3 or xshape[-1] != cin:
        raise ValueError(
            f"{what}: input must be [..., H, W, {cin}] (Cin of the kernel), got shape {xshape}"
        )
    if b is not None and tuple(jnp.shape(b)) != (cout,):
        raise ValueError(f"{what}: bias must have shape ({cout},), got {tuple(jnp.shape(b))}")
    return k


def _flat(x: jax.Array) -> tuple[tuple[int, ...], jax.Array]:
    """``[..., H, W, C]`` -> (leading dims, ``[N, H, W, C]``)."""
    return x.shape[:-3], x.reshape(-1, *x.shape[-3:])


def _conv_xla(x: jax.Array, w: jax.Array) -> jax.Array:
    return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=_DN)


# --- weight gradient by chunked im2col ------------------------------------------------------------


def _wgrad_chunk(n: int, per_image: int, budget: int) -> int:
    """Images per chunk: the largest power of two <= n whose working set fits ``budget``."""
    chunk = 1
    while chunk * 2 <= n and chunk * 2 * per_image <= budget:
        chunk *= 2
    return chunk


def _wgrad_im2col(x: jax.Array, g: jax.Array, k: int, budget: int | None = None):
    """``d/dw`` of the SAME conv: ``sum_{n,i,j} x_pad[n, i+dy, j+dx, c] g[n, i, j, o]``.

    Computed as one matmul of im2col patches ``[b*H*W, k*k*C]`` with ``g`` per chunk of ``b``
    images (small enough to stay in cache), accumulated over the batch by ``lax.scan``.
    """
    n, h, wd, c = x.shape
    o = g.shape[-1]
    p = k // 2
    acc_dtype = jnp.promote_types(jnp.result_type(x, g), jnp.float32)

    def one(xc, gc):
        xp = jnp.pad(xc, ((0, 0), (p, p), (p, p), (0, 0)))
        taps = [xp[:, dy : dy + h, dx : dx + wd] for dy in range(k) for dx in range(k)]
        pat = jnp.stack(taps, 3)  # [b, H, W, k*k, C]
        return jnp.einsum("nhwtc,nhwo->tco", pat, gc, preferred_element_type=acc_dtype)

    per_image = h * wd * (k * k * c + o) * x.dtype.itemsize
    chunk = _wgrad_chunk(n, per_image, _WGRAD_CHUNK_BYTES if budget is None else budget)
    steps, rest = divmod(n, chunk)
    if steps == 1 and rest == 0:
        dw = one(x, g)
    else:
        xs = x[: steps * chunk].reshape(steps, chunk, h, wd, c)
        gs = g[: steps * chunk].reshape(steps, chunk, h, wd, o)
        dw = jax.lax.scan(
            lambda acc, xg: (acc + one(*xg), None), jnp.zeros((k * k, c, o), acc_dtype), (xs, gs)
        )[0]
        if rest:
            dw = dw + one(x[steps * chunk :], g[steps * chunk :])
    return dw.reshape(k, k, c, o)


@jax.custom_vjp
def _conv_im2col_wgrad(x: jax.Array, w: jax.Array) -> jax.Array:
    return _conv_xla(x, w)


def _conv_im2col_wgrad_fwd(x, w):
    return _conv_xla(x, w), (x, w)


def _conv_im2col_wgrad_bwd(res, g):
    x, w = res
    dx = jax.vjp(lambda x_: _conv_xla(x_, w), x)[1](g)[0]
    dw = _wgrad_im2col(x, g, w.shape[0]).astype(w.dtype)
    return dx, dw


_conv_im2col_wgrad.defvjp(_conv_im2col_wgrad_fwd, _conv_im2col_wgrad_bwd)


# "auto" policy, from the measurements in pvm_mbrl.nn.conv's docstring: the im2col weight
# gradient for convs at up to 32x32 (at 64x64 its per-image patches no longer fit in cache and
# XLA's is as fast).
_IM2COL_MAX_PIXELS = 32 * 32


def _resolve_wgrad(wgrad: str, x4: jax.Array) -> str:
    """``wgrad`` for a conv of ``x4 = [N, H, W, C]``, resolving ``"auto"``."""
    if wgrad == "auto":
        return "im2col" if x4.shape[1] * x4.shape[2] <= _IM2COL_MAX_PIXELS else "xla"
    if wgrad not in ("xla", "im2col"):
        raise ValueError(f"wgrad must be 'auto', 'xla' or 'im2col', got {wgrad!r}")
    return wgrad


def _conv4(x: jax.Array, w: jax.Array, wgrad: str) -> jax.Array:
    """SAME stride-1 conv of ``[N, H, W, C]`` with the chosen weight-gradient algorithm."""
    if wgrad == "xla":
        return _conv_xla(x, w)
    if wgrad == "im2col":
        return _conv_im2col_wgrad(x, w)
    raise ValueError(f"wgrad must be 'auto', 'xla' or 'im2col', got {wgrad!r}")


def conv(
    x: jax.Array, w: jax.Array, b: jax.Array | None = None, *, wgrad: str = "auto"
) -> jax.Array:
    """Stride-1 SAME cross-correlation ``[..., H, W, Cin] x [k, k, Cin, Cout]`` (+ bias).

    ``wgrad="im2col"`` keeps the forward pass and the input gradient but computes the weight
    gradient by chunked im2col matmuls (same sum, other order) instead of XLA's transposed conv.
    """
    _check(x, w, b, "conv")
    batch, x4 = _flat(x)
    y = _conv4(x4, w, _resolve_wgrad(wgrad, x4))
    if b is not None:
        y = y + b
    return y.reshape(*batch, *y.shape[1:])
