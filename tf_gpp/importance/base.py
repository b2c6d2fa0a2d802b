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

from tf_gpp.errors import DataError
from tf_gpp.graph.dependency import ChannelGroup, DependencyGraph


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

    def __call__(self, dep: DependencyGraph, group: ChannelGroup) -> np.ndarray:
        """One non-negative score per unit of ``group`` (sum over its producers' channels)."""
        out = np.zeros(group.size)
        for layer in group.layers:
            scores = self.channel_scores(layer)
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


def as_batches(data: Any, batch_size: int = 64, max_batches: int | None = None) -> list[tuple[Any, Any]]:
    """Up to ``max_batches`` (x, y) batches from a dataset or an (x, y) tuple of arrays."""
    if data is None:
        raise DataError("this importance needs data: pass (x, y) arrays or a tf.data.Dataset of (x, y)")
    if isinstance(data, list) and data and isinstance(data[0], tuple):
        return data[:max_batches] if max_batches is not None else data  # already batches
    if isinstance(data, tf.data.Dataset):
        ds = data
    elif isinstance(data, tuple | list) and len(data) >= 2:
        x, y = np.asarray(data[0]), np.asarray(data[1])
        if len(x) == 0:
            raise DataError("the data is empty: give at least one (x, y) sample")
        ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
    else:
        raise DataError(
            f"data must be an (x, y) tuple of arrays or a tf.data.Dataset of (x, y), got {type(data).__name__}"
        )
    out = []
    for batch in ds:
        out.append((batch[0], batch[1]))
        if max_batches is not None and len(out) >= max_batches:
            break
    if not out:
        raise DataError("the dataset is empty: give at least one (x, y) batch")
    return out


def per_class_sample(data: Any, num_classes: int, per_class: int, batch_size: int = 64) -> list[tuple[Any, Any]]:
    """A few samples of every class (the paper's back-tracing set), as batches."""
    xs, ys, counts = [], [], np.zeros(num_classes, dtype=int)
    for x, y in as_batches(data, batch_size):
        y_np = np.asarray(y)
        labels = y_np.argmax(-1) if y_np.ndim > 1 else y_np.astype(int)
        for i, c in enumerate(labels.tolist()):
            if 0 <= c < num_classes and counts[c] < per_class:
                counts[c] += 1
                xs.append(np.asarray(x[i]))
                ys.append(c)
        if counts.min() >= per_class:
            break
    x = np.stack(xs)
    y = np.asarray(ys)
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size)]
