"""compress(push=True): a push phase with its own epochs before round 1 (optionally before every
round), its weights ramped from 0 per step, distilled from the unpruned model."""

from __future__ import annotations

import keras
import pytest

import tf_gpp
from tests.digits_model import digits_split
from tf_gpp.push import PushModel
from tf_gpp.training import Distiller


class _Fits(keras.callbacks.Callback):
    """Per fit: what trained (``push``/``finetune``), distilled or not, its epochs and the push
    weights in force at each step."""

    def __init__(self):
        super().__init__()
        self.fits: list[dict] = []

    def on_train_begin(self, logs=None):
        student = self.model.student if isinstance(self.model, Distiller) else self.model
        self.fits.append({"kind": "push" if isinstance(student, PushModel) else "finetune",
                          "distilled": isinstance(self.model, Distiller), "epochs": self.params["epochs"],
                          "steps": self.params["steps"], "b": []})

    def on_train_batch_begin(self, batch, logs=None):
        weights = getattr(self.model, "push_weights", None)
        if weights is not None:
            self.fits[-1]["b"].append(float(weights["b"].numpy()))


def _mlp() -> keras.Model:
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Flatten()(inp)
    h = keras.layers.Dense(32, activation="relu", name="hidden")(h)
    model = keras.Model(inp, keras.layers.Dense(10, name="out")(h))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(*digits_split()[0], epochs=2, verbose=0)
    return model


@pytest.mark.filterwarnings("ignore:The returned model")
@pytest.mark.parametrize("every_round", [False, True])
def test_push_is_a_phase_of_its_own_before_round_1(every_round):
    (xt, yt), val = digits_split()
    train = (xt[:640], yt[:640])  # batch 64: 10 steps an epoch
    fits = _Fits()
    res = tf_gpp.compress(_mlp(), train, val, target_macs=0.6, rounds=2, push=True, push_epochs=2,
                          push_every_round=every_round, push_loss=tf_gpp.PushLoss(a=0.1, b=2.0, g=0.0),
                          finetune_epochs=1, final_finetune_epochs=3, importance="l1", recalibrate_steps=0,
                          callbacks=[fits], verbose=0)
    kinds = [(f["kind"], f["epochs"]) for f in fits.fits]
    pushes = [("push", 2)] * (2 if every_round else 1)
    # fine-tuning keeps its epochs: 1 in round 1, 3 in the last round
    expected = [pushes[0], ("finetune", 1)] + pushes[1:] + [("finetune", 3)]
    assert kinds == expected
    assert all(f["distilled"] for f in fits.fits)  # push too trains against the unpruned logits
    for f in fits.fits:
        if f["kind"] == "push":  # ramp over the first half of the phase: 10 of its 20 steps
            assert f["steps"] == 10 and len(f["b"]) == 20
            assert f["b"][:11] == pytest.approx([0.2 * i for i in range(11)], rel=1e-6)
            assert f["b"][10:] == pytest.approx([2.0] * 10)
    assert res.pushed_model is not None and len(res.history) == 2


def test_push_options_are_validated():
    train, val = digits_split()
    with pytest.raises(tf_gpp.PruningRequestError, match="push_every_round=True.*push=True"):
        tf_gpp.compress(_mlp(), train, val, target_macs=0.5, push_every_round=True, verbose=0)
    with pytest.raises(tf_gpp.PruningRequestError, match="push_every_round='yes'"):
        tf_gpp.compress(_mlp(), train, val, target_macs=0.5, push=True, push_every_round="yes", verbose=0)
    with pytest.raises(tf_gpp.PruningRequestError, match="push_loss=.*tf_gpp.PushLoss"):
        tf_gpp.compress(_mlp(), train, val, target_macs=0.5, push=True, push_loss={"a": 1.0}, verbose=0)
    cfg = tf_gpp.prune.CompressConfig(target_macs=0.5, push=True, push_every_round=True)
    assert cfg.recipe()["push_every_round"] is True
