#!/usr/bin/env python
"""Ablation of the GPP choices on scikit-learn digits (fast, offline).

A small CNN (conv-BN-ReLU 16-32-pool-64, global average pooling -> 64 feature
neurons, Dense(10); BatchNorm momentum 0.9) is trained per seed, then compressed
to ~30% of its MACs by ``tf_gpp.compress`` (global ranking, 2 rounds) with:

* ``full``        push a=0.1, b=0.1, g=1 (``PushLoss``'s defaults before issue 23), fisher utility,
  deconv trace; push configs push before every round (``push_every_round=True``, this protocol);
* ``a=0``/``b=0``/``g=0``  one push term off;
* ``no_push``     push off entirely (the CVIU LDA-prune; fine-tune epochs raised so the
  total training epochs per round are equal);
* ``lda``         LDA-loading utility instead of the diagonal Fisher ratio (push on);
* ``linear``      data-free |W| trace instead of the data-driven (deconv) trace (push on);
* ``l1``          L1 filter norm without push, as a non-discriminant reference.

Reported per configuration (mean ± std over seeds): test accuracy after
compression, MACs ratio, and the top-25% share of the Fisher utility of the
feature layer (``tf_gpp.discriminant.top_share``) measured on the training
images right after each push phase (before pruning) — how concentrated the
discriminant power is — next to the same share of the unpushed base.

Usage::

    python tools/ablation.py                # 3 seeds (~15-25 min on 2 shared cores)
    python tools/ablation.py --seeds 2

Writes ``benchmarks/results/ablation.{json,md,png}``; per-run results are cached in
``benchmarks/cache/ablation/`` so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
for p in (str(TOOLS), str(REPO)):
    if p not in sys.path:
        sys.path.insert(0, p)

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _report import RESULTS, machine_info, markdown_table, write_atomic  # noqa: E402

import tf_gpp  # noqa: E402
from tf_gpp.discriminant import ScatterStats, feature_model, neuron_utility, top_share  # noqa: E402
from tf_gpp.importance import GPPUtility, get_importance  # noqa: E402
from tf_gpp.push import PushModel  # noqa: E402

CACHE = REPO / "benchmarks" / "cache" / "ablation"
TARGET = 0.3
ROUNDS = 2
PUSH_EPOCHS = 6
FINETUNE_EPOCHS = 6
BASE_EPOCHS = 40
LR = 1e-3
BATCH = 64

CONFIGS: dict[str, dict[str, Any]] = {
    "full": {"push": True, "loss": {"a": 0.1, "b": 0.1, "g": 1.0}, "utility": "fisher", "trace": "deconv"},
    "a=0": {"push": True, "loss": {"a": 0.0, "b": 0.1, "g": 1.0}, "utility": "fisher", "trace": "deconv"},
    "b=0": {"push": True, "loss": {"a": 0.1, "b": 0.0, "g": 1.0}, "utility": "fisher", "trace": "deconv"},
    "g=0": {"push": True, "loss": {"a": 0.1, "b": 0.1, "g": 0.0}, "utility": "fisher", "trace": "deconv"},
    "no_push": {"push": False, "loss": None, "utility": "fisher", "trace": "deconv"},
    "lda": {"push": True, "loss": {"a": 0.1, "b": 0.1, "g": 1.0}, "utility": "lda", "trace": "deconv"},
    "linear": {"push": True, "loss": {"a": 0.1, "b": 0.1, "g": 1.0}, "utility": "fisher", "trace": "linear"},
    "l1": {"push": False, "loss": None, "importance": "l1"},
}


def build_cnn(name: str = "digits_cnn") -> keras.Model:
    inp = keras.Input((8, 8, 1), name="pixels")
    h = inp
    for i, width in enumerate((16, 32)):
        h = keras.layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"conv{i}")(h)
        h = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{i}")(h)
        h = keras.layers.ReLU(name=f"relu{i}")(h)
    h = keras.layers.MaxPooling2D(name="pool")(h)
    h = keras.layers.Conv2D(64, 3, padding="same", use_bias=False, name="conv2")(h)
    h = keras.layers.BatchNormalization(momentum=0.9, name="bn2")(h)
    h = keras.layers.ReLU(name="relu2")(h)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    out = keras.layers.Dense(10, name="logits")(h)
    return keras.Model(inp, out, name=name)


def load() -> dict[str, np.ndarray]:
    ds = tf_gpp.data.load_digits(validation_split=0.2, test_split=0.2, seed=0)
    out = {}
    for split in ("train", "val", "test"):
        x, y = ds.as_numpy(split)
        out[f"x_{split}"], out[f"y_{split}"] = x.astype("float32"), y.astype("int32")
    return out


def fisher_top_share(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    stats = ScatterStats(10, full=False)
    feats = feature_model(model)
    for i in range(0, len(x), 256):
        stats.update(np.asarray(feats(x[i : i + 256], training=False)), y[i : i + 256])
    return top_share(neuron_utility(stats, "fisher"), 0.25)


class TopShareAfterPush(keras.callbacks.Callback):
    """Records the feature layer's top-25% Fisher share at the end of every push fit."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        super().__init__()
        self.x, self.y = x, y
        self.shares: list[float] = []

    def on_train_end(self, logs=None):
        if isinstance(self.model, PushModel):
            self.shares.append(fisher_top_share(self.model.base_model, self.x, self.y))


def accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y))


def base_model(seed: int, data: dict) -> tuple[keras.Model, dict]:
    path = CACHE / f"base_s{seed}.keras"
    info_path = CACHE / f"base_s{seed}.json"
    if path.exists() and info_path.exists():
        return keras.models.load_model(path), json.loads(info_path.read_text())
    keras.utils.set_random_seed(seed)
    model = build_cnn()
    steps = BASE_EPOCHS * int(np.ceil(len(data["y_train"]) / BATCH))
    model.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(2e-3, steps)),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(data["x_train"], data["y_train"], batch_size=BATCH, epochs=BASE_EPOCHS, verbose=0)
    prof = tf_gpp.profile(model)
    info = {"seed": seed, "accuracy": accuracy(model, data["x_test"], data["y_test"]),
            "params": int(prof.params), "macs": int(prof.macs),
            "top_share": fisher_top_share(model, data["x_train"], data["y_train"])}
    model.save(path)
    info_path.write_text(json.dumps(info, indent=2))
    return model, info


def run(config: str, seed: int, data: dict, log: Any) -> dict:
    out_path = CACHE / f"run_{config.replace('=', '')}_s{seed}.json"
    if out_path.exists():
        return json.loads(out_path.read_text())
    spec = CONFIGS[config]
    base, base_info = base_model(seed, data)
    if "importance" in spec:
        importance = get_importance(spec["importance"])
    else:
        importance = GPPUtility(utility=spec["utility"], trace=spec["trace"])
    probe = TopShareAfterPush(data["x_train"], data["y_train"])
    push = spec["push"]
    t0 = time.time()
    result = tf_gpp.compress(
        base, (data["x_train"], data["y_train"]), (data["x_val"], data["y_val"]),
        target_macs=TARGET, importance=importance, push=push,
        push_loss=tf_gpp.PushLoss(**spec["loss"]) if push else None,
        rounds=ROUNDS, push_epochs=PUSH_EPOCHS if push else 0, push_every_round=push,
        finetune_epochs=FINETUNE_EPOCHS if push else PUSH_EPOCHS + FINETUNE_EPOCHS,
        max_accuracy_drop=1.0, learning_rate=LR, batch_size=BATCH, seed=seed, verbose=0,
        callbacks=[probe],
    )
    prof = tf_gpp.profile(result.model)
    rec = {
        "config": config, "seed": seed,
        "accuracy": accuracy(result.model, data["x_test"], data["y_test"]),
        "base_accuracy": base_info["accuracy"],
        "macs_ratio": prof.macs / base_info["macs"],
        "params": int(prof.params),
        "top_share_base": base_info["top_share"],
        "top_share_after_push": probe.shares,
        "top_share_final": fisher_top_share(result.model, data["x_train"], data["y_train"]),
        "seconds": round(time.time() - t0, 1),
        "history": result.to_dict()["history"],
    }
    out_path.write_text(json.dumps(rec, indent=2))
    log(f"{config:8s} seed {seed}: accuracy {rec['accuracy']:.4f} (base {rec['base_accuracy']:.4f}), "
        f"MACs {100 * rec['macs_ratio']:.1f}%, top-25% share after push {rec['top_share_after_push']}, "
        f"{rec['seconds']:.0f}s")
    keras.backend.clear_session()
    return rec


