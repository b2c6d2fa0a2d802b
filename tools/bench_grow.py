#!/usr/bin/env python
"""Grow benchmark on Fashion-MNIST: start vs grown Inception vs ResNet-style, and GPP vs same-size grown.

Sections, all on the same data pipelines, Adam(1e-3), batch 128, one seed:

(a) **start** - the starting Inception net (stem + 2 modules with a reduction,
    base width 16, stem stride 2) trained alone for as many epochs as the
    grown net's weights received along its accepted lineage
    (``start_epochs + epochs_per_round * accepted steps``).
(b) **grown** - ``tf_gpp.grow.Grower`` from that start net: each round tries
    "add a module", then "widen the narrowest", each candidate warm-started and
    trained ``epochs_per_round`` epochs, accepted if validation accuracy gains
    more than ``min_delta`` (baseline "incumbent"). Every step is recorded
    (modules, Inception-N name, params, MACs, val accuracy); the accepted nets
    are kept and evaluated on the test set.
(c) **ResNet-style** - stem conv + two stages of basic residual blocks (widths
    w, 2w; stride-2 projection), its width chosen so its params are closest to
    the grown net's, trained from scratch for the same epochs as (a).
(d) **GPP vs same size** - the earlier accepted net of the growth trajectory
    whose MACs are closest to half the grown net's is the reference; the grown
    net is pushed and pruned with ``tf_gpp.gpp.compress_grown`` (i.e.
    ``tf_gpp.compress``: importance ``gpp_lda``, push, distillation from the
    grown net, global ranking) to at most the
    reference's MACs *and* params, and compared side by side with the reference
    as growing produced it, and with the reference trained further for the
    same number of extra epochs the compression spent (push + fine-tune).

Data: the full run uses a stratified 15,000-image subset of the training set
(13,000 train / 2,000 validation) and the full 10,000-image test set, so the
whole script fits ~30-40 min on 2 shared CPU cores (start 3 epochs, 2 epochs
per candidate, up to 3 growth rounds; 2 compression rounds of 1 push + 1
fine-tune epoch). ``--quick`` uses 2,000 images (1,600 / 400), 2,000 test
images, base width 8, one growth round that accepts any candidate and one
compression round (~5-10 min, most of it graph tracing; for checking the
script, not for conclusions).

    python tools/bench_grow.py            # full -> benchmarks/results/grow.{json,md,png}
    python tools/bench_grow.py --quick    # -> benchmarks/results/grow_quick.*
    python tools/bench_grow.py --render   # re-render grow.md/.png from grow.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _report import RESULTS, machine_info, machine_line, markdown_table, write_atomic, write_json  # noqa: E402

from tf_gpp.data import load_fashion_mnist  # noqa: E402
from tf_gpp.gpp import compress_grown  # noqa: E402
from tf_gpp.grow import (  # noqa: E402
    Grower,
    InceptionSpec,
    build_inception,
    default_start_spec,
    model_cost,
)

SETTINGS: dict[str, dict[str, Any]] = {
    "full": {
        "limit": 15_000, "val_examples": 2_000, "batch_size": 128,
        "width": 16, "stem_strides": 2,
        "start_epochs": 3, "epochs_per_round": 2, "max_rounds": 3, "min_delta": 0.003,
        "compress_rounds": 2, "push_epochs": 1, "finetune_epochs": 1,
        "importance": "gpp_lda", "distill": True,
    },
    "quick": {
        "limit": 2_000, "val_examples": 400, "batch_size": 128,
        "width": 8, "stem_strides": 2,
        "start_epochs": 1, "epochs_per_round": 1, "max_rounds": 1, "min_delta": -1.0,
        "compress_rounds": 1, "push_epochs": 1, "finetune_epochs": 1,
        "importance": "gpp_lda", "distill": True,
    },
}
LEARNING_RATE = 1e-3
SEED = 0


def log(msg: str) -> None:
    print(f"[bench_grow {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# -- models ------------------------------------------------------------------------------


def build_resnet(
    input_shape: tuple[int, ...], num_classes: int, width: int, stem_strides: int = 2,
    blocks: tuple[int, ...] = (1, 1),
) -> keras.Model:
    """ResNet-style net: stem conv-BN-ReLU, stages of basic blocks (widths w, 2w, ...), GAP, Dense."""

    def conv_bn(x: Any, filters: int, kernel: int, strides: int, name: str) -> Any:
        x = keras.layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                                kernel_initializer="he_normal", name=name)(x)
        return keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)

    inputs = keras.Input(input_shape, name="input")
    x = keras.layers.ReLU(name="stem_relu")(conv_bn(inputs, width, 3, stem_strides, "stem"))
    channels = width
    for s, n in enumerate(blocks):
        filters = width * 2**s
        for b in range(n):
            strides = 2 if (s > 0 and b == 0) else 1
            name = f"s{s + 1}b{b + 1}"
            y = keras.layers.ReLU(name=f"{name}_relu1")(conv_bn(x, filters, 3, strides, f"{name}_conv1"))
            y = conv_bn(y, filters, 3, 1, f"{name}_conv2")
            shortcut = x
            if strides != 1 or channels != filters:
                shortcut = conv_bn(x, filters, 1, strides, f"{name}_proj")
            x = keras.layers.ReLU(name=f"{name}_out")(keras.layers.Add(name=f"{name}_add")([y, shortcut]))
            channels = filters
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(num_classes, name="classifier")(x)
    depth = 1 + 2 * sum(blocks) + 1
    return keras.Model(inputs, outputs, name=f"ResNet-{depth}")


def resnet_matching(input_shape: tuple[int, ...], num_classes: int, params: int, stem_strides: int) -> keras.Model:
    """The ResNet-style net whose parameter count is closest to ``params``."""
    best = None
    for width in range(2, 129):
        count = build_resnet(input_shape, num_classes, width, stem_strides).count_params()
        if best is None or abs(count - params) < abs(best[1] - params):
            best = (width, count)
        if count > params:
            break
    return build_resnet(input_shape, num_classes, best[0], stem_strides)


class RecordingGrower(Grower):
    """A Grower that keeps the trained weights of every candidate (in training order)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trained: list[tuple[InceptionSpec, list[np.ndarray]]] = []

    def train(self, model: keras.Model, spec: InceptionSpec, train: Any, val: Any, epochs: int) -> tuple[float, float]:
        out = super().train(model, spec, train, val, epochs)
        self.trained.append((spec, model.get_weights()))
        return out


