"""The input normalisation a loader applied, recorded so a model can embed it.

``x_model = ((x_raw * scale + offset) - mean) / std``, where ``mean``/``std``
are optional per-channel vectors. Loaders apply it inside their ``tf.data``
pipelines and store it on the :class:`~tf_gpp.data.Dataset` they return;
:meth:`Preprocessing.as_layer` gives the same map as one Keras layer, so a
deployed model (or TFLite file) can take raw pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tf_gpp.errors import DataError


def _channel_vector(name: str, value: Any) -> tuple[float, ...] | None:
    if value is None:
        return None
    arr = np.atleast_1d(np.asarray(value, dtype=np.float64))
    if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)):
        raise DataError(
            f"Preprocessing.{name} must be a finite number or a 1-D per-channel "
            f"sequence, got {value!r}."
        )
    return tuple(float(v) for v in arr)


@dataclass(frozen=True)
class Preprocessing:
    """Affine input normalisation: rescale, then optional per-channel standardisation.

    Attributes:
        scale: multiplier applied to raw inputs (``1/255`` for 8-bit images).
        offset: added after scaling.
        mean: optional per-channel mean subtracted after rescaling.
        std: optional per-channel standard deviation divided by after that.
    """

    scale: float = 1.0
    offset: float = 0.0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = field(default=None)

    def __post_init__(self) -> None:
        if not np.isfinite(self.scale) or self.scale <= 0:
            raise DataError(f"Preprocessing.scale must be a positive finite number, got {self.scale!r}.")
        if not np.isfinite(self.offset):
            raise DataError(f"Preprocessing.offset must be finite, got {self.offset!r}.")
        mean = _channel_vector("mean", self.mean)
        std = _channel_vector("std", self.std)
        if (mean is None) != (std is None):
            raise DataError("Preprocessing.mean and Preprocessing.std must be given together.")
        if std is not None:
            if len(std) != len(mean):
                raise DataError(
                    f"Preprocessing.mean has {len(mean)} channels but std has {len(std)}; "
                    "give one value per channel (or one value for all)."
                )
            if min(std) <= 0:
                raise DataError("Preprocessing.std must be strictly positive in every channel.")
        object.__setattr__(self, "scale", float(self.scale))
        object.__setattr__(self, "offset", float(self.offset))
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    # -- constructors -------------------------------------------------------------

    @classmethod
    def identity(cls) -> Preprocessing:
        """No normalisation (inputs already in model range)."""
        return cls()

    @classmethod
    def rescale(cls, scale: float, offset: float = 0.0) -> Preprocessing:
        """Only ``x * scale + offset`` (e.g. ``Preprocessing.rescale(1/255)``)."""
        return cls(scale=scale, offset=offset)

    @classmethod
    def fit(cls, x: np.ndarray, scale: float = 1.0, offset: float = 0.0) -> Preprocessing:
        """Rescale, then standardise with per-channel mean/std measured on ``x`` (NHWC or NC)."""
        x = np.asarray(x)
        if x.ndim < 2 or x.shape[0] == 0:
            raise DataError(f"Preprocessing.fit needs a non-empty batch of inputs, got shape {x.shape}.")
        flat = x.reshape(-1, x.shape[-1])
        total = np.zeros(flat.shape[1])
        sq = np.zeros(flat.shape[1])
        for start in range(0, len(flat), 1 << 20):  # bounded float64 copies
            chunk = flat[start : start + (1 << 20)].astype(np.float64) * scale + offset
            total += chunk.sum(axis=0)
            sq += (chunk * chunk).sum(axis=0)
        mean = total / len(flat)
        std = np.sqrt(np.maximum(sq / len(flat) - mean**2, 0.0))
        std = np.where(std > 1e-12, std, 1.0)
        return cls(scale=scale, offset=offset, mean=tuple(mean), std=tuple(std))

    # -- application --------------------------------------------------------------

    @property
    def is_identity(self) -> bool:
        return self.scale == 1.0 and self.offset == 0.0 and self.mean is None

    def apply(self, x: Any) -> Any:
        """Apply to a tensor or array (float32 result); usable inside ``tf.data.map``."""
        import tensorflow as tf

        x = tf.cast(x, tf.float32)
        if self.scale != 1.0 or self.offset != 0.0:
            x = x * self.scale + self.offset
        if self.mean is not None:
            x = (x - tf.constant(self.mean, tf.float32)) / tf.constant(self.std, tf.float32)
        return x

    def apply_numpy(self, x: np.ndarray) -> np.ndarray:
        """NumPy version of :meth:`apply` (float32)."""
        out = np.asarray(x, dtype=np.float32) * np.float32(self.scale) + np.float32(self.offset)
        if self.mean is not None:
            out = (out - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return out.astype(np.float32)

    def as_layer(self, name: str = "preprocessing"):
        """A Keras layer computing the same map.

        ``Rescaling(scale, offset)`` without mean/std; otherwise one
        ``Normalization`` layer with ``mean' = (mean - offset) / scale`` and
        ``variance' = (std / scale)**2``, which is algebraically identical.
        """
        import keras

        if self.mean is None:
            return keras.layers.Rescaling(self.scale, self.offset, name=name)
        mean = (np.asarray(self.mean) - self.offset) / self.scale
        var = (np.asarray(self.std) / self.scale) ** 2
        return keras.layers.Normalization(mean=mean.tolist(), variance=var.tolist(), name=name)

    # -- serialisation ------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "offset": self.offset,
            "mean": list(self.mean) if self.mean is not None else None,
            "std": list(self.std) if self.std is not None else None,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preprocessing:
        unknown = set(d) - {"scale", "offset", "mean", "std"}
        if unknown:
            raise DataError(f"Preprocessing.from_dict: unknown keys {sorted(unknown)}.")
        return cls(
            scale=d.get("scale", 1.0),
            offset=d.get("offset", 0.0),
            mean=d.get("mean"),
            std=d.get("std"),
        )


def resolve_preprocessing(preprocessing: Preprocessing | str | None, auto: Preprocessing) -> Preprocessing:
    """Loader argument -> Preprocessing: ``"auto"`` gives ``auto``, ``None`` the identity."""
    if isinstance(preprocessing, Preprocessing):
        return preprocessing
    if preprocessing is None:
        return Preprocessing()
    if preprocessing == "auto":
        return auto
    raise DataError(
        f"preprocessing must be 'auto', None or a Preprocessing, got {preprocessing!r}."
    )
