"""Keras 3 model -> ``.tflite`` flatbuffer, with optional post-training quantization.

Conversion path (chosen after trying the alternatives on TF 2.21 / Keras 3.15):

* ``keras.export.ExportArchive`` writes a SavedModel whose single ``serve``
  endpoint calls the model with ``training=False`` (so Dropout/BatchNorm are in
  inference mode), then ``tf.lite.TFLiteConverter.from_saved_model`` converts
  it with the **builtin op set only**. Variables are frozen into constants and
  BatchNorm folds into the preceding ops, Dense becomes ``FULLY_CONNECTED``.
* ``TFLiteConverter.from_concrete_functions([fn], model)`` keeps Keras 3
  variables as resources: the flatbuffer contains ``VAR_HANDLE`` /
  ``READ_VARIABLE`` ops, an unfused BatchNorm and ``BATCH_MATMUL``, and int8
  calibration fails on it. Rejected.
* ``model.export(path, format="litert")`` (Keras >= 3.13) takes the same
  SavedModel route but enables ``SELECT_TF_OPS`` (a model needing them silently
  depends on the Flex delegate, absent from tflite-runtime and most edge
  builds) and writes the file in place. We want builtin ops only, an atomic
  write and our own quantization handling, so we drive the converter directly.
* ``TFLiteConverter.from_keras_model`` also works (it builds the same archive
  internally) but prints the SavedModel summary to stdout.
"""

from __future__ import annotations

import os
import re
import tempfile
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tf_gpp.convert.calibration import (
    InputSpec,
    RepresentativeData,
    as_generator,
    calibration_feeds,
)
from tf_gpp.convert.errors import ConversionError

QUANTIZATION_MODES: tuple[str | None, ...] = (None, "float16", "dynamic", "int8")
"""Accepted values of ``quantization``: float32, float16 weights, int8 weights
with float activations (dynamic range), full-integer int8."""

_KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def to_tflite(
    model: Any,
    path: str | os.PathLike[str],
    quantization: str | None = None,
    representative_data: RepresentativeData = None,
    int8_io: bool = False,
    *,
    calibration_samples: int = 200,
) -> Path:
    """Convert a Keras model (or a ``.keras`` file) to a TFLite flatbuffer at ``path``.

    Args:
        model: a built ``keras.Model`` or the path of a ``.keras`` file (loaded
            with ``safe_mode=True``).
        path: output file; parent directories are created. The file is written
            atomically (temporary file in the same directory, then ``os.replace``).
        quantization: ``None`` (float32), ``"float16"`` (float16 weights),
            ``"dynamic"`` (int8 weights, float activations) or ``"int8"``
            (full-integer; needs ``representative_data``).
        representative_data: calibration inputs for ``"int8"``: a numpy array of
            samples, a ``tf.data.Dataset`` of ``x`` or ``(x, y)`` (batched or
            not), or a callable returning an iterable of those.
        int8_io: with ``"int8"``, make the model's inputs and outputs int8 too
            (the caller quantizes with the tensors' scale/zero point); otherwise
            the int8 model keeps float32 inputs/outputs.
        calibration_samples: at most this many samples are used for calibration.

    Returns:
        The absolute path of the written file.

    Raises:
        ConversionError: bad ``quantization``/``int8_io``, missing calibration
            data, an output path that would clobber a Keras file, or a model
            the TFLite builtin op set cannot express.
        tf_gpp.errors.DataError: unusable ``representative_data``.
    """
    mode = _check_mode(quantization, representative_data, int8_io)
    out = Path(path).expanduser().absolute()
    source = _source_path(model)
    _check_output(out, source)
    keras_model = _load(source) if source is not None else model
    specs, signature = _input_signature(keras_model)

    feeds = None
    if mode == "int8":
        feeds = calibration_feeds(representative_data, specs, max_samples=calibration_samples)

    flatbuffer = _convert(keras_model, signature, mode, feeds, int8_io)
    _atomic_write(out, flatbuffer)
    return out


def _check_mode(quantization: Any, representative_data: Any, int8_io: bool) -> str | None:
    if quantization not in QUANTIZATION_MODES:
        valid = ", ".join(repr(m) for m in QUANTIZATION_MODES)
        raise ConversionError(
            f"quantization={quantization!r} is not supported; use one of {valid}."
        )
    if quantization == "int8" and representative_data is None:
        raise ConversionError(
            "quantization='int8' (full-integer) needs representative_data to calibrate "
            "activation ranges: pass ~100-500 typical inputs (numpy array, tf.data.Dataset "
            "or generator), or use quantization='dynamic' which needs none."
        )
    if int8_io and quantization != "int8":
        raise ConversionError(f"int8_io=True requires quantization='int8' (got {quantization!r}).")
    if representative_data is not None and quantization != "int8":
        warnings.warn(
            f"representative_data is only used by quantization='int8'; ignored for "
            f"quantization={quantization!r}.",
            UserWarning,
            stacklevel=3,
        )
    return quantization


def _source_path(model: Any) -> Path | None:
    if isinstance(model, str | os.PathLike):
        source = Path(model).expanduser().absolute()
        if not source.is_file():
            raise ConversionError(f"Keras model file {source} does not exist.")
        return source
    return None


