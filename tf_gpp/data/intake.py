"""One data intake for ``compress``, ``grow``, the importances and the CLI.

:func:`as_training_data` takes whatever ``model.fit`` takes — ``(x, y)`` or
``(x, y, sample_weight)`` arrays (as one tuple or as separate arguments),
list/dict inputs of multi-input models, ``tf.data`` datasets of tuples,
unbatched datasets (batched here), TFDS-style ``{"image": ..., "label": ...}``
elements, ``validation_split`` instead of ``validation_data``, ``keras.utils.PyDataset``,
generators and generator functions (read by :mod:`tf_gpp.data.streams`) — and returns
batched ``tf.data`` pipelines of ``(x, y)`` / ``(x, y, w)`` plus a
:class:`TaskInfo` describing the classification target (sparse, one-hot or
binary labels; logits or probabilities; which output is the classifier).

Anything else is refused with a :class:`~tf_gpp.errors.DataError` naming the
fix — in particular 2-D targets that are not one-hot rows (regression or
multi-label targets) are never silently trained with a cross-entropy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tf_gpp.data.labels import as_class_indices
from tf_gpp.data.streams import as_tf_data, stream_form
from tf_gpp.errors import DataError, UnsupportedModelError

__all__ = [
    "LABEL_KEYS",
    "TRAIN_BATCHES_SCANNED",
    "TaskInfo",
    "as_dataset",
    "as_tf_data",
    "as_training_data",
    "check_data",
    "first_labels",
    "infer_task",
    "labelled_batches",
    "output_is_probability",
    "scan_labels",
    "split_fit_arguments",
    "stream_form",
]

#: Training batches of a ``tf.data`` pipeline scanned up front (validation data is scanned fully).
TRAIN_BATCHES_SCANNED = 20

#: Keys that hold the labels in dict elements (TFDS and friends), first match wins.
LABEL_KEYS = ("label", "labels", "y", "target", "targets")

KINDS = ("sparse", "one_hot", "binary")


# -- the classification task --------------------------------------------------------------


@dataclass(frozen=True)
class TaskInfo:
    """What the classification target is and how to train and measure it.

    Attributes:
        kind: ``"sparse"`` (class indices), ``"one_hot"`` (rows of width C) or
            ``"binary"`` (0/1 labels for a single sigmoid or logit output).
        num_classes: classes of the statistics (2 for ``binary``).
        probabilities: the classifier output went through softmax/sigmoid
            (``False``: logits).
        output: name of the classifier output (its layer), ``None`` for a
            single-output model.
        output_index: its position among the model's outputs.
        num_outputs: how many outputs the model has.
    """

    kind: str
    num_classes: int
    probabilities: bool
    output: str | None = None
    output_index: int = 0
    num_outputs: int = 1

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r}: one of {KINDS}")

    # -- labels
    def labels(self, y: Any) -> Any:
        """The classifier's labels out of ``y`` (a dict by output name or a list in
        output order for multi-output models; ``y`` itself otherwise)."""
        if self.num_outputs == 1:
            return y
        if isinstance(y, Mapping):
            if self.output not in y:
                raise DataError(
                    f"the labels are a dict with keys {sorted(y)} but hold nothing for the "
                    f"classifier output {self.output!r}: key the labels by output name."
                )
            return y[self.output]
        if isinstance(y, Sequence) and not isinstance(y, str | bytes) and len(y) == self.num_outputs:
            return y[self.output_index]
        raise DataError(
            f"the model has {self.num_outputs} outputs: give labels for each, as a dict keyed by "
            f"output name or a list in output order (classifier output {self.output!r})."
        )

    def class_indices(self, y: Any) -> np.ndarray:
        """Integer class indices ``(n,)`` of any accepted labels; refuses the rest."""
        arr = np.asarray(self.labels(y))
        if self.kind == "one_hot":
            check_one_hot(arr, self.num_classes)
        elif self.kind == "binary":
            check_binary(arr)
        return as_class_indices(arr, self.num_classes)

    # -- training and measuring
    def loss(self, **kwargs: Any) -> keras.losses.Loss:
        """The Keras loss matching the labels and the output (kwargs go to the loss class,
        e.g. ``label_smoothing`` for one-hot or binary labels)."""
        cls = {
            "sparse": keras.losses.SparseCategoricalCrossentropy,
            "one_hot": keras.losses.CategoricalCrossentropy,
            "binary": keras.losses.BinaryCrossentropy,
        }[self.kind]
        return cls(from_logits=not self.probabilities, **kwargs)

    def metric(self) -> keras.metrics.Metric:
        """Accuracy for these labels, named ``"accuracy"`` (binary logits: threshold 0)."""
        if self.kind == "binary":
            return keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.5 if self.probabilities else 0.0)
        if self.kind == "one_hot":
            return keras.metrics.CategoricalAccuracy(name="accuracy")
        return keras.metrics.SparseCategoricalAccuracy(name="accuracy")

    @property
    def accuracy_key(self) -> str:
        """Key of the classifier accuracy in ``evaluate(return_dict=True)`` after :meth:`compile`."""
        return "accuracy" if self.num_outputs == 1 else f"{self.output}_accuracy"

    def training_losses(self, model: keras.Model) -> Any:
        """The loss to compile ``model`` with: :meth:`loss` for one output; for several, a
        dict with :meth:`loss` for the classifier and the model's own compiled losses
        for the other outputs (refused when the model was not compiled with them)."""
        if self.num_outputs == 1:
            return self.loss()
        names = output_names(model)
        compiled = getattr(model, "loss", None)
        out = {}
        for i, name in enumerate(names):
            if i == self.output_index:
                out[name] = self.loss()
                continue
            if isinstance(compiled, Mapping):
                other = compiled.get(name)
            elif isinstance(compiled, list | tuple):
                other = compiled[i] if i < len(compiled) else None
            else:
                other = compiled
            if other is None:
                raise DataError(
                    f"model {model.name!r} has outputs {names}; the classifier is {self.output!r} but "
                    f"the model has no compiled loss for output {name!r}. Compile the model with a loss "
                    "for every output first, or build a single-output model for compression."
                )
            out[name] = other
        return out

    def compile(self, model: keras.Model, optimizer: Any, *, losses_of: keras.Model | None = None,
                **kwargs: Any) -> None:
        """``model.compile`` with :meth:`training_losses` (of ``losses_of``, e.g. the student a
        distillation wrapper trains, else of ``model``) and the accuracy :meth:`metric`."""
        metrics = [self.metric()] if self.num_outputs == 1 else {self.output: [self.metric()]}
        model.compile(optimizer=optimizer, loss=self.training_losses(losses_of or model), metrics=metrics, **kwargs)


def check_one_hot(y: np.ndarray, num_classes: int) -> None:
    """Refuse 2-D targets that are not one-hot rows of width ``num_classes``."""
    if y.ndim != 2 or y.size == 0:
        return
    if y.shape[1] != num_classes:
        raise DataError(
            f"labels have shape {y.shape} but the model has {num_classes} outputs: pass class "
            f"indices (batch,) or one-hot rows of width {num_classes}."
        )
    if y.dtype.kind not in "biuf":
        raise DataError(f"2-D labels must be numeric one-hot rows, got dtype {y.dtype}.")
    yf = y.astype(np.float64)
    if not np.all(np.isfinite(yf)):
        raise DataError("one-hot labels contain NaN or inf; fix the label pipeline.")
    zero_one = np.all((yf == 0) | (yf == 1))
    sums = yf.sum(axis=1)
    if zero_one and np.all(sums == 1):
        return
    if zero_one:
        raise DataError(
            f"labels of shape {y.shape} are multi-hot (rows with {int(sums.min())}..{int(sums.max())} "
            "ones): this target looks multi-label. tf_gpp prunes single-label classifiers; give one "
            "class per example (class indices or one-hot rows), or prune with a data-free importance "
            "(importance='l1')."
        )
    if np.all(yf >= 0) and np.allclose(sums, 1.0):
        raise DataError(
            f"labels of shape {y.shape} are soft / probability rows, not one-hot: give one class per "
            "example (y.argmax(axis=1)); for label smoothing keep one-hot labels and set it on the loss."
        )
    raise DataError(
        f"labels of shape {y.shape} hold continuous values (e.g. {yf.ravel()[:3].tolist()}): this target "
        "looks like regression, not classification. tf_gpp prunes classifiers; give class indices "
        "(n,) or one-hot rows, or prune a regression model with a data-free importance (importance='l1')."
    )


def check_binary(y: np.ndarray) -> None:
    """Refuse labels of a single-output binary classifier that are not 0/1."""
    arr = y[:, 0] if y.ndim == 2 and y.shape[1] == 1 else y
    if arr.ndim != 1:
        raise DataError(
            f"labels have shape {y.shape} but the model has a single output unit (binary classifier): "
            "pass 0/1 labels of shape (n,) or (n, 1)."
        )
    if arr.size == 0:
        return
    af = arr.astype(np.float64)
    if not np.all(np.isfinite(af)):
        raise DataError("labels contain NaN or inf; fix the label pipeline.")
    if not np.all((af == 0) | (af == 1)):
        bad = af[(af != 0) & (af != 1)][:3].tolist()
        kind = "continuous values (regression?)" if np.any(af != np.round(af)) else "classes other than 0/1"
        raise DataError(
            f"labels hold {kind} such as {bad}, but the model has a single output unit (a binary "
            "classifier takes labels 0/1). Remap the labels to 0/1, or give the model a Dense(C) "
            "head for C classes; tf_gpp prunes classifiers, not regression models."
        )


# -- the model's inputs and outputs -------------------------------------------------------


def output_names(model: keras.Model) -> list[str]:
    """Names of the layers producing the model's outputs, in output order."""
    names = getattr(model, "output_names", None)
    return list(names) if names else [model.layers[-1].name]