def _ms(values: list[float], pct: bool = True) -> str:
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if v.size == 0:
        return "n/a"
    k = 100 if pct else 1
    return f"{k * v.mean():.1f} ± {k * v.std(ddof=1):.1f}" if v.size > 1 else f"{k * v.mean():.1f}"


def summarise(runs: list[dict]) -> list[dict]:
    rows = []
    for config in CONFIGS:
        rs = [r for r in runs if r["config"] == config]
        if not rs:
            continue
        first_push = [r["top_share_after_push"][0] for r in rs if r["top_share_after_push"]]
        last_push = [r["top_share_after_push"][-1] for r in rs if r["top_share_after_push"]]
        acc = np.array([r["accuracy"] for r in rs])
        rows.append({
            "config": config,
            "seeds": len(rs),
            "accuracy_mean": float(acc.mean()),
            "accuracy_std": float(acc.std(ddof=1)) if len(rs) > 1 else None,
            "accuracy": _ms(list(acc)),
            "drop_vs_base": _ms([r["accuracy"] - r["base_accuracy"] for r in rs]),
            "MACs %": _ms([r["macs_ratio"] for r in rs]),
            "params": int(np.mean([r["params"] for r in rs])),
            "top-25% share, base": _ms([r["top_share_base"] for r in rs]),
            "after push 1": _ms(first_push) if first_push else "-",
            "after push 2": _ms(last_push) if last_push else "-",
            "final model": _ms([r["top_share_final"] for r in rs]),
            "top_share_push1_mean": float(np.mean(first_push)) if first_push else None,
            "seconds": float(np.mean([r["seconds"] for r in rs])),
        })
    return rows


