#!/usr/bin/env python
"""Beyond CNNs: a small ViT and an LSTM classifier compressed, next to L1 and random.

Both models read Fashion-MNIST (offline: Debian's ``dataset-fashion-mnist`` or the
Keras cache), ``--train`` images of the training split (10% held out for validation)
and the full 10k test split:

* **ViT**: 4x4 patches (a strided ``Conv2D``) -> 49 tokens of width 48 -> two pre-norm
  transformer blocks (``LayerNormalization``, ``MultiHeadAttention`` with 4 heads of
  12, a GELU MLP of 96) -> ``LayerNormalization`` -> average over tokens -> ``Dense(10)``.
  The MLP hidden units, the attention output and whole attention heads are exact units;
  the residual stream is prunable only under
  ``tf_gpp.handlers.layernorm.approximate_normalization()`` (its LayerNorms then see fewer
  channels: approximate, fine-tuned back), which every ViT run here uses.
* **LSTM**: the 28 image rows as a sequence of 28 features -> ``LSTM(96)`` ->
  ``Dense(10)``: the LSTM units (four gate blocks of the kernels, bias) are the units.

Each base is trained once per seed, then compressed by ``tf_gpp.compress`` to 50% and
25% of its MACs with compress's default recipe and with L1 and random importance (the
same rounds, epochs and fine-tuning). Test accuracy, params, MACs, and LiteRT latency
(float32, 1 thread, the seed-0 models of a family timed interleaved with their base;
the LSTMs are converted as ``unroll=True`` copies: a rolled Keras LSTM's while-loop is not
in LiteRT's builtin op set).

Usage::

    python tools/bench_sequence.py             # 2 seeds, ~30 min on 2 cores
    python tools/bench_sequence.py --quick     # 1 seed, small data, a few minutes
    python tools/bench_sequence.py --families vit   # re-run one family; the others' rows are kept

Writes ``benchmarks/results/sequence{,_quick}.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
for _p in (TOOLS, REPO):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import numpy as np  # noqa: E402
from _report import (  # noqa: E402
    RESULTS,
    convert_and_time,
    machine_info,
    machine_line,
    save_figure,
    seeded,
    set_threads,
    write_atomic,
)

FAMILIES = ("vit", "lstm")
CRITERIA = ("default", "l1", "random")
SETTINGS = {
    "full": {"train": 12000, "seeds": 2, "budgets": [0.5, 0.25], "base_epochs": {"vit": 6, "lstm": 6},
             "rounds": 2, "finetune_epochs": 2, "batch_size": 128, "latency_rounds": 200},
    "quick": {"train": 2000, "seeds": 1, "budgets": [0.5], "base_epochs": {"vit": 1, "lstm": 1},
              "rounds": 1, "finetune_epochs": 1, "batch_size": 128, "latency_rounds": 20},
}


def vit() -> Any:
    import keras

    inp = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(48, 4, strides=4, name="patches")(inp)
    x = keras.layers.Reshape((49, 48), name="tokens")(x)
    for b in range(2):
        h = keras.layers.LayerNormalization(name=f"ln{b}a")(x)
        h = keras.layers.MultiHeadAttention(4, 12, name=f"mha{b}")(h, h)
        x = keras.layers.Add(name=f"res{b}a")([x, h])
        h = keras.layers.LayerNormalization(name=f"ln{b}b")(x)
        h = keras.layers.Dense(96, activation="gelu", name=f"mlp{b}_up")(h)
        h = keras.layers.Dense(48, name=f"mlp{b}_down")(h)
        x = keras.layers.Add(name=f"res{b}b")([x, h])
    x = keras.layers.LayerNormalization(name="ln_out")(x)
    x = keras.layers.GlobalAveragePooling1D(name="pool")(x)
    return keras.Model(inp, keras.layers.Dense(10, name="logits")(x), name="vit")


def lstm() -> Any:
    import keras

    inp = keras.Input((28, 28))
    x = keras.layers.LSTM(96, name="lstm")(inp)
    return keras.Model(inp, keras.layers.Dense(10, name="logits")(x), name="lstm")


def family_data(family: str, data: dict) -> dict:
    """Images as the family reads them: 28x28x1 for the ViT, 28 rows of 28 for the LSTM."""
    if family == "vit":
        return data
    return {k: (v.reshape(len(v), 28, 28) if k.startswith("x_") else v) for k, v in data.items()}


def normalisation_context(family: str) -> Any:
    from tf_gpp.handlers.layernorm import approximate_normalization

    return approximate_normalization() if family == "vit" else contextlib.nullcontext()


def unrolled(model: Any) -> Any:
    """The same model with every recurrent layer ``unroll=True`` (weights copied): LiteRT's
    builtin ops cannot express the while-loop of a rolled Keras RNN (the fix tf_gpp's
    converter error names)."""
    import keras

    config = model.get_config()
    for entry in config["layers"]:
        if entry["class_name"] in ("LSTM", "GRU", "SimpleRNN"):
            entry["config"]["unroll"] = True
    clone = keras.Model.from_config(config)
    clone.set_weights(model.get_weights())
    return clone


def accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(model.predict(x, batch_size=500, verbose=0), -1) == y))


def train_base(family: str, d: dict, cfg: dict, seed: int) -> tuple[Any, float]:
    import keras

    seeded(seed)
    model = vit() if family == "vit" else lstm()
    steps = cfg["base_epochs"][family] * -(-len(d["y_train"]) // cfg["batch_size"])
    model.compile(keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(2e-3, steps)),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    t0 = time.time()
    model.fit(d["x_train"], d["y_train"], batch_size=cfg["batch_size"], epochs=cfg["base_epochs"][family],
              verbose=0, shuffle=True)
    return model, time.time() - t0


def compress_one(family: str, base: Any, d: dict, cfg: dict, budget: float, criterion: str, seed: int) -> Any:
    import tf_gpp

    kwargs = {} if criterion == "default" else {"importance": criterion}
    with normalisation_context(family):
        return tf_gpp.compress(base, (d["x_train"], d["y_train"]), (d["x_val"], d["y_val"]), target_macs=budget,
                               max_accuracy_drop=1.0, rounds=cfg["rounds"], finetune_epochs=cfg["finetune_epochs"],
                               batch_size=cfg["batch_size"], seed=seed, verbose=0, **kwargs)


def heads(model: Any) -> list[int]:
    """``num_heads`` of each attention layer, in order."""
    return [int(la.num_heads) for la in model.layers if hasattr(la, "num_heads")]


def run(cfg: dict, log: Any, families: tuple[str, ...] = FAMILIES) -> dict:
    import fmnist_common as fc
    import keras

    import tf_gpp

    data = fc.load_arrays(cfg["train"], None)
    rows, models = [], {f: {} for f in families}
    for family in families:
        d = family_data(family, data)
        for seed in range(cfg["seeds"]):
            base, seconds = train_base(family, d, cfg, seed)
            pb = tf_gpp.profile(base)
            rows.append({"family": family, "method": "base", "budget": 1.0, "seed": seed,
                         "accuracy": accuracy(base, d["x_test"], d["y_test"]), "params": pb.params,
                         "macs": pb.macs, "seconds": round(seconds, 1), "heads": heads(base)})
            log(f"{family} s{seed} base: {rows[-1]['accuracy']:.4f}, {pb.params:,} params, {pb.macs:,} MACs")
            if seed == 0:
                models[family]["base"] = base
            for budget in cfg["budgets"]:
                for criterion in CRITERIA:
                    t0 = time.time()
                    res = compress_one(family, base, d, cfg, budget, criterion, seed)
                    p = tf_gpp.profile(res.model)
                    rows.append({"family": family, "method": criterion, "budget": budget, "seed": seed,
                                 "accuracy": accuracy(res.model, d["x_test"], d["y_test"]), "params": p.params,
                                 "macs": p.macs, "macs_ratio": p.macs / pb.macs, "seconds": round(time.time() - t0, 1),
                                 "heads": heads(res.model),
                                 "widths": {la.name: int(getattr(la, "units", 0) or getattr(la, "filters", 0)
                                                         or getattr(la, "output_shape", [0])[-1] or 0)
                                            for la in res.model.layers if la.weights}})
                    log(f"{family} s{seed} {criterion} {int(100 * budget)}%: {rows[-1]['accuracy']:.4f}, "
                        f"{100 * p.macs / pb.macs:.1f}% MACs, {rows[-1]['seconds']:.0f}s")
                    if seed == 0:
                        models[family][f"{criterion}_{int(100 * budget)}"] = res.model
            keras.backend.clear_session()
    latency = {}
    out_dir = REPO / "benchmarks" / "cache" / "sequence"
    out_dir.mkdir(parents=True, exist_ok=True)
    for family, ms in models.items():
        if family == "lstm":
            ms = {name: unrolled(m) for name, m in ms.items()}
        try:
            latency[family] = convert_and_time(ms, out_dir, rounds=cfg["latency_rounds"])
        except Exception as exc:  # noqa: BLE001 - recorded: the page says which conversion failed and why
            latency[family] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
            log(f"{family}: TFLite conversion/timing failed: {latency[family]['error']}")
    return {"rows": rows, "latency": latency}


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    keys = sorted({(r["family"], r["method"], r["budget"]) for r in rows},
                  key=lambda k: (FAMILIES.index(k[0]), -k[2], (("base",) + CRITERIA).index(k[1])))
    for family, method, budget in keys:
        rs = [r for r in rows if (r["family"], r["method"], r["budget"]) == (family, method, budget)]
        acc = np.array([100 * r["accuracy"] for r in rs])
        out.append({"family": family, "method": method, "budget": budget, "n": len(rs),
                    "accuracy": float(acc.mean()), "std": float(acc.std(ddof=1)) if len(rs) > 1 else None,
                    "params": float(np.mean([r["params"] for r in rs])),
                    "heads_seed0": next((r.get("heads") for r in rs if r["seed"] == 0), None),
                    "macs": float(np.mean([r["macs"] for r in rs]))})
    return out


def write_outputs(payload: dict, stem: str) -> None:
    summary = payload["summary"]
    lat = payload["latency"]
    lines = [f"# Beyond CNNs: ViT and LSTM compressed ({payload['mode']})", "",
             f"Command: `{payload['command']}`  ", machine_line(payload["machine"]), "",
             "Fashion-MNIST, "
             f"{payload['settings']['train']:,} training images (10% validation), full test split; every "
             f"compression: {payload['settings']['rounds']} rounds x {payload['settings']['finetune_epochs']} "
             "fine-tuning epochs, `max_accuracy_drop=1.0` (the model at the budget). `default` = compress's "
             "default recipe; the ViT runs inside `approximate_normalization()` (see tools/bench_sequence.py).",
             "", "| model | method | MACs budget | test accuracy % (n seeds) | params | MACs | heads per block (seed 0) "
             "| LiteRT ms (seed 0) | speed-up |", "|---|---|---:|---:|---:|---:|---|---:|---:|"]
    for r in summary:
        key = "base" if r["method"] == "base" else f"{r['method']}_{int(100 * r['budget'])}"
        fam_lat = lat.get(r["family"], {})
        t = fam_lat.get(key, {}) if isinstance(fam_lat, dict) else {}
        base_ms = fam_lat.get("base", {}).get("median_ms") if isinstance(fam_lat, dict) else None
        ms = t.get("median_ms")
        speed = f"{base_ms / ms:.2f}x" if ms and base_ms else ""
        std = f" ± {r['std']:.2f}" if r["std"] is not None else ""
        hs = "-".join(map(str, r.get("heads_seed0") or [])) or "—"
        lines.append(f"| {r['family']} | {r['method']} | {int(100 * r['budget'])}% | {r['accuracy']:.2f}{std} "
                     f"({r['n']}) | {r['params']:,.0f} | {r['macs']:,.0f} | {hs} | {f'{ms:.3f}' if ms else ''} "
                     f"| {speed} |")
    errors = {f: v["error"] for f, v in lat.items() if isinstance(v, dict) and "error" in v}
    if errors:
        lines += ["", *[f"- {f}: LiteRT conversion or timing failed: `{e}`" for f, e in errors.items()]]
    lines += ["", *[f"- {n}" for n in payload.get("notes", [])], "", f"![accuracy vs MACs]({stem}.png)", ""]
    write_atomic(RESULTS / f"{stem}.md", "\n".join(lines))
    write_atomic(RESULTS / f"{stem}.json", json.dumps(payload, indent=2, default=str))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(FAMILIES), figsize=(11, 4))
    for ax, family in zip(axes, FAMILIES, strict=True):
        base = next((r for r in summary if r["family"] == family and r["method"] == "base"), None)
        for method in CRITERIA:
            pts = sorted((r for r in summary if r["family"] == family and r["method"] == method),
                         key=lambda r: r["macs"])
            if pts:
                ax.errorbar([r["macs"] / 1e6 for r in pts], [r["accuracy"] for r in pts],
                            yerr=[r["std"] or 0 for r in pts], marker="o", capsize=2, label=method)
        if base:
            ax.plot([base["macs"] / 1e6], [base["accuracy"]], "k*", ms=12, label="base")
        ax.set(title=family, xlabel="MACs per image (M)", ylabel="test accuracy %")
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, RESULTS / f"{stem}.png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, small data, 50%% only")
    parser.add_argument("--seeds", type=int, help="seeds (default: 2 full, 1 quick)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--families", default=",".join(FAMILIES),
                        help=f"comma-separated subset of {','.join(FAMILIES)}; the other families' rows are "
                        "kept from the existing JSON")
    parser.add_argument("--note", action="append", default=[], help="a line under the table")
    parser.add_argument("--report-only", action="store_true", help="rewrite the outputs from the JSON, with --note")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    mode = "quick" if args.quick else "full"
    cfg = dict(SETTINGS[mode])
    if args.seeds:
        cfg["seeds"] = args.seeds
    started = time.time()
    stem = "sequence" if mode == "full" else "sequence_quick"
    if args.report_only:
        payload = json.loads((RESULTS / f"{stem}.json").read_text())
        write_outputs({**payload, "notes": args.note}, stem)
        return 0

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')} {time.time() - started:6.0f}s] {msg}", flush=True)

    families = tuple(f for f in FAMILIES if f in args.families.split(","))
    if not families:
        parser.error(f"--families {args.families!r}: choose from {','.join(FAMILIES)}")
    command = "python tools/bench_sequence.py " + " ".join(argv or sys.argv[1:])
    result = run(cfg, log, families)
    notes = list(args.note)
    previous = RESULTS / f"{stem}.json"
    kept = [f for f in FAMILIES if f not in families]
    if kept and previous.exists():  # the other families' rows and latency, from the run that made them
        old = json.loads(previous.read_text())
        result["rows"] += [r for r in old["rows"] if r["family"] in kept]
        result["latency"].update({f: v for f, v in old.get("latency", {}).items() if f in kept})
        notes.append(f"{', '.join(kept)} rows: from an earlier run (`{old['command']}`, "
                     f"{old['machine'].get('date', '?')}, {old['settings']['seeds']} seed(s)).")
    payload = {"mode": mode, "command": command,
               "settings": cfg, "machine": machine_info(), "elapsed_s": round(time.time() - started, 1),
               "summary": summarise(result["rows"]), "notes": notes, **result}
    write_outputs(payload, stem)
    log(f"wrote {RESULTS / stem}.md/.json/.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
