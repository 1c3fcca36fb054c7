"""Fine-tuning levels of a pre-trained vision model: which weights train, and the optimiser.

A :class:`FineTune` is one of ``frozen``, ``partial(k)`` (or ``partial:k``) and ``full``:

==============  =======================================================================
``frozen``      only the encoder head (RMSNorm scale, projection) trains; the ViT does not
``partial(k)``  the last ``k`` ViT blocks, the final norm (DINOv2 ``layernorm`` / CLIP
                ``post_layernorm``) and the head train; embeddings and earlier blocks do not
``full``        everything trains
==============  =======================================================================

Parameters are told apart by their path inside the encoder (a
:class:`~pvm_mbrl.encoders.pvm.PVMEncoder`): ``vit/blocks/<i>/...``, ``vit/norm/...``, other
``vit/...`` (patch and position embeddings, CLS, registers, CLIP's ``pre_norm``) and the head
(everything outside ``vit``). :meth:`FineTune.trainable_filter` turns that into an NNX filter;
:func:`param_labels` labels every leaf of a whole model's ``nnx.State`` (the encoder found under
a path ``prefix``, ``("encoder",)`` in the agent's ``Networks``) as

- ``"pvm_frozen"``: ViT weights that do not train,
- ``"pvm"``: ViT weights that train (with the PVM learning rate),
- ``"rest"``: everything else, the encoder head included,

and :func:`make_pvm_optimizer` builds an ``optax.multi_transform`` over these labels with
``optax.set_to_zero()`` for ``"pvm_frozen"``: those weights get exact zero updates and no
optimiser state at all. An optional layer-wise learning-rate decay scales the ``"pvm"`` updates
of block ``i`` (of ``n``) by ``decay ** (n - i)``, the embeddings by ``decay ** (n + 1)`` and the
final norm by 1 (BEiT's layer ids: embeddings 0, block ``i`` is ``i + 1``, final norm ``n + 1``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from typing import Any

import jax
import optax

MODES = ("frozen", "partial", "full")
LABELS = ("pvm_frozen", "pvm", "rest")
_PARTIAL = re.compile(r"^partial\s*(?:\(\s*(\d+)\s*\)|:\s*(\d+))$")


def _key(entry: Any) -> str | int:
    """One path entry (an NNX path string/int or a ``jax.tree_util`` key) as a str or int."""
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return getattr(entry, attr)
    return entry


def _path(path: Sequence[Any]) -> tuple[str | int, ...]:
    """A path as plain keys, without the trailing ``value`` of an ``nnx.Variable`` leaf."""
    keys = tuple(_key(p) for p in path)
    if path and isinstance(path[-1], jax.tree_util.GetAttrKey) and keys[-1] == "value":
        keys = keys[:-1]
    return keys


def _strip(path: tuple, prefix: tuple) -> tuple | None:
    """``path`` relative to ``prefix`` (compared as strings), or None when not under it."""
    n = len(prefix)
    if len(path) < n or tuple(map(str, path[:n])) != tuple(map(str, prefix)):
        return None
    return path[n:]


@dataclasses.dataclass(frozen=True)
class FineTune:
    """A fine-tuning level: ``mode`` in :data:`MODES`; ``k`` trainable blocks for ``partial``."""

    mode: str
    k: int = 0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"fine-tuning mode must be one of {MODES}, got {self.mode!r}")
        if self.mode == "partial" and (isinstance(self.k, bool) or int(self.k) < 1):
            raise ValueError(f"partial fine-tuning needs k >= 1 trainable blocks, got {self.k!r}")
        if self.mode != "partial" and self.k:
            raise ValueError(f"only partial fine-tuning takes k, got {self.mode}({self.k})")

    @classmethod
    def parse(cls, spec: str | FineTune, num_layers: int | None = None) -> FineTune:
        """``"frozen"``, ``"full"``, ``"partial(k)"`` or ``"partial:k"`` (or a FineTune), checked
        against ``num_layers`` when given."""
        if isinstance(spec, FineTune):
            out = spec
        elif isinstance(spec, str):
            text = spec.strip().lower()
            match = _PARTIAL.match(text)
            if match:
                out = cls("partial", int(match.group(1) or match.group(2)))
            elif text in ("frozen", "full"):
                out = cls(text)
            else:
                raise ValueError(
                    f"fine-tuning spec must be 'frozen', 'full', 'partial(k)' or 'partial:k', "
                    f"got {spec!r}"
                )
        else:
            raise TypeError(f"fine-tuning spec must be a str or FineTune, got {type(spec)}")
        if num_layers is not None:
            out.check(num_layers)
        return out

    def __str__(self) -> str:
        return f"partial({self.k})" if self.mode == "partial" else self.mode

    def check(self, num_layers: int) -> None:
        """Raise unless ``k`` is in ``1..num_layers`` for ``partial``."""
        if self.mode == "partial" and not 1 <= self.k <= num_layers:
            raise ValueError(
                f"partial(k) needs k in 1..{num_layers} (the ViT's blocks), got {self}"
            )

    def first_trainable_block(self, num_layers: int) -> int:
        """Index of the first trainable block: ``n`` (none) for frozen, ``n - k``, 0 for full."""
        self.check(num_layers)
        return {"frozen": num_layers, "partial": num_layers - self.k, "full": 0}[self.mode]

    def is_trainable(self, path: Sequence[str | int], num_layers: int) -> bool:
        """Whether the encoder parameter at ``path`` (relative to the encoder) trains."""
        path = tuple(path)
        if not path or path[0] != "vit" or self.mode == "full":
            return True  # the head (and whatever else lives outside the ViT), or full
        if self.mode == "frozen":
            return False
        part = path[1] if len(path) > 1 else None
        if part == "blocks":
            return int(path[2]) >= num_layers - self.k
        return part == "norm"

    def trainable_filter(self, encoder, prefix: Sequence[str | int] = ()):
        """NNX filter ``(path, variable) -> bool`` selecting the encoder's trainable ``nnx.Param``s.

        ``prefix`` is the encoder's path in the module the filter is applied to (``()`` for the
        encoder itself, ``("encoder",)`` for the agent's ``Networks``); paths outside it never
        match. Combine with ``nnx.Not`` / ``nnx.Any`` for a whole model.
        """
        return self._filter(encoder, prefix, trainable=True)

    def frozen_filter(self, encoder, prefix: Sequence[str | int] = ()):
        """NNX filter selecting the encoder's ``nnx.Param``s that do not train."""
        return self._filter(encoder, prefix, trainable=False)

    def _filter(self, encoder, prefix, trainable: bool):
        n = _num_layers_of(encoder, self)
        prefix = tuple(prefix)

        def select(path, value) -> bool:
            from flax import nnx

            if not isinstance(value, nnx.Param):
                return False
            rel = _strip(tuple(path), prefix)
            return rel is not None and self.is_trainable(rel, n) == trainable

        return select


