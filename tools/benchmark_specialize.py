#!/usr/bin/env python
"""Task specialisation: a compact model for one task, derived from a generalist network.

Tian et al.'s task-dependent setting (CVIU 2021, GPP 2020) on Fashion-MNIST:

* **Generalist.** ``keras.applications.MobileNetV2(alpha=0.35, weights=None,
  input_shape=(32, 32, 3), classes=10)`` with its own BatchNorm settings (momentum
  0.999), trained here on all 60k Fashion-MNIST training images and cached (keyed
  by its recipe) in ``~/.cache/tf_gpp/specialize/``. Images are preprocessed in the
  *input pipeline*, not in the model: bilinear resize 28 -> 32, the grey channel
  repeated to RGB, pixels scaled to [-1, 1] (MobileNetV2's convention). The models
  are therefore plain ``keras.applications`` graphs with a 32x32x3 input. Training
  ~10 minutes is too few steps for momentum-0.999 moving statistics to converge, so
  its BatchNorm statistics are re-estimated on training images after training
  (``tf_gpp.recalibrate_batchnorm``; both test accuracies are recorded).
* **Sub-tasks.** ``hard`` = Pullover/Coat/Shirt (labels 2, 4, 6), ``easy`` =
  Sandal/Sneaker/Ankle boot (5, 7, 9). Per seed: 300 training and 100 validation
  images per class drawn (disjoint) from the training split; test accuracy on the
  *full* test split of those classes (1,000 per class).
* **Task base** (the upper bound and the model given to ``compress``): the
  generalist's feature layer (global average pooling) + a new ``Dense(k)`` logits
  head, fine-tuned on the task data, BN statistics re-estimated on the task data.
* **Criteria**, each through ``tf_gpp.compress(task_base, train, val,
  target_macs=b, importance=..., push=..., max_accuracy_drop=1.0)``: ``gpp`` (LDA
  utility + push), ``gpp_lda`` (no push), ``l1``, ``bn_scale``, ``taylor``,
  ``random``; every criterion fine-tunes with compress's default ``distill``, and
  the report marks the criterion that is compress's default recipe at run time.
  ``max_accuracy_drop=1.0`` makes every run reach the budget, so ``result.model``
  is the last round's model at the budget; ``result.most_accurate`` is recorded
  too. Every criterion trains the same number of epochs per round: the push
  criterion ``push_epochs + finetune_epochs``, the others ``finetune_epochs =
  push_epochs + finetune_epochs``.
* **Baselines.** ``scratch``: the same architecture narrowed by a width
  multiplier m to about the budget's MACs (``tf_gpp.profile``), trained from
  scratch on the task data with the epochs compress spent (base fine-tune + every
  round's epochs), and ``scratch_4x`` with 4x those epochs. The multiplier scales
  the ``filters`` of every Conv2D in the ``keras.applications`` config of
  MobileNetV2(alpha=0.35) -- the last 1x1 conv (1280 channels at alpha <= 1)
  included, which alone holds ~12% of the MACs, so no keras alpha reaches 10% --
  rounded to whole channels (``round_to=1``, as the pruned models).
  ``tfmot``: the task base pruned by ``prune_low_magnitude`` (tf_keras, in a
  subprocess) to sparsity 1 - budget (polynomial schedule over the first 70% of
  the steps) during the same epochs compress trains; its weights are loaded back
  into the Keras 3 model, BN re-estimated like every other model, and evaluated.
  Every model here has its BN statistics re-estimated on its own training data
  before evaluation (compress does it internally), so no method is judged on
  stale statistics.
* **Latency.** LiteRT float32, 1 thread, batch 1: the task base and every seed-0
  model of a task timed round-robin in one loop (``tf_gpp.convert.benchmark_interleaved``);
  medians and ratios vs the task base. tfmot runs dense kernels (latency = the
  base's) unless converted with ``EXPERIMENTAL_SPARSITY``; that file is timed.

Every run (task x seed x budget x method) appends one JSON line to
``<cache>/runs_<settings key>.jsonl``; a re-run skips finished runs, so an
interrupted run resumes (``--report-only`` rewrites the outputs from the lines).

Usage::

    python tools/benchmark_specialize.py --quick      # 1 task, 1 seed, 25% MACs, gpp + l1, baselines
    nohup python tools/benchmark_specialize.py --full > /tmp/specialize.log 2>&1 &

Writes ``benchmarks/results/specialize.{json,md,png}`` (``specialize_quick.*`` with
``--quick``, unless ``--out`` is given).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
for _p in (TOOLS, REPO):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import numpy as np  # noqa: E402
from _report import set_threads  # noqa: E402

ALPHA = 0.35
INPUT_SHAPE = (32, 32, 3)
TASKS: dict[str, dict[str, Any]] = {
    "hard": {"classes": [2, 4, 6], "names": ["Pullover", "Coat", "Shirt"]},
    "easy": {"classes": [5, 7, 9], "names": ["Sandal", "Sneaker", "Ankle boot"]},
}
CRITERIA: dict[str, dict[str, Any]] = {
    "gpp": {"importance": "gpp_lda", "push": True, "label": "GPP: LDA utility + push"},
    "gpp_lda": {"importance": "gpp_lda", "push": False, "label": "LDA utility, no push"},
    "l1": {"importance": "l1", "push": False, "label": "L1 filter norm"},
    "bn_scale": {"importance": "bn_scale", "push": False, "label": "BN scale"},
    "taylor": {"importance": "taylor", "push": False, "label": "Taylor (1st order)"},
    "random": {"importance": "random", "push": False, "label": "random"},
    # the papers' path (issue 23): the CVIU pipeline, without and with push (push on top of the fine-tuning)
    "cviu": {"importance": "gpp", "push": False, "label": "CVIU: Fisher utility, top-M', deconv trace"},
    "cviu_push": {"importance": "gpp", "push": True, "label": "CVIU pipeline + push"},
}
#: recovery recipes (issue 22): compress's defaults (Taylor, no push, distillation) with one change
RECIPES: dict[str, dict[str, Any]] = {
    "floor": {"min_finetune_steps": 120},            # >= 120 optimizer steps per fine-tune (8 epochs here)
    "final_long": {"final_finetune_epochs": 16},     # the last round fine-tuned 16 epochs, not 4
    "gradual": {"rounds": 8, "finetune_epochs": 2},  # 8 smaller steps, equal epochs
    "small_lr": {"lr_schedule": "constant", "learning_rate": 1e-4},  # fine-tuning at a small rate, no rewind
    "min_width": {"min_channels": 8},                # a per-layer minimum width
    "min_width4": {"min_channels": 4},               # a milder one (8 cannot reach 10% here)
    "no_distill": {"distill": False},                # plain fine-tuning on the labels
    "final_floor": {"final_finetune_epochs": 16, "min_finetune_steps": 120},
    "final_no_distill": {"final_finetune_epochs": 16, "distill": False},
    # a share of each layer's base width that always stays (Torch-Pruning's max_pruning_ratio)
    "max_ratio90": {"max_pruning_ratio": 0.9},
    "max_ratio95": {"max_pruning_ratio": 0.95},
}
CRITERIA.update({name: {"importance": "taylor", "push": False, "label": f"default + {recipe}", "recipe": recipe}
                 for name, recipe in RECIPES.items()})
#: the papers' path on compress's own defaults (issue 23): the CVIU pipeline with and without push, and its
#: per-layer eta*std rule (eta chosen to reach each round's target) against the global ranking
PAPER_RECIPES: dict[str, dict[str, Any]] = {
    "paper": {"importance": "gpp", "push": True},
    "gpp_defaults": {"importance": "gpp"},
    "gpp_per_layer": {"importance": "gpp", "strategy": "per_layer"},
    "paper_per_layer": {"importance": "gpp", "push": True, "strategy": "per_layer"},
    # why it loses: the same pipeline without the top-M' selection (every feature neuron traced)
    "gpp_all_final": {"importance": {"class_name": "gpp", "config": {"tolerance": None}}},
}
CRITERIA.update({name: {"importance": "gpp", "push": recipe.get("push", False),
                        "label": "defaults + " + ", ".join(f"{k}={v!r}" for k, v in recipe.items()), "recipe": recipe}
                 for name, recipe in PAPER_RECIPES.items()})
BASELINES: dict[str, str] = {
    "base": "task base (generalist + new head, fine-tuned): upper bound",
    "scratch": "width-multiplier MobileNetV2 from scratch, equal epochs",
    "scratch_4x": "width-multiplier MobileNetV2 from scratch, 4x epochs",
    "tfmot": "tfmot prune_low_magnitude (unstructured) of the task base",
    "compact": "width-multiplier MobileNetV2 pretrained on the source like the generalist, fine-tuned on the task",
}
#: the baselines that are sized to a budget (one run per budget), in report order
SIZED_BASELINES = ("compact", "scratch", "scratch_4x", "tfmot")

GENERALIST_RECIPES: dict[str, dict[str, Any]] = {
    "full": {
        "arch": f"keras.applications.MobileNetV2(alpha={ALPHA}, weights=None, input_shape=(32, 32, 3), classes=10)",
        "bn": "keras.applications defaults (momentum 0.999, epsilon 1e-3)",
        "preprocess": "bilinear resize 28->32, grey repeated to 3 channels, x*2-1 (input pipeline)",
        "train_images": 60000, "epochs": 2, "batch_size": 64, "lr": 2e-3,
        "optimizer": "Adam, cosine decay to 0", "augmentation": None, "seed": 0,
        "recalibrate_steps": 200,
    },
    "tiny": {
        "arch": f"keras.applications.MobileNetV2(alpha={ALPHA}, weights=None, input_shape=(32, 32, 3), classes=10)",
        "bn": "keras.applications defaults (momentum 0.999, epsilon 1e-3)",
        "preprocess": "bilinear resize 28->32, grey repeated to 3 channels, x*2-1 (input pipeline)",
        "train_images": 1000, "epochs": 1, "batch_size": 64, "lr": 2e-3,
        "optimizer": "Adam, cosine decay to 0", "augmentation": None, "seed": 0,
        "recalibrate_steps": 10,
    },
}

#: Per-run recipe (part of the results file's key); ``None`` = compress's default at run time.
RUN_SETTINGS: dict[str, dict[str, Any]] = {
    "full": {
        "generalist": "full",
        "train_per_class": 300, "val_per_class": 100, "test_per_class": None,  # None: full test split
        # batch 60 divides 900 training and 300 validation images: no partial last batch, so
        # every fit/evaluate traces its step once (tracing MobileNetV2 dominates a run's cost)
        "base_epochs": 5, "base_lr": 1e-3, "batch_size": 60,
        # cut from compress's defaults (4 rounds of 2 push + 2 fine-tune epochs) to fit the
        # protocol on this shared 2-core machine: 2 rounds of 1 push + 1 fine-tune epoch
        "rounds": 2, "push_epochs": 1, "finetune_epochs": 1,
        "compress_lr": None, "recalibrate_steps": None,
        "scratch_lr": 2e-3, "scratch_factor": 4,
        "tfmot_lr": 1e-3,
        "latency_rounds": 300, "latency_warmup": 20,
    },
    # compress exactly as a user calls it: rounds and epochs are compress's defaults, and push (a
    # criterion's choice) gets its own epochs on top of the fine-tuning (never carved out of it)
    "defaults": {
        "generalist": "full",
        "train_per_class": 300, "val_per_class": 100, "test_per_class": None,
        "base_epochs": 5, "base_lr": 1e-3, "batch_size": 60,
        "rounds": None, "push_epochs": None, "finetune_epochs": None, "push_budget": "own",
        "compress_lr": None, "recalibrate_steps": None,
        "scratch_lr": 2e-3, "scratch_factor": 4,
        "tfmot_lr": 1e-3,
        "latency_rounds": 300, "latency_warmup": 20,
    },
    "tiny": {
        "generalist": "tiny",
        "train_per_class": 30, "val_per_class": 10, "test_per_class": 100,
        "base_epochs": 1, "base_lr": 1e-3, "batch_size": 30,
        "rounds": 1, "push_epochs": 1, "finetune_epochs": 1,
        "compress_lr": None, "recalibrate_steps": None,
        "scratch_lr": 2e-3, "scratch_factor": 2,
        "tfmot_lr": 1e-3,
        "latency_rounds": 20, "latency_warmup": 2,
    },
}
SELECTION: dict[str, dict[str, Any]] = {
    # budgets in run order (the goals are at 25% and 10%); tables sort them
    "full": {"tasks": ["hard", "easy"], "seeds": 3, "budgets": [0.25, 0.1, 0.5],
             "criteria": list(CRITERIA), "baselines": list(BASELINES)},
    "quick": {"tasks": ["hard"], "seeds": 1, "budgets": [0.25],
              "criteria": ["gpp", "l1"], "baselines": list(BASELINES)},
    "tiny": {"tasks": ["hard"], "seeds": 1, "budgets": [0.25],
             "criteria": ["gpp", "l1"], "baselines": ["base", "scratch"]},
}


def _key(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def compress_defaults() -> dict[str, Any]:
    """``tf_gpp.compress``'s keyword defaults as they stand at run time."""
    import tf_gpp

    return {k: p.default for k, p in inspect.signature(tf_gpp.compress).parameters.items()
            if p.default is not inspect.Parameter.empty}


