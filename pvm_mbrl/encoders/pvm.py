"""A pre-trained ViT (DINOv2, CLIP) as an image encoder: uint8 ``[..., H, W, 3]`` ->
features ``[..., output_size]``.

The computation, in stages (each stage is a public method, so frozen parts can be cached):

1. :meth:`PVMEncoder.stem`: the family's preprocessing (:func:`~pvm_mbrl.encoders.vit.preprocess`:
   resize to ``input_size``, normalise) and the ViT embedding -> tokens entering block 0,
   ``[..., T, D]`` with ``T = num_prefix_tokens + num_patches``.
2. :meth:`PVMEncoder.run_blocks`: blocks ``start .. stop - 1``.
3. :meth:`PVMEncoder.select`: from the hidden states of the chosen ``layers`` (layer ``i`` is the
   output of block ``i``, 0-based, negative counts from the end; default the last), the chosen
   ``output`` of each, concatenated:

   - ``"patches"``: every patch token after the final norm, flattened (the study's DINOv2 choice),
   - ``"cls"``: the CLS token after the final norm (DINOv2; CLIP's last hidden state is not
     normed, so its raw CLS token),
   - ``"pooled"``: the final norm of the CLS token (CLIP's ``post_layernorm``: the study's CLIP
     choice; for DINOv2 the same as ``"cls"``),
   - ``"mean"``: the mean of the (final-normed, for DINOv2) patch tokens.

4. :meth:`PVMEncoder.head`: ``"rmsnorm_silu"`` (the study's RMSNorm + SiLU over the features),
   ``"proj"`` (a learned linear map to ``proj_dim``, then RMSNorm + SiLU) or ``"none"``.

Fine-tuning (``finetune``: ``"frozen"``, ``"partial(k)"``, ``"full"``; see
:mod:`pvm_mbrl.encoders.finetune`) decides where the frozen part ends, its *cache point*:

- ``frozen``: everything before the head is frozen. ``frozen_features(x)`` (the input of the
  head) can be cached, and ``__call__(x) == head(stop_gradient(frozen_features(x)))``.
- ``partial(k)``: the stem and blocks ``0 .. n-k-1`` are frozen. ``trunk(x, n - k)`` (the tokens
  entering block ``n - k``) can be cached, and
  ``__call__(x) == resume(stop_gradient(trunk(x, n - k)), n - k)``.
- ``full``: nothing is frozen or cacheable; ``__call__(x) == resume(trunk(x, 0), 0)``.

``cache(x)`` and ``from_cache(c)`` pick the right pair for the encoder's own ``finetune``.
The stop-gradient means the backward pass never enters the frozen part, whichever optimiser is
used. If a layer of ``layers`` ends before block ``upto``, ``trunk(x, upto)`` keeps its raw
hidden state too: the cache is then ``[..., (m + 1) * T, D]``, the ``m`` such hidden states
(ascending layer order) followed by the tokens entering block ``upto``, concatenated along the
token axis, so ``resume`` still gives exactly the uncached features.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from pvm_mbrl.encoders.finetune import FineTune
from pvm_mbrl.encoders.vit import ViT, _size_pair, preprocess
from pvm_mbrl.nn.layers import Norm, linear

OUTPUTS = ("patches", "cls", "pooled", "mean")
HEADS = ("rmsnorm_silu", "proj", "none")
_sg = jax.lax.stop_gradient


class PVMEncoder(nnx.Module):
    """uint8 images ``[..., H, W, 3]`` -> features ``[..., output_size]`` through a :class:`ViT`.

    Args:
      vit: the ViT body (e.g. from :func:`~pvm_mbrl.encoders.checkpoints.load_vit`).
      image_shape: ``(H, W, 3)`` of the images the encoder receives.
      input_size: side (or ``(h, w)``) the images are resized to before the ViT; default the
        checkpoint's native size. Must be a multiple of the patch size (no pixel is dropped);
        the position embeddings are interpolated to other sizes.
      output: one of :data:`OUTPUTS`; layers: indices of the blocks whose outputs are read out
        and concatenated (default ``(-1,)``, the last).
      head: one of :data:`HEADS`; proj_dim: width of the ``"proj"`` head.
      finetune: ``"frozen"``, ``"partial(k)"`` or ``"full"`` (a :class:`FineTune` too).
      rngs: initialises the head.

    Attributes: ``output_size`` (features per image), ``feature_size`` (the head's input size),
    ``num_tokens`` (``T``), ``layers`` (non-negative), ``finetune`` (a :class:`FineTune`).
    """

    def __init__(
        self,
        vit: ViT,
        image_shape: Sequence[int],
        *,
        input_size: int | Sequence[int] | None = None,
        output: str = "patches",
        layers: Sequence[int] | None = None,
        head: str = "rmsnorm_silu",
        proj_dim: int = 1024,
        finetune: str | FineTune = "full",
        rngs: nnx.Rngs,
    ):
        n, p, d = vit.num_layers, vit.patch_size, vit.hidden_size
        image_shape = tuple(int(s) for s in image_shape)
        if len(image_shape) != 3 or image_shape[-1] != vit.config.num_channels:
            raise ValueError(
                f"image_shape must be (H, W, {vit.config.num_channels}), got {image_shape}"
            )
        size = _size_pair(vit.config.image_size if input_size is None else input_size)
        if min(size) < p or size[0] % p or size[1] % p:
            raise ValueError(
                f"input_size must be a multiple of the patch size {p} (at least one patch; no "
                f"pixel is dropped), i.e. images enter the ViT as [N, {p}*i, {p}*j, 3]; got "
                f"{size[0]}x{size[1]}"
            )
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        layers = (-1,) if layers is None else tuple(layers)
        bad = [i for i in layers if not -n <= int(i) < n]
        if not layers or bad:
            raise ValueError(f"layers must be block indices in [-{n}, {n}), got {layers}")
        layers = tuple(int(i) % n for i in layers)
        if len(set(layers)) != len(layers):
            raise ValueError(f"layers must not repeat a block, got {layers}")
        self.vit = vit
        self.image_shape = image_shape
        self.input_size = size
        self.output = output
        self.layers = layers
        self.head_kind = head
        self.finetune = FineTune.parse(finetune, n)
        self.dtype = vit.dtype
        self.num_patches = vit.num_patches(*size)
        self.num_tokens = vit.num_prefix_tokens + self.num_patches
        per_layer = self.num_patches * d if output == "patches" else d
        self.feature_size = per_layer * len(layers)
        width, proj = self.feature_size, None
        if head == "proj":
            if int(proj_dim) < 1:
                raise ValueError(f"proj_dim must be >= 1, got {proj_dim}")
            width = int(proj_dim)
            proj = linear(self.feature_size, width, rngs=rngs, dtype=self.dtype)
        self.out_proj = proj
        self.out_norm = None if head == "none" else Norm(width, rngs=rngs, dtype=self.dtype)
        self.output_size = width

    # -- input checks and shape helpers ---------------------------------------------------------

    def check_images(self, images: jax.Array) -> None:
        """Raise a ValueError unless ``images`` is uint8 ``[..., H, W, 3]`` of ``image_shape``."""
        want = f"uint8 [..., {', '.join(map(str, self.image_shape))}]"
        dtype = getattr(images, "dtype", None)
        if dtype != jnp.uint8:
            raise ValueError(f"images must be {want}, got dtype {dtype}")
        shape = tuple(jnp.shape(images))
        if len(shape) < 3 or shape[-3:] != self.image_shape:
            raise ValueError(f"images must be {want}, got shape {shape}")

    def _tokens_in(self, tokens: jax.Array, count: int = 1) -> tuple[jax.Array, tuple]:
        """``[..., count * T, D]`` -> ``([N, count * T, D], leading dims)``, checked."""
        want = (count * self.num_tokens, self.vit.hidden_size)
        shape = tuple(jnp.shape(tokens))
        if len(shape) < 2 or shape[-2:] != want:
            raise ValueError(f"tokens must be [..., {want[0]}, {want[1]}], got shape {shape}")
        return tokens.reshape(-1, *want), shape[:-2]

    def _early_layers(self, upto: int) -> tuple[int, ...]:
        """Selected layers whose hidden state is final before block ``upto`` and is not the
        tokens entering it (layer ``upto - 1``): they travel in the cache."""
        return tuple(sorted(i for i in self.layers if i < upto - 1))

    def _check_block(self, index: int, name: str) -> None:
        if not 0 <= index <= self.vit.num_layers:
            raise ValueError(f"{name} must be in 0..{self.vit.num_layers}, got {index}")

    # -- stages ----------------------------------------------------------------------------------

    def stem(self, images: jax.Array) -> jax.Array:
        """uint8 images ``[..., H, W, 3]`` -> tokens entering block 0, ``[..., T, D]``."""
        self.check_images(images)
        lead = images.shape[:-3]
        pixels = preprocess(images.reshape(-1, *self.image_shape), self.vit.family, self.input_size)
        tokens = self.vit.embed(pixels)
        return tokens.reshape(*lead, *tokens.shape[1:])

    def run_blocks(self, tokens: jax.Array, start: int = 0, stop: int | None = None) -> jax.Array:
        """Blocks ``start .. stop - 1`` on tokens ``[..., T, D]``."""
        flat, lead = self._tokens_in(tokens)
        out = self.vit.blocks_forward(flat, start, stop)
        return out.reshape(*lead, *out.shape[1:])

    def _select_one(self, hidden: jax.Array) -> jax.Array:
        vit, out = self.vit, self.output
        if out == "pooled":
            return vit.norm(hidden[..., 0, :])
        if out == "cls":
            return vit.final_norm(hidden[..., :1, :])[..., 0, :]
        patches = vit.final_norm(hidden[..., vit.num_prefix_tokens :, :])
        if out == "mean":
            return patches.mean(-2)
        return patches.reshape(*patches.shape[:-2], -1)

    def select(self, hidden_states: jax.Array | Sequence[jax.Array]) -> jax.Array:
        """Raw hidden states ``[..., T, D]`` of ``layers`` (in that order; one array when one
        layer) -> the features before the head, ``[..., feature_size]``."""
        if not isinstance(hidden_states, list | tuple):
            hidden_states = (hidden_states,)
        if len(hidden_states) != len(self.layers):
            raise ValueError(
                f"need one hidden state per layer of {self.layers}, got {len(hidden_states)}"
            )
        parts = [self._select_one(h) for h in hidden_states]
        return parts[0] if len(parts) == 1 else jnp.concatenate(parts, -1)

    def head(self, features: jax.Array) -> jax.Array:
        """Features ``[..., feature_size]`` -> encoder output ``[..., output_size]``."""
        x = features
        if self.out_proj is not None:
            x = self.out_proj(x.astype(self.dtype))
        if self.out_norm is not None:
            x = jax.nn.silu(self.out_norm(x))
        return x

    def readout(self, hidden_states: jax.Array | Sequence[jax.Array]) -> jax.Array:
        """``head(select(hidden_states))``."""
        return self.head(self.select(hidden_states))

    def _forward(self, flat: jax.Array, start: int, hidden: dict[int, jax.Array]) -> jax.Array:
        """Blocks ``start ..`` on ``[N, T, D]`` tokens; the selected layers' hidden states
        (adding to ``hidden``) -> features before the head ``[N, feature_size]``."""
        for i in range(start, self.vit.num_layers):
            flat = self.vit.blocks_forward(flat, i, i + 1)
            if i in self.layers:
                hidden[i] = flat
        return self.select([hidden[i] for i in self.layers])

    def trunk(self, images: jax.Array, upto: int) -> jax.Array:
        """Stem and blocks ``0 .. upto - 1``: the cache for resuming at block ``upto``.

        ``[..., T, D]``, or ``[..., (m + 1) * T, D]`` when ``m`` selected layers end earlier
        (their raw hidden states first, then the tokens entering block ``upto``).
        """
        self._check_block(upto, "upto")
        tokens = self.stem(images)
        flat, lead = self._tokens_in(tokens)
        hidden = {}
        for i in range(upto):
            flat = self.vit.blocks_forward(flat, i, i + 1)
            hidden[i] = flat
        parts = [hidden[i] for i in self._early_layers(upto)] + [flat]
        out = parts[0] if len(parts) == 1 else jnp.concatenate(parts, axis=1)
        return out.reshape(*lead, *out.shape[1:])

    def _resume_features(self, cache: jax.Array, start: int) -> jax.Array:
        self._check_block(start, "start")
        early = self._early_layers(start)
        flat, lead = self._tokens_in(cache, 1 + len(early))
        pieces = jnp.split(flat, 1 + len(early), axis=1)
        hidden = dict(zip(early, pieces[:-1]))
        if start > 0:
            hidden[start - 1] = pieces[-1]
        feats = self._forward(pieces[-1], start, hidden)
        return feats.reshape(*lead, -1)

    def resume(self, cache: jax.Array, start: int) -> jax.Array:
        """The encoder output from ``trunk(images, start)``: blocks ``start ..``, then
        :meth:`readout`."""
        return self.head(self._resume_features(cache, start))

    def frozen_features(self, images: jax.Array) -> jax.Array:
        """Everything before the head: ``[..., feature_size]``."""
        return self._resume_features(self.trunk(images, 0), 0)

    def __call__(self, images: jax.Array) -> jax.Array:
        ft = self.finetune
        if ft.mode == "frozen":
            return self.head(_sg(self.frozen_features(images)))
        start = ft.first_trainable_block(self.vit.num_layers)
        cache = self.trunk(images, start)
        return self.resume(_sg(cache) if ft.mode == "partial" else cache, start)

    # -- caching ---------------------------------------------------------------------------------

    def cache_point(self, finetune: str | FineTune | None = None) -> int | None:
        """Block whose input is cached under ``finetune`` (default the encoder's own):
        ``n - k`` for ``partial(k)``; ``n`` for ``frozen`` (everything before the head is
        frozen: the cache is :meth:`frozen_features`); None for ``full`` (nothing to cache)."""
        ft = self.finetune if finetune is None else FineTune.parse(finetune, self.vit.num_layers)
        return None if ft.mode == "full" else ft.first_trainable_block(self.vit.num_layers)

    def cache_shape(self) -> tuple[int, ...]:
        """Per-image shape of :meth:`cache` (its dtype is the compute dtype)."""
        ft = self.finetune
        if ft.mode == "frozen":
            return (self.feature_size,)
        if ft.mode == "full":
            raise ValueError("nothing can be cached under full fine-tuning")
        start = self.cache_point()
        return ((1 + len(self._early_layers(start))) * self.num_tokens, self.vit.hidden_size)

    def cache(self, images: jax.Array) -> jax.Array:
        """What stays fixed under the encoder's ``finetune``: compute once per frame and store
        (e.g. in replay), then :meth:`from_cache` gives exactly ``self(images)``."""
        start = self.cache_point()
        if start is None:
            raise ValueError("nothing can be cached under full fine-tuning")
        if self.finetune.mode == "frozen":
            return self.frozen_features(images)
        return self.trunk(images, start)

    def from_cache(self, cached: jax.Array) -> jax.Array:
        """The encoder output from :meth:`cache`'s result (gradients stop at the cache)."""
        start = self.cache_point()
        if start is None:
            raise ValueError("nothing can be cached under full fine-tuning")
        if self.finetune.mode == "frozen":
            shape = tuple(jnp.shape(cached))
            if not shape or shape[-1] != self.feature_size:
                raise ValueError(
                    f"cached features must be [..., {self.feature_size}], got shape {shape}"
                )
            return self.head(_sg(cached))
        return self.resume(_sg(cached), start)
