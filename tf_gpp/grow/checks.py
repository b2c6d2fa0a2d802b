"""Validate what ``grow`` is given: data pipelines, labels, shapes, class count."""

from __future__ import annotations

from typing import Any

import numpy as np

from tf_gpp.data.intake import TRAIN_BATCHES_SCANNED, TaskInfo, as_dataset, as_tf_data, scan_labels
from tf_gpp.errors import DataError
from tf_gpp.grow.errors import GrowError


def unpack_bundle(train_data: Any, val_data: Any, input_shape: Any, num_classes: Any) -> tuple:
    """Split a :class:`tf_gpp.data.Dataset` bundle into its train/val pipelines and
    metadata (explicit arguments win); anything else is returned unchanged."""
    if hasattr(train_data, "train") and hasattr(train_data, "num_classes"):
        bundle = train_data
        train_data = bundle.train
        val_data = val_data if val_data is not None else bundle.val
        input_shape = input_shape if input_shape is not None else bundle.input_shape
        num_classes = num_classes if num_classes is not None else bundle.num_classes
    return train_data, val_data, input_shape, num_classes

def _labels(ds: Any, max_batches: int | None, what: str, num_classes: int) -> np.ndarray:
    """Class indices of the first ``max_batches`` batches; refuses non-finite inputs and
    labels that are not class indices in ``[0, num_classes)`` on the way."""
    labels, _ = scan_labels(ds, TaskInfo("sparse", num_classes, True), what, max_batches)
    if labels.size == 0:
        raise DataError(f"{what} is empty; grow needs labelled examples.")
    return labels


def _check_pipeline(ds: Any, what: str) -> tuple[Any, Any, Any]:
    """``(pipeline, x_spec, y_spec)``: dict elements mapped to (x, y), unbatched images batched."""
    ds = as_tf_data(ds, what)  # a PyDataset, generator or generator function, as fit reads them
    spec = getattr(ds, "element_spec", None)
    if spec is None:
        raise DataError(
            f"{what} must be a tf.data.Dataset, keras.utils.PyDataset or generator of (x, y) batches "
            f"or a tf_gpp.data.Dataset, got "
            f"{type(ds).__name__}; for arrays use tf_gpp.data.from_arrays(x, y)."
        )
    ds = as_dataset(ds, input_ranks=(4,), what=what)
    spec = ds.element_spec
    if not isinstance(spec, tuple) or len(spec) != 2:
        raise DataError(f"{what} must yield (x, y) pairs; its elements are {spec}.")
    x_spec, y_spec = spec
    if not hasattr(x_spec, "shape") or not hasattr(y_spec, "shape"):
        raise DataError(f"{what} must yield (x, y) tensors (one input, one label); got {spec}.")
    if x_spec.shape.rank != 4:
        raise DataError(
            f"{what} yields x of shape {x_spec.shape}; grow needs batched images (batch, H, W, C)."
        )
    y_shape = y_spec.shape
    if y_shape.rank == 2 and y_shape[-1] not in (None, 1):
        raise DataError(
            f"{what} yields one-hot / multi-column labels of shape {y_shape}; grow needs sparse "
            "integer class indices: map with y = tf.argmax(y, axis=-1)."
        )
    if y_shape.rank not in (1, 2):
        raise DataError(f"{what} yields labels of shape {y_shape}; expected (batch,) class indices.")
    return ds, x_spec, y_spec


def resolve_data(
    train_data: Any,
    val_data: Any | None,
    input_shape: tuple[int, ...] | None,
    num_classes: int | None,
) -> tuple[Any, Any, tuple[int, int, int], int]:
    """Check the inputs of ``grow``; returns ``(train, val, input_shape, num_classes)``.

    ``train_data`` may be a :class:`tf_gpp.data.Dataset` bundle, which supplies
    the validation split, input shape and class count when not given.

    Raises:
        GrowError: missing validation data / class count, num_classes < 2.
        DataError: non-pipeline data, shape mismatches, one-hot, continuous,
            out-of-range or single-class labels.
    """
    train_data, val_data, input_shape, num_classes = unpack_bundle(
        train_data, val_data, input_shape, num_classes
    )
    if val_data is None:
        raise GrowError(
            "val_data is required: a growth step is accepted only if validation accuracy improves. "
            "Pass val_data=, or a tf_gpp.data.Dataset loaded with validation_split > 0."
        )
    if num_classes is None:
        raise GrowError("num_classes is required (or pass a tf_gpp.data.Dataset as train_data).")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer) or num_classes < 2:
        raise GrowError(f"num_classes={num_classes!r}: a classifier needs num_classes >= 2.")
    num_classes = int(num_classes)

    train_data, x_spec, _ = _check_pipeline(train_data, "train_data")
    val_data, xv_spec, _ = _check_pipeline(val_data, "val_data")
    data_shape = tuple(x_spec.shape[1:])
    if input_shape is None:
        if any(d is None for d in data_shape):
            raise GrowError(
                f"train_data has input shape {data_shape} with unknown sizes; pass input_shape=(H, W, C)."
            )
        input_shape = data_shape
    input_shape = tuple(int(d) for d in input_shape)
    for what, shape in (("train_data", data_shape), ("val_data", tuple(xv_spec.shape[1:]))):
        if len(shape) != len(input_shape) or any(
            d is not None and d != e for d, e in zip(shape, input_shape, strict=False)
        ):
            raise DataError(f"{what} yields inputs of shape {shape}, but input_shape={input_shape}.")

    val_labels = _labels(val_data, None, "val_data", num_classes)
    train_labels = _labels(train_data, TRAIN_BATCHES_SCANNED, "train_data", num_classes)
    if len(np.unique(np.concatenate([train_labels, val_labels]))) < 2:
        # the first batches may be sorted by class
        train_labels = _labels(train_data, None, "train_data", num_classes)
        if len(np.unique(np.concatenate([train_labels, val_labels]))) < 2:
            raise DataError(
                f"train_data and val_data hold a single class ({int(train_labels[0])}); "
                "classification needs examples of at least 2 classes."
            )
    return train_data, val_data, input_shape, num_classes
