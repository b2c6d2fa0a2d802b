#!/usr/bin/env python
"""Fashion-MNIST: Grow-Push-Prune against other ways to get a small, fast CNN (fair protocol).

One base CNN (``tools/fmnist_common.py``: conv-BN-ReLU 24-24-pool-48-48-pool,
Flatten, Dense(384)-BN-ReLU, Dropout, Dense(10); ~0.95M params, 11.2M MACs;
Adam + cosine decay, BatchNorm momentum 0.9, no augmentation) is trained once
on the full training split (54k images, 6k validation) and cached in
``benchmarks/cache/``. It is then compressed to 50%, 25% and 10% of its MACs
(at 10% also to <= 50K params) by ``tf_gpp.compress`` with

* ``gpp``       the LDA utility with pushing (the paper's Grow-Push-Prune);
* ``gpp_lda``   the LDA utility without pushing — the CVIU paper's LDA-prune;
* ``l1``, ``bn_scale``, ``taylor``, ``random`` — the usual criteria;

every one with compress's other defaults at run time (distillation, BatchNorm
re-estimation, ...; recorded in the JSON). The criterion that is compress's default
(importance and push, from ``inspect.signature(tf_gpp.compress)``) is marked in the
report and is the one the conclusions compare;

all fine-tuning on the **full training split**: every compress "epoch" is a pass
of ``unit_epochs`` of the training split drawn afresh from all 54k images, the
same number of units per round for every method (pushing methods: half push,
half fine-tune), the same rounds, MACs schedule and learning-rate schedule.
Three references:

* ``scratch``: the base architecture narrowed by a width multiplier to about the
  same MACs, trained from scratch with the base recipe for the **same total
  epochs** as base training plus compression (the same images seen);
* ``scratch_time``: the same net trained for the **same wall time** as base
  training plus one compression (the default criterion at that budget, mean over its seeds),
  with a cosine decay in wall time and a stop at the limit;
* ``tfmot``: ``prune_low_magnitude`` (unstructured) from the same base weights to
  sparsity 1 - budget, the same images as one compression, in a tf_keras
  subprocess; its latency is real (TFLite with and without the sparsity optimisation).

Per model: test accuracy, params (non-zero for tfmot), MACs, ``.tflite`` size and
LiteRT 1-thread latency, all seed-0 models timed interleaved in one loop with the base.

Every run appends its result to ``<cache>/results_<settings key>.jsonl`` (the key hashes
the protocol and compress's defaults, so a changed recipe starts afresh); a restarted run skips
what is there (and compress resumes a half-finished job from its round
checkpoints). Seeds 0 and 1 of every criterion are always run; then, until the
``--deadline-min`` budget would be overrun, the wall-time scratch rows and a third
seed for criteria whose means are within ``extra_seed_gap`` of a neighbour.

Usage::

    nohup python tools/benchmark_fashion_mnist.py --full > /tmp/fmnist_full.log 2>&1 &
    python tools/benchmark_fashion_mnist.py --quick --out /tmp/x      # smoke run, a few minutes
    python tools/benchmark_fashion_mnist.py --full --report-only     # tables from the JSONL so far

Writes ``fashion_mnist.{json,md,png}`` (``fashion_mnist_quick.*`` with ``--quick``
unless ``--out`` is given) into ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import inspect
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

PRUNE_METHODS: dict[str, dict[str, Any]] = {
    "gpp": {"importance": "gpp_lda", "push": True, "label": "GPP: LDA utility + push"},
    "gpp_lda": {"importance": "gpp_lda", "push": False, "label": "LDA-prune (gpp_lda utility, no push)"},
    "l1": {"importance": "l1", "push": False, "label": "L1 filter norm"},
    "bn_scale": {"importance": "bn_scale", "push": False, "label": "BN scale"},
    "taylor": {"importance": "taylor", "push": False, "label": "Taylor (1st order)"},
    "random": {"importance": "random", "push": False, "label": "random"},
}
REFERENCE_METHODS = {
    "scratch": "width multiplier, from scratch, equal epochs",
    "scratch_time": "width multiplier, from scratch, equal wall time",
    "tfmot": "tfmot prune_low_magnitude (unstructured)",
}

SETTINGS: dict[str, dict[str, Any]] = {
    "full": {
        "budgets": [0.5, 0.25, 0.1],
        "methods": [*PRUNE_METHODS, "scratch", "scratch_time", "tfmot"],
        "seeds": 2,  # every criterion; references 1
        "max_seeds": 3,  # a third seed where neighbours are close (deadline permitting)
        "extra_seed_gap": 0.01,  # "close": means within 1 point
        "limit_test": None,  # the full 10k test set
        "rounds": 2,
        # one compress epoch = unit_epochs of the 54k training split, drawn from all of it
        "unit_epochs": 0.25,
        "units_per_round": 2,  # pushing methods: 1 push + 1 fine-tune; others: 2 fine-tune
        "lr": 1e-3,
        "batch_size": 128,
        # at the 10% budget every structured method must also fit in 50K params
        # (issue #6's goal: <= 50K params and <= 10% MACs)
        "params_cap": {"0.1": 50_000},
        "scratch_time_budgets": [0.1, 0.25, 0.5],  # the order they are tried in
        "deadline_min": 100.0,
        "latency_rounds": 400,
        "latency_warmup": 20,
    },
    "quick": {
        "budgets": [0.25],
        "methods": ["taylor", "gpp", "l1", "scratch", "scratch_time", "tfmot"],
        "seeds": 1,
        "max_seeds": 1,
        "extra_seed_gap": 0.01,
        "limit_test": 1000,
        "rounds": 1,
        "unit_epochs": 0.5,
        "units_per_round": 2,
        "lr": 1e-3,
        "batch_size": 128,
        "scratch_time_budgets": [0.25],
        "deadline_min": None,
        "latency_rounds": 60,
        "latency_warmup": 5,
    },
}


def _env(threads: int) -> dict[str, str]:
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1", OMP_NUM_THREADS=str(threads),
                TF_NUM_INTRAOP_THREADS=str(threads), TF_NUM_INTEROP_THREADS=str(threads))


def job_id(method: str, budget: float, seed: int) -> str:
    return f"{method}_b{int(round(100 * budget)):02d}_s{seed}"


def compress_defaults() -> dict[str, Any]:
    """``tf_gpp.compress``'s keyword defaults at run time (non-JSON values as repr)."""
    import tf_gpp

    out = {}
    for name, p in inspect.signature(tf_gpp.compress).parameters.items():
        if p.default is inspect.Parameter.empty:
            continue
        try:
            json.dumps(p.default)
            out[name] = p.default
        except TypeError:
            out[name] = repr(p.default)
    return out


