"""scikit-learn's bundled 8x8 digits (1,797 images): a tiny offline dataset for tests."""

from __future__ import annotations

from tf_gpp.data.arrays import from_arrays
from tf_gpp.data.bundle import Dataset
from tf_gpp.data.preprocessing import Preprocessing
from tf_gpp.errors import DataError

#: Digits pixels are integers 0..16.
DIGITS_MAX = 16.0


def load_digits(
    *,
    validation_split: float = 0.2,
    test_split: float = 0.2,
    limit: int | None = None,
    batch_size: int = 64,
    seed: int | None = 0,
    standardize: bool = False,
) -> Dataset:
    """scikit-learn's ``load_digits`` as 8x8x1 images scaled to [0, 1], 10 classes.

    There is no official test set: ``test_split`` (then ``validation_split`` of
    the rest) are carved out as seeded stratified subsets.

    Raises:
        DataError: if scikit-learn is not installed, or for invalid split options.
    """
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as e:
        raise DataError(
            "load_digits needs scikit-learn: `pip install scikit-learn`."
        ) from e
    bunch = _sk_load_digits()
    return from_arrays(
        bunch.images.astype("float32"),
        bunch.target,
        validation_split=validation_split,
        test_split=test_split,
        limit=limit,
        batch_size=batch_size,
        seed=seed,
        num_classes=10,
        class_names=[str(int(n)) for n in bunch.target_names],
        preprocessing=Preprocessing.rescale(1.0 / DIGITS_MAX),
        standardize=standardize,
        name="digits",
        source="sklearn.datasets.load_digits",
    )
