"""Analyses of the study's encoders: the attention-mask Jaccard index (:mod:`.attention`, with
ground-truth object masks from :mod:`.masks`) and the k-NN forgetting probe (:mod:`.knn`, with
labelled images from :mod:`.datasets`)."""

from pvm_mbrl.analysis._common import with_params
from pvm_mbrl.analysis.attention import (
    attention_jaccard,
    attention_mask,
    cls_attention,
    jaccard,
    patch_fractions,
    patch_mask,
    upsample_patch_mask,
)
from pvm_mbrl.analysis.datasets import ImageDataset, load_image_folder, rendered_object_dataset
from pvm_mbrl.analysis.knn import (
    cls_features,
    forgetting,
    knn_accuracy,
    knn_accuracy_loo,
    knn_predict,
)
from pvm_mbrl.analysis.masks import object_geom_ids, object_masks, render_output

__all__ = [
    "ImageDataset",
    "attention_jaccard",
    "attention_mask",
    "cls_attention",
    "cls_features",
    "forgetting",
    "jaccard",
    "knn_accuracy",
    "knn_accuracy_loo",
    "knn_predict",
    "load_image_folder",
    "object_geom_ids",
    "object_masks",
    "patch_fractions",
    "patch_mask",
    "render_output",
    "rendered_object_dataset",
    "upsample_patch_mask",
    "with_params",
]
