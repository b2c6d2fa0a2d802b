"""MultiWorkerMirroredStrategy: the discriminant statistics equal one device's.

Each run happens in fresh interpreters (a strategy's cluster is fixed at start-up) under a
timeout; a run that hangs or finds the collective ops unsupported here is skipped, not failed.
Two workers run on localhost with a TF_CONFIG each, as on two machines (docs/distributed.md).
Push training (``model.fit``) is not run here: Keras 3's ``fit`` fails under a multi-worker
strategy with TF 2.21 (keras-team/keras#20585), for plain Keras models too.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

WORKER = r"""
import json
import numpy as np
import tensorflow as tf
import keras
from tf_gpp.discriminant import ScatterStats

strategy = tf.distribute.MultiWorkerMirroredStrategy()
rng = np.random.default_rng(0)
n, c = 203, 5  # odd size: the last global batch splits unevenly
x = (rng.normal(size=(n, 8)) + 50.0).astype("float32")
y = rng.integers(0, c, n)
with strategy.scope():
    keras.utils.set_random_seed(0)
    inp = keras.Input((8,))
    model = keras.Model(inp, keras.layers.Dense(6, activation="relu")(inp))
ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(40)
dist = ScatterStats.accumulate(model, ds, c, strategy=strategy)
single = ScatterStats.accumulate(model, ds, c)
ref = ScatterStats.from_arrays(np.asarray(model(x)), y, c)
scale = float(np.abs(single.Sw).max())
out = {
    "replicas": strategy.num_replicas_in_sync,
    "samples": dist.num_samples,
    "counts_equal": bool((dist.counts == single.counts).all()),
    "sw": float(np.abs(dist.Sw - single.Sw).max()) / scale,
    "sw_ref": float(np.abs(dist.Sw - ref.Sw).max()) / scale,
    "means": float(np.abs(dist.means - single.means).max()),
    "sb": float(np.abs(dist.Sb - single.Sb).max()) / float(np.abs(single.Sb).max()),
}
print(json.dumps(out))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return int(s.getsockname()[1])


def _run_workers(tf_configs: list[dict | None], timeout: float = 240) -> list[dict]:
    procs = []
    for cfg in tf_configs:
        env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
        env.pop("TF_CONFIG", None)
        if cfg is not None:
            env["TF_CONFIG"] = json.dumps(cfg)
        procs.append(subprocess.Popen([sys.executable, "-c", WORKER], env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            if p.returncode != 0:
                if "UNIMPLEMENTED" in err or "not supported" in err.lower():
                    pytest.skip(f"MultiWorkerMirroredStrategy unsupported here: {err.strip().splitlines()[-1]}")
                pytest.fail(f"worker exited with {p.returncode}:\n{err[-3000:]}")
            results.append(json.loads(out.strip().splitlines()[-1]))
    except subprocess.TimeoutExpired:
        pytest.skip(f"MultiWorkerMirroredStrategy did not finish within {timeout:.0f} s here (hang?)")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return results


def _assert_equal_to_one_device(out: dict, replicas: int) -> None:
    assert out["replicas"] == replicas
    assert out["samples"] == 203 and out["counts_equal"]
    assert out["sw"] < 1e-6 and out["sw_ref"] < 1e-5
    assert out["means"] < 1e-4
    assert out["sb"] < 1e-6


def test_single_worker_without_tf_config():
    (out,) = _run_workers([None])
    _assert_equal_to_one_device(out, replicas=1)


def test_two_workers_on_localhost():
    ports = [_free_port(), _free_port()]
    cluster = {"worker": [f"localhost:{p}" for p in ports]}
    outs = _run_workers([{"cluster": cluster, "task": {"type": "worker", "index": i}} for i in range(2)])
    for out in outs:  # every worker ends with the statistics of the whole dataset
        _assert_equal_to_one_device(out, replicas=2)