def _check_output(out: Path, source: Path | None) -> None:
    if source is not None and out.resolve() == source.resolve():
        raise ConversionError(
            f"refusing to overwrite the input model {source} with the TFLite file; "
            "choose another path (e.g. with the .tflite suffix)."
        )
    if out.suffix.lower() in _KERAS_SUFFIXES:
        raise ConversionError(
            f"refusing to write a TFLite flatbuffer to {out}: the {out.suffix} suffix "
            "belongs to Keras model files; use a .tflite path."
        )
    if out.is_dir():
        raise ConversionError(
            f"{out} is a directory; pass a file path such as {out / 'model.tflite'}."
        )


def _load(source: Path) -> Any:
    import keras

    try:
        return keras.saving.load_model(source, compile=False, safe_mode=True)
    except Exception as exc:  # keras raises ValueError/OSError/TypeError variously
        raise ConversionError(
            f"could not load the Keras model {source} (safe_mode=True): {exc}"
        ) from exc


def _input_signature(model: Any) -> tuple[list[InputSpec], Any]:
    """Per-input specs and the TensorSpec structure matching ``model.input``."""
    import keras
    import tensorflow as tf

    if not isinstance(model, keras.Model):
        raise ConversionError(
            f"to_tflite expects a keras.Model or a .keras path, got {type(model).__name__}."
        )
    try:
        structure = model.input
    except (AttributeError, ValueError):
        # A Sequential model built from keras.Input but never called has
        # `inputs` but no `input` structure.
        flat = getattr(model, "inputs", None) or []
        structure = flat[0] if len(flat) == 1 else None
    if structure is None:
        raise ConversionError(
            f"model '{model.name}' has no defined inputs (an unbuilt subclassed model?); "
            "wrap it as a functional model: inp = keras.Input(shape); "
            "keras.Model(inp, model(inp))."
        )

    specs: list[InputSpec] = []
    used: set[str] = set()

    def to_spec(tensor: Any) -> Any:
        name = _unique(_sanitize(getattr(tensor, "name", None) or f"input_{len(specs)}"), used)
        dtype = keras.backend.standardize_dtype(tensor.dtype)
        shape = tuple(tensor.shape)
        specs.append(InputSpec(name=name, shape=tuple(shape[1:]), dtype=dtype))
        return tf.TensorSpec(shape=(None, *shape[1:]), dtype=dtype, name=name)

    signature = keras.tree.map_structure(to_spec, structure)
    return specs, signature


def _sanitize(name: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", name.split(":")[0])
    return name if name and not name[0].isdigit() else f"input_{name}"


def _unique(name: str, used: set[str]) -> str:
    candidate, k = name, 1
    while candidate in used:
        candidate, k = f"{name}_{k}", k + 1
    used.add(candidate)
    return candidate


def _convert(
    model: Any,
    signature: Any,
    mode: str | None,
    feeds: Sequence[dict[str, np.ndarray]] | None,
    int8_io: bool,
) -> bytes:
    import functools

    import keras
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="tf_gpp_savedmodel_") as saved_model_dir:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint(
            "serve",
            functools.partial(model.__call__, training=False),
            input_signature=[signature],
        )
        try:
            archive.write_out(saved_model_dir, verbose=False)
        except Exception as exc:
            raise ConversionError(
                f"could not trace model '{model.name}' for export: {exc}"
            ) from exc

        converter = tf.lite.TFLiteConverter.from_saved_model(
            saved_model_dir, signature_keys=["serve"]
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if mode is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if mode == "float16":
            converter.target_spec.supported_types = [tf.float16]
        elif mode == "int8":
            converter.representative_dataset = as_generator(list(feeds or []))
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if int8_io:
                converter.inference_input_type = tf.int8
                converter.inference_output_type = tf.int8
        try:
            with warnings.catch_warnings():
                # int8 calibration runs TF's own (deprecated) tf.lite.Interpreter.
                warnings.filterwarnings(
                    "ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated"
                )
                return converter.convert()
        except Exception as exc:
            raise ConversionError(_converter_message(model, mode, exc)) from exc


def _converter_message(model: Any, mode: str | None, exc: Exception) -> str:
    detail = " ".join(str(exc).split())
    if len(detail) > 1200:
        detail = detail[:1200] + " ..."
    hint = (
        "The model uses an op outside the TFLite builtin op set"
        + (" or one without an int8 kernel (try quantization='dynamic')" if mode == "int8" else "")
        + "; replace or remove that layer."
    )
    return f"TFLite conversion of model '{model.name}' (quantization={mode!r}) failed. {hint} Converter said: {detail}"


def _atomic_write(out: Path, data: bytes) -> None:
    """Write ``data`` to ``out`` via a temporary sibling file and ``os.replace``."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConversionError(f"cannot create the directory {out.parent}: {exc}") from exc
    tmp = out.parent / f".{out.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        # 0o666 lets the process umask decide the final permissions, like open().
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, out)
    except OSError as exc:
        raise ConversionError(f"cannot write {out}: {exc}") from exc
    finally:
        if tmp.exists():
            tmp.unlink()
