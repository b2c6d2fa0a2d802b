"""TF-side sufficient statistics of one batch, reducible with ``strategy.reduce(SUM)``.

Each replica computes, in float64 and relative to a per-class *shift* K (the
running class means, broadcast to every replica)::

    count_c = n_c                         (C,)
    sum_c   = sum_{i in c} (x_i - K_c)    (C, M)
    cross   = sum_i (x_i - K_{y_i})(x_i - K_{y_i})^T   (M, M), or its diagonal (M,)

All three are plain sums over samples, so the replicas' parts add up exactly;
:meth:`ScatterStats.from_moments` turns the reduced sums into a batch
``ScatterStats`` (``Sw = cross - sum_c sum_c sum_c^T / n_c``), which is then
merged into the running statistics with Chan's update. Shifting by the running
class means keeps the subtraction well conditioned after the first batch (the
shifted-data variance algorithm).

Rows whose label is invalid (non-integral, out of range) or whose features are
not finite are excluded from the sums and counted in ``invalid_labels`` /
``nonfinite_rows`` so the caller can raise a :class:`~tf_gpp.errors.DataError`.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from tf_gpp.errors import DataError

__all__ = ["batch_moments", "distributed_moments_fn"]


def _class_indices(labels: tf.Tensor, num_classes: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Sparse indices (int32) and a float64 validity mask for labels of any accepted form."""
    labels = tf.convert_to_tensor(labels)
    rank = labels.shape.rank
    if rank == 2 and labels.shape[-1] == 1:
        labels = labels[:, 0]
        rank = 1
    if rank == 2:
        if labels.shape[-1] is not None and labels.shape[-1] != num_classes:
            raise DataError(
                f"one-hot labels have width {labels.shape[-1]} but num_classes={num_classes}."
            )
        idx = tf.argmax(labels, axis=-1, output_type=tf.int32)
        valid = tf.ones_like(idx, dtype=tf.bool)
        if labels.dtype.is_floating:
            valid = tf.reduce_all(tf.math.is_finite(labels), axis=-1)
        return idx, tf.cast(valid, tf.float64)
    if rank != 1:
        raise DataError(
            f"labels have shape {labels.shape}; expected class indices (B,) or one-hot (B, C)."
        )
    as_float = tf.cast(labels, tf.float64)
    rounded = tf.round(as_float)
    valid = (
        tf.math.is_finite(as_float)
        & tf.equal(rounded, as_float)
        & (rounded >= 0.0)
        & (rounded < float(num_classes))
    )
    idx = tf.cast(tf.where(valid, rounded, tf.zeros_like(rounded)), tf.int32)
    return idx, tf.cast(valid, tf.float64)


def batch_moments(
    features: tf.Tensor,
    labels: tf.Tensor,
    num_classes: int,
    shift: tf.Tensor | None = None,
    full: bool = True,
) -> dict[str, tf.Tensor]:
    """SUM-reducible float64 moments of one batch (see the module docstring).

    Args:
        features: ``(B, M)`` activations of the feature layer.
        labels: class indices ``(B,)``/``(B, 1)`` or one-hot ``(B, C)``.
        num_classes: C.
        shift: ``(C, M)`` per-class shift (running class means); zeros if ``None``.
        full: compute the full ``(M, M)`` cross-product, else only its diagonal.

    Returns:
        dict with ``count (C,)``, ``sum (C, M)``, ``cross``, ``rows``,
        ``invalid_labels`` and ``nonfinite_rows`` (scalars), all float64.
    """
    f = tf.convert_to_tensor(features)
    if f.shape.rank != 2:
        raise DataError(
            f"features have shape {f.shape}; expected (B, M). Use the layer after global "
            "pooling or Flatten as the feature layer."
        )
    f = tf.cast(f, tf.float64)
    idx, valid = _class_indices(labels, num_classes)
    finite = tf.cast(tf.reduce_all(tf.math.is_finite(f), axis=1), tf.float64)
    keep = valid * finite
    f = tf.where(keep[:, None] > 0.0, f, tf.zeros_like(f))
    onehot = tf.one_hot(idx, num_classes, dtype=tf.float64) * keep[:, None]
    if shift is None:
        d = f
    else:
        d = f - tf.matmul(onehot, tf.cast(shift, tf.float64))
    d = d * keep[:, None]
    rows = tf.cast(tf.shape(f)[0], tf.float64)
    cross = tf.matmul(d, d, transpose_a=True) if full else tf.reduce_sum(d * d, axis=0)
    return {
        "count": tf.reduce_sum(onehot, axis=0),
        "sum": tf.matmul(onehot, d, transpose_a=True),
        "cross": cross,
        "rows": rows,
        "invalid_labels": rows - tf.reduce_sum(valid),
        "nonfinite_rows": rows - tf.reduce_sum(finite),
    }


def distributed_moments_fn(
    strategy: tf.distribute.Strategy,
    feature_fn: Callable[[object], tf.Tensor],
    num_classes: int,
    full: bool = True,
) -> Callable[[object, object, tf.Tensor], dict[str, tf.Tensor]]:
    """A compiled step ``(x, y, shift) -> moments`` summed over ``strategy``'s replicas.

    ``x, y`` are per-replica values from ``strategy.experimental_distribute_dataset``;
    each replica runs ``feature_fn`` and :func:`batch_moments` on its shard, and the
    parts are combined with ``strategy.reduce(SUM)``.
    """

    def replica_fn(x: object, y: tf.Tensor, shift: tf.Tensor) -> dict[str, tf.Tensor]:
        return batch_moments(feature_fn(x), y, num_classes, shift, full)

    @tf.function
    def step(x: object, y: object, shift: tf.Tensor) -> dict[str, tf.Tensor]:
        per_replica = strategy.run(replica_fn, args=(x, y, shift))
        return {
            k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
            for k, v in per_replica.items()
        }

    return step