def resolved_settings(run: dict) -> dict:
    """``run`` with every ``None`` compress setting replaced by compress's default."""
    d = compress_defaults()
    out = dict(run)
    for ours, theirs in (("rounds", "rounds"), ("push_epochs", "push_epochs"),
                         ("finetune_epochs", "finetune_epochs"), ("compress_lr", "learning_rate"),
                         ("recalibrate_steps", "recalibrate_steps")):
        if out[ours] is None:
            out[ours] = d[theirs]
    # compress's default recipe at run time: its criterion is marked in the report, and its
    # fine-tuning (distillation or not) is every criterion's
    out["default_importance"] = d["importance"]
    out["default_push"] = d["push"]
    out["distill"] = d["distill"]
    # "carved" (the default of the older settings): every criterion trains push_epochs +
    # finetune_epochs per round; "own": push criteria push on top of the fine-tuning epochs
    own = out.get("push_budget", "carved") == "own"
    out["epochs_per_round"] = out["finetune_epochs"] if own else out["push_epochs"] + out["finetune_epochs"]
    out["compress_epochs"] = out["rounds"] * out["epochs_per_round"]
    out["scratch_epochs"] = out["base_epochs"] + out["compress_epochs"]
    return out


# --------------------------------------------------------------------------- data


def preprocess(x: Any) -> Any:
    """28x28x1 in [0, 1] -> 32x32x3 in [-1, 1] (works on NumPy arrays and tensors)."""
    import tensorflow as tf

    x = tf.image.resize(tf.convert_to_tensor(x, tf.float32), INPUT_SHAPE[:2], method="bilinear")
    return tf.repeat(x, 3, axis=-1) * 2.0 - 1.0


def load_fmnist() -> dict[str, Any]:
    """Fashion-MNIST 60k/10k as 28x28x1 float32 in [0, 1] (tf_gpp.data's loader)."""
    import tf_gpp

    ds = tf_gpp.data.load_fashion_mnist(validation_split=0.0, seed=0)
    x, y = ds.as_numpy("train")
    xt, yt = ds.as_numpy("test")
    return {"x": x.astype("float32"), "y": y.astype("int32"), "xt": xt.astype("float32"),
            "yt": yt.astype("int32"), "source": ds.source}


def task_data(fm: dict, task: str, seed: int, run: dict) -> dict[str, np.ndarray]:
    """Per-seed task split: train/val drawn disjointly from the training split, test = the
    task's classes of the test split (all of them, or ``test_per_class`` fixed ones)."""
    classes = TASKS[task]["classes"]
    rng = np.random.default_rng(1000 * seed + sum(classes))
    tr, va = [], []
    for c in classes:
        idx = rng.permutation(np.flatnonzero(fm["y"] == c))
        tr.append(idx[: run["train_per_class"]])
        va.append(idx[run["train_per_class"]: run["train_per_class"] + run["val_per_class"]])
    te = []
    for c in classes:
        idx = np.flatnonzero(fm["yt"] == c)
        te.append(idx if run["test_per_class"] is None else idx[: run["test_per_class"]])
    remap = np.full(10, -1, np.int32)
    remap[classes] = np.arange(len(classes))

    def take(x: np.ndarray, y: np.ndarray, parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        idx = np.sort(np.concatenate(parts))
        return np.asarray(preprocess(x[idx])), remap[y[idx]]

    out = {}
    out["x_train"], out["y_train"] = take(fm["x"], fm["y"], tr)
    out["x_val"], out["y_val"] = take(fm["x"], fm["y"], va)
    out["x_test"], out["y_test"] = take(fm["xt"], fm["yt"], te)
    return out


# --------------------------------------------------------------------------- models


def accuracy(model: Any, x: np.ndarray, y: np.ndarray, batch: int = 500) -> float:
    """Top-1 accuracy, eager forward passes (no ``predict`` function to trace per model)."""
    correct = 0
    for i in range(0, len(y), batch):
        out = np.asarray(model(x[i:i + batch], training=False))
        correct += int(np.sum(np.argmax(out, -1) == y[i:i + batch]))
    return correct / len(y)


def cosine_adam(keras: Any, lr: float, steps: int) -> Any:
    return keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(lr, decay_steps=max(1, steps)))


