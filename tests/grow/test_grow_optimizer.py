"""The grower trains through the one trainer: its optimizer (a name, a config dict or a template
instance left untouched) at learning_rate for every fit; a bad one is a GrowError."""

import keras
import pytest

from tf_gpp.grow import Grower, GrowError

EAGER = {"run_eagerly": True}


class _Optimizers(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.fits = []

    def on_train_begin(self, logs=None):
        opt = self.model.optimizer
        self.fits.append((opt, type(opt).__name__, float(opt.learning_rate.numpy()), getattr(opt, "momentum", None)))


def test_every_candidate_trains_with_a_fresh_copy_of_the_template(tiny_digits):
    template = keras.optimizers.SGD(learning_rate=0.05, momentum=0.8)
    config = template.get_config()
    rec = _Optimizers()
    grower = Grower(start=1, start_width=4, max_rounds=1, min_delta=-1.0, actions=("widen",), epochs_per_round=1,
                    optimizer=template, learning_rate=0.05, callbacks=[rec], compile_kwargs=EAGER, seed=0, verbose=0)
    grower.run(tiny_digits)
    assert [f[1:] for f in rec.fits] == [("SGD", pytest.approx(0.05), 0.8)] * 2  # the start net, one candidate
    assert rec.fits[0][0] is not rec.fits[1][0] and all(f[0] is not template for f in rec.fits)
    assert template.get_config() == config and not template.built and int(template.iterations.numpy()) == 0
    assert grower.recipe()["optimizer"] == {"class_name": "SGD", "config": {"momentum": 0.8}}


def test_a_named_optimizer_trains_at_learning_rate_and_a_bad_one_is_refused(tiny_digits):
    rec = _Optimizers()
    Grower(start=1, start_width=4, max_rounds=0, optimizer="rmsprop", learning_rate=0.01, callbacks=[rec],
           compile_kwargs=EAGER, seed=0, verbose=0).run(tiny_digits)
    assert [f[1:3] for f in rec.fits] == [("RMSprop", pytest.approx(0.01))]
    assert Grower().recipe()["optimizer"] == "adam"
    with pytest.raises(GrowError, match=r"optimizer='nonsense' is not a Keras optimizer"):
        Grower(optimizer="nonsense")
    with pytest.raises(GrowError, match=r"optimizer=3: give a Keras optimizer name"):
        Grower(optimizer=3)
