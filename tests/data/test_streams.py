"""Keras's Python data forms — ``keras.utils.PyDataset``, generators / iterators, generator
functions — through the one intake, at every front door.

Each door gives the same result on them as on the equivalent ``(x, y)`` arrays (scores,
labels scanned, slim models, BatchNorm statistics), and refuses bad input with the same
``DataError`` text (only the argument's name differs).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_gpp
from tf_gpp.data import as_dataset, as_tf_data, as_training_data, labelled_batches, streams
from tf_gpp.graph.dependency import DependencyGraph
from tf_gpp.grow.checks import resolve_data
from tf_gpp.importance import get_importance
from tf_gpp.prune.masking import mask_channels

N, B, C = 48, 16, 3  # samples, batch size, classes: 3 batches
SHAPE = (8, 8, 1)


def _data(n: int = N, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % C
    return (rng.normal(size=(n, *SHAPE)) + y[:, None, None, None]).astype("float32"), y


def _cnn() -> keras.Model:
    keras.utils.set_random_seed(1)
    inp = keras.Input(SHAPE, name="pixels")
    h = keras.layers.Conv2D(8, 3, padding="same", name="c1")(inp)
    h = keras.layers.BatchNormalization(name="bn1")(h)
    h = keras.layers.ReLU(name="r1")(h)
    h = keras.layers.Conv2D(8, 3, padding="same", name="c2")(h)
    h = keras.layers.BatchNormalization(name="bn2")(h)
    h = keras.layers.ReLU(name="r2")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    return keras.Model(inp, keras.layers.Dense(C, name="out")(h), name="cnn")


class Batches(keras.utils.PyDataset):
    """``(x, y)`` batches of arrays by index, as a user writes a PyDataset."""

    def __init__(self, x: Any, y: Any = None, w: Any = None, batch_size: int = B, as_list: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.x, self.y, self.w, self.batch_size, self.as_list = x, y, w, batch_size, as_list
        self.epochs_ended = 0

    def __len__(self) -> int:
        return -(-len(tf.nest.flatten(self.x)[0]) // self.batch_size)

    def __getitem__(self, i: int) -> Any:
        s = slice(i * self.batch_size, (i + 1) * self.batch_size)
        x = tf.nest.map_structure(lambda a: a[s], self.x)
        if self.y is None:
            return x
        out = (x, self.y[s]) if self.w is None else (x, self.y[s], self.w[s])
        return list(out) if self.as_list else out

    def on_epoch_end(self) -> None:
        self.epochs_ended += 1


class Endless(keras.utils.PyDataset):
    """A PyDataset without a length."""

    def __getitem__(self, i: int) -> Any:
        return _data(B)

    @property
    def num_batches(self) -> None:
        return None


def _batches(x: Any, y: Any = None, batch_size: int = B) -> Iterator[Any]:
    """The generator a user writes for fit: ``(x, y)`` batches in order."""
    n = len(tf.nest.flatten(x)[0])
    for i in range(0, n, batch_size):
        xb = tf.nest.map_structure(lambda a, i=i: a[i:i + batch_size], x)
        yield xb if y is None else (xb, y[i:i + batch_size])


#: every Python form fit takes, built from arrays (x, y)
FORMS: dict[str, Callable[..., Any]] = {
    "py_dataset": lambda x, y: Batches(x, y),
    "generator": lambda x, y: _batches(x, y),
    "generator_function": lambda x, y: (lambda: _batches(x, y)),
    "iterator": lambda x, y: iter(list(_batches(x, y))),
}


def _collect(ds: tf.data.Dataset) -> list[np.ndarray]:
    parts = [[np.asarray(t) for t in tf.nest.flatten(b)] for b in ds]
    return [np.concatenate(p) for p in zip(*parts, strict=True)]


def _bn_stats(model: keras.Model) -> list[np.ndarray]:
    return [np.asarray(v) for n in ("bn1", "bn2") for v in (model.get_layer(n).moving_mean,
                                                             model.get_layer(n).moving_variance)]


def _same_model(got: keras.Model, ref: keras.Model, rtol: float = 1e-5) -> None:
    assert [w.shape for w in got.weights] == [w.shape for w in ref.weights]
    for g, r in zip(got.get_weights(), ref.get_weights(), strict=True):
        np.testing.assert_allclose(g, r, rtol=rtol, atol=1e-6)


# -- the intake: the batches of the arrays (docs/errors.md I8) ------------------------------------


@pytest.mark.parametrize("form", sorted(FORMS))
def test_every_python_form_gives_the_batches_of_the_arrays(form):
    x, y = _data()
    train, val, task = as_training_data(_cnn(), FORMS[form](x, y), validation_data=FORMS[form](x, y))
    ref_train, _, ref_task = as_training_data(_cnn(), x, y, shuffle=False, batch_size=B)
    for got in (_collect(train), _collect(val)):
        for g, r in zip(got, _collect(ref_train), strict=True):
            np.testing.assert_array_equal(g, r)
    assert task == ref_task
    assert [b[0].shape[0] for b in train] == [B] * (N // B)  # the user's batches, kept
    assert _collect(train)[0].shape == x.shape  # and read again on a second pass


def test_py_dataset_sample_weights_lists_and_multi_input_x():
    x, y = _data()
    w = np.linspace(0.5, 1.5, N).astype("float32")
    train, _, _ = as_training_data(_cnn(), Batches(x, y, w, as_list=True))
    for g, r in zip(_collect(train), (x, y, w), strict=True):
        np.testing.assert_array_equal(g, r)
    a, b = keras.Input((6,), name="a"), keras.Input((4,), name="b")
    h = keras.layers.Concatenate()([keras.layers.Dense(4, name="da")(a), keras.layers.Dense(4, name="db")(b)])
    two = keras.Model([a, b], keras.layers.Dense(C, name="cls")(h))
    xa, xb = np.ones((N, 6), "float32"), np.zeros((N, 4), "float32")
    for inputs in ([xa, xb], {"a": xa, "b": xb}):
        for data in (Batches(inputs, y, as_list=True), _batches(inputs, y)):
            got = _collect(as_training_data(two, data)[0])
            for g, r in zip(got, (xa, xb, y), strict=True):
                np.testing.assert_array_equal(g, r)


def test_py_dataset_is_indexed_again_every_pass_and_told_each_epoch_end():
    x, y = _data()
    data = Batches(x, y)
    ds = as_tf_data(data)
    assert int(ds.cardinality()) == N // B
    for _ in ds.take(1):
        pass
    assert data.epochs_ended == 0  # a partial pass is no epoch
    assert len(list(ds)) == len(list(ds)) == N // B
    assert data.epochs_ended == 2


def test_a_generator_is_read_once_and_kept_a_generator_function_is_called_every_pass():
    x, y = _data()
    calls = []

    def make() -> Iterator[Any]:
        calls.append(1)
        return _batches(x, y)

    gen = make()
    ds = as_tf_data(gen, "train_data")
    assert next(gen, None) is None  # consumed when handed in
    assert len(list(ds)) == len(list(ds)) == N // B and int(ds.cardinality()) == N // B
    calls.clear()
    ds = as_tf_data(make, "train_data")
    assert len(calls) == 1  # the spec is read from a first call
    list(ds), list(ds)
    assert len(calls) == 3


def test_doors_that_read_one_bounded_pass_take_an_endless_generator():
    x, y = _data()

    def endless() -> Iterator[Any]:
        while True:
            yield from _batches(x, y)

    model = _cnn()
    got = tf_gpp.recalibrate_batchnorm(model, endless(), steps=5, batch_size=B)
    ref = tf_gpp.recalibrate_batchnorm(_cnn(), tf.data.Dataset.from_tensor_slices(
        np.concatenate([x, x[:2 * B]])).batch(B), steps=None)
    for g, r in zip(_bn_stats(got), _bn_stats(ref), strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)
    batches, task = labelled_batches(_cnn(), endless(), max_batches=4)
    assert len(batches) == 4 and task.num_classes == C


# -- every door: the result of the arrays -----------------------------------------------------------


@pytest.mark.parametrize("form", ["py_dataset", "generator", "generator_function"])
@pytest.mark.parametrize("name", ["gpp_lda", "taylor"])
def test_importance_prepare_scores_as_on_the_arrays(name, form):
    x, y = _data()
    model = _cnn()
    dep = DependencyGraph(model)

    def scores(data: Any) -> np.ndarray:
        imp = get_importance({"class_name": name, "config": {"batch_size": B}} if name == "taylor" else name)
        imp.prepare(model, dep, data)
        return np.concatenate([imp(dep, g) for g in dep.groups])

    ref = scores((x, y))
    assert ref.sum() > 0
    np.testing.assert_allclose(scores(FORMS[form](x, y)), ref, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("form", ["py_dataset", "generator"])
def test_recalibrate_batchnorm_as_on_the_arrays(form):
    x, y = _data()
    ref = _bn_stats(tf_gpp.recalibrate_batchnorm(_cnn(), x, steps=None, batch_size=B))
    for data in (FORMS[form](x, y), Batches(x) if form == "py_dataset" else _batches(x)):  # with/without labels
        got = _bn_stats(tf_gpp.recalibrate_batchnorm(_cnn(), data, steps=None))
        for g, r in zip(got, ref, strict=True):
            np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("form", ["py_dataset", "generator"])
def test_pruner_step_as_on_the_arrays(form):
    x, y = _data()

    def step(data: Any) -> keras.Model:
        pruner = tf_gpp.Pruner(_cnn(), "gpp_lda", recalibrate_steps=None, batch_size=B)
        return pruner.step(data, target_macs=0.5).model

    ref = step((x, y))
    assert tf_gpp.profile(ref).macs < tf_gpp.profile(_cnn()).macs
    _same_model(step(FORMS[form](x, y)), ref)


@pytest.mark.parametrize("form", ["py_dataset", "generator"])
def test_pruning_callback_and_strip_as_on_the_arrays(form):
    x, y = _data()

    def prune(data: Any) -> keras.Model:
        gated = tf_gpp.prunable(_cnn())
        gated.compile(keras.optimizers.SGD(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        cb = tf_gpp.PruningCallback(data=data, target_macs=0.5, end_epoch=1, importance="gpp_lda", batch_size=B)
        gated.fit(x, y, epochs=2, batch_size=B, shuffle=False, verbose=0, callbacks=[cb])
        return tf_gpp.strip(gated)

    ref = prune((x, y))
    _same_model(prune(FORMS[form](x, y)), ref, rtol=1e-4)
    gated = tf_gpp.prunable(_cnn())
    mask_channels(gated, {"c1": [0, 1, 2]})
    _same_model(tf_gpp.strip(gated, data=FORMS[form](x, y), steps=None),
                tf_gpp.strip(gated, data=(x, y), steps=None, batch_size=B))


@pytest.mark.parametrize("form", ["py_dataset", "generator"])
def test_grow_reads_the_labels_of_the_arrays(form):
    x, y = _data()
    ref = tf.data.Dataset.from_tensor_slices((x, y)).batch(B)
    train, val, shape, classes = resolve_data(FORMS[form](x, y), FORMS[form](x, y), None, C)
    assert (shape, classes) == (SHAPE, C)
    for ds in (train, val):
        for g, r in zip(_collect(ds), _collect(ref), strict=True):
            np.testing.assert_array_equal(g, r)
    from tf_gpp.gpp import as_pipelines

    train, val, _, _ = as_pipelines(FORMS[form](x, y), FORMS[form](x, y), SHAPE, C)
    assert len(list(train)) == len(list(train)) == N // B  # grow and then compress both read it


def test_grow_on_a_py_dataset_as_on_tf_data():
    x, y = _data()
    kwargs = {"num_classes": C, "start": 1, "start_width": 2, "max_rounds": 0, "epochs_per_round": 1, "seed": 0, "verbose": 0,
              "compile_kwargs": {"run_eagerly": True}}
    ref = tf_gpp.grow_network(tf.data.Dataset.from_tensor_slices((x, y)).batch(B),
                              tf.data.Dataset.from_tensor_slices((x, y)).batch(B), **kwargs)
    got = tf_gpp.grow_network(Batches(x, y), Batches(x, y), **kwargs)
    _same_model(got.model, ref.model, rtol=1e-4)


QUICK = {"rounds": 1, "push": False, "importance": "gpp_lda", "finetune_epochs": 1, "final_finetune_epochs": 1,
         "recalibrate_steps": 0, "batch_size": B, "verbose": 0}


def test_compress_with_a_py_dataset_end_to_end():
    x, y = _data()
    xv, yv = _data(24, seed=1)
    result = tf_gpp.compress(_cnn(), Batches(x, y), Batches(xv, yv), target_macs=0.5, **QUICK)
    assert result.history[-1].macs <= 0.5 * tf_gpp.profile(_cnn()).macs
    arrays = tf_gpp.compress(_cnn(), (x, y), (xv, yv), target_macs=0.5, **QUICK)
    assert result.base_accuracy == arrays.base_accuracy  # the same validation data, read alike
    reference = tf_gpp.compress(_cnn(), tf.data.Dataset.from_tensor_slices((x, y)).batch(B),
                                tf.data.Dataset.from_tensor_slices((xv, yv)).batch(B), target_macs=0.5, **QUICK)
    _same_model(result.model, reference.model, rtol=1e-4)  # the arrays in the same (unshuffled) order
    gen = tf_gpp.compress(_cnn(), _batches(x, y), _batches(xv, yv), target_macs=0.5, **QUICK)
    _same_model(gen.model, reference.model, rtol=1e-4)


# -- every door: the same refusal (docs/errors.md I9) ----------------------------------------------


def _doors() -> dict[str, tuple[str, Callable[[Any], Any]]]:
    """door -> (the argument name its errors carry, a call with the data under test)."""
    x, y = _data()

    def callback(data: Any) -> None:
        gated = tf_gpp.prunable(_cnn())
        gated.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        gated.fit(x, y, epochs=1, verbose=0, callbacks=[tf_gpp.PruningCallback(data=data, target_macs=0.5)])

    def importance(data: Any) -> None:
        model = _cnn()
        get_importance("gpp_lda").prepare(model, DependencyGraph(model), data)

    return {
        "compress": ("train_data", lambda d: tf_gpp.compress(_cnn(), d, (x, y), target_macs=0.5, **QUICK)),
        "as_training_data": ("train_data", lambda d: as_training_data(_cnn(), d)),
        "grow": ("train_data", lambda d: tf_gpp.grow_network(d, Batches(x, y), max_rounds=0, verbose=0,
                                                            num_classes=C)),
        "pruner": ("data", lambda d: tf_gpp.Pruner(_cnn(), "gpp_lda").step(d, target_macs=0.5)),
        "callback": ("data", callback),
        "importance": ("data", importance),
        "strip": ("data", lambda d: tf_gpp.strip(tf_gpp.prunable(_cnn()), data=d)),
        "recalibrate": ("recalibrate_batchnorm: data", lambda d: tf_gpp.recalibrate_batchnorm(_cnn(), d)),
    }


def _refusal(door: str, make: Callable[[], Any]) -> str:
    what, call = _doors()[door]
    with pytest.raises(tf_gpp.DataError) as info:
        call(make())
    message = str(info.value)
    assert message.startswith(f"{what} "), message
    return message[len(what) + 1:]


def _consumed() -> Iterator[Any]:
    gen = _batches(*_data())
    list(gen)
    return gen


def _endless() -> Iterator[Any]:
    x, y = _data()
    while True:
        yield x[:B], y[:B]


BAD = {
    "no_labels": (lambda: Batches(_data()[0]), r"^yields inputs without labels .*\(x, y\).*PyDataset or generator"),
    "consumed_generator": (_consumed, r"^is a generator that yields nothing.*already read.*PyDataset, a generator "
                                      "function.*tf.data.Dataset"),
    "endless_generator": (_endless, r"^is a generator that yielded more than 8.25 KiB \(3 batches\) without ending.*"
                                    "read only once.*generator function"),
    "endless_py_dataset": (Endless, r"^is a PyDataset without a length.*__len__"),
    "scalar_batches": (lambda: iter([(np.zeros(SHAPE, "float32"), 1)]), r"^yields a scalar where a batch"),
    "four_items": (lambda: iter([(*_data(B), np.ones(B), np.ones(B))]), r"^batch 0 is a tuple of 4 items"),
    "changing_rank": (lambda: iter([_data(B), (_data(B)[0], _data(B)[1][:, None])]), r"^yields batches whose arrays "
                                                                                      r"change rank \(\[1, 2\]\)"),
    "changing_structure": (lambda: iter([_data(B), (*_data(B), np.ones(B))]), r"^batch 1 has another structure"),
    "function_of_not_batches": (lambda: (lambda: 3), r"^is a callable.*returned int, not an iterator"),
    "function_with_arguments": (lambda: (lambda n: _batches(*_data())), r"^is a callable that cannot be called "
                                                                         "without arguments"),
}


@pytest.mark.parametrize("bad", sorted(BAD))
def test_the_same_refusal_at_every_door(bad, monkeypatch):
    make, match = BAD[bad]
    if bad == "endless_generator":
        monkeypatch.setattr(streams, "MAX_ITERATOR_BYTES", 2 * B * (int(np.prod(SHAPE)) * 4 + 8))  # 2 batches
    doors = [d for d in _doors() if not (bad == "no_labels" and d == "recalibrate")]  # it takes inputs only
    messages = {door: _refusal(door, make) for door in doors}
    for door, message in messages.items():
        assert message == messages["compress"], door
    assert re.search(match, messages["compress"]), messages["compress"]


def test_forms_that_fit_refuses_alike():
    x, y = _data()
    with pytest.raises(tf_gpp.DataError, match="train_data is a PyDataset: y and sample_weight must be inside it"):
        as_training_data(_cnn(), Batches(x, y), y)
    with pytest.raises(tf_gpp.DataError, match="validation_split works with array data only.*PyDataset"):
        as_training_data(_cnn(), _batches(x, y), validation_split=0.2)
    with pytest.raises(tf_gpp.DataError, match=r"keys \['img', 'cls'\].*a PyDataset or generator returns"):
        as_dataset(iter([{"img": x, "cls": y}]), model=_cnn())
    with pytest.raises(tf_gpp.DataError, match="train_data is an empty PyDataset"):
        as_training_data(_cnn(), Batches(x[:0], y[:0]))
    ds = as_training_data(_cnn(), iter([{"image": x, "label": y}]))[0]  # TFDS-style dict batches
    np.testing.assert_array_equal(_collect(ds)[1], y)
