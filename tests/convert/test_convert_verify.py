"""verify: report contents and a clear signal when the TFLite model deviates."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tf_gpp.convert import AccuracyDegradationWarning, VerificationReport, verify


def test_report_fields_and_text(trained_cnn, float_tflite, digits):
    _, _, x, y = digits
    report = verify(float_tflite, trained_cnn, x, y)
    assert isinstance(report, VerificationReport)
    assert report.n == len(x)
    assert report.keras_accuracy == pytest.approx(report.tflite_accuracy)
    text = str(report)
    assert "PASSED" in text and "top-1 agreement" in text and "float32.tflite" in text
    assert report.to_dict()["accuracy_drop"] == pytest.approx(0.0)


def test_one_hot_labels_and_no_labels(trained_cnn, float_tflite, digits):
    _, _, x, y = digits
    one_hot = verify(float_tflite, trained_cnn, x, keras.utils.to_categorical(y, 10))
    plain = verify(float_tflite, trained_cnn, x, y)
    assert one_hot.keras_accuracy == plain.keras_accuracy
    unlabeled = verify(float_tflite, trained_cnn, x)
    assert unlabeled.keras_accuracy is None and unlabeled.passed


def test_wrong_model_fails_with_warning(float_tflite, digits, make_cnn):
    _, _, x, _ = digits
    keras.utils.set_random_seed(1)
    other = make_cnn()  # same architecture, different (random) weights
    with pytest.warns(AccuracyDegradationWarning):
        report = verify(float_tflite, other, x)
    assert not report.passed
    assert "FAILED" in str(report)


def test_int8_degradation_is_reported(trained_cnn, int8_tflite, digits):
    _, _, x, y = digits
    with pytest.warns(AccuracyDegradationWarning, match="int8"):
        strict = verify(int8_tflite, trained_cnn, x, y, atol=1e-6)
    assert not strict.passed
    assert "atol" in strict.message


def test_binary_single_output(tmp_path):
    from tf_gpp.convert import to_tflite

    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(inp))
    x = np.random.default_rng(0).standard_normal((64, 4)).astype("float32")
    path = to_tflite(model, tmp_path / "binary.tflite")
    report = verify(path, model, x, (model.predict(x, verbose=0)[:, 0] > 0.5).astype(int))
    assert report.passed and report.keras_accuracy == 1.0
