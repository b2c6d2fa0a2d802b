"""Write — and with ``--execute`` run — the notebooks in ``notebooks/`` from the cells below.

    python tools/make_notebooks.py              # write the sources (keeps stored outputs when unchanged)
    python tools/make_notebooks.py --execute    # run every notebook in full and store it with its outputs
    python tools/make_notebooks.py --execute --only prune_in_fit --quick   # QUICK mode, for checking

Executed notebooks are stored small and diff-friendly: deterministic cell ids, no timing or
kernel-specific metadata, figures as low-DPI PNGs. Each notebook reads
``TF_GPP_NOTEBOOK_QUICK=1`` in its first cell (tiny data, well under a minute: CI runs that).
Run with ``TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1`` on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat as nbf

ROOT = Path(__file__).resolve().parent.parent / "notebooks"
QUICK_ENV = "TF_GPP_NOTEBOOK_QUICK"

SETUP = (
    "import os\nimport time\n\n"
    "T0 = time.perf_counter()\n"
    f"QUICK = os.environ.get({QUICK_ENV!r}, '0') == '1'  # CI sets it: tiny data, well under a minute\n"
    "os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')\n\n"
    "import keras\nimport matplotlib.pyplot as plt\nimport numpy as np\n\nimport tf_gpp\n\n"
    "%matplotlib inline\n"
    "plt.rcParams.update({'figure.dpi': 64, 'figure.figsize': (7, 3)})\n"
    "keras.utils.set_random_seed(0)\n"
)
ELAPSED = "print(f\"notebook ran in {time.perf_counter() - T0:.0f} s ({'QUICK' if QUICK else 'full'} mode)\")"
LOSS = "keras.losses.SparseCategoricalCrossentropy(from_logits=True)"

QUICKSTART = [
    ("md", "# tf_gpp quickstart\n\n"
           "Grow-Push-Prune in three steps on scikit-learn's 8x8 digits (1,797 images, bundled, no "
           "download): **push** the discriminant information into few neurons while training with a "
           "plain `model.fit`, **prune** the channels that matter least (`compress`'s measured-best "
           "default: Taylor importance) and rebuild a slimmer model, **convert** it to TFLite.\n\n"
           "The full run takes a few minutes on 2 CPU cores. `TF_GPP_NOTEBOOK_QUICK=1` runs a tiny "
           "version (fewer epochs, one round) in well under a minute: the test suite runs that."),
    ("code", SETUP + "from tf_gpp.data import load_digits\n\n"
             "EPOCHS, ROUNDS, FINETUNE = (3, 1, 1) if QUICK else (24, 2, 4)\n"
             "ds = load_digits()\nprint(ds.describe())"),
    ("code", "inp = keras.Input(ds.input_shape)\n"
             "x = keras.layers.Conv2D(32, 3, padding='same', activation='relu', name='conv1')(inp)\n"
             "x = keras.layers.Conv2D(64, 3, padding='same', activation='relu', name='conv2')(x)\n"
             "x = keras.layers.GlobalAveragePooling2D(name='gap')(x)\n"
             "x = keras.layers.Dense(64, activation='relu', name='features')(x)\n"
             "model = keras.Model(inp, keras.layers.Dense(ds.num_classes, name='logits')(x))\n"
             "print(tf_gpp.profile(model))"),
    ("md", "## 1. Push while training: `PushModel` + `PushSchedule` in a plain `fit`\n"
           "The push terms (`push_sep`, `push_cov`, `push_align`) are logged in `History` next to the "
           "loss. `PushSchedule(start_epoch=...)` lets the network learn something first."),
    ("code", "pushed = tf_gpp.PushModel(model)\n"
             f"pushed.compile(keras.optimizers.Adam(3e-3), {LOSS}, metrics=['accuracy'])\n"
             "history = pushed.fit(ds.train, validation_data=ds.val, epochs=EPOCHS, verbose=0,\n"
             "                     callbacks=[tf_gpp.PushSchedule(start_epoch=EPOCHS // 3, warmup_epochs=2)])\n"
             "model = pushed.strip()  # a plain keras.Model again\n"
             "h = history.history\n"
             "print('last epoch:', {k: round(v[-1], 4) for k, v in h.items()})\n\n"
             "fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 2.8))\n"
             "a1.plot(h['accuracy'], label='train'); a1.plot(h['val_accuracy'], label='val')\n"
             "a1.set(xlabel='epoch', title='accuracy'); a1.legend()\n"
             "for k in ('push_sep', 'push_cov', 'push_align'):\n"
             "    a2.plot(h[k], label=k)\n"
             "a2.set(xlabel='epoch', title='push terms (in the loss from start_epoch)'); a2.legend(fontsize=7)\n"
             "for a in (a1, a2):\n"
             "    a.set_xticks(range(EPOCHS))\n"
             "plt.tight_layout(); plt.show()"),
    ("md", "## 2. Which channels can go together? The dependency graph\n"
           "Each group is a set of channels that must be removed together (a filter, and every layer "
           "that reads it)."),
    ("code", "for group in tf_gpp.channel_groups(model):\n    print(group)"),
    ("md", "## 3. Prune + fine-tune to 30% of the MACs\n"
           "`compress` runs rounds of scoring, rebuilding and fine-tuning (its default recipe, the best "
           "measured: Taylor importance, fine-tuning distilled from the base) until the target is reached; "
           "`result.most_accurate` is the most accurate round, and `max_accuracy_drop=0.02` would stop "
           "at the first round more than 2 points below the base instead."),
    ("code", "result = tf_gpp.compress(model, ds.train, ds.val, target_macs=0.3, rounds=ROUNDS,\n"
             "                         finetune_epochs=FINETUNE)\n"
             "print(result.summary())\nslim = result.model"),
    ("md", "## 4. Ship it: TFLite (int8), verified against Keras, timed against the base"),
    ("code", "from tf_gpp.convert import benchmark_ab, to_tflite, verify\n\n"
             "x_test, y_test = ds.as_numpy('test')\n"
             "base_file = to_tflite(model, 'digits_base.tflite')\n"
             "slim_file = to_tflite(slim, 'digits_slim_int8.tflite', quantization='int8',\n"
             "                      representative_data=ds.as_numpy('train')[0][:200])\n"
             "print(verify(slim_file, slim, x_test, y_test))\n"
             "print(f'size: {os.path.getsize(base_file) / 1024:.1f} KB (float32 base) -> '\n"
             "      f'{os.path.getsize(slim_file) / 1024:.1f} KB (int8 slim)')\n"
             "print(benchmark_ab(base_file, slim_file, rounds=20 if QUICK else 100))"),
    ("code", ELAPSED),
]

FASHION = [
    ("md", "# Grow-Push-Prune on Fashion-MNIST\n\n"
           "A base CNN, pruned with `tf_gpp.compress`'s default recipe, then converted to int8 TFLite.\n\n"
           "**Small data:** the default uses 6,000 of the 60,000 training images and 5 base epochs so "
           "that it runs in a few minutes on 2 CPU cores; set `LIMIT = None` for all of them (about an "
           "hour). `TF_GPP_NOTEBOOK_QUICK=1` runs a tiny version in well under a minute (CI).\n\n"
           "The data comes from Debian's `dataset-fashion-mnist` when installed, else from the Keras "
           "cache or a download."),
    ("code", SETUP + "from tf_gpp.data import load_fashion_mnist\nfrom tf_gpp.demo import base_cnn\n\n"
             "LIMIT, EPOCHS, ROUNDS = (1000, 1, 1) if QUICK else (6000, 5, 2)\n"
             "ds = load_fashion_mnist(limit=LIMIT)\nprint(ds.describe())"),
    ("code", "model = base_cnn(ds.input_shape, ds.num_classes)\n"
             f"model.compile(keras.optimizers.Adam(2e-3), {LOSS},\n"
             "              metrics=['accuracy'])\n"
             "h = model.fit(ds.train, validation_data=ds.val, epochs=EPOCHS, verbose=0).history\n"
             "print('val accuracy per epoch:', [round(a, 4) for a in h['val_accuracy']])\n"
             "print(tf_gpp.profile(model))"),
    ("md", "## Compress to 25% of the MACs\n"
           "Two rounds of prune + fine-tune, the fine-tuning distilled from the base model (compress's "
           "defaults). "
           "With `checkpoint_dir`, an interrupted run resumes from the last finished round."),
    ("code", "result = tf_gpp.compress(model, ds.train, ds.val, target_macs=0.25, rounds=ROUNDS,\n"
             "                         finetune_epochs=1 if QUICK else 4,\n"
             "                         checkpoint_dir='fmnist_rounds')\n"
             "print(result.summary())"),
    ("md", "## The report\n"
           "Accuracy against MACs over the rounds, the width of every layer before and after, and the "
           "final-layer features projected on their two main discriminant directions (LDA), of the base "
           "and of the compressed model."),
    ("code", "from PIL import Image\n\nfrom tf_gpp.report import plot_report\n\n"
             "x_test, y_test = ds.as_numpy('test')\n"
             "png = plot_report('fmnist_report.png', result.to_dict(), model, result.model, result.pushed_model,\n"
             "                  (x_test[:1500], y_test[:1500]))\n"
             "im = Image.open(png).convert('RGB')\nim.thumbnail((720, 720))\nim.quantize(64)  # stored small: 64 colours"),
    ("md", "## int8 TFLite, verified on the test images"),
    ("code", "from tf_gpp.convert import benchmark_ab, to_tflite, verify\n\n"
             "base_file = to_tflite(model, 'fmnist_base.tflite')\n"
             "path = to_tflite(result.model, 'fmnist_slim_int8.tflite', quantization='int8',\n"
             "                 representative_data=ds.as_numpy('train')[0][:300])\n"
             "print(verify(path, result.model, x_test, y_test))\n"
             "print(f'size: {os.path.getsize(base_file) / 1024:.1f} KB (float32 base) -> '\n"
             "      f'{os.path.getsize(path) / 1024:.1f} KB (int8 slim)')\n"
             "print(benchmark_ab(base_file, path, rounds=20 if QUICK else 100))"),
    ("code", ELAPSED),
]

TRANSFER = [
    ("md", "# Transfer learning: compress a model with a nested `keras.applications` backbone\n\n"
           "The everyday Keras pattern: a `MobileNetV2` backbone *nested* inside your model, a new head "
           "on top, the backbone frozen while the head trains. tf_gpp looks through the nested model: "
           "`profile` counts the backbone's MACs, `channel_groups` finds the prunable channels inside "
           "it, and `compress` prunes them and returns one flat functional model.\n\n"
           "**No pretrained weights here.** This notebook was run on a machine without internet "
           "access, so the backbone is built with `weights=None` and a short training run on the task "
           "stands in for ImageNet weights. With network access, use `weights='imagenet'` and skip that "
           "step. Accuracy figures below are therefore those of a briefly trained small net, not of a "
           "real transfer-learning run.\n\n"
           "**Small data:** 2,000 Fashion-MNIST images (28x28 grey, padded to 32x32 and repeated to 3 "
           "channels) and a few epochs, so the notebook runs in a few minutes on 2 CPU cores. "
           "`TF_GPP_NOTEBOOK_QUICK=1` runs a tiny version in well under a minute (CI)."),
    ("code", SETUP + "import warnings\n\nfrom tf_gpp.data import load_fashion_mnist\n\n"
             "LIMIT, EPOCHS, ROUNDS = (300, 1, 1) if QUICK else (2000, 3, 2)\n"
             "ds = load_fashion_mnist(limit=LIMIT, validation_split=0.0)\n\n\n"
             "def rgb32(x: np.ndarray) -> np.ndarray:\n"
             "    \"\"\"28x28x1 -> 32x32x3, the smallest input MobileNetV2 accepts.\"\"\"\n"
             "    return np.repeat(np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0))), 3, axis=-1)\n\n\n"
             "x_train, y_train = ds.as_numpy('train')\nx_test, y_test = ds.as_numpy('test')\n"
             "x_train, x_test = rgb32(x_train), rgb32(x_test)\n"
             "print(ds.describe())\nprint('train', x_train.shape, 'test', x_test.shape)"),
    ("md", "## The model: a nested MobileNetV2 backbone and a new head"),
    ("code", "backbone = keras.applications.MobileNetV2(alpha=0.35, weights=None, include_top=False,\n"
             "                                          input_shape=(32, 32, 3))\n"
             "model = keras.Sequential([keras.Input((32, 32, 3)), backbone,\n"
             "                          keras.layers.GlobalAveragePooling2D(name='gap'),\n"
             "                          keras.layers.Dense(ds.num_classes, name='logits')], name='transfer')\n"
             "print([f'{layer.name} ({type(layer).__name__})' for layer in model.layers])"),
    ("md", "## `profile` counts the backbone\n"
           "The model has four layers at the top level; the backbone is one of them. `profile` prices "
           "the layers inside it (before, a nested model counted 0 MACs)."),
    ("code", "base_profile = tf_gpp.profile(model)\n"
             "inside = {layer.name for layer in backbone.layers}\n"
             "backbone_macs = sum(r.macs for r in base_profile.layers if r.name in inside)\n"
             "print(f'{base_profile.macs:,} MACs per image, {base_profile.params:,} params')\n"
             "print(f'of which the backbone: {backbone_macs:,} MACs ({100 * backbone_macs / base_profile.macs:.1f}%)')\n"
             "print('layers without a cost rule:', base_profile.unpriced_warning() or 'none')"),
    ("md", "## `channel_groups` sees through the nested backbone\n"
           "Every expansion layer of an inverted-residual block is a prunable group (the expand conv, its "
           "BatchNorm and the depthwise conv follow). Channels on the residual path are coupled by the "
           "`Add` layers and form one group each."),
    ("code", "groups = tf_gpp.channel_groups(model)\n"
             "in_backbone = [g for g in groups if set(g.producers) & inside]\n"
             "print(f'{len(groups)} prunable groups, {len(in_backbone)} of them inside the backbone')\n"
             "for g in in_backbone[:4]:\n"
             "    print(f'  size {g.size:>4}: {g.producers} -> {g.consumers[:3]}...')"),
    ("md", "## Stand-in for pretrained weights: a short training run\n"
           "MobileNetV2's BatchNorm layers use momentum 0.999: after a few hundred steps their moving "
           "statistics are still close to their initial values, and the model evaluates near chance "
           "level although it trains fine. `tf_gpp.recalibrate_batchnorm` re-estimates them on training "
           "data (no weight changes). `compress` does the same after every rebuild."),
    ("code", f"model.compile(keras.optimizers.Adam(2e-3), {LOSS}, metrics=['accuracy'])\n"
             "h = model.fit(x_train, y_train, epochs=EPOCHS, batch_size=64, verbose=0).history\n"
             "print('train accuracy per epoch:', [round(a, 3) for a in h['accuracy']])\n"
             "print(f\"test accuracy, stale BN statistics: {model.evaluate(x_test, y_test, verbose=0)[1]:.4f}\")\n"
             "tf_gpp.recalibrate_batchnorm(model, x_train)\n"
             "print(f\"test accuracy, BN re-estimated:     {model.evaluate(x_test, y_test, verbose=0)[1]:.4f}\")"),
    ("md", "## The transfer-learning habit: freeze the backbone, train the head"),
    ("code", "backbone.trainable = False\n"
             f"model.compile(keras.optimizers.Adam(1e-3), {LOSS}, metrics=['accuracy'])\n"
             "model.fit(x_train, y_train, epochs=1, batch_size=64, verbose=0)\n"
             "base_accuracy = model.evaluate(x_test, y_test, verbose=0)[1]\n"
             "print(f'test accuracy {base_accuracy:.4f}; trainable weights: {len(model.trainable_weights)} '\n"
             "      f'(head only), frozen: {len(model.non_trainable_weights)}')"),
    ("md", "## Compress to half the MACs\n"
           "`compress` takes arrays the way `fit` does (`x, y, validation_split=...`). The backbone is "
           "frozen, and a frozen layer cannot recover from pruning during the fine-tuning between rounds. "
           "The next cell prints every warning `compress` gives and how many layers of the result are "
           "still frozen."),
    ("code", "with warnings.catch_warnings(record=True) as caught:\n"
             "    warnings.simplefilter('always')\n"
             "    result = tf_gpp.compress(model, x_train, y_train, validation_split=0.15, target_macs=0.5,\n"
             "                             rounds=ROUNDS, finetune_epochs=2)\n"
             "print(result.summary())\n"
             "for w in caught:\n"
             "    if 'tf_gpp' in w.filename or 'frozen' in str(w.message).lower():\n"
             "        print(f'{w.category.__name__}: {w.message}')\n"
             "slim = result.model\n"
             "frozen = [layer.name for layer in slim.layers if layer.weights and not layer.trainable]\n"
             "print(f'result: {len(slim.layers)} layers, flat (no nested model: '\n"
             "      f'{not any(isinstance(layer, keras.Model) for layer in slim.layers)}); '\n"
             "      f'{len(frozen)} layers with weights still frozen')"),
    ("md", "## Before and after: cost, accuracy, per-layer widths"),
    ("code", "slim_profile = tf_gpp.profile(slim)\n"
             f"slim.compile(loss={LOSS}, metrics=['accuracy'])\n"
             "slim_accuracy = slim.evaluate(x_test, y_test, verbose=0)[1]\n"
             "print(f\"{'':>6} {'MACs':>12} {'params':>10} {'test acc':>9}\")\n"
             "print(f\"{'base':>6} {base_profile.macs:>12,} {base_profile.params:>10,} {base_accuracy:>9.4f}\")\n"
             "print(f\"{'slim':>6} {slim_profile.macs:>12,} {slim_profile.params:>10,} {slim_accuracy:>9.4f}\")\n\n"
             "flat = tf_gpp.flatten_model(model)  # the base with the backbone inlined: same layer names\n"
             "width = {layer.name: layer.filters for layer in flat.layers if isinstance(layer, keras.layers.Conv2D)\n"
             "         and not isinstance(layer, keras.layers.DepthwiseConv2D)}\n"
             "after = {layer.name: layer.filters for layer in slim.layers if layer.name in width}\n"
             "names = [n for n in width if n in after]\n"
             "fig, ax = plt.subplots(figsize=(9, 2.8))\n"
             "ax.bar(range(len(names)), [width[n] for n in names], color='lightgray', label='base')\n"
             "ax.bar(range(len(names)), [after[n] for n in names], color='tab:blue', label='slim')\n"
             "ax.set(ylabel='filters (log scale)', yscale='log',\n"
             "       title='filters of every (non-depthwise) convolution, base vs slim')\n"
             "ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6); ax.legend()\n"
             "plt.tight_layout(); plt.show()"),
    ("md", "## TFLite: size and latency\n"
           "The float32 base, the int8 slim model and the float32 slim model, timed interleaved with "
           "LiteRT on one thread (the median of many runs; the machine was shared, so read the ratios "
           "rather than the milliseconds)."),
    ("code", "from tf_gpp.convert import benchmark_interleaved, to_tflite, verify\n\n"
             "files = {'base float32': to_tflite(model, 'tl_base.tflite'),\n"
             "         'slim int8': to_tflite(slim, 'tl_slim_int8.tflite', quantization='int8',\n"
             "                                representative_data=x_train[:200])}\n"
             "if not QUICK:  # CI skips one conversion\n"
             "    files['slim float32'] = to_tflite(slim, 'tl_slim.tflite')\n"
             "reports = benchmark_interleaved(list(files.values()), rounds=20 if QUICK else 200)\n"
             "print(f\"{'':>13} {'size KB':>8} {'median ms':>10} {'speed-up':>9}\")\n"
             "for (name, path), rep in zip(files.items(), reports):\n"
             "    print(f'{name:>13} {os.path.getsize(path) / 1024:>8.1f} {rep.median_ms:>10.3f} '\n"
             "          f'{reports[0].median_ms / rep.median_ms:>8.2f}x')\n"
             "print(verify(files['slim int8'], slim, x_test, y_test))"),
    ("code", ELAPSED),
]

PRUNE_IN_FIT = [
    ("md", "# Prune inside your own `fit`: push + prune callbacks, `strip`, TFLite int8\n\n"
           "The tfmot habit — wrap, callback, strip — but structural: whole filters go, and `strip` "
           "returns a physically smaller model. Your optimizer, loss, augmentation layers and "
           "callbacks stay yours.\n\n"
           "1. train a base model with plain `fit`;\n"
           "2. `tf_gpp.prunable(model)` adds channel masks; `tf_gpp.PushModel` adds the push terms;\n"
           "3. one `fit` with `PushSchedule` and `PruningCallback`: masks are added on a schedule, and "
           "`History` logs the MACs (`gpp_macs`) of the model `strip` will build;\n"
           "4. `tf_gpp.strip` cuts the masked units out; convert to int8 TFLite.\n\n"
           "**Small data:** 6,000 Fashion-MNIST training images and a few epochs, so it runs in a few "
           "minutes on 2 CPU cores. `TF_GPP_NOTEBOOK_QUICK=1` runs a tiny version in well under a "
           "minute (CI). The API reference is [docs/fit_api.md](../docs/fit_api.md)."),
    ("code", SETUP + "from tf_gpp.data import load_fashion_mnist\n\n"
             "LIMIT, BASE_EPOCHS, EPOCHS = (600, 1, 3) if QUICK else (6000, 5, 8)\n"
             "ds = load_fashion_mnist(limit=LIMIT)\n"
             "x_train, y_train = ds.as_numpy('train')\nx_test, y_test = ds.as_numpy('test')\n"
             "print(ds.describe())"),
    ("md", "## 1. A base model, trained with plain `fit`\n"
           "Augmentation inside the model, BatchNorm with Keras' default momentum (0.99). With this little "
           "data (85 steps per epoch) the BatchNorm moving statistics lag behind the weights: the "
           "validation accuracy of the first epochs is near chance, and the base's test accuracy below "
           "is understated (`tf_gpp.recalibrate_batchnorm(model, x_train)` would re-estimate them). "
           "`strip(data=...)` re-estimates them for the slim model: part of why it scores higher."),
    ("code", "inp = keras.Input(ds.input_shape)\n"
             "h = keras.layers.RandomTranslation(0.1, 0.1)(inp)\n"
             "for i, filters in enumerate((32, 64, 64)):\n"
             "    h = keras.layers.Conv2D(filters, 3, padding='same', use_bias=False, name=f'conv{i + 1}')(h)\n"
             "    h = keras.layers.BatchNormalization(name=f'bn{i + 1}')(h)\n"
             "    h = keras.layers.ReLU()(h)\n"
             "    if i < 2:\n"
             "        h = keras.layers.MaxPooling2D()(h)\n"
             "h = keras.layers.GlobalAveragePooling2D()(h)\n"
             "h = keras.layers.Dense(64, activation='relu', name='features')(h)\n"
             "model = keras.Model(inp, keras.layers.Dense(ds.num_classes, name='logits')(h))\n"
             f"model.compile(keras.optimizers.Adam(2e-3), {LOSS}, metrics=['accuracy'])\n"
             "h = model.fit(x_train, y_train, validation_data=ds.val, epochs=BASE_EPOCHS, batch_size=64,\n"
             "              verbose=0).history\n"
             "base_accuracy = model.evaluate(x_test, y_test, verbose=0)[1]\n"
             "base_profile = tf_gpp.profile(model)\n"
             "print('val accuracy per epoch:', [round(a, 4) for a in h['val_accuracy']])\n"
             "print(f'base: test accuracy {base_accuracy:.4f}, {base_profile.macs:,} MACs, {base_profile.params:,} params')"),
    ("md", "## 2-3. Wrap, then push and prune in one `fit`\n"
           "`PruningCallback` masks more units at the start of epochs `start_epoch` ... `end_epoch` "
           "(a geometric schedule reaching 30% of the MACs at `end_epoch`), scoring units with the "
           "discriminant utility on a few hundred un-augmented training images. The last epochs "
           "fine-tune the final architecture. Your own optimizer (SGD with momentum here) is used "
           "as it is."),
    ("code", "gated = tf_gpp.prunable(model)  # a copy with all-ones masks: computes what model computes\n"
             "pushed = tf_gpp.PushModel(gated)\n"
             f"pushed.compile(keras.optimizers.SGD(0.02, momentum=0.9), {LOSS}, metrics=['accuracy'])\n"
             "history = pushed.fit(\n"
             "    x_train, y_train, validation_data=ds.val, epochs=EPOCHS, batch_size=64, verbose=0,\n"
             "    callbacks=[tf_gpp.PushSchedule(warmup_epochs=1),\n"
             "               tf_gpp.PruningCallback(data=(x_train[:512], y_train[:512]), target_macs=0.3,\n"
             "                                      start_epoch=1, end_epoch=EPOCHS - 2)])\n"
             "h = history.history\n"
             "print(f\"{'epoch':>5} {'gpp_macs':>10} {'MACs %':>7} {'params':>8} {'units':>6} {'val acc':>8} {'push_align':>10}\")\n"
             "for e in range(EPOCHS):\n"
             "    print(f\"{e:>5} {int(h['gpp_macs'][e]):>10,} {100 * h['gpp_macs'][e] / base_profile.macs:>6.1f}% \"\n"
             "          f\"{int(h['gpp_params'][e]):>8,} {int(h['gpp_kept_units'][e]):>6} {h['val_accuracy'][e]:>8.4f} \"\n"
             "          f\"{h['push_align'][e]:>10.4f}\")"),
    ("code", "fig, ax = plt.subplots(figsize=(6, 3))\n"
             "epochs = np.arange(EPOCHS)\n"
             "ax.plot(epochs, 100 * np.array(h['gpp_macs']) / base_profile.macs, 'o-', color='tab:blue')\n"
             "ax.set(xlabel='epoch', ylabel='MACs, % of base', ylim=(0, 105), xticks=epochs)\n"
             "ax.axhline(30, ls=':', color='tab:blue')\n"
             "ax2 = ax.twinx()\n"
             "ax2.plot(epochs, 100 * np.array(h['val_accuracy']), 's--', color='tab:orange')\n"
             "ax2.set_ylabel('val accuracy %', color='tab:orange'); ax2.set_ylim(0, 100)\n"
             "ax.set_title('History: gpp_macs (blue) and val_accuracy (orange)')\n"
             "plt.tight_layout(); plt.show()"),
    ("md", "## 4. `strip`: the physically slim model\n"
           "Without data, `strip` returns exactly what the masked model computes; with data it also "
           "re-estimates the BatchNorm statistics, which were gathered while the removed units were "
           "still feeding the layers."),
    ("code", "exact = tf_gpp.strip(pushed)\n"
             "diff = np.abs(gated.predict(x_test[:256], verbose=0) - exact.predict(x_test[:256], verbose=0)).max()\n"
             "print(f'max |masked - stripped| on 256 test images: {diff:.2e}')\n"
             "slim = tf_gpp.strip(pushed, data=(x_train, y_train))\n"
             "slim_profile = tf_gpp.profile(slim)\n"
             f"slim.compile(loss={LOSS}, metrics=['accuracy'])\n"
             "slim_accuracy = slim.evaluate(x_test, y_test, verbose=0)[1]\n"
             "print({layer.name: layer.filters for layer in slim.layers if hasattr(layer, 'filters')})"),
    ("md", "## TFLite int8 and the before/after table"),
    ("code", "from tf_gpp.convert import benchmark_ab, to_tflite, verify\n\n"
             "base_file = to_tflite(model, 'fit_base.tflite')\n"
             "slim_file = to_tflite(slim, 'fit_slim_int8.tflite', quantization='int8',\n"
             "                      representative_data=x_train[:300])\n"
             "check = verify(slim_file, slim, x_test, y_test)\n"
             "ab = benchmark_ab(base_file, slim_file, rounds=20 if QUICK else 200)\n"
             "print(f\"{'':>22} {'test acc':>9} {'MACs':>11} {'params':>8} {'file KB':>8} {'median ms':>10}\")\n"
             "print(f\"{'base (Keras, float32)':>22} {base_accuracy:>9.4f} {base_profile.macs:>11,} \"\n"
             "      f\"{base_profile.params:>8,} {os.path.getsize(base_file) / 1024:>8.1f} {ab.a.median_ms:>10.3f}\")\n"
             "print(f\"{'slim (TFLite int8)':>22} {check.tflite_accuracy:>9.4f} {slim_profile.macs:>11,} \"\n"
             "      f\"{slim_profile.params:>8,} {os.path.getsize(slim_file) / 1024:>8.1f} {ab.b.median_ms:>10.3f}\")\n"
             "print(f'slim Keras float32 test accuracy {slim_accuracy:.4f}; LiteRT speed-up {ab.ratio:.2f}x '\n"
             "      '(1 thread, interleaved, shared machine)')\n"
             "print(check)"),
    ("code", ELAPSED),
]

NOTEBOOKS: dict[str, list[tuple[str, str]]] = {
    "quickstart.ipynb": QUICKSTART,
    "fashion_mnist_gpp.ipynb": FASHION,
    "transfer_learning.ipynb": TRANSFER,
    "prune_in_fit.ipynb": PRUNE_IN_FIT,
}


def build(name: str) -> nbf.NotebookNode:
    """The unexecuted notebook ``name`` with deterministic cell ids."""
    nb = nbf.v4.new_notebook()
    stem = Path(name).stem
    cells = []
    for i, (kind, source) in enumerate(NOTEBOOKS[name]):
        cell = nbf.v4.new_markdown_cell(source) if kind == "md" else nbf.v4.new_code_cell(source)
        cell.id = f"{stem}-{i:02d}"
        cells.append(cell)
    nb.cells = cells
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}}
    return nb


def sources(nb: nbf.NotebookNode) -> list[tuple[str, str]]:
    """``(cell type, source)`` of every cell: what the generator owns."""
    return [(c.cell_type, c.source) for c in nb.cells]


# Log lines of TensorFlow/absl/LiteRT and one Keras warning that say nothing about the notebook
# (and carry timestamps and process ids, so every run would change them).
NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog"
    r"|[IWE]\d{4} [\d:.]+ +\d+ \S+\.cc:\d+\]"
    r"|INFO:tensorflow:Assets written to"
    r"|INFO: Created TensorFlow Lite XNNPACK delegate"
    r"|.*UserWarning: `shuffle=True` was passed, but will be ignored)"
)
WARNING_SOURCE = re.compile(r"^\s+\S.*")  # the source line Python prints under a warning


def _quiet(text: str) -> str:
    kept: list[str] = []
    skip_source = False
    for line in text.splitlines(keepends=True):
        if NOISE.match(line):
            skip_source = "Warning:" in line
            continue
        if skip_source and WARNING_SOURCE.match(line):
            skip_source = False
            continue
        skip_source = False
        kept.append(line)
    return "".join(kept)


def clean(nb: nbf.NotebookNode) -> nbf.NotebookNode:
    """Drop volatile metadata (timings, kernel ids, versions) and log noise so diffs show real changes."""
    nb.metadata = {"kernelspec": nb.metadata.get("kernelspec", {}), "language_info": {"name": "python"}}
    for cell in nb.cells:
        cell.metadata = {}
        if cell.cell_type != "code":
            continue
        outputs = []
        for out in cell.outputs:
            if out.output_type == "stream":
                out.text = _quiet(out.text)
                if not out.text.strip():
                    continue
            if "metadata" in out:
                out.metadata = {}
            outputs.append(out)
        cell.outputs = outputs
    return nb


def execute(nb: nbf.NotebookNode, workdir: str | os.PathLike, *, quick: bool = False,
            timeout: int = 3600) -> nbf.NotebookNode:
    """Run ``nb`` in a fresh kernel inside ``workdir`` (QUICK mode when ``quick``); raises on a cell error."""
    from nbclient import NotebookClient

    env = {"TF_CPP_MIN_LOG_LEVEL": "3", **os.environ, QUICK_ENV: "1" if quick else "0"}
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(workdir)}})
    client.execute(env=env)
    return nb


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--execute", action="store_true", help="run the notebooks and store their outputs")
    ap.add_argument("--quick", action="store_true", help="with --execute: QUICK mode (for checking)")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="notebook names (with or without .ipynb)")
    ap.add_argument("--out", type=Path, default=ROOT, help="where to write (default: notebooks/)")
    args = ap.parse_args(argv)
    names = [n if n.endswith(".ipynb") else f"{n}.ipynb" for n in (args.only or NOTEBOOKS)]
    unknown = [n for n in names if n not in NOTEBOOKS]
    if unknown:
        ap.error(f"unknown notebook(s) {unknown}; choose from {sorted(NOTEBOOKS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        nb, target = build(name), args.out / name
        if not args.execute:
            if target.exists() and sources(nbf.read(target, as_version=4)) == sources(nb):
                print(f"{target}: unchanged (outputs kept)")
                continue
            nbf.write(nb, target)
            print(f"{target}: written without outputs; run with --execute to store them")
            continue
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="tf_gpp_nb_") as work:
            execute(nb, work, quick=args.quick)
        nbf.write(clean(nb), target)
        print(f"{target}: executed{' (QUICK)' if args.quick else ''} in {time.perf_counter() - start:.0f} s, "
              f"{target.stat().st_size / 1024:.0f} KB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
