"""Loading and running ``.tflite`` files with whichever TFLite runtime is installed.

Runtimes are tried in this order: ``ai_edge_litert`` (the maintained LiteRT
wheel), ``tflite_runtime`` (legacy, last release 2.14) and ``tf.lite`` (part of
TensorFlow, deprecated in favour of LiteRT). All three expose the same
``Interpreter`` API and apply the XNNPACK CPU delegate by default.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tf_gpp.convert.errors import ConversionError, TFLiteFileError
from tf_gpp.errors import DataError, UnsupportedModelError

# (runtime name, distribution names to read the version from, module, attribute path).
# tf.lite is an attribute of the tensorflow API module, not the `tensorflow.lite` package.
_RUNTIMES: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    (
        "ai-edge-litert",
        ("ai-edge-litert", "ai-edge-litert-nightly"),
        "ai_edge_litert.interpreter",
        "Interpreter",
    ),
    (
        "tflite-runtime",
        ("tflite-runtime", "tflite-runtime-nightly"),
        "tflite_runtime.interpreter",
        "Interpreter",
    ),
    (
        "tensorflow",
        ("tensorflow", "tensorflow-cpu", "tf-nightly"),
        "tensorflow",
        "lite.Interpreter",
    ),
)
RUNTIME_NAMES: tuple[str, ...] = tuple(name for name, *_ in _RUNTIMES)


@dataclass(frozen=True)
class RuntimeInfo:
    """Which TFLite runtime executes the models."""

    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


def runtime_info(runtime: str | None = None) -> RuntimeInfo:
    """The runtime :func:`load_interpreter` uses (the first importable one, or ``runtime``)."""
    name, version, _ = _resolve(runtime)
    return RuntimeInfo(name, version)


@functools.cache
def _resolve(runtime: str | None) -> tuple[str, str, Any]:
    if runtime is not None and runtime not in RUNTIME_NAMES:
        raise ConversionError(
            f"runtime={runtime!r} is unknown; use one of {RUNTIME_NAMES} or None."
        )
    tried = []
    for name, dists, module_name, attribute in _RUNTIMES:
        if runtime is not None and name != runtime:
            continue
        try:
            cls = importlib.import_module(module_name)
            for part in attribute.split("."):
                cls = getattr(cls, part)
        except (ImportError, AttributeError) as exc:
            tried.append(f"{module_name} ({exc.__class__.__name__})")
            continue
        return name, _version(dists), cls
    raise ConversionError(
        "no TFLite runtime is importable (tried " + ", ".join(tried) + "); "
        "install one with `pip install ai-edge-litert`."
    )


def _version(dists: Iterable[str]) -> str:
    for dist in dists:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def load_interpreter(
    path: str | os.PathLike[str], num_threads: int = 1, *, runtime: str | None = None
) -> Any:
    """Open a ``.tflite`` file and allocate its tensors.

    Args:
        path: the ``.tflite`` file.
        num_threads: CPU threads for the interpreter (>= 1).
        runtime: force one of :data:`RUNTIME_NAMES`; default: first importable.

    Returns:
        An allocated ``Interpreter`` of the chosen runtime.

    Raises:
        TFLiteFileError: the file is missing, empty, truncated or not TFLite.
    """
    if not isinstance(num_threads, int) or isinstance(num_threads, bool) or num_threads < 1:
        raise ConversionError(f"num_threads must be an int >= 1, got {num_threads!r}.")
    file = _check_file(path)
    _, _, interpreter_cls = _resolve(runtime)
    try:
        interpreter = interpreter_cls(model_path=str(file), num_threads=num_threads)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise TFLiteFileError(
            f"{file} could not be loaded as a TFLite model ({' '.join(str(exc).split())}). "
            "The file is probably truncated or corrupt: convert the model again with "
            "tf_gpp.convert.to_tflite."
        ) from exc
    return interpreter


def _check_file(path: str | os.PathLike[str]) -> Path:
    file = Path(path).expanduser()
    if not file.exists():
        raise TFLiteFileError(
            f"{file} does not exist; create it with tf_gpp.convert.to_tflite(model, '{file}')."
        )
    if not file.is_file():
        raise TFLiteFileError(f"{file} is not a file; pass the path of a .tflite model.")
    size = file.stat().st_size
    if size < 8:
        raise TFLiteFileError(
            f"{file} is {size} bytes long, too short for a TFLite model; it is empty or "
            "truncated: convert the model again with tf_gpp.convert.to_tflite."
        )
    with file.open("rb") as handle:
        head = handle.read(8)
    if head[4:8] != b"TFL3":
        kind = " (it looks like a zip archive, e.g. a .keras file)" if head[:2] == b"PK" else ""
        raise TFLiteFileError(
            f"{file} is not a TFLite flatbuffer: the 'TFL3' identifier is missing{kind}. "
            "Convert the Keras model with tf_gpp.convert.to_tflite."
        )
    return file


def quantization_kind(interpreter: Any) -> str:
    """Best-effort label of how a loaded model is quantized.

    Returns ``"float32"``, ``"float16"`` (float16 weights), ``"dynamic"``
    (int8 weights, float activations) or ``"int8"`` (integer activations).
    """
    io = {d["index"] for d in interpreter.get_input_details()}
    io |= {d["index"] for d in interpreter.get_output_details()}
    dtypes_inner: set[Any] = set()
    has_int8 = False
    for detail in interpreter.get_tensor_details():
        dtype = np.dtype(detail["dtype"])
        if dtype in (np.int8, np.uint8):
            has_int8 = True
        if detail["index"] not in io:
            dtypes_inner.add(dtype)
    if has_int8:
        return "dynamic" if np.dtype(np.float32) in dtypes_inner else "int8"
    if np.dtype(np.float16) in dtypes_inner:
        return "float16"
    return "float32"


def predict(interpreter: Any, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Run a one-input, one-output model on ``x`` and return float32 outputs.

    Integer (int8/uint8) inputs and outputs are quantized/dequantized with the
    tensors' scale and zero point. The interpreter is resized to
    ``batch_size`` (the last batch is zero-padded); a model whose batch axis
    cannot be resized runs at its own batch size.
    """
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    if len(inputs) != 1 or len(outputs) != 1:
        raise UnsupportedModelError(
            f"predict/verify support TFLite models with one input and one output; this "
            f"one has {len(inputs)} inputs and {len(outputs)} outputs."
        )
    x = np.asarray(x)
    signature = [int(d) for d in inputs[0].get("shape_signature", inputs[0]["shape"])]
    if x.ndim != len(signature) or any(
        want > 0 and got != want for got, want in zip(x.shape[1:], signature[1:], strict=True)
    ):
        expected = ", ".join("None" if d < 0 else str(d) for d in signature[1:])
        raise DataError(f"x has shape {x.shape}; the TFLite model expects (n, {expected}).")
    n = len(x)
    if n == 0:
        raise DataError("x is empty.")
    if batch_size < 1:
        raise ConversionError(f"batch_size must be >= 1, got {batch_size}.")
    batch = _set_batch(interpreter, inputs[0], min(batch_size, n))

    in_detail = interpreter.get_input_details()[0]
    out_detail = interpreter.get_output_details()[0]
    results = []
    for start in range(0, n, batch):
        chunk = x[start : start + batch]
        if len(chunk) < batch:
            pad = np.zeros((batch - len(chunk), *chunk.shape[1:]), dtype=chunk.dtype)
            chunk = np.concatenate([chunk, pad])
        interpreter.set_tensor(in_detail["index"], quantize(chunk, in_detail))
        interpreter.invoke()
        out = dequantize(interpreter.get_tensor(out_detail["index"]), out_detail)
        results.append(out[: min(batch, n - start)])
    return np.concatenate(results)


def _set_batch(interpreter: Any, detail: dict, batch: int) -> int:
    current = int(detail["shape"][0])
    if current == batch:
        return batch
    shape = [batch, *(int(d) for d in detail["shape"][1:])]
    try:
        interpreter.resize_tensor_input(detail["index"], shape)
        interpreter.allocate_tensors()
        return batch
    except (ValueError, RuntimeError):
        interpreter.resize_tensor_input(detail["index"], [current, *shape[1:]])
        interpreter.allocate_tensors()
        return current


def quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    """Convert float data to the dtype of an input tensor (affine int8/uint8 if quantized)."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return x.astype(dtype, copy=False)
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if scale:
        info = np.iinfo(dtype)
        q = np.round(x.astype(np.float32) / scale + zero_point)
        return np.clip(q, info.min, info.max).astype(dtype)
    return x.astype(dtype)


def dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    """Convert an output tensor to float32 (affine dequantization if quantized)."""
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if np.dtype(detail["dtype"]).kind in "iu" and scale:
        return (y.astype(np.float32) - zero_point) * np.float32(scale)
    return y.astype(np.float32, copy=False)
