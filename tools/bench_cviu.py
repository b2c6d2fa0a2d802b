#!/usr/bin/env python
"""The CVIU paper's claims that fit on this machine, measured with ``importance="gpp"``.

On a Fashion-MNIST subset (default 7,200 train / 800 validation / 2,000 test images) a small
CNN (conv-BN-ReLU 16, 32, max-pool, 64, max-pool, GAP, Dense 64 ReLU = the feature layer,
Dense 10) is trained per seed, then:

* **Fig. 17, LDA vs PCA ranking of the final neurons.** A least-squares probe on the frozen
  training features, restricted to the top-k feature neurons, is scored on the test images for
  three rankings: the Fisher utility ``v_j`` (the CVIU utility), a PCA utility
  ``sum_k lambda_k |E_jk|`` over the top C-1 principal components of the features (our
  stand-in for the paper's PCA ranking), and a random order.
* **Fig. 18, one image per class.** The deconv trace from 1 training image per class (drawn per
  seed) against all training images: Spearman rank correlation of the channel utilities per
  layer, and test accuracy after pruning every layer by the same share with each.
* **§4.1.4, equal per-layer rates.** Every prunable layer loses the same share of its channels
  (50%, 75%), chosen by the CVIU utility (``gpp``), ``gpp_grad``, Taylor and random; BatchNorm
  statistics re-estimated, test accuracy one-shot and after two fine-tuning epochs.

Also recorded: M' (kept feature neurons), zero-utility channels per layer, what the
``eta * std`` threshold would remove at eta 0.1 / 0.2 / 0.5, BN layers' negative gammas, and the
rank correlation of the ``deconv`` and ``gradient`` ReLU rules.

    python tools/bench_cviu.py              # -> benchmarks/results/cviu.{json,md,png}
    python tools/bench_cviu.py --quick      # a smoke run (1 seed, tiny data), written to /tmp
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import (  # noqa: E402
    RESULTS,
    machine_info,
    machine_line,
    markdown_table,
    save_figure,
    seeded,
    set_threads,
    write_atomic,
)

set_threads(1)

import fmnist_common as fc  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

import tf_gpp  # noqa: E402
from tf_gpp.discriminant import ScatterStats, feature_model, neuron_utility  # noqa: E402
from tf_gpp.graph.dependency import DependencyGraph  # noqa: E402
from tf_gpp.importance import CVIUUtility, get_importance  # noqa: E402
from tf_gpp.importance.cviu import probe_accuracy  # noqa: E402
from tf_gpp.prune.planner import Constraints, group_scores, plan_threshold  # noqa: E402
from tf_gpp.surgery import rebuild  # noqa: E402

RATES = [0.5, 0.75]
CRITERIA = ["gpp", "gpp_grad", "taylor", "random"]
KS = [1, 2, 4, 8, 16, 32, 64]
ETAS = [0.1, 0.2, 0.5]
FINETUNE_EPOCHS = 2


def build_cnn(classes: int = 10) -> keras.Model:
    inp = keras.Input((28, 28, 1))
    h = inp
    for i, width in enumerate((16, 32, 64), start=1):
        h = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"c{i}")(h)
        h = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{i}")(h)
        h = keras.layers.ReLU(name=f"r{i}")(h)
        if i > 1:
            h = keras.layers.MaxPooling2D(name=f"pool{i}")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    h = keras.layers.Dense(64, activation="relu", name="fc")(h)
    return keras.Model(inp, keras.layers.Dense(classes, name="out")(h), name="cviu_cnn")


def compile_(model: keras.Model, lr: float) -> keras.Model:
    model.compile(keras.optimizers.Adam(lr), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    logits = np.concatenate([np.asarray(model(x[i:i + 500], training=False)) for i in range(0, len(x), 500)])
    return float(np.mean(logits.argmax(1) == y))


def equal_rate_plan(dep: DependencyGraph, scores: dict[int, np.ndarray], rate: float) -> dict[int, list[int]]:
    """Every group loses ``round(rate * size)`` units (its lowest scores), at least one kept."""
    plan = {}
    for gi, s in scores.items():
        n = Constraints().allowed(len(s), int(round(rate * len(s))))
        if n:
            plan[gi] = sorted(np.argsort(np.asarray(s), kind="stable")[:n].tolist())
    return plan


def prune_and_score(dep: DependencyGraph, scores: dict, rate: float, data: dict, finetune: bool) -> dict:
    slim = rebuild(dep, dep.removed_units(equal_rate_plan(dep, scores, rate)))
    tf_gpp.recalibrate_batchnorm(slim, data["x_train"], steps=50)
    out = {"oneshot": accuracy(slim, data["x_test"], data["y_test"]),
           "macs": int(tf_gpp.profile(slim).macs)}
    if finetune:
        compile_(slim, 1e-3).fit(data["x_train"], data["y_train"], epochs=FINETUNE_EPOCHS, batch_size=64, verbose=0)
        out["finetuned"] = accuracy(slim, data["x_test"], data["y_test"])
    return out


def pca_utility(x: np.ndarray, classes: int) -> np.ndarray:
    """``sum_k lambda_k |E_jk|`` over the top C-1 principal components of ``x``."""
    lam, e = np.linalg.eigh(np.cov(x, rowvar=False))
    top = np.argsort(lam)[::-1][: classes - 1]
    return np.abs(e[:, top]) @ lam[top]


def layer_of(dep: DependencyGraph, gi: int) -> str:
    return dep.groups[gi].producers[0]


def run_seed(seed: int, data: dict, epochs: int) -> dict:
    seeded(seed)
    model = compile_(build_cnn(), 1e-3)
    t0 = time.perf_counter()
    model.fit(data["x_train"], data["y_train"], epochs=epochs, batch_size=64, verbose=0)
    rec: dict[str, Any] = {"seed": seed, "train_seconds": round(time.perf_counter() - t0, 1),
                           "base_test": accuracy(model, data["x_test"], data["y_test"])}
    print(f"seed {seed}: base {100 * rec['base_test']:.2f}% test ({rec['train_seconds']} s)", flush=True)
    dep = DependencyGraph(model)
    train, val = (data["x_train"], data["y_train"]), (data["x_val"], data["y_val"])
    rec["negative_gamma"] = {la.name: int(np.sum(np.asarray(la.gamma) < 0)) for la in model.layers
                             if isinstance(la, keras.layers.BatchNormalization)}

    # -- Fig. 17: LDA (Fisher) vs PCA vs random ranking of the final neurons, frozen features
    feats = feature_model(model, "fc")
    ft = np.asarray(feats.predict(data["x_train"], verbose=0), np.float64)
    fe = np.asarray(feats.predict(data["x_test"], verbose=0), np.float64)
    stats = ScatterStats.from_arrays(ft, data["y_train"], num_classes=10)
    rankings = {"fisher": np.argsort(-neuron_utility(stats, "fisher"), kind="stable"),
                "pca": np.argsort(-pca_utility(ft, 10), kind="stable"),
                "random": np.random.default_rng(seed).permutation(ft.shape[1])}
    rec["fig17"] = {name: {k: probe_accuracy(stats, order[:k], fe, data["y_test"]) for k in KS}
                    for name, order in rankings.items()}

    # -- the CVIU utility (default options, the real validation split for M')
    scores: dict[str, dict[int, np.ndarray]] = {}
    seconds: dict[str, float] = {}
    for name in CRITERIA:
        seeded(seed)
        imp = CVIUUtility(validation_data=val) if name == "gpp" else get_importance(name)
        t0 = time.perf_counter()
        imp.prepare(model, dep, train)
        scores[name] = group_scores(dep, imp)
        seconds[name] = round(time.perf_counter() - t0, 2)
        if name == "gpp":
            rec["kept_features"] = int(len(imp.selection.kept))
            rec["selection"] = {"sizes": imp.selection.sizes, "accuracies": imp.selection.accuracies,
                                "full": imp.selection.full_accuracy}
    rec["scoring_seconds"] = seconds
    gpp = scores["gpp"]
    rec["zero_utility"] = {layer_of(dep, gi): [int(np.sum(s == 0)), len(s)] for gi, s in gpp.items()}
    rec["threshold_removes"] = {
        str(eta): {layer_of(dep, gi): len(units) for gi, units in
                   plan_threshold(dep, gpp, eta, Constraints()).items()} for eta in ETAS}

    # -- ReLU rule: deconv (Zeiler & Fergus) vs backprop's gates
    grad_rule = CVIUUtility(validation_data=val, relu="gradient")
    grad_rule.prepare(model, dep, train)
    g2 = group_scores(dep, grad_rule)
    rec["rule_spearman"] = {layer_of(dep, gi): float(spearmanr(gpp[gi], g2[gi])[0]) for gi in gpp}

    # -- Fig. 18: trace from one image per class (drawn per seed) vs all training images
    order = np.random.default_rng(1000 + seed).permutation(len(data["y_train"]))
    shuffled = (data["x_train"][order], data["y_train"][order])
    one = CVIUUtility(validation_data=val, images_per_class=1)
    one.prepare(model, dep, shuffled)
    every = CVIUUtility(validation_data=val, images_per_class=len(data["y_train"]))
    every.prepare(model, dep, train)
    s_one, s_all = group_scores(dep, one), group_scores(dep, every)
    rec["fig18_spearman"] = {layer_of(dep, gi): float(spearmanr(s_one[gi], s_all[gi])[0]) for gi in s_all}
    rec["fig18"] = {"one_per_class": prune_and_score(dep, s_one, 0.5, data, True),
                    "all_images": prune_and_score(dep, s_all, 0.5, data, True)}

    # -- §4.1.4: the same per-layer pruning rates, each criterion's choice of channels
    rec["rates"] = {}
    for rate in RATES:
        for name in CRITERIA:
            r = prune_and_score(dep, scores[name], rate, data, True)
            rec["rates"][f"{name}@{rate}"] = r
            print(f"  {name:9s} {int(100 * rate)}% per layer: one-shot {100 * r['oneshot']:.2f}%, "
                  f"fine-tuned {100 * r['finetuned']:.2f}%", flush=True)
    return rec


def mean_std(values: list[float], scale: float = 100.0, digits: int = 2) -> str:
    v = scale * np.asarray(values, np.float64)
    return f"{v.mean():.{digits}f} ± {v.std():.{digits}f}" if len(v) > 1 else f"{v.mean():.{digits}f}"


def report(runs: list[dict], meta: dict, out: Path) -> None:
    n = len(runs)
    layers = list(runs[0]["zero_utility"])
    md = [
        "# The CVIU paper's claims on a Fashion-MNIST subset (`importance=\"gpp\"`)\n",
        f"`python tools/bench_cviu.py` (1 TensorFlow thread). {machine_line(meta['machine'])}\n",
        f"Data: Fashion-MNIST, {meta['n_train']:,} train / {meta['n_val']:,} validation / {meta['n_test']:,} test "
        f"images (stratified subsets). Model: conv-BN-ReLU 16, 32, max-pool, 64, max-pool, GAP, Dense 64 ReLU "
        f"(the feature layer), Dense 10; {meta['epochs']} epochs of Adam 1e-3 per seed. {n} seeds, mean ± std; "
        f"base test accuracy {mean_std([r['base_test'] for r in runs])}%. Wall time {meta['seconds']:.0f} s.\n",
        "## Fig. 17: top-k final neurons ranked by the Fisher (LDA) utility vs PCA\n",
        "A least-squares probe on the frozen training features of the top-k neurons, test accuracy %. PCA "
        "ranks neurons by `sum_k lambda_k |E_jk|` over the top 9 principal components (our stand-in).\n",
        markdown_table([{"ranking": name, **{f"k={k}": mean_std([r["fig17"][name][k] for r in runs], digits=1)
                                             for k in KS}} for name in ("fisher", "pca", "random")],
                       ["ranking", *[f"k={k}" for k in KS]]),
        f"\nM' chosen by `gpp` (validation probe within 1 point of all 64): "
        f"{', '.join(str(r['kept_features']) for r in runs)} (per seed).\n",
        "## Fig. 18: the trace from one image per class vs all training images\n",
        "Spearman rank correlation of the channel utilities, per layer:\n",
        markdown_table([{"layer": la, "rho": f"{np.mean([r['fig18_spearman'][la] for r in runs]):.3f} ± "
                                             f"{np.std([r['fig18_spearman'][la] for r in runs]):.3f}"}
                        for la in layers], ["layer", "rho"]),
        "\nEvery layer pruned by 50% with each set of utilities, test accuracy %:\n",
        markdown_table([{"trace": label, "one-shot (BN re-estimated)": mean_std([r["fig18"][key]["oneshot"] for r in runs]),
                         "after 2 fine-tuning epochs": mean_std([r["fig18"][key]["finetuned"] for r in runs])}
                        for key, label in (("one_per_class", "1 image per class"), ("all_images", "all training images"))],
                       ["trace", "one-shot (BN re-estimated)", "after 2 fine-tuning epochs"]),
        "\n## §4.1.4: the same per-layer pruning rates, each criterion's channels\n",
        "Every prunable layer (c1, c2, c3, fc) loses the same share of its channels; BatchNorm statistics "
        "re-estimated; test accuracy %:\n",
    ]
    rows = []
    for rate in RATES:
        for name in CRITERIA:
            k = f"{name}@{rate}"
            rows.append({"criterion": name, "removed per layer": f"{int(100 * rate)}%",
                         "one-shot": mean_std([r["rates"][k]["oneshot"] for r in runs]),
                         "fine-tuned 2 epochs": mean_std([r["rates"][k]["finetuned"] for r in runs])})
    md.append(markdown_table(rows, ["criterion", "removed per layer", "one-shot", "fine-tuned 2 epochs"]))
    md += [
        "\n## What the CVIU utility does to this network\n",
        markdown_table([{"layer": la,
                         "zero utility (channels)": " / ".join(str(r["zero_utility"][la][0]) for r in runs)
                         + f" of {runs[0]['zero_utility'][la][1]}",
                         **{f"eta={eta} removes": " / ".join(str(r["threshold_removes"][str(eta)].get(la, 0))
                                                              for r in runs) for eta in ETAS},
                         "rho deconv vs gradient ReLU": " / ".join(f"{r['rule_spearman'][la]:.2f}" for r in runs)}
                        for la in layers],
                       ["layer", "zero utility (channels)", *[f"eta={eta} removes" for eta in ETAS],
                        "rho deconv vs gradient ReLU"]),
        "\nPer seed, separated by /. BatchNorm gammas below 0: "
        + "; ".join(f"{la}: " + " / ".join(str(r["negative_gamma"][la]) for r in runs) for la in runs[0]["negative_gamma"])
        + ".\n\n![cviu](cviu.png)\n",
    ]
    write_atomic(out / "cviu.md", "\n".join(md))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for name in ("fisher", "pca", "random"):
        m = [100 * np.mean([r["fig17"][name][k] for r in runs]) for k in KS]
        axes[0].plot(KS, m, "o-", label=name)
    axes[0].set_xscale("log", base=2)
    axes[0].set_xlabel("top-k final neurons")
    axes[0].set_ylabel("probe test accuracy (%)")
    axes[0].set_title("Fig. 17: Fisher vs PCA ranking", fontsize=10)
    axes[0].legend(fontsize=8)
    rho = [[r["fig18_spearman"][la] for r in runs] for la in layers]
    axes[1].bar(layers, [np.mean(v) for v in rho], yerr=[np.std(v) for v in rho], color="tab:blue")
    axes[1].set_ylim(0, 1.05)
    axes[1].set_ylabel("Spearman rho, 1 image/class vs all")
    axes[1].set_title("Fig. 18: trace from few images", fontsize=10)
    width = 0.2
    for i, name in enumerate(CRITERIA):
        vals = [[r["rates"][f"{name}@{rate}"]["finetuned"] for r in runs] for rate in RATES]
        axes[2].bar(np.arange(len(RATES)) + i * width, [100 * np.mean(v) for v in vals], width,
                    yerr=[100 * np.std(v) for v in vals], label=name)
    axes[2].set_xticks(np.arange(len(RATES)) + 1.5 * width, [f"{int(100 * r)}% per layer" for r in RATES])
    lo = min(100 * r["rates"][k]["finetuned"] for r in runs for k in r["rates"])
    axes[2].set_ylim(max(0, lo - 5), 100 * max(r["base_test"] for r in runs) + 2)
    axes[2].set_ylabel("test accuracy after 2 fine-tuning epochs (%)")
    axes[2].set_title("§4.1.4: equal per-layer rates", fontsize=10)
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, out / "cviu.png")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--train", type=int, default=8000, help="training pool before the validation split")
    p.add_argument("--test", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--quick", action="store_true", help="1 seed, 1,000 images, 1 epoch; written to --out")
    p.add_argument("--out", type=Path, default=None, help="results directory (default benchmarks/results)")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.train, args.test, args.epochs = 1, 1000, 300, 1
        args.out = args.out or Path("/tmp/bench_cviu_quick")
    out = args.out or RESULTS
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = fc.load_arrays(args.train, args.test)
    runs = [run_seed(seed, data, args.epochs) for seed in range(args.seeds)]
    meta = {"n_train": len(data["y_train"]), "n_val": len(data["y_val"]), "n_test": len(data["y_test"]),
            "epochs": args.epochs, "seeds": args.seeds, "seconds": time.perf_counter() - t0,
            "machine": machine_info(), "command": "python tools/bench_cviu.py " + " ".join(argv or sys.argv[1:])}
    write_atomic(out / "cviu.json", json.dumps({"meta": meta, "runs": runs}, indent=2, default=str))
    report(runs, meta, out)
    print(f"wrote {out / 'cviu'}.json/.md/.png in {meta['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
