"""MirroredStrategy over 2 logical CPUs: same statistics as one device; PushModel trains.

Logical devices must be configured before TensorFlow initialises its devices,
so the checks run in one fresh interpreter and report back as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import json
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)
import keras
from tf_gpp.discriminant import ScatterStats

rng = np.random.default_rng(0)
n, c = 203, 5  # odd size: the last global batch splits unevenly
x = (rng.normal(size=(n, 8)) + 50.0).astype("float32")
y = rng.integers(0, c, n)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    keras.utils.set_random_seed(0)
    inp = keras.Input((8,))
    model = keras.Model(inp, keras.layers.Dense(6, activation="relu")(inp))
ds = tf.data.Dataset.from_tensor_slices((x, np.eye(c)[y])).batch(40)
dist = ScatterStats.accumulate(model, ds, c, strategy=strategy)
single = ScatterStats.accumulate(model, ds, c)
ref = ScatterStats.from_arrays(np.asarray(model(x)), y, c)
scale = float(np.abs(ref.Sw).max())

from tf_gpp.push import PushModel

with strategy.scope():
    clf = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(6, activation="relu"), keras.layers.Dense(c)]
    )
    pm = PushModel(clf)
    pm.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
recomputed = []
_features = pm.features
def _counting(*args, **kwargs):  # traced once by Keras' shape-only symbolic build
    recomputed.append(1)
    return _features(*args, **kwargs)
pm.features = _counting
hist = pm.fit(x, y, epochs=1, batch_size=32, verbose=0).history
print(json.dumps({
    "recomputed": len(recomputed),
    "push_finite": bool(all(np.isfinite(hist[k]).all() for k in ("loss", "push_sep", "push_cov", "push_align"))),
    "replicas": strategy.num_replicas_in_sync,
    "counts_equal": bool((dist.counts == single.counts).all()),
    "sw": float(np.abs(dist.Sw - single.Sw).max()) / scale,
    "sw_ref": float(np.abs(dist.Sw - ref.Sw).max()) / scale,
    "means": float(np.abs(dist.means - single.means).max()),
    "sb": float(np.abs(dist.Sb - single.Sb).max()) / float(np.abs(single.Sb).max()),
}))
"""


def test_mirrored_strategy_matches_single_device():
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root), TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2
    assert out["counts_equal"]
    assert out["sw"] < 1e-6 and out["sw_ref"] < 1e-5
    assert out["means"] < 1e-4
    assert out["sb"] < 1e-6
    assert out["push_finite"]
    assert out["recomputed"] <= 1  # each replica's loss reused its own forward pass
