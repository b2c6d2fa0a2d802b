"""Keras's Python data forms as ``tf.data``: ``keras.utils.PyDataset``, generators and
other iterators, and generator functions.

``model.fit`` takes these besides arrays and ``tf.data``; the intake
(:mod:`tf_gpp.data.intake`) turns them into ``tf.data`` pipelines here, so every front
door (``compress``, ``grow``, ``Pruner.step``, ``PruningCallback``, the importances,
``recalibrate_batchnorm``) reads them by the same rules:

* a ``keras.utils.PyDataset`` is indexed ``ds[i]`` for ``i < len(ds)`` on every pass (each
  epoch reads it again, in order) and its ``on_epoch_end()`` is called after each complete
  pass; its ``workers`` / ``use_multiprocessing`` are not used. One without a length
  (``num_batches`` of ``None``: endless) is refused, as an endless ``tf.data`` is.
* a generator function (a callable returning an iterator of batches) is called again for
  every pass, so nothing is held in memory.
* a generator, or any other iterator, can be read only once, while ``compress``, ``grow``,
  ``Pruner.step`` and ``PruningCallback`` read their data several times (a label scan,
  every epoch, BatchNorm re-estimation). Its batches are therefore read when it is
  handed in and kept in memory, at most :data:`MAX_ITERATOR_BYTES`: a bigger or endless
  one is refused, naming the forms that are read again instead (a PyDataset, a generator
  function, a ``tf.data.Dataset``). A door that reads one bounded pass
  (``recalibrate_batchnorm(steps=)``, an importance's ``max_batches``) reads only that many
  batches, so an endless generator works there, as with ``fit(steps_per_epoch=)``.

Batches are standardised as ``fit`` reads them: ``(x, y)`` or ``(x, y, sample_weight)``
(a list is a tuple; ``(x,)`` or a bare ``x`` are inputs without labels, which only
``recalibrate_batchnorm`` accepts; a dict is an element with named fields, e.g. TFDS's
``{"image": ..., "label": ...}``). Lists inside (the inputs of a multi-input model) become
tuples. The element spec is read from the first, second and (for a PyDataset) last batch:
the batch axis and any size that differs between them are left unknown.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tf_gpp.errors import DataError

__all__ = ["MAX_ITERATOR_BYTES", "as_tf_data", "stream_form"]

#: Bytes of a one-shot iterator's batches kept in memory before it is refused.
MAX_ITERATOR_BYTES = 2 * 1024**3

#: What to pass instead of a one-shot iterator that cannot be kept.
REREADABLE = (
    "pass data that can be read again instead: a keras.utils.PyDataset, a generator function "
    "(e.g. data=make_batches, not make_batches(); it is called for every pass) or a tf.data.Dataset"
)


def stream_form(data: Any) -> str | None:
    """``"PyDataset"``, ``"generator"`` (any one-shot iterator), ``"generator function"``
    (a callable returning batches) or ``None`` for every other form."""
    if isinstance(data, keras.utils.PyDataset):
        return "PyDataset"
    if isinstance(data, Iterator):
        return "generator"
    if callable(data) and not isinstance(data, type | keras.layers.Layer | tf.data.Dataset):
        return "generator function"
    return None


def as_tf_data(data: Any, what: str = "data", *, max_batches: int | None = None) -> Any:
    """``data`` as a ``tf.data.Dataset`` of its batches when it is a PyDataset, a generator /
    iterator or a generator function (see the module docstring); anything else unchanged.

    Args:
        data: what the user passed.
        what: the argument's name, used in every error.
        max_batches: read at most this many batches of a one-shot iterator (a door that
            reads one bounded pass); other forms are not cut.

    Raises:
        DataError: an empty or consumed iterator, a PyDataset without a length, batches
            that are not ``(x, y[, w])`` / ``x`` / dicts or change structure or rank, a
            one-shot iterator larger than :data:`MAX_ITERATOR_BYTES`.
    """
    form = stream_form(data)
    if form == "PyDataset":
        return _from_py_dataset(data, what)
    if form == "generator":
        return _from_iterator(data, what, max_batches)
    if form == "generator function":
        return _from_function(data, what)
    return data


# -- batches ------------------------------------------------------------------------------


def _tuples(v: Any) -> Any:
    """Lists become tuples at every level (``tf.data`` would read a list as one tensor)."""
    if isinstance(v, Mapping):
        return {k: _tuples(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return tuple(_tuples(x) for x in v)
    return v


def _arrays(v: Any, what: str, index: int) -> Any:
    try:
        return tf.nest.map_structure(np.asarray, v)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what} batch {index} holds values that are not arrays ({exc}); yield numpy "
                        "arrays or tensors.") from None


def standardize_batch(batch: Any, what: str, index: int) -> Any:
    """A batch as ``fit`` reads it: ``(x, y)`` / ``(x, y, w)`` tuples, a bare ``x`` (no
    labels) or a dict element, with lists turned into tuples and leaves into arrays."""
    if isinstance(batch, Mapping):
        return _arrays(_tuples(batch), what, index)
    if isinstance(batch, list):
        batch = tuple(batch)
    if isinstance(batch, tuple):
        if len(batch) == 3 and batch[2] is None:
            batch = batch[:2]
        if len(batch) == 1:
            batch = batch[0]
        elif len(batch) not in (2, 3):
            raise DataError(
                f"{what} batch {index} is a tuple of {len(batch)} items; yield (x, y) or (x, y, "
                "sample_weight) batches as for model.fit (several inputs go in a list or dict as x)."
            )
        elif any(v is None for v in batch):
            raise DataError(f"{what} batch {index} holds None as x or y; yield (x, y) batches of arrays.")
    return _arrays(_tuples(batch), what, index)


def _leaf_spec(what: str) -> Callable[..., tf.TensorSpec]:
    def spec(*leaves: np.ndarray) -> tf.TensorSpec:
        ranks = {leaf.ndim for leaf in leaves}
        if len(ranks) != 1:
            raise DataError(f"{what} yields batches whose arrays change rank ({sorted(ranks)}); every "
                            "batch needs the same structure and ranks.")
        if 0 in ranks:
            raise DataError(
                f"{what} yields a scalar where a batch of examples (n, ...) was expected: yield "
                "batches, as model.fit reads a PyDataset or generator (e.g. labels of shape (n,))."
            )
        dims = [d[0] if len(set(d)) == 1 else None for d in zip(*(leaf.shape[1:] for leaf in leaves), strict=True)]
        kinds = {leaf.dtype.kind for leaf in leaves}
        if kinds & set("USO"):
            return tf.TensorSpec((None, *dims), tf.string)
        return tf.TensorSpec((None, *dims), tf.as_dtype(np.result_type(*leaves)))

    return spec


def element_spec(batches: list[Any], what: str) -> Any:
    """The ``tf.TensorSpec`` structure of ``batches`` (batch axis and differing sizes unknown)."""
    for i, b in enumerate(batches[1:], 1):
        try:
            tf.nest.assert_same_structure(batches[0], b)
        except (TypeError, ValueError):
            raise DataError(
                f"{what} batch {i} has another structure than batch 0 ({_describe(b)} vs "
                f"{_describe(batches[0])}); every batch needs the same (x, y) structure."
            ) from None
    return tf.nest.map_structure(_leaf_spec(what), *batches)


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def _describe(batch: Any) -> str:
    return str(tf.nest.map_structure(lambda a: f"array{tuple(a.shape)}", batch))


def _cast(batch: Any, spec: Any) -> Any:
    return tf.nest.map_structure(
        lambda a, s: a if s.dtype == tf.string else a.astype(s.dtype.as_numpy_dtype, copy=False), batch, spec)


def _empty(what: str, form: str) -> DataError:
    if form == "generator":
        return DataError(
            f"{what} is a generator that yields nothing: it is empty or was already read (a generator "
            f"can be read once; pass a new one for every call); {REREADABLE}."
        )
    return DataError(f"{what} is an empty {form}: give at least one labelled (x, y) batch.")


# -- the three forms ----------------------------------------------------------------------


def _num_batches(ds: keras.utils.PyDataset, what: str) -> int:
    try:
        n = ds.num_batches
    except (NotImplementedError, TypeError):
        n = None
    if n is None:
        raise DataError(
            f"{what} is a PyDataset without a length (num_batches is None or __len__ is missing): it "
            "would be read forever; tf_gpp reads one pass per epoch: define __len__ (or num_batches)."
        )
    return int(n)


def _from_py_dataset(ds: keras.utils.PyDataset, what: str) -> tf.data.Dataset:
    n = _num_batches(ds, what)
    if n <= 0:
        raise _empty(what, "PyDataset")
    spec = element_spec([standardize_batch(ds[i], what, i) for i in sorted({0, min(1, n - 1), n - 1})], what)

    def batches() -> Iterator[Any]:
        for i in range(n):
            yield _cast(standardize_batch(ds[i], what, i), spec)
        ds.on_epoch_end()

    return tf.data.Dataset.from_generator(batches, output_signature=spec).apply(
        tf.data.experimental.assert_cardinality(n))


def _from_iterator(it: Iterator[Any], what: str, max_batches: int | None) -> tf.data.Dataset:
    kept, size = [], 0
    for raw in it:
        batch = standardize_batch(raw, what, len(kept))
        size += sum(leaf.nbytes for leaf in tf.nest.flatten(batch))
        if size > MAX_ITERATOR_BYTES:
            raise DataError(
                f"{what} is a generator that yielded more than {_size(MAX_ITERATOR_BYTES)} "
                f"({len(kept) + 1} batches) without ending: a generator can be read only once, so tf_gpp "
                "keeps its batches in memory to read them again (compress reads its data once per epoch); "
                f"an endless or large one cannot be kept: {REREADABLE}."
            )
        kept.append(batch)
        if max_batches is not None and len(kept) >= max_batches:
            break
    if not kept:
        raise _empty(what, "generator")
    spec = element_spec(kept, what)
    kept = [_cast(b, spec) for b in kept]
    return tf.data.Dataset.from_generator(lambda: iter(kept), output_signature=spec).apply(
        tf.data.experimental.assert_cardinality(len(kept)))


def _calls(fn: Callable[[], Any], what: str) -> Iterator[Any]:
    try:
        out = fn()
    except TypeError as exc:
        raise DataError(
            f"{what} is a callable that cannot be called without arguments ({exc}); a generator "
            "function is called with none, for every pass, and returns an iterator of (x, y) batches."
        ) from None
    try:
        return iter(out)
    except TypeError:
        raise DataError(
            f"{what} is a callable (read as a generator function: called for every pass) but it "
            f"returned {type(out).__name__}, not an iterator of (x, y) batches."
        ) from None


def _from_function(fn: Callable[[], Any], what: str) -> tf.data.Dataset:
    first = [standardize_batch(b, what, i) for i, b in enumerate(itertools.islice(_calls(fn, what), 2))]
    if not first:
        raise _empty(what, "generator function")
    spec = element_spec(first, what)

    def batches() -> Iterator[Any]:
        for i, b in enumerate(_calls(fn, what)):
            yield _cast(standardize_batch(b, what, i), spec)

    return tf.data.Dataset.from_generator(batches, output_signature=spec)