def default_method(defaults: dict[str, Any] | None = None) -> str | None:
    """The criterion of ``PRUNE_METHODS`` that is compress's default recipe (importance and push)."""
    d = defaults or compress_defaults()
    return next((m for m, spec in PRUNE_METHODS.items()
                 if spec["importance"] == d.get("importance") and spec["push"] == d.get("push")), None)


def results_key(cfg: dict, defaults: dict[str, Any]) -> str:
    """What the runs depend on: the protocol's training settings and compress's defaults (not
    which criterion is the default, which only marks a row)."""
    run = {k: cfg.get(k) for k in ("rounds", "unit_epochs", "units_per_round", "lr", "batch_size",
                                   "params_cap", "limit_test")}
    run["compress"] = {k: v for k, v in defaults.items() if k not in ("importance", "push")}
    return hashlib.sha1(json.dumps(run, sort_keys=True, default=str).encode()).hexdigest()[:10]


def unit_steps(cfg: dict, n_train: int) -> int:
    """Batches in one compress epoch (a ``unit_epochs`` share of the training split)."""
    return max(1, int(round(cfg["unit_epochs"] * n_train / cfg["batch_size"])))


def compress_steps(cfg: dict, n_train: int) -> int:
    """Training batches of one compression: rounds x units per round (push + fine-tune)."""
    return cfg["rounds"] * cfg["units_per_round"] * unit_steps(cfg, n_train)


def compress_kwargs(method: str, cfg: dict, budget: float, seed: int) -> dict[str, Any]:
    """The protocol's arguments to ``tf_gpp.compress`` (the rest stay compress's defaults)."""
    spec = PRUNE_METHODS[method]
    push = spec["push"]
    units = cfg["units_per_round"]
    return {
        "target_macs": budget,
        "target_params": cfg.get("params_cap", {}).get(str(budget)),
        "strategy": "global",
        "rounds": cfg["rounds"],
        "push_epochs": units // 2 if push else 0,
        "finetune_epochs": units - units // 2 if push else units,
        "max_accuracy_drop": 1.0,  # every round kept: the budget is always met
        "learning_rate": cfg["lr"],
        "batch_size": cfg["batch_size"],
        "seed": seed,
        "importance": spec["importance"],
        "push": push,
    }


# --------------------------------------------------------------------------- worker side

_DATA: dict[tuple, dict] = {}


def _data(cfg: dict, mode: str) -> dict:
    key = (fc.BASE_RECIPES[mode]["limit_train"], cfg["limit_test"])
    if key not in _DATA:
        _DATA.clear()
        _DATA[key] = fc.load_arrays(*key)
    return _DATA[key]


def _sizes(path: Path) -> dict[str, int]:
    data = Path(path).read_bytes()
    return {"size_bytes": len(data), "gzip_bytes": len(gzip.compress(data, 9))}


def _widths(model: Any) -> list[int]:
    return [int(getattr(la, "filters", None) or la.units) for la in model.layers
            if hasattr(la, "filters") or hasattr(la, "units")]


def run_prune_job(job: dict, cfg: dict, mode: str, base_path: Path, workdir: Path) -> dict:
    import keras

    import tf_gpp
    from tf_gpp.importance import RandomImportance

    method, budget, seed = job["method"], job["budget"], job["seed"]
    data = _data(cfg, mode)
    base = keras.models.load_model(base_path)
    kw = compress_kwargs(method, cfg, budget, seed)
    record = dict(kw)
    if kw.get("importance") == "random":
        kw["importance"] = RandomImportance(seed=seed)
    train = fc.fraction_dataset(data["x_train"], data["y_train"], cfg["unit_epochs"], cfg["batch_size"], seed)
    resumed = (workdir / f"{job['id']}_rounds" / "state.json").exists()  # earlier rounds' time not counted
    t0, cpu0 = time.time(), time.process_time()
    result = tf_gpp.compress(base, train, (data["x_val"], data["y_val"]), verbose=1,
                             checkpoint_dir=workdir / f"{job['id']}_rounds", **kw)
    seconds, cpu_seconds = time.time() - t0, time.process_time() - cpu0
    model = result.model
    prof = tf_gpp.profile(model)
    acc = fc.evaluate(keras, model, data["x_test"], data["y_test"])
    tfl = tf_gpp.convert.to_tflite(model, workdir / f"{job['id']}.tflite")
    history = result.to_dict()["history"]
    return {
        **job,
        "accuracy": acc,
        "val_accuracy": history[-1]["accuracy"] if history else None,
        "params": int(prof.params),
        "params_nonzero": int(prof.params),
        "macs": int(prof.macs),
        "widths": _widths(model),
        "tflite": str(tfl),
        **_sizes(tfl),
        "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu_seconds, 1),
        "resumed": resumed,
        "compress_defaults": compress_defaults(),
        "rounds": history,
        "compress_kwargs": record,
        "train_steps": len(history) * cfg["units_per_round"] * unit_steps(cfg, len(data["y_train"])),
        "train_images": len(history) * cfg["units_per_round"] * unit_steps(cfg, len(data["y_train"]))
        * cfg["batch_size"],
    }


def run_scratch_job(job: dict, cfg: dict, mode: str, base_info: dict, workdir: Path) -> dict:
    import keras

    import tf_gpp

    budget, seed = job["budget"], job["seed"]
    recipe = fc.BASE_RECIPES[mode]
    mult, widths, dense = fc.width_multiplier_for(budget * base_info["macs"])
    data = _data(cfg, mode)
    keras.utils.set_random_seed(seed)
    model = fc.build_cnn(keras, widths, dense, name="scratch", bn_momentum=recipe["bn_momentum"],
                         dropout=recipe["dropout"])
    n = len(data["y_train"])
    if job["method"] == "scratch":
        # the base's epochs, then as many batches (of the same size) as one compression trains
        assert recipe["batch_size"] == cfg["batch_size"], "equal epochs assume one batch size"
        info = fc.train_schedule(keras, model, data, epochs=recipe["epochs"], extra_steps=compress_steps(cfg, n),
                                 lr=recipe["lr"], batch_size=recipe["batch_size"], seed=seed)
    else:
        info = fc.train_schedule(keras, model, data, epochs=100_000, time_limit=job["time_limit_s"], cpu_time=True,
                                 lr=recipe["lr"], batch_size=recipe["batch_size"], seed=seed)
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
        "seconds": info["seconds"],
        "cpu_seconds": info["cpu_seconds"],
        "train_steps": info["steps"],
        "train_images": info["images"],
        "epochs": info["epochs"],
        "stopped_by_time": info["stopped_by_time"],
    }


