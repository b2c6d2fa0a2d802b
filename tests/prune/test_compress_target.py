"""Issue 22: a target is a target. compress reaches target_macs by default and returns the last
round's model; max_accuracy_drop is opt-in and then stops early, keeping both models the CVIU
paper reports; a returned model far below the base is reported, never silently."""

import warnings

import keras
import numpy as np
import pytest

import tf_gpp

# no fine-tuning and random scores: every round is deterministic (seeded) and loses accuracy
HARSH = {"rounds": 3, "finetune_epochs": 0, "importance": "random", "verbose": 0}


@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(0)
    y = np.arange(600) % 4
    x = (rng.normal(size=(600, 8)) + 1.5 * np.eye(4, 8)[y]).astype("float32")
    keras.utils.set_random_seed(0)
    i = keras.Input((8,))
    h = keras.layers.Dense(48, activation="relu", name="h1")(i)
    h = keras.layers.Dense(48, activation="relu", name="h2")(h)
    model = keras.Model(i, keras.layers.Dense(4, name="out")(h))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x, y, epochs=40, batch_size=64, verbose=0)
    return model, (x, y)


def _accuracy(model, data):
    x, y = data
    return float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y))


def test_default_reaches_the_target_and_reports_the_gap(trained):
    model, data = trained
    with pytest.warns(UserWarning, match=r"points below the base accuracy.*max_accuracy_drop=0.02"):
        res = tf_gpp.compress(model, data, data, target_macs=0.1, **HARSH)
    assert len(res.history) == 3  # no early stop
    last = res.history[-1]
    assert last.macs_ratio <= 0.1 and res.target_met
    assert tf_gpp.profile(res.model).macs == last.macs  # the returned model is the one at the target
    assert res.chosen_round == last.round and res.chosen is last
    assert res.smallest_within_tolerance is None
    assert all(h.within_tolerance is None for h in res.history)
    assert _accuracy(res.model, data) == pytest.approx(last.accuracy, abs=1e-6)
    assert _accuracy(res.most_accurate, data) == pytest.approx(max(h.accuracy for h in res.history), abs=1e-6)
    text = res.summary()
    assert "<- model" in text and "points below the base accuracy" in text
    assert res.to_dict()["chosen_round"] == 3 and res.to_dict()["target_met"] is True


def test_opt_in_tolerance_stops_at_the_first_round_beyond_it(trained):
    model, data = trained
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        free = tf_gpp.compress(model, data, data, target_macs=0.1, **HARSH)
    drops = [free.base_accuracy - h.accuracy for h in free.history]
    assert drops[0] < drops[1], drops  # the construction: round 2 loses more than round 1
    tolerance = (drops[0] + drops[1]) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = tf_gpp.compress(model, data, data, target_macs=0.1, max_accuracy_drop=tolerance, **HARSH)
    assert [h.within_tolerance for h in res.history] == [True, False]  # stopped after round 2 of 3
    assert not res.target_met
    assert res.smallest_within_tolerance is res.model is res.most_accurate
    assert tf_gpp.profile(res.model).macs == res.history[0].macs
    assert [h.accuracy for h in res.history] == [h.accuracy for h in free.history[:2]]  # same rounds replayed


def test_default_keeps_the_users_model_and_meets_a_params_target(trained):
    model, data = trained
    before = [w.copy() for w in model.get_weights()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = tf_gpp.compress(model, data, data, target_params=0.3, rounds=2, finetune_epochs=1, verbose=0)
    assert res.history[-1].params_ratio <= 0.3 and res.target_met
    for a, b in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(a, b)


def test_min_finetune_steps_and_the_longer_final_finetune(trained):
    model, (x, y) = trained

    class Steps(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.per_fit = []

        def on_train_begin(self, logs=None):
            self.per_fit.append(0)

        def on_train_batch_end(self, batch, logs=None):
            self.per_fit[-1] += 1

    small = (x[:128], y[:128])  # 2 batches of 64 an epoch
    steps = Steps()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tf_gpp.compress(model, small, small, target_macs=0.5, rounds=2, finetune_epochs=1, final_finetune_epochs=1,
                        min_finetune_steps=7, callbacks=[steps], verbose=0)
    assert steps.per_fit == [8, 8]  # 1 epoch of 2 steps raised to 4 epochs: the first whole epoch >= 7 steps
    steps.per_fit.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tf_gpp.compress(model, small, small, target_macs=0.5, rounds=2, finetune_epochs=1, callbacks=[steps],
                        verbose=0)
    assert steps.per_fit == [2, 8]  # by default the last round, whose model is returned, trains 4x longer
    with pytest.raises(tf_gpp.PruningRequestError, match="min_finetune_steps"):
        tf_gpp.compress(model, small, small, target_macs=0.5, min_finetune_steps=-1, verbose=0)


def test_tolerance_none_or_a_fraction():
    cfg = tf_gpp.prune.CompressConfig(target_macs=0.5)
    assert cfg.max_accuracy_drop is None
    cfg.validate()
    for bad in (-0.1, 1.5, True, "2%"):
        with pytest.raises(tf_gpp.PruningRequestError, match="max_accuracy_drop"):
            tf_gpp.prune.CompressConfig(target_macs=0.5, max_accuracy_drop=bad).validate()
