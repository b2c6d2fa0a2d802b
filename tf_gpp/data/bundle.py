"""The bundle every loader returns: train/val/test pipelines plus their metadata."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tf_gpp.data.preprocessing import Preprocessing
from tf_gpp.errors import DataError


@dataclass
class Dataset:
    """Batched ``tf.data`` pipelines of ``(x, y)`` for a classification task.

    ``x`` is float32 NHWC (already normalised by ``preprocessing``), ``y`` are
    sparse int32 class indices in ``[0, num_classes)``: train with
    ``SparseCategoricalCrossentropy``. ``val``/``test`` are ``None`` when the
    loader was asked not to produce them.

    Attributes:
        train, val, test: batched ``tf.data.Dataset`` of ``(x, y)``.
        num_classes: number of classes.
        input_shape: per-example input shape, e.g. ``(28, 28, 1)``.
        class_names: one name per class.
        source: where the data came from (a directory, ``"tfds:<name>"``, ...).
        preprocessing: the normalisation applied to ``x``.
        name: short dataset name.
        num_examples: examples per split, e.g. ``{"train": 54000, ...}``.
    """

    train: Any
    val: Any | None
    test: Any | None
    num_classes: int
    input_shape: tuple[int, ...]
    class_names: list[str]
    source: str
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    name: str = ""
    num_examples: dict[str, int] = field(default_factory=dict)

    def split(self, which: str) -> Any:
        """The pipeline called ``which`` (``"train"``, ``"val"`` or ``"test"``)."""
        if which not in ("train", "val", "test"):
            raise DataError(f"Unknown split {which!r}; use 'train', 'val' or 'test'.")
        ds = getattr(self, which)
        if ds is None:
            raise DataError(
                f"Dataset {self.name or self.source!r} has no {which!r} split; "
                "load it with a non-zero validation_split / test data."
            )
        return ds

    def as_numpy(self, which: str = "train") -> tuple[np.ndarray, np.ndarray]:
        """All ``(x, y)`` of one split as NumPy arrays (materialises the split)."""
        xs, ys = [], []
        for x, y in self.split(which):
            xs.append(np.asarray(x))
            ys.append(np.asarray(y))
        if not xs:
            raise DataError(f"Split {which!r} of {self.name or self.source!r} is empty.")
        return np.concatenate(xs), np.concatenate(ys)

    def describe(self) -> str:
        """One line: name, source, shapes, sizes."""
        sizes = ", ".join(f"{k} {v}" for k, v in self.num_examples.items())
        return (
            f"{self.name or 'dataset'}: {self.num_classes} classes, input {self.input_shape}, "
            f"{sizes} (from {self.source})"
        )
