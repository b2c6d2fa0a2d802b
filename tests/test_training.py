"""The one trainer (tf_gpp/training.py): optimizer forms, templates left alone, the learning-rate
schedule, distillation, and a fit equal to the same fit written by hand."""

import json
import warnings

import keras
import numpy as np
import pytest

from tf_gpp.errors import ArgumentError
from tf_gpp.training import CosineWithinFit, Distiller, Trainer, make_optimizer, serialize_optimizer


def _tiny(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inp = keras.Input((6,))
    h = keras.layers.Dense(8, activation="relu", name="h")(inp)
    return keras.Model(inp, keras.layers.Dense(3, name="out")(h))


def _data(n: int = 64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 6)).astype("float32")
    return x, (x[:, 0] > 0).astype("int32") + (x[:, 1] > 0).astype("int32")


def _state(opt: keras.optimizers.Optimizer) -> tuple:
    return json.dumps(opt.get_config(), sort_keys=True, default=str), opt.built, int(opt.iterations.numpy())


@pytest.mark.parametrize("identifier, cls", [("adam", keras.optimizers.Adam), ("SGD", keras.optimizers.SGD),
                                             ({"class_name": "RMSprop", "config": {"rho": 0.8}},
                                              keras.optimizers.RMSprop)])
def test_every_form_makes_a_fresh_optimizer_at_the_trainers_rate(identifier, cls):
    trainer = Trainer(identifier, learning_rate=0.02)
    a, b = trainer.make_optimizer(), trainer.make_optimizer()
    assert type(a) is cls and a is not b
    assert float(a.learning_rate.numpy()) == pytest.approx(0.02)
    if isinstance(identifier, dict):
        assert a.rho == 0.8


def test_an_instance_is_a_template_never_trained_nor_changed():
    template = keras.optimizers.SGD(learning_rate=0.05, momentum=0.9, nesterov=True)
    before = _state(template)
    trainer = Trainer(template, learning_rate=0.05)
    x, y = _data()
    model = _tiny()
    trainer.fit(model, x, 2, y=y, batch_size=32, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert model.optimizer is not template and type(model.optimizer) is keras.optimizers.SGD
    assert model.optimizer.momentum == 0.9 and model.optimizer.nesterov
    assert int(model.optimizer.iterations.numpy()) == 4
    assert _state(template) == before  # not built, not stepped, same config


def test_the_trainers_rate_replaces_a_stated_one_with_a_warning():
    with pytest.warns(UserWarning, match=r"learning rate 0.05 is replaced by learning_rate=0.001"):
        trainer = Trainer(keras.optimizers.SGD(0.05), learning_rate=1e-3)
    assert float(trainer.make_optimizer().learning_rate.numpy()) == pytest.approx(1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Trainer(keras.optimizers.SGD(1e-3), learning_rate=1e-3)  # the same rate: silent
        Trainer({"class_name": "SGD", "config": {"momentum": 0.9}}, learning_rate=1e-3)  # none stated
    made = make_optimizer(lambda: keras.optimizers.SGD(0.3), learning_rate=0.01)  # a factory: called, rate set
    with pytest.warns(UserWarning, match=r"learning rate 0.3 is replaced by learning_rate=0.01"):
        Trainer(lambda: keras.optimizers.SGD(0.3), learning_rate=0.01)  # a factory's rate: not replaced silently
    assert type(made) is keras.optimizers.SGD and float(made.learning_rate.numpy()) == pytest.approx(0.01)


def test_a_fit_equals_the_same_fit_written_by_hand():
    """Trainer("sgd" with momentum) fits exactly as compile(SGD(...)) + fit on the same model and seed."""
    x, y = _data()
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    by_hand = _tiny()
    by_hand.compile(keras.optimizers.SGD(0.05, momentum=0.9), loss, metrics=["accuracy"])
    by_hand.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    ours = _tiny()
    Trainer({"class_name": "SGD", "config": {"momentum": 0.9}}, 0.05).fit(
        ours, x, 3, y=y, loss=loss, metrics=["accuracy"], batch_size=16)
    for a, b in zip(ours.get_weights(), by_hand.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


class _Rates(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.rates = []

    def on_train_batch_begin(self, batch, logs=None):
        self.rates.append(float(self.model.optimizer.learning_rate.numpy()))


def test_the_cosine_schedule_decays_within_each_fit_and_distillation_wraps():
    x, y = _data()
    rec = _Rates()
    trainer = Trainer("sgd", 0.1, lr_schedule="cosine", callbacks=[rec], distill_alpha=0.3, distill_temperature=2.0)
    assert isinstance(trainer.callbacks[0], CosineWithinFit) and trainer.callbacks[1] is rec
    student, teacher = _tiny(0), _tiny(1)
    wrapped = trainer.distilled(student, teacher)
    assert isinstance(wrapped, Distiller) and (wrapped.alpha, wrapped.temperature) == (0.3, 2.0)
    assert trainer.distilled(student, None) is student
    trainer.fit(student, x, 2, y=y, teacher=teacher, batch_size=32,
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rates = np.array(rec.rates)
    assert len(rates) == 4 and rates[0] == pytest.approx(0.1) and np.all(np.diff(rates) < 0)


def test_serialized_forms_are_stable_and_refusals_name_the_option():
    assert serialize_optimizer("adam") == serialize_optimizer("Adam") == serialize_optimizer(keras.optimizers.Adam(0.1))
    assert serialize_optimizer("adam") == "adam"
    sgd = serialize_optimizer(keras.optimizers.SGD(0.1, momentum=0.9))
    assert sgd == {"class_name": "SGD", "config": {"momentum": 0.9}} == json.loads(json.dumps(sgd))
    for bad, why in (("nonsense", "is not a Keras optimizer"), (3, "give a Keras optimizer name"),
                     ({"config": {}}, "class_name"), ({"class_name": "SGD", "config": {"momentun": 1}}, "momentun")):
        with pytest.raises(ArgumentError, match=why):
            Trainer(bad)
    with pytest.raises(ArgumentError, match="factory has no config"):
        serialize_optimizer(lambda: keras.optimizers.SGD())
    with pytest.raises(ArgumentError, match="lr_schedule='step'"):
        Trainer(lr_schedule="step")