# -- training and evaluation -------------------------------------------------------------


def compile_like_grower(model: keras.Model) -> None:
    """The optimizer, loss and metric Grower.train uses (Adam, logits, accuracy)."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=LEARNING_RATE),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )


def accuracy(model: keras.Model, data: Any) -> float:
    compile_like_grower(model)
    return float(model.evaluate(data, verbose=0, return_dict=True)["accuracy"])


def train_from_scratch(model: keras.Model, bundle: Any, epochs: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    compile_like_grower(model)
    model.fit(bundle.train, epochs=epochs, verbose=0)
    return describe(model, bundle, epochs=epochs, seconds=time.perf_counter() - t0)


def describe(model: keras.Model, bundle: Any, **extra: Any) -> dict[str, Any]:
    cost = model_cost(model)
    return {
        "name": model.name, "params": cost.params, "macs": cost.macs,
        "val_accuracy": accuracy(model, bundle.val), "test_accuracy": accuracy(model, bundle.test),
        **{k: (round(v, 1) if isinstance(v, float) else v) for k, v in extra.items()},
    }


def stderr(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 1e-12) / n)


# -- report ------------------------------------------------------------------------------


def fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def verdict(a: dict, b: dict, n_test: int) -> str:
    """'higher'/'lower'/'about the same' for a vs b, with the gap in points and in test std errors."""
    gap = a["test_accuracy"] - b["test_accuracy"]
    se = math.sqrt(stderr(a["test_accuracy"], n_test) ** 2 + stderr(b["test_accuracy"], n_test) ** 2)
    word = "higher than" if gap > 0 else "lower than" if gap < 0 else "equal to"
    strength = "" if abs(gap) >= 2 * se else " (within 2 standard errors of the test estimate: not a clear difference)"
    return f"{word} {b['label']} by {100 * abs(gap):.2f} points{strength}"


def plot(payload: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    traj = [s for s in payload["growth"] if s["accepted"] and s.get("test_accuracy") is not None]
    cfg = payload["settings"]
    others = payload["models"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    styles = {
        "start": ("s", "tab:blue"), "resnet": ("D", "tab:green"), "pruned": ("*", "tab:red"),
        "reference": ("o", "tab:purple"), "reference_extra": ("P", "tab:purple"),
    }
    for ax, key, label in ((axes[0], "params", "parameters"), (axes[1], "macs", "MACs per image")):
        ax.plot([s[key] for s in traj], [100 * s["test_accuracy"] for s in traj], "-o",
                color="tab:gray", label="growth trajectory (accepted steps)", zorder=2)
        for i, s in enumerate(traj):
            epochs = cfg["start_epochs"] + i * cfg["epochs_per_round"]
            ax.annotate(f"{s['name']}\n({s['action']}, {epochs} ep)", (s[key], 100 * s["test_accuracy"]),
                        textcoords="offset points", xytext=(4, -16), fontsize=7, color="tab:gray")
        for tag, (marker, color) in styles.items():
            m = others.get(tag)
            if m is None:
                continue
            ax.scatter([m[key]], [100 * m["test_accuracy"]], marker=marker, s=110 if marker == "*" else 55,
                       color=color, label=m["label"], zorder=3, edgecolors="black", linewidths=0.5)
        ax.set_xscale("log")
        ax.set_xlabel(label + " (log scale)")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle(f"Fashion-MNIST ({payload['mode']} run): growing, ResNet-style, and GPP of the grown net",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_markdown(payload: dict, path: Path) -> None:
    m, s, n_test = payload["models"], payload["settings"], payload["data"]["test"]
    rows = []
    for tag in ("start", "grown", "resnet", "reference", "reference_extra", "pruned"):
        x = m.get(tag)
        if x is None:
            continue
        rows.append({
            "model": x["label"], "architecture": x["name"], "epochs": x.get("epochs_note", x.get("epochs")),
            "params": fmt(x["params"]), "MACs": fmt(x["macs"]),
            "val acc": fmt(x["val_accuracy"]), "test acc": fmt(x["test_accuracy"]),
        })
    growth_rows = [{
        "step": g["step"], "round": g["round"], "action": g["action"] + (f" {g['target']}" if g["target"] else ""),
        "net": g["name"], "modules": g["modules"], "params": fmt(g["params"]), "MACs": fmt(g["macs"]),
        "val acc": fmt(g["val_accuracy"]), "test acc": fmt(g.get("test_accuracy")),
        "accepted": "yes" if g["accepted"] else "no", "reason": g["reason"],
    } for g in payload["growth"]]
    comp_rows = [{
        "round": r["round"], "params": fmt(r["params"]), "MACs": fmt(r["macs"]),
        "MACs %": f"{100 * r['macs_ratio']:.1f}", "val acc": fmt(r["accuracy"]), "seconds": r["seconds"],
    } for r in payload["compress"]["history"]]
    mode = payload["mode"]
    title = "Grow benchmark (Fashion-MNIST)" + ("" if mode == "full" else f" - {mode.upper()} run, not for conclusions")
    d = payload["data"]
    md = f"# {title}\n\n"
    md += (
        f"Data: Fashion-MNIST, stratified subset: {d['train']:,} train / {d['val']:,} validation images "
        f"(from the training set), {d['test']:,} test images; pixels scaled to [0, 1]. One seed ({SEED}). "
        f"Adam({LEARNING_RATE}), batch {s['batch_size']}, sparse cross-entropy on logits. "
        f"Start net: stem (stride {s['stem_strides']}) + Inception module + reduction module + Inception "
        f"module, base width {s['width']}. Growing: start {s['start_epochs']} epochs, "
        f"{s['epochs_per_round']} epochs per candidate, up to {s['max_rounds']} rounds of add-then-widen, "
        f"min_delta {s['min_delta']}. Compression: tf_gpp.compress, importance {s.get('importance', 'gpp')}, push, "
        f"{'distillation from the grown net, ' if s.get('distill') else ''}"
        f"{s['compress_rounds']} rounds x ({s['push_epochs']} push + {s['finetune_epochs']} fine-tune epochs), "
        "target = the reference net's MACs and params.\n\n"
    )
    md += "## Results\n\n" + markdown_table(rows, ["model", "architecture", "epochs", "params", "MACs", "val acc", "test acc"])
    md += f"\nTest accuracy standard error at these accuracies: about {100 * payload['test_stderr']:.2f} points (n={n_test:,}).\n"
    md += "\n## Issue 4 goals\n\n" + goals(payload) + "\n"
    md += "\n## What won, what didn't\n\n" + payload["conclusion"] + "\n"
    md += "\n## Growth history\n\n" + markdown_table(growth_rows, ["step", "round", "action", "net", "modules", "params", "MACs", "val acc", "test acc", "accepted", "reason"])
    md += f"\nStop: {payload['stop_reason']}.\n"
    md += "\n## Compression rounds (grown net -> pruned)\n\n" + markdown_table(comp_rows, ["round", "params", "MACs", "MACs %", "val acc", "seconds"])
    md += "\n![accuracy vs params/MACs](" + payload["png"] + ")\n"
    secs = payload["seconds"]
    md += "\nWall time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in secs.items()) + ".\n"
    md += "\n" + machine_line(payload["machine"]) + "\n\n"
    md += "Reproduce: `python tools/bench_grow.py" + ("" if mode == "full" else " --quick") + "`\n"
    write_atomic(path, md)


def goals(payload: dict) -> str:
    """Issue 4's measured goals, each marked met / not met from the numbers."""
    m = payload["models"]
    g, first = m["grown"], payload["growth"][0]

    def mark(ok: bool) -> str:
        return "met" if ok else "NOT met"

    lines = [
        f"- Grown net's validation accuracy above the starting net's: {mark(g['val_accuracy'] > first['val_accuracy'])} "
        f"against the start net as growing trained it ({100 * first['val_accuracy']:.2f}%, "
        f"{payload['settings']['start_epochs']} epochs); {mark(g['val_accuracy'] > m['start']['val_accuracy'])} "
        f"against the start net trained alone for the same {m['start']['epochs']} epochs "
        f"({100 * m['start']['val_accuracy']:.2f}% vs {100 * g['val_accuracy']:.2f}%).",
        f"- Grown net's validation accuracy above the ResNet-style net of similar params: "
        f"{mark(g['val_accuracy'] > m['resnet']['val_accuracy'])} ({100 * g['val_accuracy']:.2f}% vs "
        f"{100 * m['resnet']['val_accuracy']:.2f}%).",
    ]
    ref, ext, p = m.get("reference"), m.get("reference_extra"), m["pruned"]
    if ref is not None:
        line = (f"- Pushed-and-pruned grown net more accurate (test) than the same-size net produced during "
                f"growing: {mark(p['test_accuracy'] > ref['test_accuracy'])} as growing produced it")
        if ext is not None:
            line += (f"; {mark(p['test_accuracy'] > ext['test_accuracy'])} once that net gets the same "
                     f"{ext['epochs']} extra epochs the compression spent")
        lines.append(line + ".")
    return "\n".join(lines)


