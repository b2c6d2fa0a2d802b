"""Check that a converted ``.tflite`` model computes what its Keras model computes."""

from __future__ import annotations

import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tf_gpp.convert.errors import AccuracyDegradationWarning, ConversionError
from tf_gpp.convert.interpreter import load_interpreter, predict, quantization_kind
from tf_gpp.convert.quantization import is_lossy
from tf_gpp.errors import DataError, UnsupportedModelError

FLOAT_ATOL = 1e-4
"""Default absolute tolerance for float32 models, scaled by max(1, max |keras output|)."""


@dataclass(frozen=True)
class VerificationReport:
    """Agreement between a Keras model and its TFLite conversion on ``n`` samples.

    ``top1_agreement`` is the fraction of samples with the same predicted class
    (argmax; a single output unit is thresholded). Accuracies are ``None``
    without labels. ``passed`` combines the absolute-error check (float models,
    or whenever ``atol`` is given) with the accuracy-drop check (with labels) or
    the disagreement-rate check (without labels: the share of changed
    predictions bounds the accuracy drop).
    """

    max_abs_error: float
    top1_agreement: float
    keras_accuracy: float | None
    tflite_accuracy: float | None
    n: int
    passed: bool
    message: str
    mean_abs_error: float = 0.0
    quantization: str = "float32"
    atol: float | None = None
    max_accuracy_drop: float = 0.01
    path: str = ""

    @property
    def accuracy_drop(self) -> float | None:
        """Keras accuracy minus TFLite accuracy (positive = TFLite worse)."""
        if self.keras_accuracy is None or self.tflite_accuracy is None:
            return None
        return self.keras_accuracy - self.tflite_accuracy

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "accuracy_drop": self.accuracy_drop}

    def __str__(self) -> str:
        status = "PASSED" if self.passed else "FAILED"
        lines = [
            f"TFLite verification of {Path(self.path).name or 'model'} "
            f"({self.quantization}, n={self.n}): {status}",
            f"  max |keras - tflite|  {self.max_abs_error:.3g} (mean {self.mean_abs_error:.3g}"
            + (f", atol {self.atol:.3g})" if self.atol is not None else ", not checked)"),
            f"  top-1 agreement       {100 * self.top1_agreement:.2f}%",
        ]
        if self.keras_accuracy is not None and self.tflite_accuracy is not None:
            lines.append(
                f"  accuracy keras/tflite {100 * self.keras_accuracy:.2f}% / "
                f"{100 * self.tflite_accuracy:.2f}% (drop {100 * (self.accuracy_drop or 0):+.2f} "
                f"pts, allowed {100 * self.max_accuracy_drop:.2f})"
            )
        lines.append(f"  {self.message}")
        return "\n".join(lines)


