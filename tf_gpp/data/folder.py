"""A folder of images, one sub-folder per class -> :class:`Dataset`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tf_gpp.data.arrays import check_batch_size
from tf_gpp.data.bundle import Dataset
from tf_gpp.data.preprocessing import Preprocessing, resolve_preprocessing
from tf_gpp.errors import DataError

_CHANNELS = {"grayscale": 1, "rgb": 3, "rgba": 4}


def _read_folder(path: Path, **kwargs: Any) -> Any:
    import keras

    try:
        return keras.utils.image_dataset_from_directory(str(path), **kwargs)
    except ValueError as e:
        raise DataError(f"Cannot read images from {path}: {e}") from e


def _count(ds: Any) -> int:
    paths = getattr(ds, "file_paths", None)
    return len(paths) if paths is not None else -1


def from_image_folder(
    path: str | os.PathLike,
    image_size: tuple[int, int],
    *,
    validation_split: float = 0.1,
    test_path: str | os.PathLike | None = None,
    batch_size: int = 32,
    seed: int = 0,
    color_mode: str = "rgb",
    preprocessing: Preprocessing | str | None = "auto",
    interpolation: str = "bilinear",
) -> Dataset:
    """Images under ``path/<class_name>/*`` resized to ``image_size``.

    Uses ``keras.utils.image_dataset_from_directory`` (classes are the sorted
    sub-folder names). ``validation_split`` holds out a seeded fraction of the
    files; ``test_path`` is an optional second folder with the same classes.
    ``preprocessing="auto"`` scales pixels to [0, 1].

    Raises:
        DataError: missing folder, no images, fewer than two classes, bad options.
    """
    import tensorflow as tf

    path = Path(path).expanduser()
    if not path.is_dir():
        raise DataError(f"Image folder {path} does not exist (expected path/<class>/<images>).")
    if color_mode not in _CHANNELS:
        raise DataError(f"color_mode must be one of {sorted(_CHANNELS)}, got {color_mode!r}.")
    if not 0.0 <= validation_split < 1.0:
        raise DataError(f"validation_split must be in [0, 1), got {validation_split!r}.")
    batch_size = check_batch_size(batch_size)
    image_size = (int(image_size[0]), int(image_size[1]))

    common = dict(
        labels="inferred", label_mode="int", color_mode=color_mode, batch_size=batch_size,
        image_size=image_size, interpolation=interpolation,
    )
    if validation_split:
        train, val = _read_folder(
            path, validation_split=validation_split, subset="both", seed=seed, shuffle=True,
            **common,
        )
    else:
        train, val = _read_folder(path, seed=seed, shuffle=True, **common), None
    class_names = list(train.class_names)
    if len(class_names) < 2:
        raise DataError(
            f"{path} has {len(class_names)} class folder(s) {class_names}; "
            "classification needs at least 2 (one sub-folder per class)."
        )
    test = None
    if test_path is not None:
        test = _read_folder(Path(test_path).expanduser(), shuffle=False, **common)
        if list(test.class_names) != class_names:
            raise DataError(
                f"test_path classes {list(test.class_names)} differ from {path}'s {class_names}."
            )

    prep = resolve_preprocessing(preprocessing, Preprocessing.rescale(1.0 / 255.0))

    def finish(ds):
        if ds is None:
            return None
        ds = ds.map(lambda x, y: (prep.apply(x), tf.cast(y, tf.int32)),
                    num_parallel_calls=tf.data.AUTOTUNE)
        return ds.prefetch(tf.data.AUTOTUNE)

    counts = {"train": _count(train)}
    if val is not None:
        counts["val"] = _count(val)
    if test is not None:
        counts["test"] = _count(test)
    return Dataset(
        train=finish(train),
        val=finish(val),
        test=finish(test),
        num_classes=len(class_names),
        input_shape=(*image_size, _CHANNELS[color_mode]),
        class_names=class_names,
        source=str(path),
        preprocessing=prep,
        name=path.name,
        num_examples=counts,
    )
