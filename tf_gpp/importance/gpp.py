"""``importance="gpp_grad"`` (and ``"gpp_lda"``, ``"gpp_linear"``): discriminant utility of the
feature layer, traced back to every group by first-order contributions (ours). The CVIU paper's
pipeline, ``importance="gpp"``, is :mod:`.cviu`.

1. Statistics of the feature layer (last hidden layer) over the data give a
   per-neuron utility ``u`` (``fisher``: diagonal Fisher ratio, the CVIU paper;
   ``lda``: eigenvalue-weighted LDA loadings).
2. ``u`` is traced back to every earlier channel as the first-order
   contribution of that channel to the utility-weighted features
   ``S = sum_j u_j f_j`` (read with channel gates, :mod:`.gates`):

   * ``deconv`` (data-driven, the paper's transposed pass): on a few images per
     class, through the real network — the backward pass uses the forward
     pass's ReLU gates and max-pool switches, as the paper's unpooling does —
     ``|sum over positions of A * dS/dA|``, averaged over the images.
     (Choice: we sum over positions rather than take the max, so a channel's
     whole map counts; see docs/method.md.)
   * ``linear`` (data-free): the same read on a copy of the network with
     ``|W|`` kernels, ``|gamma|/sigma`` BatchNorm, zero biases and a constant
     small input — exactly proportional propagation of ``u`` through ``|W|``.

Coupled channels (a residual ``Add``, a concatenation) sum their members.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from tf_gpp.data.intake import labelled_batches
from tf_gpp.discriminant import ScatterStats, feature_model, find_feature_layer, neuron_utility
from tf_gpp.errors import ArgumentError, DataError
from tf_gpp.graph.dependency import DependencyGraph
from tf_gpp.importance.base import per_class_sample
from tf_gpp.importance.gates import ChannelGate, GatedImportance, gate_gradients, gated_model

UTILITIES = ("fisher", "lda")
TRACES = ("deconv", "linear")


def _absolute_copy(model: keras.Model) -> None:
    """In place: |W| kernels, zero biases/shifts, |gamma| — a non-negative linear surrogate."""
    for layer in model.layers:
        if isinstance(layer, ChannelGate) or not layer.weights:
            continue
        values = []
        for v, w in zip(layer.weights, layer.get_weights(), strict=True):
            name = v.name.split("/")[-1]
            if name in ("bias", "beta", "moving_mean"):
                values.append(np.zeros_like(w))
            elif name == "moving_variance":
                values.append(w)
            else:
                values.append(np.abs(w))
        layer.set_weights(values)


def _constant_probe(model: keras.Model) -> Any:
    """One small constant sample for every input of ``model`` (a dict by name for several)."""
    arrays = {
        t.name: np.full((1, *(d or 1 for d in t.shape[1:])), 1e-3 if "float" in str(t.dtype) else 0,
                        dtype=str(t.dtype))
        for t in model.inputs
    }
    return next(iter(arrays.values())) if len(arrays) == 1 else arrays


class GPPUtility(GatedImportance):
    """Discriminant utility of the last hidden layer, traced back through the network."""

    name = "gpp_grad"
    requires_data = True

    def __init__(
        self,
        utility: str = "fisher",
        trace: str = "deconv",
        feature_layer: str | None = None,
        images_per_class: int = 8,
        eps: float = 1e-3,
        stats_batches: int | None = None,
        output: str | None = None,
    ) -> None:
        if utility not in UTILITIES:
            raise ArgumentError(f"GPPUtility(utility={utility!r}): choose one of {UTILITIES}")
        if trace not in TRACES:
            raise ArgumentError(f"GPPUtility(trace={trace!r}): choose one of {TRACES}")
        self.utility = utility
        self.trace = trace
        self.feature_layer = feature_layer
        self.images_per_class = images_per_class
        self.eps = eps
        self.stats_batches = stats_batches
        self.output = output  # the classifier output of a multi-output model
        self.final_utility: np.ndarray | None = None

    def prepare(self, model: keras.Model, dep: DependencyGraph, data: Any = None) -> None:
        if data is None:
            raise DataError("GPPUtility needs labelled data (x, y) to measure the discriminant utility")
        fmodel = dep.graph.model
        batches, task = labelled_batches(fmodel, data, batch_size=256, max_batches=self.stats_batches,
                                         output=self.output)
        feature = self.feature_layer or find_feature_layer(fmodel, output=task.output)
        stats = ScatterStats(task.num_classes, full=self.utility == "lda")
        feats = feature_model(fmodel, feature)
        for x, y in batches:
            stats.update(np.asarray(feats(x, training=False)), task.class_indices(y))
        u = neuron_utility(stats, self.utility, self.eps)
        if not u.sum() > 0:
            raise DataError(
                f"feature layer {feature!r} carries no discriminant information on this data (every "
                "neuron is constant or class-blind), so there is nothing to trace back; train the "
                "model first, or check that the inputs vary and the labels match them."
            )
        self.final_utility = u
        weights = (u / u.sum() if u.sum() > 0 else u).astype("float32")
        producers = sorted({p for g in dep.groups for p in g.producers} | {feature})
        gated, gates = gated_model(dep, producers, feature_layer=feature)

        def objective(outputs, x, y):
            return keras.ops.sum(outputs[-1] * weights)

        if self.trace == "linear":
            _absolute_copy(gated)
            probe = [(_constant_probe(fmodel), np.zeros(1))]
            self._scores = gate_gradients(gated, gates, objective, probe)
        else:
            sample = per_class_sample(batches, task, self.images_per_class)
            self._scores = gate_gradients(gated, gates, objective, sample)

    def get_config(self) -> dict:
        return {
            "utility": self.utility,
            "trace": self.trace,
            "feature_layer": self.feature_layer,
            "images_per_class": self.images_per_class,
            "eps": self.eps,
            "stats_batches": self.stats_batches,
            "output": self.output,
        }
