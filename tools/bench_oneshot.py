#!/usr/bin/env python
"""How good is each pruning criterion before any fine-tuning? (Fashion-MNIST, one shot)

The cached Fashion-MNIST base CNN (``tools/benchmark_fashion_mnist.py`` trains it) is
scored once per criterion on a stratified 10,000-image training subset, pruned by the
same global planner to 50%, 25% and 10% of its MACs and evaluated on the 10,000 test
images with no fine-tuning and no BatchNorm recalibration. This isolates the choice of
channels from the recovery that fine-tuning brings.

    python tools/bench_oneshot.py      # -> benchmarks/results/oneshot.{json,md,png}
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import fmnist_common as fc  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from _report import RESULTS, machine_info, machine_line, markdown_table, write_atomic, write_json  # noqa: E402

import tf_gpp  # noqa: E402
from tf_gpp.graph.dependency import DependencyGraph  # noqa: E402
from tf_gpp.importance import get_importance  # noqa: E402
from tf_gpp.prune.planner import Constraints, group_scores, plan_global  # noqa: E402
from tf_gpp.surgery import rebuild  # noqa: E402

CRITERIA = ["gpp_lda", "gpp", "gpp_linear", "l1", "bn_scale", "taylor", "random"]
BUDGETS = [0.5, 0.25, 0.1]
SCORE_IMAGES = 10_000


def main() -> int:
    model_path, info_path = fc.base_paths(fc.CACHE, fc.BASE_RECIPES["full"])
    if not model_path.exists():
        raise SystemExit(f"no cached base model at {model_path}: run tools/benchmark_fashion_mnist.py --full first")
    base = keras.models.load_model(model_path)
    data = fc.load_arrays(None, None)
    idx = np.sort(tf_gpp.data.stratified_order(data["y_train"], 1)[:SCORE_IMAGES])
    x, y = data["x_train"][idx], data["y_train"][idx]
    base_macs = tf_gpp.profile(base).macs
    base_acc = fc.evaluate(keras, base, data["x_test"], data["y_test"])
    dep = DependencyGraph(base)
    rows = []
    for name in CRITERIA:
        keras.utils.set_random_seed(0)
        imp = get_importance(name)
        t0 = time.perf_counter()
        imp.prepare(base, dep, (x, y) if imp.requires_data else None)
        scores = group_scores(dep, imp)
        seconds = time.perf_counter() - t0
        for budget in BUDGETS:
            plan = plan_global(dep, scores, Constraints(), target_macs=int(budget * base_macs))
            slim = rebuild(dep, dep.removed_units(plan))
            prof = tf_gpp.profile(slim)
            acc = fc.evaluate(keras, slim, data["x_test"], data["y_test"])
            rows.append({"criterion": name, "budget": budget, "accuracy": acc, "params": int(prof.params),
                         "macs_ratio": prof.macs / base_macs, "scoring_seconds": round(seconds, 1)})
            print(f"{name:11s} {int(100 * budget):3d}% MACs: test accuracy {100 * acc:6.2f}%  "
                  f"({prof.params:,} params)", flush=True)
    payload = {"base_accuracy": base_acc, "base_macs": base_macs, "score_images": SCORE_IMAGES,
               "rows": rows, "machine": machine_info()}
    write_json("oneshot", payload)
    table = [{"criterion": c, **{f"{int(100 * b)}% MACs": f"{100 * r['accuracy']:.2f}"
                                 for b in BUDGETS for r in rows if r["criterion"] == c and r["budget"] == b}}
             for c in CRITERIA]
    md = (
        "# One-shot pruning on Fashion-MNIST: which channels each criterion keeps\n\n"
        f"`python tools/bench_oneshot.py`. {machine_line(payload['machine'])}\n\n"
        f"The cached base CNN ({100 * base_acc:.2f}% test) is scored on {SCORE_IMAGES:,} training images, pruned "
        "by the global planner to each MACs budget and evaluated on the 10,000 test images **without fine-tuning "
        "or BatchNorm recalibration**. Test accuracy %:\n\n"
        + markdown_table(table, ["criterion", *[f"{int(100 * b)}% MACs" for b in BUDGETS]])
        + "\nAfter fine-tuning the criteria end up within about a point of each other "
        "([fashion_mnist_subset.md](fashion_mnist_subset.md), the 10k-image protocol).\n\n![one-shot](oneshot.png)\n"
    )
    write_atomic(RESULTS / "oneshot.md", md)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for c in CRITERIA:
        pts = [r for r in rows if r["criterion"] == c]
        ax.plot([100 * r["budget"] for r in pts], [100 * r["accuracy"] for r in pts], "o-", label=c,
                lw=2.2 if c == "gpp_lda" else 1.2)
    ax.axhline(100 * base_acc, color="k", ls=":", lw=0.8, label="base")
    ax.set_xlabel("MACs kept (% of base)")
    ax.set_ylabel("test accuracy without fine-tuning (%)")
    ax.set_title("Fashion-MNIST CNN pruned in one shot", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "oneshot.png", dpi=110)
    print(f"wrote {RESULTS / 'oneshot'}.json/.md/.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