def _num_layers_of(encoder, spec: FineTune) -> int:
    vit = getattr(encoder, "vit", None)
    if vit is None:
        if spec.mode != "full":
            raise ValueError(
                f"fine-tuning {spec} needs a PVMEncoder (an encoder with a .vit); "
                f"{type(encoder).__name__} only supports 'full'"
            )
        return 0
    n = vit.num_layers
    spec.check(n)
    return n


def _leaves(params) -> list[tuple[tuple, Any]]:
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    return [(_path(p), leaf) for p, leaf in flat]


def _vit_blocks(paths, prefix: tuple) -> int:
    """Number of ViT blocks found under ``prefix + ("vit", "blocks")`` (0 if none)."""
    found = set()
    for path in paths:
        rel = _strip(path, prefix)
        if rel is not None and len(rel) > 2 and rel[:2] == ("vit", "blocks"):
            found.add(int(rel[2]))
    if found and found != set(range(len(found))):
        raise ValueError(f"ViT blocks under {prefix} are not numbered 0..n-1: {sorted(found)}")
    return len(found)


def param_labels(params, spec: str | FineTune, prefix: Sequence[str | int] = ("encoder",)):
    """Labels (``"pvm_frozen"`` / ``"pvm"`` / ``"rest"``) for every leaf of ``params``.

    ``params`` is the ``nnx.State`` (or any pytree keyed the same way, abstract shapes are fine)
    of a model holding a :class:`~pvm_mbrl.encoders.pvm.PVMEncoder` at ``prefix``; the result
    has the same structure with a label in place of each array, ready for
    ``optax.multi_transform`` (see :func:`make_pvm_optimizer`).
    """
    prefix = tuple(prefix)
    leaves = _leaves(params)
    n = _vit_blocks([p for p, _ in leaves], prefix)
    if not n:
        tops = sorted({str(p[0]) for p, _ in leaves if p})
        raise ValueError(
            f"no ViT blocks under {'/'.join(map(str, (*prefix, 'vit', 'blocks')))} in the params; "
            f"top-level keys: {tops}"
        )
    spec = FineTune.parse(spec, n)

    def label(path, _) -> str:
        rel = _strip(_path(path), prefix)
        if rel is None or not rel or rel[0] != "vit":
            return "rest"
        return "pvm" if spec.is_trainable(rel, n) else "pvm_frozen"

    return jax.tree_util.tree_map_with_path(label, params)


