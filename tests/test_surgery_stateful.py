"""Layers with state outside get_weights() keep it through surgery (or are refused).

Reference: the original model saved to .keras and reloaded by Keras (its own state
restore, not tf_gpp's), with the removed channels' weight slices zeroed by hand.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_gpp
from tf_gpp.importance.gates import gated_model
from tf_gpp.testing import equivalence_error

RNG = np.random.default_rng(0)
WORDS = np.array(["the", "cat", "dog", "sat", "ran", "far", "and", "a", "red", "fox"])
TEXTS = tf.constant([" ".join(RNG.choice(WORDS, RNG.integers(2, 6))) for _ in range(40)])
TOKENS = tf.constant(RNG.choice(WORDS[:7], (40, 5)))
INTS = RNG.choice([3, 7, 11, 19, 42, 100], (40, 5)).astype("int64")
FLOATS = RNG.uniform(-3, 3, (40, 5)).astype("float32")


def _reloaded(model: keras.Model, tmp_path, name: str = "original.keras") -> keras.Model:
    path = tmp_path / name
    model.save(path)
    return keras.saving.load_model(path, compile=False)


def _rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-12))


def _zero_units(layer: keras.layers.Layer, channels: list[int]) -> None:
    """Zero output channels of a Conv/Dense (kernel last axis and bias) or Embedding (columns)."""
    values = layer.get_weights()
    for w in values:
        w[..., channels] = 0
    layer.set_weights(values)


def _head(x, name_prefix: str = "") -> keras.KerasTensor:
    x = keras.layers.Dense(6, activation="relu", name="fc")(x)
    return keras.layers.Dense(3, name="out")(x)


def normalization_model() -> tuple[keras.Model, np.ndarray]:
    keras.utils.set_random_seed(1)
    data = (RNG.standard_normal((32, 8, 8, 3)) * np.array([5.0, 0.5, 20.0]) + np.array([3.0, -1.0, 40.0]))
    data = data.astype("float32")
    norm = keras.layers.Normalization(name="norm")
    norm.adapt(data)
    inp = keras.Input((8, 8, 3))
    x = norm(inp)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="c1")(x)
    x = keras.layers.Conv2D(6, 3, name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, _head(x)), data[:6]


def _sequence_model(preprocess: keras.layers.Layer, input_shape, dtype, vocab: int) -> keras.Model:
    keras.utils.set_random_seed(2)
    inp = keras.Input(input_shape, dtype=dtype)
    x = preprocess(inp)
    x = keras.layers.Embedding(vocab, 8, name="emb")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inp, _head(x))


def text_vectorization_model() -> tuple[keras.Model, np.ndarray]:
    tv = keras.layers.TextVectorization(max_tokens=16, output_sequence_length=6, name="pre")
    tv.adapt(TEXTS)
    return _sequence_model(tv, (), "string", 16), TEXTS[:6]


def string_lookup_model() -> tuple[keras.Model, np.ndarray]:
    lookup = keras.layers.StringLookup(name="pre")
    lookup.adapt(TOKENS)
    return _sequence_model(lookup, (5,), "string", lookup.vocabulary_size()), TOKENS[:6]


def integer_lookup_model() -> tuple[keras.Model, np.ndarray]:
    lookup = keras.layers.IntegerLookup(name="pre")
    lookup.adapt(INTS)
    return _sequence_model(lookup, (5,), "int64", lookup.vocabulary_size()), INTS[:6]


def hashing_model() -> tuple[keras.Model, np.ndarray]:
    return _sequence_model(keras.layers.Hashing(num_bins=8, salt=7, name="pre"), (5,), "string", 8), TOKENS[:6]


def discretization_model() -> tuple[keras.Model, np.ndarray]:
    disc = keras.layers.Discretization(num_bins=5, name="pre")
    disc.adapt(FLOATS)
    return _sequence_model(disc, (5,), "float32", 5), FLOATS[:6]


MODELS = {
    "Normalization": normalization_model,
    "TextVectorization": text_vectorization_model,
    "StringLookup": string_lookup_model,
    "IntegerLookup": integer_lookup_model,
    "Hashing": hashing_model,
    "Discretization": discretization_model,
}


@pytest.mark.parametrize("kind", list(MODELS))
def test_pruned_model_keeps_preprocessing_state(kind, tmp_path):
    model, x = MODELS[kind]()
    first = "c1" if kind == "Normalization" else "emb"
    request = {first: [1, 4], "fc": [0, 3]}
    slim = tf_gpp.prune_channels(model, request)
    ref = _reloaded(model, tmp_path)
    for name, channels in request.items():
        _zero_units(ref.get_layer(name), channels)
    want = ref.predict(x, verbose=0)
    assert _rel(want, slim.predict(x, verbose=0)) <= 1e-5
    # the equivalence helper (independent reference) agrees
    err, _ = equivalence_error(model, request, [x])
    assert err <= 1e-5
    # the state also survives saving and loading the pruned model
    loaded = _reloaded(slim, tmp_path, "slim.keras")
    assert _rel(want, loaded.predict(x, verbose=0)) <= 1e-5


def test_adapted_normalization_is_not_the_identity(tmp_path):
    """The Normalization case is meaningful: without its adapted statistics the output differs."""
    model, x = normalization_model()
    bare = keras.models.clone_model(model)
    bare.set_weights(model.get_weights())
    bare.get_layer("norm").set_weights(model.get_layer("norm").get_weights())  # weights, no finalize
    assert _rel(model.predict(x, verbose=0), bare.predict(x, verbose=0)) > 0.1


def test_gated_importance_model_keeps_normalization_state():
    model, x = normalization_model()
    gated, gates = gated_model(tf_gpp.DependencyGraph(model), ["c1"])
    assert set(gates) == {"c1"}
    assert _rel(model.predict(x, verbose=0), gated.predict(x, verbose=0)) <= 1e-6


def test_tflite_of_pruned_normalization_model(tmp_path):
    model, x = normalization_model()
    slim = tf_gpp.prune_channels(model, {"c1": [2, 5]})
    ref = _reloaded(model, tmp_path)
    _zero_units(ref.get_layer("c1"), [2, 5])
    path = tf_gpp.convert.to_tflite(slim, tmp_path / "slim.tflite")
    interpreter = tf_gpp.convert.load_interpreter(path)
    got = tf_gpp.convert.predict(interpreter, x)
    assert _rel(ref.predict(x, verbose=0), got) <= 1e-4


@keras.saving.register_keras_serializable(package="tests")
class MeanCenter(keras.layers.Layer):
    """A user's adaptable layer that keeps its adapted mean in a plain attribute."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.mean = 0.0

    def adapt(self, data):
        self.mean = np.asarray(data, dtype="float32").mean(axis=0)

    def call(self, x):
        return x - self.mean


def test_layer_whose_state_cannot_be_kept_is_refused():
    center = MeanCenter(name="center")
    center.adapt(FLOATS)
    inp = keras.Input((5,))
    x = keras.layers.Dense(6, activation="relu", name="fc")(center(inp))
    model = keras.Model(inp, keras.layers.Dense(2, name="out")(x))
    with pytest.raises(tf_gpp.UnsupportedModelError, match=r"'center' \(MeanCenter\).*save_own_variables"):
        tf_gpp.prune_channels(model, {"fc": [0]})
