"""Push composed with distillation: Distiller(PushModel(student), teacher) trains on
task + distillation + push, computed here by hand on one batch."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from sklearn.datasets import load_digits

from tests.push_reference import push_terms_np
from tf_gpp.push import PUSH_TERMS, PushLoss, PushModel, PushSchedule
from tf_gpp.training import Distiller


@pytest.fixture(scope="module")
def batch():
    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype("float32")[:96], y[:96].astype("int32")


def _mlp(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inp = keras.Input((64,))
    h = keras.layers.Dense(24, activation="relu", name="hidden")(inp)
    return keras.Model(inp, keras.layers.Dense(10, name="head")(h))


def _numpy_forward(model: keras.Model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w1, b1, w2, b2 = (np.asarray(w, np.float64) for w in model.get_weights())
    h = np.maximum(x.astype(np.float64) @ w1 + b1, 0.0)
    return h, h @ w2 + b2


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_push_distill_step_loss_is_task_plus_distillation_plus_push(batch, monkeypatch):
    x, y = batch
    student, teacher = _mlp(0), _mlp(1)
    alpha, temp, (a, b, g) = 0.3, 2.0, (0.5, 1.5, 0.7)
    pm = PushModel(student, push=PushLoss(a=a, b=b, g=g, decorrelation="both"))
    trainer = Distiller(pm, teacher, alpha=alpha, temperature=temp)
    trainer.compile(keras.optimizers.SGD(0.0), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    monkeypatch.setattr(pm, "features", lambda *a, **k: pytest.fail("features recomputed"))
    logs = trainer.train_on_batch(x, y, return_dict=True)

    h, z = _numpy_forward(student, x)
    _, zt = _numpy_forward(teacher, x)
    task = -np.mean(_log_softmax(z)[np.arange(len(y)), y])
    p_t = np.exp(_log_softmax(zt / temp))
    kl = np.mean(np.sum(p_t * (np.log(p_t + 1e-8) - _log_softmax(z / temp)), -1))
    terms = push_terms_np(h, y, 10, decorrelation="both")
    push = a * terms["sep"] + b * terms["cov"] + g * terms["align"]
    expected = (1 - alpha) * task + alpha * temp**2 * kl + push
    assert push > 0.05 * expected  # the push term is a visible share of the loss
    assert logs["loss"] == pytest.approx(expected, rel=1e-4)
    for name, key in zip(PUSH_TERMS, ("sep", "cov", "align"), strict=True):
        assert logs[name] == pytest.approx(terms[key], rel=1e-4, abs=1e-6)


def test_push_schedule_drives_a_distilled_push_model(batch):
    x, y = batch
    pm = PushModel(_mlp(0), push=PushLoss(a=0.2, b=1.0, g=0.0))
    trainer = Distiller(pm, _mlp(1))
    trainer.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert trainer.push_weights is pm.push_weights or trainer.push_weights == pm.push_weights
    hist = trainer.fit(x, y, epochs=2, batch_size=32, verbose=0,
                       callbacks=[PushSchedule(warmup_steps=3)]).history
    np.testing.assert_allclose(hist["push_b"], [2 / 3, 1.0], rtol=1e-6)  # 3 steps an epoch: 0, 1/3, 2/3 | 1
    for name in PUSH_TERMS:
        assert np.isfinite(hist[name]).all()
    plain = Distiller(_mlp(0), _mlp(1))  # a plain student: no push weights, no push terms
    assert getattr(plain, "push_weights", None) is None
    plain.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert "push_sep" not in plain.fit(x, y, epochs=1, verbose=0).history
