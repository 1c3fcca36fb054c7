"""Forgetting probe: k-NN classification accuracy of a ViT's CLS features, before and after
fine-tuning (the study reports 66% -> 5% for full fine-tuning).

Definitions:

- **Features** (:func:`cls_features`): the ViT's pooled output on the encoder's preprocessing:
  DINOv2's CLS token after the final LayerNorm, CLIP's ``post_layernorm`` of the CLS token.
- **Similarity**: cosine, i.e. dot products of L2-normalised features (a zero vector has
  similarity 0 to everything).
- **Neighbours**: the ``k`` (default 5) most similar training samples; equal similarities are
  ranked by lower training index (``jax.lax.top_k``'s order).
- **Vote**: the class with the most neighbours wins; a tie goes to the tied class holding the
  highest-ranked (most similar) neighbour, so the prediction is deterministic.
- **Protocol** (:func:`forgetting`): leave-one-out over the whole dataset (each image is
  classified by its ``k`` nearest *other* images), so no split is drawn and every image counts;
  :func:`knn_accuracy` also takes an explicit train/test split.

Labels are ints in ``0 .. num_classes - 1``. The k-NN functions are pure JAX (jittable with a
static ``num_classes``); features are computed on the host in jitted batches.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from pvm_mbrl.analysis._common import Model, map_batches, with_params
from pvm_mbrl.analysis.datasets import ImageDataset


def cls_features(model: Model, images: Any, batch_size: int = 64) -> np.ndarray:
    """float32 ``[N, D]`` CLS features (module docs) of uint8 ``images [N, H, W, 3]`` for a
    :class:`~pvm_mbrl.encoders.ViT` (resized to its native size) or a
    :class:`~pvm_mbrl.encoders.PVMEncoder` (resized to its ``input_size``, as the encoder does)."""
    return map_batches(model, images, "pooled", batch_size=batch_size)


def _check(feats, labels, prefix: str) -> tuple[jnp.ndarray, jnp.ndarray]:
    feats, labels = jnp.asarray(feats), jnp.asarray(labels)
    if feats.ndim != 2 or not jnp.issubdtype(feats.dtype, jnp.floating):
        raise ValueError(f"{prefix}feats must be float [N, D], got {feats.dtype} {feats.shape}")
    if labels.shape != feats.shape[:1] or not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(
            f"{prefix}labels must be int [{feats.shape[0]}], got {labels.dtype} {labels.shape}"
        )
    return feats, labels


def _num_classes(num_classes: int | None, *labels) -> int:
    if num_classes is not None:
        return int(num_classes)
    try:
        return int(max(int(np.max(np.asarray(x))) for x in labels)) + 1
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError) as e:
        raise ValueError("pass num_classes when calling the k-NN functions under jit") from e


def _normalise(x: jnp.ndarray) -> jnp.ndarray:
    x = x.astype(jnp.float32)
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _vote(sim: jnp.ndarray, train_labels: jnp.ndarray, k: int, num_classes: int) -> jnp.ndarray:
    """Predictions ``[M]`` from similarities ``[M, N]`` (module docs for the tie-break)."""
    _, idx = jax.lax.top_k(sim, k)  # [M, k], most similar first, ties by lower index
    onehot = train_labels[idx][..., None] == jnp.arange(num_classes)  # [M, k, C]
    votes = onehot.sum(1)
    first = jnp.where(onehot, jnp.arange(k)[:, None], k).min(1)  # rank of a class's best
    # votes dominate (k - first <= k < k + 1); among equal votes the best-ranked class wins.
    return jnp.argmax(votes * (k + 1) + (k - first), axis=-1)


def knn_predict(
    train_feats: Any,
    train_labels: Any,
    test_feats: Any,
    k: int = 5,
    num_classes: int | None = None,
    *,
    exclude_self: bool = False,
) -> jnp.ndarray:
    """int ``[M]`` k-NN predictions for ``test_feats [M, D]`` from ``train_feats [N, D]`` and
    ``train_labels [N]`` (module docs). ``exclude_self=True`` (test set = train set) never counts
    sample ``i`` as its own neighbour (leave-one-out). ``num_classes`` defaults to
    ``max(train_labels) + 1`` (needs concrete labels)."""
    train_feats, train_labels = _check(train_feats, train_labels, "train_")
    test_feats = jnp.asarray(test_feats)
    if test_feats.ndim != 2 or test_feats.shape[1] != train_feats.shape[1]:
        raise ValueError(
            f"test_feats must be [M, {train_feats.shape[1]}] like train_feats, "
            f"got {test_feats.shape}"
        )
    n = train_feats.shape[0] - int(exclude_self)
    if not 1 <= int(k) <= n:
        raise ValueError(f"k must be in [1, {n}] (training samples available), got {k}")
    if exclude_self and test_feats.shape[0] != train_feats.shape[0]:
        raise ValueError("exclude_self needs the test set to be the training set")
    c = _num_classes(num_classes, train_labels)
    return _predict(train_feats, train_labels, test_feats, int(k), c, bool(exclude_self))


@functools.partial(jax.jit, static_argnums=(3, 4, 5))
def _predict(train_feats, train_labels, test_feats, k, num_classes, exclude_self):
    sim = jnp.matmul(_normalise(test_feats), _normalise(train_feats).T, precision="highest")
    if exclude_self:
        sim = jnp.where(jnp.eye(sim.shape[0], dtype=bool), -jnp.inf, sim)
    return _vote(sim, train_labels, k, num_classes)


def knn_accuracy(
    train_feats: Any,
    train_labels: Any,
    test_feats: Any,
    test_labels: Any,
    k: int = 5,
    num_classes: int | None = None,
) -> jnp.ndarray:
    """Share of ``test_feats`` whose k-NN prediction (:func:`knn_predict`) equals
    ``test_labels`` (float32 scalar)."""
    test_feats, test_labels = _check(test_feats, test_labels, "test_")
    c = _num_classes(num_classes, train_labels, test_labels)
    pred = knn_predict(train_feats, train_labels, test_feats, k, c)
    return jnp.mean(pred == test_labels).astype(jnp.float32)


def knn_accuracy_loo(feats: Any, labels: Any, k: int = 5, num_classes: int | None = None):
    """Leave-one-out k-NN accuracy of ``feats [N, D]`` with ``labels [N]`` (float32 scalar):
    each sample is classified by its ``k`` nearest other samples."""
    feats, labels = _check(feats, labels, "")
    pred = knn_predict(feats, labels, feats, k, num_classes, exclude_self=True)
    return jnp.mean(pred == labels).astype(jnp.float32)


def forgetting(
    original: Model,
    finetuned: Any,
    dataset: ImageDataset | tuple[Any, Any],
    *,
    k: int = 5,
    batch_size: int = 64,
) -> dict[str, float]:
    """Leave-one-out k-NN accuracy of the CLS features (module docs) of ``dataset`` (an
    :class:`ImageDataset` or ``(images, labels)``) with the ``original`` model and the
    ``finetuned`` one: ``{"original": acc, "finetuned": acc}``.

    ``finetuned`` is a PVMEncoder (used as is), or a ViT or its parameters (``nnx.State`` or
    pure dict; a whole encoder's with a ``"vit"`` entry) whose weights go into a copy of
    ``original``, which then also supplies the preprocessing (see :func:`with_params`).
    """
    if isinstance(dataset, ImageDataset):
        images, labels = dataset.images, dataset.labels
    else:
        images, labels = dataset
    labels = np.asarray(labels)
    tuned = with_params(original, finetuned)
    out = {}
    for name, model in (("original", original), ("finetuned", tuned)):
        feats = cls_features(model, images, batch_size)
        out[name] = float(knn_accuracy_loo(feats, labels, k))
    return out
