"""First-order Taylor / Fisher importance (Molchanov et al. 2017, 2019).

A channel's importance is the squared first-order change of the task loss
when it is removed: ``(sum over positions of A * dL/dA)^2``, averaged over
mini-batches. Coupled channels sum their members (the group Fisher).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tf_gpp.graph.dependency import DependencyGraph
from tf_gpp.importance.base import Importance, as_batches
from tf_gpp.importance.gates import gate_gradients, gated_model


def outputs_are_probabilities(model: keras.Model) -> bool:
    """Whether the (single) output already went through a softmax."""
    layer = model.layers[-1]
    act = getattr(layer, "activation", None)
    name = getattr(act, "__name__", "") if act is not None else ""
    return isinstance(layer, keras.layers.Softmax) or name == "softmax"


def classification_loss(model: keras.Model, y: Any, out: Any) -> Any:
    """Mean cross-entropy for sparse or one-hot labels, logits or probabilities."""
    from_logits = not outputs_are_probabilities(model)
    y = tf.convert_to_tensor(y)
    if y.shape.rank is not None and y.shape.rank >= 2 and y.shape[-1] == out.shape[-1]:
        return tf.reduce_mean(keras.losses.categorical_crossentropy(y, out, from_logits=from_logits))
    return tf.reduce_mean(
        keras.losses.sparse_categorical_crossentropy(tf.cast(y, "int32"), out, from_logits=from_logits)
    )


class Taylor(Importance):
    """Squared first-order Taylor term of the loss per channel, mean over batches."""

    name = "taylor"
    requires_data = True

    def __init__(self, max_batches: int = 16, batch_size: int = 64) -> None:
        self.max_batches = max_batches
        self.batch_size = batch_size

    def prepare(self, model: keras.Model, dep: DependencyGraph, data: Any = None) -> None:
        producers = sorted({p for g in dep.groups for p in g.producers})
        gated, gates = gated_model(dep, producers)
        batches = as_batches(data, self.batch_size, self.max_batches)

        def objective(outputs, x, y):
            out = outputs[0] if isinstance(outputs, list | tuple) else outputs
            return classification_loss(dep.graph.model, y, out)

        self._scores = gate_gradients(gated, gates, objective, batches, reduce=np.square)

    def channel_scores(self, layer: str) -> np.ndarray | None:
        return self._scores.get(layer)

    def get_config(self) -> dict:
        return {"max_batches": self.max_batches, "batch_size": self.batch_size}
