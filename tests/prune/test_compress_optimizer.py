"""compress(optimizer=...): every fit trains with it (a fresh copy of a template each time, the
user's instance untouched), the default is Adam exactly as before, the recipe records it, and a
bad value is refused naming the option."""

import json

import keras
import numpy as np
import pytest

import tf_gpp
from tests.digits_model import digits_cnn, digits_split
from tf_gpp.prune import CompressConfig

QUICK = {"target_macs": 0.6, "rounds": 1, "importance": "l1", "finetune_epochs": 1, "final_finetune_epochs": 1,
         "verbose": 0}


@pytest.fixture(scope="module")
def base():
    return digits_cnn(epochs=4)


class _Optimizers(keras.callbacks.Callback):
    """What each fit trained with: class, starting rate, momentum, steps; the optimizer object."""

    def __init__(self):
        super().__init__()
        self.fits, self.objects = [], []

    def on_train_batch_begin(self, batch, logs=None):
        if batch == 0 and (not self.objects or self.objects[-1] is not self.model.optimizer):
            opt = self.model.optimizer
            self.objects.append(opt)
            self.fits.append({"class": type(opt).__name__, "rate": float(opt.learning_rate.numpy()),
                              "momentum": getattr(opt, "momentum", None)})


def _weights(model):
    return [w.copy() for w in model.get_weights()]


def test_compress_trains_every_fit_with_the_named_optimizer(base, tmp_path):
    train, val = digits_split()
    rec = _Optimizers()
    res = tf_gpp.compress(base, train, val, optimizer="sgd", learning_rate=0.02, lr_schedule="constant",
                          push=True, push_epochs=1, callbacks=[rec], checkpoint_dir=tmp_path, **QUICK)
    assert [f["class"] for f in rec.fits] == ["SGD", "SGD"]  # the push phase, then fine-tuning
    assert all(f["rate"] == pytest.approx(0.02) for f in rec.fits)
    assert rec.objects[0] is not rec.objects[1]  # a fresh optimizer per fit
    assert res.history[-1].macs_ratio <= 0.6
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["recipe"]["optimizer"] == "sgd"
    with pytest.raises(tf_gpp.PruningRequestError, match=r"optimizer='sgd' there"):
        tf_gpp.compress(base, train, val, push=True, push_epochs=1, learning_rate=0.02, lr_schedule="constant",
                        checkpoint_dir=tmp_path, **QUICK)


def test_an_optimizer_instance_is_a_template_left_untouched(base):
    train, val = digits_split()
    template = keras.optimizers.SGD(learning_rate=0.01, momentum=0.9)
    config, built = template.get_config(), template.built
    rec = _Optimizers()
    tf_gpp.compress(base, train, val, optimizer=template, learning_rate=0.01, lr_schedule="constant",
                    callbacks=[rec], **QUICK)
    assert rec.fits == [{"class": "SGD", "rate": pytest.approx(0.01), "momentum": 0.9}]
    assert rec.objects[0] is not template
    assert template.get_config() == config and template.built == built and int(template.iterations.numpy()) == 0


def test_the_default_is_adam_as_before_and_another_optimizer_trains_otherwise(base):
    """optimizer="adam" and an Adam() template give the default run bit for bit; "sgd" does not."""
    train, val = digits_split()
    runs = {name: tf_gpp.compress(base, train, val, **({} if opt is None else {"optimizer": opt}), **QUICK)
            for name, opt in (("default", None), ("adam", "adam"), ("Adam()", keras.optimizers.Adam(1e-3)),
                              ("sgd", "sgd"))}
    default = _weights(runs["default"].model)
    for name in ("adam", "Adam()"):
        assert [h.accuracy for h in runs[name].history] == [h.accuracy for h in runs["default"].history]
        for a, b in zip(_weights(runs[name].model), default, strict=True):
            np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(_weights(runs["sgd"].model), default, strict=True))


def test_the_recipe_records_the_optimizer_in_a_stable_form():
    cfg = CompressConfig(target_macs=0.3)
    assert cfg.recipe()["optimizer"] == "adam"
    older = {k: v for k, v in cfg.recipe().items() if k != "optimizer"}  # a checkpoint from before the option
    assert CompressConfig.completed(older)["optimizer"] == "adam"
    assert CompressConfig(target_macs=0.3, optimizer="Adam").recipe() == cfg.recipe()
    one = CompressConfig(target_macs=0.3, optimizer=keras.optimizers.SGD(0.01, momentum=0.9)).recipe()
    two = CompressConfig(target_macs=0.3, optimizer={"class_name": "SGD", "config": {"momentum": 0.9}}).recipe()
    assert one == two and one["optimizer"] == {"class_name": "SGD", "config": {"momentum": 0.9}}
    assert json.loads(json.dumps(one)) == one
    assert CompressConfig(target_macs=0.3, optimizer="sgd").to_dict()["optimizer"] == "sgd"


@pytest.mark.parametrize("bad, why", [
    ("nonsense", r"optimizer='nonsense' is not a Keras optimizer.*give a Keras optimizer name"),
    (0.01, r"optimizer=0.01: give a Keras optimizer name"),
    ({"class_name": "SGD", "config": {"momentun": 0.9}}, r"optimizer=\{.*momentun"),
    ({"momentum": 0.9}, r"a config dict names its class \('class_name'\)"),
    (lambda: keras.optimizers.SGD(), r"a factory has no config to record.*an optimizer instance"),
])
def test_a_bad_optimizer_is_refused_naming_the_option(base, bad, why):
    train, val = digits_split()
    before = _weights(base)
    with pytest.raises(tf_gpp.PruningRequestError, match=why):
        tf_gpp.compress(base, train, val, optimizer=bad, **QUICK)
    for a, b in zip(_weights(base), before, strict=True):
        np.testing.assert_array_equal(a, b)
