"""First-order Taylor / Fisher importance (Molchanov et al. 2017, 2019).

A channel's importance is the squared first-order change of the task loss
when it is removed: ``(sum over positions of A * dL/dA)^2``, averaged over
mini-batches. Coupled channels sum their members (the group Fisher).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from tf_gpp.data.intake import TaskInfo, infer_task, labelled_batches, output_is_probability
from tf_gpp.graph.dependency import DependencyGraph
from tf_gpp.importance.gates import GatedImportance, gate_gradients, gated_model


def outputs_are_probabilities(model: keras.Model, index: int = 0) -> bool:
    """Whether output ``index`` already went through a softmax or sigmoid (else: logits)."""
    return output_is_probability(model, index)


def classifier_output(outputs: Any, task: TaskInfo) -> Any:
    """The classifier's tensor among a model's ``outputs`` (a tensor, list or dict)."""
    if isinstance(outputs, dict):
        return outputs[task.output]
    if isinstance(outputs, list | tuple):
        return outputs[task.output_index]
    return outputs


def classification_loss(model: keras.Model, y: Any, out: Any, task: TaskInfo | None = None) -> Any:
    """Mean cross-entropy of the classifier output ``out`` for labels ``y`` (sparse, one-hot
    or binary; logits or probabilities), as :meth:`TaskInfo.loss` defines it."""
    task = task or infer_task(model, y)
    return task.loss()(task.labels(y), out)


class Taylor(GatedImportance):
    """Squared first-order Taylor term of the loss per channel, mean over batches."""

    name = "taylor"
    requires_data = True

    def __init__(self, max_batches: int = 16, batch_size: int = 64, output: str | None = None) -> None:
        self.max_batches = max_batches
        self.batch_size = batch_size
        self.output = output  # the classifier output of a multi-output model

    def prepare(self, model: keras.Model, dep: DependencyGraph, data: Any = None) -> None:
        producers = sorted({p for g in dep.groups for p in g.producers})
        gated, gates = gated_model(dep, producers)
        batches, task = labelled_batches(dep.graph.model, data, batch_size=self.batch_size,
                                         max_batches=self.max_batches, output=self.output)

        def objective(outputs, x, y):
            return classification_loss(dep.graph.model, y, classifier_output(outputs, task), task)

        self._scores = gate_gradients(gated, gates, objective, batches, reduce=np.square)

    def get_config(self) -> dict:
        return {"max_batches": self.max_batches, "batch_size": self.batch_size, "output": self.output}
