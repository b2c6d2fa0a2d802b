"""PushModel in plain compile/fit, .keras round trip, strip(), PushSchedule."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from sklearn.datasets import load_digits

from tf_gpp.errors import TfGppError, UnsupportedModelError
from tf_gpp.push import PUSH_TERMS, PushLoss, PushModel, PushSchedule, strip


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype("float32")[:640], y[:640]


def _mlp(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inp = keras.Input((64,))
    h = keras.layers.Dense(32, activation="relu", name="hidden")(inp)
    h = keras.layers.Dropout(0.1, name="drop")(h)
    return keras.Model(inp, keras.layers.Dense(10, name="head")(h), name="mlp")


def _compile(model: keras.Model, loss=None) -> keras.Model:
    model.compile(
        keras.optimizers.Adam(3e-3),
        loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def test_fit_tracks_push_terms_and_uses_one_forward_pass(digits, monkeypatch):
    x, y = digits
    pm = _compile(PushModel(_mlp()))
    assert pm.feature_layer == "hidden"  # walked back through the Dropout
    monkeypatch.setattr(pm, "features", lambda *a, **k: pytest.fail("features recomputed"))
    hist = pm.fit(x, y, epochs=2, batch_size=64, validation_split=0.25, verbose=0).history
    for name in PUSH_TERMS:
        assert len(hist[name]) == 2 and np.isfinite(hist[name]).all()
        assert f"val_{name}" in hist
    assert np.isfinite(hist["loss"]).all() and np.isfinite(hist["val_loss"]).all()


def test_push_adds_weighted_terms_to_the_loss(digits):
    x, y = digits
    plain = _compile(_mlp())
    pm = _compile(PushModel(_mlp(), push=PushLoss(a=0.0, b=0.0, g=0.0)))
    base = pm.evaluate(x, y, verbose=0, return_dict=True)
    ref = plain.evaluate(x, y, verbose=0, return_dict=True)
    assert base["loss"] == pytest.approx(ref["loss"], rel=1e-6)  # zero weights: task loss only
    assert base["accuracy"] == pytest.approx(ref["accuracy"])
    pm.push_weights["g"].assign(2.0)
    pushed = pm.evaluate(x, y, verbose=0, return_dict=True)
    # evaluate averages per-batch losses; the push term is 2 * per-batch alignment
    assert pushed["loss"] > base["loss"] + 0.5 * pushed["push_align"]


def test_save_load_and_strip(digits, tmp_path):
    x, y = digits
    pm = _compile(PushModel(_mlp(), push=PushLoss(a=0.2, b=0.1, g=1.5, separation="lda")))
    pm.fit(x, y, epochs=1, batch_size=128, verbose=0)
    pm.push_weights["a"].assign(0.7)
    path = tmp_path / "pushed.keras"
    pm.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, PushModel)
    assert loaded.feature_layer == "hidden" and loaded.push.separation == "lda"
    assert float(loaded.push_weights["a"].numpy()) == pytest.approx(0.7)
    ref = pm.predict(x, verbose=0)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), ref, atol=1e-6)
    loaded.fit(x, y, epochs=1, batch_size=128, verbose=0)  # still trainable after loading

    plain = pm.strip()
    assert type(plain) is keras.Model or plain.__class__.__name__ == "Functional"
    assert not isinstance(plain, PushModel)
    np.testing.assert_allclose(plain.predict(x, verbose=0), ref, atol=1e-6)
    plain.get_layer("head").kernel.assign(np.zeros((32, 10), "float32"))
    np.testing.assert_allclose(pm.predict(x, verbose=0), ref, atol=1e-6)  # independent copy
    assert strip(pm, copy=False) is pm.base_model
    assert strip(plain) is plain


def test_sequential_conv_and_one_hot(digits):
    x, y = digits
    keras.utils.set_random_seed(0)
    cnn = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(name="gap"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    pm = _compile(PushModel(cnn), loss="categorical_crossentropy")
    assert pm.feature_layer == "gap"
    hist = pm.fit(x.reshape(-1, 8, 8, 1), np.eye(10)[y], epochs=1, batch_size=128, verbose=0)
    assert np.isfinite(hist.history["push_sep"]).all()
    with pytest.raises(UnsupportedModelError, match="GlobalAveragePooling"):
        PushModel(cnn, feature_layer=cnn.layers[0].name)


def test_rejects_models_it_cannot_push():
    inp = keras.Input((4,))
    two = keras.Model(inp, [keras.layers.Dense(2)(inp), keras.layers.Dense(3)(inp)])
    with pytest.raises(UnsupportedModelError, match="2 outputs"):
        PushModel(two)
    with pytest.raises(UnsupportedModelError, match="not a layer"):
        PushModel(_mlp(), feature_layer="nope")


def test_push_schedule_warmup_and_callable(digits):
    x, y = digits
    pm = _compile(PushModel(_mlp(), push=PushLoss(a=0.4, b=0.2, g=1.0)))
    hist = pm.fit(
        x,
        y,
        epochs=3,
        batch_size=128,
        verbose=0,
        callbacks=[PushSchedule(warmup_epochs=2, start_epoch=1)],
    ).history
    np.testing.assert_allclose(hist["push_a"], [0.0, 0.2, 0.4], rtol=1e-6)
    np.testing.assert_allclose(hist["push_g"], [0.0, 0.5, 1.0], rtol=1e-6)
    assert [PushSchedule(g=2.0, warmup_epochs=2).weights_at(e)["g"] for e in range(3)] == [
        1.0,
        2.0,
        2.0,
    ]

    sched = PushSchedule(schedule=lambda epoch: {"g": 3.0 * epoch})
    hist = pm.fit(x, y, epochs=2, batch_size=128, verbose=0, callbacks=[sched]).history
    np.testing.assert_allclose(hist["push_g"], [0.0, 3.0])
    np.testing.assert_allclose(hist["push_a"], [0.4, 0.4], rtol=1e-6)
    assert PushSchedule(a=1.0, schedule=lambda e: (e, 0, 0)).weights_at(4) == {
        "a": 4.0,
        "b": 0.0,
        "g": 0.0,
    }

    cfg = PushSchedule(a=1.0, g=0.5, warmup_epochs=3, start_epoch=1).get_config()
    back = PushSchedule.from_config(cfg)
    assert back.get_config() == cfg and back.weights_at(0)["a"] == 0.0

    with pytest.raises(TfGppError, match="PushModel"):
        _compile(_mlp()).fit(x, y, epochs=1, verbose=0, callbacks=[PushSchedule()])


class _WeightsInForce(keras.callbacks.Callback):
    """Reads the model's push weight variables at every optimizer step (after PushSchedule)."""

    def __init__(self):
        super().__init__()
        self.steps: list[dict[str, float]] = []

    def on_train_batch_begin(self, batch, logs=None):
        self.steps.append({k: float(v.numpy()) for k, v in self.model.push_weights.items()})


