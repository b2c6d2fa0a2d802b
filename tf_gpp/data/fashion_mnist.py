"""Fashion-MNIST: local files first (Debian package, Keras cache), then a prepared TFDS copy,
then ``keras.datasets`` (a download, time-bounded, when the network allows)."""

from __future__ import annotations

import importlib.util
import os
import socket
import threading
from pathlib import Path
from typing import Any

from tf_gpp.data.arrays import from_arrays
from tf_gpp.data.bundle import Dataset
from tf_gpp.data.idx import load_idx
from tf_gpp.errors import DataError

FASHION_MNIST_CLASSES: list[str] = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]

#: Debian/Ubuntu package ``dataset-fashion-mnist`` installs the idx files here.
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

#: Where ``keras.datasets.fashion_mnist.load_data()`` downloads from.
KERAS_ORIGIN = ("storage.googleapis.com", 443)

#: Seconds a download may take before the loader gives up (the files are about 30 MB).
DOWNLOAD_TIMEOUT = 180.0

_FIX = (
    "Fix: `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or "
    "`pip install tensorflow-datasets`, or call with download=True on a machine with "
    "network access, or pass data_dir= a folder holding the four *-ubyte.gz files."
)


def keras_cache_dirs() -> list[Path]:
    """Where ``keras.datasets.fashion_mnist.load_data()`` caches its files."""
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser()
    dirs = [home / "datasets" / "fashion-mnist"]
    tmp = Path("/tmp/.keras/datasets/fashion-mnist")  # Keras' fallback when home is read-only
    if tmp not in dirs:
        dirs.append(tmp)
    return dirs


def local_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Folders searched, in order: ``data_dir``, the Debian package, the Keras cache."""
    dirs = [Path(data_dir).expanduser()] if data_dir is not None else []
    return dirs + [DEBIAN_DIR, *keras_cache_dirs()]


def _pair(folder: Path, split: str) -> tuple[Path, Path] | str:
    """The (images, labels) files of one split in ``folder``, or why they are missing."""
    found = []
    for stem in _FILES[split]:
        for candidate in (folder / f"{stem}.gz", folder / stem):
            if candidate.is_file():
                found.append(candidate)
                break
        else:
            return f"missing {stem}.gz"
    return found[0], found[1]


def tfds_available() -> bool:
    """Whether ``tensorflow-datasets`` can be imported (without importing it)."""
    return importlib.util.find_spec("tensorflow_datasets") is not None


def network_reachable(address: tuple[str, int] = KERAS_ORIGIN, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to ``address`` opens within ``timeout`` seconds; ``False`` at once
    when the environment variable ``TF_GPP_OFFLINE`` is set (tests and CI set it)."""
    if os.environ.get("TF_GPP_OFFLINE"):
        return False
    try:
        with socket.create_connection(address, timeout=timeout):
            return True
    except OSError:
        return False


def keras_download(timeout: float | None = DOWNLOAD_TIMEOUT) -> tuple[Any, Any]:
    """``keras.datasets.fashion_mnist.load_data()`` (cached in ``~/.keras/datasets``), bounded
    by ``timeout`` seconds (``None``: unbounded).

    Raises:
        DataError: no network, a failed download or one slower than ``timeout`` (the download
            then finishes in the background and fills the cache for the next run).
    """
    import keras

    if timeout is not None and not network_reachable(KERAS_ORIGIN, timeout=min(3.0, timeout)):
        raise DataError(f"no network connection to {KERAS_ORIGIN[0]}")
    result: dict[str, Any] = {}

    def fetch() -> None:
        try:
            result["data"] = keras.datasets.fashion_mnist.load_data()
        except Exception as e:  # network, HTTP, corrupt cache: all mean "not available"
            result["error"] = e

    worker = threading.Thread(target=fetch, name="fashion-mnist-download", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise DataError(f"the download took longer than {timeout:.0f}s (it goes on in the background)")
    if "error" in result:
        e = result["error"]
        raise DataError(f"{type(e).__name__}: {e}")
    return result["data"]


def _load_local(folder: Path, **kwargs) -> Dataset:
    if not folder.is_dir():
        raise DataError("no such directory")
    pairs = {}
    for split in _FILES:
        pair = _pair(folder, split)
        if isinstance(pair, str):
            raise DataError(pair)
        pairs[split] = pair
    x, y = load_idx(*pairs["train"])
    xt, yt = load_idx(*pairs["test"])
    return from_arrays(
        x, y, x_test=xt, y_test=yt, num_classes=10, class_names=FASHION_MNIST_CLASSES,
        name="fashion_mnist", source=str(folder), **kwargs,
    )


def load_fashion_mnist(
    *,
    validation_split: float = 0.1,
    limit: int | None = None,
    batch_size: int = 128,
    seed: int | None = 0,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    standardize: bool = False,
    download_timeout: float | None = DOWNLOAD_TIMEOUT,
) -> Dataset:
    """Fashion-MNIST (28x28x1, 10 classes) as a :class:`Dataset`, pixels scaled to [0, 1].

    Sources, in order: ``data_dir`` (if given), ``/usr/share/datasets/fashion-mnist``
    (Debian ``dataset-fashion-mnist``), the Keras cache
    (``~/.keras/datasets/fashion-mnist``), a prepared TFDS copy
    (``tfds.load("fashion_mnist", download=False)``, if installed), then
    ``keras.datasets.fashion_mnist.load_data()``, which downloads (within
    ``download_timeout`` seconds, after a 3-second reachability check).
    ``download=False`` stops before anything that needs the network.

    Args:
        validation_split: stratified fraction of the 60k training images held
            out for validation (the 10k test set stays the test split).
        limit: seeded stratified subset size per source split, for quick runs.

    Raises:
        DataError: naming every place tried and why it failed, plus the fix.
    """
    kwargs = dict(
        validation_split=validation_split, limit=limit, batch_size=batch_size,
        seed=seed, standardize=standardize,
    )
    tried: list[str] = []
    for folder in local_dirs(data_dir):
        try:
            return _load_local(folder, **kwargs)
        except DataError as e:
            tried.append(f"{folder}: {e}")

    if tfds_available():
        from tf_gpp.data.tfds import from_tfds

        try:
            return from_tfds("fashion_mnist", download=False, **kwargs)
        except DataError as e:
            tried.append(f"TFDS fashion_mnist: {e}")
    else:
        tried.append("TFDS: tensorflow-datasets is not installed")

    if download:
        try:
            (x, y), (xt, yt) = keras_download(download_timeout)
        except DataError as e:
            tried.append(f"keras.datasets.fashion_mnist.load_data(): {e}")
        else:
            return from_arrays(
                x, y, x_test=xt, y_test=yt, num_classes=10, class_names=FASHION_MNIST_CLASSES,
                name="fashion_mnist", source=f"keras.datasets ({keras_cache_dirs()[0]})",
                **kwargs,
            )
    else:
        tried.append("keras.datasets download: skipped (download=False)")

    places = "\n".join(f"  - {t}" for t in tried)
    raise DataError(f"Fashion-MNIST could not be loaded. Tried:\n{places}\n{_FIX}")
