"""A small trained digits CNN shared by the importance and prune tests."""

from functools import cache

import keras
import numpy as np
from sklearn.datasets import load_digits


@cache
def digits_split(seed: int = 0):
    d = load_digits()
    x = (d.images[..., None] / 16.0).astype("float32")
    y = d.target.astype("int32")
    idx = np.random.default_rng(seed).permutation(len(x))
    x, y = x[idx], y[idx]
    return (x[:1400], y[:1400]), (x[1400:], y[1400:])


def digits_cnn(epochs: int = 12, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    (xt, yt), _ = digits_split()
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(32, 3, padding="same", name="c1")(inp)
    h = keras.layers.BatchNormalization(momentum=0.9, name="bn1")(h)
    h = keras.layers.ReLU(name="r1")(h)
    h = keras.layers.Conv2D(64, 3, padding="same", name="c2")(h)
    h = keras.layers.BatchNormalization(momentum=0.9, name="bn2")(h)
    h = keras.layers.ReLU(name="r2")(h)
    h = keras.layers.MaxPooling2D(name="pool")(h)
    h = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="c3")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    h = keras.layers.Dense(64, activation="relu", name="fc")(h)
    m = keras.Model(inp, keras.layers.Dense(10, name="out")(h), name="digits_cnn")
    m.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["accuracy"])
    m.fit(xt, yt, epochs=epochs, batch_size=64, verbose=0)
    return m


def with_bn_momentum(model: keras.Model, momentum: float) -> keras.Model:
    """A copy of ``model`` whose BatchNormalization layers use ``momentum`` (the Keras default is
    0.99, keras.applications' MobileNetV2 0.999): a user's well-trained model with slow BN."""
    config = model.get_config()
    for layer in config["layers"]:
        if layer["class_name"] == "BatchNormalization":
            layer["config"]["momentum"] = momentum
    copy = keras.Model.from_config(config)
    copy.set_weights(model.get_weights())
    return copy
