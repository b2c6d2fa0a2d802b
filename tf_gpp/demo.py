"""The main job on an embedded default: train a small CNN, compress it (prune, rebuild, fine-tune),
convert to TFLite, verify, benchmark, and print/plot the before/after result.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
from pathlib import Path

import keras

from tf_gpp.training import Trainer


def base_cnn(input_shape: tuple, num_classes: int) -> keras.Model:
    """The demo's base model: 4 conv-BN-ReLU layers (pooling after the 1st and 3rd),
    global pooling, a hidden Dense of 128, logits."""
    inp = keras.Input(input_shape)
    x = inp
    for i, (f, pool) in enumerate([(32, True), (32, False), (64, True), (64, False)]):
        x = keras.layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"conv{i + 1}")(x)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{i + 1}")(x)
        x = keras.layers.ReLU(name=f"relu{i + 1}")(x)
        if pool and min(x.shape[1:3]) >= 4:
            x = keras.layers.MaxPooling2D(name=f"pool{i + 1}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(128, activation="relu", name="features")(x)
    return keras.Model(inp, keras.layers.Dense(num_classes, name="logits")(x), name="base_cnn")


def _step(msg: str) -> float:
    print(f"\n== {msg}", flush=True)
    return time.perf_counter()


def run_demo(out_dir: str | None = None, data: str = "default", quick: bool = False, epochs: int | None = None) -> dict:
    import tf_gpp
    from tf_gpp.convert import benchmark_ab, to_tflite, verify
    from tf_gpp.data import registry
    from tf_gpp.errors import ArgumentError
    from tf_gpp.report import html_report, plot_report

    t_all = time.perf_counter()
    out = Path(out_dir) if out_dir else Path("gpp_runs") / f"demo-{_dt.datetime.now():%Y%m%d-%H%M%S}"
    if out.exists() and any(out.iterdir()):
        raise ArgumentError(f"--out {out}: folder exists and is not empty; choose a new one (nothing is overwritten)")
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)

    t = _step("data")
    ds = registry.load(data, limit=3000 if quick else 12000, batch_size=128)
    print(ds.describe())
    x_test, y_test = ds.as_numpy("test" if ds.test is not None else "val")

    t = _step("train the base model")
    model = base_cnn(ds.input_shape, ds.num_classes)
    Trainer("adam", 2e-3, verbose=2).fit(model, ds.train, epochs or (4 if quick else 6), metrics=["accuracy"],
                                         loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                                         validation_data=ds.val)
    base_acc = float(model.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"])
    print(f"base test accuracy {base_acc:.4f} ({time.perf_counter() - t:.0f}s)")
    model.save(out / "base.keras")

    t = _step("prune (tf_gpp.compress's default recipe, target 30% of the MACs)")
    res = tf_gpp.compress(model, ds.train, ds.val, target_macs=0.3, rounds=2 if quick else 3,
                          finetune_epochs=2 if quick else 3, round_to=4,
                          checkpoint_dir=out / "rounds", verbose=1)
    slim = res.model
    slim.save(out / "slim.keras")
    slim.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    slim_acc = float(slim.evaluate(x_test, y_test, verbose=0, return_dict=True)["accuracy"])
    print(res.summary())

    t = _step("convert to TFLite, verify, benchmark (LiteRT, 1 thread, interleaved)")
    base_tfl = to_tflite(model, out / "base.tflite")
    slim_tfl = to_tflite(slim, out / "slim.tflite")
    int8_tfl = to_tflite(slim, out / "slim_int8.tflite", quantization="int8", representative_data=ds.as_numpy("train")[0][:200])
    checks = {p.name: verify(p, slim if "slim" in p.name else model, x_test, y_test)
              for p in (base_tfl, slim_tfl, int8_tfl)}
    for name, rep in checks.items():
        print(f"{name}: {rep}")
    ab = benchmark_ab(base_tfl, slim_tfl, threads=1, rounds=60 if quick else 150)
    print(ab)

    pb, ps = tf_gpp.profile(model), tf_gpp.profile(slim)
    rows = [
        ("base", pb.params, pb.macs, base_acc, base_tfl.stat().st_size, ab.a.median_ms),
        ("slim", ps.params, ps.macs, slim_acc, slim_tfl.stat().st_size, ab.b.median_ms),
        ("slim int8", ps.params, ps.macs, checks[int8_tfl.name].tflite_accuracy, int8_tfl.stat().st_size, None),
    ]
    print("\n" + f"{'model':<12} {'params':>10} {'MACs':>12} {'test acc':>9} {'.tflite':>10} {'latency':>10}")
    for name, p, m, a, size, lat in rows:
        print(f"{name:<12} {p:>10,} {m:>12,} {a:>9.4f} {size:>9,}B {(f'{lat:.3f}ms' if lat else '-'):>10}")
    print(f"\nMACs {pb.macs / ps.macs:.2f}x fewer, LiteRT latency {ab.a.median_ms / ab.b.median_ms:.2f}x faster "
          f"(median of interleaved runs), accuracy {100 * (slim_acc - base_acc):+.2f} points")

    latency = {"base_ms": ab.a.median_ms, "slim_ms": ab.b.median_ms}
    facts = {"data": ds.source, "base accuracy (test)": f"{base_acc:.4f}", "slim accuracy (test)": f"{slim_acc:.4f}",
             "MACs reduction": f"{pb.macs / ps.macs:.2f}x", "latency speed-up": f"{ab.a.median_ms / ab.b.median_ms:.2f}x"}
    payload = {"compress": res.to_dict(), "latency": latency, "facts": facts,
               "rows": [dict(zip(["model", "params", "macs", "test_accuracy", "tflite_bytes", "latency_ms"], r, strict=True)) for r in rows]}
    (out / "result.json").write_text(json.dumps(payload, indent=2, default=str))
    n = min(1500, len(x_test))
    png = plot_report(out / "report.png", payload["compress"], model, slim, res.pushed_model,
                      (x_test[:n], y_test[:n]), latency, title=f"tf_gpp demo on {ds.name}")
    html_report(out / "report.html", png, payload["compress"], facts)
    print(f"\nwrote {out}/ (base.keras, slim.keras, *.tflite, result.json, report.png, report.html) "
          f"in {time.perf_counter() - t_all:.0f}s")
    return payload
