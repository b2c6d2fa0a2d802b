#!/usr/bin/env python
"""Fashion-MNIST: Grow-Push-Prune against other ways to get a small, fast CNN.

One base CNN (``tools/fmnist_common.py``: conv-BN-ReLU 24-24-pool-48-48-pool,
Flatten, Dense(384)-BN-ReLU, Dropout, Dense(10); ~0.95M params, 11.2M MACs;
Adam + cosine decay, BatchNorm momentum 0.9, no augmentation) is trained once
and cached in ``benchmarks/cache/``. It is then compressed to 50%, 25% and 10%
of its MACs by ``tf_gpp.compress`` with

* ``gpp``          push + GPP utility (``gpp_lda``: LDA utility, deconv trace, the
                   library default) — Grow-Push-Prune without grow;
* ``gpp_nopush``   the same utility without pushing — the CVIU paper's LDA-prune;
* ``l1``, ``bn_scale``, ``taylor``, ``random`` — the usual criteria;

all with the same data and the same number of training epochs per round
(GPP: 1 push epoch + 1 fine-tune epoch; the others: 2 fine-tune epochs), the
same global MACs schedule and the same learning-rate schedule (cosine decay
within each ``fit``). Two references:

* ``scratch``: the same architecture shrunk uniformly by a width multiplier to
  about the same MACs, trained from scratch with the base recipe;
* ``tfmot``: ``prune_low_magnitude`` (unstructured) from the same base weights
  to sparsity 1 - budget, same fine-tuning epochs and data, run in a tf_keras
  subprocess (the approach of ``tools/bench_latency.py``); its latency is real
  (TFLite files with and without the converter's sparsity optimisation).

Per model: test accuracy, params (non-zero for tfmot), MACs, ``.tflite`` size and
LiteRT 1-thread latency, all models timed interleaved in one loop with the base.

Every job (method x budget x seed) runs in its own subprocess (no memory growth,
a crash loses one job) and caches its result in the cache directory, so an
interrupted run continues where it stopped.

Usage::

    python tools/benchmark_fashion_mnist.py --full            # ~60-80 min on 2 shared cores
    python tools/benchmark_fashion_mnist.py --quick --out /tmp/x   # ~3-5 min smoke run

Writes ``fashion_mnist.{json,md,png}`` (``fashion_mnist_quick.*`` with ``--quick``
unless ``--out`` is given) into ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
if str(TOOLS) not in sys.path:
    sys.path.insert(0, str(TOOLS))
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import fmnist_common as fc  # noqa: E402

PRUNE_METHODS = {
    "gpp": {"importance": "gpp_lda", "push": True, "label": "GPP (push + LDA utility, deconv trace)"},
    "gpp_nopush": {"importance": "gpp_lda", "push": False, "label": "LDA-prune (LDA utility, no push)"},
    "l1": {"importance": "l1", "push": False, "label": "L1 filter norm"},
    "bn_scale": {"importance": "bn_scale", "push": False, "label": "BN scale"},
    "taylor": {"importance": "taylor", "push": False, "label": "Taylor (1st order)"},
    "random": {"importance": "random", "push": False, "label": "random"},
}
REFERENCE_METHODS = {
    "scratch": "width multiplier, from scratch",
    "tfmot": "tfmot prune_low_magnitude (unstructured)",
}

SETTINGS: dict[str, dict[str, Any]] = {
    "full": {
        "budgets": [0.5, 0.25, 0.1],
        "methods": [*PRUNE_METHODS, "scratch", "tfmot"],
        "seeds": 1,
        # compression data: a stratified subset of the 54k training split, the
        # validation subset steers nothing (max_accuracy_drop=1: every round kept).
        "compress_train": 10000,
        "compress_val": 1000,
        "limit_test": None,  # the full 10k test set
        "rounds": 2,
        "epochs_per_round": 2,  # GPP: 1 push + 1 fine-tune; others: 2 fine-tune
        "lr": 1e-3,
        "batch_size": 128,
        # at the 10% budget every structured method must also fit in 50K params
        # (issue #6's goal: <= 50K params and <= 10% MACs)
        "params_cap": {"0.1": 50_000},
        "scratch_epochs": 4,
        "scratch_train": None,  # the full 54k training split
        "latency_rounds": 400,
        "latency_warmup": 20,
    },
    "quick": {
        "budgets": [0.25],
        "methods": ["gpp", "gpp_nopush", "l1", "scratch", "tfmot"],
        "seeds": 1,
        "compress_train": 2000,
        "compress_val": 200,
        "limit_test": 1000,
        "rounds": 1,
        "epochs_per_round": 2,
        "lr": 1e-3,
        "batch_size": 128,
        "scratch_epochs": 3,
        "scratch_train": 2000,
        "latency_rounds": 60,
        "latency_warmup": 5,
    },
}


def _env() -> dict[str, str]:
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")


def job_id(method: str, budget: float, seed: int) -> str:
    return f"{method}_b{int(round(100 * budget)):02d}_s{seed}"


# --------------------------------------------------------------------------- worker side


def _compress_data(cfg: dict, mode: str) -> dict:
    data = fc.load_arrays(fc.BASE_RECIPES[mode]["limit_train"], cfg["limit_test"])
    import numpy as np

    import tf_gpp

    def take(x: Any, y: Any, n: int) -> tuple[Any, Any]:
        if n >= len(y):
            return x, y
        idx = np.sort(tf_gpp.data.stratified_order(y, 1)[:n])
        return x[idx], y[idx]

    data["x_ctrain"], data["y_ctrain"] = take(data["x_train"], data["y_train"], cfg["compress_train"])
    data["x_cval"], data["y_cval"] = take(data["x_val"], data["y_val"], cfg["compress_val"])
    return data


def _sizes(path: Path) -> dict[str, int]:
    from bench_latency import _sizes as sizes  # the latency benchmark's own helper

    return sizes(path)


def _widths(model: Any) -> list[int]:
    return [int(getattr(la, "filters", None) or la.units) for la in model.layers
            if hasattr(la, "filters") or hasattr(la, "units")]


def run_prune_job(job: dict, cfg: dict, mode: str, base_path: Path, workdir: Path) -> dict:
    import keras

    import tf_gpp
    from tf_gpp.importance import RandomImportance

    method, budget, seed = job["method"], job["budget"], job["seed"]
    spec = PRUNE_METHODS[method]
    data = _compress_data(cfg, mode)
    base = keras.models.load_model(base_path)
    if spec["importance"] == "random":
        importance = RandomImportance(seed=seed)
    else:
        importance = spec["importance"]
    per_round = cfg["epochs_per_round"]
    push = spec["push"]
    t0 = time.time()
    result = tf_gpp.compress(
        base, (data["x_ctrain"], data["y_ctrain"]), (data["x_cval"], data["y_cval"]),
        target_macs=budget, target_params=cfg.get("params_cap", {}).get(str(budget)), importance=importance, push=push, strategy="global",
        rounds=cfg["rounds"], push_epochs=per_round // 2 if push else 0,
        finetune_epochs=per_round - per_round // 2 if push else per_round,
        max_accuracy_drop=1.0, learning_rate=cfg["lr"], batch_size=cfg["batch_size"],
        seed=seed, verbose=1, checkpoint_dir=workdir / f"{job['id']}_rounds",
        lr_schedule="cosine",  # the library default, spelled out: every method gets the same schedule
    )
    seconds = time.time() - t0
    model = result.model
    prof = tf_gpp.profile(model)
    acc = fc.evaluate(keras, model, data["x_test"], data["y_test"])
    tfl = tf_gpp.convert.to_tflite(model, workdir / f"{job['id']}.tflite")
    return {
        **job,
        "accuracy": acc,
        "params": int(prof.params),
        "params_nonzero": int(prof.params),
        "macs": int(prof.macs),
        "widths": _widths(model),
        "tflite": str(tfl),
        **_sizes(tfl),
        "seconds": round(seconds, 1),
        "rounds": result.to_dict()["history"],
        "push_epochs_per_round": per_round // 2 if push else 0,
        "finetune_epochs_per_round": per_round - per_round // 2 if push else per_round,
    }


def run_scratch_job(job: dict, cfg: dict, mode: str, base_info: dict, workdir: Path) -> dict:
    import keras

    import tf_gpp

    budget, seed = job["budget"], job["seed"]
    recipe = fc.BASE_RECIPES[mode]
    mult, widths, dense = fc.width_multiplier_for(budget * base_info["macs"])
    limit = cfg["scratch_train"]
    data = fc.load_arrays(limit if limit is None else int(limit / 0.9), cfg["limit_test"])
    keras.utils.set_random_seed(seed)
    model = fc.build_cnn(keras, widths, dense, name="scratch", bn_momentum=recipe["bn_momentum"],
                         dropout=recipe["dropout"])
    seconds = fc.train_classifier(keras, model, data, cfg["scratch_epochs"], recipe["lr"],
                                  recipe["batch_size"], seed)
    prof = tf_gpp.profile(model)
    tfl = tf_gpp.convert.to_tflite(model, workdir / f"{job['id']}.tflite")
    return {
        **job,
        "accuracy": fc.evaluate(keras, model, data["x_test"], data["y_test"]),
        "params": int(prof.params),
        "params_nonzero": int(prof.params),
        "macs": int(prof.macs),
        "widths": [*widths, dense, fc.NUM_CLASSES],
        "width_multiplier": round(mult, 4),
        "tflite": str(tfl),
        **_sizes(tfl),
        "seconds": round(seconds, 1),
        "train_images": int(len(data["y_train"])),
        "epochs": cfg["scratch_epochs"],
    }


def run_tfmot_job(job: dict, cfg: dict, mode: str, base_path: Path, workdir: Path) -> dict:
    """In a TF_USE_LEGACY_KERAS=1 subprocess: base weights -> tf_keras model ->
    prune_low_magnitude (polynomial decay to the sparsity over the first 70% of the
    fine-tuning steps) -> strip -> two .tflite files (plain and with the converter's
    EXPERIMENTAL_SPARSITY optimisation)."""
    import numpy as np
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras

    budget, seed = job["budget"], job["seed"]
    sparsity = 1.0 - budget
    weights_file = workdir / "base_weights.npz"
    with np.load(weights_file) as f:
        weights = [f[f"w{i}"] for i in range(len(f.files))]
    recipe = fc.BASE_RECIPES[mode]
    tf_keras.utils.set_random_seed(seed)
    model = fc.build_cnn(tf_keras, recipe["widths"], recipe["dense"], bn_momentum=recipe["bn_momentum"],
                         dropout=recipe["dropout"])
    model.set_weights(weights)
    data = _compress_data(cfg, mode)
    x, y = data["x_ctrain"], data["y_ctrain"]
    epochs = cfg["rounds"] * cfg["epochs_per_round"]
    steps = epochs * fc.batches_per_epoch(len(y), cfg["batch_size"])
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0, final_sparsity=sparsity, begin_step=0,
        end_step=max(1, int(0.7 * steps)), frequency=max(1, steps // 20),
    )
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    pruned.compile(
        optimizer=tf_keras.optimizers.Adam(tf_keras.optimizers.schedules.CosineDecay(cfg["lr"], steps)),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"],
    )
    t0 = time.time()
    pruned.fit(x, y, batch_size=cfg["batch_size"], epochs=epochs, verbose=0, shuffle=True,
               callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    seconds = time.time() - t0
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    logits = stripped.predict(data["x_test"], batch_size=500, verbose=0)
    acc = float(np.mean(np.argmax(logits, -1) == data["y_test"]))
    density, nonzero, total = {}, 0, 0
    for layer in stripped.layers:
        for w in layer.get_weights():
            nonzero += int(np.count_nonzero(w))
            total += int(w.size)
        if getattr(layer, "kernel", None) is not None:
            k = np.asarray(layer.kernel)
            density[layer.name] = float(np.count_nonzero(k) / k.size)
    plain = workdir / f"{job['id']}.tflite"
    plain.write_bytes(tf.lite.TFLiteConverter.from_keras_model(stripped).convert())
    conv = tf.lite.TFLiteConverter.from_keras_model(stripped)
    conv.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    sparse = workdir / f"{job['id']}_sparse.tflite"
    sparse.write_bytes(conv.convert())
    return {
        **job,
        "accuracy": acc,
        "params": total,
        "params_nonzero": nonzero,
        "kernel_density": density,
        "target_sparsity": sparsity,
        "tflite": str(plain),
        **_sizes(plain),
        "tflite_sparse": str(sparse),
        "sparse_sizes": _sizes(sparse),
        "seconds": round(seconds, 1),
        "epochs": epochs,
        "versions": {"tf_keras": tf_keras.__version__, "tfmot": tfmot.__version__},
    }


def worker(job_file: Path) -> int:
    spec = json.loads(job_file.read_text())
    job, cfg, mode = spec["job"], spec["cfg"], spec["mode"]
    workdir = Path(spec["workdir"])
    workdir.mkdir(parents=True, exist_ok=True)
    if job["method"] == "tfmot":
        out = run_tfmot_job(job, cfg, mode, Path(spec["base_path"]), workdir)
    elif job["method"] == "scratch":
        out = run_scratch_job(job, cfg, mode, spec["base_info"], workdir)
    else:
        out = run_prune_job(job, cfg, mode, Path(spec["base_path"]), workdir)
    tmp = Path(spec["result"]).with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=2))
    tmp.replace(spec["result"])
    return 0


# --------------------------------------------------------------------------- orchestration


def _run_subprocess(args: list[str], env: dict, log: Any, logfile: Path) -> int:
    with open(logfile, "a") as f:
        f.write(f"\n=== {time.strftime('%H:%M:%S')} {' '.join(args)}\n")
        f.flush()
        proc = subprocess.run(args, env=env, stdout=f, stderr=subprocess.STDOUT, check=False)
    return proc.returncode


def _run_in_process(spec_file: Path, log: Any) -> int:
    """Run a job in this process (saves the TensorFlow start-up of a subprocess)."""
    import traceback

    import keras

    keras.backend.clear_session()
    try:
        return worker(spec_file)
    except Exception:  # noqa: BLE001 - a failed job is reported and skipped, like a crashed subprocess
        log(traceback.format_exc())
        return 1


def ensure_base(mode: str, cfg: dict, cache: Path, log: Any) -> tuple[Path, dict]:
    recipe = fc.BASE_RECIPES[mode]
    model_path, info_path = fc.base_paths(cache, recipe)
    if not (model_path.exists() and info_path.exists()):
        log(f"training the base CNN ({recipe['epochs']} epochs) -> {model_path}")
        code = (
            f"import sys; sys.path.insert(0, {str(TOOLS)!r}); import fmnist_common as fc; "
            f"from pathlib import Path; fc.train_base(Path({str(cache)!r}), fc.BASE_RECIPES[{mode!r}], "
            f"{cfg['limit_test']!r})"
        )
        rc = _run_subprocess([sys.executable, "-c", code], _env(), log, cache / f"log_{mode}.txt")
        if rc != 0 or not info_path.exists():
            raise SystemExit(f"base training failed (exit {rc}); see {cache / f'log_{mode}.txt'}")
    info = json.loads(info_path.read_text())
    log(f"base: {info['params']:,} params, {info['macs']:,} MACs, test accuracy {info['test_accuracy']:.4f} "
        f"(trained in {info['train_seconds']:.0f}s)")
    return model_path, info


def export_base(base_path: Path, workdir: Path) -> dict:
    """Base .tflite and its weights as npz (for the tf_keras subprocess)."""
    import keras
    import numpy as np

    import tf_gpp

    workdir.mkdir(parents=True, exist_ok=True)
    tfl = workdir / "base.tflite"
    npz = workdir / "base_weights.npz"
    if not tfl.exists() or not npz.exists():
        model = keras.models.load_model(base_path)
        tf_gpp.convert.to_tflite(model, tfl)
        np.savez(npz, **{f"w{i}": w for i, w in enumerate(model.get_weights())})
    return {"tflite": str(tfl), **_sizes(tfl)}


def run_jobs(jobs: list[dict], cfg: dict, mode: str, cache: Path, base_path: Path, base_info: dict,
             tfmot_site: str | None, log: Any, in_process: bool = False) -> dict[str, dict]:
    results: dict[str, dict] = {}
    jobdir = cache / "jobs"
    jobdir.mkdir(parents=True, exist_ok=True)
    for i, job in enumerate(jobs, 1):
        result_file = jobdir / f"{job['id']}.json"
        if result_file.exists():
            results[job["id"]] = json.loads(result_file.read_text())
            log(f"[{i}/{len(jobs)}] {job['id']}: cached, accuracy {results[job['id']]['accuracy']:.4f}")
            continue
        spec = {"job": job, "cfg": cfg, "mode": mode, "workdir": str(cache / "models"),
                "base_path": str(base_path), "base_info": base_info, "result": str(result_file)}
        spec_file = jobdir / f"{job['id']}.spec.json"
        spec_file.write_text(json.dumps(spec, indent=2))
        env = _env()
        if job["method"] == "tfmot":
            env["TF_USE_LEGACY_KERAS"] = "1"
            if tfmot_site:
                env["PYTHONPATH"] = os.pathsep.join(filter(None, [tfmot_site, env.get("PYTHONPATH")]))
        t0 = time.time()
        if in_process and job["method"] != "tfmot":
            rc = _run_in_process(spec_file, log)
        else:
            rc = _run_subprocess([sys.executable, str(Path(__file__).resolve()), "--worker", str(spec_file)],
                                 env, log, cache / f"log_{mode}.txt")
        if rc != 0 or not result_file.exists():
            log(f"[{i}/{len(jobs)}] {job['id']}: FAILED (exit {rc}) after {time.time() - t0:.0f}s; "
                f"see {cache / f'log_{mode}.txt'}")
            continue
        results[job["id"]] = json.loads(result_file.read_text())
        r = results[job["id"]]
        log(f"[{i}/{len(jobs)}] {job['id']}: accuracy {r['accuracy']:.4f}, {r['params_nonzero']:,} params "
            f"(non-zero), {r.get('macs', base_info['macs']):,} MACs, {time.time() - t0:.0f}s")
    return results


def measure_latency(base_tflite: str, results: dict[str, dict], cfg: dict, log: Any) -> dict:
    """All seed-0 models and the base, interleaved in one loop, 1 thread."""
    from tf_gpp.convert import benchmark_interleaved

    names, paths = ["base"], [base_tflite]
    for jid, r in sorted(results.items()):
        if r["seed"] != 0:
            continue
        names.append(jid)
        paths.append(r["tflite"])
        if r.get("tflite_sparse"):
            names.append(jid + "+sparse_convert")
            paths.append(r["tflite_sparse"])
    log(f"latency: {len(paths)} models interleaved, {cfg['latency_rounds']} rounds, 1 thread")
    load0 = os.getloadavg()
    reports = benchmark_interleaved(paths, threads=1, rounds=cfg["latency_rounds"], warmup=cfg["latency_warmup"])
    by = dict(zip(names, reports, strict=True))
    base = by["base"]
    out = {"loadavg_before": load0, "loadavg_after": os.getloadavg(), "models": {}}
    for name, rep in by.items():
        out["models"][name] = {
            "median_ms": rep.median_ms, "min_ms": rep.min_ms, "p90_ms": rep.p90_ms,
            "cpu_median_ms": rep.cpu_median_ms,
            "speedup_median": base.median_ms / rep.median_ms,
            "speedup_cpu": (base.cpu_median_ms / rep.cpu_median_ms) if rep.cpu_median_ms else None,
            "size_bytes": rep.size_bytes,
        }
    return out


# --------------------------------------------------------------------------- aggregation & report


def aggregate(results: dict[str, dict], latency: dict, base_info: dict, cfg: dict) -> list[dict]:
    import numpy as np

    rows = []
    for method in cfg["methods"]:
        for budget in cfg["budgets"]:
            runs = [r for r in results.values() if r["method"] == method and r["budget"] == budget]
            if not runs:
                continue
            accs = np.array([r["accuracy"] for r in runs])
            r0 = min(runs, key=lambda r: r["seed"])
            lat = latency["models"].get(r0["id"], {})
            row = {
                "method": method,
                "label": PRUNE_METHODS.get(method, {}).get("label") or REFERENCE_METHODS[method],
                "budget": budget,
                "seeds": len(runs),
                "accuracy_mean": float(accs.mean()),
                "accuracy_std": float(accs.std(ddof=1)) if len(runs) > 1 else None,
                "accuracies": accs.tolist(),
                "params": r0["params"],
                "params_nonzero": r0["params_nonzero"],
                "macs": r0.get("macs", base_info["macs"]),
                "macs_ratio": r0.get("macs", base_info["macs"]) / base_info["macs"],
                "tflite_bytes": r0["size_bytes"],
                "tflite_gzip_bytes": r0["gzip_bytes"],
                "latency_median_ms": lat.get("median_ms"),
                "latency_cpu_ms": lat.get("cpu_median_ms"),
                "speedup_median": lat.get("speedup_median"),
                "speedup_cpu": lat.get("speedup_cpu"),
                "seconds": float(np.mean([r["seconds"] for r in runs])),
                "widths": r0.get("widths"),
            }
            if method == "tfmot":
                sp = latency["models"].get(r0["id"] + "+sparse_convert", {})
                row.update({
                    "sparse_convert_tflite_bytes": r0["sparse_sizes"]["size_bytes"],
                    "sparse_convert_latency_median_ms": sp.get("median_ms"),
                    "sparse_convert_latency_cpu_ms": sp.get("cpu_median_ms"),
                    "sparse_convert_speedup_cpu": sp.get("speedup_cpu"),
                    "effective_macs": _effective_macs(r0, base_info),
                })
            rows.append(row)
    return rows


def _effective_macs(r: dict, base_info: dict) -> int | None:
    layers = base_info.get("layer_macs")
    if not layers:
        return None
    return int(sum(m * r["kernel_density"].get(name, 1.0) for name, m in layers.items()))



def _acc(row: dict) -> str:
    s = f"{100 * row['accuracy_mean']:.2f}"
    if row["accuracy_std"] is not None:
        s += f" ± {100 * row['accuracy_std']:.2f} (n={row['seeds']})"
    return s


def _f(x: float | None, d: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{d}f}"


def conclusions(rows: list[dict], base_info: dict, cfg: dict) -> list[str]:
    """Data-driven statements (computed from the rows, so they cannot drift from the table)."""
    out = []
    structured = [m for m in PRUNE_METHODS if m in cfg["methods"]]
    for budget in cfg["budgets"]:
        at = {r["method"]: r for r in rows if r["budget"] == budget}
        if "gpp" not in at:
            continue
        g = at["gpp"]
        others = {m: r for m, r in at.items() if m in structured and m != "gpp"}
        parts = []
        if others:
            best_m, best = max(others.items(), key=lambda kv: kv[1]["accuracy_mean"])
            diff = 100 * (g["accuracy_mean"] - best["accuracy_mean"])
            rank = 1 + sum(r["accuracy_mean"] > g["accuracy_mean"] for r in others.values())
            parts.append(f"GPP ranks {rank}/{len(others) + 1} among the structured criteria "
                         f"({100 * g['accuracy_mean']:.2f}% vs best other, {best_m}, "
                         f"{100 * best['accuracy_mean']:.2f}%: {diff:+.2f} pts)")
        if "gpp_nopush" in at:
            parts.append(f"push vs no push {100 * (g['accuracy_mean'] - at['gpp_nopush']['accuracy_mean']):+.2f} pts")
        if "scratch" in at:
            parts.append(f"vs width-multiplier scratch {100 * (g['accuracy_mean'] - at['scratch']['accuracy_mean']):+.2f} pts")
        if "tfmot" in at:
            t = at["tfmot"]
            parts.append(f"vs tfmot unstructured {100 * (g['accuracy_mean'] - t['accuracy_mean']):+.2f} pts "
                         f"(tfmot keeps the base's latency: CPU speed-up {_f(t['speedup_cpu'], 2)}x "
                         f"vs GPP {_f(g['speedup_cpu'], 2)}x)")
        out.append(f"- **{int(100 * budget)}% MACs**: " + "; ".join(parts) + ".")
    return out


def write_markdown(payload: dict, path: Path) -> None:
    rows, base, cfg = payload["rows"], payload["base"], payload["settings"]
    m = payload["machine"]
    lines = [
        f"# Fashion-MNIST compression benchmark ({payload['mode']})",
        "",
        f"Generated by `python tools/benchmark_fashion_mnist.py {'--quick' if payload['mode'] == 'quick' else '--full'}`. "
        f"Machine: {m['cpu']} ({m['cores']} cores, shared; load average {payload['loadavg_start'][0]:.1f} at start), "
        f"Python {m['python']}, TensorFlow {m['tensorflow']}, Keras {m['keras']}, LiteRT {m['ai_edge_litert']}; "
        f"{m['date']}. Wall time {payload['elapsed_s'] / 60:.1f} min "
        f"(base training {base['train_seconds'] / 60:.1f} min, cached).",
        "",
        "## Base model and budget",
        "",
        f"- Base CNN: conv-BN-ReLU {'-'.join(map(str, base['recipe']['widths'][:2]))}-pool-"
        f"{'-'.join(map(str, base['recipe']['widths'][2:]))}-pool, Flatten, Dense({base['recipe']['dense']})-BN-ReLU, "
        f"Dropout({base['recipe']['dropout']}), Dense(10); {base['params']:,} params, {base['macs'] / 1e6:.2f} M MACs. "
        f"Recipe: {base['recipe']['optimizer']} from lr {base['recipe']['lr']}, batch {base['recipe']['batch_size']}, "
        f"{base['recipe']['epochs']} epochs on {base['n_train']:,} images, BatchNorm momentum {base['recipe']['bn_momentum']}, "
        f"no augmentation. **Test accuracy {100 * base['test_accuracy']:.2f}%** on {base['n_test']:,} test images.",
        f"- Compression (every structured method): `tf_gpp.compress(strategy='global', rounds={cfg['rounds']}, "
        f"max_accuracy_drop=1.0, round_to=1)` on a stratified subset of {cfg['compress_train']:,} training images "
        f"(validation {cfg['compress_val']:,} images, steers nothing), {cfg['epochs_per_round']} training epochs per "
        f"round for every method (GPP: 1 push + 1 fine-tune; others: {cfg['epochs_per_round']} fine-tune), "
        f"Adam lr {cfg['lr']} with cosine decay inside each fit, batch {cfg['batch_size']}. MACs target per round "
        f"shrinks geometrically to the budget."
        + "".join(f" At the {int(100 * float(b))}% budget every structured method must also fit in {n:,} params."
                  for b, n in cfg.get("params_cap", {}).items()),
        f"- tfmot: same base weights, same data, {cfg['rounds'] * cfg['epochs_per_round']} epochs, "
        "`prune_low_magnitude` with polynomial decay to sparsity 1 - budget over the first 70% of the steps; "
        "params column shows non-zero weights; latency from the plain .tflite and from the converter's "
        "`EXPERIMENTAL_SPARSITY` file.",
        f"- scratch: the base architecture with every width multiplied by m (MACs closest to the budget), "
        f"trained from scratch with the base recipe for {cfg['scratch_epochs']} epochs on "
        f"{'the full training split' if cfg['scratch_train'] is None else str(cfg['scratch_train']) + ' images'} "
        f"(a smaller budget than the base's {base['recipe']['epochs']} epochs + compression: a lower bound for scratch).",
        f"- Seeds: {cfg['seeds']} per cell"
        + (f" for {', '.join(cfg['seed_methods'])}, 1 for the others" if cfg.get("seed_methods") else "")
        + "; accuracy is the mean ± std over seeds where there are several, a single run otherwise "
        "(the test-set standard error alone is ~0.27 pts at 92%; differences below ~0.3 pts are noise).",
        "- Latency: LiteRT (ai-edge-litert) `invoke()`, batch 1, 1 thread, XNNPACK, every model and the base "
        f"round-robin in one loop ({cfg['latency_rounds']} rounds). *CPU ms* is the benchmark thread's CPU time "
        "(robust to the other processes on this shared machine), *speed-up* = base / model.",
        "",
        "## Results",
        "",
        "| method | MACs budget | test acc % | params (non-zero) | MACs (M) | MACs % | .tflite KiB | median ms | CPU ms | speed-up (CPU) | widths |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    bl = payload["latency"]["models"]["base"]
    lines.append(f"| base | 100% | {100 * base['test_accuracy']:.2f} | {base['params']:,} | {base['macs'] / 1e6:.2f} | 100.0 | "
                 f"{base['tflite']['size_bytes'] / 1024:.0f} | {bl['median_ms']:.3f} | {_f(bl['cpu_median_ms'])} | 1.00 | "
                 f"{'-'.join(map(str, base['recipe']['widths']))}-{base['recipe']['dense']} |")
    for budget in cfg["budgets"]:
        for r in (r for r in rows if r["budget"] == budget):
            macs_note = (f"{r['macs'] / 1e6:.2f} (eff. {r['effective_macs'] / 1e6:.2f})"
                         if r.get("effective_macs") else f"{r['macs'] / 1e6:.2f}")
            lines.append(
                f"| {r['method']} | {int(100 * budget)}% | {_acc(r)} | {r['params_nonzero']:,} | {macs_note} | "
                f"{100 * r['macs_ratio']:.1f} | {r['tflite_bytes'] / 1024:.0f} | {_f(r['latency_median_ms'])} | "
                f"{_f(r['latency_cpu_ms'])} | {_f(r['speedup_cpu'], 2)} | "
                f"{'-'.join(map(str, r['widths'])) if r.get('widths') else 'dense (masked)'} |"
            )
            if r["method"] == "tfmot":
                lines.append(
                    f"| tfmot + sparsity converter | {int(100 * budget)}% | {_acc(r)} | {r['params_nonzero']:,} | "
                    f"{macs_note} | {100 * r['macs_ratio']:.1f} | {r['sparse_convert_tflite_bytes'] / 1024:.0f} | "
                    f"{_f(r['sparse_convert_latency_median_ms'])} | {_f(r['sparse_convert_latency_cpu_ms'])} | "
                    f"{_f(r['sparse_convert_speedup_cpu'], 2)} | dense (masked) |")
    goal = [r for r in rows if r["method"] == "gpp" and r["budget"] <= 0.1]
    lines += ["", "## What this shows", ""]
    lines += conclusions(rows, base, cfg)
    if goal:
        g = goal[0]
        ok_size = g["params"] <= 50_000
        ok_acc = g["accuracy_mean"] >= 0.93
        lines.append(
            f"- Goal \"<= 50K params at <= 10% MACs with 93.0%\": GPP reaches {100 * g['accuracy_mean']:.2f}% with "
            f"{g['params']:,} params at {100 * g['macs_ratio']:.1f}% MACs — size {'met' if ok_size else 'not met'}, "
            f"accuracy {'met' if ok_acc else 'not met'}."
        )
    lines += [f"- {note}" for note in payload.get("notes", [])]
    lines += ["", "![Pareto](" + path.with_suffix(".png").name + ")", ""]
    fc_path = path
    fc_path.write_text("\n".join(lines) + "\n")


def write_plot(payload: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, base = payload["rows"], payload["base"]
    bl = payload["latency"]["models"]["base"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    cmap = plt.get_cmap("tab10")
    for ax, xkey, xlabel in ((axes[0], "macs", "MACs per image (M, log)"),
                             (axes[1], "latency_cpu_ms", "LiteRT 1-thread CPU ms per image (log)")):
        for i, m in enumerate(methods):
            pts = sorted((r for r in rows if r["method"] == m and r.get(xkey)), key=lambda r: r[xkey])
            if not pts:
                continue
            xs = [r[xkey] / (1e6 if xkey == "macs" else 1) for r in pts]
            ys = [100 * r["accuracy_mean"] for r in pts]
            err = [100 * (r["accuracy_std"] or 0) for r in pts]
            style = {"marker": "o", "lw": 2.2 if m == "gpp" else 1.2, "ms": 6,
                     "ls": "--" if m in REFERENCE_METHODS else "-"}
            ax.errorbar(xs, ys, yerr=err, color=cmap(i), label=m, capsize=2, **style)
        bx = base["macs"] / 1e6 if xkey == "macs" else bl["cpu_median_ms"]
        ax.plot([bx], [100 * base["test_accuracy"]], "k*", ms=14, label="base")
        ax.axhline(93.0, color="grey", lw=0.8, ls=":", label="93.0% goal")
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3, which="both")
        accs = [100 * r["accuracy_mean"] for r in rows] + [100 * base["test_accuracy"]]
        ax.set_ylim(min(accs) - 1.0, max(max(accs), 93.0) + 0.8)  # every point visible
    axes[0].set_title("accuracy vs MACs (tfmot at its executed = dense MACs)")
    axes[1].set_title("accuracy vs measured latency (interleaved, 1 thread)")
    axes[1].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"Fashion-MNIST, {payload['mode']} run · {payload['machine']['cpu']} · "
                 f"TF {payload['machine']['tensorflow']} · {payload['machine']['date']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="small data, one budget, few methods (~3-5 min)")
    g.add_argument("--full", action="store_true", help="the full benchmark (default)")
    parser.add_argument("--out", type=Path, help="output directory (default benchmarks/results)")
    parser.add_argument("--cache", type=Path, help="cache directory (default benchmarks/cache/fashion_mnist_<mode>)")
    parser.add_argument("--seeds", type=int, help="seeds per cell (default: 1)")
    parser.add_argument("--seed-methods", help="comma-separated methods that get --seeds seeds (default: all); "
                        "the others run seed 0 only")
    parser.add_argument("--methods", help="comma-separated subset of methods")
    parser.add_argument("--tfmot-site", default=os.environ.get("TF_GPP_TFMOT_SITE"),
                        help="directory holding tf_keras and tensorflow_model_optimization (pip install --target)")
    parser.add_argument("--note", action="append", default=[], help="a line added to the .md conclusions")
    parser.add_argument("--in-process", dest="in_process", action=argparse.BooleanOptionalAction, default=None,
                        help="run the Keras 3 jobs in this process (default: yes for --quick, no for --full; "
                        "tfmot always runs in a tf_keras subprocess)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(Path(args.worker))

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    mode = "quick" if args.quick else "full"
    cfg = dict(SETTINGS[mode])
    if args.seeds:
        cfg["seeds"] = args.seeds
    cfg["seed_methods"] = [m for m in (args.seed_methods or "").split(",") if m] or None
    if args.methods:
        cfg["methods"] = [m for m in args.methods.split(",") if m]
    unknown = set(cfg["methods"]) - set(PRUNE_METHODS) - set(REFERENCE_METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}")
    out = args.out or fc.REPO / "benchmarks" / "results"
    stem = "fashion_mnist" if (mode == "full" or args.out) else "fashion_mnist_quick"
    cache = args.cache or fc.CACHE / f"fashion_mnist_{mode}"
    cache.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    load_start = os.getloadavg()

    def log(msg: str) -> None:
        print(f"[{time.time() - started:7.1f}s] {msg}", flush=True)

    base_path, base_info = ensure_base(mode, cfg, fc.CACHE if args.cache is None else cache, log)
    from _report import machine_info

    import tf_gpp

    base_model = __import__("keras").models.load_model(base_path)
    prof = tf_gpp.profile(base_model)
    base_info["layer_macs"] = {la.name: la.macs for la in prof.layers if la.macs}
    del base_model
    base_info["tflite"] = export_base(base_path, cache / "models")

    jobs = [
        {"id": job_id(m, b, s), "method": m, "budget": b, "seed": s}
        for b in cfg["budgets"] for m in cfg["methods"]
        for s in range(cfg["seeds"] if cfg.get("seed_methods") is None or m in cfg["seed_methods"] else 1)
    ]
    in_process = args.in_process if args.in_process is not None else mode == "quick"
    results = run_jobs(jobs, cfg, mode, cache, base_path, base_info, args.tfmot_site, log, in_process)
    if not results:
        raise SystemExit("no job finished")
    latency = measure_latency(base_info["tflite"]["tflite"], results, cfg, log)
    rows = aggregate(results, latency, base_info, cfg)
    payload = {
        "mode": mode,
        "settings": cfg,
        "machine": machine_info(),
        "loadavg_start": load_start,
        "loadavg_end": os.getloadavg(),
        "elapsed_s": time.time() - started,
        "job_seconds": {k: v["seconds"] for k, v in results.items()},
        "base": {k: v for k, v in base_info.items() if k != "layer_macs"},
        "rows": rows,
        "latency": latency,
        "jobs": results,
        "failed_jobs": sorted({j["id"] for j in jobs} - set(results)),
        "notes": args.note,
    }
    from _report import write_atomic

    write_atomic(out / f"{stem}.json", json.dumps(payload, indent=2, default=str))
    write_markdown(payload, out / f"{stem}.md")
    write_plot(payload, out / f"{stem}.png")
    log(f"wrote {out / stem}.json/.md/.png")
    return 0 if not payload["failed_jobs"] else 1


if __name__ == "__main__":
    sys.exit(main())
