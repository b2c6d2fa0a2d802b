"""Discriminant statistics, LDA and per-neuron utility of a network's feature layer.

>>> stats = ScatterStats.accumulate(feature_model(model), (x, y), num_classes=10)
>>> u = neuron_utility(stats, "fisher")      # or "lda"
>>> top_share(u, 0.25)                       # how concentrated the discriminant power is
"""

from tf_gpp.data.labels import as_class_indices, as_feature_matrix
from tf_gpp.discriminant.features import (
    feature_model,
    feature_tensor,
    find_feature_layer,
    model_inputs,
)
from tf_gpp.discriminant.lda import active_neurons, lda, require_two_classes, shrinkage
from tf_gpp.discriminant.moments import batch_moments, distributed_moments_fn
from tf_gpp.discriminant.stats import ScatterStats
from tf_gpp.discriminant.utility import UTILITY_METHODS, fisher_ratio, neuron_utility, top_share

__all__ = [
    "ScatterStats",
    "lda",
    "neuron_utility",
    "fisher_ratio",
    "top_share",
    "UTILITY_METHODS",
    "active_neurons",
    "shrinkage",
    "require_two_classes",
    "batch_moments",
    "distributed_moments_fn",
    "find_feature_layer",
    "feature_model",
    "feature_tensor",
    "model_inputs",
    "as_class_indices",
    "as_feature_matrix",
]
