"""Quantization-mode registry, mixed-precision models and unsupported-op messages of to_tflite."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_gpp.convert import (
    ConversionError,
    load_interpreter,
    predict,
    quantization,
    quantization_kind,
    to_tflite,
)


def _tiny_cnn(name: str = "tiny") -> keras.Model:
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="c1")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(6, activation="relu", name="fc")(x)
    return keras.Model(inp, keras.layers.Dense(3, dtype="float32", name="out")(x), name=name)


@pytest.fixture
def mixed_policy():
    """Build under mixed_float16; the global policy is reset whatever happens."""
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_registry_lists_modes_and_refuses_unknown():
    assert quantization.names() == ("float16", "dynamic", "int8")
    assert quantization.get(None) is quantization.get("float32")
    assert quantization.get("int8").needs_calibration and not quantization.get("dynamic").needs_calibration
    with pytest.raises(ConversionError, match="quantization='int4' is not supported.*'int8'"):
        quantization.get("int4")


def test_a_registered_mode_is_accepted_by_to_tflite(tmp_path):
    def configure(converter, representative, int8_io):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]

    quantization.register(quantization.QuantizationMode("half", "float16 weights (test alias)", configure))
    try:
        path = to_tflite(_tiny_cnn(), tmp_path / "half.tflite", quantization="half")
        assert quantization_kind(load_interpreter(path)) == "float16"
    finally:
        quantization.unregister("half")
    with pytest.raises(ConversionError, match="not supported"):
        to_tflite(_tiny_cnn(), tmp_path / "x.tflite", quantization="half")


def test_mixed_float16_model_converts_through_a_float32_copy(mixed_policy, tmp_path):
    model = _tiny_cnn("mixed")
    assert model.get_layer("c1").dtype_policy.name == "mixed_float16"
    x = np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32)
    with pytest.warns(UserWarning, match="mixed-precision.*float32 copy") as record:
        path = to_tflite(model, tmp_path / "mixed.tflite")
    notices = [str(w.message) for w in record if "mixed-precision" in str(w.message)]
    assert len(notices) == 1 and "\n" not in notices[0]
    assert "model 'mixed'" in notices[0] and "'c1'" in notices[0]
    got = predict(load_interpreter(path), x)
    want = np.asarray(model.predict(x, verbose=0), dtype=np.float32)  # computed in float16
    np.testing.assert_allclose(got, want, atol=2e-2 * max(1.0, float(np.abs(want).max())))
    assert model.get_layer("c1").dtype_policy.name == "mixed_float16"  # the user's model is untouched


def test_float32_model_converts_without_notice(tmp_path, recwarn):
    to_tflite(_tiny_cnn(), tmp_path / "f32.tflite")
    assert not [w for w in recwarn if "mixed-precision" in str(w.message)]


def _lstm(unroll: bool) -> keras.Model:
    inp = keras.Input((5, 3))
    h = keras.layers.LSTM(4, unroll=unroll, name="lstm")(inp)
    return keras.Model(inp, keras.layers.Dense(2, name="out")(h))


def test_lstm_without_unroll_names_the_layer_and_the_fix(tmp_path, capfd):
    with pytest.raises(ConversionError) as info:
        to_tflite(_lstm(unroll=False), tmp_path / "lstm.tflite")
    lines = str(info.value).splitlines()
    assert len(lines) == 2
    assert "layer 'lstm' (LSTM)" in lines[0] and "unroll=True" in lines[1] and "select_tf_ops=True" in lines[1]
    assert "TensorList" in str(info.value.__cause__)  # the converter's own output, kept for --verbose
    assert "TensorList" not in capfd.readouterr().err  # and not dumped on the terminal


def test_lstm_fixes_convert(tmp_path):
    model = _lstm(unroll=True)
    x = np.random.default_rng(1).random((4, 5, 3), dtype=np.float32)
    path = to_tflite(model, tmp_path / "unrolled.tflite")
    np.testing.assert_allclose(predict(load_interpreter(path), x), model.predict(x, verbose=0), atol=1e-5)
    assert to_tflite(_lstm(unroll=False), tmp_path / "flex.tflite", select_tf_ops=True).stat().st_size > 0


@keras.saving.register_keras_serializable("tf_gpp_tests")
class Determinant(keras.layers.Layer):
    """A custom layer whose op (MatrixDeterminant) has no TFLite builtin kernel."""

    def call(self, x):
        return tf.linalg.det(tf.reshape(tf.concat([x, x, x], -1), (-1, 3, 3)))[:, None] * x


def test_custom_layer_with_unsupported_op_is_named(tmp_path):
    inp = keras.Input((4,))
    h = Determinant(name="det")(keras.layers.Dense(3, name="h")(inp))
    model = keras.Model(inp, keras.layers.Dense(2, name="out")(h))
    with pytest.raises(ConversionError) as info:
        to_tflite(model, tmp_path / "det.tflite")
    first, fix = str(info.value).splitlines()
    assert "layer 'det' (Determinant)" in first and "tf.MatrixDeterminant" in first
    assert "select_tf_ops=True" in fix and "--select-tf-ops" in fix