def verify(
    tflite_path: str | os.PathLike[str],
    keras_model: Any,
    x: np.ndarray,
    y: np.ndarray | None = None,
    atol: float | None = None,
    max_accuracy_drop: float = 0.01,
    *,
    batch_size: int = 64,
    num_threads: int = 1,
    warn: bool = True,
) -> VerificationReport:
    """Run ``x`` through both models and compare outputs, predictions and accuracy.

    Args:
        tflite_path: the converted model.
        keras_model: the reference ``keras.Model`` or a ``.keras`` path.
        x: inputs, shape ``(n, ...)`` (one-input models).
        y: optional labels: integer classes ``(n,)`` or one-hot ``(n, C)``.
        atol: maximal absolute output difference. ``None``: ``1e-4 * max(1,
            max|keras output|)`` for float32 models and not checked for
            quantized ones (their error is judged by predictions instead).
        max_accuracy_drop: allowed accuracy loss (fraction, with ``y``) or
            allowed share of changed predictions (without ``y``).
        warn: emit an :class:`AccuracyDegradationWarning` when the check fails.
    """
    if max_accuracy_drop < 0:
        raise ConversionError(f"max_accuracy_drop must be >= 0, got {max_accuracy_drop}.")
    model = _keras_model(keras_model)
    x = np.asarray(x)
    if x.ndim == 0 or len(x) == 0:
        raise DataError("x must hold at least one sample.")

    interpreter = load_interpreter(tflite_path, num_threads=num_threads)
    kind = quantization_kind(interpreter)
    tfl = predict(interpreter, x, batch_size=batch_size).astype(np.float64)
    ref = np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float64)
    if ref.shape != tfl.shape:
        raise UnsupportedModelError(
            f"Keras output shape {ref.shape} differs from TFLite output shape {tfl.shape}; "
            "is the .tflite file a conversion of this model?"
        )

    diff = np.abs(ref - tfl)
    max_err, mean_err = float(diff.max()), float(diff.mean())
    pred_ref, pred_tfl = _classes(ref, ref), _classes(tfl, ref)
    agreement = float(np.mean(pred_ref == pred_tfl))

    acc_ref = acc_tfl = None
    if y is not None:
        labels = _labels(y, len(x))
        acc_ref = float(np.mean(pred_ref == labels))
        acc_tfl = float(np.mean(pred_tfl == labels))

    if atol is None and not is_lossy(kind):
        atol = FLOAT_ATOL * max(1.0, float(np.abs(ref).max()))
    problems = []
    if atol is not None and max_err > atol:
        problems.append(f"max abs error {max_err:.3g} exceeds atol {atol:.3g}")
    if acc_ref is not None and acc_tfl is not None:
        if acc_ref - acc_tfl > max_accuracy_drop + 1e-9:  # a drop equal to the allowed one passes
            problems.append(
                f"accuracy drops {100 * (acc_ref - acc_tfl):.2f} pts "
                f"({100 * acc_ref:.2f}% -> {100 * acc_tfl:.2f}%), more than the allowed "
                f"{100 * max_accuracy_drop:.2f}"
            )
    elif 1.0 - agreement > max_accuracy_drop + 1e-9:
        problems.append(
            f"{100 * (1 - agreement):.2f}% of predictions change, more than the allowed "
            f"{100 * max_accuracy_drop:.2f}%"
        )
    passed = not problems
    if passed:
        message = f"{kind} TFLite model matches the Keras model within tolerance."
    else:
        fix = (
            " Calibrate int8 with more representative data, or use a milder quantization "
            "('dynamic'/'float16')."
            if is_lossy(kind)
            else " Check that the file was converted from this model."
        )
        message = f"{kind} TFLite model deviates: " + "; ".join(problems) + "." + fix

    report = VerificationReport(
        max_abs_error=max_err,
        top1_agreement=agreement,
        keras_accuracy=acc_ref,
        tflite_accuracy=acc_tfl,
        n=len(x),
        passed=passed,
        message=message,
        mean_abs_error=mean_err,
        quantization=kind,
        atol=atol,
        max_accuracy_drop=max_accuracy_drop,
        path=str(tflite_path),
    )
    if warn and not passed:
        warnings.warn(
            f"{Path(str(tflite_path)).name}: {message}", AccuracyDegradationWarning, stacklevel=2
        )
    return report


def _keras_model(model: Any) -> Any:
    if isinstance(model, str | os.PathLike):
        try:
            model = keras.saving.load_model(model, compile=False, safe_mode=True)
        except Exception as exc:
            raise ConversionError(f"could not load the Keras model {model}: {exc}") from exc
    if not isinstance(model, keras.Model):
        raise ConversionError(
            f"keras_model must be a keras.Model or a .keras path, got {type(model).__name__}."
        )
    if len(model.outputs or []) > 1 or len(model.inputs or []) > 1:
        raise UnsupportedModelError(
            f"verify supports one-input, one-output models; '{model.name}' has "
            f"{len(model.inputs)} inputs and {len(model.outputs)} outputs."
        )
    return model


def _classes(out: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Predicted class per sample; one output unit is thresholded (0.5 for probabilities, else 0)."""
    flat = out.reshape(len(out), -1)
    if flat.shape[1] > 1:
        return flat.argmax(axis=1)
    probabilities = reference.min() >= 0.0 and reference.max() <= 1.0
    return (flat[:, 0] > (0.5 if probabilities else 0.0)).astype(np.int64)


def _labels(y: np.ndarray, n: int) -> np.ndarray:
    labels = np.asarray(y)
    if len(labels) != n:
        raise DataError(f"y has {len(labels)} labels for {n} samples.")
    if labels.ndim == 2 and labels.shape[1] > 1:
        return labels.argmax(axis=1)
    labels = labels.reshape(n)
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise DataError("y must hold integer class labels or one-hot rows.")
    return labels.astype(np.int64)