def conclusion(payload: dict) -> str:
    m, n_test = payload["models"], payload["data"]["test"]
    parts = []
    g = m["grown"]
    parts.append(f"- Grown net ({g['name']}, test {100 * g['test_accuracy']:.2f}%) vs start net trained alone "
                 f"for the same epochs ({100 * m['start']['test_accuracy']:.2f}%): grown is "
                 f"{verdict(g, m['start'], n_test)}; on validation {100 * g['val_accuracy']:.2f}% vs "
                 f"{100 * m['start']['val_accuracy']:.2f}%.")
    r = m["resnet"]
    parts.append(f"- Grown net vs {r['name']} ({r['params']:,} params vs {g['params']:,}; "
                 f"{r['macs']:,} vs {g['macs']:,} MACs; test {100 * r['test_accuracy']:.2f}%): grown is "
                 f"{verdict(g, r, n_test)}; on validation {100 * g['val_accuracy']:.2f}% vs "
                 f"{100 * r['val_accuracy']:.2f}%.")
    p, ref = m["pruned"], m.get("reference")
    if ref is not None:
        parts.append(f"- Pushed-and-pruned grown net ({p['params']:,} params, {p['macs']:,} MACs, test "
                     f"{100 * p['test_accuracy']:.2f}%) vs the same-size net produced during growing "
                     f"({ref['name']}, {ref['params']:,} params, {ref['macs']:,} MACs, test "
                     f"{100 * ref['test_accuracy']:.2f}%): pruned is {verdict(p, ref, n_test)}.")
        ext = m.get("reference_extra")
        if ext is not None:
            parts.append(f"- Against the reference trained {ext['epochs']} more epochs (the extra training "
                         f"the compression spent; test {100 * ext['test_accuracy']:.2f}%), pruned is "
                         f"{verdict(p, ext, n_test)}.")
    else:
        parts.append("- Growth accepted no step, so there is no earlier same-size net; the pruned net "
                     f"(test {100 * p['test_accuracy']:.2f}%) is reported alone.")
    hist = payload["compress"]["history"]
    if hist and any(r["accuracy"] < payload["compress"]["base"]["accuracy"] for r in hist):
        rounds = ", ".join(f"{100 * r['macs_ratio']:.0f}% MACs -> {100 * r['accuracy']:.2f}%" for r in hist)
        parts.append(f"- Compression lost accuracy: the grown net's validation "
                     f"accuracy {100 * payload['compress']['base']['accuracy']:.2f}% fell to ({rounds}) with "
                     f"{payload['settings']['push_epochs']} push + {payload['settings']['finetune_epochs']} "
                     "fine-tune epoch(s) per round (longer push/fine-tuning is untested here).")
    parts.append(f"- Caveats: one seed, a {payload['data']['train']:,}-image training subset and a few "
                 "epochs per model; the start/ResNet-style nets get as many epochs as the grown net's own "
                 "lineage, not the total compute of growing (rejected candidates included); the pruned "
                 "net has had more training epochs than the reference produced during growing.")
    return "\n".join(parts)