def _output_layer(model: keras.Model, index: int) -> keras.layers.Layer:
    try:
        return model.get_layer(output_names(model)[index])
    except ValueError:
        return model.layers[-1]


def output_is_probability(model: keras.Model, index: int = 0) -> bool:
    """Whether output ``index`` went through a softmax or sigmoid (``False``: logits)."""
    layer = _output_layer(model, index)
    if isinstance(layer, keras.layers.Softmax):
        return True
    act = getattr(layer, "activation", None)
    return getattr(act, "__name__", "") in ("softmax", "sigmoid")


def _classifier_index(model: keras.Model, output: str | None) -> int:
    names = output_names(model)
    if output is not None:
        if output not in names:
            raise DataError(f"output={output!r} is not an output of model {model.name!r}; its outputs are {names}.")
        return names.index(output)
    if len(names) > 1:
        raise DataError(
            f"model {model.name!r} has {len(names)} outputs {names}: name the classifier output with "
            f"output='{names[0]}' (or build a single-output model for compression)."
        )
    return 0


def _input_specs(model: keras.Model) -> list[tuple[str, tuple]]:
    inputs = getattr(model, "inputs", None)
    if not inputs:
        raise UnsupportedModelError(
            f"model {model.name!r} has no symbolic inputs; build it with keras.Input (functional or "
            "Sequential) so its inputs are known."
        )
    return [(t.name, tuple(t.shape)) for t in inputs]


