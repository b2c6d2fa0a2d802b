#!/usr/bin/env python
"""Does removing channels buy real TFLite latency? A single-thread LiteRT benchmark.

Sections (all models float32 unless noted, XNNPACK CPU delegate, 1 thread):

1. **Half-pruned VGG.** A VGG-style CNN (32x32x3, conv widths 64-64-128-128-256-256,
   a max-pool after every two convs, global average pooling, Dense(10)) and the
   model with half of every channel group removed — by the tf_gpp engine
   (``tf_gpp.channel_groups`` + ``tf_gpp.prune_channels``, lowest-L1 filters) when it
   imports, else built directly with a width multiplier of 0.5. Both are
   converted with ``tf_gpp.convert.to_tflite`` and timed with ``benchmark_ab``
   (interleaved). Reported: MACs ratio, speed-up (median_dense / median_pruned)
   and speed-up / MACs ratio (goal >= 0.8); also int8 versions.
2. **round_to.** For boundaries b (multiples of 4 from 44 to 100, and 128), VGGs
   whose six convs all have b and b+1 channels, timed round-robin in one loop.
   If kernels work in tiles of g output channels, b+1 starts a new tile when g
   divides b and latency grows far more than MACs ("step excess"); the pattern
   of cliffs over b's divisors (4, 8, 16, 32, 64) gives the tile size and the
   recommended ``round_to``.
3. **tfmot baseline.** The same VGG in tf_keras, ``prune_low_magnitude`` to 75%
   sparsity (a few training steps with ``UpdatePruningStep`` on random data
   apply the masks), ``strip_pruning``, converted with and without
   ``Optimize.EXPERIMENTAL_SPARSITY``; timed interleaved with the dense models.
   tfmot needs tf_keras, so this part runs in a subprocess with
   ``TF_USE_LEGACY_KERAS=1`` and never touches this process's Keras 3.

The machine may be shared: every comparison is interleaved, and besides the
wall-clock medians the thread CPU time per invoke is reported (it does not
count time the benchmark thread spent preempted by other processes).

Usage::

    python tools/bench_latency.py            # full run, ~5-10 min
    python tools/bench_latency.py --quick    # ~2-3 min
    python tools/bench_latency.py --tfmot-site DIR   # tf_keras/tfmot installed with
                                                      # pip install --target DIR

Writes ``benchmarks/results/latency.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
VGG_WIDTHS = (64, 64, 128, 128, 256, 256)
INPUT_SHAPE = (32, 32, 3)
NUM_CLASSES = 10
TFMOT_SPARSITY = 0.75
EFFICIENCY_GOAL = 0.8

SETTINGS = {
    "full": {
        "ab_rounds": 1000,
        "int8_rounds": 300,
        "round_to_boundaries": [*range(44, 101, 4), 128],
        "sweep_rounds": 100,
        "tfmot_rounds": 300,
        "warmup": 20,
    },
    "quick": {
        "ab_rounds": 200,
        "int8_rounds": 60,
        "round_to_boundaries": [48, 56, 60, 64, 96],
        "sweep_rounds": 40,
        "tfmot_rounds": 60,
        "warmup": 5,
    },
}


# --------------------------------------------------------------------------- models


def build_vgg(keras: Any, widths: tuple[int, ...] | list[int], name: str = "vgg") -> Any:
    """VGG-style CNN; works with Keras 3 and tf_keras (the same layer API)."""
    inp = keras.Input(INPUT_SHAPE, name="image")
    h = inp
    for i, width in enumerate(widths):
        h = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name=f"conv{i}")(h)
        if i % 2 == 1:
            h = keras.layers.MaxPooling2D(name=f"pool{i // 2}")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    out = keras.layers.Dense(NUM_CLASSES, name="logits")(h)
    return keras.Model(inp, out, name=name)


def conv_widths(model: Any) -> list[int]:
    return [int(layer.filters) for layer in model.layers if hasattr(layer, "filters")]


def profile_model(model: Any) -> dict[str, Any]:
    import tf_gpp

    result = tf_gpp.profile(model)
    return {"params": int(result.params), "macs": int(result.macs), "by": "tf_gpp.profile"}


def half_pruned(keras: Any, model: Any) -> tuple[Any, str]:
    """Remove half of every prunable channel group (lowest-L1 filters) with the engine."""
    import numpy as np

    import tf_gpp

    request: dict[str, list[int]] = {}
    for group in tf_gpp.channel_groups(model):
        n = group.size // 2
        if n == 0:
            continue
        producer = group.producers[0]
        kernel = model.get_layer(producer).get_weights()[0]
        order = np.argsort(np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0), kind="stable")
        request[producer] = sorted(int(i) for i in order[:n])
    slim = tf_gpp.prune_channels(model, request)
    method = "tf_gpp.prune_channels (half of every channel group, lowest-L1 filters)"
    expected = [w // 2 for w in VGG_WIDTHS]
    if conv_widths(slim) != expected:
        raise SystemExit(f"pruned widths {conv_widths(slim)} != expected {expected} ({method})")
    return slim, method


# --------------------------------------------------------------------------- sections


def section_vgg(keras: Any, workdir: Path, cfg: dict, threads: int, log: Any) -> dict[str, Any]:
    import numpy as np

    from tf_gpp.convert import benchmark_ab, benchmark_interleaved, to_tflite, verify

    keras.utils.set_random_seed(0)
    dense = build_vgg(keras, VGG_WIDTHS)
    slim, method = half_pruned(keras, dense)
    log(f"pruned by: {method}; widths {conv_widths(slim)}")
    prof_dense, prof_slim = profile_model(dense), profile_model(slim)

    paths = {
        "dense": to_tflite(dense, workdir / "vgg_dense.tflite"),
        "pruned": to_tflite(slim, workdir / "vgg_pruned.tflite"),
    }
    calib = np.random.default_rng(0).random((64, *INPUT_SHAPE), dtype=np.float32)
    paths["dense_int8"] = to_tflite(dense, workdir / "vgg_dense_int8.tflite", "int8", calib)
    paths["pruned_int8"] = to_tflite(slim, workdir / "vgg_pruned_int8.tflite", "int8", calib)

    load_before = os.getloadavg()
    ab = benchmark_ab(
        paths["dense"],
        paths["pruned"],
        threads=threads,
        rounds=cfg["ab_rounds"],
        warmup=cfg["warmup"],
    )
    log(str(ab))
    macs_ratio = prof_dense["macs"] / prof_slim["macs"]
    ab_int8 = benchmark_ab(
        paths["dense_int8"],
        paths["pruned_int8"],
        threads=threads,
        rounds=cfg["int8_rounds"],
        warmup=cfg["warmup"],
    )
    log(str(ab_int8))
    # float vs int8 of the same net, interleaved in one loop.
    four = benchmark_interleaved(
        [paths["dense"], paths["dense_int8"], paths["pruned"], paths["pruned_int8"]],
        threads=threads,
        rounds=cfg["int8_rounds"],
        warmup=cfg["warmup"],
    )
    load_after = os.getloadavg()

    # Sanity check of the int8 files: agreement with the float Keras model on
    # inputs from the calibration distribution (untrained weights, so top-1
    # agreement is a conversion check, not an accuracy figure).
    x_check = np.random.default_rng(1).random((200, *INPUT_SHAPE), dtype=np.float32)
    int8_check = {
        name: verify(paths[f"{name}_int8"], model, x_check, max_accuracy_drop=1.0, warn=False)
        for name, model in (("dense", dense), ("pruned", slim))
    }
    for name, rep in int8_check.items():
        log(
            f"int8 {name}: top-1 agreement with float Keras {100 * rep.top1_agreement:.1f}%, max abs error {rep.max_abs_error:.3g}"
        )

    def ratios(report: Any) -> dict[str, Any]:
        cpu = report.cpu_ratio
        return {
            "speedup_median": report.ratio,
            "speedup_paired": report.paired_ratio,
            "speedup_min": report.min_ratio,
            "speedup_cpu": cpu,
            "efficiency_median": report.ratio / macs_ratio,
            "efficiency_cpu": None if cpu is None else cpu / macs_ratio,
        }

    return {
        "pruned_by": method,
        "dense": {"widths": conv_widths(dense), **prof_dense, **_sizes(paths["dense"])},
        "pruned": {"widths": conv_widths(slim), **prof_slim, **_sizes(paths["pruned"])},
        "macs_ratio": macs_ratio,
        "params_ratio": prof_dense["params"] / prof_slim["params"],
        "float32": {"ab": ab.to_dict(), **ratios(ab)},
        "int8": {
            "ab": ab_int8.to_dict(),
            **ratios(ab_int8),
            "sizes": {"dense": _sizes(paths["dense_int8"]), "pruned": _sizes(paths["pruned_int8"])},
            "agreement_with_float_keras": {
                name: {
                    "top1_agreement": rep.top1_agreement,
                    "max_abs_error": rep.max_abs_error,
                    "n": rep.n,
                }
                for name, rep in int8_check.items()
            },
        },
        "float_vs_int8": {
            name: r.to_dict()
            for name, r in zip(["dense", "dense_int8", "pruned", "pruned_int8"], four, strict=True)
        },
        "goal": EFFICIENCY_GOAL,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
    }


def divisibility(c: int) -> int:
    """Largest of 64, 32, 16, 8, 4, 2, 1 dividing c."""
    return next(m for m in (64, 32, 16, 8, 4, 2, 1) if c % m == 0)


def vgg_macs(widths: list[int] | tuple[int, ...]) -> int:
    """MACs per sample of :func:`build_vgg` with these conv widths (closed form)."""
    macs, cin, side = 0, INPUT_SHAPE[-1], INPUT_SHAPE[0]
    for i, width in enumerate(widths):
        macs += side * side * 9 * cin * width
        cin = width
        if i % 2 == 1:
            side //= 2
    return macs + cin * NUM_CLASSES


CLIFF = 0.10
"""A step b -> b+1 channels is a cliff when latency grows 10% more than MACs."""


def section_round_to(
    keras: Any, workdir: Path, cfg: dict, threads: int, log: Any
) -> dict[str, Any]:
    """Do widths that are multiples of 4/8/16/32 run faster than one channel more?

    For each boundary b (a multiple of 4), VGGs whose six convs all have b and
    b+1 channels are timed round-robin in one loop. If the CPU kernels work in
    tiles of g output channels, going from a multiple of g to one channel more
    starts a new tile, and latency grows much more than the MACs do:
    excess = (t[b+1] / t[b]) / (MACs[b+1] / MACs[b]) - 1.
    """
    import numpy as np

    from tf_gpp.convert import benchmark_interleaved, to_tflite

    n_convs = len(VGG_WIDTHS)
    boundaries = list(cfg["round_to_boundaries"])
    widths = sorted({w for b in boundaries for w in (b, b + 1)})
    paths, macs = [], []
    for c in widths:
        keras.utils.set_random_seed(c)
        model = build_vgg(keras, [c] * n_convs, name=f"vgg_c{c}")
        macs.append(profile_model(model)["macs"])
        if macs[-1] != vgg_macs([c] * n_convs):
            raise SystemExit(f"MACs mismatch at width {c}: {macs[-1]} vs {vgg_macs([c] * n_convs)}")
        paths.append(to_tflite(model, workdir / f"sweep_c{c}.tflite"))
        keras.backend.clear_session()
    log(f"round_to: {len(widths)} uniform-width VGGs converted; timing round-robin")
    load_before = os.getloadavg()
    reports = benchmark_interleaved(
        paths, threads=threads, rounds=cfg["sweep_rounds"], warmup=cfg["warmup"]
    )
    load_after = os.getloadavg()
    use_cpu = all(r.cpu_median_ms is not None for r in reports)
    t = {
        c: (r.cpu_median_ms if use_cpu else r.median_ms)
        for c, r in zip(widths, reports, strict=True)
    }
    m = dict(zip(widths, macs, strict=True))

    rows = [
        {
            "width": c,
            "divisible_by": divisibility(c),
            "macs": int(m[c]),
            "median_ms": r.median_ms,
            "cpu_median_ms": r.cpu_median_ms,
            "min_ms": r.min_ms,
            "metric_ms": float(t[c]),
            "ns_per_kmac": float(t[c] * 1e9 / m[c]),
        }
        for c, r in zip(widths, reports, strict=True)
    ]
    steps = []
    for b in boundaries:
        time_ratio, macs_ratio = t[b + 1] / t[b], m[b + 1] / m[b]
        steps.append(
            {
                "boundary": b,
                "divisible_by": divisibility(b),
                "time_ratio": float(time_ratio),
                "macs_ratio": float(macs_ratio),
                "excess": float(time_ratio / macs_ratio - 1),
                "cliff": bool(time_ratio / macs_ratio - 1 > CLIFF),
            }
        )
    by_class: dict[str, dict[str, Any]] = {}
    for g in (4, 8, 16, 32, 64):
        sel = [st["excess"] for st in steps if st["divisible_by"] == g]
        if sel:
            by_class[str(g)] = {
                "n": len(sel),
                "mean_excess": float(np.mean(sel)),
                "max_excess": float(np.max(sel)),
            }
    tile = tile_granularity(steps)
    log(
        "round_to step excess by boundary: "
        + ", ".join(
            f"{st['boundary']}->{st['boundary'] + 1}: {100 * st['excess']:+.0f}%" for st in steps
        )
        + f"; tile = {tile}"
    )
    result = {
        "metric": "thread CPU time median" if use_cpu else "wall median",
        "cliff_threshold": CLIFF,
        "rows": rows,
        "steps": steps,
        "by_class": by_class,
        "tile": tile,
        "loadavg_before": load_before,
        "loadavg_after": load_after,
    }
    result["recommendation"] = recommend_round_to(result)
    return result


def tile_granularity(steps: list[dict[str, Any]]) -> int | None:
    """Smallest g whose multiples are exactly the cliff boundaries (1: no cliffs, None: no such g)."""
    cliffs = {st["boundary"] for st in steps if st["cliff"]}
    if not cliffs:
        return 1
    for g in (4, 8, 16, 32, 64):
        multiples = {st["boundary"] for st in steps if st["boundary"] % g == 0}
        if multiples == cliffs:
            return g
    return None


def recommend_round_to(result: dict[str, Any]) -> dict[str, Any]:
    """Turn the measured step excesses into a round_to default and a reason."""
    classes = result["by_class"]
    small = {g: c for g, c in classes.items() if int(g) <= 16}
    cliffs = [st for st in result["steps"] if st["cliff"]]
    summary = ", ".join(f"x{g}: {100 * c['mean_excess']:+.1f}%" for g, c in classes.items())
    tile = result["tile"]
    if tile in (4, 8, 16):
        value = tile
        reason = (
            f"a width one channel above a multiple of {tile} costs far more than its MACs "
            f"(mean step excess by largest divisor of the boundary: {summary}), so kept-channel counts "
            f"should be multiples of {tile}."
        )
    else:
        value = 1
        no_gain = all(c["max_excess"] <= CLIFF for c in small.values())
        reason = (
            "multiples of 4, 8 and 16 run no faster than one channel more"
            if no_gain
            else "no consistent tile"
        ) + f" (mean step excess over MACs by largest divisor of the boundary: {summary})."
        if tile:
            worst = max(cliffs, key=lambda st: st["excess"])
            reason += (
                f" The kernels work in tiles of {tile} output channels: every step from a multiple of "
                f"{tile} to one channel more is a cliff (largest: {worst['boundary']} -> "
                f"{worst['boundary'] + 1} costs x{worst['time_ratio']:.2f} time for x{worst['macs_ratio']:.3f} "
                f"MACs). Rounding every layer to {tile} would waste up to {tile - 1} channels, so keep "
                f"round_to=1 by default and, for latency on this CPU, prune a layer that ends a few channels "
                f"above a multiple of {tile} down to that multiple."
            )
    return {"round_to": value, "tile": tile, "reason": reason}


def section_tfmot(
    workdir: Path, cfg: dict, threads: int, site: str | None, vgg_paths: dict, log: Any
) -> dict:
    from tf_gpp.convert import benchmark_interleaved

    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    if site:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [site, env.get("PYTHONPATH")]))
    out = workdir / "tfmot"
    out.mkdir(exist_ok=True)
    started = time.time()
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--tfmot-worker", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    info_file = out / "tfmot.json"
    if proc.returncode != 0 or not info_file.exists():
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        log(f"tfmot baseline skipped:\n{tail}")
        return {
            "skipped": True,
            "reason": tail,
            "hint": "pip install tf-keras==2.21.0 tensorflow-model-optimization "
            "(or with --no-deps --target DIR and pass --tfmot-site DIR)",
        }
    info = json.loads(info_file.read_text())
    log(
        f"tfmot worker finished in {time.time() - started:.0f} s; kernel sparsity {info['kernel_sparsity']}"
    )
    names = ["keras3_dense", "tfmot_dense", "tfmot_sparse", "tfmot_sparse_opt", "gpp_pruned"]
    paths = [
        vgg_paths["dense"],
        *(out / info["files"][k] for k in ("dense", "sparse", "sparse_opt")),
        vgg_paths["pruned"],
    ]
    reports = benchmark_interleaved(
        paths, threads=threads, rounds=cfg["tfmot_rounds"], warmup=cfg["warmup"]
    )
    by_name = dict(zip(names, reports, strict=True))
    base = by_name["tfmot_dense"]

    def vs_dense(name: str) -> dict[str, Any]:
        r = by_name[name]
        return {
            "speedup_median": base.median_ms / r.median_ms,
            "speedup_min": base.min_ms / r.min_ms,
            "speedup_cpu": None
            if r.cpu_median_ms is None
            else base.cpu_median_ms / r.cpu_median_ms,
        }

    result = {
        "skipped": False,
        **info,
        "latency": {k: r.to_dict() for k, r in by_name.items()},
        "sizes": {k: _sizes(p) for k, p in zip(names, paths, strict=True)},
        "vs_tfmot_dense": {k: vs_dense(k) for k in names if k != "tfmot_dense"},
    }
    for k in names:
        log(f"  {by_name[k]}")
    return result


def tfmot_worker(out: Path) -> int:
    """Subprocess entry (TF_USE_LEGACY_KERAS=1): dense and 75%-sparse tf_keras VGG -> .tflite."""
    import numpy as np
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    dense = build_vgg(tf_keras, VGG_WIDTHS)
    files = {
        "dense": "tfmot_dense.tflite",
        "sparse": "tfmot_sparse.tflite",
        "sparse_opt": "tfmot_sparse_opt.tflite",
    }
    (out / files["dense"]).write_bytes(tf.lite.TFLiteConverter.from_keras_model(dense).convert())

    schedule = tfmot.sparsity.keras.ConstantSparsity(TFMOT_SPARSITY, begin_step=0, frequency=1)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(dense, pruning_schedule=schedule)
    pruned.compile(
        optimizer=tf_keras.optimizers.SGD(1e-3),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(0)
    x = rng.random((32, *INPUT_SHAPE), dtype=np.float32)
    y = rng.integers(0, NUM_CLASSES, 32)
    pruned.fit(
        x,
        y,
        batch_size=8,
        epochs=1,
        verbose=0,
        callbacks=[tfmot.sparsity.keras.UpdatePruningStep()],
    )
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    sparsity = {
        layer.name: float(np.mean(layer.get_weights()[0] == 0))
        for layer in stripped.layers
        if layer.get_weights()
    }
    (out / files["sparse"]).write_bytes(
        tf.lite.TFLiteConverter.from_keras_model(stripped).convert()
    )
    converter = tf.lite.TFLiteConverter.from_keras_model(stripped)
    converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    (out / files["sparse_opt"]).write_bytes(converter.convert())
    info = {
        "files": files,
        "target_sparsity": TFMOT_SPARSITY,
        "kernel_sparsity": sparsity,
        "versions": {
            "tf_keras": tf_keras.__version__,
            "tfmot": tfmot.__version__,
            "tensorflow": tf.__version__,
        },
        "training_steps": 4,
    }
    (out / "tfmot.json").write_text(json.dumps(info, indent=2))
    return 0


# --------------------------------------------------------------------------- reporting


def _sizes(path: Path) -> dict[str, int]:
    data = Path(path).read_bytes()
    return {"size_bytes": len(data), "gzip_bytes": len(gzip.compress(data, 9))}


def machine_info() -> dict[str, Any]:
    """tools/_report.machine_info plus the runtime and the load at the start."""
    from tf_gpp.convert import runtime_info

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _report import machine_info as base_info

    info = base_info()
    runtime = runtime_info()
    info["runtime"] = f"{runtime.name} {runtime.version}"
    info["date_utc"] = info["date"]
    info["loadavg_start"] = os.getloadavg()
    return info


def _f(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def write_markdown(results: dict[str, Any], path: Path) -> None:
    m, v = results["machine"], results["vgg"]
    f32, i8 = v["float32"], v["int8"]
    lines = [
        "# TFLite latency benchmark (tools/bench_latency.py)",
        "",
        f"{m['date_utc']} UTC · {m['cpu']} · {m['cores']} cores · Python {m['python']} · "
        f"TF {m['tensorflow']} · Keras {m['keras']} · {m['runtime']} · mode `{results['mode']}` · "
        f"{results['threads']} thread · load average at start {m['loadavg_start'][0]:.1f}",
        "",
        "Latencies are per `invoke()` (batch 1, XNNPACK). *median* = wall-clock median, *CPU* = "
        "median CPU time of the benchmark thread (excludes time preempted by other processes on "
        "this shared machine), *min* = fastest run. All comparisons are interleaved in one loop.",
        "",
        "## Half-pruned VGG (32x32x3)",
        "",
        f"Pruned by: {v['pruned_by']}.",
        "",
        "| model | conv widths | params | MACs | size KiB | median ms | p90 ms | min ms | CPU ms |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, report in (("dense", f32["ab"]["a"]), ("pruned", f32["ab"]["b"])):
        row = v[key]
        lines.append(
            f"| {key} | {'-'.join(map(str, row['widths']))} | {row['params']:,} | {row['macs'] / 1e6:.1f} M | "
            f"{row['size_bytes'] / 1024:.0f} | {report['median_ms']:.3f} | {report['p90_ms']:.3f} | "
            f"{report['min_ms']:.3f} | {_f(report['cpu_median_ms'], 3)} |"
        )
    lines += [
        "",
        "| precision | MACs ratio | speed-up (median) | paired | min | CPU | speed-up/MACs (median) | (CPU) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, sec in (("float32", f32), ("int8", i8)):
        lines.append(
            f"| {name} | {v['macs_ratio']:.2f} | {sec['speedup_median']:.2f} | {sec['speedup_paired']:.2f} | "
            f"{sec['speedup_min']:.2f} | {_f(sec['speedup_cpu'])} | {sec['efficiency_median']:.2f} | "
            f"{_f(sec['efficiency_cpu'])} |"
        )
    primary = (
        f32["efficiency_cpu"] if f32["efficiency_cpu"] is not None else f32["efficiency_median"]
    )
    goal_ok = primary >= v["goal"]
    agree = i8["agreement_with_float_keras"]
    lines += [
        "",
        f"Goal speed-up/MACs-ratio >= {v['goal']} (float32): **{'met' if goal_ok else 'not met'}** — "
        f"{_f(f32['efficiency_cpu'])} on thread CPU time, {f32['speedup_min'] / v['macs_ratio']:.2f} on min, "
        f"{f32['efficiency_median']:.2f} on the wall-clock median. Load average during the run: "
        f"{v['loadavg_before'][0]:.1f} -> {v['loadavg_after'][0]:.1f} on {m['cores']} cores; under such "
        "load the wall clock counts preemptions, which hit the longer dense invokes more often.",
        "",
        "int8 files vs the float Keras model on 200 inputs from the calibration distribution "
        "(untrained weights: a conversion check, not accuracy): top-1 agreement "
        + ", ".join(f"{k} {100 * a['top1_agreement']:.1f}%" for k, a in agree.items())
        + ".",
        "",
        "float32 vs int8 (one interleaved loop):",
        "",
        "| model | median ms | min ms | CPU ms | size KiB |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in v["float_vs_int8"].items():
        lines.append(
            f"| {name} | {r['median_ms']:.3f} | {r['min_ms']:.3f} | {_f(r['cpu_median_ms'], 3)} | "
            f"{r['size_bytes'] / 1024:.0f} |"
        )

    rt = results["round_to"]
    lines += [
        "",
        "## round_to: do channel multiples of 4/8/16 run faster?",
        "",
        "For each boundary b, VGGs whose six convs all have b and b+1 channels, all timed round-robin "
        f"in one loop (metric: {rt['metric']}). Step excess = (t[b+1]/t[b]) / (MACs[b+1]/MACs[b]) - 1: "
        "about 0 if latency follows MACs, large if b+1 channels start a new kernel tile "
        f"(cliff: excess > {100 * rt['cliff_threshold']:.0f}%).",
        "",
        "| b | largest divisor | t[b] ms | t[b+1] ms | time ratio | MACs ratio | step excess | cliff |",
        "|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    t = {row["width"]: row["metric_ms"] for row in rt["rows"]}
    for st in rt["steps"]:
        b = st["boundary"]
        lines.append(
            f"| {b} | {st['divisible_by']} | {t[b]:.3f} | {t[b + 1]:.3f} | {st['time_ratio']:.3f} | "
            f"{st['macs_ratio']:.3f} | {100 * st['excess']:+.1f}% | {'yes' if st['cliff'] else ''} |"
        )
    lines += [
        "",
        "Mean step excess by the boundary's largest power-of-two divisor: "
        + ", ".join(
            f"x{g}: {100 * c['mean_excess']:+.1f}% (n={c['n']})" for g, c in rt["by_class"].items()
        )
        + ".",
        "",
        "| c | median ms | CPU ms | min ms | MACs M | ns per kMAC |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rt["rows"]:
        lines.append(
            f"| {row['width']} | {row['median_ms']:.3f} | {_f(row['cpu_median_ms'], 3)} | "
            f"{row['min_ms']:.3f} | {row['macs'] / 1e6:.1f} | {row['ns_per_kmac']:.1f} |"
        )
    rec = rt["recommendation"]
    lines += ["", f"**Recommended default `round_to={rec['round_to']}`**: {rec['reason']}", ""]

    tm = results.get("tfmot", {})
    lines += ["## tfmot baseline (magnitude pruning, 75% sparsity)", ""]
    if tm.get("skipped", True):
        lines.append(f"Skipped: {tm.get('reason', 'not run')} ({tm.get('hint', '')}).")
    else:
        lines += [
            f"tf_keras {tm['versions']['tf_keras']}, tfmot {tm['versions']['tfmot']}; "
            f"kernel sparsity after {tm['training_steps']} steps: "
            + ", ".join(f"{k} {100 * s:.0f}%" for k, s in tm["kernel_sparsity"].items())
            + ".",
            "",
            "| model | median ms | min ms | CPU ms | size KiB | gzip KiB | speed-up vs tfmot dense (median / CPU) |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, r in tm["latency"].items():
            s = tm["sizes"][name]
            vs = tm["vs_tfmot_dense"].get(name)
            lines.append(
                f"| {name} | {r['median_ms']:.3f} | {r['min_ms']:.3f} | {_f(r['cpu_median_ms'], 3)} | "
                f"{s['size_bytes'] / 1024:.0f} | {s['gzip_bytes'] / 1024:.0f} | "
                + (
                    f"{vs['speedup_median']:.2f} / {_f(vs['speedup_cpu'])}"
                    if vs
                    else "1 (reference)"
                )
                + " |"
            )
        lines += [
            "",
            "`tfmot_sparse_opt` is converted with `tf.lite.Optimize.EXPERIMENTAL_SPARSITY` (sparse weight "
            "encoding). `gpp_pruned` is the half-pruned model above (about a quarter of the MACs).",
        ]
    path.write_text("\n".join(lines) + "\n")


def write_plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rt = results["round_to"]
    fig = plt.figure(figsize=(13, 8.4), constrained_layout=True)
    grid = fig.add_gridspec(2, 2)

    ax = fig.add_subplot(grid[0, :])
    v = results["vgg"]
    bars = [(f"{k}", r) for k, r in v["float_vs_int8"].items()]
    tm = results.get("tfmot", {})
    if not tm.get("skipped", True):
        bars += [(k, r) for k, r in tm["latency"].items() if k.startswith("tfmot")]
    labels = [b[0] for b in bars]
    med = [b[1]["median_ms"] for b in bars]
    cpu = [b[1]["cpu_median_ms"] or float("nan") for b in bars]
    mins = [b[1]["min_ms"] for b in bars]
    y = range(len(bars))
    ax.barh([i + 0.2 for i in y], med, height=0.4, label="wall median", color="#4c72b0")
    ax.barh([i - 0.2 for i in y], cpu, height=0.4, label="thread CPU median", color="#dd8452")
    ax.plot(mins, list(y), "k|", markersize=14, label="min")
    ax.set_yticks(list(y), labels)
    ax.invert_yaxis()
    ax.set_xlabel("ms per invoke (1 thread)")
    f32 = v["float32"]
    ax.set_title(
        f"VGG 32x32: half-pruned vs dense — MACs ratio {v['macs_ratio']:.2f}, speed-up "
        f"{f32['speedup_median']:.2f} (median) / {_f(f32['speedup_cpu'])} (CPU); "
        f"speed-up/MACs {f32['efficiency_median']:.2f} / {_f(f32['efficiency_cpu'])}"
    )
    ax.legend(loc="lower right")

    colors = {
        64: "#000000",
        32: "#c44e52",
        16: "#dd8452",
        8: "#55a868",
        4: "#4c72b0",
        2: "#8172b3",
        1: "#8172b3",
    }
    ax1 = fig.add_subplot(grid[1, 0])
    for st in rt["steps"]:
        b = st["boundary"]
        rows = {row["width"]: row for row in rt["rows"]}
        ax1.plot(
            [b, b + 1],
            [rows[b]["metric_ms"], rows[b + 1]["metric_ms"]],
            "-o",
            color=colors[st["divisible_by"]],
            markersize=4,
        )
    for g in (64, 32, 16, 8, 4):
        ax1.plot([], [], "-o", color=colors[g], label=f"b divisible by {g}")
    ax1.set_xlabel("channels per conv (all 6 convs): pairs b, b+1")
    ax1.set_ylabel(f"{rt['metric']} (ms)")
    ax1.set_title("uniform-width VGGs, pairs timed round-robin")
    ax1.legend(fontsize=8)

    ax2 = fig.add_subplot(grid[1, 1])
    ax2.bar(
        [st["boundary"] for st in rt["steps"]],
        [100 * st["excess"] for st in rt["steps"]],
        width=3,
        color=[colors[st["divisible_by"]] for st in rt["steps"]],
    )
    ax2.axhline(100 * rt["cliff_threshold"], color="grey", lw=0.8, ls="--", label="cliff threshold")
    ax2.axhline(0, color="k", lw=0.8)
    ax2.set_xlabel("boundary b (channels)")
    ax2.set_ylabel("step excess b -> b+1 over MACs growth (%)")
    ax2.set_title(
        f"b -> b+1 channels: time growth beyond MACs growth\n(tile = {rt['tile']} output channels, "
        f"recommended round_to = {rt['recommendation']['round_to']})",
        fontsize=10,
    )
    ax2.legend(fontsize=8)
    fig.suptitle(
        f"{results['machine']['cpu']} · {results['machine']['runtime']} · TF {results['machine']['tensorflow']} "
        f"· {results['machine']['date_utc']} UTC",
        fontsize=9,
    )
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer rounds and round_to boundaries (~2 min)"
    )
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--skip-tfmot", action="store_true")
    parser.add_argument(
        "--tfmot-site",
        default=os.environ.get("TF_GPP_TFMOT_SITE"),
        help="directory holding tf_keras and tensorflow_model_optimization (pip install --target)",
    )
    parser.add_argument(
        "--models-dir", type=Path, help="keep the .tflite files here (default: temp dir)"
    )
    parser.add_argument("--tfmot-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.tfmot_worker:
        return tfmot_worker(Path(args.tfmot_worker))

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import keras

    mode = "quick" if args.quick else "full"
    cfg = SETTINGS[mode]
    started = time.time()

    def log(message: str) -> None:
        print(f"[{time.time() - started:6.1f}s] {message}", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tf_gpp_bench_") as tmp:
        workdir = args.models_dir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        results: dict[str, Any] = {
            "mode": mode,
            "threads": args.threads,
            "settings": cfg,
            "machine": machine_info(),
        }
        log(
            f"machine: {results['machine']['cpu']}, {results['machine']['cores']} cores, {results['machine']['runtime']}"
        )
        results["vgg"] = section_vgg(keras, workdir, cfg, args.threads, log)
        results["round_to"] = section_round_to(keras, workdir, cfg, args.threads, log)
        log(f"round_to recommendation: {results['round_to']['recommendation']}")
        if args.skip_tfmot:
            results["tfmot"] = {"skipped": True, "reason": "--skip-tfmot", "hint": ""}
        else:
            vgg_paths = {
                "dense": workdir / "vgg_dense.tflite",
                "pruned": workdir / "vgg_pruned.tflite",
            }
            results["tfmot"] = section_tfmot(
                workdir, cfg, args.threads, args.tfmot_site, vgg_paths, log
            )
        results["machine"]["loadavg_end"] = os.getloadavg()
        results["elapsed_s"] = time.time() - started

    (args.out / "latency.json").write_text(json.dumps(results, indent=2, default=str))
    write_markdown(results, args.out / "latency.md")
    write_plot(results, args.out / "latency.png")
    log(f"wrote {args.out / 'latency.json'}, latency.md, latency.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