@pytest.mark.parametrize("start_epoch", [0, 1])
def test_push_schedule_warmup_steps_ramps_per_step(digits, start_epoch):
    x, y = digits  # 640 samples, batch 128: 5 steps an epoch
    pm = _compile(PushModel(_mlp(), push=PushLoss(a=0.4, b=2.0, g=0.0)))
    seen = _WeightsInForce()
    pm.fit(x, y, epochs=4, batch_size=128, verbose=0, shuffle=False,
           callbacks=[PushSchedule(warmup_steps=8, start_epoch=start_epoch), seen])
    assert len(seen.steps) == 20
    skip = 5 * start_epoch
    assert all(s == {"a": 0.0, "b": 0.0, "g": 0.0} for s in seen.steps[:skip])
    ramp = [s["b"] for s in seen.steps[skip:]]
    expected = [2.0 * min(1.0, i / 8) for i in range(len(ramp))]  # 0, 0.25, ..., 2.0 at step 8
    np.testing.assert_allclose(ramp, expected, rtol=1e-6)
    np.testing.assert_allclose([s["a"] for s in seen.steps[skip:]], [0.2 * v for v in ramp], rtol=1e-6)
    assert ramp[0] == 0.0 and ramp[-1] == 2.0
    # a second fit ramps again from 0
    seen.steps.clear()
    pm.fit(x, y, epochs=1, batch_size=128, verbose=0, callbacks=[PushSchedule(warmup_steps=4), seen])
    np.testing.assert_allclose([s["b"] for s in seen.steps], [0.0, 0.5, 1.0, 1.5, 2.0], rtol=1e-6)


def test_push_schedule_warmup_steps_config_and_errors(digits):
    cfg = PushSchedule(g=0.5, warmup_steps=30, start_epoch=2).get_config()
    back = PushSchedule.from_config(cfg)
    assert back.get_config() == cfg and back.warmup_steps == 30
    assert back.weights_at(2, step=15)["g"] == pytest.approx(0.25)
    assert back.weights_at(1, step=15)["g"] == 0.0
    with pytest.raises(ValueError, match="warmup_steps=3.*warmup_epochs=1"):
        PushSchedule(warmup_steps=3, warmup_epochs=1)
    with pytest.raises(ValueError, match="warmup_steps"):
        PushSchedule(warmup_steps=-1)
    # steps_per_execution: the ramp still ends at the targets
    x, y = digits
    pm = PushModel(_mlp(), push=PushLoss(a=0.0, b=1.0, g=0.0))
    pm.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
               steps_per_execution=3)
    seen = _WeightsInForce()  # 5 steps an epoch, run 3 at a time: steps 0, 3 | 5, 8
    pm.fit(x, y, epochs=2, batch_size=128, verbose=0, callbacks=[PushSchedule(warmup_steps=4), seen])
    np.testing.assert_allclose([s["b"] for s in seen.steps], [0.0, 0.75, 1.0, 1.0])
