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

import functools
import json
import os
import re
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tf_gpp.convert import quantization as qmodes
from tf_gpp.convert.calibration import (
    InputSpec,
    RepresentativeData,
    as_generator,
    calibration_feeds,
)
from tf_gpp.convert.errors import ConversionError
from tf_gpp.io import write_atomic

QUANTIZATION_MODES: tuple[str | None, ...] = (None, *qmodes.names())
"""Accepted values of ``quantization`` at import time: float32, float16 weights, int8
weights with float activations (dynamic range), full-integer int8. The registry
:mod:`tf_gpp.convert.quantization` is the source (``quantization.names()``)."""

_KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def to_tflite(
    model: Any,
    path: str | os.PathLike[str],
    quantization: str | None = None,
    representative_data: RepresentativeData = None,
    int8_io: bool = False,
    *,
    calibration_samples: int = 200,
    select_tf_ops: bool = False,
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
        select_tf_ops: also allow TensorFlow ops outside the TFLite builtin set (RNNs
            without ``unroll=True``, custom layers); the file then needs the Flex
            delegate at runtime, absent from ``tflite-runtime`` and most edge builds.

    A model with a ``mixed_float16``/``mixed_bfloat16`` dtype policy is converted
    through a float32 copy (same weights), with a one-line ``UserWarning``.

    Returns:
        The absolute path of the written file.

    Raises:
        ConversionError: bad ``quantization``/``int8_io``, missing calibration
            data, an output path that would clobber a Keras file, or a model
            the TFLite builtin op set cannot express (two lines: the layer and the
            fix; the converter's own output is in ``__cause__``).
        tf_gpp.errors.DataError: unusable ``representative_data``.
    """
    mode = _check_mode(quantization, representative_data, int8_io)
    out = Path(path).expanduser().absolute()
    source = _source_path(model)
    _check_output(out, source)
    keras_model = _load(source) if source is not None else model
    specs, signature = _input_signature(keras_model)
    keras_model = float32_copy(keras_model)

    feeds = None
    if mode.needs_calibration:
        feeds = calibration_feeds(representative_data, specs, max_samples=calibration_samples)

    flatbuffer = _convert(keras_model, signature, mode, feeds, int8_io, select_tf_ops)
    _atomic_write(out, flatbuffer)
    return out


def _check_mode(quantization: Any, representative_data: Any, int8_io: bool) -> qmodes.QuantizationMode:
    mode = qmodes.get(quantization)
    if mode.needs_calibration and representative_data is None:
        raise ConversionError(
            f"quantization={mode.name!r} needs representative_data to calibrate "
            "activation ranges: pass ~100-500 typical inputs (numpy array, tf.data.Dataset "
            "or generator), or use quantization='dynamic' which needs none."
        )
    if int8_io and not mode.supports_int8_io:
        raise ConversionError(f"int8_io=True requires quantization='int8' (got {quantization!r}).")
    if representative_data is not None and not mode.needs_calibration:
        warnings.warn(
            f"representative_data is only used by calibrated modes such as quantization='int8'; "
            f"ignored for quantization={quantization!r}.",
            UserWarning,
            stacklevel=3,
        )
    return mode


HALF_POLICIES = ("mixed_float16", "mixed_bfloat16", "float16", "bfloat16")
"""Dtype policies whose computation is not float32: converted through a float32 copy."""


def half_precision_layers(model: Any) -> list[str]:
    """Names of the layers (nested models included) whose dtype policy computes in 16 bits."""
    found: list[str] = []

    def walk(layer: Any) -> None:
        policy = getattr(layer, "dtype_policy", None)
        if getattr(policy, "name", None) in HALF_POLICIES and type(layer).__name__ != "InputLayer":
            found.append(layer.name)
        for sub in getattr(layer, "layers", None) or []:
            walk(sub)

    for layer in getattr(model, "layers", None) or []:
        walk(layer)
    return found


def _float32_config(config: Any) -> Any:
    """``config`` with every 16-bit dtype policy replaced by ``"float32"``."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy" and (config.get("config") or {}).get("name") in HALF_POLICIES:
            return {**config, "config": {**config["config"], "name": "float32"}}
        return {k: ("float32" if k == "dtype" and v in HALF_POLICIES else _float32_config(v))
                for k, v in config.items()}
    if isinstance(config, list):
        return [_float32_config(v) for v in config]
    return config


def float32_copy(model: Any) -> Any:
    """``model`` itself when it computes in float32, else a float32 copy with the same weights
    and state (announced with a one-line ``UserWarning``): TFLite's builtin kernels are
    float32/int8, a ``mixed_float16`` graph's float16 convolutions have none.

    The copy goes through Keras' own ``.keras`` saving (config, weights, assets), so layers
    whose state is not in ``get_weights()`` keep it.
    """
    half = half_precision_layers(model)
    if not half:
        return model
    with tempfile.TemporaryDirectory(prefix="tf_gpp_float32_") as tmp:
        src, dst = Path(tmp) / "m.keras", Path(tmp) / "m32.keras"
        try:
            model.save(src)
            with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
                for item in zin.infolist():
                    data = zin.read(item.filename)
                    if item.filename == "config.json":
                        data = json.dumps(_float32_config(json.loads(data))).encode()
                    zout.writestr(item, data)
            copy = keras.saving.load_model(dst, compile=False, safe_mode=False)
        except Exception as exc:  # custom classes that cannot be saved/loaded, ...
            raise ConversionError(
                f"model '{model.name}' computes in {model.dtype_policy.name if hasattr(model, 'dtype_policy') else '16-bit'} "
                f"(layer '{half[0]}') and could not be copied to float32 for TFLite ({type(exc).__name__}).\n"
                "Fix: rebuild it under keras.mixed_precision.set_global_policy('float32') and "
                "load the trained weights with set_weights()/load_weights()."
            ) from exc
    warnings.warn(
        f"model '{model.name}' uses a 16-bit mixed-precision policy ({len(half)} layers, e.g. "
        f"'{half[0]}'); converting a float32 copy with the same weights.",
        UserWarning,
        stacklevel=3,
    )
    return copy


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
    try:
        return keras.saving.load_model(source, compile=False, safe_mode=True)
    except Exception as exc:  # keras raises ValueError/OSError/TypeError variously
        raise ConversionError(
            f"could not load the Keras model {source} (safe_mode=True): {exc}"
        ) from exc


def _input_signature(model: Any) -> tuple[list[InputSpec], Any]:
    """Per-input specs and the TensorSpec structure matching ``model.input``."""
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
    mode: qmodes.QuantizationMode,
    feeds: Sequence[dict[str, np.ndarray]] | None,
    int8_io: bool,
    select_tf_ops: bool = False,
) -> bytes:
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
        mode.configure(converter, as_generator(list(feeds or [])) if mode.needs_calibration else None, int8_io)
        if select_tf_ops:
            converter.target_spec.supported_ops = [
                *converter.target_spec.supported_ops, tf.lite.OpsSet.SELECT_TF_OPS]
            # TF's own advice for RNN loops kept as TensorLists under SELECT_TF_OPS.
            converter._experimental_lower_tensor_list_ops = False  # noqa: SLF001
        dump = ""
        try:
            with warnings.catch_warnings(), _captured_stderr() as captured:
                # int8 calibration runs TF's own (deprecated) tf.lite.Interpreter.
                warnings.filterwarnings(
                    "ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated"
                )
                try:
                    return converter.convert()
                finally:
                    dump = captured()
        except Exception as exc:
            cause = ConverterOutput(f"{exc}\n\nconverter log:\n{dump}" if dump.strip() else str(exc))
            cause.__cause__ = exc
            raise ConversionError(converter_message(model, mode.name, f"{exc}\n{dump}")) from cause


class ConverterOutput(Exception):
    """The TFLite converter's own error and log (the ``__cause__`` of a conversion error)."""


class _captured_stderr:  # noqa: N801 - used as a context manager
    """Redirect file descriptor 2 (where the converter's C++ code writes) to a temporary file;
    the context value returns what was written so far."""

    def __enter__(self) -> Any:
        self._file = tempfile.TemporaryFile(mode="w+b")
        try:
            sys.stderr.flush()
            self._saved = os.dup(2)
            os.dup2(self._file.fileno(), 2)
        except (OSError, ValueError):  # no real fd 2 (embedded interpreters): capture nothing
            self._saved = None
        return self._read

    def _read(self) -> str:
        self._file.seek(0)
        return self._file.read().decode("utf-8", "replace")

    def __exit__(self, *exc: Any) -> None:
        if self._saved is not None:
            os.dup2(self._saved, 2)
            os.close(self._saved)
        self._file.close()


_RNN_TYPES = ("LSTM", "GRU", "SimpleRNN", "RNN", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D")
_KERAS_MODULE = re.compile(r"^keras(\.src)?\.")


def _all_layers(model: Any) -> list[Any]:
    out: list[Any] = []
    for layer in getattr(model, "layers", None) or []:
        out.append(layer)
        inner = getattr(layer, "forward_layer", None)  # Bidirectional
        if inner is not None:
            out.extend([inner, layer.backward_layer])
        out.extend(_all_layers(layer) if getattr(layer, "layers", None) else [])
    return out


def _ops_in(detail: str) -> list[str]:
    ops = re.findall(r"'tf\.(\w+)' op", detail)
    listed = re.search(r"TF Select ops: ([\w, ]+)", detail)
    if listed:
        ops += [o.strip() for o in listed[1].split(",")]
    return list(dict.fromkeys(o for o in ops if o))


def converter_message(model: Any, mode: str | None, detail: str) -> str:
    """Two lines for a failed conversion: which layer (or op) and the fix. ``detail`` is the
    converter's error and log; the layer is found by its name in the converter's op locations."""
    head = f"TFLite conversion of model '{model.name}' (quantization={mode!r}) failed"
    layers = _all_layers(model)
    rnns = [la for la in layers if type(la).__name__ in _RNN_TYPES and not getattr(la, "unroll", True)]
    tensor_list = "TensorList" in detail or "tensor list" in detail.lower()
    if rnns and (tensor_list or "While" in detail):
        la = rnns[0]
        return (
            f"{head}: layer '{la.name}' ({type(la).__name__}) runs a TensorFlow while-loop that the "
            "TFLite builtin op set cannot express.\n"
            f"Fix: build it with unroll=True (fixed sequence length), or convert with "
            "select_tf_ops=True (CLI: --select-tf-ops; needs the Flex delegate at runtime)."
        )
    ops = _ops_in(detail)
    names = sorted({la.name for la in layers if re.search(rf"[/\"]{re.escape(la.name)}(_\d+)?/", detail)},
                   key=lambda n: [la.name for la in layers].index(n))
    custom = [la for la in layers if la.name in names and not _KERAS_MODULE.match(type(la).__module__)]
    culprit = (custom or [la for la in layers if la.name in names] or [None])[0]
    where = (f"layer '{culprit.name}' ({type(culprit).__name__})" if culprit is not None else "the model")
    op_text = f" ({', '.join('tf.' + o for o in ops[:4])})" if ops else ""
    if mode == "int8" and not ops:
        return (
            f"{head}: {where} uses an op without an int8 kernel.\n"
            "Fix: use quantization='dynamic' or 'float16', or replace that layer."
        )
    return (
        f"{head}: {where} uses TensorFlow op(s){op_text} outside the TFLite builtin op set.\n"
        "Fix: rewrite that layer with builtin-supported ops, or convert with select_tf_ops=True "
        "(CLI: --select-tf-ops; needs the Flex delegate at runtime)."
    )


def _atomic_write(out: Path, data: bytes) -> None:
    """Write ``data`` to ``out`` atomically (:func:`tf_gpp.io.write_atomic`)."""
    try:
        write_atomic(out, data)
    except OSError as exc:
        raise ConversionError(f"cannot write {out}: {exc}") from exc