def run_tfmot_job(job: dict, cfg: dict, mode: str, base_path: Path, workdir: Path) -> dict:
    """In a TF_USE_LEGACY_KERAS=1 subprocess: base weights -> tf_keras model ->
    prune_low_magnitude (polynomial decay to the sparsity over the first 70% of the
    steps of one compression, drawn from the full training split) -> strip -> two
    .tflite files (plain and with the converter's EXPERIMENTAL_SPARSITY optimisation)."""
    import numpy as np
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras

    budget, seed = job["budget"], job["seed"]
    sparsity = 1.0 - budget
    with np.load(workdir / "base_weights.npz") as f:
        weights = [f[f"w{i}"] for i in range(len(f.files))]
    recipe = fc.BASE_RECIPES[mode]
    tf_keras.utils.set_random_seed(seed)
    model = fc.build_cnn(tf_keras, recipe["widths"], recipe["dense"], bn_momentum=recipe["bn_momentum"],
                         dropout=recipe["dropout"])
    model.set_weights(weights)
    data = _data(cfg, mode)
    steps = compress_steps(cfg, len(data["y_train"]))
    ds = (tf.data.Dataset.from_tensor_slices((data["x_train"], data["y_train"]))
          .shuffle(len(data["y_train"]), seed=seed, reshuffle_each_iteration=True).repeat()
          .batch(cfg["batch_size"], drop_remainder=True).prefetch(2))
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
    pruned.fit(ds, epochs=1, steps_per_epoch=steps, verbose=0,
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
        "train_steps": steps,
        "train_images": steps * cfg["batch_size"],
        "versions": {"tf_keras": tf_keras.__version__, "tfmot": tfmot.__version__},
    }


def worker(spec_file: Path) -> int:
    spec = json.loads(spec_file.read_text())
    job, cfg, mode = spec["job"], spec["cfg"], spec["mode"]
    fc.set_threads(spec.get("threads", 1))
    workdir = Path(spec["workdir"])
    workdir.mkdir(parents=True, exist_ok=True)
    if job["method"] == "tfmot":
        out = run_tfmot_job(job, cfg, mode, Path(spec["base_path"]), workdir)
    elif job["method"] in ("scratch", "scratch_time"):
        out = run_scratch_job(job, cfg, mode, spec["base_info"], workdir)
    else:
        out = run_prune_job(job, cfg, mode, Path(spec["base_path"]), workdir)
    tmp = Path(spec["result"]).with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=2))
    tmp.replace(spec["result"])
    return 0


# --------------------------------------------------------------------------- orchestration


def _run_subprocess(args: list[str], env: dict, logfile: Path) -> int:
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


def ensure_base(mode: str, cfg: dict, cache: Path, threads: int, log: Any) -> tuple[Path, dict]:
    recipe = fc.BASE_RECIPES[mode]
    model_path, info_path = fc.base_paths(cache, recipe)
    if not (model_path.exists() and info_path.exists()):
        log(f"training the base CNN ({recipe['epochs']} epochs, {threads} thread(s)) -> {model_path}")
        code = (
            f"import sys; sys.path.insert(0, {str(TOOLS)!r}); import fmnist_common as fc; "
            f"fc.set_threads({threads}); "
            f"from pathlib import Path; fc.train_base(Path({str(cache)!r}), fc.BASE_RECIPES[{mode!r}], "
            f"{cfg['limit_test']!r})"
        )
        rc = _run_subprocess([sys.executable, "-c", code], _env(threads), cache / f"log_{mode}.txt")
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


def load_results(path: Path) -> dict[str, dict]:
    """Finished runs from the JSONL (the last line of an id wins; a torn last line is ignored)."""
    out: dict[str, dict] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue
            out[r["id"]] = r
    return out


def append_result(path: Path, result: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(result, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())


class Runner:
    """Runs jobs one at a time, appends each result to the JSONL, prints one line per run."""

    def __init__(self, cfg: dict, mode: str, cache: Path, base_path: Path, base_info: dict,
                 tfmot_site: str | None, threads: int, in_process: bool, log: Any) -> None:
        self.cfg, self.mode, self.cache = cfg, mode, cache
        self.base_path, self.base_info = base_path, base_info
        self.tfmot_site, self.threads, self.in_process, self.log = tfmot_site, threads, in_process, log
        key = results_key(cfg, compress_defaults())
        self.jsonl = cache / f"results_{key}.jsonl"
        self.models = cache / f"models_{key}"  # one recipe's round checkpoints never resume another's
        self.results = load_results(self.jsonl)
        self.failed: list[str] = []
        self.done_now = 0
        self.commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                     capture_output=True, text=True, check=False).stdout.strip() or None

    def run(self, job: dict, label: str) -> dict | None:
        if job["id"] in self.results:
            r = self.results[job["id"]]
            self.log(f"{label} {job['id']}: done before, accuracy {r['accuracy']:.4f}")
            return r
        jobdir = self.cache / "jobs"
        jobdir.mkdir(parents=True, exist_ok=True)
        result_file = jobdir / f"{job['id']}.json"
        result_file.unlink(missing_ok=True)
        spec = {"job": job, "cfg": self.cfg, "mode": self.mode, "workdir": str(self.models),
                "base_path": str(self.base_path), "base_info": self.base_info, "result": str(result_file),
                "threads": self.threads}
        spec_file = jobdir / f"{job['id']}.spec.json"
        spec_file.write_text(json.dumps(spec, indent=2))
        env = _env(self.threads)
        if job["method"] == "tfmot":
            env["TF_USE_LEGACY_KERAS"] = "1"
            if self.tfmot_site:
                env["PYTHONPATH"] = os.pathsep.join(filter(None, [self.tfmot_site, env.get("PYTHONPATH")]))
        t0 = time.time()
        if self.in_process and job["method"] != "tfmot":
            rc = _run_in_process(spec_file, self.log)
        else:
            rc = _run_subprocess([sys.executable, str(Path(__file__).resolve()), "--worker", str(spec_file)],
                                 env, self.cache / f"log_{self.mode}.txt")
        if rc != 0 or not result_file.exists():
            self.failed.append(job["id"])
            self.log(f"{label} {job['id']}: FAILED (exit {rc}) after {time.time() - t0:.0f}s; "
                     f"see {self.cache / f'log_{self.mode}.txt'}")
            return None
        r = json.loads(result_file.read_text())
        r["job_wall_s"] = round(time.time() - t0, 1)
        r["tf_gpp_commit"] = self.commit
        r["loadavg_end"] = os.getloadavg()
        append_result(self.jsonl, r)
        self.results[job["id"]] = r
        self.done_now += 1
        self.log(f"{label} {job['id']}: accuracy {r['accuracy']:.4f}, {r['params_nonzero']:,} params "
                 f"(non-zero), {r.get('macs', self.base_info['macs']):,} MACs, {r['seconds']:.0f}s train "
                 f"({r['job_wall_s']:.0f}s job, load {os.getloadavg()[0]:.1f})")
        return r


