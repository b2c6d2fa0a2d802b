#!/usr/bin/env python
"""The push objective term by term, inside ``compress``, on scikit-learn digits (issue 23).

Model, data split and base training are ``tools/ablation.py``'s (conv-BN-ReLU 16-32-pool-64, GAP
-> 64 feature neurons, Dense(10); 1150 train / 288 val / 359 test; 40 epochs per seed, cached).
Every run is ``tf_gpp.compress(base, train, val, target_macs=0.3, seed=s)`` with compress's
defaults (Taylor, distillation, 4 rounds of 4 fine-tuning epochs, the last 16) plus the row's
options, paired per seed (same base, same data). Push rows push ``P`` epochs before round 1
(compress's push phase: weights ramped over its first half, distilled) and come in two protocols:

* ``eq``  (equal total epochs): the last round fine-tunes ``16 - P`` epochs, so push + fine-tune
  epochs equal the no-push run's 28 (with ``push_every_round`` each round gives ``P`` of its own);
* ``own`` (push on top): fine-tuning keeps its 28 epochs and push adds ``P`` (``4P`` every round).

Reported: test accuracy of the returned (last-round, <= 30% MACs, or ``--target``) model, its paired difference
to ``no_push``, compress's validation accuracy, and, right after the (first) push phase, the
mean within-class |corr| of the 64 feature neurons (pooled within-class correlation on the
training images; for ``no_push`` the base model's) and their top-25% Fisher share.

Usage::

    python tools/ablation_push.py                    # every row, 3 seeds (~15 min, 1 TF thread)
    python tools/ablation_push.py --rows no_push,wb10_eq --seeds 1
    python tools/ablation_push.py --target 0.1 --rows old_eq,wb10_g0.1_eq,wb10_g0.1_own --stem ablation_push_10

Writes ``benchmarks/results/ablation_push.{json,md,png}``; runs are cached (JSONL, keyed by the
row's options, the seed and compress's defaults) in ``benchmarks/cache/ablation_push.jsonl``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
for _p in (TOOLS, REPO):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import numpy as np  # noqa: E402
from _report import RESULTS, machine_info, machine_line, save_figure, set_threads, write_atomic  # noqa: E402

TARGET = 0.3
P = 2  # push epochs per push phase
FINAL = 16  # compress's default last-round fine-tuning (4 x finetune_epochs)
FINETUNE = 4

#: push losses: the previous default (alignment-led), then decorrelation at b >= 1 on the
#: within-class correlations alone (``w``) or within- and between-class (``wb``), alignment small
#: or off, and the batch-LDA separation against the diagonal one
LOSSES: dict[str, dict[str, Any]] = {
    "old": {"a": 0.1, "b": 0.1, "g": 1.0},
    "wb1": {"a": 0.1, "b": 1.0, "g": 0.0, "decorrelation": "both"},
    "w10": {"a": 0.1, "b": 10.0, "g": 0.0},
    "wb10": {"a": 0.1, "b": 10.0, "g": 0.0, "decorrelation": "both"},
    "wb10_g0.1": {"a": 0.1, "b": 10.0, "g": 0.1, "decorrelation": "both"},
    "wb10_lda": {"a": 0.1, "b": 10.0, "g": 0.0, "decorrelation": "both", "separation": "lda"},
}


def _push_row(loss: str, protocol: str, p: int = P, every: bool = False) -> dict[str, Any]:
    """A push row: ``p`` push epochs before round 1 (before every round with ``every``); ``eq`` takes
    them out of fine-tuning (the last round's, and with ``every`` each round's), ``own`` adds them."""
    options: dict[str, Any] = {"push": True, "push_epochs": p, "push_every_round": every}
    if protocol == "eq":
        options["final_finetune_epochs"] = FINAL - p
        if every:
            options["finetune_epochs"] = FINETUNE - p
    return {"loss": loss, "protocol": protocol, "options": options}


def _rows() -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {"no_push": {"loss": None, "protocol": "-", "options": {"push": False}}}
    for name in LOSSES:
        for protocol in ("eq", "own"):
            rows[f"{name}_{protocol}"] = _push_row(name, protocol)
    for protocol in ("eq", "own"):
        rows[f"wb10_p6_{protocol}"] = _push_row("wb10", protocol, p=6)
    for protocol in ("eq", "own"):
        rows[f"wb10_every_{protocol}"] = _push_row("wb10", protocol, every=True)
    return rows


ROWS = _rows()


def within_class_abs_corr(features: np.ndarray, y: np.ndarray) -> float:
    """Mean |off-diagonal| of the pooled within-class correlation matrix (dead neurons left out)."""
    f = features.astype(np.float64)
    resid = f.copy()
    for k in np.unique(y):
        resid[y == k] -= f[y == k].mean(0)
    cov = resid.T @ resid / len(y)
    var = np.diag(cov)
    alive = var > 1e-8 * max(var.max(), 1e-30)
    cov = cov[np.ix_(alive, alive)]
    corr = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    m = len(corr)
    return float((np.abs(corr).sum() - m) / (m * (m - 1))) if m > 1 else 0.0


def feature_stats(model: Any, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    from ablation import fisher_top_share

    from tf_gpp.discriminant import feature_model

    feats = np.asarray(feature_model(model).predict(x, batch_size=256, verbose=0))
    return {"within_abs_corr": within_class_abs_corr(feats, y), "top_share": fisher_top_share(model, x, y)}


def run_all(rows: list[str], seeds: int, cache: Path, log: Any) -> list[dict]:
    import keras
    from ablation import CACHE, accuracy, base_model, load

    import tf_gpp

    # every row sets the push options itself: a changed push default does not invalidate the cache
    defaults = {k: str(p.default) for k, p in inspect.signature(tf_gpp.compress).parameters.items()
                if p.default is not inspect.Parameter.empty and not k.startswith("push")}
    done = {}
    if cache.exists():
        for line in cache.read_text().splitlines():
            rec = json.loads(line)
            done[rec["key"]] = rec
    cache.parent.mkdir(parents=True, exist_ok=True)
    CACHE.mkdir(parents=True, exist_ok=True)  # ablation.py's base models, shared with it
    data = load()
    train, val = (data["x_train"], data["y_train"]), (data["x_val"], data["y_val"])
    out = []
    for seed in range(seeds):
        base, info = base_model(seed, data)
        base_stats = None
        for name in rows:
            spec = ROWS[name]
            loss = LOSSES.get(spec["loss"]) if spec["loss"] else None
            key = json.dumps({"seed": seed, "options": spec["options"], "loss": loss, "target": TARGET,
                              "defaults": defaults}, sort_keys=True)
            if key in done:
                out.append({**done[key], "row": name})
                continue
            base_stats = base_stats or feature_stats(base, *train)
            t0 = time.time()
            res = tf_gpp.compress(base, train, val, target_macs=TARGET, seed=seed, verbose=0,
                                  push_loss=tf_gpp.PushLoss(**loss) if loss else None, **spec["options"])
            last = res.history[-1]
            pushed = feature_stats(res.pushed_model, *train) if res.pushed_model is not None else base_stats
            epochs = tf_gpp.prune.CompressConfig(target_macs=TARGET, **spec["options"])
            ft = [epochs.epochs_of_round(r) for r in range(1, epochs.rounds + 1)]
            pe = (epochs.push_epochs * (epochs.rounds if epochs.push_every_round else 1)) if epochs.push else 0
            rec = {"row": name, "seed": seed, "key": key, "test_accuracy": accuracy(res.model, *data_test(data)),
                   "val_accuracy": last.accuracy, "base_val_accuracy": res.base_accuracy,
                   "base_test_accuracy": info["accuracy"], "macs_ratio": last.macs_ratio,
                   "params": last.params, "push_epochs_total": pe, "finetune_epochs": ft,
                   "after_push": pushed, "base": base_stats, "seconds": round(time.time() - t0, 1)}
            out.append(rec)
            with open(cache, "a") as f:
                f.write(json.dumps(rec) + "\n")
            log(f"s{seed} {name}: test {100 * rec['test_accuracy']:.2f}% (val {100 * rec['val_accuracy']:.2f}%), "
                f"{100 * rec['macs_ratio']:.1f}% MACs, |corr|w {pushed['within_abs_corr']:.3f}, "
                f"top-25% {pushed['top_share']:.2f}, {rec['seconds']:.0f}s")
            keras.backend.clear_session()
    return out


def data_test(data: dict) -> tuple[np.ndarray, np.ndarray]:
    return data["x_test"], data["y_test"]


def _ms(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    v = scale * np.asarray(values, dtype=float)
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}" if len(v) > 1 else f"{v.mean():.{digits}f}"


def summarise(runs: list[dict], rows: list[str]) -> list[dict]:
    ref = {r["seed"]: r for r in runs if r["row"] == "no_push"}
    out = []
    for name in rows:
        rs = [r for r in runs if r["row"] == name]
        if not rs:
            continue
        diffs = [r["test_accuracy"] - ref[r["seed"]]["test_accuracy"] for r in rs if r["seed"] in ref]
        spec = ROWS[name]
        out.append({
            "row": name, "protocol": spec["protocol"], "seeds": len(rs),
            "push loss": "-" if spec["loss"] is None else ", ".join(f"{k}={v}" for k, v in LOSSES[spec["loss"]].items()),
            "epochs (push + fine-tune)": f"{rs[0]['push_epochs_total']} + {sum(rs[0]['finetune_epochs'])}",
            "test accuracy %": _ms([r["test_accuracy"] for r in rs]),
            "vs no push (pts, paired)": _ms(diffs) if name != "no_push" else "-",
            "val accuracy %": _ms([r["val_accuracy"] for r in rs]),
            "within-class abs corr after push": _ms([r["after_push"]["within_abs_corr"] for r in rs], 1.0, 3),
            "top-25% Fisher share after push %": _ms([r["after_push"]["top_share"] for r in rs]),
            "MACs %": f"{100 * max(r['macs_ratio'] for r in rs):.1f}",
            "s/run": f"{np.median([r['seconds'] for r in rs]):.0f}",
            "test_mean": float(np.mean([r["test_accuracy"] for r in rs])),
            "diff_mean": float(np.mean(diffs)) if diffs and name != "no_push" else None,
            "diff_std": float(np.std(diffs, ddof=1)) if len(diffs) > 1 and name != "no_push" else None,
            "corr_mean": float(np.mean([r["after_push"]["within_abs_corr"] for r in rs])),
        })
    return out


COLUMNS = ["row", "push loss", "epochs (push + fine-tune)", "test accuracy %", "vs no push (pts, paired)",
           "val accuracy %", "within-class abs corr after push", "top-25% Fisher share after push %", "MACs %",
           "s/run"]


def write(summary: list[dict], payload: dict, out: Path, stem: str) -> None:
    from _report import markdown_table

    base_test = np.mean([r["base_test_accuracy"] for r in payload["runs"]])
    lines = [
        f"# The push objective term by term, inside compress (digits, {100 * TARGET:.0f}% MACs)", "",
        f"Command: `{payload['command']}`  ", machine_line(payload["machine"]) + f" Wall time "
        f"{payload['elapsed_s'] / 60:.1f} min (cached runs count 0).", "",
        "tools/ablation.py's BN CNN (64 GAP feature neurons) and split (1150 train / 288 val / 359 test); "
        f"unpruned base test accuracy {100 * base_test:.1f}% (mean over seeds). Every row is "
        f"`tf_gpp.compress(base, train, val, target_macs={TARGET}, seed=s)` with compress's defaults (Taylor, "
        "distillation, 4 rounds, fine-tuning 4 + 4 + 4 + 16 epochs) plus the row's options; paired per seed. "
        f"Push rows push {P} epochs before round 1 (weights ramped over the first half of the phase, distilled "
        f"from the unpruned model); `_eq`: the last round fine-tunes {FINAL - P} epochs so the total equals "
        "no_push's 28; `_own`: push on top; `_p6`: 6 push epochs; `_every`: pushing before every round too (`_eq`: each round gives "
        f"{P} fine-tuning epochs). Test accuracy of the returned model; *vs no push* = paired difference in "
        "points, mean ± std over seeds. Within-class abs corr = mean |off-diagonal| of the pooled within-class "
        "correlation of the 64 feature neurons on the training images right after the first push (no_push: the "
        "base); top-25% share = share of their Fisher utility on the best 16.", "",
        markdown_table(summary, COLUMNS), f"![push ablation]({stem}.png)", ""]
    write_atomic(out / f"{stem}.md", "\n".join(lines))
    write_atomic(out / f"{stem}.json", json.dumps({**payload, "rows": summary}, indent=2, default=str))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 0.45 * len(summary) + 1.8), sharey=True)
    ref = {r["seed"]: r["test_accuracy"] for r in payload["runs"] if r["row"] == "no_push"}
    for i, row in enumerate(summary):
        rs = [r for r in payload["runs"] if r["row"] == row["row"]]
        color = {"eq": "tab:blue", "own": "tab:orange"}.get(row["protocol"], "k")
        d = [100 * (r["test_accuracy"] - ref[r["seed"]]) for r in rs if r["seed"] in ref]
        ax1.scatter(d, [i] * len(d), color=color, alpha=0.7)
        ax1.scatter([np.mean(d)], [i], color="k", marker="|", s=300)
        c = [r["after_push"]["within_abs_corr"] for r in rs]
        ax2.scatter(c, [i] * len(c), color=color, alpha=0.7)
    ax1.axvline(0, color="k", lw=0.8)
    ax1.set_yticks(range(len(summary)), [r["row"] for r in summary])
    ax1.set_xlabel("test accuracy minus no_push, same seed (points; bar = mean)")
    ax1.set_title("blue: equal total epochs, orange: push on top")
    ax2.set_xlabel("mean within-class |corr| of the feature neurons after push")
    ax2.set_title("decorrelation reached by the push phase")
    ax1.invert_yaxis()
    fig.tight_layout()
    save_figure(fig, out / f"{stem}.png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    global TARGET
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default=",".join(ROWS), help=f"subset of {','.join(ROWS)}")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--target", type=float, default=TARGET, help="target_macs (default %(default)s)")
    parser.add_argument("--stem", default="ablation_push")
    parser.add_argument("--cache", type=Path, default=REPO / "benchmarks" / "cache" / "ablation_push.jsonl")
    args = parser.parse_args(argv)
    rows = [r for r in args.rows.split(",") if r]
    unknown = set(rows) - set(ROWS)
    if unknown:
        parser.error(f"unknown rows {sorted(unknown)}; choose from {', '.join(ROWS)}")
    if "no_push" not in rows:
        rows.insert(0, "no_push")  # the paired reference
    TARGET = args.target
    set_threads(args.threads)
    started = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - started:7.1f}s] {msg}", flush=True)

    runs = run_all(rows, args.seeds, args.cache, log)
    summary = summarise(runs, rows)
    payload = {"command": "python tools/ablation_push.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "machine": machine_info(), "elapsed_s": time.time() - started,
               "protocol": {"target_macs": TARGET, "push_epochs": P, "final_finetune_epochs": FINAL,
                            "finetune_epochs": FINETUNE, "losses": LOSSES,
                            "rows": {k: ROWS[k] for k in rows}},
               "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    write(summary, payload, args.out, args.stem)
    log(f"wrote {args.out / args.stem}.{{json,md,png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
