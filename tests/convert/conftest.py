"""Shared fixtures: a tiny CNN trained on scikit-learn's 8x8 digits, and its conversions."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest

from tf_gpp.convert import to_tflite


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test) with x of shape (n, 8, 8, 1) in [0, 1]."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.images / 16.0).astype("float32")[..., None]
    y = data.target.astype("int64")
    return x[:1400], y[:1400], x[1400:], y[1400:]


def small_cnn(width: int = 8) -> keras.Model:
    """A 2-conv CNN on 8x8x1 inputs with 10 softmax outputs."""
    inp = keras.Input((8, 8, 1), name="pixels")
    h = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(inp)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.Conv2D(2 * width, 3, activation="relu")(h)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Flatten()(h)
    out = keras.layers.Dense(10, activation="softmax")(h)
    return keras.Model(inp, out, name="small_cnn")


@pytest.fixture(scope="session")
def make_cnn():
    """Factory fixture: ``make_cnn(width=8)`` builds a fresh untrained :func:`small_cnn`."""
    return small_cnn


@pytest.fixture(scope="session")
def trained_cnn(digits) -> keras.Model:
    x, y, _, _ = digits
    keras.utils.set_random_seed(0)
    model = small_cnn()
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=6, batch_size=32, verbose=0)
    return model


@pytest.fixture(scope="session")
def tflite_dir(tmp_path_factory) -> os.PathLike:
    return tmp_path_factory.mktemp("tflite")


@pytest.fixture(scope="session")
def float_tflite(trained_cnn, tflite_dir):
    return to_tflite(trained_cnn, tflite_dir / "float32.tflite")


@pytest.fixture(scope="session")
def int8_tflite(trained_cnn, tflite_dir, digits):
    return to_tflite(
        trained_cnn,
        tflite_dir / "int8.tflite",
        quantization="int8",
        representative_data=digits[0][:200],
    )