# -- turning what users bring into batched tf.data ----------------------------------------


def _dict_inputs(model: keras.Model | None) -> bool:
    """Whether ``model`` was built on a dict of inputs (Keras warns when fed a list)."""
    try:
        return isinstance(model.input, Mapping) if model is not None else False
    except (AttributeError, ValueError):
        return False


def _is_dataset(data: Any) -> bool:
    return isinstance(data, tf.data.Dataset)


def _is_bundle(data: Any) -> bool:
    return hasattr(data, "train") and hasattr(data, "num_classes") and not _is_dataset(data)


def _length(x: Any, what: str) -> int:
    leaves = tf.nest.flatten(x)
    if not leaves:
        raise DataError(f"{what} is empty: give at least one labelled (x, y) sample.")
    lengths = set()
    for leaf in leaves:
        arr = np.asarray(leaf)
        if arr.ndim == 0:
            raise DataError(f"{what} holds a scalar where a batch of examples (n, ...) was expected.")
        lengths.add(len(arr))
    if len(lengths) != 1:
        raise DataError(f"{what} holds arrays of different lengths {sorted(lengths)}; every array needs one row per sample.")
    return lengths.pop()


def _to_arrays(x: Any) -> Any:
    """Arrays in the same structure (lists become tuples: ``tf.data`` reads a list as one tensor)."""
    if isinstance(x, Mapping):
        return {k: np.asarray(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return tuple(np.asarray(v) for v in x)
    return np.asarray(x)


def _unpack_arrays(x: Any, y: Any, sample_weight: Any, what: str) -> tuple[Any, Any, Any]:
    """``(x, y, w)`` from ``fit``'s forms: separate arguments or one ``(x, y[, w])`` tuple."""
    if y is None:
        if isinstance(x, tuple | list) and len(x) in (2, 3) and not any(_is_dataset(v) for v in x):
            if len(x) == 3 and sample_weight is not None:
                raise DataError(f"{what}: sample weights given twice, in the tuple and as sample_weight=.")
            x, y, sample_weight = (*x, sample_weight) if len(x) == 2 else x
        else:
            raise DataError(
                f"{what}: got inputs without labels ({type(x).__name__}); pass (x, y) or (x, y, "
                "sample_weight) arrays, x and y as two arguments, or a tf.data.Dataset of (x, y) batches."
            )
    if y is None:
        raise DataError(f"{what}: the labels are None; tf_gpp prunes classifiers and needs labels y.")
    return _to_arrays(x), _to_arrays(y), None if sample_weight is None else np.asarray(sample_weight)


def _split_last(x: Any, y: Any, w: Any, fraction: float) -> tuple[tuple, tuple]:
    """Keras's ``validation_split``: the last ``fraction`` of the samples, before shuffling."""
    if isinstance(fraction, bool) or not 0.0 <= float(fraction) < 1.0:
        raise DataError(f"validation_split must be in [0, 1), got {fraction!r}.")
    n = _length(x, "x")
    cut = int(n * (1.0 - fraction))
    if cut <= 0 or cut >= n:
        raise DataError(
            f"validation_split={fraction} of {n} samples leaves an empty training or validation part; "
            "use a fraction like 0.1-0.3 or more data."
        )
    head = (*tf.nest.map_structure(lambda a: a[:cut], (x, y)), None if w is None else w[:cut])
    tail = (*tf.nest.map_structure(lambda a: a[cut:], (x, y)), None if w is None else w[cut:])
    return head, tail


def _from_arrays(x: Any, y: Any, w: Any, batch_size: int, shuffle: bool, seed: int, what: str) -> tf.data.Dataset:
    n = _length(x, f"{what} x")
    m = _length(y, f"{what} y")
    if n == 0 or n != m:
        raise DataError(f"{what}: x and y must be non-empty and of equal length, got {n} and {m}.")
    if w is not None and (w.ndim != 1 or len(w) != n):
        raise DataError(f"{what}: sample_weight must be a vector of {n} weights (one per sample), got shape {w.shape}.")
    if isinstance(x, tuple) and len(x) == 1:
        x = x[0]
    elements = (x, y) if w is None else (x, y, w)
    ds = tf.data.Dataset.from_tensor_slices(elements)
    if shuffle:
        ds = ds.shuffle(min(n, 65_536), seed=seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(2)


def _dict_to_pair(spec: Mapping, input_names: list[str], what: str) -> Any:
    """A function mapping a dict element to ``(x, y)``; refuses dicts it cannot read."""
    keys = list(spec)
    label = next((k for k in LABEL_KEYS if k in spec), None)
    present = [n for n in input_names if n in spec]
    fix = (
        f"{what} yields dicts with keys {keys}; map them to (x, y) pairs, e.g. "
        "ds.map(lambda d: (d['image'], d['label'])); a PyDataset or generator returns or yields "
        f"(x, y) batches (or dicts with one of the label keys {list(LABEL_KEYS)})."
    )
    if len(input_names) > 1 and len(present) == len(input_names):
        rest = [k for k in keys if k not in input_names]
        if len(rest) != 1:
            raise DataError(fix)
        return lambda d: ({n: d[n] for n in input_names}, d[rest[0]])
    if label is None or len(input_names) != 1:
        raise DataError(fix)
    rest = [k for k in keys if k != label]
    name = present[0] if present else (rest[0] if len(rest) == 1 else None)
    if name is None:
        raise DataError(fix)
    return lambda d: (d[name], d[label])


def _leaf_ranks(x_spec: Any) -> list[tuple[str | int, int | None, tuple | None]]:
    if isinstance(x_spec, Mapping):
        return [(k, s.shape.rank, tuple(s.shape)) for k, s in x_spec.items()]
    return [(i, s.shape.rank, tuple(s.shape) if s.shape.rank is not None else None)
            for i, s in enumerate(tf.nest.flatten(x_spec))]


def _rank_gaps(x_spec: Any, inputs: list[tuple[str, tuple]]) -> set[int]:
    """Rank of each input leaf minus the rank of the model input it feeds (-1: unbatched)."""
    by_name = dict(inputs)
    if isinstance(x_spec, Mapping):
        pairs = [(s, by_name.get(k)) for k, s in x_spec.items()]
    else:
        pairs = [(s, inputs[i][1] if i < len(inputs) else None) for i, s in enumerate(tf.nest.flatten(x_spec))]
    return {s.shape.rank - len(exp) for s, exp in pairs if exp is not None and s.shape.rank is not None}


def _check_shapes(x_spec: Any, inputs: list[tuple[str, tuple]], what: str, batched: bool) -> None:
    """Refuse inputs whose rank or known sizes differ from the model's inputs."""
    by_name = dict(inputs)
    for key, rank, shape in _leaf_ranks(x_spec):
        if rank is None or shape is None:
            continue
        name, expected = (key, by_name.get(key)) if isinstance(key, str) else (
            inputs[key] if key < len(inputs) else (None, None))
        if expected is None:
            if isinstance(key, str):
                raise DataError(
                    f"{what} gives input {key!r}, which is not an input of the model; its inputs are "
                    f"{list(by_name)}: key the inputs by these names."
                )
            raise DataError(f"{what} gives {key + 1} inputs but the model has {len(inputs)}.")
        got = shape if batched else (None, *shape)
        if len(got) != len(expected) or any(
            e is not None and g is not None and e != g for g, e in zip(got[1:], expected[1:], strict=False)
        ):
            raise DataError(
                f"{what} yields inputs of shape {tuple(got)} for model input {name!r}, which expects "
                f"{tuple(expected)}; reshape or resize the data (or fix the model's keras.Input)."
            )


def as_dataset(
    data: Any,
    y: Any = None,
    *,
    sample_weight: Any = None,
    batch_size: int = 64,
    shuffle: bool = False,
    seed: int = 0,
    input_ranks: Sequence[int] | None = None,
    model: keras.Model | None = None,
    what: str = "data",
    max_batches: int | None = None,
) -> tf.data.Dataset:
    """A batched ``tf.data`` pipeline of ``(x, y)`` / ``(x, y, w)`` from any accepted form.

    With ``model`` (or ``input_ranks``, the ranks of the inputs with the batch axis),
    dict elements are mapped to ``(x, y)``, unbatched datasets are batched, one-key
    dict inputs of a single-input model are unwrapped and shapes are checked.
    ``shuffle`` applies to arrays only (a dataset keeps its own order). A PyDataset,
    generator or generator function is read by :func:`tf_gpp.data.streams.as_tf_data`
    (``max_batches``: at most that many batches of a one-shot generator are read).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise DataError(f"batch_size must be a positive integer, got {batch_size!r}.")
    inputs = _input_specs(model) if model is not None else [
        (f"input_{i}", (None,) * int(r)) for i, r in enumerate(input_ranks or ())]
    if _is_bundle(data):
        data = data.train
    form = stream_form(data) or ("tf.data.Dataset" if _is_dataset(data) else None)
    if form is None:
        if data is None:
            raise DataError(f"{what} is None: pass (x, y) arrays or a tf.data.Dataset of (x, y) batches.")
        x, yy, w = _unpack_arrays(data, y, sample_weight, what)
        ds = _from_arrays(x, yy, w, int(batch_size), shuffle, seed, what)
    else:
        if y is not None or sample_weight is not None:
            raise DataError(
                f"{what} is a {form}: y and sample_weight must be inside it as (x, y, w) "
                "elements, not given separately (as for model.fit)."
            )
        ds = as_tf_data(data, what, max_batches=max_batches)
        if int(ds.cardinality()) == int(tf.data.INFINITE_CARDINALITY):
            raise DataError(
                f"{what} repeats forever; tf_gpp trains and evaluates one pass per epoch: drop "
                ".repeat() or bound it with .take(n)."
            )
    spec = ds.element_spec
    if isinstance(spec, Mapping):
        ds = ds.map(_dict_to_pair(spec, [n for n, _ in inputs] or ["x"], what))
        spec = ds.element_spec
    if not isinstance(spec, tuple) or len(spec) not in (2, 3):
        raise DataError(
            f"{what} yields inputs without labels (elements {spec}); tf_gpp prunes classifiers and "
            "needs labels: give (x, y) or (x, y, sample_weight) elements as model.fit reads them (a "
            "PyDataset or generator returns or yields them; pair a tf.data.Dataset with its labels, "
            "e.g. tf.data.Dataset.zip((images, labels)))."
        )
    if inputs:
        x_spec = spec[0]
        if len(inputs) == 1 and isinstance(x_spec, Mapping) and len(x_spec) == 1:
            ds = ds.map(lambda x, *rest: (next(iter(x.values())), *rest))  # {"input": x} -> x
            x_spec = ds.element_spec[0]
        if isinstance(x_spec, tuple) and len(x_spec) == len(inputs) > 1 and _dict_inputs(model):
            names = tuple(n for n, _ in inputs)  # a list for a model built on a dict of inputs
            ds = ds.map(lambda x, *rest: (dict(zip(names, x, strict=True)), *rest))
            x_spec = ds.element_spec[0]
        unbatched = form is not None and _rank_gaps(x_spec, inputs) == {-1}
        if unbatched:
            ds = ds.batch(int(batch_size)).prefetch(2)
        if model is not None:
            _check_shapes(x_spec, inputs, what, batched=not unbatched)
    return ds


# -- checking the data against the task ---------------------------------------------------


def infer_task(model: keras.Model, y_spec: Any, *, output: str | None = None) -> TaskInfo:
    """The :class:`TaskInfo` of ``model`` trained on labels of spec/shape ``y_spec``
    (a ``tf.TensorSpec``, a structure of them for several outputs, or an array)."""
    index = _classifier_index(model, output)
    names = output_names(model)
    shape = tuple(model.outputs[index].shape)
    name = names[index]
    if len(shape) != 2 or shape[-1] is None:
        raise UnsupportedModelError(
            f"output {name!r} of model {model.name!r} has shape {shape}; tf_gpp prunes classifiers "
            "whose output is (batch, C) logits/probabilities or (batch, 1) for a binary classifier."
        )
    width = int(shape[-1])
    probs = output_is_probability(model, index)
    act = getattr(getattr(_output_layer(model, index), "activation", None), "__name__", "")
    if width == 1 and act == "softmax":
        raise UnsupportedModelError(
            f"output {name!r} is a softmax over 1 unit, which always outputs 1; use "
            "activation='sigmoid' (or logits) for a binary classifier."
        )
    if width > 1 and act == "sigmoid":
        raise UnsupportedModelError(
            f"output {name!r} has a sigmoid over {width} units: a multi-label classifier. tf_gpp "
            "prunes single-label classifiers: use softmax (or logits) with one class per example, "
            "or prune with a data-free importance (importance='l1')."
        )
    multi = len(names) > 1
    info = TaskInfo("sparse", max(width, 2), probs, name if multi else None, index, len(names))
    spec = info.labels(y_spec)
    label_shape = tuple(spec.shape) if hasattr(spec, "shape") else np.shape(spec)
    rank = len(label_shape)
    cols = label_shape[-1] if rank == 2 else None
    if width == 1:
        if rank > 2 or (rank == 2 and cols not in (1, None)):
            raise DataError(
                f"labels have shape {label_shape} but output {name!r} has a single unit (binary "
                "classifier): pass 0/1 labels of shape (n,) or (n, 1)."
            )
        kind, classes = "binary", 2
    elif rank <= 1 or cols == 1:
        kind, classes = "sparse", width
    elif rank == 2 and cols == width:
        kind, classes = "one_hot", width
    elif rank == 2 and cols is not None:
        raise DataError(
            f"labels have shape {label_shape} but the model has {width} outputs: pass class indices "
            f"(batch,) or one-hot rows of width {width}. (Targets of another width look like "
            "regression or multi-label targets: tf_gpp prunes single-label classifiers.)"
        )
    else:
        raise DataError(
            f"labels have shape {label_shape}; expected class indices (batch,) or one-hot rows "
            f"(batch, {width})."
        )
    return TaskInfo(kind, classes, probs, info.output, index, len(names))


def scan_labels(
    ds: tf.data.Dataset, task: TaskInfo, what: str = "data", max_batches: int | None = None
) -> tuple[np.ndarray, bool]:
    """Class indices of the first ``max_batches`` batches (all if ``None``) and whether the
    pass reached the end; refuses non-finite inputs and labels ``task`` cannot read."""
    labels, exhausted = [], True
    for i, batch in enumerate(ds):
        if max_batches is not None and i >= max_batches:
            exhausted = False
            break
        if not isinstance(batch, tuple | list) or len(batch) not in (2, 3):
            raise DataError(f"{what} must yield (x, y) or (x, y, sample_weight) batches; got {type(batch).__name__}.")
        for t in tf.nest.flatten(batch[0]):
            if t.dtype.is_floating and not bool(tf.reduce_all(tf.math.is_finite(t))):
                raise DataError(f"{what} batch {i} has NaN or inf inputs; clean or impute them first.")
        try:
            labels.append(task.class_indices(tf.nest.map_structure(np.asarray, batch[1])))
        except DataError as exc:
            raise DataError(f"{what} batch {i}: {exc}") from None
    return (np.concatenate(labels) if labels else np.zeros(0, np.int64)), exhausted


def first_labels(ds: tf.data.Dataset, what: str = "data") -> Any:
    """The labels of the first batch, as arrays; refuses an empty pipeline."""
    for batch in ds.take(1):
        if not isinstance(batch, tuple | list) or len(batch) not in (2, 3):
            break
        return tf.nest.map_structure(np.asarray, batch[1])
    raise DataError(f"{what} is empty: give at least one labelled (x, y) sample.")


def check_data(
    ds: tf.data.Dataset, task: TaskInfo, what: str = "data", max_batches: int | None = None,
    min_classes: int = 2,
) -> np.ndarray:
    """Refuse endless or empty data, non-finite inputs, labels that are not classes of
    ``task`` and (when the scan saw all of it) fewer than ``min_classes`` classes.
    Returns the scanned class indices."""
    if int(ds.cardinality()) == int(tf.data.INFINITE_CARDINALITY):
        raise DataError(
            f"{what} repeats forever; tf_gpp trains and evaluates one pass per epoch: drop "
            ".repeat() or bound it with .take(n)."
        )
    labels, exhausted = scan_labels(ds, task, what, max_batches)
    if labels.size == 0:
        raise DataError(f"{what} is empty: give at least one labelled (x, y) sample.")
    if exhausted and len(np.unique(labels)) < min_classes:
        raise DataError(
            f"{what} holds a single class ({int(labels[0])}); pruning a classifier needs "
            "examples of at least 2 classes."
        )
    return labels


def _bare(v: Any) -> bool:
    return isinstance(v, np.ndarray | tf.Tensor | Mapping)


def split_fit_arguments(train_data: Any, validation_data: Any) -> tuple[Any, Any, Any]:
    """``(x, y, validation_data)`` of a ``f(model, train_data, validation_data)`` call:
    ``f(model, x, y)`` the way ``fit`` takes it (bare inputs — an array, a tensor, a dict
    or a list of arrays — followed by one label per sample) gives ``(x, y, None)``;
    anything else ``(train_data, None, validation_data)``."""
    if validation_data is None or _is_dataset(train_data) or _is_dataset(validation_data):
        return train_data, None, validation_data
    if isinstance(validation_data, tuple) or not (_bare(validation_data) or isinstance(validation_data, list)):
        return train_data, None, validation_data
    if _bare(train_data) or (isinstance(train_data, list) and all(_bare(v) for v in train_data)):
        try:
            same = _length(train_data, "x") == _length(validation_data, "y")
        except DataError:
            return train_data, None, validation_data
        if same and not (isinstance(train_data, list) and len(train_data) in (2, 3) and isinstance(validation_data, list)):
            return train_data, validation_data, None
    return train_data, None, validation_data


def as_training_data(
    model: keras.Model,
    x: Any,
    y: Any = None,
    *,
    sample_weight: Any = None,
    validation_data: Any = None,
    validation_split: float = 0.0,
    batch_size: int = 64,
    shuffle: bool = True,
    seed: int = 0,
    output: str | None = None,
    require_validation: bool = False,
    max_train_batches: int | None = TRAIN_BATCHES_SCANNED,
) -> tuple[tf.data.Dataset, tf.data.Dataset | None, TaskInfo]:
    """``(train, val, task)`` from anything ``model.fit`` accepts (see the module docstring).

    Arrays are checked in full; of a ``tf.data`` training pipeline the first
    ``max_train_batches`` batches are scanned (validation data always in full).
    ``validation_split`` takes the last fraction of array data (as Keras does)
    when ``validation_data`` is ``None``; a :class:`tf_gpp.data.Dataset` bundle
    gives its ``.val`` split.

    Raises:
        DataError: anything the model cannot be trained on, naming the fix.
        UnsupportedModelError: an output that is not a single-label classifier.
    """
    arrays = not _is_dataset(x) and not _is_bundle(x) and stream_form(x) is None
    if _is_bundle(x) and validation_data is None:
        validation_data = getattr(x, "val", None)
    if validation_data is None and validation_split:
        if not arrays:
            raise DataError(
                "validation_split works with array data only (as in model.fit); for a tf.data "
                "pipeline, a PyDataset or a generator pass validation_data= (e.g. ds.take(k) / ds.skip(k))."
            )
        xs, ys, ws = _unpack_arrays(x, y, sample_weight, "train_data")
        (x, y, sample_weight), validation_data = _split_last(xs, ys, ws, validation_split)
        validation_data = tuple(v for v in validation_data if v is not None)
    if validation_data is None and require_validation:
        raise DataError(
            "validation data is required (accuracy is judged on it): pass validation_data=(x_val, "
            "y_val) or a dataset, or validation_split=0.1 with array data."
        )
    train = as_dataset(x, y, sample_weight=sample_weight, batch_size=batch_size, shuffle=shuffle,
                       seed=seed, model=model, what="train_data")
    val = None if validation_data is None else as_dataset(
        validation_data, batch_size=batch_size, shuffle=False, model=model, what="validation_data")
    task = infer_task(model, first_labels(train, "train_data"), output=output)
    check_data(train, task, "train_data", None if arrays else max_train_batches)
    if val is not None:
        val_task = infer_task(model, first_labels(val, "validation_data"), output=output)
        if val_task.kind != task.kind:
            raise DataError(
                f"train_data has {task.kind} labels but validation_data has {val_task.kind} labels; "
                "give both in the same form."
            )
        check_data(val, task, "validation_data", None, min_classes=1)
    return train, val, task


def labelled_batches(
    model: keras.Model, data: Any, *, batch_size: int = 64, max_batches: int | None = None,
    output: str | None = None,
) -> tuple[list[tuple[Any, Any]], TaskInfo]:
    """Up to ``max_batches`` ``(x, y)`` batches of ``data`` (any accepted form; sample
    weights dropped) and the :class:`TaskInfo` — what the importances consume."""
    if data is None:
        raise DataError("this importance needs data: pass (x, y) arrays or a tf.data.Dataset of (x, y)")
    if isinstance(data, list) and data and all(isinstance(b, tuple) and len(b) in (2, 3) for b in data):
        batches = [(b[0], b[1]) for b in data]  # already a list of batches
    else:
        ds = as_dataset(data, batch_size=batch_size, model=model, what="data", max_batches=max_batches)
        batches = []
        for b in ds:
            batches.append((b[0], b[1]))
            if max_batches is not None and len(batches) >= max_batches:
                break
    if max_batches is not None:
        batches = batches[:max_batches]
    if not batches:
        raise DataError("the dataset is empty: give at least one (x, y) batch")
    return batches, infer_task(model, batches[0][1], output=output)