def mandatory_jobs(cfg: dict) -> list[dict]:
    """Budget by budget, the cheapest first (a budget's rows are complete early): every criterion
    with its seeds, then the equal-epochs scratch and tfmot."""
    prune = [m for m in cfg["methods"] if m in PRUNE_METHODS]
    refs = [m for m in ("scratch", "tfmot") if m in cfg["methods"]]
    jobs = []
    for b in sorted(cfg["budgets"]):
        jobs += [{"id": job_id(m, b, s), "method": m, "budget": b, "seed": s}
                 for s in range(cfg["seeds"]) for m in prune]
        jobs += [{"id": job_id(m, b, 0), "method": m, "budget": b, "seed": 0} for m in refs]
    return jobs


def close_neighbours(results: dict[str, dict], cfg: dict, budget: float, n_seeds: int) -> list[str]:
    """Criteria at ``budget`` whose mean accuracy is within ``extra_seed_gap`` of the next one
    in the ranking; those close to the default criterion first (the comparison the benchmark is for)."""
    import numpy as np

    means = {}
    for m in (m for m in cfg["methods"] if m in PRUNE_METHODS):
        accs = [r["accuracy"] for r in results.values()
                if r["method"] == m and r["budget"] == budget and r["seed"] < n_seeds]
        if accs:
            means[m] = float(np.mean(accs))
    order = sorted(means, key=lambda m: -means[m])
    close: set[str] = set()
    for a, b in zip(order, order[1:], strict=False):
        if means[a] - means[b] < cfg["extra_seed_gap"]:
            close |= {a, b}
    g = means.get(default_method())
    first = [m for m in order if m in close and g is not None and abs(means[m] - g) < cfg["extra_seed_gap"]]
    return first + [m for m in order if m in close and m not in first]


def scratch_time_limit(results: dict[str, dict], base_info: dict, budget: float) -> dict | None:
    """Base training + the mean time of compress (the default criterion; any if none), in CPU seconds
    of the 1-thread process (the time a dedicated core takes: on this shared machine the wall
    time of the same work varied ~3x with the other jobs' load). Wall seconds are recorded too."""
    import numpy as np

    base_cpu = base_info.get("train_cpu_seconds")
    if base_cpu is None:
        return None
    for pick in (default_method(), None):
        runs = [r for r in results.values() if r["budget"] == budget and r["method"] in PRUNE_METHODS
                and (pick is None or r["method"] == pick) and r.get("cpu_seconds") is not None
                and not r.get("resumed")]  # a resumed run's time misses its earlier rounds
        if runs:
            cpu = float(np.mean([r["cpu_seconds"] for r in runs]))
            wall = float(np.mean([r["seconds"] for r in runs]))
            return {"time_limit_s": round(base_cpu + cpu, 1), "time_clock": "process CPU seconds",
                    "base_train_s": base_cpu, "compress_s": round(cpu, 1),
                    "base_train_wall_s": base_info["train_seconds"], "compress_wall_s": round(wall, 1),
                    "compress_s_from": pick or "all criteria", "compress_runs": len(runs)}
    return None


def optional_jobs(results: dict[str, dict], cfg: dict, base_info: dict) -> list[tuple[dict, float]]:
    """(job, estimated seconds) in priority order: the 10% wall-time scratch, third seeds close
    to the default criterion, the other wall-time scratch rows interleaved with the other third seeds."""
    import numpy as np

    ref = default_method()
    seeds_extra: list[list[dict]] = [[], []]
    for s in range(cfg["seeds"], cfg.get("max_seeds", cfg["seeds"])):
        for b in cfg["budgets"]:
            names = close_neighbours(results, cfg, b, cfg["seeds"])
            g = [r["accuracy"] for r in results.values() if r["method"] == ref and r["budget"] == b]
            for m in names:
                accs = [r["accuracy"] for r in results.values() if r["method"] == m and r["budget"] == b]
                near_gpp = bool(g) and abs(np.mean(accs) - np.mean(g)) < cfg["extra_seed_gap"]
                seeds_extra[0 if near_gpp else 1].append(
                    {"id": job_id(m, b, s), "method": m, "budget": b, "seed": s})

    recent = [r for r in results.values() if r.get("cpu_seconds") and r.get("seconds")][-6:]
    cpu_share = min(1.0, max(0.1, sum(r["cpu_seconds"] for r in recent) / sum(r["seconds"] for r in recent))) \
        if recent else 0.5

    def est(job: dict) -> float:
        if job["method"] == "scratch_time":  # CPU seconds -> wall at the recent CPU share
            return job["time_limit_s"] / cpu_share + 60.0
        secs = [r.get("job_wall_s", r["seconds"]) for r in results.values()
                if r["method"] == job["method"] and r["budget"] == job["budget"]]
        return 1.15 * float(np.mean(secs)) + 10.0 if secs else 600.0

    times = []
    if "scratch_time" in cfg["methods"]:
        for b in cfg.get("scratch_time_budgets", cfg["budgets"]):
            lim = scratch_time_limit(results, base_info, b) if b in cfg["budgets"] else None
            if lim:
                times.append({"id": job_id("scratch_time", b, 0), "method": "scratch_time", "budget": b,
                              "seed": 0, **lim})
    order = times[:1] + seeds_extra[0] + times[1:2] + seeds_extra[1] + times[2:]
    return [(j, est(j)) for j in order]


