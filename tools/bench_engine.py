"""Engine benchmark: coverage over all 40 keras.applications models, and surgery speed.

For every model (``weights=None``): analyse, remove ~30% of every prunable
group at random, rebuild, check output shapes, MACs, and the correctness rule
(rebuilt model == original with the removed slices zeroed); convert a handful
to TFLite. Then time ``channel_groups + prune_channels`` (half of every group)
against ``keras.models.clone_model + set_weights`` on ResNet50, interleaved.

    python tools/bench_engine.py            # all 40 models (~1 h on 2 cores)
    python tools/bench_engine.py --models ResNet50 MobileNetV2 --no-speed

Writes benchmarks/results/engine_coverage.{json,md,png}.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _report import RESULTS, machine_info, machine_line, markdown_table, write_atomic, write_json  # noqa: E402

import tf_gpp  # noqa: E402
from tf_gpp.graph import DependencyGraph  # noqa: E402
from tf_gpp.testing import equivalence_error, random_request  # noqa: E402

APPS = [
    "ConvNeXtBase", "ConvNeXtLarge", "ConvNeXtSmall", "ConvNeXtTiny", "ConvNeXtXLarge",
    "DenseNet121", "DenseNet169", "DenseNet201",
    "EfficientNetB0", "EfficientNetB1", "EfficientNetB2", "EfficientNetB3",
    "EfficientNetB4", "EfficientNetB5", "EfficientNetB6", "EfficientNetB7",
    "EfficientNetV2B0", "EfficientNetV2B1", "EfficientNetV2B2", "EfficientNetV2B3",
    "EfficientNetV2L", "EfficientNetV2M", "EfficientNetV2S",
    "InceptionResNetV2", "InceptionV3",
    "MobileNet", "MobileNetV2", "MobileNetV3Large", "MobileNetV3Small",
    "NASNetLarge", "NASNetMobile",
    "ResNet101", "ResNet152", "ResNet50", "ResNet101V2", "ResNet152V2", "ResNet50V2",
    "VGG16", "VGG19", "Xception",
]
TFLITE = {"MobileNetV2", "ResNet50", "DenseNet121", "EfficientNetB0", "MobileNetV3Small", "NASNetMobile"}
# Smaller inputs keep the sweep affordable; models that need their default size keep it.
SIZE = {"NASNetLarge": 331, "NASNetMobile": 224, "VGG16": 224, "VGG19": 224}


def build(name: str) -> keras.Model:
    fn = getattr(keras.applications, name)
    size = SIZE.get(name, 128 if name not in ("InceptionV3", "InceptionResNetV2", "Xception") else 160)
    kwargs = {"weights": None, "input_shape": (size, size, 3), "classes": 100}
    try:
        return fn(classifier_activation=None, **kwargs)
    except TypeError:
        return fn(**kwargs)


def to_tflite(model: keras.Model) -> int:
    try:
        from tf_gpp.convert import to_tflite as convert
    except ImportError:
        convert = None
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.tflite"
        if convert is not None:
            convert(model, path)
        else:
            import tensorflow as tf

            path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
        return path.stat().st_size


def one(name: str, fraction: float, seed: int) -> dict:
    row: dict = {"model": name}
    try:
        model = build(name)
        p0 = tf_gpp.profile(model)
        t = time.perf_counter()
        dep = DependencyGraph(model)
        row["analyse_s"] = round(time.perf_counter() - t, 2)
        row["groups"] = len(dep.groups)
        prunable = sum(g.size for g in dep.groups)
        row["prunable_units"] = prunable
        plan = random_request(dep, fraction, seed=seed)
        x = np.random.default_rng(seed).uniform(0, 255, size=(2, *model.input_shape[1:])).astype("float32")
        t = time.perf_counter()
        err, slim = equivalence_error(model, plan, [x], dep=dep)
        row["rebuild_s"] = round(time.perf_counter() - t, 2)
        p1 = tf_gpp.profile(slim)
        row |= {
            "params": p0.params, "params_after": p1.params,
            "macs_M": round(p0.macs / 1e6, 1), "macs_after_M": round(p1.macs / 1e6, 1),
            "macs_ratio": round(p1.macs / p0.macs, 3),
            "max_rel_err": float(f"{err:.2e}"),
            "same_output_shape": tuple(slim.output_shape) == tuple(model.output_shape),
        }
        if name in TFLITE:
            row["tflite_bytes"] = to_tflite(slim)
        ok = row["same_output_shape"] and p1.macs < p0.macs and err < 1e-3
        row["status"] = "ok" if ok else "FAIL"
    except Exception as e:  # noqa: BLE001 - a benchmark records every failure and goes on
        row["status"] = "ERROR"
        row["error"] = f"{type(e).__name__}: {e}"[:300]
        traceback.print_exc()
    keras.backend.clear_session()
    gc.collect()
    return row


def speed(repeats: int) -> dict:
    model = keras.applications.ResNet50(weights=None)
    base, ours = [], []
    for _ in range(repeats):  # interleaved: the machine is shared and noisy
        t = time.perf_counter()
        c = keras.models.clone_model(model)
        c.set_weights(model.get_weights())
        base.append(time.perf_counter() - t)
        t = time.perf_counter()
        dep = DependencyGraph(model)
        groups = dep.groups
        request = {}
        for g in groups:
            producer = g.producers[0]
            ch = g.channels(producer)
            request[producer] = [int(ch[i][0]) for i in range(g.size // 2)]
        slim = tf_gpp.prune_channels(dep, request)
        ours.append(time.perf_counter() - t)
        del c, slim
        gc.collect()
    mb, mo = statistics.median(base), statistics.median(ours)
    return {
        "model": "ResNet50",
        "repeats": repeats,
        "clone_set_weights_median_s": round(mb, 3),
        "groups_prune_median_s": round(mo, 3),
        "ratio": round(mo / mb, 2),
        "goal_ratio_max": 3.0,
    }


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if "macs_ratio" in r]
    fig, ax = plt.subplots(figsize=(11, 4.5))
    names = [r["model"] for r in ok]
    ax.bar(names, [r["macs_ratio"] for r in ok], color=["tab:green" if r["status"] == "ok" else "tab:red" for r in ok])
    ax.set_ylabel("MACs after / before")
    ax.set_title("keras.applications: ~30% of every prunable group removed (green = rebuilt and equivalent)")
    ax.tick_params(axis="x", rotation=75, labelsize=8)
    ax.set_ylim(0, 1)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=APPS)
    ap.add_argument("--fraction", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-speed", action="store_true")
    args = ap.parse_args()
    rows = []
    for i, name in enumerate(args.models):
        row = one(name, args.fraction, args.seed)
        rows.append(row)
        print(f"[{i + 1}/{len(args.models)}] {name}: {row.get('status')} "
              f"macs {row.get('macs_ratio')} err {row.get('max_rel_err')} {row.get('error', '')}", flush=True)
    info = machine_info()
    payload = {"machine": info, "fraction": args.fraction, "models": rows}
    if not args.no_speed:
        payload["speed"] = speed(args.repeats)
        print(payload["speed"], flush=True)
    n_ok = sum(r["status"] == "ok" for r in rows)
    name = "engine_coverage" if args.models == APPS else "engine_coverage_subset"
    write_json(name, payload)
    cols = ["model", "status", "groups", "params", "params_after", "macs_M", "macs_after_M",
            "macs_ratio", "max_rel_err", "analyse_s", "rebuild_s", "tflite_bytes", "error"]
    md = f"# Engine coverage: {n_ok}/{len(rows)} keras.applications models\n\n"
    md += (f"Each model (`weights=None`, 100 classes) analysed, ~{int(args.fraction * 100)}% of every "
           "prunable group removed at random, rebuilt; `max_rel_err` = max |slim - zeroed| / max |zeroed| "
           "on 2 random images (the correctness rule); status ok = same output shape, fewer MACs, err < 1e-3.\n\n")
    md += markdown_table(rows, cols)
    if "speed" in payload:
        s = payload["speed"]
        md += (f"\n## Surgery speed (ResNet50, {s['repeats']} interleaved repeats)\n\n"
               f"`channel_groups + prune_channels` (half of every group): median {s['groups_prune_median_s']} s; "
               f"`clone_model + set_weights`: median {s['clone_set_weights_median_s']} s; "
               f"ratio **{s['ratio']}x** (goal <= 3x).\n")
    md += "\n" + machine_line(info) + "\n\nReproduce: `python tools/bench_engine.py`\n"
    write_atomic(RESULTS / f"{name}.md", md)
    plot(rows, RESULTS / f"{name}.png")
    print(f"{n_ok}/{len(rows)} ok -> {RESULTS / name}.md")


if __name__ == "__main__":
    main()
