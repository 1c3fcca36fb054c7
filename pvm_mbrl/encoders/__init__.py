"""Image encoders behind one protocol: an NNX module mapping uint8 images ``[..., H, W, 3]`` to
features ``[..., output_size]``.

``make(name, image_shape, rngs=..., **options)`` builds a registered encoder; ``register`` adds
one. ``"cnn"`` is DreamerV3's baseline CNN (:mod:`pvm_mbrl.encoders.cnn`).
"""

from __future__ import annotations

from collections.abc import Callable

from flax import nnx

from pvm_mbrl.encoders.cnn import CNNEncoder

_REGISTRY: dict[str, Callable[..., nnx.Module]] = {"cnn": CNNEncoder}


def register(name: str, factory: Callable[..., nnx.Module]) -> None:
    """Register ``factory(image_shape, *, rngs, **options) -> encoder`` under ``name``."""
    _REGISTRY[name] = factory


def registered() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def make(name: str, image_shape: tuple[int, int, int], *, rngs: nnx.Rngs, **options) -> nnx.Module:
    """Build encoder ``name`` for images of ``image_shape`` (H, W, C)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown encoder {name!r}; registered: {', '.join(registered())}")
    return _REGISTRY[name](tuple(image_shape), rngs=rngs, **options)


__all__ = ["CNNEncoder", "make", "register", "registered"]