def measure_latency(base_tflite: str, results: dict[str, dict], cfg: dict, log: Any) -> dict:
    """All seed-0 models and the base, interleaved in one loop, 1 thread."""
    from tf_gpp.convert import benchmark_interleaved

    names, paths = ["base"], [base_tflite]
    for jid, r in sorted(results.items()):
        if r["seed"] != 0 or not Path(r["tflite"]).exists():
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
            runs = sorted((r for r in results.values() if r["method"] == method and r["budget"] == budget),
                          key=lambda r: r["seed"])
            if not runs:
                continue
            accs = np.array([r["accuracy"] for r in runs])
            r0 = runs[0]
            lat = latency["models"].get(r0["id"], {})
            row = {
                "method": method,
                "label": PRUNE_METHODS.get(method, {}).get("label") or REFERENCE_METHODS[method],
                "budget": budget,
                "seeds": len(runs),
                "seed_ids": [r["seed"] for r in runs],
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
                "latency_ratio_cpu": (1.0 / lat["speedup_cpu"]) if lat.get("speedup_cpu") else None,
                "seconds": float(np.mean([r["seconds"] for r in runs])),
                "cpu_seconds": (float(np.mean([r["cpu_seconds"] for r in runs]))
                                if all(r.get("cpu_seconds") is not None for r in runs) else None),
                "train_images": r0.get("train_images"),
                "widths": r0.get("widths"),
            }
            if method in ("scratch", "scratch_time"):
                row.update({"epochs": r0.get("epochs"), "train_steps": r0.get("train_steps"),
                            "width_multiplier": r0.get("width_multiplier")})
            if method == "scratch_time":
                row.update({k: r0.get(k) for k in ("time_limit_s", "time_clock", "base_train_s", "compress_s",
                                                   "base_train_wall_s", "compress_wall_s", "compress_s_from",
                                                   "compress_runs", "stopped_by_time")})
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
        s += f" ± {100 * row['accuracy_std']:.2f}"
    return s + f" (n={row['seeds']})"


def _f(x: float | None, d: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{d}f}"


def conclusions(rows: list[dict], base_info: dict, cfg: dict, default: str | None) -> list[str]:
    """Data-driven statements about compress's default criterion (computed from the rows, so they
    cannot drift from the table)."""
    out = []
    structured = [m for m in PRUNE_METHODS if m in cfg["methods"]]
    for budget in cfg["budgets"]:
        at = {r["method"]: r for r in rows if r["budget"] == budget}
        if default not in at:
            continue
        g = at[default]
        others = {m: r for m, r in at.items() if m in structured and m != default}
        parts = []
        if others:
            best_m, best = max(others.items(), key=lambda kv: kv[1]["accuracy_mean"])
            diff = 100 * (g["accuracy_mean"] - best["accuracy_mean"])
            rank = 1 + sum(r["accuracy_mean"] > g["accuracy_mean"] for r in others.values())
            parts.append(f"the default ({default}) ranks {rank}/{len(others) + 1} among the structured criteria "
                         f"({100 * g['accuracy_mean']:.2f}% vs best other, {best_m}, "
                         f"{100 * best['accuracy_mean']:.2f}%: {diff:+.2f} pts)")
        for m in ("gpp", "gpp_lda"):
            if m in at and m != default:
                parts.append(f"vs {m} ({PRUNE_METHODS[m]['label']}) "
                             f"{100 * (g['accuracy_mean'] - at[m]['accuracy_mean']):+.2f} pts")
        for ref, what in (("scratch", "equal-epochs scratch"), ("scratch_time", "equal-time scratch")):
            if ref in at:
                parts.append(f"vs {what} {100 * (g['accuracy_mean'] - at[ref]['accuracy_mean']):+.2f} pts")
        if "tfmot" in at:
            t = at["tfmot"]
            parts.append(f"vs tfmot unstructured {100 * (g['accuracy_mean'] - t['accuracy_mean']):+.2f} pts "
                         f"(tfmot keeps the base's latency: CPU speed-up {_f(t['speedup_cpu'], 2)}x "
                         f"vs {_f(g['speedup_cpu'], 2)}x)")
        out.append(f"- **{int(100 * budget)}% MACs**: " + "; ".join(parts) + ".")
    return out