def layer_decay_factor(rel_path: Sequence[str | int], num_layers: int, decay: float) -> float:
    """Learning-rate factor of the ViT parameter at ``rel_path`` (relative to the encoder)."""
    rel = tuple(rel_path)
    part = rel[1] if len(rel) > 1 else None
    if part == "blocks":
        return decay ** (num_layers - int(rel[2]))
    if part == "norm":
        return 1.0
    return decay ** (num_layers + 1)


def scale_by_layer_decay(
    decay: float, num_layers: int, prefix: Sequence[str | int] = ("encoder",)
) -> optax.GradientTransformation:
    """Multiply each update under ``prefix + ("vit",)`` by :func:`layer_decay_factor`.

    Stateless; works inside ``optax.multi_transform`` (masked-out leaves have no array, so
    they are skipped).
    """
    prefix = tuple(prefix)

    def update_fn(updates, state, params=None):
        def scale(path, u):
            rel = _strip(_path(path), prefix)
            if rel is None or not rel or rel[0] != "vit":
                return u
            return u * layer_decay_factor(rel, num_layers, decay)

        return jax.tree_util.tree_map_with_path(scale, updates), state

    return optax.GradientTransformation(optax.init_empty_state, update_fn)


def make_pvm_optimizer(
    base_tx: optax.GradientTransformation,
    pvm_tx: optax.GradientTransformation,
    labels,
    *,
    layer_decay: float | None = None,
    prefix: Sequence[str | int] = ("encoder",),
) -> optax.GradientTransformation:
    """``optax.multi_transform``: ``base_tx`` for ``"rest"``, ``pvm_tx`` for ``"pvm"`` and
    ``optax.set_to_zero()`` (no state) for ``"pvm_frozen"``.

    ``labels`` comes from :func:`param_labels`. ``layer_decay`` in ``(0, 1]`` additionally scales
    the ``"pvm"`` updates layer by layer (see :func:`layer_decay_factor`); it needs the same
    ``prefix`` as the labels. Usually ``pvm_tx`` is ``base_tx``'s chain with a smaller learning
    rate (the study: 4e-6 for the PVM, 4e-5 for the rest).
    """
    if layer_decay is not None:
        if not (math.isfinite(layer_decay) and 0 < layer_decay <= 1):
            raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}")
        n = _vit_blocks([p for p, _ in _leaves(labels)], tuple(prefix))
        if not n:
            raise ValueError(f"layer_decay needs ViT blocks under {tuple(prefix)} in the labels")
        pvm_tx = optax.chain(pvm_tx, scale_by_layer_decay(layer_decay, n, prefix))
    transforms = {"rest": base_tx, "pvm": pvm_tx, "pvm_frozen": optax.set_to_zero()}
    return optax.multi_transform(transforms, labels)
