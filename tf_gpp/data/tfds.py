"""TensorFlow Datasets -> :class:`Dataset` (``tensorflow-datasets`` is optional, imported lazily)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from tf_gpp.data.arrays import check_batch_size, check_limit, split_count
from tf_gpp.data.bundle import Dataset
from tf_gpp.data.preprocessing import Preprocessing, resolve_preprocessing
from tf_gpp.errors import DataError

_SHUFFLE_BUFFER = 10_000


def import_tfds() -> Any:
    """``tensorflow_datasets``, or a DataError saying how to install it."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise DataError(
            "tensorflow-datasets is not installed; `pip install tensorflow-datasets` to load "
            "TFDS datasets (or use from_arrays / load_idx / from_image_folder)."
        ) from e
    return tfds


def _label_feature(info: Any, name: str) -> Any:
    keys = getattr(info, "supervised_keys", None)
    if isinstance(keys, tuple | list) and len(keys) >= 2 and isinstance(keys[1], str):
        return info.features[keys[1]]
    candidates = [f for _, f in info.features.items() if hasattr(f, "num_classes")]
    if len(candidates) != 1:
        raise DataError(f"TFDS dataset {name!r} has no single class-label feature.")
    return candidates[0]


def _num_examples(info: Any, split: str, ds: Any) -> int:
    try:
        return int(info.splits[split].num_examples)
    except Exception:
        n = int(ds.cardinality())
        if n < 0:
            raise DataError(f"Cannot determine the size of TFDS split {split!r}.") from None
        return n


def _channel_stats(ds: Any, scale: float, offset: float) -> Preprocessing:
    """One streaming pass: per-channel mean/std of ``x * scale + offset``."""
    total = sq = None
    count = 0
    for x, _ in ds.batch(1024):
        a = np.asarray(x, np.float64) * scale + offset
        a = a.reshape(-1, a.shape[-1])
        total = a.sum(0) if total is None else total + a.sum(0)
        sq = (a * a).sum(0) if sq is None else sq + (a * a).sum(0)
        count += a.shape[0]
    mean = total / count
    std = np.sqrt(np.maximum(sq / count - mean**2, 0.0))
    std = np.where(std > 1e-12, std, 1.0)
    return Preprocessing(scale=scale, offset=offset, mean=tuple(mean), std=tuple(std))


def from_tfds(
    name: str,
    *,
    train_split: str = "train",
    test_split: str | None = "test",
    validation_split: float = 0.1,
    limit: int | None = None,
    batch_size: int = 128,
    seed: int | None = 0,
    image_size: tuple[int, int] | None = None,
    preprocessing: Preprocessing | str | None = "auto",
    standardize: bool = False,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
) -> Dataset:
    """Load a TFDS image-classification dataset (``as_supervised``) as a :class:`Dataset`.

    Validation examples are the first ``validation_split`` of ``train_split``
    (TFDS files are already shuffled); ``limit`` takes the first ``limit``
    examples of each split. ``image_size=(H, W)`` resizes (needed for datasets
    with variable image sizes). ``preprocessing="auto"`` rescales uint8 images
    to [0, 1].

    Raises:
        DataError: tensorflow-datasets missing, the dataset unavailable (e.g.
            not downloaded and ``download=False``), or not a classification set.
    """
    import tensorflow as tf

    tfds = import_tfds()
    batch_size = check_batch_size(batch_size)
    limit = check_limit(limit)
    splits = [train_split] + ([test_split] if test_split else [])
    try:
        datasets, info = tfds.load(
            name, split=splits, as_supervised=True, with_info=True,
            data_dir=data_dir, download=download, shuffle_files=False,
        )
    except Exception as e:  # tfds raises many types (DatasetNotFound, AssertionError, IO errors)
        raise DataError(f"tfds.load({name!r}) failed: {type(e).__name__}: {e}") from e

    label = _label_feature(info, name)
    num_classes = getattr(label, "num_classes", None)
    if not num_classes or num_classes < 2:
        raise DataError(f"TFDS dataset {name!r} is not a classification dataset (no class labels).")
    names = list(getattr(label, "names", None) or [str(i) for i in range(num_classes)])

    x_spec = datasets[0].element_spec[0]
    shape = tuple(x_spec.shape)
    if image_size is not None:
        shape = (int(image_size[0]), int(image_size[1]), *shape[2:])
    if any(d is None for d in shape):
        raise DataError(
            f"TFDS dataset {name!r} has variable input shape {shape}; pass image_size=(H, W)."
        )

    auto = Preprocessing.rescale(1.0 / 255.0) if x_spec.dtype == tf.uint8 else Preprocessing()
    prep = resolve_preprocessing(preprocessing, auto)

    def prepare(x, y):
        if image_size is not None:
            x = tf.image.resize(x, image_size)
        return tf.cast(x, tf.float32), tf.cast(y, tf.int32)

    def sized(ds, split):
        n = _num_examples(info, split, ds)
        if limit is not None and limit < n:
            ds, n = ds.take(limit), limit
        return ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE), n

    pool, n_pool = sized(datasets[0], train_split)
    n_val = split_count(n_pool, validation_split, "validation_split")
    val, train = pool.take(n_val), pool.skip(n_val)
    if standardize:
        prep = _channel_stats(train, prep.scale, prep.offset)

    def finish(ds, shuffle):
        if shuffle:
            ds = ds.shuffle(_SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size).map(
            lambda x, y: (prep.apply(x), y), num_parallel_calls=tf.data.AUTOTUNE
        )
        return ds.prefetch(tf.data.AUTOTUNE)

    counts = {"train": n_pool - n_val}
    test = None
    if test_split:
        test_ds, n_test = sized(datasets[1], test_split)
        test = finish(test_ds, False)
    if n_val:
        counts["val"] = n_val
    if test_split:
        counts["test"] = n_test
    return Dataset(
        train=finish(train, True),
        val=finish(val, False) if n_val else None,
        test=test,
        num_classes=int(num_classes),
        input_shape=tuple(int(d) for d in shape),
        class_names=names,
        source=f"tfds:{name}" + (f" ({data_dir})" if data_dir else ""),
        preprocessing=prep,
        name=name,
        num_examples=counts,
    )
