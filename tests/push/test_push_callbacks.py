"""GPP callbacks live alongside Keras' own in a plain fit; rounds log to TensorBoard."""

import keras
import numpy as np

import tf_gpp
from tests.digits_model import digits_split


def _mlp():
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Flatten()(inp)
    x = keras.layers.Dense(32, activation="relu", name="hidden")(x)
    return keras.Model(inp, keras.layers.Dense(10, name="out")(x))


def test_push_with_standard_keras_callbacks(tmp_path):
    (xt, yt), (xv, yv) = digits_split()
    pm = tf_gpp.PushModel(_mlp())
    pm.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    callbacks = [
        tf_gpp.PushSchedule(warmup_epochs=1),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=5),
        keras.callbacks.ModelCheckpoint(tmp_path / "best.keras", save_best_only=True),
        keras.callbacks.BackupAndRestore(str(tmp_path / "backup")),
        keras.callbacks.TensorBoard(str(tmp_path / "tb")),
    ]
    hist = pm.fit(xt, yt, validation_data=(xv, yv), epochs=3, batch_size=64, callbacks=callbacks, verbose=0)
    for key in ("push_sep", "push_cov", "push_align", "val_push_align", "push_g"):
        assert key in hist.history and np.all(np.isfinite(hist.history[key]))
    restored = keras.models.load_model(tmp_path / "best.keras")
    assert restored.predict(xv[:4], verbose=0).shape == (4, 10)
    assert list((tmp_path / "tb").rglob("events.out.tfevents*"))


def test_compress_logs_rounds_to_tensorboard(tmp_path):
    train, val = digits_split()
    m = _mlp()
    m.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    m.fit(*train, epochs=3, verbose=0)
    tf_gpp.compress(m, train, val, target_macs=0.5, rounds=1, push=False, importance="l1",
                    finetune_epochs=1, log_dir=tmp_path / "tb", verbose=0)
    assert list((tmp_path / "tb").rglob("events.out.tfevents*"))
