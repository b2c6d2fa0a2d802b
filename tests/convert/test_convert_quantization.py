"""to_tflite quantization modes: every mode runs and agrees with Keras; calibration data forms."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tf_gpp.convert import (
    load_interpreter,
    predict,
    quantization_kind,
    to_tflite,
    verify,
)


def test_float32_matches_keras(trained_cnn, float_tflite, digits):
    _, _, x, y = digits
    report = verify(float_tflite, trained_cnn, x, y)
    assert report.passed, str(report)
    assert report.max_abs_error < 1e-4
    assert report.top1_agreement == 1.0
    assert report.quantization == "float32"
    assert report.keras_accuracy > 0.8  # the fixture model really learned something


@pytest.mark.parametrize("mode", ["float16", "dynamic"])
def test_weight_quantization_agrees(trained_cnn, tflite_dir, digits, mode):
    _, _, x, y = digits
    path = to_tflite(trained_cnn, tflite_dir / f"{mode}.tflite", quantization=mode)
    report = verify(path, trained_cnn, x, y)
    assert report.passed, str(report)
    assert report.top1_agreement >= 0.98
    limit = 1e-2 if mode == "float16" else 5e-2
    assert report.max_abs_error < limit
    assert quantization_kind(load_interpreter(path)) == mode


def test_int8_agrees_and_is_integer(trained_cnn, int8_tflite, digits):
    _, _, x, y = digits
    report = verify(int8_tflite, trained_cnn, x, y, max_accuracy_drop=0.03)
    assert report.passed, str(report)
    assert report.top1_agreement >= 0.95
    interpreter = load_interpreter(int8_tflite)
    assert quantization_kind(interpreter) == "int8"
    assert interpreter.get_input_details()[0]["dtype"] == np.float32


def test_int8_io_quantizes_inputs_and_outputs(trained_cnn, tflite_dir, digits):
    x_train, _, x, y = digits
    path = to_tflite(
        trained_cnn,
        tflite_dir / "int8_io.tflite",
        "int8",
        representative_data=x_train[:100],
        int8_io=True,
    )
    interpreter = load_interpreter(path)
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert interpreter.get_output_details()[0]["dtype"] == np.int8
    report = verify(path, trained_cnn, x, y, max_accuracy_drop=0.03)
    assert report.passed, str(report)


@pytest.mark.parametrize("form", ["dataset_xy_batched", "dataset_x_unbatched", "generator"])
def test_representative_data_forms(trained_cnn, tflite_dir, digits, form):
    x_train, y_train, x, _ = digits
    sample = x_train[:64]
    if form == "dataset_xy_batched":
        data = tf.data.Dataset.from_tensor_slices((sample, y_train[:64])).batch(16)
    elif form == "dataset_x_unbatched":
        data = tf.data.Dataset.from_tensor_slices(sample)
    else:

        def data():
            for row in sample:
                yield [row[None]]

    path = to_tflite(
        trained_cnn, tflite_dir / f"rep_{form}.tflite", "int8", representative_data=data
    )
    agreement = np.mean(
        predict(load_interpreter(path), x).argmax(1) == trained_cnn.predict(x, verbose=0).argmax(1)
    )
    assert agreement >= 0.95
