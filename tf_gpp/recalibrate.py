"""Re-estimate BatchNormalization moving statistics on data, without training.

Removing channels changes what every later BatchNormalization sees, so its
moving mean and variance no longer match (a momentum-0.99 or 0.999 layer, the
Keras and keras.applications defaults, barely moves them in a short
fine-tune). :func:`recalibrate_batchnorm` runs forward passes and sets each BN
layer's moving statistics to the cumulative average of the batch statistics
(the same as momentum ``1 - 1/k`` at batch ``k``), as adaptive-BN methods do.

Every BatchNormalization of the model is recalibrated — nested sub-models,
frozen (``trainable=False``) layers and layers called with ``training=False``
included — and nothing else changes: no weight update, Dropout and other
training-only layers stay in inference mode.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tf_gpp.data.intake import as_dataset, as_tf_data
from tf_gpp.errors import ArgumentError, DataError

__all__ = ["batchnorm_layers", "recalibrate_batchnorm"]


def batchnorm_layers(model: keras.Layer) -> list[keras.layers.BatchNormalization]:
    """Every BatchNormalization layer of ``model``, nested sub-models included (each once)."""
    found: list[keras.layers.BatchNormalization] = []
    seen: set[int] = set()

    def walk(layer: Any) -> None:
        if id(layer) in seen:
            return
        seen.add(id(layer))
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        for sub in getattr(layer, "layers", None) or ():
            walk(sub)

    walk(model)
    return found


def _input_batches(model: keras.Model, data: Any, batch_size: int, steps: int | None = None) -> tf.data.Dataset:
    """The model-input batches of ``data``, through the one data intake (:func:`as_dataset`):
    any form ``fit`` takes (arrays, ``(x, y[, w])``, batched or unbatched datasets, dicts, a
    PyDataset, generators), or inputs without labels (an array ``x``, a dataset of ``x``),
    given placeholder labels; at most ``steps`` batches of a one-shot generator are read."""
    data = as_tf_data(data, "recalibrate_batchnorm: data", max_batches=steps)
    if isinstance(data, tf.data.Dataset):
        spec = data.element_spec
        if not isinstance(spec, Mapping) and not (isinstance(spec, tuple) and len(spec) in (2, 3)):
            data = data.map(lambda x: (x, 0))
    elif hasattr(data, "shape") and hasattr(data, "__len__"):
        data = (data, np.zeros(len(data), "int32"))
    return as_dataset(data, batch_size=batch_size, model=model,
                      what="recalibrate_batchnorm: data").map(lambda x, *_: x)


class _BatchStats:
    """Sums of per-batch means and variances of one BN layer; its call uses batch statistics."""

    def __init__(self, layer: keras.layers.BatchNormalization) -> None:
        self.layer = layer
        self.mean_sum = np.zeros(layer.moving_mean.shape, np.float64)
        self.var_sum = np.zeros(layer.moving_variance.shape, np.float64)
        self.batches = 0
        self.recorded: list[tuple[tf.Tensor, tf.Tensor]] = []

    def call(self, inputs: Any, training: Any = None, mask: Any = None) -> tf.Tensor:
        layer = self.layer
        x = tf.cast(inputs, "float32")
        axis = layer.axis % len(x.shape)
        reduce = [i for i in range(len(x.shape)) if i != axis]
        mean, var = tf.nn.moments(x, reduce)
        self.recorded.append((mean, var))
        shape = [1] * len(x.shape)
        shape[axis] = -1
        gamma = tf.reshape(tf.cast(layer.gamma, "float32"), shape) if layer.scale else None
        beta = tf.reshape(tf.cast(layer.beta, "float32"), shape) if layer.center else None
        y = tf.nn.batch_normalization(x, tf.reshape(mean, shape), tf.reshape(var, shape), beta, gamma,
                                      layer.epsilon)
        return tf.cast(y, inputs.dtype)


@contextlib.contextmanager
def _batch_statistics(layers: list[keras.layers.BatchNormalization]) -> Iterator[list[_BatchStats]]:
    """Within the block each layer normalises with (and records) its batch statistics."""
    stats = [_BatchStats(layer) for layer in layers]
    try:
        for s in stats:
            s.layer.call = s.call  # instance attribute: shadows the class's call, removed below
        yield stats
    finally:
        for s in stats:
            with contextlib.suppress(AttributeError):
                del s.layer.call


def recalibrate_batchnorm(
    model: keras.Model,
    data: Any,
    steps: int | None = 100,
    *,
    batch_size: int = 64,
    verbose: int = 0,
) -> keras.Model:
    """Re-estimate the moving mean and variance of every BatchNormalization in ``model``.

    Args:
        model: any Keras model; modified in place (only BN moving statistics) and returned.
        data: a ``tf.data.Dataset``, ``keras.utils.PyDataset`` or generator of ``x`` or
            ``(x, y[, sample_weight])`` batches, or arrays ``x`` / ``(x, y)`` (batched by
            ``batch_size``). Use training images without
            augmentation where possible.
        steps: number of batches used (``None``: all of ``data``). 100 batches of 64 is the
            default; the statistics of a few thousand images are within noise of the full set.
        verbose: 1 prints one line with the number of layers and batches.

    Returns:
        ``model``. Each BN layer's moving statistics become the average over the batches of
        its batch mean and (biased) batch variance, computed with every BN upstream
        normalising by its own batch statistics, as in training mode. Weights, optimizer
        state and every other layer are untouched. A model without BN is returned as is.
    """
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ArgumentError(f"recalibrate_batchnorm: steps={steps!r}: give a whole number >= 1, or None for all data")
    layers = batchnorm_layers(model)
    if not layers:
        return model
    batches = _input_batches(model, data, batch_size, steps)
    if steps is not None:
        batches = batches.take(steps)
    with _batch_statistics(layers) as stats:

        @tf.function(reduce_retracing=True)
        def forward(x: Any) -> list[tuple[tf.Tensor, tf.Tensor]]:
            for s in stats:
                s.recorded.clear()
            model(x, training=False)
            missing = [s.layer.name for s in stats if len(s.recorded) != 1]
            if missing:
                raise DataError(
                    f"recalibrate_batchnorm: BatchNormalization layer(s) {missing[:3]} are not called "
                    "exactly once per forward pass (shared or unused); their statistics are ambiguous."
                )
            return [s.recorded[0] for s in stats]

        n = 0
        logger, level = tf.get_logger(), tf.get_logger().level
        logger.setLevel("ERROR")  # a new model is traced once per call: not the retracing TF warns of
        try:
            for x in batches:
                for s, (mean, var) in zip(stats, forward(x), strict=True):
                    s.mean_sum += mean.numpy()
                    s.var_sum += var.numpy()
                n += 1
        finally:
            logger.setLevel(level)
    if n == 0:
        raise DataError("recalibrate_batchnorm: data is empty; give at least one batch of inputs")
    for s in stats:
        s.layer.moving_mean.assign((s.mean_sum / n).astype(s.layer.moving_mean.dtype))
        s.layer.moving_variance.assign((s.var_sum / n).astype(s.layer.moving_variance.dtype))
    if verbose:
        print(f"[tf_gpp] BatchNorm statistics re-estimated: {len(stats)} layers, {n} batches")
    return model
