"""The dataset demos use: Fashion-MNIST (local files, else a download when the network allows),
else scikit-learn digits."""

from __future__ import annotations

import warnings

from tf_gpp.data.bundle import Dataset
from tf_gpp.data.digits import load_digits
from tf_gpp.data.fashion_mnist import DOWNLOAD_TIMEOUT, load_fashion_mnist
from tf_gpp.errors import DataError

_CHOICES = ("fashion_mnist", "digits")


def load_default(
    prefer: str = "fashion_mnist",
    *,
    validation_split: float = 0.1,
    limit: int | None = None,
    batch_size: int = 128,
    seed: int | None = 0,
    download: bool = True,
    download_timeout: float | None = DOWNLOAD_TIMEOUT,
) -> Dataset:
    """Fashion-MNIST, else digits.

    Fashion-MNIST comes from the Debian package ``dataset-fashion-mnist``, then the
    Keras cache, then ``keras.datasets.fashion_mnist.load_data()`` when the network
    allows (at most ``download_timeout`` seconds; ``download=False`` never downloads).
    The fallback to digits is announced with a ``UserWarning`` naming what was tried
    and how to install Fashion-MNIST. ``prefer="digits"`` skips the search.
    """
    if prefer not in _CHOICES:
        raise DataError(f"prefer must be one of {_CHOICES}, got {prefer!r}.")
    common = dict(validation_split=validation_split, limit=limit, batch_size=batch_size, seed=seed)
    if prefer == "fashion_mnist":
        try:
            return load_fashion_mnist(download=download, download_timeout=download_timeout, **common)
        except DataError as e:
            warnings.warn(
                "Fashion-MNIST is not available (locally or by download); using scikit-learn's 8x8 digits "
                f"(1,797 images) instead.\n{e}",
                UserWarning,
                stacklevel=2,
            )
    return load_digits(**common)