# -- main --------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few-minutes run with tiny settings")
    ap.add_argument("--out-name", default=None, help="results file stem (default grow / grow_quick, grow_s<N> with --seed N)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the weights and training (the data subset stays seed 0)")
    ap.add_argument("--render", action="store_true",
                    help="only rewrite the .md/.png (and conclusion) from an existing results .json")
    args = ap.parse_args()
    global SEED
    SEED = args.seed
    mode = "quick" if args.quick else "full"
    s = SETTINGS[mode]
    name = args.out_name or ("grow" if mode == "full" else "grow_quick") + (f"_s{SEED}" if SEED else "")
    if args.render:
        render(name, json.loads((RESULTS / f"{name}.json").read_text()))
        return
    t_start = time.perf_counter()
    seconds: dict[str, float] = {}

    bundle = load_fashion_mnist(limit=s["limit"], validation_split=s["val_examples"] / s["limit"],
                                batch_size=s["batch_size"], seed=0)
    log(bundle.describe())
    shape, classes = bundle.input_shape, bundle.num_classes

    # (b) growing
    t0 = time.perf_counter()
    start_spec = default_start_spec(shape, classes, width=s["width"], stem_strides=s["stem_strides"])
    keras.utils.set_random_seed(SEED)
    grower = RecordingGrower(
        start=start_spec, max_rounds=s["max_rounds"], min_delta=s["min_delta"],
        epochs_per_round=s["epochs_per_round"], start_epochs=s["start_epochs"],
        actions=("add", "widen"), learning_rate=LEARNING_RATE, seed=SEED, verbose=1,
    )
    grown = grower.run(bundle)
    trained_steps = [h for h in grown.history if h["epochs"] > 0]
    assert len(trained_steps) == len(grower.trained)
    weights = {h["step"]: w for h, (_, w) in zip(trained_steps, grower.trained, strict=True)}
    growth = []
    for h in grown.history:
        entry = {k: v for k, v in h.items() if k != "spec"}
        entry["spec"] = h["spec"]
        entry["test_accuracy"] = None
        if h["accepted"]:
            model = build_inception(InceptionSpec.from_dict(h["spec"]))
            model.set_weights(weights[h["step"]])
            entry["test_accuracy"] = accuracy(model, bundle.test)
        growth.append(entry)
    seconds["grow"] = time.perf_counter() - t0
    accepted = [g for g in growth if g["accepted"]]
    lineage_epochs = s["start_epochs"] + s["epochs_per_round"] * (len(accepted) - 1)
    log(f"grown {grown.spec.model_name}; lineage epochs {lineage_epochs}")
    models: dict[str, dict[str, Any]] = {}
    final = accepted[-1]
    models["grown"] = {
        "label": "grown (Grow)", "name": final["name"], "params": final["params"], "macs": final["macs"],
        "val_accuracy": final["val_accuracy"], "test_accuracy": final["test_accuracy"],
        "epochs": lineage_epochs, "epochs_note": f"{lineage_epochs} (lineage)",
    }

    # (a) the start net trained alone, same epochs
    t0 = time.perf_counter()
    keras.utils.set_random_seed(SEED)
    models["start"] = {"label": "start net alone", **train_from_scratch(build_inception(start_spec), bundle, lineage_epochs)}
    seconds["start_alone"] = time.perf_counter() - t0
    log(f"start alone: {models['start']}")

    # (c) ResNet-style of similar params, same epochs and optimizer
    t0 = time.perf_counter()
    keras.utils.set_random_seed(SEED)
    resnet = resnet_matching(shape, classes, final["params"], s["stem_strides"])
    models["resnet"] = {"label": "ResNet-style", **train_from_scratch(resnet, bundle, lineage_epochs)}
    seconds["resnet"] = time.perf_counter() - t0
    log(f"resnet: {models['resnet']}")

    # (d) push + prune the grown net to the size of an earlier net of the trajectory
    t0 = time.perf_counter()
    earlier = accepted[:-1]
    ref = min(earlier, key=lambda g: abs(math.log(g["macs"] / (0.5 * final["macs"])))) if earlier else None
    target = {"target_macs": ref["macs"], "target_params": ref["params"]} if ref else {"target_macs": 0.5}
    extra_epochs = s["compress_rounds"] * (s["push_epochs"] + s["finetune_epochs"])
    gpp = compress_grown(
        grown, bundle.train, bundle.val,
        compress_kwargs=dict(
            **target, importance=s["importance"], distill=s["distill"], push=True, rounds=s["compress_rounds"],
            push_epochs=s["push_epochs"], finetune_epochs=s["finetune_epochs"],
            max_accuracy_drop=1.0, learning_rate=LEARNING_RATE, seed=SEED,
        ),
        verbose=1,
    )
    models["pruned"] = {
        "label": "grown, pushed + pruned (GPP)",
        **describe(gpp.model, bundle, epochs=lineage_epochs + extra_epochs),
        "epochs_note": f"{lineage_epochs} + {extra_epochs} (push/fine-tune)",
    }
    models["pruned"]["name"] = f"{final['name']} pruned"
    seconds["compress"] = time.perf_counter() - t0
    log(f"pruned: {models['pruned']}")
    if ref is not None:
        ref_epochs = s["start_epochs"] + s["epochs_per_round"] * accepted.index(ref)
        models["reference"] = {
            "label": "same-size grown net (from growing)", "name": ref["name"], "params": ref["params"],
            "macs": ref["macs"], "val_accuracy": ref["val_accuracy"], "test_accuracy": ref["test_accuracy"],
            "epochs": ref_epochs, "epochs_note": f"{ref_epochs} (lineage)", "step": ref["step"],
        }
        t0 = time.perf_counter()
        keras.utils.set_random_seed(SEED)
        model = build_inception(InceptionSpec.from_dict(ref["spec"]))
        model.set_weights(weights[ref["step"]])
        compile_like_grower(model)
        model.fit(bundle.train, epochs=extra_epochs, verbose=0)
        models["reference_extra"] = {
            "label": f"same-size grown net + {extra_epochs} epochs",
            **describe(model, bundle, epochs=extra_epochs, seconds=time.perf_counter() - t0),
            "epochs_note": f"{ref_epochs} + {extra_epochs}",
        }
        seconds["reference_extra"] = time.perf_counter() - t0
        log(f"reference + extra: {models['reference_extra']}")

    seconds["total"] = time.perf_counter() - t_start
    n_test = bundle.num_examples["test"]
    payload = {
        "mode": mode, "settings": s, "seed": SEED, "learning_rate": LEARNING_RATE,
        "data": {"source": bundle.source, **bundle.num_examples},
        "models": models, "growth": growth, "stop_reason": grown.stop_reason,
        "compress": gpp.compressed.to_dict(),
        "test_stderr": stderr(models["grown"]["test_accuracy"], n_test),
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "machine": machine_info(), "png": f"{name}.png",
    }
    render(name, payload)
    log(f"wrote {name}.json, {name}.md, {name}.png in {seconds['total']:.0f} s")


def render(name: str, payload: dict) -> None:
    """Write ``<name>.json`` (with its conclusion), ``.md`` and ``.png``."""
    payload["conclusion"] = conclusion(payload)
    payload["goals"] = goals(payload)
    write_json(name, payload)
    plot(payload, RESULTS / f"{name}.png")
    write_markdown(payload, RESULTS / f"{name}.md")
    print(payload["goals"] + "\n" + payload["conclusion"])


if __name__ == "__main__":
    main()
