import keras
import numpy as np
import pytest

import tf_gpp
from tf_gpp.testing import assert_equivalent


def small_cnn() -> keras.Model:
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, padding="same", name="c1")(inp)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.ReLU(name="r1")(x)
    x = keras.layers.Conv2D(6, 3, name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(10, activation="relu", name="fc")(x)
    return keras.Model(inp, keras.layers.Dense(3, name="out")(x), name="small")


def test_user_model_untouched_and_names_kept():
    m = small_cnn()
    before = [w.copy() for w in m.get_weights()]
    slim = tf_gpp.prune_channels(m, {"c1": [0, 1], "fc": [9]})
    assert [w.shape for w in m.get_weights()] == [w.shape for w in before]
    for a, b in zip(m.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)
    assert [layer.name for layer in slim.layers] == [layer.name for layer in m.layers]
    assert slim.name == m.name
    assert slim.get_layer("c1").filters == 6 and slim.get_layer("fc").units == 9


def test_save_and_load_keras_file(tmp_path):
    m = small_cnn()
    slim = tf_gpp.prune_channels(m, {"c2": [0, 2, 4]})
    path = tmp_path / "slim.keras"
    slim.save(path)
    loaded = keras.models.load_model(path)
    x = np.random.default_rng(0).standard_normal((3, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), slim.predict(x, verbose=0), rtol=1e-6)


def test_compiled_model_is_recompiled_and_trains():
    m = small_cnn()
    m.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    slim = tf_gpp.prune_channels(m, {"c1": [3]})
    assert slim.compiled
    x = np.random.default_rng(0).standard_normal((16, 8, 8, 1)).astype("float32")
    hist = slim.fit(x, np.arange(16) % 3, epochs=1, verbose=0)
    assert np.isfinite(hist.history["loss"][0])


@pytest.mark.parametrize(
    "request_, match",
    [
        ({"nope": [0]}, "no layer named 'nope'"),
        ({"c1": [8]}, "out of range.*'c1'.*8 output channels"),
        ({"c1": list(range(8))}, "removes all 8 channels"),
        ({"out": [0]}, "model output 'out'"),
        ({"<input>": [0]}, "model input"),
        ([("c1", 0)], "must be a dict"),
    ],
)
def test_bad_requests_are_clear(request_, match):
    m = small_cnn()
    if isinstance(request_, dict) and "<input>" in request_:
        request_ = {m.layers[0].name: [0]}
    with pytest.raises(tf_gpp.PruningRequestError, match=match) as err:
        tf_gpp.prune_channels(m, request_)
    assert isinstance(err.value, ValueError)


def test_request_is_expanded_to_the_coupled_group():
    m = small_cnn()
    slim = tf_gpp.prune_channels(m, {"bn1": [2]})  # naming a consumer prunes the producer
    assert slim.get_layer("c1").filters == 7
    assert slim.get_layer("c2").kernel.shape[-2] == 7


def test_sequential_model():
    m = keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(8, activation="relu", name="a"),
         keras.layers.Dropout(0.1, name="drop"), keras.layers.Dense(2, name="out")],
        name="seq",
    )
    slim = assert_equivalent(m, {"a": [0, 5]})
    assert slim.get_layer("a").units == 6


def test_unbuilt_sequential_is_refused():
    m = keras.Sequential([keras.layers.Dense(4), keras.layers.Dense(2)])
    with pytest.raises(tf_gpp.UnsupportedModelError, match="not built"):
        tf_gpp.channel_groups(m)


def test_shared_layer_couples_its_calls():
    inp1, inp2 = keras.Input((5,)), keras.Input((5,))
    enc = keras.layers.Dense(6, activation="relu", name="enc")
    x = keras.layers.Concatenate(name="cat")([enc(inp1), enc(inp2)])
    m = keras.Model([inp1, inp2], keras.layers.Dense(2, name="out")(x))
    (g,) = tf_gpp.channel_groups(m)
    assert g.producers == ["enc"] and g.size == 6
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((3, 5)).astype("float32") for _ in range(2)]
    slim = assert_equivalent(m, {"enc": [1, 2]}, xs)
    assert slim.get_layer("out").kernel.shape == (8, 2)


def test_multi_output_model_protects_every_output():
    inp = keras.Input((8,))
    h = keras.layers.Dense(6, name="h")(inp)
    a = keras.layers.Dense(3, name="a")(h)
    b = keras.layers.Dense(4, name="b")(h)
    m = keras.Model(inp, {"a": a, "b": b})
    assert [g.producers for g in tf_gpp.channel_groups(m)] == [["h"]]
    assert_equivalent(m, {"h": [0]})
