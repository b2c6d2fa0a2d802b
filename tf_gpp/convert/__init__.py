"""TFLite/LiteRT export, verification and latency measurement.

>>> from tf_gpp.convert import to_tflite, verify, benchmark_ab
>>> path = to_tflite(model, "slim.tflite", quantization="int8", representative_data=x[:200])
>>> print(verify(path, model, x_test, y_test))
>>> print(benchmark_ab("dense.tflite", "slim.tflite"))
"""

from tf_gpp.convert import quantization
from tf_gpp.convert.errors import AccuracyDegradationWarning, ConversionError, TFLiteFileError
from tf_gpp.convert.interpreter import (
    RUNTIME_NAMES,
    RuntimeInfo,
    load_interpreter,
    predict,
    quantization_kind,
    runtime_info,
)
from tf_gpp.convert.latency import (
    ABReport,
    LatencyReport,
    benchmark,
    benchmark_ab,
    benchmark_interleaved,
)
from tf_gpp.convert.quantization import QuantizationMode
from tf_gpp.convert.tflite import QUANTIZATION_MODES, float32_copy, half_precision_layers, to_tflite
from tf_gpp.convert.verify import VerificationReport, verify

__all__ = [
    "ABReport",
    "AccuracyDegradationWarning",
    "ConversionError",
    "LatencyReport",
    "QUANTIZATION_MODES",
    "QuantizationMode",
    "RUNTIME_NAMES",
    "RuntimeInfo",
    "TFLiteFileError",
    "VerificationReport",
    "benchmark",
    "benchmark_ab",
    "benchmark_interleaved",
    "load_interpreter",
    "float32_copy",
    "half_precision_layers",
    "predict",
    "quantization",
    "quantization_kind",
    "runtime_info",
    "to_tflite",
    "verify",
]
