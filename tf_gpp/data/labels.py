"""Label parsing and validation, shared by the data intake and the discriminant statistics
(which consume (features, labels) pairs).

Labels may be sparse class indices (ints, or floats holding integral values)
or one-hot / probability rows (argmax is taken). Anything else is refused with
a :class:`~tf_gpp.errors.DataError` that names the problem and the fix.
"""

from __future__ import annotations

import numpy as np

from tf_gpp.errors import DataError

__all__ = ["as_class_indices", "as_feature_matrix"]


def as_class_indices(y: object, num_classes: int | None, n: int | None = None) -> np.ndarray:
    """Return labels as an int64 vector of class indices in ``[0, num_classes)``.

    Args:
        y: sparse labels of shape ``(n,)`` or ``(n, 1)``, or one-hot rows ``(n, C)``.
        num_classes: number of classes C; ``None`` infers it (max label + 1, or the
            one-hot width).
        n: expected number of labels (rows of the feature matrix), if known.
    """
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim == 2:
        if num_classes is not None and arr.shape[1] != num_classes:
            raise DataError(
                f"labels have shape {arr.shape}: one-hot labels need {num_classes} columns "
                "(num_classes). Pass class indices of shape (n,) or one-hot rows of width C."
            )
        if arr.size and not np.isfinite(arr.astype(np.float64, copy=False)).all():
            raise DataError("one-hot labels contain NaN or inf; fix the label pipeline.")
        num_classes = arr.shape[1] if num_classes is None else num_classes
        arr = np.argmax(arr, axis=1) if arr.shape[0] else np.zeros((0,), np.int64)
    elif arr.ndim != 1:
        raise DataError(
            f"labels have shape {arr.shape}; expected class indices (n,) or one-hot rows (n, C)."
        )
    if arr.dtype == bool:
        arr = arr.astype(np.int64)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise DataError(
            f"labels have dtype {arr.dtype}; expected integer class indices 0..C-1 "
            "(encode string labels first, e.g. with sklearn.preprocessing.LabelEncoder)."
        )
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise DataError("labels contain NaN or inf; fix the label pipeline.")
        rounded = np.rint(arr)
        if not np.array_equal(rounded, arr):
            bad = arr[rounded != arr][:3].tolist()
            raise DataError(
                f"labels must be integral class indices, got non-integral values such as "
                f"{bad}: continuous values like these look like regression targets. Pass class "
                "indices 0..C-1 or one-hot rows (n, C), not probabilities of a single output."
            )
        arr = rounded
    labels = arr.astype(np.int64)
    if n is not None and labels.shape[0] != n:
        raise DataError(
            f"got {labels.shape[0]} labels for {n} feature rows; features and labels must "
            "have the same number of samples."
        )
    if labels.size:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or (num_classes is not None and hi >= num_classes):
            raise DataError(
                f"labels must lie in [0, {num_classes}) but range over [{lo}, {hi}]; pass the "
                f"right num_classes (now num_classes={num_classes}) or remap the labels to 0..C-1."
            )
    return labels


def as_feature_matrix(x: object) -> np.ndarray:
    """Return features as a finite float64 matrix ``(n, M)``; refuse anything else."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise DataError(
            f"features have shape {arr.shape}; expected a matrix (n, M). Use the last hidden "
            "layer after global pooling or Flatten, or reshape to (n, -1) yourself."
        )
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise DataError(f"features have non-numeric dtype {arr.dtype}.")
    arr = arr.astype(np.float64, copy=False)
    if arr.size and not np.isfinite(arr).all():
        rows = np.unique(np.nonzero(~np.isfinite(arr))[0])[:5].tolist()
        raise DataError(
            f"features contain NaN or inf (rows {rows}...). The network has diverged or the "
            "inputs are not preprocessed; fix them before computing discriminant statistics."
        )
    return arr
