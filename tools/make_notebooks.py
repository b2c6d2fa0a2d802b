"""Write the notebooks in notebooks/ from the cells below (run after editing them)."""

from pathlib import Path

import nbformat as nbf

ROOT = Path(__file__).resolve().parent.parent / "notebooks"

QUICKSTART = [
    ("md", "# tf_gpp quickstart (scikit-learn digits, runs in ~2 minutes on 2 CPU cores)\n\n"
           "Grow-Push-Prune in three steps: **push** the discriminant information into few neurons while "
           "training with plain `model.fit`, **prune** the channels with little discriminant utility and "
           "rebuild a slimmer model, **convert** it to TFLite."),
    ("code", "import keras\nimport tf_gpp\nfrom tf_gpp.data import load_digits\n\n"
             "keras.utils.set_random_seed(0)\nds = load_digits()\nprint(ds.describe())"),
    ("code", "inp = keras.Input(ds.input_shape)\n"
             "x = keras.layers.Conv2D(32, 3, padding='same', activation='relu', name='conv1')(inp)\n"
             "x = keras.layers.Conv2D(64, 3, padding='same', activation='relu', name='conv2')(x)\n"
             "x = keras.layers.GlobalAveragePooling2D(name='gap')(x)\n"
             "x = keras.layers.Dense(64, activation='relu', name='features')(x)\n"
             "model = keras.Model(inp, keras.layers.Dense(ds.num_classes, name='logits')(x))\n"
             "print(tf_gpp.profile(model))"),
    ("md", "## 1. Push while training: `PushModel` + `PushSchedule` in a plain `fit`\n"
           "The push terms (`push_sep`, `push_cov`, `push_align`) show in the progress bar and in `History`."),
    ("code", "pushed = tf_gpp.PushModel(model)\n"
             "pushed.compile('adam', keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=['accuracy'])\n"
             "history = pushed.fit(ds.train, validation_data=ds.val, epochs=12, verbose=2,\n"
             "                     callbacks=[tf_gpp.PushSchedule(start_epoch=4, warmup_epochs=2)])\n"
             "model = pushed.strip()  # a plain keras.Model again\n"
             "print({k: round(v[-1], 4) for k, v in history.history.items()})"),
    ("md", "## 2. Which channels can go together? The dependency graph"),
    ("code", "for group in tf_gpp.channel_groups(model):\n    print(group)"),
    ("md", "## 3. Push + prune + fine-tune to 30% of the MACs"),
    ("code", "result = tf_gpp.compress(model, ds.train, ds.val, target_macs=0.3, rounds=2,\n"
             "                         push_epochs=1, finetune_epochs=3)\n"
             "print(result.summary())\nslim = result.model"),
    ("md", "## 4. Ship it: TFLite (int8), verified against Keras, timed against the base"),
    ("code", "from tf_gpp.convert import benchmark_ab, to_tflite, verify\n"
             "x_test, y_test = ds.as_numpy('test')\n"
             "base_file = to_tflite(model, 'digits_base.tflite')\n"
             "slim_file = to_tflite(slim, 'digits_slim_int8.tflite', quantization='int8',\n"
             "                      representative_data=ds.as_numpy('train')[0][:200])\n"
             "print(verify(slim_file, slim, x_test, y_test))\n"
             "print(benchmark_ab(base_file, slim_file, rounds=50))"),
]

FASHION = [
    ("md", "# Grow-Push-Prune on Fashion-MNIST\n\nA base CNN, pushed and pruned with `tf_gpp.compress`, "
           "then converted to int8 TFLite. Set `LIMIT = None` to use all 60,000 training images "
           "(about an hour on 2 CPU cores); the default uses a subset."),
    ("code", "import keras\nimport tf_gpp\nfrom tf_gpp.data import load_fashion_mnist\nfrom tf_gpp.demo import base_cnn\n\n"
             "LIMIT = 12000\nkeras.utils.set_random_seed(0)\nds = load_fashion_mnist(limit=LIMIT)\nprint(ds.describe())"),
    ("code", "model = base_cnn(ds.input_shape, ds.num_classes)\n"
             "model.compile(keras.optimizers.Adam(2e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),\n"
             "              metrics=['accuracy'])\n"
             "model.fit(ds.train, validation_data=ds.val, epochs=6, verbose=2)\nprint(tf_gpp.profile(model))"),
    ("code", "result = tf_gpp.compress(model, ds.train, ds.val, target_macs=0.25, rounds=3, push_epochs=1,\n"
             "                         finetune_epochs=2, distill=True, checkpoint_dir='fmnist_rounds')\n"
             "print(result.summary())"),
    ("code", "from tf_gpp.report import plot_report\n"
             "x_test, y_test = ds.as_numpy('test')\n"
             "png = plot_report('fmnist_report.png', result.to_dict(), model, result.model, result.pushed_model,\n"
             "                  (x_test[:1500], y_test[:1500]))\n"
             "from IPython.display import Image\nImage(str(png))"),
    ("code", "from tf_gpp.convert import to_tflite, verify\n"
             "path = to_tflite(result.model, 'fmnist_slim_int8.tflite', quantization='int8',\n"
             "                 representative_data=ds.as_numpy('train')[0][:300])\n"
             "print(verify(path, result.model, x_test, y_test))"),
]


def write(name: str, cells: list[tuple[str, str]]) -> None:
    nb = nbf.v4.new_notebook()
    nb.cells = [nbf.v4.new_markdown_cell(s) if k == "md" else nbf.v4.new_code_cell(s) for k, s in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbf.write(nb, ROOT / name)


if __name__ == "__main__":
    ROOT.mkdir(exist_ok=True)
    write("quickstart.ipynb", QUICKSTART)
    write("fashion_mnist_gpp.ipynb", FASHION)
