"""to_tflite: quantization modes, calibration data forms, atomic writes, clear errors."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

from tf_gpp.convert import (
    QUANTIZATION_MODES,
    ConversionError,
    load_interpreter,
    predict,
    quantization_kind,
    to_tflite,
    verify,
)
from tf_gpp.errors import DataError, TfGppError


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
        trained_cnn, tflite_dir / "int8_io.tflite", "int8", representative_data=x_train[:100], int8_io=True
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

    path = to_tflite(trained_cnn, tflite_dir / f"rep_{form}.tflite", "int8", representative_data=data)
    agreement = np.mean(predict(load_interpreter(path), x).argmax(1) == trained_cnn.predict(x, verbose=0).argmax(1))
    assert agreement >= 0.95


def test_keras_file_input_and_parent_dirs(trained_cnn, tmp_path, digits):
    source = tmp_path / "model.keras"
    trained_cnn.save(source)
    before = source.read_bytes()
    out = to_tflite(source, tmp_path / "nested" / "deeper" / "model.tflite")
    assert out.is_file() and out.is_absolute()
    assert source.read_bytes() == before
    _, _, x, _ = digits
    assert verify(out, source, x[:50]).passed


def test_refuses_to_overwrite_input_keras_file(trained_cnn, tmp_path):
    source = tmp_path / "model.keras"
    trained_cnn.save(source)
    before = source.read_bytes()
    with pytest.raises(ConversionError, match="overwrite"):
        to_tflite(source, source)
    with pytest.raises(ConversionError, match=r"\.keras"):
        to_tflite(trained_cnn, tmp_path / "other.keras")
    assert source.read_bytes() == before


def test_atomic_write_leaves_no_temp_files(trained_cnn, tmp_path):
    target = tmp_path / "model.tflite"
    target.write_bytes(b"old content")
    to_tflite(trained_cnn, target)
    assert sorted(os.listdir(tmp_path)) == ["model.tflite"]
    assert target.read_bytes()[4:8] == b"TFL3"


def test_failed_conversion_keeps_old_file(trained_cnn, tmp_path):
    target = tmp_path / "model.tflite"
    target.write_bytes(b"old content")
    with pytest.raises(DataError):
        to_tflite(trained_cnn, target, "int8", representative_data=np.zeros((4, 5, 5, 1), "float32"))
    assert target.read_bytes() == b"old content"
    assert os.listdir(tmp_path) == ["model.tflite"]


@pytest.mark.parametrize("bad", ["int4", "INT8", "fp16", "", 8])
def test_bad_quantization_names_valid_modes(trained_cnn, tmp_path, bad):
    with pytest.raises(ConversionError) as info:
        to_tflite(trained_cnn, tmp_path / "m.tflite", quantization=bad)
    assert isinstance(info.value, ValueError) and isinstance(info.value, TfGppError)
    for mode in QUANTIZATION_MODES:
        assert repr(mode) in str(info.value)
    assert not (tmp_path / "m.tflite").exists()


def test_int8_without_representative_data(trained_cnn, tmp_path):
    with pytest.raises(ConversionError, match="representative_data") as info:
        to_tflite(trained_cnn, tmp_path / "m.tflite", quantization="int8")
    assert isinstance(info.value, ValueError)


def test_int8_io_requires_int8(trained_cnn, tmp_path):
    with pytest.raises(ConversionError, match="int8_io"):
        to_tflite(trained_cnn, tmp_path / "m.tflite", quantization="dynamic", int8_io=True)


def test_representative_data_problems_are_data_errors(trained_cnn, tmp_path):
    nan = np.full((4, 8, 8, 1), np.nan, "float32")
    with pytest.raises(DataError, match="NaN"):
        to_tflite(trained_cnn, tmp_path / "m.tflite", "int8", representative_data=nan)
    with pytest.raises(DataError, match="no samples"):
        to_tflite(trained_cnn, tmp_path / "m.tflite", "int8", representative_data=lambda: iter([]))


def test_untrained_small_model_round_trip(tmp_path, make_cnn):
    model = make_cnn(width=4)
    x = np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32)
    out = to_tflite(model, tmp_path / "tiny.tflite")
    np.testing.assert_allclose(predict(load_interpreter(out), x), model.predict(x, verbose=0), atol=1e-5)


def test_sequential_and_multi_input_int8(tmp_path):
    import keras

    seq = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
    x = np.random.default_rng(0).standard_normal((8, 5)).astype("float32")
    out = to_tflite(seq, tmp_path / "seq.tflite")
    np.testing.assert_allclose(predict(load_interpreter(out), x), seq.predict(x, verbose=0), atol=1e-5)

    # Input order in the flatbuffer need not follow Keras order: calibration feeds by name.
    a, b = keras.Input((4,), name="z_first"), keras.Input((3,), name="a_second")
    model = keras.Model([a, b], keras.layers.Concatenate()([a, keras.layers.Dense(4)(b)]))
    rng = np.random.default_rng(1)
    xa, xb = rng.standard_normal((64, 4)).astype("float32"), rng.standard_normal((64, 3)).astype("float32")
    path = to_tflite(model, tmp_path / "multi.tflite", "int8", representative_data=((xa, xb), None))
    runner = load_interpreter(path).get_signature_runner()
    got = runner(z_first=xa[:4], a_second=xb[:4])["output_0"]
    np.testing.assert_allclose(got, model.predict([xa[:4], xb[:4]], verbose=0), atol=0.1)
