"""Dataset loaders: digits, Fashion-MNIST (local files, fallbacks), TFDS, image folders."""

import sys
import types
from pathlib import Path

import numpy as np
import pytest

import tf_gpp.data.fashion_mnist as fm
from tf_gpp.data import (
    FASHION_MNIST_CLASSES,
    Preprocessing,
    from_image_folder,
    from_tfds,
    load_default,
    load_digits,
    load_fashion_mnist,
    write_idx,
)
from tf_gpp.errors import DataError

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
HAVE_DEBIAN = (DEBIAN / "train-images-idx3-ubyte.gz").is_file()


def _fake_fashion(folder: Path, n_train=30, n_test=20) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz",
                  rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8))


@pytest.fixture
def nowhere(monkeypatch, tmp_path):
    """No Fashion-MNIST anywhere: no Debian files, empty Keras cache, no TFDS."""
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "debian")
    monkeypatch.setattr(fm, "keras_cache_dirs", lambda: [tmp_path / "keras"])
    monkeypatch.setattr(fm, "tfds_available", lambda: False)
    return tmp_path


def test_digits_shapes_and_classes():
    ds = load_digits(batch_size=32)
    assert ds.input_shape == (8, 8, 1) and ds.num_classes == 10
    assert ds.class_names == [str(i) for i in range(10)]
    assert sum(ds.num_examples.values()) == 1797
    x, y = ds.as_numpy("test")
    assert x.shape[1:] == (8, 8, 1) and x.min() >= 0 and x.max() <= 1
    assert set(np.unique(y)) == set(range(10))
    assert ds.preprocessing == Preprocessing.rescale(1 / 16)
    xb, yb = next(iter(ds.train))
    assert xb.shape == (32, 8, 8, 1) and yb.dtype.name == "int32"
    small = load_digits(limit=100, validation_split=0.1, test_split=0.1)
    assert small.num_examples == {"train": 81, "val": 9, "test": 10}


@pytest.mark.skipif(not HAVE_DEBIAN, reason="Debian dataset-fashion-mnist not installed")
def test_fashion_mnist_debian_with_limit():
    ds = load_fashion_mnist(limit=500, validation_split=0.2, batch_size=50, download=False)
    assert ds.source == str(DEBIAN)
    assert ds.input_shape == (28, 28, 1) and ds.num_classes == 10
    assert ds.class_names == FASHION_MNIST_CLASSES
    assert ds.num_examples == {"train": 400, "val": 100, "test": 500}
    x, y = ds.as_numpy("val")
    assert x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert np.bincount(y).tolist() == [10] * 10


def test_fashion_mnist_from_data_dir_and_keras_cache(nowhere):
    _fake_fashion(nowhere / "mine")
    ds = load_fashion_mnist(data_dir=nowhere / "mine", validation_split=0.0, download=False)
    assert ds.source == str(nowhere / "mine")
    assert ds.num_examples == {"train": 30, "test": 20}
    _fake_fashion(nowhere / "keras")
    ds = load_fashion_mnist(download=False)
    assert ds.source == str(nowhere / "keras")


def test_fashion_mnist_not_found_lists_places_and_fix(nowhere):
    with pytest.raises(DataError) as info:
        load_fashion_mnist(download=False)
    msg = str(info.value)
    for place in ("debian", "keras", "tensorflow-datasets is not installed", "download=False",
                  "apt-get install dataset-fashion-mnist"):
        assert place in msg


def test_fashion_mnist_corrupt_file_reported(nowhere):
    _fake_fashion(nowhere / "debian")
    (nowhere / "debian" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8bgarbage")
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz"):
        load_fashion_mnist(download=False)


def test_load_default_falls_back_to_digits_with_warning(nowhere):
    with pytest.warns(UserWarning, match="digits"):
        ds = load_default(limit=200)
    assert ds.name == "digits" and ds.input_shape == (8, 8, 1)
    _fake_fashion(nowhere / "debian")
    assert load_default().name == "fashion_mnist"
    with pytest.raises(DataError, match="prefer"):
        load_default(prefer="mnist")


def test_from_tfds_missing_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(DataError, match="pip install tensorflow-datasets"):
        from_tfds("fashion_mnist")


def test_from_tfds_with_stub_module(monkeypatch):
    """Exercises from_tfds against a minimal stand-in for the tfds API."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    data = {
        "train": (rng.integers(0, 256, (40, 6, 6, 1), dtype=np.uint8), np.arange(40) % 4),
        "test": (rng.integers(0, 256, (12, 6, 6, 1), dtype=np.uint8), np.arange(12) % 4),
    }
    label = types.SimpleNamespace(num_classes=4, names=["a", "b", "c", "d"])
    info = types.SimpleNamespace(
        supervised_keys=("image", "label"),
        features={"label": label},
        splits={k: types.SimpleNamespace(num_examples=len(v[1])) for k, v in data.items()},
    )
    calls = {}

    def load(name, split, **kwargs):
        calls.update(kwargs, name=name)
        return [tf.data.Dataset.from_tensor_slices(data[s]) for s in split], info

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", types.SimpleNamespace(load=load))
    ds = from_tfds("toy", validation_split=0.25, batch_size=8, download=False, limit=20)
    assert calls["name"] == "toy" and calls["download"] is False and calls["as_supervised"]
    assert ds.num_classes == 4 and ds.class_names == ["a", "b", "c", "d"]
    assert ds.input_shape == (6, 6, 1) and ds.source == "tfds:toy"
    assert ds.num_examples == {"train": 15, "val": 5, "test": 12}
    xv, yv = ds.as_numpy("val")
    np.testing.assert_allclose(xv, data["train"][0][:5] / 255.0, rtol=1e-6)
    assert yv.dtype == np.int32
    assert sum(len(y) for _, y in ds.train) == 15
    resized = from_tfds("toy", image_size=(4, 4), validation_split=0.0)
    assert resized.input_shape == (4, 4, 1) and next(iter(resized.train))[0].shape[1:] == (4, 4, 1)


def _png_folder(root: Path, classes=("cat", "dog"), per_class=4, size=(10, 12)):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            arr = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            (root / c / f"{i}.png").write_bytes(tf.io.encode_png(arr).numpy())
    return root


def test_from_image_folder(tmp_path):
    root = _png_folder(tmp_path / "imgs")
    ds = from_image_folder(root, (8, 8), validation_split=0.25, batch_size=4)
    assert ds.class_names == ["cat", "dog"] and ds.num_classes == 2
    assert ds.input_shape == (8, 8, 3)
    assert ds.num_examples == {"train": 6, "val": 2}
    x, y = ds.as_numpy("train")
    assert x.shape == (6, 8, 8, 3) and x.max() <= 1.0 and set(y) <= {0, 1}
    gray = from_image_folder(root, (8, 8), validation_split=0.0, color_mode="grayscale",
                             test_path=root)
    assert gray.input_shape == (8, 8, 1) and gray.num_examples == {"train": 8, "test": 8}


def test_from_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        from_image_folder(tmp_path / "missing", (8, 8))
    one = _png_folder(tmp_path / "one", classes=("only",))
    with pytest.raises(DataError, match="at least 2"):
        from_image_folder(one, (8, 8), validation_split=0.0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError):
        from_image_folder(tmp_path / "empty", (8, 8), validation_split=0.0)