def plot(rows: list[dict], runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = [r["config"] for r in rows]
    xs = np.arange(len(names))
    for i, name in enumerate(names):
        accs = [100 * r["accuracy"] for r in runs if r["config"] == name]
        ax1.scatter(np.full(len(accs), i), accs, color="tab:blue", alpha=0.5, s=18)
    ax1.bar(xs, [100 * r["accuracy_mean"] for r in rows], color="tab:blue", alpha=0.35)
    base = [100 * r["base_accuracy"] for r in runs]
    ax1.axhline(np.mean(base), color="k", ls="--", lw=1, label=f"unpruned base (mean {np.mean(base):.1f}%)")
    ax1.set_xticks(xs, names, rotation=30)
    lo = min(100 * r["accuracy"] for r in runs)
    ax1.set_ylim(max(0, lo - 3), 100)
    ax1.set_ylabel("test accuracy after compression (%)")
    ax1.set_title(f"digits, ~{int(100 * TARGET)}% MACs, dots = seeds")
    ax1.legend(fontsize=8, loc="lower left")
    for i, name in enumerate(names):
        rs = [r for r in runs if r["config"] == name]
        b = [100 * r["top_share_base"] for r in rs]
        p = [100 * r["top_share_after_push"][0] for r in rs if r["top_share_after_push"]]
        ax2.scatter(np.full(len(b), i - 0.15), b, color="grey", s=18, label="base (before push)" if i == 0 else None)
        if p:
            ax2.scatter(np.full(len(p), i + 0.15), p, color="tab:red", s=18,
                        label="after the 1st push" if name == "full" else None)
    ax2.axhline(25, color="k", lw=0.8, ls=":", label="uniform (25%)")
    ax2.set_xticks(xs, names, rotation=30)
    ax2.set_ylabel("top-25% share of Fisher utility (%)")
    ax2.set_title("concentration of discriminant power in the feature layer")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    CACHE.mkdir(parents=True, exist_ok=True)
    started = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - started:7.1f}s] {msg}", flush=True)

    data = load()
    log(f"digits: {len(data['y_train'])} train / {len(data['y_val'])} val / {len(data['y_test'])} test")
    configs = [c for c in args.configs.split(",") if c]
    runs = [run(c, s, data, log) for s in range(args.seeds) for c in configs]
    rows = summarise(runs)
    payload = {
        "machine": machine_info(),
        "protocol": {
            "model": "conv-BN-ReLU 16-32-pool-64, GAP (64 features), Dense(10); BN momentum 0.9",
            "base_training": f"{BASE_EPOCHS} epochs Adam 2e-3 cosine, batch {BATCH}",
            "target_macs": TARGET, "rounds": ROUNDS, "strategy": "global",
            "push_epochs": PUSH_EPOCHS, "finetune_epochs": FINETUNE_EPOCHS,
            "no_push_finetune_epochs": PUSH_EPOCHS + FINETUNE_EPOCHS,
            "learning_rate": LR, "batch_size": BATCH, "max_accuracy_drop": 1.0,
            "top_share": "tf_gpp.discriminant.top_share(neuron_utility(ScatterStats of the GAP features on "
                         "the training images, 'fisher'), 0.25)",
            "data": {k: int(len(v)) for k, v in data.items() if k.startswith("y_")},
        },
        "configs": CONFIGS,
        "rows": rows,
        "runs": runs,
        "elapsed_s": time.time() - started,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / "ablation.json", json.dumps(payload, indent=2, default=str))
    cols = ["config", "seeds", "accuracy", "drop_vs_base", "MACs %", "params", "top-25% share, base",
            "after push 1", "after push 2", "final model"]
    m = payload["machine"]
    md = [
        "# GPP ablation on scikit-learn digits (tools/ablation.py)",
        "",
        f"{m['cpu']} ({m['cores']} cores, shared), Python {m['python']}, TensorFlow {m['tensorflow']}, "
        f"Keras {m['keras']}; {m['date']}; wall time {payload['elapsed_s'] / 60:.1f} min "
        "(cached runs count 0).",
        "",
        f"Protocol: {payload['protocol']['model']}; base trained per seed ({payload['protocol']['base_training']}). "
        f"`tf_gpp.compress(target_macs={TARGET}, strategy='global', rounds={ROUNDS}, max_accuracy_drop=1.0)`; "
        f"push configs: {PUSH_EPOCHS} push + {FINETUNE_EPOCHS} fine-tune epochs per round; push off: "
        f"{PUSH_EPOCHS + FINETUNE_EPOCHS} fine-tune epochs per round; Adam {LR}, batch {BATCH}. "
        f"Data: {payload['protocol']['data']}. Accuracy and shares in %, mean ± std over seeds. "
        "Top-25% share = share of the feature layer's total Fisher utility held by its 16 best of 64 neurons "
        "(25% = uniform), measured on the training images; *after push k* = right after round k's push, "
        "before pruning; *final model* = the compressed model.",
        "",
        markdown_table(rows, cols),
        "![ablation](ablation.png)",
        "",
    ]
    write_atomic(args.out / "ablation.md", "\n".join(md))
    plot(rows, runs, args.out / "ablation.png")
    log(f"wrote {args.out / 'ablation.json'}, ablation.md, ablation.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
