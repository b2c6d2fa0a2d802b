"""Shared pieces of the Fashion-MNIST benchmark: the base CNN, its recipe, data, caching.

The builders take the Keras module as an argument so the same architecture is
built with Keras 3 (tf_gpp) and with tf_keras (the tfmot baseline subprocess),
the way ``tools/bench_latency.build_vgg`` does.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from _report import set_threads  # noqa: F401 - re-exported: the scripts call fc.set_threads

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "benchmarks" / "cache"
INPUT_SHAPE = (28, 28, 1)
NUM_CLASSES = 10

#: Base architecture: two conv-BN-ReLU blocks (widths below, 3x3, 'same', no
#: bias), a 2x2 max-pool after each block, Flatten, Dense-BN-ReLU, Dropout, Dense(10)
#: logits. Most parameters sit in the hidden Dense (the cheap way to ~1M params on
#: this 2-core machine); most MACs sit in the convolutions.
BASE_WIDTHS = (24, 24, 48, 48)
BASE_DENSE = 384
BN_MOMENTUM = 0.9
DROPOUT = 0.3


def build_cnn(
    keras: Any,
    widths: tuple[int, ...] | list[int] = BASE_WIDTHS,
    dense: int = BASE_DENSE,
    name: str = "fmnist_cnn",
    bn_momentum: float = BN_MOMENTUM,
    dropout: float = DROPOUT,
) -> Any:
    """The benchmark CNN (works with Keras 3 and tf_keras: the same layer API)."""
    inp = keras.Input(INPUT_SHAPE, name="image")
    h = inp
    for i, width in enumerate(widths):
        h = keras.layers.Conv2D(int(width), 3, padding="same", use_bias=False, name=f"conv{i}")(h)
        h = keras.layers.BatchNormalization(momentum=bn_momentum, name=f"bn{i}")(h)
        h = keras.layers.ReLU(name=f"relu{i}")(h)
        if i % 2 == 1:
            h = keras.layers.MaxPooling2D(name=f"pool{i // 2}")(h)
    h = keras.layers.Flatten(name="flatten")(h)
    h = keras.layers.Dense(int(dense), use_bias=False, name="fc")(h)
    h = keras.layers.BatchNormalization(momentum=bn_momentum, name="bn_fc")(h)
    h = keras.layers.ReLU(name="relu_fc")(h)
    h = keras.layers.Dropout(dropout, name="dropout")(h)
    out = keras.layers.Dense(NUM_CLASSES, name="logits")(h)
    return keras.Model(inp, out, name=name)


def cnn_macs(widths: tuple[int, ...] | list[int], dense: int) -> int:
    """MACs per sample of :func:`build_cnn` (closed form, equals ``tf_gpp.profile``)."""
    macs, cin, side = 0, INPUT_SHAPE[-1], INPUT_SHAPE[0]
    for i, width in enumerate(widths):
        macs += side * side * 9 * cin * width
        cin = width
        if i % 2 == 1:
            side //= 2
    return macs + side * side * cin * dense + dense * NUM_CLASSES


def width_multiplier_for(target_macs: float, round_to: int = 1) -> tuple[float, list[int], int]:
    """Width multiplier m (all convs and the hidden Dense scaled by m) whose MACs are
    closest to ``target_macs``; returns (m, conv widths, dense units)."""

    def shape(m: float) -> tuple[list[int], int]:
        def r(c: float) -> int:
            return max(round_to, int(round(c * m / round_to)) * round_to)

        return [r(w) for w in BASE_WIDTHS], r(BASE_DENSE)

    lo, hi = 0.01, 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        w, d = shape(mid)
        if cnn_macs(w, d) > target_macs:
            hi = mid
        else:
            lo = mid
    best = min((lo, hi), key=lambda m: abs(cnn_macs(*shape(m)) - target_macs))
    w, d = shape(best)
    return best, w, d


def cosine_lr(keras: Any, lr: float, steps: int) -> Any:
    return keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, steps), alpha=0.0)


def batches_per_epoch(n: int, batch_size: int) -> int:
    return math.ceil(n / batch_size)


def load_arrays(limit_train: int | None, limit_test: int | None, val_fraction: float = 0.1) -> dict:
    """Fashion-MNIST as float32 arrays in [0, 1]: train / val (stratified split) / test.

    ``limit_train`` caps the 60k training pool (before the validation split) and
    ``limit_test`` the 10k test set, as seeded stratified subsets.
    """
    import tf_gpp

    ds = tf_gpp.data.load_fashion_mnist(validation_split=val_fraction, limit=None, seed=0)
    x, y = ds.as_numpy("train")
    xv, yv = ds.as_numpy("val")
    xt, yt = ds.as_numpy("test")
    rng = np.random.default_rng(0)

    def subset(a: np.ndarray, b: np.ndarray, n: int | None) -> tuple[np.ndarray, np.ndarray]:
        if n is None or n >= len(b):
            return a, b
        order = tf_gpp.data.stratified_order(b, 0)[:n]
        order = np.sort(order)
        return a[order], b[order]

    if limit_train is not None:
        n_val = max(NUM_CLASSES, int(round(limit_train * val_fraction)))
        x, y = subset(x, y, limit_train - n_val)
        xv, yv = subset(xv, yv, n_val)
    xt, yt = subset(xt, yt, limit_test)
    del rng
    return {
        "x_train": x.astype("float32"), "y_train": y.astype("int32"),
        "x_val": xv.astype("float32"), "y_val": yv.astype("int32"),
        "x_test": xt.astype("float32"), "y_test": yt.astype("int32"),
        "source": ds.source,
    }


def recipe_key(recipe: dict) -> str:
    return hashlib.sha1(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]


def train_classifier(
    keras: Any, model: Any, data: dict, epochs: int, lr: float, batch_size: int, seed: int,
    log: Any = print,
) -> float:
    """Adam with cosine decay to 0 over all steps, sparse CE on logits; returns seconds."""
    keras.utils.set_random_seed(seed)
    steps = epochs * batches_per_epoch(len(data["y_train"]), batch_size)
    model.compile(
        optimizer=keras.optimizers.Adam(cosine_lr(keras, lr, steps)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    t0 = time.time()
    for e in range(epochs):
        h = model.fit(data["x_train"], data["y_train"], batch_size=batch_size, epochs=e + 1,
                      initial_epoch=e, verbose=0, shuffle=True)
        log(f"  epoch {e + 1}/{epochs}: loss {h.history['loss'][-1]:.4f} "
            f"acc {h.history['accuracy'][-1]:.4f} ({time.time() - t0:.0f}s)")
    return time.time() - t0


def fraction_dataset(x: np.ndarray, y: np.ndarray, fraction: float, batch_size: int, seed: int) -> Any:
    """A ``tf.data`` pass of ``round(fraction * len(y) / batch_size)`` full batches drawn from
    all of ``(x, y)``, reshuffled on every pass: epochs of a fraction of the data without
    dropping any data from the pool (indices are shuffled, so a pass starts at once)."""
    import tensorflow as tf

    steps = max(1, int(round(fraction * len(y) / batch_size)))
    xs, ys = tf.constant(x), tf.constant(y)
    ds = tf.data.Dataset.range(len(y)).shuffle(len(y), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.batch(batch_size, drop_remainder=True).take(steps)
    return ds.map(lambda i: (tf.gather(xs, i), tf.gather(ys, i))).prefetch(2)


def train_schedule(
    keras: Any, model: Any, data: dict, *, epochs: int, lr: float, batch_size: int, seed: int,
    extra_steps: int = 0, time_limit: float | None = None, cpu_time: bool = False, log: Any = print,
) -> dict:
    """Train like :func:`train_classifier` (Adam, sparse CE on logits, cosine decay to 0).

    Step budget (``time_limit`` None): ``epochs`` full epochs, then ``extra_steps`` batches of
    a fresh random permutation; the cosine decays over all of them.
    Time budget: train for ``time_limit`` seconds of fit time (epochs until then, at most
    ``epochs``); the cosine decays over that time and training stops at the limit. The
    seconds are wall time, or this process's CPU time with ``cpu_time`` (what a dedicated
    core would take, independent of other jobs on a shared machine).
    Returns wall and CPU seconds, steps, images, epochs (images / training images) and
    whether time ran out.
    """
    keras.utils.set_random_seed(seed)
    n = len(data["y_train"])
    bpe = batches_per_epoch(n, batch_size)
    now = time.process_time if cpu_time else time.time
    clock = {"t0": now(), "fit": 0.0, "steps": 0, "images": 0, "wall": 0.0, "cpu": 0.0}

    def used() -> float:
        return clock["fit"] + now() - clock["t0"]

    class Budget(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
            if time_limit is not None:
                t = min(1.0, used() / time_limit)
                self.model.optimizer.learning_rate.assign(0.5 * lr * (1.0 + math.cos(math.pi * t)))

        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            clock["steps"] += 1
            if time_limit is not None and used() >= time_limit:
                self.model.stop_training = True

    if time_limit is None:
        opt = keras.optimizers.Adam(cosine_lr(keras, lr, epochs * bpe + extra_steps))
    else:
        opt = keras.optimizers.Adam(lr)
    model.compile(optimizer=opt, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    rng = np.random.default_rng(seed)
    chunks: list[tuple[np.ndarray | None, int]] = [(None, n)] * epochs
    if time_limit is None and extra_steps > 0:
        chunks.append((rng.permutation(n)[: extra_steps * batch_size], extra_steps * batch_size))
    stopped = False
    for e, (idx, count) in enumerate(chunks):
        x, y = (data["x_train"], data["y_train"]) if idx is None else (data["x_train"][idx], data["y_train"][idx])
        wall0, cpu0 = time.time(), time.process_time()
        clock["t0"] = now()
        steps_before = clock["steps"]
        h = model.fit(x, y, batch_size=batch_size, epochs=e + 1, initial_epoch=e, verbose=0, shuffle=True,
                      callbacks=[Budget()])
        clock["fit"] += now() - clock["t0"]
        clock["wall"] += time.time() - wall0
        clock["cpu"] += time.process_time() - cpu0
        done = clock["steps"] - steps_before
        clock["images"] += count if done >= math.ceil(count / batch_size) else done * batch_size
        log(f"  epoch {e + 1}{'' if time_limit is not None else '/' + str(len(chunks))}: "
            f"loss {h.history['loss'][-1]:.4f} acc {h.history['accuracy'][-1]:.4f} "
            f"({clock['wall']:.0f}s, {clock['cpu']:.0f} CPU s)")
        if time_limit is not None and clock["fit"] >= time_limit:
            stopped = True
            break
    return {"seconds": round(clock["wall"], 1), "cpu_seconds": round(clock["cpu"], 1),
            "steps": clock["steps"], "images": clock["images"],
            "epochs": round(clock["images"] / n, 4), "stopped_by_time": stopped}


def evaluate(keras: Any, model: Any, x: np.ndarray, y: np.ndarray) -> float:
    logits = model.predict(x, batch_size=500, verbose=0)
    return float(np.mean(np.argmax(logits, -1) == y))


#: How the cached base model is trained (the key of its cache file). ``limit_train``
#: None = the full 60k training pool (54k train + 6k validation).
BASE_RECIPES = {
    "full": {
        "widths": list(BASE_WIDTHS), "dense": BASE_DENSE, "bn_momentum": BN_MOMENTUM,
        "dropout": DROPOUT, "epochs": 8, "lr": 2e-3, "batch_size": 128, "seed": 0,
        "limit_train": None, "optimizer": "Adam, cosine decay to 0", "augmentation": None,
    },
    "quick": {
        "widths": list(BASE_WIDTHS), "dense": BASE_DENSE, "bn_momentum": BN_MOMENTUM,
        "dropout": DROPOUT, "epochs": 3, "lr": 2e-3, "batch_size": 128, "seed": 0,
        "limit_train": 6000, "optimizer": "Adam, cosine decay to 0", "augmentation": None,
    },
}


def base_paths(cache: Path, recipe: dict) -> tuple[Path, Path]:
    key = recipe_key(recipe)
    return cache / f"fmnist_base_{key}.keras", cache / f"fmnist_base_{key}.json"


def train_base(cache: Path, recipe: dict, limit_test: int | None, log: Any = print) -> dict:
    """Train the base CNN with ``recipe`` and cache it; returns its info (cached if present)."""
    import keras

    import tf_gpp

    model_path, info_path = base_paths(cache, recipe)
    if model_path.exists() and info_path.exists():
        return json.loads(info_path.read_text())
    cache.mkdir(parents=True, exist_ok=True)
    data = load_arrays(recipe["limit_train"], limit_test)
    keras.utils.set_random_seed(recipe["seed"])
    model = build_cnn(keras, recipe["widths"], recipe["dense"], bn_momentum=recipe["bn_momentum"],
                      dropout=recipe["dropout"])
    log(f"training base CNN on {len(data['y_train'])} images for {recipe['epochs']} epochs")
    cpu0 = time.process_time()
    seconds = train_classifier(keras, model, data, recipe["epochs"], recipe["lr"],
                               recipe["batch_size"], recipe["seed"], log)
    cpu_seconds = time.process_time() - cpu0
    prof = tf_gpp.profile(model)
    info = {
        "recipe": recipe,
        "params": int(prof.params),
        "macs": int(prof.macs),
        "val_accuracy": evaluate(keras, model, data["x_val"], data["y_val"]),
        "test_accuracy": evaluate(keras, model, data["x_test"], data["y_test"]),
        "train_seconds": round(seconds, 1),
        "train_cpu_seconds": round(cpu_seconds, 1),
        "n_train": int(len(data["y_train"])),
        "n_test": int(len(data["y_test"])),
        "data_source": data["source"],
    }
    tmp = model_path.with_name(".tmp_" + model_path.name)
    model.save(tmp)
    tmp.replace(model_path)
    info_path.write_text(json.dumps(info, indent=2))
    log(f"base: {info['params']:,} params, {info['macs']:,} MACs, test accuracy {info['test_accuracy']:.4f}")
    return info