def write_markdown(payload: dict, path: Path) -> None:
    rows, base, cfg = payload["rows"], payload["base"], payload["settings"]
    m = payload["machine"]
    n_train = base["n_train"]
    u = unit_steps(cfg, n_train)
    c_steps = compress_steps(cfg, n_train)
    c_images = c_steps * cfg["batch_size"]
    base_images = base["recipe"]["epochs"] * n_train
    cd = payload["compress_defaults"]
    lines = [
        f"# Fashion-MNIST compression benchmark ({payload['mode']})",
        "",
        f"Generated by `python tools/benchmark_fashion_mnist.py {'--quick' if payload['mode'] == 'quick' else '--full'}` "
        f"with {payload['threads']} TensorFlow thread(s). "
        f"Machine: {m['cpu']} ({m['cores']} cores, shared with other jobs; load average "
        f"{payload['loadavg_start'][0]:.1f} at start, {payload['loadavg_end'][0]:.1f} at the end), "
        f"Python {m['python']}, TensorFlow {m['tensorflow']}, Keras {m['keras']}, LiteRT {m['ai_edge_litert']}; "
        f"tf_gpp commit {m.get('git_commit')}; {m['date']}. Wall time of the runs {payload['runs_s'] / 60:.1f} min "
        f"over {payload['invocations']} invocation(s) (base training {base['train_seconds'] / 60:.1f} min, cached).",
        "",
        *([f"**Partial results**: {len(payload['pending'])} runs of the protocol are not finished yet "
           f"({', '.join(payload['pending'])}); rerun the same command to complete them.", ""]
          if payload.get("pending") else []),
        "## Protocol",
        "",
        f"- Base CNN: conv-BN-ReLU {'-'.join(map(str, base['recipe']['widths'][:2]))}-pool-"
        f"{'-'.join(map(str, base['recipe']['widths'][2:]))}-pool, Flatten, Dense({base['recipe']['dense']})-BN-ReLU, "
        f"Dropout({base['recipe']['dropout']}), Dense(10); {base['params']:,} params, {base['macs'] / 1e6:.2f} M MACs. "
        f"Recipe: {base['recipe']['optimizer']} from lr {base['recipe']['lr']}, batch {base['recipe']['batch_size']}, "
        f"{base['recipe']['epochs']} epochs on {n_train:,} images, BatchNorm momentum {base['recipe']['bn_momentum']}, "
        f"no augmentation. **Test accuracy {100 * base['test_accuracy']:.2f}%** on {base['n_test']:,} test images.",
        f"- Compression (every structured method): `tf_gpp.compress(strategy='global', rounds={cfg['rounds']}, "
        f"max_accuracy_drop=1.0, learning_rate={cfg['lr']})` on the **full training split** ({n_train:,} images; "
        f"validation {base.get('n_val', 'the')} images steers nothing). One compress epoch = {u} batches of "
        f"{cfg['batch_size']} ({cfg['unit_epochs']:g} of the split), drawn afresh from all of it; "
        f"{cfg['units_per_round']} epochs per round for every method (pushing: "
        f"{cfg['units_per_round'] // 2} push + {cfg['units_per_round'] - cfg['units_per_round'] // 2} fine-tune; "
        f"others: {cfg['units_per_round']} fine-tune): {c_steps} batches = {c_images:,} images "
        f"({c_images / n_train:.2f} epochs) per compression. MACs target per round shrinks geometrically to the budget."
        + "".join(f" At the {int(100 * float(b))}% budget every structured method must also fit in {n:,} params."
                  for b, n in cfg.get("params_cap", {}).items()),
        f"- compress's default recipe at run time: importance `{cd.get('importance')}`, push {cd.get('push')} "
        f"(the row marked *default*), distill {cd.get('distill')}, lr_schedule `{cd.get('lr_schedule')}`"
        + (", BatchNorm re-estimation inside compress" if payload.get("has_recalibrate_batchnorm") else "")
        + ". Every criterion runs with these defaults except its importance and push (`gpp`: the LDA utility "
        "with push; the others without). All of compress's defaults are in the JSON (`compress_defaults`).",
        f"- tfmot: same base weights, {c_steps} batches from the full split (the images of one compression), "
        "`prune_low_magnitude` with polynomial decay to sparsity 1 - budget over the first 70% of the steps; "
        "params column shows non-zero weights; latency from the plain .tflite and from the converter's "
        "`EXPERIMENTAL_SPARSITY` file.",
        f"- scratch (equal epochs): the base architecture with every width multiplied by m (MACs closest to the "
        f"budget), trained from scratch with the base recipe on the full split for the base's "
        f"{base['recipe']['epochs']} epochs plus the {c_steps} batches of one compression "
        f"({(base_images + c_images) / n_train:.2f} epochs, {base_images + c_images:,} images, as many as base "
        "training + compression); one cosine decay over all steps. Not held to the params cap.",
        "- scratch_time (equal time): the same net trained for the base's training time plus the mean time of "
        "the default criterion's compress runs at that budget, counted in CPU seconds of the 1-thread process — the wall time "
        "on a dedicated core (on this shared machine the wall time of the same work varied ~3x with the other "
        "jobs' load, so wall seconds would not measure the work); the learning rate follows a cosine over that "
        "time and training stops at the limit. The seconds (CPU and wall) are under the table and in the JSON.",
        f"- Seeds: {cfg['seeds']} per criterion"
        + (f", up to {cfg['max_seeds']} where a criterion's mean is within "
           f"{100 * cfg.get('extra_seed_gap', 0.01):.0f} point of its neighbour in the ranking (as time allowed, see n)"
           if cfg.get("max_seeds", cfg["seeds"]) > cfg["seeds"] else "")
        + "; references 1. Accuracy is the mean ± sample std over seeds (the test-set standard error alone is ~0.27 "
        "pts at 92%).",
        "- Latency: LiteRT (ai-edge-litert) `invoke()`, batch 1, 1 thread, XNNPACK, every seed-0 model and the "
        f"base round-robin in one loop ({cfg['latency_rounds']} rounds). *CPU ms* is the benchmark thread's CPU "
        "time (robust to the other processes on this shared machine), *latency ratio* = model / base CPU ms.",
        "",
        "## Accuracy (test %, mean ± std (n seeds)) by MACs budget",
        "",
        "| method | " + " | ".join(f"{int(100 * b)}% MACs" for b in cfg["budgets"]) + " |",
        "|---|" + "---:|" * len(cfg["budgets"]),
    ]
    default = payload.get("default_method")
    for method in cfg["methods"]:
        cells = []
        for b in cfg["budgets"]:
            r = next((r for r in rows if r["method"] == method and r["budget"] == b), None)
            cells.append(_acc(r) if r else "—")
        if any(c != "—" for c in cells):
            name = f"**{method} (default)**" if method == default else method
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## All figures",
        "",
        "| method | MACs budget | test acc % | params (non-zero) | MACs (M) | MACs % | latency ratio (CPU) | "
        ".tflite KiB | median ms | CPU ms | train images | train s (CPU s) | widths |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    bl = payload["latency"]["models"]["base"]
    lines.append(f"| base | 100% | {100 * base['test_accuracy']:.2f} | {base['params']:,} | {base['macs'] / 1e6:.2f} | "
                 f"100.0 | 1.000 | {base['tflite']['size_bytes'] / 1024:.0f} | {bl['median_ms']:.3f} | "
                 f"{_f(bl['cpu_median_ms'])} | {base_images:,} | {base['train_seconds']:.0f} "
                 f"({_f(base.get('train_cpu_seconds'), 0)}) | "
                 f"{'-'.join(map(str, base['recipe']['widths']))}-{base['recipe']['dense']} |")
    for budget in cfg["budgets"]:
        for r in (r for r in rows if r["budget"] == budget):
            macs_note = (f"{r['macs'] / 1e6:.2f} (eff. {r['effective_macs'] / 1e6:.2f})"
                         if r.get("effective_macs") else f"{r['macs'] / 1e6:.2f}")
            imgs = f"{r['train_images']:,}" if r.get("train_images") else "n/a"
            lines.append(
                f"| {r['method']} | {int(100 * budget)}% | {_acc(r)} | {r['params_nonzero']:,} | {macs_note} | "
                f"{100 * r['macs_ratio']:.1f} | {_f(r['latency_ratio_cpu'])} | {r['tflite_bytes'] / 1024:.0f} | "
                f"{_f(r['latency_median_ms'])} | {_f(r['latency_cpu_ms'])} | {imgs} | {r['seconds']:.0f} "
                f"({_f(r['cpu_seconds'], 0)}) | "
                f"{'-'.join(map(str, r['widths'])) if r.get('widths') else 'dense (masked)'} |"
            )
            if r["method"] == "tfmot":
                sc = r["sparse_convert_speedup_cpu"]
                lines.append(
                    f"| tfmot + sparsity converter | {int(100 * budget)}% | {_acc(r)} | {r['params_nonzero']:,} | "
                    f"{macs_note} | {100 * r['macs_ratio']:.1f} | {_f(1 / sc if sc else None)} | "
                    f"{r['sparse_convert_tflite_bytes'] / 1024:.0f} | {_f(r['sparse_convert_latency_median_ms'])} | "
                    f"{_f(r['sparse_convert_latency_cpu_ms'])} | {imgs} | {r['seconds']:.0f} | dense (masked) |")
    st = [r for r in rows if r["method"] == "scratch_time"]
    if st:
        lines += ["", "Equal-time scratch budgets: " + "; ".join(
            f"{int(100 * r['budget'])}%: {r['time_limit_s']:.0f} CPU s = base {r['base_train_s']:.0f} + compress "
            f"{r['compress_s']:.0f} ({r['compress_s_from']}, {r['compress_runs']} runs; wall "
            f"{r['base_train_wall_s']:.0f} + {r['compress_wall_s']:.0f} s) -> {r['epochs']:.1f} epochs"
            for r in st) + "."]
    goal = [r for r in rows if r["method"] == default and r["budget"] <= 0.1]
    lines += ["", "## What this shows", ""]
    lines += conclusions(rows, base, cfg, default)
    if goal:
        g = goal[0]
        ok_size = g["params"] <= 50_000
        ok_acc = g["accuracy_mean"] >= 0.93
        lines.append(
            f"- Goal \"<= 50K params at <= 10% MACs with 93.0%\": the default ({default}) reaches {100 * g['accuracy_mean']:.2f}% with "
            f"{g['params']:,} params at {100 * g['macs_ratio']:.1f}% MACs — size {'met' if ok_size else 'not met'}, "
            f"accuracy {'met' if ok_acc else 'not met'}."
        )
    if payload.get("skipped_for_time"):
        lines.append("- Not run within the time budget (rerun the same command with a later `--deadline-min` "
                     "to add them): " + ", ".join(payload["skipped_for_time"]) + ".")
    commits = sorted({str(r.get("tf_gpp_commit")) for r in payload["jobs"].values()})
    recipes = {json.dumps(r["compress_defaults"], sort_keys=True) for r in payload["jobs"].values()
               if r.get("compress_defaults")}
    if len(commits) > 1 or len(recipes) > 1:
        lines.append(f"- The runs span {len(commits)} tf_gpp commits ({', '.join(commits)}) and {len(recipes)} "
                     "set(s) of compress defaults (per run in the JSON: `jobs.*.tf_gpp_commit`, "
                     "`jobs.*.compress_defaults`).")
    if payload.get("failed_jobs"):
        lines.append("- Failed runs: " + ", ".join(payload["failed_jobs"]) + ".")
    lines += [f"- {note}" for note in payload.get("notes", [])]
    lines += ["", "![accuracy vs MACs and latency](" + path.with_suffix(".png").name + ")", ""]
    path.write_text("\n".join(lines) + "\n")


