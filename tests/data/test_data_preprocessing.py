"""Preprocessing: serialisation and the Keras layer equal the applied map."""

import json

import numpy as np
import pytest

from tf_gpp.data import Preprocessing, from_arrays
from tf_gpp.errors import DataError


@pytest.mark.parametrize(
    "prep",
    [
        Preprocessing.rescale(1 / 255),
        Preprocessing(scale=2.0, offset=-1.0),
        Preprocessing(scale=1 / 255, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3)),
        Preprocessing(scale=0.5, offset=0.1, mean=0.3, std=0.7),
    ],
)
def test_as_layer_matches_apply(prep):
    raw = np.random.default_rng(0).uniform(0, 255, size=(3, 5, 5, 3)).astype(np.float32)
    expected = prep.apply_numpy(raw)
    np.testing.assert_allclose(np.asarray(prep.apply(raw)), expected, rtol=1e-5, atol=1e-5)
    layer = prep.as_layer()
    np.testing.assert_allclose(np.asarray(layer(raw)), expected, rtol=1e-5, atol=1e-5)


def test_dict_round_trip():
    prep = Preprocessing(scale=1 / 255, mean=(0.1, 0.2), std=(0.3, 0.4))
    assert Preprocessing.from_dict(json.loads(json.dumps(prep.to_dict()))) == prep
    with pytest.raises(DataError, match="unknown keys"):
        Preprocessing.from_dict({"scale": 1.0, "gain": 2})


@pytest.mark.parametrize(
    "kwargs",
    [{"scale": 0}, {"scale": float("nan")}, {"mean": (0.1,)}, {"mean": (0.1, 0.2), "std": (1.0,)},
     {"mean": 0.0, "std": 0.0}],
)
def test_invalid(kwargs):
    with pytest.raises(DataError):
        Preprocessing(**kwargs)


def test_embedded_layer_reproduces_pipeline():
    """A model that embeds ``as_layer()`` maps raw pixels to what the pipeline yields."""
    import keras

    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, size=(12, 4, 4, 3), dtype=np.uint8)
    ds = from_arrays(x, np.arange(12) % 3, validation_split=0.0, standardize=True, shuffle=False)
    got, _ = ds.as_numpy("train")
    inputs = keras.Input((4, 4, 3))
    model = keras.Model(inputs, ds.preprocessing.as_layer()(inputs))
    np.testing.assert_allclose(np.asarray(model(x.astype(np.float32))), got, rtol=1e-4, atol=1e-4)
