"""The importance interface: ``Importance(dep, group) -> one score per unit``.

An importance may need the model's weights or data; :meth:`Importance.prepare`
is called once per pruning round with the current model, and every group is
then scored from what it computed. Higher score = more important = kept.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tf_gpp.data.intake import TaskInfo, as_dataset
from tf_gpp.errors import DataError
from tf_gpp.graph.dependency import ChannelGroup, DependencyGraph
from tf_gpp.handlers import get_handler


class Importance:
    """Base class of channel importance criteria."""

    name = "importance"
    requires_data = False
    _scores_consumers = False  # True: consumers' channel scores count too (e.g. BN scale)

    def prepare(self, model: keras.Model, dep: DependencyGraph, data: Any = None) -> None:
        """Compute what scoring needs (weights statistics, gradients...) for ``model``."""

    def channel_scores(self, layer: str) -> np.ndarray | None:
        """Score of each output channel of ``layer`` (None: not scored by this criterion)."""
        return None

    def unit_scores(self, dep: DependencyGraph, layer: str, key: str) -> np.ndarray | None:
        """Score of each unit ``key`` inside ``layer`` (attention heads: ``ChannelGroup.internal``).
        Default: the units' L1 norm, so a criterion that scores only channels still ranks them."""
        op = dep.graph.op(layer)
        return get_handler(op).unit_l1(op, key)

    def __call__(self, dep: DependencyGraph, group: ChannelGroup) -> np.ndarray:
        """One non-negative score per unit of ``group`` (sum over its producers' channels)."""
        out = np.zeros(group.size)
        for layer in group.layers:
            key = group.internal.get(layer)
            scores = self.unit_scores(dep, layer, key) if key else self.channel_scores(layer)
            if scores is None or (layer not in group.producers and not self._scores_consumers):
                continue
            for i, pos in enumerate(group.channels(layer)):
                out[i] += float(np.sum(scores[pos]))
        return out

    def get_config(self) -> dict:
        return {}

    @classmethod
    def from_config(cls, config: dict) -> Importance:
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def as_batches(
    data: Any, batch_size: int = 64, max_batches: int | None = None, model: keras.Model | None = None
) -> list[tuple[Any, Any]]:
    """Up to ``max_batches`` (x, y) batches of any form :func:`tf_gpp.data.as_dataset` accepts
    (with ``model``: dict elements mapped, unbatched datasets batched, shapes checked)."""
    if data is None:
        raise DataError("this importance needs data: pass (x, y) arrays or a tf.data.Dataset of (x, y)")
    if isinstance(data, list) and data and all(isinstance(b, tuple) and len(b) in (2, 3) for b in data):
        out = [(b[0], b[1]) for b in data]  # already batches
    else:
        out = []
        for batch in as_dataset(data, batch_size=batch_size, model=model, what="data", max_batches=max_batches):
            out.append((batch[0], batch[1]))
            if max_batches is not None and len(out) >= max_batches:
                break
    out = out[:max_batches] if max_batches is not None else out
    if not out:
        raise DataError("the dataset is empty: give at least one (x, y) batch")
    return out


def per_class_sample(
    data: Any, task: TaskInfo | int, per_class: int, batch_size: int = 64
) -> list[tuple[Any, np.ndarray]]:
    """A few samples of every class (the paper's back-tracing set), as ``(x, class index)``
    batches; ``x`` keeps its structure (list/dict inputs of multi-input models)."""
    if not isinstance(task, TaskInfo):
        task = TaskInfo("sparse", int(task), False)
    picked: list[Any] = []
    ys: list[int] = []
    counts = np.zeros(task.num_classes, dtype=int)
    for x, y in as_batches(data, batch_size):
        labels = task.class_indices(tf.nest.map_structure(np.asarray, y))
        xs = tf.nest.map_structure(np.asarray, x)
        for i, c in enumerate(labels.tolist()):
            if 0 <= c < task.num_classes and counts[c] < per_class:
                counts[c] += 1
                picked.append(tf.nest.map_structure(lambda a, i=i: a[i], xs))
                ys.append(c)
        if counts.min() >= per_class:
            break
    if not picked:
        raise DataError("the data holds no labelled samples to trace utilities back from")
    x = tf.nest.map_structure(lambda *rows: np.stack(rows), *picked)
    y = np.asarray(ys)
    return [
        (tf.nest.map_structure(lambda a, i=i: a[i : i + batch_size], x), y[i : i + batch_size])
        for i in range(0, len(y), batch_size)
    ]
