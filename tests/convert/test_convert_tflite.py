"""to_tflite: model kinds, atomic writes, never clobbering the input, clear errors."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tf_gpp.convert import (
    QUANTIZATION_MODES,
    ConversionError,
    load_interpreter,
    predict,
    to_tflite,
    verify,
)
from tf_gpp.errors import DataError, TfGppError


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
        to_tflite(
            trained_cnn, target, "int8", representative_data=np.zeros((4, 5, 5, 1), "float32")
        )
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


def test_sequential_and_multi_input_int8(tmp_path):
    import keras

    seq = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3)])
    x = np.random.default_rng(0).standard_normal((8, 5)).astype("float32")
    out = to_tflite(seq, tmp_path / "seq.tflite")
    np.testing.assert_allclose(
        predict(load_interpreter(out), x), seq.predict(x, verbose=0), atol=1e-5
    )

    # Input order in the flatbuffer need not follow Keras order: calibration feeds by name.
    a, b = keras.Input((4,), name="z_first"), keras.Input((3,), name="a_second")
    model = keras.Model([a, b], keras.layers.Concatenate()([a, keras.layers.Dense(4)(b)]))
    rng = np.random.default_rng(1)
    xa, xb = (
        rng.standard_normal((64, 4)).astype("float32"),
        rng.standard_normal((64, 3)).astype("float32"),
    )
    path = to_tflite(model, tmp_path / "multi.tflite", "int8", representative_data=((xa, xb), None))
    runner = load_interpreter(path).get_signature_runner()
    got = runner(z_first=xa[:4], a_second=xb[:4])["output_0"]
    np.testing.assert_allclose(got, model.predict([xa[:4], xb[:4]], verbose=0), atol=0.1)