def fit(keras: Any, model: Any, x: np.ndarray, y: np.ndarray, epochs: int, lr: float, batch: int,
        seed: int, from_logits: bool = True) -> float:
    """Adam, cosine decay to 0 over all steps, sparse CE; returns seconds."""
    keras.utils.set_random_seed(seed)
    steps = epochs * -(-len(y) // batch)
    model.compile(optimizer=cosine_adam(keras, lr, steps),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits), metrics=["accuracy"])
    t0 = time.time()
    model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, shuffle=True)
    return time.time() - t0


def generalist_paths(cache: Path, recipe: dict, width: float | None = None) -> tuple[Path, Path]:
    key = _key(recipe) if width is None else f"compact_{_key({**recipe, 'width_multiplier': width})}"
    return cache / f"generalist_{key}.keras", cache / f"generalist_{key}.json"


def ensure_generalist(cache: Path, recipe: dict, fm: dict, log: Any, width: float | None = None) -> tuple[Path, dict]:
    """Train (or load from the cache) the 10-class MobileNetV2 generalist; with ``width``, the
    compact net (every Conv2D's filters x ``width``) pretrained with the same recipe."""
    import keras
    import tensorflow as tf

    import tf_gpp

    name = "generalist" if width is None else f"compact (width {width})"
    model_path, info_path = generalist_paths(cache, recipe, width)
    if model_path.exists() and info_path.exists():
        info = json.loads(info_path.read_text())
        log(f"{name}: cached {model_path.name}, test accuracy {info['test_accuracy']:.4f}")
        return model_path, info
    if not fm:
        fm.update(load_fmnist())
    cache.mkdir(parents=True, exist_ok=True)
    n = recipe["train_images"]
    x, y = fm["x"], fm["y"]
    if n < len(y):
        idx = np.sort(tf_gpp.data.stratified_order(y, recipe["seed"])[:n])
        x, y = x[idx], y[idx]
    keras.utils.set_random_seed(recipe["seed"])
    model = (keras.applications.MobileNetV2(alpha=ALPHA, weights=None, input_shape=INPUT_SHAPE, classes=10)
             if width is None else narrow_mobilenet(keras, 10, width, classifier_activation="softmax"))
    bs = recipe["batch_size"]
    ds = (tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(y), seed=recipe["seed"])
          .batch(bs).map(lambda a, b: (preprocess(a), b)).prefetch(2))
    steps = recipe["epochs"] * -(-len(y) // bs)
    model.compile(optimizer=cosine_adam(keras, recipe["lr"], steps),
                  loss=keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    log(f"{name}: training on {len(y):,} images, {recipe['epochs']} epochs ({steps} steps of {bs})")
    t0 = time.time()

    class Progress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            log(f"  {name} epoch {epoch + 1}/{recipe['epochs']}: loss {logs['loss']:.4f} "
                f"acc {logs['accuracy']:.4f} ({time.time() - t0:.0f}s)")

    model.fit(ds, epochs=recipe["epochs"], verbose=0, callbacks=[Progress()])
    seconds = time.time() - t0
    xt = np.asarray(preprocess(fm["xt"]))
    acc_stale = accuracy(model, xt, fm["yt"])
    tf_gpp.recalibrate_batchnorm(model, ds, steps=recipe["recalibrate_steps"])
    acc = accuracy(model, xt, fm["yt"])
    prof = tf_gpp.profile(model)
    info = {
        "recipe": recipe, "width_multiplier": width, "params": int(prof.params), "macs": int(prof.macs),
        "test_accuracy": acc, "test_accuracy_before_bn_recalibration": acc_stale,
        "train_seconds": round(seconds, 1), "n_train": int(len(y)), "n_test": int(len(fm["yt"])),
        "data_source": fm["source"],
        "bn_momentum": sorted({float(la.momentum) for la in model.layers
                               if isinstance(la, keras.layers.BatchNormalization)}),
    }
    tmp = model_path.with_name(".tmp_" + model_path.name)
    model.save(tmp)
    tmp.replace(model_path)
    info_path.write_text(json.dumps(info, indent=2))
    log(f"{name}: {info['params']:,} params, {info['macs']:,} MACs, test accuracy {acc:.4f} "
        f"(before BN re-estimation {acc_stale:.4f}), trained in {seconds:.0f}s")
    return model_path, info


def task_model_from(generalist: Any, k: int, keras: Any) -> Any:
    """The generalist's feature layer (global pooling output) + a new Dense(k) logits head."""
    features = generalist.layers[-1].input
    out = keras.layers.Dense(k, name="task_head")(features)
    return keras.Model(generalist.inputs, out, name="task_base")


def narrow_mobilenet(keras: Any, k: int, m: float, classifier_activation: str | None = None) -> Any:
    """MobileNetV2(alpha=0.35) with every Conv2D's filters scaled by m (whole channels)."""
    ref = keras.applications.MobileNetV2(alpha=ALPHA, weights=None, input_shape=INPUT_SHAPE, classes=k,
                                         classifier_activation=classifier_activation)
    cfg = ref.get_config()
    for layer in cfg["layers"]:
        layer.pop("build_config", None)  # built shapes of the original widths
        if layer["class_name"] == "Conv2D":
            layer["config"]["filters"] = max(1, int(round(layer["config"]["filters"] * m)))
    return keras.Model.from_config(cfg)


_WIDTH_MEMO: dict[tuple[int, float], tuple[float, int, int]] = {}


def width_for_macs(keras: Any, k: int, target: float, cache: Path | None = None) -> tuple[float, int, int]:
    """Multiplier m whose narrowed net has MACs closest to ``target``; (m, MACs, params).
    Memoised in memory and, with ``cache``, in ``cache/widths.json`` (a search builds ~10 nets)."""
    key = f"{k}_{int(target)}"
    file = cache / "widths.json" if cache is not None else None
    saved = json.loads(file.read_text()) if file is not None and file.exists() else {}
    if key in saved:
        return tuple(saved[key])  # type: ignore[return-value]
    if (k, target) not in _WIDTH_MEMO:
        _WIDTH_MEMO[(k, target)] = _width_search(keras, k, target)
    if file is not None:
        saved[key] = list(_WIDTH_MEMO[(k, target)])
        file.write_text(json.dumps(saved, indent=1))
    return _WIDTH_MEMO[(k, target)]


def _width_search(keras: Any, k: int, target: float) -> tuple[float, int, int]:
    import tf_gpp

    full = tf_gpp.profile(narrow_mobilenet(keras, k, 1.0)).macs
    target_fraction = min(1.0, target / full)

    memo: dict[float, tuple[int, int]] = {}

    def cost(m: float) -> tuple[int, int]:
        if m not in memo:
            p = tf_gpp.profile(narrow_mobilenet(keras, k, m))
            memo[m] = (int(p.macs), int(p.params))
            keras.backend.clear_session()
        return memo[m]

    lo, hi = 0.5 * target_fraction ** 0.5, min(1.0, 1.3 * target_fraction ** 0.5)  # MACs ~ m^2
    for _ in range(8):
        mid = 0.5 * (lo + hi)
        if cost(mid)[0] > target:
            hi = mid
        else:
            lo = mid
    best = min((lo, hi), key=lambda m: abs(cost(m)[0] - target))
    return round(best, 5), *cost(best)


# --------------------------------------------------------------------------- runs


class Runner:
    """Runs and records every job; results go to a JSONL file (one line per finished run)."""

    def __init__(self, args: argparse.Namespace, run: dict, cache: Path, log: Any) -> None:
        self.args, self.run, self.cache, self.log = args, run, cache, log
        self.models = cache / "models"
        self.models.mkdir(parents=True, exist_ok=True)
        # which criterion is compress's default marks a row; it changes no run, so not the key
        recipe = {k: v for k, v in run.items() if k not in ("default_importance", "default_push", "default_row")}
        self.results_file = cache / f"runs_{_key(recipe)}.jsonl"
        self.done: dict[str, dict] = {}
        if self.results_file.exists():
            for line in self.results_file.read_text().splitlines():
                if line.strip():
                    rec = json.loads(line)
                    self.done[rec["id"]] = rec
        self._fm: dict | None = None
        self._data: dict[tuple[str, int], dict] = {}

    # ---- helpers
    @property
    def fm(self) -> dict:
        if self._fm is None:
            self._fm = load_fmnist()
        return self._fm

    def data(self, task: str, seed: int) -> dict:
        if (task, seed) not in self._data:
            self._data = {(task, seed): task_data(self.fm, task, seed, self.run)}
        return self._data[(task, seed)]

    def record(self, rec: dict) -> None:
        with open(self.results_file, "a") as f:
            f.write(json.dumps(rec, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.done[rec["id"]] = rec

    def base_path(self, task: str, seed: int) -> Path:
        return self.models / f"base_{task}_s{seed}.keras"

    def keep_tflite(self, seed: int) -> bool:
        return seed == 0

    # ---- jobs
    def task_base(self, task: str, seed: int, gen_path: Path) -> dict:
        import keras

        import tf_gpp

        d = self.data(task, seed)
        k = len(TASKS[task]["classes"])
        keras.utils.set_random_seed(seed)
        model = task_model_from(keras.models.load_model(gen_path), k, keras)
        seconds = fit(keras, model, d["x_train"], d["y_train"], self.run["base_epochs"], self.run["base_lr"],
                      self.run["batch_size"], seed)
        stale = accuracy(model, d["x_test"], d["y_test"])
        tf_gpp.recalibrate_batchnorm(model, (d["x_train"], d["y_train"]), steps=None,
                                     batch_size=self.run["batch_size"])
        prof = tf_gpp.profile(model)
        path = self.base_path(task, seed)
        model.save(path)
        rec = {"accuracy": accuracy(model, d["x_test"], d["y_test"]),
               "val_accuracy": accuracy(model, d["x_val"], d["y_val"]),
               "accuracy_before_bn_recalibration": stale,
               "params": int(prof.params), "macs": int(prof.macs), "seconds": round(seconds, 1),
               "epochs": self.run["base_epochs"], "keras": str(path)}
        if self.keep_tflite(seed):
            rec["tflite"] = str(tf_gpp.convert.to_tflite(model, self.models / f"base_{task}_s{seed}.tflite"))
        return rec

    def compress_run(self, task: str, seed: int, budget: float, criterion: str, jid: str) -> dict:
        import keras

        import tf_gpp

        d = self.data(task, seed)
        spec = CRITERIA[criterion]
        r = self.run
        kwargs: dict[str, Any] = {"importance": spec["importance"], "push": spec["push"], "distill": r["distill"],
                                  "max_accuracy_drop": 1.0}
        push = spec["push"]
        epochs = {"push_epochs": r["push_epochs"], "finetune_epochs": r["finetune_epochs"]} if push else \
            {"push_epochs": 0, "finetune_epochs": r["epochs_per_round"]}
        if spec.get("recipe"):  # a recovery recipe: compress's defaults and its own options
            kwargs, epochs = dict(spec["recipe"]), {}
        base = keras.models.load_model(self.base_path(task, seed))
        ckpt = self.cache / "ckpt" / jid
        t0 = time.time()
        call = {"rounds": r["rounds"], "learning_rate": r["compress_lr"], "batch_size": r["batch_size"],
                "recalibrate_steps": r["recalibrate_steps"], **epochs, **kwargs}
        result = tf_gpp.compress(base, (d["x_train"], d["y_train"]), (d["x_val"], d["y_val"]), target_macs=budget,
                                 seed=seed, checkpoint_dir=ckpt, verbose=1, **call)
        seconds = time.time() - t0
        resolved = tf_gpp.prune.CompressConfig(target_macs=budget, **call)  # the epochs compress's defaults gave
        pm, pa = tf_gpp.profile(result.model), tf_gpp.profile(result.most_accurate)
        rec = {
            "accuracy": accuracy(result.model, d["x_test"], d["y_test"]),
            "accuracy_most_accurate": accuracy(result.most_accurate, d["x_test"], d["y_test"]),
            "params": int(pm.params), "macs": int(pm.macs),
            "most_accurate_params": int(pa.params), "most_accurate_macs": int(pa.macs),
            "base_val_accuracy": result.base_accuracy, "seconds": round(seconds, 1),
            "importance": spec["importance"], "push": push, "distill": r["distill"], **epochs,
            "rounds": call["rounds"], "recipe": spec.get("recipe"), "history": result.to_dict()["history"],
            "finetune_epochs_per_round": [resolved.epochs_of_round(i) for i in range(1, resolved.rounds + 1)],
            "compress_defaults_key": _key(compress_defaults()),
        }
        if self.keep_tflite(seed):
            rec["tflite"] = str(tf_gpp.convert.to_tflite(result.model, self.models / f"{jid}.tflite"))
            result.model.save(self.models / f"{jid}.keras")  # for the per-layer width comparison
            rec["keras"] = str(self.models / f"{jid}.keras")
        shutil.rmtree(ckpt, ignore_errors=True)
        return rec

    def scratch_run(self, task: str, seed: int, budget: float, factor: int, jid: str) -> dict:
        import keras

        import tf_gpp

        d = self.data(task, seed)
        k = len(TASKS[task]["classes"])
        base_macs = self.done[f"base_{task}_s{seed}"]["macs"]
        m, macs, params = width_for_macs(keras, k, budget * base_macs, self.cache)
        keras.utils.set_random_seed(seed)
        model = narrow_mobilenet(keras, k, m)
        epochs = factor * self.run["scratch_epochs"]
        seconds = fit(keras, model, d["x_train"], d["y_train"], epochs, self.run["scratch_lr"],
                      self.run["batch_size"], seed)
        stale = accuracy(model, d["x_test"], d["y_test"])
        tf_gpp.recalibrate_batchnorm(model, (d["x_train"], d["y_train"]), steps=None,
                                     batch_size=self.run["batch_size"])
        rec = {"accuracy": accuracy(model, d["x_test"], d["y_test"]),
               "accuracy_before_bn_recalibration": stale, "width_multiplier": m,
               "params": params, "macs": macs, "epochs": epochs, "seconds": round(seconds, 1)}
        if self.keep_tflite(seed) and factor == 1:
            rec["tflite"] = str(tf_gpp.convert.to_tflite(model, self.models / f"{jid}.tflite"))
        return rec

    def compact_run(self, task: str, seed: int, budget: float, jid: str) -> dict:
        """The compact net a user would pick instead: the generalist's architecture narrowed to
        the budget (the scratch baseline's width), pretrained on the source data with the
        generalist's recipe, then fine-tuned on the task like the task base for the task base's
        epochs + compress's."""
        import keras

        import tf_gpp

        d = self.data(task, seed)
        k = len(TASKS[task]["classes"])
        base_macs = self.done[f"base_{task}_s{seed}"]["macs"]
        m, macs, params = width_for_macs(keras, k, budget * base_macs, self.cache)
        gen_recipe = GENERALIST_RECIPES[self.run["generalist"]]
        path, info = ensure_generalist(self.args.generalist_cache, gen_recipe, self.fm, self.log, width=m)
        keras.utils.set_random_seed(seed)
        model = task_model_from(keras.models.load_model(path), k, keras)
        epochs = self.run["base_epochs"] + self.run["compress_epochs"]
        seconds = fit(keras, model, d["x_train"], d["y_train"], epochs, self.run["base_lr"],
                      self.run["batch_size"], seed)
        stale = accuracy(model, d["x_test"], d["y_test"])
        tf_gpp.recalibrate_batchnorm(model, (d["x_train"], d["y_train"]), steps=None,
                                     batch_size=self.run["batch_size"])
        prof = tf_gpp.profile(model)
        rec = {"accuracy": accuracy(model, d["x_test"], d["y_test"]),
               "accuracy_before_bn_recalibration": stale, "width_multiplier": m,
               "params": int(prof.params), "macs": int(prof.macs), "epochs": epochs, "seconds": round(seconds, 1),
               "pretrain_seconds": info["train_seconds"], "pretrain_test_accuracy_10class": info["test_accuracy"]}
        if self.keep_tflite(seed):
            rec["tflite"] = str(tf_gpp.convert.to_tflite(model, self.models / f"{jid}.tflite"))
            model.save(self.models / f"{jid}.keras")
            rec["keras"] = str(self.models / f"{jid}.keras")
        return rec

    def tfmot_run(self, task: str, seed: int, budget: float, jid: str) -> dict:
        import keras

        import tf_gpp

        d = self.data(task, seed)
        work = self.cache / "tfmot" / jid
        work.mkdir(parents=True, exist_ok=True)
        base = keras.models.load_model(self.base_path(task, seed))
        np.savez(work / "weights.npz", *base.get_weights())
        np.savez(work / "data.npz", x=d["x_train"], y=d["y_train"], xc=d["x_test"][:32],
                 logits=base.predict(d["x_test"][:32], verbose=0))
        spec = {"k": len(TASKS[task]["classes"]), "sparsity": 1.0 - budget, "seed": seed,
                "epochs": self.run["compress_epochs"], "lr": self.run["tfmot_lr"],
                "batch_size": self.run["batch_size"], "threads": self.args.threads, "work": str(work)}
        (work / "spec.json").write_text(json.dumps(spec))
        env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
        site = self.args.tfmot_site
        if site:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
        with open(work / "log.txt", "w") as f:
            proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--tfmot-worker", str(work)],
                                  env=env, stdout=f, stderr=subprocess.STDOUT, timeout=7200, check=False)
        out_file = work / "out.json"
        if proc.returncode != 0 or not out_file.exists():
            tail = "\n".join((work / "log.txt").read_text().strip().splitlines()[-4:])
            raise RuntimeError(f"tfmot worker failed (exit {proc.returncode}): {tail}")
        out = json.loads(out_file.read_text())
        with np.load(work / "pruned.npz") as f:
            weights = [f[f"arr_{i}"] for i in range(len(f.files))]
        model = keras.models.clone_model(base)
        model.set_weights(weights)
        tf_gpp.recalibrate_batchnorm(model, (d["x_train"], d["y_train"]), steps=None,
                                     batch_size=self.run["batch_size"])
        prof = tf_gpp.profile(base)
        layer_macs = {la.name: la.macs for la in prof.layers if la.macs}
        nonzero = sum(int(np.count_nonzero(w)) for w in model.get_weights())
        eff = int(sum(mac * out["density"].get(name, 1.0) for name, mac in layer_macs.items()))
        rec = {"accuracy": accuracy(model, d["x_test"], d["y_test"]),
               "train_accuracy_tf_keras": out["train_accuracy_tf_keras"],
               "params": int(prof.params), "params_nonzero": nonzero, "macs": int(prof.macs),
               "effective_macs": eff, "target_sparsity": 1.0 - budget, "epochs": spec["epochs"],
               "seconds": out["seconds"], "versions": out["versions"], "weight_check": out["weight_check"]}
        if self.keep_tflite(seed):
            sparse = self.models / f"{jid}_sparse.tflite"
            shutil.copy(work / "sparse.tflite", sparse)
            rec["tflite"] = str(sparse)
        shutil.rmtree(work, ignore_errors=True)
        return rec

    # ---- driver
    def jobs(self, sel: dict) -> list[dict]:
        out = []
        for seed in range(sel["seeds"]):
            for task in sel["tasks"]:
                out.append({"id": f"base_{task}_s{seed}", "kind": "base", "method": "base", "task": task,
                            "seed": seed, "budget": 1.0})
            for b in sel["budgets"]:
                for task in sel["tasks"]:
                    tag = f"{task}_b{int(round(100 * b)):02d}_s{seed}"
                    for c in sel["criteria"]:
                        out.append({"id": f"{c}_{tag}", "kind": "compress", "method": c, "task": task,
                                    "seed": seed, "budget": b})
                    for m in SIZED_BASELINES:
                        if m in sel["baselines"]:
                            out.append({"id": f"{m}_{tag}", "kind": m, "method": m, "task": task,
                                        "seed": seed, "budget": b})
        return out

    def execute(self, jobs: list[dict], gen_path: Path) -> list[str]:
        import keras

        failed = []
        todo = [j for j in jobs if j["id"] not in self.done]
        self.log(f"{len(jobs)} runs, {len(jobs) - len(todo)} already done ({self.results_file})")
        t_start, n_done = time.time(), 0
        for i, job in enumerate(todo, 1):
            jid = job["id"]
            if job["kind"] != "base" and f"base_{job['task']}_s{job['seed']}" not in self.done:
                self.log(f"[{i}/{len(todo)}] {jid}: skipped (its task base failed)")
                failed.append(jid)
                continue
            t0 = time.time()
            try:
                if job["kind"] == "base":
                    rec = self.task_base(job["task"], job["seed"], gen_path)
                elif job["kind"] == "compress":
                    rec = self.compress_run(job["task"], job["seed"], job["budget"], job["method"], jid)
                elif job["kind"] == "tfmot":
                    rec = self.tfmot_run(job["task"], job["seed"], job["budget"], jid)
                elif job["kind"] == "compact":
                    rec = self.compact_run(job["task"], job["seed"], job["budget"], jid)
                else:
                    factor = self.run["scratch_factor"] if job["kind"] == "scratch_4x" else 1
                    rec = self.scratch_run(job["task"], job["seed"], job["budget"], factor, jid)
            except Exception as exc:  # noqa: BLE001 - a failed run is logged and skipped; a re-run retries it
                import traceback

                self.log(f"[{i}/{len(todo)}] {jid}: FAILED {type(exc).__name__}: {exc}")
                self.log(traceback.format_exc())
                failed.append(jid)
                continue
            finally:
                keras.backend.clear_session()
                gc.collect()
            wall = time.time() - t0
            self.record({**job, **rec, "wall_seconds": round(wall, 1),
                         "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
            n_done += 1
            rate = (time.time() - t_start) / n_done
            extra = (f", most accurate round {rec['accuracy_most_accurate']:.4f}"
                     if "accuracy_most_accurate" in rec else "")
            self.log(f"[{i}/{len(todo)}] {jid}: test acc {rec['accuracy']:.4f}{extra}, "
                     f"{rec['params']:,} params, {rec['macs']:,} MACs, {wall:.0f}s "
                     f"(ETA {rate * (len(todo) - i) / 60:.0f} min)")
        return failed


def tfmot_worker(work: Path) -> int:
    """Subprocess entry (TF_USE_LEGACY_KERAS=1): task base in tf_keras -> prune_low_magnitude
    fine-tuning -> strip -> pruned weights (npz) and a sparsity-converted .tflite."""
    spec = json.loads((work / "spec.json").read_text())
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(spec["threads"])
    tf.config.threading.set_inter_op_parallelism_threads(spec["threads"])
    import tensorflow_model_optimization as tfmot
    import tf_keras

    with np.load(work / "weights.npz") as f:
        weights = [f[f"arr_{i}"] for i in range(len(f.files))]
    with np.load(work / "data.npz") as f:
        x, y, xc, ref = f["x"], f["y"], f["xc"], f["logits"]
    tf_keras.utils.set_random_seed(spec["seed"])
    gen = tf_keras.applications.MobileNetV2(alpha=ALPHA, weights=None, input_shape=INPUT_SHAPE, classes=10)
    head = tf_keras.layers.Dense(spec["k"], name="task_head")(gen.layers[-1].input)
    model = tf_keras.Model(gen.inputs, head)
    model.set_weights(weights)
    diff = float(np.max(np.abs(model.predict(xc, verbose=0) - ref)))
    if diff > 1e-3:
        raise SystemExit(f"tf_keras copy of the task base differs from the Keras 3 model by {diff}")
    steps = spec["epochs"] * -(-len(y) // spec["batch_size"])
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=spec["sparsity"], begin_step=0,
        end_step=max(1, int(0.7 * steps)), frequency=max(1, steps // 20))
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    pruned.compile(optimizer=tf_keras.optimizers.Adam(tf_keras.optimizers.schedules.CosineDecay(spec["lr"], steps)),
                   loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    t0 = time.time()
    pruned.fit(x, y, batch_size=spec["batch_size"], epochs=spec["epochs"], verbose=0, shuffle=True,
               callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    seconds = time.time() - t0
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    density = {}
    for layer in stripped.layers:
        for attr in ("kernel", "depthwise_kernel"):
            k = getattr(layer, attr, None)
            if k is not None:
                k = np.asarray(k)
                density[layer.name] = float(np.count_nonzero(k) / k.size)
    np.savez(work / "pruned.npz", *stripped.get_weights())
    conv = tf.lite.TFLiteConverter.from_keras_model(stripped)
    conv.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    (work / "sparse.tflite").write_bytes(conv.convert())
    acc = float(np.mean(np.argmax(stripped.predict(x, verbose=0), -1) == y))
    out = {"density": density, "seconds": round(seconds, 1), "weight_check": diff,
           "train_accuracy_tf_keras": acc,
           "versions": {"tf_keras": tf_keras.__version__, "tfmot": tfmot.__version__}}
    (work / "out.json").write_text(json.dumps(out))
    return 0


# --------------------------------------------------------------------------- latency & report


def measure_latency(done: dict[str, dict], run: dict, log: Any) -> dict:
    """Per task: the seed-0 task base and every seed-0 model with a .tflite, one interleaved loop."""
    from tf_gpp.convert import benchmark_interleaved

    out: dict[str, Any] = {}
    for task in TASKS:
        base_id = f"base_{task}_s0"
        if base_id not in done or not done[base_id].get("tflite"):
            continue
        ids = [base_id] + sorted(j for j, r in done.items()
                                 if r["task"] == task and r["seed"] == 0 and r.get("tflite") and j != base_id)
        ids = [j for j in ids if Path(done[j]["tflite"]).exists()]
        log(f"latency {task}: {len(ids)} models interleaved, {run['latency_rounds']} rounds, 1 thread")
        load0 = os.getloadavg()
        reps = benchmark_interleaved([done[j]["tflite"] for j in ids], threads=1,
                                     rounds=run["latency_rounds"], warmup=run["latency_warmup"])
        b = reps[0]
        out[task] = {"loadavg_before": load0, "loadavg_after": os.getloadavg(), "models": {
            j: {"median_ms": r.median_ms, "cpu_median_ms": r.cpu_median_ms, "min_ms": r.min_ms,
                "p90_ms": r.p90_ms, "size_bytes": r.size_bytes,
                "speedup_median": b.median_ms / r.median_ms,
                "speedup_cpu": (b.cpu_median_ms / r.cpu_median_ms) if r.cpu_median_ms else None}
            for j, r in zip(ids, reps, strict=True)}}
    return out


def aggregate(done: dict[str, dict], sel: dict, latency: dict) -> list[dict]:
    rows = []
    methods = ["base", *sel["criteria"], *[m for m in SIZED_BASELINES if m in sel["baselines"]]]
    for task in sel["tasks"]:
        for method in methods:
            budgets = [1.0] if method == "base" else sorted(sel["budgets"], reverse=True)
            for b in budgets:
                runs = sorted((r for r in done.values() if r["task"] == task and r["method"] == method
                               and abs(r["budget"] - b) < 1e-9 and r["seed"] < sel["seeds"]),
                              key=lambda r: r["seed"])
                if not runs:
                    continue
                acc = np.array([r["accuracy"] for r in runs])
                r0 = runs[0]
                lat_id = r0["id"] if method != "scratch_4x" else r0["id"].replace("scratch_4x", "scratch", 1)
                lat = latency.get(task, {}).get("models", {}).get(lat_id, {}) if r0["seed"] == 0 else {}
                if method == "tfmot":  # dense kernels: as fast as the base; the sparse converter file is timed
                    lat = latency.get(task, {}).get("models", {}).get(lat_id, {})
                row = {
                    "task": task, "method": method, "budget": b, "n": len(runs), "seeds": [r["seed"] for r in runs],
                    "accuracy_mean": float(acc.mean()), "accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else None,
                    "accuracies": acc.tolist(),
                    "params": float(np.mean([r.get("params_nonzero", r["params"]) for r in runs])),
                    "macs": float(np.mean([r.get("effective_macs", r["macs"]) for r in runs])),
                    "executed_macs": float(np.mean([r["macs"] for r in runs])),
                    "seconds_mean": float(np.mean([r["seconds"] for r in runs])),
                    "latency_median_ms": lat.get("median_ms"), "latency_cpu_ms": lat.get("cpu_median_ms"),
                    "speedup_median": lat.get("speedup_median"), "speedup_cpu": lat.get("speedup_cpu"),
                }
                if "accuracy_most_accurate" in r0:
                    ma = np.array([r["accuracy_most_accurate"] for r in runs])
                    row["most_accurate_mean"] = float(ma.mean())
                    row["most_accurate_std"] = float(ma.std(ddof=1)) if len(ma) > 1 else None
                    row["most_accurate_macs"] = float(np.mean([r["most_accurate_macs"] for r in runs]))
                if "width_multiplier" in r0:
                    row["width_multiplier"] = r0["width_multiplier"]
                if "epochs" in r0:
                    row["epochs"] = r0["epochs"]
                rows.append(row)
    base_macs = {t: next((r["macs"] for r in rows if r["task"] == t and r["method"] == "base"), None)
                 for t in sel["tasks"]}
    for r in rows:
        bm = base_macs.get(r["task"])
        r["macs_ratio"] = r["macs"] / bm if bm else None
        r["executed_macs_ratio"] = r["executed_macs"] / bm if bm else None
    return rows


def _cell(mean: float | None, std: float | None, n: int) -> str:
    if mean is None:
        return ""
    s = f"{100 * mean:.2f}"
    if std is not None:
        s += f" ± {100 * std:.2f}"
    return s + f" ({n})"


def _f(x: float | None, d: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{d}f}"


def default_criterion(run: dict) -> str | None:
    """The criterion that is compress's default recipe (importance and push) in this run, or the
    row named by ``--default-row`` (a recipe that became the default after its runs)."""
    if run.get("default_row"):
        return run["default_row"]
    return next((name for name, c in CRITERIA.items()
                 if c["importance"] == run["default_importance"] and c["push"] == run["default_push"]), None)


def conclusions(rows: list[dict], sel: dict, run: dict) -> list[str]:
    """Statements computed from the rows (ranks of the default recipe, gaps to the baselines)."""
    out = []
    for task in sel["tasks"]:
        base = next((r for r in rows if r["task"] == task and r["method"] == "base"), None)
        for b in sorted(sel["budgets"], reverse=True):
            at = {r["method"]: r for r in rows if r["task"] == task and r["budget"] == b}
            crit = {m: r for m, r in at.items() if m in CRITERIA}
            dflt = default_criterion(run)
            if dflt not in at or len(crit) < 2:
                continue
            g = at[dflt]
            order = sorted(crit, key=lambda m: -crit[m]["accuracy_mean"])
            best = order[0]
            parts = [f"compress's default (`{dflt}`) ranks {order.index(dflt) + 1}/{len(order)} "
                     f"({100 * g['accuracy_mean']:.2f}%; best {best} {100 * crit[best]['accuracy_mean']:.2f}%)"]
            if base:
                parts.append(f"{100 * (g['accuracy_mean'] - base['accuracy_mean']):+.2f} pts vs task base")
            for m in SIZED_BASELINES:
                if m in at:
                    parts.append(f"{100 * (g['accuracy_mean'] - at[m]['accuracy_mean']):+.2f} pts vs {m}")
            out.append(f"- **{task}, {int(round(100 * b))}% MACs**: " + "; ".join(parts) + ".")
            if "compact" in at:  # every criterion against the compact net a user would pick instead
                c = at["compact"]
                gaps = ", ".join(f"`{m}` {100 * (crit[m]['accuracy_mean'] - c['accuracy_mean']):+.2f} (n={crit[m]['n']})"
                                 for m in order)
                out.append(f"  - vs the compact pretrained net ({100 * c['accuracy_mean']:.2f}%, n={c['n']}): {gaps} "
                           "pts.")
    return out


def write_markdown(payload: dict, path: Path) -> None:
    rows, sel, run, gen = payload["rows"], payload["selection"], payload["run_settings"], payload["generalist"]
    m = payload["machine"]
    cols = [(t, b) for t in sel["tasks"] for b in sorted(sel["budgets"], reverse=True)]
    cmd = payload["command"]
    lines = [
        f"# Task specialisation benchmark ({payload['mode']})",
        "",
        f"Generated by `{cmd}`. Machine: {m['cpu']} ({m['cores']} cores, shared; load average "
        f"{payload['loadavg_start'][0]:.1f} at start), Python {m['python']}, TensorFlow {m['tensorflow']}, "
        f"Keras {m['keras']}, LiteRT {m['ai_edge_litert']}; {m['date']}, commit {m.get('git_commit')}; "
        f"{payload['threads']} TF thread(s). Wall time of this invocation {payload['elapsed_s'] / 60:.1f} min; "
        f"sum of run times {payload['sum_run_seconds'] / 60:.1f} min.",
        "",
        "## Setting",
        "",
        f"- **Generalist**: {gen['recipe']['arch']}, BN {gen['recipe']['bn']}; {gen['params']:,} params, "
        f"{gen['macs'] / 1e6:.2f} M MACs. Trained on {gen['n_train']:,} Fashion-MNIST images for "
        f"{gen['recipe']['epochs']} epochs ({gen['recipe']['optimizer']} from lr {gen['recipe']['lr']}, batch "
        f"{gen['recipe']['batch_size']}, no augmentation; {gen['train_seconds'] / 60:.1f} min). Preprocessing in the "
        f"input pipeline: {gen['recipe']['preprocess']}. **Test accuracy {100 * gen['test_accuracy']:.2f}%** on "
        f"{gen['n_test']:,} test images ({100 * gen['test_accuracy_before_bn_recalibration']:.2f}% with the moving "
        f"statistics of training: too few steps for momentum 0.999; re-estimated on "
        f"{gen['recipe']['recalibrate_steps']} training batches).",
        "- **Sub-tasks**: " + "; ".join(f"`{t}` = {'/'.join(TASKS[t]['names'])} (labels "
                                        f"{', '.join(map(str, TASKS[t]['classes']))})" for t in sel["tasks"])
        + f". Per seed {run['train_per_class']} training + {run['val_per_class']} validation images per class drawn "
        f"from the training split; test = {'the full test split of those classes' if run['test_per_class'] is None else str(run['test_per_class']) + ' test images per class'}.",
        f"- **Task base**: the generalist's global-pooling features + new Dense(k) logits, all layers fine-tuned "
        f"{run['base_epochs']} epochs (Adam lr {run['base_lr']}, cosine, batch {run['batch_size']}), BN statistics "
        "re-estimated on the task's training images.",
        f"- **Criteria**: `tf_gpp.compress(task_base, train, val, target_macs=b, max_accuracy_drop=1.0, "
        f"rounds={run['rounds']}, learning_rate={run['compress_lr']}, batch_size={run['batch_size']}, "
        f"recalibrate_steps={run['recalibrate_steps']}, seed=s)`. `gpp` = LDA utility + push with "
        f"push_epochs={run['push_epochs']} + finetune_epochs={run['finetune_epochs']} per round; the others "
        f"push=False with finetune_epochs={run['epochs_per_round']} (equal epochs per round). Every criterion "
        f"fine-tunes with distill={run['distill']} (compress's default). compress's default recipe is "
        f"importance={run['default_importance']!r}, push={run['default_push']}: the "
        f"`{default_criterion(run)}` row. `result.model` (the last round, at the budget) is "
        "scored; the most accurate round is in the JSON (`most_accurate_mean`).",
        f"- **compact**: the generalist's architecture narrowed by the scratch baseline's width multiplier m, "
        "pretrained on the 60k source images with the generalist's recipe (cached per m), then given a new "
        f"Dense(k) head and fine-tuned on the task like the task base for {run['base_epochs']} + "
        f"{run['compress_epochs']} epochs (the task base's epochs + compress's), BN re-estimated: the compact "
        "net a user would pick instead of pruning.",
        f"- **scratch / scratch_4x**: MobileNetV2(alpha={ALPHA}) config with every Conv2D's filters x m (the last "
        f"1x1 conv too), m chosen so MACs are closest to the budget; trained from scratch on the task data for "
        f"{run['scratch_epochs']} epochs (= {run['base_epochs']} base fine-tune + {run['compress_epochs']} compress) "
        f"and {run['scratch_factor'] * run['scratch_epochs']} epochs (Adam lr {run['scratch_lr']}, cosine), BN "
        "re-estimated.",
        f"- **tfmot**: the task base, `prune_low_magnitude` to sparsity 1 - budget (polynomial decay over the first "
        f"70% of {run['compress_epochs']} epochs, Adam lr {run['tfmot_lr']}, cosine), stripped, weights loaded "
        "back into the Keras 3 model, BN re-estimated. Its params/MACs columns show non-zero weights and "
        "density-weighted MACs; it executes the base's dense MACs.",
        f"- Accuracy cells: mean ± std over seeds (n) of test accuracy in %. Latency: LiteRT float32, batch 1, "
        f"1 thread, seed-0 models of a task and its task base round-robin in one loop ({run['latency_rounds']} "
        "rounds); *CPU ms* is the thread's CPU time (robust to other processes on this shared machine). "
        "*s/run*: wall seconds of the method's work on the task (compress: the whole call; compact: its task "
        "fine-tune, its pretraining on the source is shared by every task and seed and is in the JSON); "
        "runs shared the 2 cores with other processes, so compare them as ratios within one table.",
        "",
        "## Test accuracy (%)",
        "",
        "| method | " + " | ".join(f"{t} {int(round(100 * b))}%" for t, b in cols) + " |",
        "|---|" + "---:|" * len(cols),
    ]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for meth in methods:
        cells = []
        for t, b in cols:
            r = next((r for r in rows if r["task"] == t and r["method"] == meth
                      and (meth == "base" or abs(r["budget"] - b) < 1e-9)), None)
            cells.append(_cell(r["accuracy_mean"], r["accuracy_std"], r["n"]) if r else "")
        lines.append(f"| {meth} | " + " | ".join(cells) + " |")
    lines += ["", "(`base` is the unpruned task base, repeated in every budget column.)", "",
              "## Size and latency (params/MACs: mean over seeds; latency: seed 0)", "",
              "| task | method | budget | params | MACs (M) | MACs % | median ms | CPU ms | speed-up (median) "
              "| speed-up (CPU) | most accurate round % (its MACs %) | s/run |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ma = ""
        if r.get("most_accurate_mean") is not None:
            ma = (f"{_cell(r['most_accurate_mean'], r['most_accurate_std'], r['n'])} "
                  f"({100 * r['most_accurate_macs'] / (r['macs'] / r['macs_ratio']):.0f}%)")
        macs_note = f"{r['macs'] / 1e6:.3f}"
        if r["method"] == "tfmot":
            macs_note += f" (exec. {r['executed_macs'] / 1e6:.3f})"
        lines.append(
            f"| {r['task']} | {r['method']} | {int(round(100 * r['budget']))}% | {r['params']:,.0f} | {macs_note} | "
            f"{100 * (r['macs_ratio'] or 0):.1f} | {_f(r['latency_median_ms'])} | {_f(r['latency_cpu_ms'])} | "
            f"{_f(r['speedup_median'], 2)} | {_f(r['speedup_cpu'], 2)} | {ma} | {r['seconds_mean']:.0f} |")
    lines += ["", "## What this shows", ""]
    lines += conclusions(rows, sel, run)
    lines += [f"- {note}" for note in payload.get("notes", [])]
    if payload.get("failed"):
        lines.append(f"- Failed or missing runs: {', '.join(payload['failed'])}.")
    if payload.get("tfmot_note"):
        lines.append(f"- tfmot: {payload['tfmot_note']}")
    lines += ["", f"![accuracy vs MACs]({path.with_suffix('.png').name})", ""]
    path.write_text("\n".join(lines) + "\n")


def conv_widths(done: dict[str, dict], base_paths: dict[str, Path], methods: set[str]) -> dict[str, Any]:
    """Per task and budget: the output channels of every Conv2D of the seed-0 task base, the
    compact net and each compressed model of ``methods`` (by layer name), to find bottlenecks."""
    import keras

    out: dict[str, Any] = {}
    for task, base_path in base_paths.items():
        if not base_path.exists():
            continue
        base = keras.models.load_model(base_path)
        names = [la.name for la in base.layers if isinstance(la, keras.layers.Conv2D)
                 and not isinstance(la, keras.layers.DepthwiseConv2D)]
        widths = {"base": {n: int(base.get_layer(n).filters) for n in names}}
        for _, r in sorted(done.items()):
            if (r["task"] != task or r["seed"] != 0 or r["method"] not in methods or not r.get("keras")
                    or not Path(r["keras"]).exists()):
                continue
            model = keras.models.load_model(r["keras"])
            have = {la.name: la for la in model.layers}
            widths[f"{r['method']}@{int(round(100 * r['budget']))}"] = {
                n: int(have[n].filters) for n in names if n in have}
            keras.backend.clear_session()
        out[task] = {"layers": names, "widths": widths}
    return out


def write_widths(widths: dict[str, Any], md: Path, png: Path) -> None:
    """The width comparison as a markdown section appended to ``md`` and a PNG."""
    if not widths:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = ["", "## Widths left by pruning vs the compact net (seed 0, Conv2D output channels)", ""]
    fig, axes = plt.subplots(len(widths), 1, figsize=(12, 3.6 * len(widths)), squeeze=False)
    for ax, (task, w) in zip(axes[:, 0], widths.items(), strict=True):
        cols = [c for c in w["widths"] if c != "base"]
        lines += [f"### {task}", "", "| layer | base | " + " | ".join(cols) + " |",
                  "|---|---:|" + "---:|" * len(cols)]
        for n in w["layers"]:
            lines.append(f"| {n} | {w['widths']['base'][n]} | "
                         + " | ".join(str(w["widths"][c].get(n, "")) for c in cols) + " |")
        lines.append("")
        x = np.arange(len(w["layers"]))
        for c in cols:
            frac = [w["widths"][c].get(n, np.nan) / w["widths"]["base"][n] for n in w["layers"]]
            ax.plot(x, frac, marker="o", ms=3, lw=1.2, ls="--" if c.startswith("compact") else "-", label=c)
        ax.set_xticks(x, [n.replace("block_", "b").replace("_project", "_prj").replace("_expand", "_exp")
                          for n in w["layers"]], rotation=90, fontsize=6)
        ax.set_ylabel("width / base width")
        ax.set_yscale("log")
        ax.set_title(f"{task}: Conv2D widths kept (seed 0)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, ncol=4)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    plt.close(fig)
    with open(md, "a") as f:
        f.write("\n".join(lines + [f"![widths]({png.name})", ""]))


def write_plot(payload: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, sel = payload["rows"], payload["selection"]
    tasks = sel["tasks"]
    fig, axes = plt.subplots(1, len(tasks), figsize=(6.5 * len(tasks), 5.2), squeeze=False)
    methods = [m for m in dict.fromkeys(r["method"] for r in rows) if m != "base"]
    cmap = plt.get_cmap("tab10" if len(methods) <= 10 else "tab20")
    colors = {m: cmap(i) for i, m in enumerate(methods)}
    dflt = default_criterion(payload["run_settings"])
    for ax, task in zip(axes[0], tasks, strict=True):
        for m in methods:
            pts = sorted((r for r in rows if r["task"] == task and r["method"] == m), key=lambda r: r["macs"])
            if not pts:
                continue
            xs = [r["macs"] / 1e6 for r in pts]
            ys = [100 * r["accuracy_mean"] for r in pts]
            err = [100 * (r["accuracy_std"] or 0) for r in pts]
            style = {"marker": "o", "lw": 2.4 if m == dflt else 1.2, "ms": 5,
                     "ls": "--" if m in BASELINES else "-"}
            label = f"{m} (compress default)" if m == dflt else m
            ax.errorbar(xs, ys, yerr=err, color=colors[m], label=label, capsize=2, **style)
        base = next((r for r in rows if r["task"] == task and r["method"] == "base"), None)
        if base:
            ax.errorbar([base["macs"] / 1e6], [100 * base["accuracy_mean"]], yerr=[100 * (base["accuracy_std"] or 0)],
                        fmt="k*", ms=13, capsize=2, label="task base")
        ax.set_xscale("log")
        ax.set_xlabel("MACs per image (M, log; tfmot at density-weighted MACs)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{task}: {'/'.join(TASKS[task]['names'])}")
        ax.grid(alpha=0.3, which="both")
    axes[0][-1].legend(fontsize=8, loc="best")
    m = payload["machine"]
    fig.suptitle(f"Task specialisation from a MobileNetV2-0.35 generalist ({payload['mode']}; mean ± std over seeds) · "
                 f"{m['cpu']} · TF {m['tensorflow']} · {m['date']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- main


def _list(text: str | None, cast: Any = str) -> list | None:
    return None if text is None else [cast(t) for t in text.split(",") if t.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="1 task, 1 seed, 25%% MACs, gpp + l1, baselines")
    g.add_argument("--full", action="store_true", help="the full protocol (default)")
    g.add_argument("--tiny", action="store_true", help="a minutes-long smoke run (tiny generalist and data)")
    parser.add_argument("--settings", choices=["full", "defaults"], default="full",
                        help="run settings: 'full' (the older protocol: 2 rounds x 2 epochs, push carved out of "
                             "them) or 'defaults' (compress's own rounds and epochs; push on top)")
    parser.add_argument("--seeds", type=int, help="seeds per cell (0..n-1)")
    parser.add_argument("--budgets", help="comma-separated MACs fractions, e.g. 0.5,0.25,0.1")
    parser.add_argument("--criteria", help=f"comma-separated subset of {','.join(CRITERIA)}")
    parser.add_argument("--tasks", help=f"comma-separated subset of {','.join(TASKS)}")
    parser.add_argument("--baselines", help=f"comma-separated subset of {','.join(BASELINES)} (base is always run)")
    parser.add_argument("--rounds", type=int, help="compress rounds (default: compress's default)")
    parser.add_argument("--push-epochs", type=int, help="push epochs per round (default: compress's default)")
    parser.add_argument("--finetune-epochs", type=int, help="fine-tune epochs per round (default: compress's)")
    parser.add_argument("--base-epochs", type=int, help="task base fine-tuning epochs")
    parser.add_argument("--threads", type=int, default=1, help="TensorFlow intra- and inter-op threads (default 1)")
    parser.add_argument("--out", type=Path, help="output directory (default benchmarks/results)")
    parser.add_argument("--stem", help="output file name without extension (default specialize[_<mode>])")
    parser.add_argument("--cache", type=Path, help="runs, models (default benchmarks/cache/specialize_<mode>)")
    parser.add_argument("--generalist-cache", type=Path, default=Path.home() / ".cache" / "tf_gpp" / "specialize",
                        help="where the trained generalist is cached")
    parser.add_argument("--tfmot-site", default=os.environ.get("TF_GPP_TFMOT_SITE")
                        or (str(Path.home() / ".cache/tf_gpp/tfmot_site")
                            if (Path.home() / ".cache/tf_gpp/tfmot_site").is_dir() else None),
                        help="directory holding tf_keras and tensorflow_model_optimization (pip install --target)")
    parser.add_argument("--report-only", action="store_true", help="write the outputs from the finished runs")
    parser.add_argument("--no-latency", action="store_true", help="skip the LiteRT latency loop")
    parser.add_argument("--default-row", choices=list(CRITERIA),
                        help="the row that is compress's default recipe at this commit (default: the criterion "
                             "matching compress's importance and push)")
    parser.add_argument("--widths", action="store_true",
                        help="append the per-layer widths of the seed-0 models (compressed vs compact) to the report")
    parser.add_argument("--note", action="append", default=[], help="a line added to the .md conclusions")
    parser.add_argument("--tfmot-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.tfmot_worker:
        return tfmot_worker(Path(args.tfmot_worker))

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    set_threads(args.threads)
    mode = "quick" if args.quick else "tiny" if args.tiny else "full"
    sel = dict(SELECTION[mode])
    if args.seeds:
        sel["seeds"] = args.seeds
    for name, cast in (("budgets", float), ("criteria", str), ("tasks", str), ("baselines", str)):
        value = _list(getattr(args, name), cast)
        if value is not None:
            sel[name] = value
    for name, known in (("criteria", CRITERIA), ("tasks", TASKS), ("baselines", BASELINES)):
        unknown = set(sel[name]) - set(known)
        if unknown:
            parser.error(f"unknown {name} {sorted(unknown)}; choose from {', '.join(known)}")
    settings = "tiny" if mode == "tiny" else args.settings
    raw = dict(RUN_SETTINGS[settings])
    for name in ("rounds", "push_epochs", "finetune_epochs", "base_epochs"):
        if getattr(args, name) is not None:
            raw[name] = getattr(args, name)
    run = resolved_settings(raw)
    if args.default_row:
        run["default_row"] = args.default_row
    gen_recipe = GENERALIST_RECIPES[run["generalist"]]
    run["generalist_key"] = _key(gen_recipe)
    cache = args.cache or REPO / "benchmarks" / "cache" / f"specialize_{settings}"
    out = args.out or REPO / "benchmarks" / "results"
    stem = args.stem or ("specialize" if (mode == "full" or args.out) else f"specialize_{mode}")
    cache.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    started, load_start = time.time(), os.getloadavg()

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')} {time.time() - started:7.1f}s] {msg}", flush=True)

    log(f"mode {mode}; selection {sel}; settings {run}; threads {args.threads}")
    runner = Runner(args, run, cache, log)
    gen_path, gen_info = ensure_generalist(args.generalist_cache, gen_recipe,
                                           runner.fm if not generalist_paths(args.generalist_cache, gen_recipe)[1].exists()
                                           else {}, log)
    jobs = runner.jobs(sel)
    failed: list[str] = []
    if not args.report_only:
        failed = runner.execute(jobs, gen_path)
    missing = [j["id"] for j in jobs if j["id"] not in runner.done]
    latency = {} if args.no_latency else measure_latency(runner.done, run, log)
    rows = aggregate(runner.done, sel, latency)
    from _report import machine_info, write_atomic

    tfmot_note = None
    if "tfmot" in sel["baselines"] and not any(r["method"] == "tfmot" for r in rows):
        tfmot_note = ("no tfmot run finished on this stack (tf_keras + tensorflow-model-optimization in "
                      f"{args.tfmot_site or 'the environment'}); see the log")
    payload = {
        "mode": mode,
        "command": "python tools/benchmark_specialize.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "selection": sel, "run_settings": run, "compress_defaults": compress_defaults(),
        "threads": args.threads, "machine": machine_info(), "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(), "elapsed_s": time.time() - started,
        "sum_run_seconds": sum(runner.done[j["id"]]["wall_seconds"] for j in jobs if j["id"] in runner.done),
        "generalist": gen_info, "tasks": {t: TASKS[t] for t in sel["tasks"]},
        "rows": rows, "latency": latency,
        "runs": [runner.done[j["id"]] for j in jobs if j["id"] in runner.done],
        "failed": sorted(set(failed) | set(missing)), "notes": args.note, "tfmot_note": tfmot_note,
        "results_file": str(runner.results_file),
    }
    write_atomic(out / f"{stem}.json", json.dumps(payload, indent=2, default=str))
    write_markdown(payload, out / f"{stem}.md")
    write_plot(payload, out / f"{stem}.png")
    if args.widths:
        write_widths(conv_widths(runner.done, {t: runner.base_path(t, 0) for t in sel["tasks"]},
                                 set(sel["criteria"]) | set(sel["baselines"]) - {"base"}),
                     out / f"{stem}.md", out / f"{stem}_widths.png")
    log(f"wrote {out / stem}.json/.md/.png ({len(payload['runs'])} runs, {len(payload['failed'])} missing)")
    return 0 if not payload["failed"] else 1


if __name__ == "__main__":
    sys.exit(main())
