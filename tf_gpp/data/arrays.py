"""In-memory arrays -> validated, split, normalised ``tf.data`` pipelines."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tf_gpp.data.bundle import Dataset
from tf_gpp.data.preprocessing import Preprocessing, resolve_preprocessing
from tf_gpp.errors import DataError

#: Largest shuffle buffer used for in-memory splits (bigger splits shuffle in windows).
MAX_SHUFFLE_BUFFER = 65_536


# -- validation ---------------------------------------------------------------------


def validate_inputs(x: Any, what: str = "x") -> np.ndarray:
    """Check a batch of inputs; 3-D ``(n, H, W)`` gets a channel axis -> ``(n, H, W, 1)``."""
    x = np.asarray(x)
    if x.dtype == bool:
        x = x.astype(np.uint8)
    if x.dtype.kind not in "iuf":
        raise DataError(f"{what} must be numeric, got dtype {x.dtype}.")
    if x.ndim < 2:
        raise DataError(
            f"{what} must be a batch of examples of shape (n, ...), got shape {x.shape}."
        )
    if x.shape[0] == 0 or x.size == 0:
        raise DataError(f"{what} is empty (shape {x.shape}); nothing to train or evaluate on.")
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        bad = int(np.count_nonzero(~np.isfinite(x)))
        raise DataError(f"{what} contains {bad} NaN/inf values; clean or impute them first.")
    if x.ndim == 3:
        x = x[..., np.newaxis]
    return x


def to_sparse_labels(
    y: Any,
    num_classes: int | None = None,
    what: str = "y",
    *,
    vocabulary: Sequence[str] | None = None,
    min_distinct: int = 2,
) -> tuple[np.ndarray, int, list[str] | None]:
    """Normalise classification labels to sparse int32 indices.

    Accepts integer labels, float labels holding integral values, ``(n, 1)``
    columns, one-hot rows, booleans and strings (mapped to sorted unique
    values, which become the class names; pass ``vocabulary`` to map strings
    of a second split with the first split's names).

    Args:
        min_distinct: distinct classes that must be present (2 for a training
            set; 1 for a held-out split that may hold a single class).

    Returns:
        ``(labels, num_classes, class_names_or_None)``.

    Raises:
        DataError: for empty, NaN, negative, continuous (regression-like),
            soft/multi-label or single-class labels, or labels >= ``num_classes``.
    """
    y = np.asarray(y)
    names: list[str] | None = None
    if y.size == 0:
        raise DataError(f"{what} is empty; classification needs labels.")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2:
        if y.dtype.kind not in "biuf":
            raise DataError(f"2-D {what} must be numeric one-hot rows, got dtype {y.dtype}.")
        yf = y.astype(np.float64)
        if not np.all(np.isfinite(yf)):
            raise DataError(f"{what} contains NaN/inf values.")
        is_binary = np.all((yf == 0) | (yf == 1))
        if is_binary and np.all(yf.sum(axis=1) == 1):
            if num_classes is not None and num_classes != y.shape[1]:
                raise DataError(
                    f"{what} is one-hot with {y.shape[1]} columns but num_classes={num_classes}."
                )
            num_classes = y.shape[1]
            y = yf.argmax(axis=1)
        elif np.allclose(yf.sum(axis=1), 1.0) and np.all(yf >= 0):
            raise DataError(
                f"{what} holds soft / probability labels (rows sum to 1 but are not one-hot); "
                "tf_gpp needs one class per example: pass y.argmax(axis=1)."
            )
        else:
            raise DataError(
                f"{what} has shape {y.shape} but rows are not one-hot (multi-label or "
                "regression targets?); tf_gpp handles single-label classification only."
            )
    elif y.ndim != 1:
        raise DataError(f"{what} must be 1-D class indices or 2-D one-hot, got shape {y.shape}.")
    elif y.dtype.kind in "OUS":
        if vocabulary is not None:
            names = [str(v) for v in vocabulary]
            lookup = {n: i for i, n in enumerate(names)}
            unknown = sorted(set(y.astype(str).tolist()) - set(lookup))
            if unknown:
                raise DataError(f"{what} has labels not in the class names: {unknown[:5]}.")
            y = np.array([lookup[v] for v in y.astype(str)], np.int64)
        else:
            uniques, y = np.unique(y.astype(str), return_inverse=True)
            names = [str(u) for u in uniques]
        if num_classes is not None and num_classes != len(names):
            raise DataError(
                f"{what} has {len(names)} distinct string labels but num_classes={num_classes}."
            )
        num_classes = len(names)
    elif y.dtype.kind == "b":
        y = y.astype(np.int64)
    elif y.dtype.kind == "f":
        if not np.all(np.isfinite(y)):
            raise DataError(f"{what} contains NaN/inf labels.")
        if not np.all(y == np.round(y)):
            frac = y[y != np.round(y)][:3]
            raise DataError(
                f"{what} holds continuous values (e.g. {frac.tolist()}); these look like "
                "regression targets, not class labels. tf_gpp needs integer class indices."
            )
        y = y.astype(np.int64)
    elif y.dtype.kind not in "iu":
        raise DataError(f"{what} must hold class indices, got dtype {y.dtype}.")
    y = y.astype(np.int64)
    if y.min() < 0:
        raise DataError(f"{what} contains negative labels (min {int(y.min())}); use 0..C-1.")
    top = int(y.max())
    if num_classes is None:
        num_classes = top + 1
    elif top >= num_classes:
        raise DataError(
            f"{what} contains label {top} but num_classes={num_classes}; labels must be "
            f"in [0, {num_classes})."
        )
    if len(np.unique(y)) < min_distinct:
        raise DataError(
            f"{what} holds a single class ({int(y[0])}); classification needs at least 2 classes."
        )
    if num_classes < 2:
        raise DataError(f"num_classes={num_classes}; classification needs at least 2 classes.")
    return y.astype(np.int32), int(num_classes), names


# -- splitting ----------------------------------------------------------------------


def stratified_order(y: np.ndarray, seed: int | None = 0) -> np.ndarray:
    """A seeded permutation whose every prefix is (nearly) class-proportional.

    Used for ``limit`` subsets and validation/test splits: taking the first
    ``k`` indices gives a stratified random sample of size ``k``.
    """
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    yp = y[perm]
    _, inverse, counts = np.unique(yp, return_inverse=True, return_counts=True)
    by_class = np.argsort(inverse, kind="stable")
    starts = np.cumsum(counts) - counts
    rank = np.empty(len(y), dtype=np.float64)
    rank[by_class] = np.arange(len(y)) - np.repeat(starts, counts)
    quantile = (rank + 0.5) / counts[inverse]
    return perm[np.lexsort((rng.random(len(y)), quantile))]


def split_count(n: int, fraction: float, what: str) -> int:
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"{what} must be in [0, 1), got {fraction!r}.")
    if fraction == 0.0:
        return 0
    k = max(1, int(round(fraction * n)))
    if k >= n:
        raise DataError(
            f"{what}={fraction} leaves no training examples out of {n}; lower it or add data."
        )
    return k


# -- pipelines ----------------------------------------------------------------------


def make_pipeline(
    x: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int,
    preprocessing: Preprocessing,
    shuffle: bool = False,
    seed: int | None = 0,
) -> Any:
    """Batched ``tf.data`` pipeline of ``(preprocessing(x), y)``; shuffled each epoch if asked."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((x, y.astype(np.int32)))
    if shuffle:
        ds = ds.shuffle(min(len(x), MAX_SHUFFLE_BUFFER), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    ds = ds.map(lambda a, b: (preprocessing.apply(a), b), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def check_batch_size(batch_size: int) -> int:
    if not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise DataError(f"batch_size must be a positive integer, got {batch_size!r}.")
    return int(batch_size)


def check_limit(limit: int | None) -> int | None:
    if limit is None:
        return None
    if not isinstance(limit, int | np.integer) or limit < 2:
        raise DataError(f"limit must be None or an integer >= 2, got {limit!r}.")
    return int(limit)


def _auto_preprocessing(x: np.ndarray) -> Preprocessing:
    """8-bit inputs are rescaled to [0, 1]; anything else is left as is."""
    return Preprocessing.rescale(1.0 / 255.0) if x.dtype == np.uint8 else Preprocessing.identity()


def _compact(x: np.ndarray) -> np.ndarray:
    """Keep uint8 as is (normalised per batch in the pipeline); other types -> float32."""
    return x if x.dtype == np.uint8 else x.astype(np.float32, copy=False)


def from_arrays(
    x: Any,
    y: Any,
    *,
    x_test: Any | None = None,
    y_test: Any | None = None,
    validation_split: float = 0.1,
    test_split: float = 0.0,
    batch_size: int = 128,
    seed: int | None = 0,
    limit: int | None = None,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    preprocessing: Preprocessing | str | None = "auto",
    standardize: bool = False,
    shuffle: bool = True,
    name: str = "arrays",
    source: str = "arrays",
) -> Dataset:
    """Build a :class:`Dataset` from in-memory arrays.

    Args:
        x, y: training inputs ``(n, H, W[, C])`` or ``(n, features)`` and labels
            (see :func:`to_sparse_labels` for accepted label forms).
        x_test, y_test: optional separate test set; otherwise ``test_split``
            carves a stratified test set out of ``x``.
        validation_split: stratified fraction of the (remaining) training
            examples held out for validation; 0 gives ``val=None``.
        limit: cap on the examples taken from each source (training pool and
            separate test set), as a seeded stratified subset - for quick runs.
        preprocessing: ``"auto"`` (uint8 -> ``x/255``, else unchanged), a
            :class:`Preprocessing`, or ``None`` (identity).
        standardize: additionally standardise per channel with mean/std
            measured on the training split (recorded in ``preprocessing``).
        shuffle: shuffle the training split every epoch (val/test never are).

    Raises:
        DataError: for empty or non-numeric inputs, NaN/inf, length mismatches,
            invalid labels, or splits that leave a part empty.
    """
    batch_size = check_batch_size(batch_size)
    limit = check_limit(limit)
    x = validate_inputs(x, "x")
    y, num_classes, names = to_sparse_labels(y, num_classes, "y")
    if len(x) != len(y):
        raise DataError(f"x has {len(x)} examples but y has {len(y)} labels.")
    if (x_test is None) != (y_test is None):
        raise DataError("Pass x_test and y_test together (or neither).")

    if limit is not None and limit < len(y):
        keep = np.sort(stratified_order(y, seed)[:limit])
        x, y = x[keep], y[keep]

    xt = yt = None
    if x_test is not None:
        if test_split:
            raise DataError("Give either x_test/y_test or test_split, not both.")
        xt = validate_inputs(x_test, "x_test")
        yt, _, _ = to_sparse_labels(
            y_test, num_classes, "y_test", vocabulary=names, min_distinct=1
        )
        if len(xt) != len(yt):
            raise DataError(f"x_test has {len(xt)} examples but y_test has {len(yt)} labels.")
        if xt.shape[1:] != x.shape[1:]:
            raise DataError(f"x_test examples have shape {xt.shape[1:]}, x has {x.shape[1:]}.")
        if limit is not None and limit < len(yt):
            keep = np.sort(stratified_order(yt, seed)[:limit])
            xt, yt = xt[keep], yt[keep]
    else:
        n_test = split_count(len(y), test_split, "test_split")
        if n_test:
            order = stratified_order(y, None if seed is None else seed + 1)
            test_idx, rest = np.sort(order[:n_test]), np.sort(order[n_test:])
            xt, yt, x, y = x[test_idx], y[test_idx], x[rest], y[rest]

    xv = yv = None
    n_val = split_count(len(y), validation_split, "validation_split")
    if n_val:
        order = stratified_order(y, None if seed is None else seed + 2)
        val_idx, rest = np.sort(order[:n_val]), np.sort(order[n_val:])
        xv, yv, x, y = x[val_idx], y[val_idx], x[rest], y[rest]

    prep = resolve_preprocessing(preprocessing, _auto_preprocessing(x))
    if standardize:
        prep = Preprocessing.fit(x, scale=prep.scale, offset=prep.offset)

    if class_names is None:
        class_names = names if names is not None else [str(i) for i in range(num_classes)]
    class_names = [str(c) for c in class_names]
    if len(class_names) != num_classes:
        raise DataError(
            f"class_names has {len(class_names)} entries but there are {num_classes} classes."
        )

    def pipe(a, b, train=False):
        if a is None:
            return None
        return make_pipeline(
            _compact(a), b, batch_size=batch_size, preprocessing=prep,
            shuffle=train and shuffle, seed=seed,
        )

    counts = {"train": len(y)}
    if yv is not None:
        counts["val"] = len(yv)
    if yt is not None:
        counts["test"] = len(yt)
    return Dataset(
        train=pipe(x, y, train=True),
        val=pipe(xv, yv),
        test=pipe(xt, yt),
        num_classes=num_classes,
        input_shape=tuple(int(d) for d in x.shape[1:]),
        class_names=class_names,
        source=source,
        preprocessing=prep,
        name=name,
        num_examples=counts,
    )

