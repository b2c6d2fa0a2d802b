"""Representative (calibration) data for full-integer quantization.

The TFLite converter calibrates activation ranges by running samples through
the float model. Users hold such data as a numpy array, a ``tf.data.Dataset``
of ``x`` or ``(x, y)`` / ``(x, y, sample_weight)``, or a callable returning an
iterable of those. All three are normalised here, eagerly, into a list of
single-sample feeds keyed by the model's input names, so that shape or NaN
problems surface as a :class:`~tf_gpp.errors.DataError` before the converter
runs (and not as an opaque failure inside its calibration loop).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from tf_gpp.errors import DataError

RepresentativeData = Any  # np.ndarray | tf.data.Dataset | Callable[[], Iterable]


@dataclass(frozen=True)
class InputSpec:
    """Name, per-sample shape (no batch axis; ``None`` = any) and dtype of one model input."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str


def calibration_feeds(
    data: RepresentativeData, specs: Sequence[InputSpec], max_samples: int = 200
) -> list[dict[str, np.ndarray]]:
    """Return up to ``max_samples`` feeds ``{input name: array of batch 1}``.

    Raises:
        DataError: the data is empty, has the wrong structure or shape, or
            holds non-finite values.
    """
    if max_samples < 1:
        raise DataError(f"max_samples must be >= 1, got {max_samples}.")
    feeds: list[dict[str, np.ndarray]] = []
    for element in _elements(data):
        arrays = _inputs_of(element, specs)
        for sample in _split_samples(arrays, specs):
            feeds.append(sample)
            if len(feeds) >= max_samples:
                return feeds
    if not feeds:
        raise DataError(
            "representative_data yielded no samples; pass a non-empty array, "
            "tf.data.Dataset or generator of model inputs."
        )
    return feeds


def _elements(data: RepresentativeData) -> Iterator[Any]:
    """Iterate the top-level elements of any accepted container."""
    if data is None:
        raise DataError("representative_data is None.")
    if isinstance(data, np.ndarray):
        # One big array of samples: treat as a single batched element.
        yield data
        return
    if isinstance(data, tf.data.Dataset):
        yield from data.as_numpy_iterator()
        return
    if callable(data):
        produced = data()
        if not isinstance(produced, Iterable):
            raise DataError(
                "a callable representative_data must return an iterable "
                f"(e.g. be a generator function); it returned {type(produced).__name__}."
            )
        yield from produced
        return
    if isinstance(data, list | tuple | dict):
        # Multi-input data given directly: one batched element.
        yield data
        return
    raise DataError(
        "representative_data must be a numpy array, a tf.data.Dataset or a callable "
        f"returning an iterable of samples; got {type(data).__name__}."
    )


def _inputs_of(element: Any, specs: Sequence[InputSpec]) -> list[np.ndarray]:
    """Strip labels/sample weights and return one array per model input, in spec order."""
    n_inputs = len(specs)
    if isinstance(element, dict):
        return _from_dict(element, specs)
    if isinstance(element, list | tuple):
        if n_inputs == 1:
            # (x,), (x, y) or (x, y, w): the inputs come first.
            first = element[0] if len(element) else None
            if isinstance(first, list | tuple | dict):
                return _inputs_of(first, specs)
            if first is None:
                raise DataError("representative_data yielded an empty tuple.")
            return [_as_array(first, specs[0])]
        first = element[0] if len(element) else None
        if isinstance(first, list | tuple | dict):  # ((x1, x2), y[, w])
            return _inputs_of(first, specs)
        if len(element) != n_inputs:
            raise DataError(
                f"the model has {n_inputs} inputs ({', '.join(s.name for s in specs)}) but a "
                f"representative sample holds {len(element)} arrays; yield "
                "(x1, ..., xn) or ((x1, ..., xn), y)."
            )
        return [_as_array(a, s) for a, s in zip(element, specs, strict=True)]
    if n_inputs != 1:
        raise DataError(
            f"the model has {n_inputs} inputs; representative samples must be tuples "
            "or dicts of arrays, one per input."
        )
    return [_as_array(element, specs[0])]


def _from_dict(element: dict, specs: Sequence[InputSpec]) -> list[np.ndarray]:
    missing = [s.name for s in specs if s.name not in element]
    if missing:
        raise DataError(
            f"representative sample dict lacks input(s) {missing}; its keys are {sorted(element)}."
        )
    return [_as_array(element[s.name], s) for s in specs]


def _as_array(value: Any, spec: InputSpec) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "fiub":
        raise DataError(
            f"representative data for input '{spec.name}' has dtype {array.dtype}; "
            "expected numbers."
        )
    array = array.astype(spec.dtype if spec.dtype else np.float32, copy=False)
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise DataError(
            f"representative data for input '{spec.name}' contains NaN or infinity; "
            "calibration needs finite values."
        )
    return array


def _split_samples(
    arrays: list[np.ndarray], specs: Sequence[InputSpec]
) -> Iterator[dict[str, np.ndarray]]:
    """Yield batch-1 feeds from arrays that are either single samples or batches."""
    batched: list[np.ndarray] = []
    for array, spec in zip(arrays, specs, strict=True):
        rank = len(spec.shape)
        if array.ndim == rank:
            array = array[np.newaxis]
        elif array.ndim != rank + 1:
            raise DataError(
                f"representative data for input '{spec.name}' has shape {array.shape}; "
                f"expected (n, {_fmt(spec.shape)}) or ({_fmt(spec.shape)})."
            )
        for axis, (got, want) in enumerate(zip(array.shape[1:], spec.shape, strict=True)):
            if want is not None and got != want:
                raise DataError(
                    f"representative data for input '{spec.name}' has shape {array.shape}; "
                    f"axis {axis + 1} should be {want} (model input shape "
                    f"(None, {_fmt(spec.shape)}))."
                )
        batched.append(array)
    sizes = {len(a) for a in batched}
    if len(sizes) != 1:
        raise DataError(f"inputs of one representative element have different batch sizes {sizes}.")
    for i in range(sizes.pop()):
        yield {s.name: a[i : i + 1] for a, s in zip(batched, specs, strict=True)}


def _fmt(shape: Sequence[int | None]) -> str:
    return ", ".join("None" if d is None else str(d) for d in shape)


FeedFactory = Callable[[], Iterator[dict[str, np.ndarray]]]


def as_generator(feeds: list[dict[str, np.ndarray]]) -> FeedFactory:
    """Wrap materialised feeds in the zero-argument generator the converter expects."""

    def generate() -> Iterator[dict[str, np.ndarray]]:
        yield from feeds

    return generate
