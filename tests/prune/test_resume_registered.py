"""compress with a custom registered importance: interrupted after round 1 and resumed from its
checkpoints, it gives what the uninterrupted run gives."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_gpp
from tests.digits_model import digits_split
from tf_gpp.importance import Importance, register_importance, unregister_importance

NAME = "power_norm_resume_test"


class PowerNorm(Importance):
    """A user's criterion: sum of |w| ** power over each output channel's kernel slice."""

    def __init__(self, power: float = 2.0) -> None:
        self.power = power

    def prepare(self, model, dep, data=None):
        self._scores = {layer.name: np.sum(np.abs(np.asarray(layer.kernel)) ** self.power,
                                           axis=tuple(range(len(layer.kernel.shape) - 1)))
                        for layer in model.layers if getattr(layer, "kernel", None) is not None}

    def channel_scores(self, layer):
        return self._scores.get(layer)

    def get_config(self):
        return {"power": self.power}


class Interrupted(Exception):
    pass


class StopAtSecondFit(keras.callbacks.Callback):
    """Interrupts compress when round 2's fine-tuning starts (round 1 is checkpointed)."""

    def __init__(self) -> None:
        super().__init__()
        self.fits = 0

    def on_train_begin(self, logs=None):
        self.fits += 1
        if self.fits == 2:
            raise Interrupted


def _mlp() -> keras.Model:
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Flatten(name="flat")(inp)
    h = keras.layers.Dense(32, activation="relu", name="h1")(h)
    h = keras.layers.Dense(24, activation="relu", name="h2")(h)
    model = keras.Model(inp, keras.layers.Dense(10, name="out")(h))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    (xt, yt), _ = digits_split()
    model.fit(xt, yt, epochs=10, batch_size=64, verbose=0)
    return model


def _compress(model, checkpoint_dir=None, callbacks=None):
    (xt, yt), val = digits_split()
    # a dataset in a fixed order: arrays are shuffled by a pipeline whose order depends on how many
    # epochs the process has run, so a resumed run's round 2 sees other batches (any importance)
    train = tf.data.Dataset.from_tensor_slices((xt, yt)).batch(64)
    return tf_gpp.compress(model, train, val, target_macs=0.4, rounds=2, finetune_epochs=1,
                           final_finetune_epochs=1, importance=NAME, checkpoint_dir=checkpoint_dir,
                           callbacks=callbacks, verbose=0)


@pytest.fixture
def registered():
    register_importance(NAME, PowerNorm)
    yield
    unregister_importance(NAME)


@pytest.mark.filterwarnings("ignore:The returned model")  # 1 fine-tuning epoch: accuracy is not the point
def test_resumed_run_with_a_registered_importance_equals_the_uninterrupted_one(tmp_path, registered):
    model = _mlp()
    whole = _compress(model)
    ckpt = tmp_path / "ckpt"
    with pytest.raises(Interrupted):
        _compress(model, ckpt, callbacks=[StopAtSecondFit()])
    assert (ckpt / "round_1.keras").exists() and not (ckpt / "round_2.keras").exists()

    unregister_importance(NAME)  # a new session: the user's module registers the name again
    register_importance(NAME, PowerNorm)
    resumed = _compress(model, ckpt)
    assert [h.round for h in resumed.history] == [1, 2]
    for a, b in zip(whole.history, resumed.history, strict=True):
        assert (a.macs, a.params, a.removed_units) == (b.macs, b.params, b.removed_units)
        assert a.accuracy == pytest.approx(b.accuracy, abs=1e-6)
    assert [w.shape for w in resumed.model.weights] == [w.shape for w in whole.model.weights]
    for a, b in zip(whole.model.get_weights(), resumed.model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
