"""The dataset-loader registry: built-in names, image folders, .npz files, TFDS names, refusals."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from PIL import Image

from tf_gpp.data import registry
from tf_gpp.errors import DataError


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for c in ("cat", "dog", "eel"):
        (tmp_path / "imgs" / c).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (6, 7, 3), dtype=np.uint8)).save(tmp_path / "imgs" / c / f"{i}.png")
    return tmp_path / "imgs"


def _model(shape, rescaling=False):
    inp = keras.Input(shape)
    x = keras.layers.Rescaling(1 / 255.0)(inp) if rescaling else inp
    return keras.Model(inp, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x)))


def test_named_loaders_and_aliases():
    assert registry.names() == ("fashion_mnist", "digits", "default")
    assert registry.get("Fashion-MNIST") is registry.get("fashion_mnist")
    ds = registry.load("digits", limit=200, batch_size=50)
    assert ds.name == "digits" and ds.input_shape == (8, 8, 1)


def test_image_folder_takes_size_channels_and_scaling_from_the_model(folder):
    ds = registry.load(str(folder))  # no model: the first image's size, RGB
    assert ds.input_shape == (6, 7, 3) and ds.num_classes == 3 and ds.class_names == ["cat", "dog", "eel"]
    x, _ = ds.as_numpy("train")
    assert x.max() <= 1.0
    gray = registry.load(str(folder), model=_model((12, 10, 1)))
    x, _ = gray.as_numpy("train")
    assert x.shape[1:] == (12, 10, 1) and x.max() <= 1.0
    raw = registry.load(str(folder), model=_model((6, 7, 3), rescaling=True))
    x, _ = raw.as_numpy("train")
    assert x.max() > 1.0 and "the model rescales" in raw.source  # no double scaling


def test_npz_keeps_the_arrays_and_splits(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.random((50, 5), dtype=np.float32), np.arange(50) % 5
    np.savez(tmp_path / "a.npz", x=x, y=y)
    ds = registry.load(str(tmp_path / "a.npz"), batch_size=64)
    assert ds.num_examples == {"train": 45, "val": 5} and ds.num_classes == 5
    xt, _ = ds.as_numpy("train")
    xv, _ = ds.as_numpy("val")
    rows = {tuple(r) for r in np.concatenate([xt, xv])}
    assert rows == {tuple(r) for r in x}  # the user's values, unscaled, none lost
    np.savez(tmp_path / "b.npz", x=x, y=y, x_val=x[:7], y_val=y[:7], x_test=x[:9], y_test=y[:9])
    ds = registry.load(str(tmp_path / "b.npz"))
    assert ds.num_examples == {"train": 50, "val": 7, "test": 9}


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x": np.zeros((4, 2))}, "'x' and 'y' together"),
        ({"x": np.zeros((4, 2)), "y": np.zeros(3)}, "4 samples but 'y' has 3"),
        ({"x": np.zeros((4, 2)), "y": np.array(["a", "b", "a", "b"])}, "'y' has dtype <U1"),
        ({"x": np.full((4, 2), np.nan), "y": np.array([0, 1, 0, 1])}, "NaN"),
        ({"x": np.zeros((4, 2)), "y": np.array([0, 1, 0, 1]), "x_val": np.zeros((2, 2))}, "'x_val' and 'y_val'"),
    ],
)
def test_npz_refusals(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        registry.load(str(tmp_path / "bad.npz"))


def test_unknown_identifiers(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'nope'.*an image folder, an .npz file"):
        registry.get("nope")
    with pytest.raises(DataError, match="no such file or folder"):
        registry.get(str(tmp_path / "missing.npz"))
    with pytest.raises(DataError, match="tensorflow-datasets|tfds"):
        registry.load("tfds:surely_not_a_dataset")


def test_register_a_loader_is_one_entry():
    calls = []

    def load(identifier, **kwargs):
        calls.append(identifier)
        return registry.load("digits", limit=100)

    registry.register(registry.DatasetLoader("mine", "my data", load))
    try:
        assert "mine" in registry.names() and "mine" in registry.help_text()
        assert registry.load("mine").name == "digits" and calls == ["mine"]
    finally:
        registry.unregister("mine")
    assert "mine" not in registry.names()