def write_plot(payload: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, base = payload["rows"], payload["base"]
    bl = payload["latency"]["models"]["base"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.4))
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
            is_default = m == payload.get("default_method")
            style = {"marker": "o" if m in PRUNE_METHODS else "s", "lw": 2.4 if is_default else 1.2, "ms": 6,
                     "ls": "--" if m in REFERENCE_METHODS else "-"}
            ax.errorbar(xs, ys, yerr=err, color=cmap(i % 10), capsize=3,
                        label=f"{m} (default)" if is_default else m, **style)
        bx = base["macs"] / 1e6 if xkey == "macs" else bl["cpu_median_ms"]
        ax.plot([bx], [100 * base["test_accuracy"]], "k*", ms=14, label="base")
        ax.axhline(93.0, color="grey", lw=0.8, ls=":", label="93.0% goal")
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3, which="both")
        lows = [100 * (r["accuracy_mean"] - (r["accuracy_std"] or 0)) for r in rows] or [100 * base["test_accuracy"]]
        highs = [100 * (r["accuracy_mean"] + (r["accuracy_std"] or 0)) for r in rows] + [100 * base["test_accuracy"]]
        ax.set_ylim(min(lows) - 0.8, max(max(highs), 93.0) + 0.8)  # every point and error bar visible
    axes[0].set_title("accuracy vs MACs (error bars: std over seeds; tfmot at its dense MACs)", fontsize=10)
    axes[1].set_title("accuracy vs measured latency (seed-0 models, interleaved, 1 thread)", fontsize=10)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=min(len(labels), 10), frameon=False)
    fig.suptitle(f"Fashion-MNIST, {payload['mode']} run, fine-tuning on the full split · {payload['machine']['cpu']} · "
                 f"TF {payload['machine']['tensorflow']} · {payload['machine']['date']}", fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="small data, one budget, few methods (a few minutes)")
    g.add_argument("--full", action="store_true", help="the full benchmark (default)")
    parser.add_argument("--out", type=Path, help="output directory (default benchmarks/results)")
    parser.add_argument("--cache", type=Path, help="cache directory (default benchmarks/cache/fashion_mnist_<mode>)")
    parser.add_argument("--seeds", type=int, help="seeds of every criterion (default: 2 full, 1 quick)")
    parser.add_argument("--max-seeds", type=int, help="seeds for criteria close to a neighbour (default: 3 full)")
    parser.add_argument("--methods", help="comma-separated subset of methods")
    parser.add_argument("--threads", type=int, default=1, help="TensorFlow intra- and inter-op threads (default 1)")
    parser.add_argument("--deadline-min", type=float,
                        help="no optional run (third seeds, wall-time scratch) is started that would end after "
                        "this many minutes of this invocation (default: 100 full; 0 = no limit)")
    parser.add_argument("--report-only", action="store_true", help="write the report from the finished runs")
    parser.add_argument("--tfmot-site", default=os.environ.get("TF_GPP_TFMOT_SITE"),
                        help="directory holding tf_keras and tensorflow_model_optimization (pip install --target)")
    parser.add_argument("--note", action="append", default=[], help="a line added to the .md conclusions")
    parser.add_argument("--in-process", dest="in_process", action=argparse.BooleanOptionalAction, default=True,
                        help="run the Keras 3 jobs in this process (default; tfmot always runs in a tf_keras "
                        "subprocess)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(Path(args.worker))

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    fc.set_threads(args.threads)
    mode = "quick" if args.quick else "full"
    cfg = dict(SETTINGS[mode])
    if args.seeds:
        cfg["seeds"] = args.seeds
    cfg["max_seeds"] = max(cfg["seeds"], args.max_seeds or cfg.get("max_seeds", cfg["seeds"]))
    if args.deadline_min is not None:
        cfg["deadline_min"] = args.deadline_min or None
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
        print(f"[{time.strftime('%H:%M:%S')} +{(time.time() - started) / 60:5.1f} min] {msg}", flush=True)

    base_path, base_info = ensure_base(mode, cfg, fc.CACHE if args.cache is None else cache, args.threads, log)
    from _report import machine_info

    import tf_gpp

    base_model = __import__("keras").models.load_model(base_path)
    prof = tf_gpp.profile(base_model)
    base_info["layer_macs"] = {la.name: la.macs for la in prof.layers if la.macs}
    del base_model
    defaults = compress_defaults()
    models = cache / f"models_{results_key(cfg, defaults)}"  # this recipe's models and checkpoints
    base_info["tflite"] = export_base(base_path, models)
    base_info["n_val"] = int(len(_data(cfg, mode)["y_val"]))
    log(f"compress defaults: importance={defaults.get('importance')} push={defaults.get('push')} "
        f"distill={defaults.get('distill')}; recalibrate_batchnorm: {hasattr(tf_gpp, 'recalibrate_batchnorm')}; "
        f"one compression = {compress_steps(cfg, base_info['n_train'])} batches of {cfg['batch_size']}")

    runner = Runner(cfg, mode, cache, base_path, base_info, args.tfmot_site, args.threads, args.in_process, log)
    skipped: list[str] = []
    history_path = cache / "invocations.json"
    invocations = json.loads(history_path.read_text()) if history_path.exists() else []
    invocations.append({"started": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)), "seconds": 0.0,
                        "runs": 0, "report_only": args.report_only})

    def report(final: bool) -> dict:
        """Latency of the finished models, then the JSON, markdown and plot (also mid-run)."""
        results = runner.results
        latency = measure_latency(base_info["tflite"]["tflite"], results, cfg, log)
        rows = aggregate(results, latency, base_info, cfg)
        invocations[-1].update(seconds=round(time.time() - started, 1), runs=runner.done_now)
        history_path.write_text(json.dumps(invocations, indent=2))
        machine = machine_info()
        try:
            machine["git_commit"] = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                                   capture_output=True, text=True, check=False).stdout.strip()
        except OSError:
            pass
        payload = {
            "mode": mode,
            "complete": final,
            "settings": cfg,
            "threads": args.threads,
            "compress_defaults": defaults,
            "default_method": default_method(defaults),
            "results_file": runner.jsonl.name,
            "has_recalibrate_batchnorm": hasattr(tf_gpp, "recalibrate_batchnorm"),
            "compress_steps": compress_steps(cfg, base_info["n_train"]),
            "machine": machine,
            "tfmot_versions": next((r["versions"] for r in results.values() if r.get("versions")), None),
            "loadavg_start": load_start,
            "loadavg_end": os.getloadavg(),
            "elapsed_s": time.time() - started,
            "invocations": len([i for i in invocations if not i["report_only"]]) or 1,
            "invocation_log": invocations,
            "runs_s": sum(r.get("job_wall_s", r["seconds"]) for r in results.values()),
            "job_seconds": {k: v["seconds"] for k, v in results.items()},
            "base": {k: v for k, v in base_info.items() if k != "layer_macs"},
            "rows": rows,
            "latency": latency,
            "jobs": results,
            "failed_jobs": sorted(set(runner.failed)),
            "skipped_for_time": skipped,
            "pending": [] if final else [j["id"] for j in mandatory_jobs(cfg) if j["id"] not in results],
            "notes": args.note,
        }
        from _report import write_atomic

        write_atomic(out / f"{stem}.json", json.dumps(payload, indent=2, default=str))
        write_markdown(payload, out / f"{stem}.md")
        write_plot(payload, out / f"{stem}.png")
        log(f"wrote {out / stem}.json/.md/.png ({'final' if final else 'partial'}, {len(results)} runs)")
        return payload

    if not args.report_only:
        jobs = mandatory_jobs(cfg)
        for i, job in enumerate(jobs, 1):
            runner.run(job, f"[{i}/{len(jobs)}]")
            last_of_budget = i == len(jobs) or jobs[i]["budget"] != job["budget"]
            if last_of_budget and i < len(jobs) and runner.done_now:
                report(final=False)
        deadline = cfg.get("deadline_min")
        reserve = 240.0  # latency and the report
        for k, (job, est) in enumerate(optional_jobs(runner.results, cfg, base_info), 1):
            if job["id"] in runner.results:
                runner.run(job, f"[extra {k}]")
                continue
            elapsed = time.time() - started
            if deadline and elapsed + est + reserve > 60 * deadline:
                skipped.append(job["id"])
                log(f"[extra {k}] {job['id']}: skipped (needs ~{est / 60:.0f} min, "
                    f"{deadline - elapsed / 60:.0f} min left before the deadline)")
                continue
            runner.run(job, f"[extra {k}] (est. {est / 60:.0f} min)")
    if not runner.results:
        raise SystemExit("no job finished")
    pending = [j["id"] for j in mandatory_jobs(cfg) if j["id"] not in runner.results]
    payload = report(final=not pending)
    return 0 if not payload["failed_jobs"] else 1


if __name__ == "__main__":
    sys.exit(main())
