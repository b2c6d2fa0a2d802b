"""Beyond CNNs end to end (issue 15): a small ViT and an LSTM classifier are compressed by
``compress`` (fine-tuned between rounds), come out smaller where the units are, and convert
to TFLite with the same outputs as Keras."""

import keras
import numpy as np

import tf_gpp
from tf_gpp.convert import to_tflite, verify
from tf_gpp.handlers.layernorm import approximate_normalization

QUICK = {"rounds": 2, "finetune_epochs": 1, "max_accuracy_drop": 1.0, "verbose": 0, "batch_size": 32}


def _tokens(n: int = 96, t: int = 8, d: int = 6, classes: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.normal(size=(n, t, d)).astype("float32")
    x[:, :, 0] += y[:, None]  # a class signal in one feature of every step
    return x, y


def small_vit() -> keras.Model:
    inp = keras.Input((8, 6))
    x = keras.layers.Dense(16, name="embed")(inp)
    for b in range(2):
        h = keras.layers.LayerNormalization(name=f"ln{b}a")(x)
        h = keras.layers.MultiHeadAttention(2, 8, name=f"mha{b}")(h, h)
        x = keras.layers.Add(name=f"res{b}a")([x, h])
        h = keras.layers.LayerNormalization(name=f"ln{b}b")(x)
        h = keras.layers.Dense(32, activation="gelu", name=f"up{b}")(h)
        x = keras.layers.Add(name=f"res{b}b")([x, keras.layers.Dense(16, name=f"down{b}")(h)])
    x = keras.layers.GlobalAveragePooling1D()(keras.layers.LayerNormalization(name="ln_out")(x))
    return keras.Model(inp, keras.layers.Dense(3, name="logits")(x))


def small_lstm() -> keras.Model:
    inp = keras.Input((8, 6))
    x = keras.layers.LSTM(24, unroll=True, name="lstm")(inp)  # unrolled: LiteRT builtin ops
    return keras.Model(inp, keras.layers.Dense(3, name="logits")(x))


def _check_tflite(model: keras.Model, x: np.ndarray, y: np.ndarray, tmp_path) -> None:
    path = to_tflite(model, tmp_path / f"{model.name}.tflite")
    report = verify(path, model, x, y, warn=False)
    assert report.passed and report.max_abs_error < 1e-4, report


def test_vit_compresses_its_mlp_and_residual_stream_and_converts(tmp_path):
    x, y = _tokens()
    model = small_vit()
    with approximate_normalization():  # the residual stream's LayerNorms, opt-in
        res = tf_gpp.compress(model, (x, y), (x, y), target_macs=0.5, **QUICK)
    slim = res.model
    assert res.history[-1].macs_ratio <= 0.5
    assert slim.get_layer("embed").units < 16  # the residual stream shrank...
    assert slim.get_layer("up0").units < 32 or slim.get_layer("up1").units < 32  # ...and an MLP
    assert slim.get_layer("mha0").get_config()["num_heads"] == 2  # whole heads are not units (yet)
    _check_tflite(slim, x, y, tmp_path)


def test_lstm_classifier_compresses_its_units_and_converts(tmp_path):
    x, y = _tokens()
    res = tf_gpp.compress(small_lstm(), (x, y), (x, y), target_macs=0.5, **QUICK)
    slim = res.model
    assert res.history[-1].macs_ratio <= 0.5
    units = slim.get_layer("lstm").units
    assert units < 24 and slim.get_layer("lstm").get_weights()[0].shape == (6, 4 * units)
    _check_tflite(slim, x, y, tmp_path)
