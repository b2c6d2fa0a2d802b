"""load_interpreter: runtime choice and clear errors for bad files."""

from __future__ import annotations

import numpy as np
import pytest

from tf_gpp.convert import TFLiteFileError, load_interpreter, predict, runtime_info
from tf_gpp.errors import DataError, TfGppError


def test_prefers_litert():
    info = runtime_info()
    assert info.name == "ai-edge-litert"
    assert info.version[0].isdigit()


def test_loads_with_threads(float_tflite):
    interpreter = load_interpreter(float_tflite, num_threads=2)
    assert list(interpreter.get_input_details()[0]["shape"][1:]) == [8, 8, 1]


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(lambda good: good[: len(good) // 2], id="truncated"),
        pytest.param(lambda good: good[:100], id="truncated_header"),
        pytest.param(lambda good: good[:8] + bytes(len(good) - 8), id="zeroed_body"),
        pytest.param(lambda good: b"", id="empty"),
        pytest.param(lambda good: b"PK\x03\x04" + bytes(200), id="zip"),
        pytest.param(lambda good: np.random.default_rng(0).bytes(4000), id="garbage"),
    ],
)
def test_corrupt_file_names_file_and_fix(float_tflite, tmp_path, content):
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(content(float_tflite.read_bytes()))
    with pytest.raises(TFLiteFileError) as info:
        load_interpreter(bad)
    message = str(info.value)
    assert "broken.tflite" in message
    assert "to_tflite" in message
    assert isinstance(info.value, TfGppError) and isinstance(info.value, OSError)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(TFLiteFileError, match="does not exist"):
        load_interpreter(tmp_path / "nope.tflite")
    with pytest.raises(TFLiteFileError, match="not a file"):
        load_interpreter(tmp_path)


def test_predict_checks_shape(float_tflite):
    interpreter = load_interpreter(float_tflite)
    with pytest.raises(DataError, match=r"\(n, 8, 8, 1\)"):
        predict(interpreter, np.zeros((3, 8, 8, 3), "float32"))


def test_predict_batches_match_single_samples(float_tflite, digits):
    _, _, x, _ = digits
    interpreter = load_interpreter(float_tflite)
    batched = predict(interpreter, x[:37], batch_size=16)
    single = predict(interpreter, x[:37], batch_size=1)
    assert batched.shape == (37, 10)
    np.testing.assert_allclose(batched, single, atol=1e-6)


@pytest.mark.filterwarnings("ignore:.*tf.lite.Interpreter is deprecated")
def test_tf_lite_fallback_runtime_gives_same_outputs(float_tflite, digits):
    _, _, x, _ = digits
    litert = predict(load_interpreter(float_tflite), x[:20])
    tf_interpreter = load_interpreter(float_tflite, runtime="tensorflow")
    np.testing.assert_allclose(predict(tf_interpreter, x[:20]), litert, atol=1e-5)


def test_unknown_runtime(float_tflite):
    from tf_gpp.convert import ConversionError

    with pytest.raises(ConversionError, match="ai-edge-litert"):
        load_interpreter(float_tflite, runtime="onnxruntime")
