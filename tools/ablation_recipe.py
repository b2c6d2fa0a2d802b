#!/usr/bin/env python
"""Which ``compress`` recipe wins? Recipes side by side on the task-specialisation setting.

The setting is ``tools/benchmark_specialize.py``'s (its generalist, sub-tasks, task bases and
data draws are imported, not copied): a MobileNetV2(alpha=0.35) generalist trained on all of
Fashion-MNIST, a new head fine-tuned on 300 images per class of a sub-task, compressed to one
MACs budget. Each recipe is a set of ``tf_gpp.compress`` keyword arguments; everything else
(data, base, seed) is shared, so the recipes differ only in the recipe. Test accuracy is on the
full test split of the sub-task's classes. ``max_accuracy_drop=1.0``: every run reaches the
budget and ``result.model`` is the model at the budget.

Recipes (issue 12, item 4) — epochs per run in the table, since some recipes train more:

The per-run budget is the specialisation benchmark's: 2 rounds of 2 epochs.

* ``push``: LDA utility + push, 2 rounds of 1 push + 1 fine-tune epoch (the benchmark's ``gpp``).
* ``no_push``: the LDA utility without push, 2 rounds of 2 fine-tune epochs (equal epochs).
* ``push_distill`` / ``no_push_distill``: the same with knowledge distillation from the base.
* ``gentle_align``: push with the alignment weight ``g`` 0.1 instead of 1.0.
* ``rounds1``: push, 1 round of 2 + 2 epochs (equal epochs, one step).
* ``no_push_long_final``: no push, the last round fine-tuned 6 epochs instead of 2 (+4 epochs).
* ``push_in_fit``: the task base itself trained with ``PushModel`` + ``PushSchedule`` (the user's
  own ``fit``, same epochs as the plain base), then compressed without push (2 x 2 epochs).
* ``l1``, ``bn_scale``, ``taylor``, ``random``: the task-agnostic criteria, no push, 2 x 2 epochs.
* ``l1_distill``, ``bn_scale_distill``, ``taylor_distill``: the same with distillation.

Usage::

    python tools/ablation_recipe.py                 # 2 tasks x 2 seeds at 25% MACs
    python tools/ablation_recipe.py --recipes default,no_push --seeds 1 --tasks hard

Writes ``benchmarks/results/recipes.{json,md,png}``; runs append to a JSONL in
``benchmarks/cache/recipes/`` so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
for _p in (TOOLS, REPO):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import benchmark_specialize as spec  # noqa: E402
import numpy as np  # noqa: E402
from _report import set_threads  # noqa: E402

#: PushLoss's defaults before issue 23, with which this study's push rows ran
PREVIOUS_PUSH = {"a": 0.1, "b": 0.1, "g": 1.0}
#: name -> (compress kwargs, task base kind); ``"push_loss_g"`` builds a PushLoss with that g.
RECIPES: dict[str, dict[str, Any]] = {
    "push": {"importance": "gpp_lda", "push": True, "rounds": 2, "push_epochs": 1, "finetune_epochs": 1},
    "no_push": {"importance": "gpp_lda", "push": False, "rounds": 2, "push_epochs": 0, "finetune_epochs": 2},
    "push_distill": {"importance": "gpp_lda", "push": True, "rounds": 2, "push_epochs": 1, "finetune_epochs": 1,
                     "distill": True},
    "no_push_distill": {"importance": "gpp_lda", "push": False, "rounds": 2, "push_epochs": 0,
                        "finetune_epochs": 2, "distill": True},
    "gentle_align": {"importance": "gpp_lda", "push": True, "rounds": 2, "push_epochs": 1, "finetune_epochs": 1,
                     "push_loss_g": 0.1},
    "rounds1": {"importance": "gpp_lda", "push": True, "rounds": 1, "push_epochs": 2, "finetune_epochs": 2},
    "no_push_long_final": {"importance": "gpp_lda", "push": False, "rounds": 2, "push_epochs": 0,
                           "finetune_epochs": 2, "final_finetune_epochs": 6},
    "push_in_fit": {"importance": "gpp_lda", "push": False, "rounds": 2, "push_epochs": 0, "finetune_epochs": 2,
                    "base": "pushed"},
    # the task-agnostic criteria under the same budget, base and data (no push, 2 x 2 epochs)
    **{name: {"importance": name, "push": False, "rounds": 2, "push_epochs": 0, "finetune_epochs": 2}
       for name in ("l1", "bn_scale", "taylor", "random")},
    # ... and with distillation, as no_push_distill
    **{f"{name}_distill": {"importance": name, "push": False, "rounds": 2, "push_epochs": 0, "finetune_epochs": 2,
                           "distill": True}
       for name in ("l1", "bn_scale", "taylor")},
}
# every recipe states ``distill``: a change of compress's default must not change a cached run
for _recipe in RECIPES.values():
    _recipe.setdefault("distill", False)


def compress_kwargs(recipe: dict[str, Any]) -> dict[str, Any]:
    import tf_gpp

    kw = {k: v for k, v in recipe.items() if k not in ("base", "push_loss_g")}
    if kw.get("push"):  # this study's protocol: push before every round, the loss of its results
        kw["push_every_round"] = True
        kw["push_loss"] = tf_gpp.PushLoss(**{**PREVIOUS_PUSH, "g": recipe.get("push_loss_g", 1.0)})
    return kw


def epochs_of(kw: dict[str, Any]) -> int:
    d = spec.compress_defaults()
    rounds = kw.get("rounds", d["rounds"])
    push = kw.get("push", d["push"])
    pe = kw.get("push_epochs", d["push_epochs"]) if push else 0
    fe = kw.get("finetune_epochs", d["finetune_epochs"])
    final = kw.get("final_finetune_epochs", d.get("final_finetune_epochs"))
    return rounds * (pe + fe) + ((final - fe) if final is not None else 0)


class Study:
    def __init__(self, args: argparse.Namespace, log: Any) -> None:
        self.args, self.log = args, log
        self.run = spec.resolved_settings(dict(spec.RUN_SETTINGS["full"]))
        self.cache = args.cache
        self.cache.mkdir(parents=True, exist_ok=True)
        self.results = self.cache / "runs.jsonl"
        self.done: dict[str, dict] = {}
        if self.results.exists():
            for line in self.results.read_text().splitlines():
                if line.strip():
                    rec = json.loads(line)
                    self.done[rec["id"]] = rec
        self._fm: dict | None = None
        self._data: dict[tuple[str, int], dict] = {}

    def data(self, task: str, seed: int) -> dict:
        if (task, seed) not in self._data:
            if self._fm is None:
                self._fm = spec.load_fmnist()
            self._data = {(task, seed): spec.task_data(self._fm, task, seed, self.run)}
        return self._data[(task, seed)]

    def base(self, task: str, seed: int, kind: str, gen_path: Path) -> Path:
        """The task base (``plain``: as the specialisation benchmark trains it; ``pushed``: the same
        fine-tuning inside PushModel + PushSchedule), cached."""
        import keras

        import tf_gpp

        path = self.cache / f"base_{kind}_{task}_s{seed}.keras"
        if path.exists():
            return path
        d = self.data(task, seed)
        k = len(spec.TASKS[task]["classes"])
        keras.utils.set_random_seed(seed)
        model = spec.task_model_from(keras.models.load_model(gen_path), k, keras)
        epochs, bs = self.run["base_epochs"], self.run["batch_size"]
        if kind == "plain":
            spec.fit(keras, model, d["x_train"], d["y_train"], epochs, self.run["base_lr"], bs, seed)
        else:
            pushed = tf_gpp.PushModel(model, push=tf_gpp.PushLoss(**PREVIOUS_PUSH))
            steps = epochs * -(-len(d["y_train"]) // bs)
            pushed.compile(optimizer=spec.cosine_adam(keras, self.run["base_lr"], steps),
                           loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
            pushed.fit(d["x_train"], d["y_train"], batch_size=bs, epochs=epochs, verbose=0,
                       callbacks=[tf_gpp.PushSchedule(warmup_epochs=1)])
            model = pushed.strip()
        tf_gpp.recalibrate_batchnorm(model, (d["x_train"], d["y_train"]), steps=None, batch_size=bs)
        model.save(path)
        self.log(f"base {kind} {task} s{seed}: test accuracy {spec.accuracy(model, d['x_test'], d['y_test']):.4f}")
        return path

    def one(self, task: str, seed: int, name: str, gen_path: Path) -> dict:
        import keras

        import tf_gpp

        recipe = RECIPES[name]
        d = self.data(task, seed)
        base = keras.models.load_model(self.base(task, seed, recipe.get("base", "plain"), gen_path))
        kw = compress_kwargs(recipe)
        t0 = time.time()
        res = tf_gpp.compress(base, (d["x_train"], d["y_train"]), (d["x_val"], d["y_val"]),
                              target_macs=self.args.budget, max_accuracy_drop=1.0, seed=seed,
                              batch_size=self.run["batch_size"], verbose=0, **kw)
        prof = tf_gpp.profile(res.model)
        return {"accuracy": spec.accuracy(res.model, d["x_test"], d["y_test"]),
                "accuracy_most_accurate": spec.accuracy(res.most_accurate, d["x_test"], d["y_test"]),
                "base_accuracy": spec.accuracy(base, d["x_test"], d["y_test"]),
                "macs": int(prof.macs), "params": int(prof.params), "macs_ratio": prof.macs / res.base_macs,
                "epochs": epochs_of(kw), "seconds": round(time.time() - t0, 1),
                "history": res.to_dict()["history"]}

    def execute(self, jobs: list[dict], gen_path: Path) -> None:
        import keras

        todo = [j for j in jobs if j["id"] not in self.done]
        self.log(f"{len(jobs)} runs, {len(jobs) - len(todo)} done already ({self.results})")
        t_start = time.time()
        for i, job in enumerate(todo, 1):
            try:
                rec = {**job, **self.one(job["task"], job["seed"], job["recipe"], gen_path)}
            except Exception as exc:  # noqa: BLE001 - logged; a re-run retries it
                self.log(f"[{i}/{len(todo)}] {job['id']}: FAILED {type(exc).__name__}: {exc}")
                continue
            finally:
                keras.backend.clear_session()
                gc.collect()
            with open(self.results, "a") as f:
                f.write(json.dumps(rec, default=str) + "\n")
            self.done[job["id"]] = rec
            eta = (time.time() - t_start) / i * (len(todo) - i) / 60
            self.log(f"[{i}/{len(todo)}] {job['id']}: test {rec['accuracy']:.4f} (base {rec['base_accuracy']:.4f}), "
                     f"{100 * rec['macs_ratio']:.1f}% MACs, {rec['epochs']} epochs, {rec['seconds']:.0f}s "
                     f"(ETA {eta:.0f} min)")


def summarise(done: dict[str, dict], jobs: list[dict]) -> list[dict]:
    """One row per recipe with at least one run: per-task mean/std/drop and each run's accuracy
    by (task, seed), so recipes are compared paired, seed by seed."""
    rows = []
    for name in dict.fromkeys(j["recipe"] for j in jobs):
        runs = [done[j["id"]] for j in jobs if j["recipe"] == name and j["id"] in done]
        if not runs:
            continue
        row: dict[str, Any] = {"recipe": name, "by_seed": {f"{r['task']}_s{r['seed']}": 100 * r["accuracy"]
                                                          for r in runs}}
        for task in dict.fromkeys(j["task"] for j in jobs):
            acc = [100 * r["accuracy"] for r in runs if r["task"] == task]
            drop = [100 * (r["base_accuracy"] - r["accuracy"]) for r in runs if r["task"] == task]
            row[task] = {"mean": float(np.mean(acc)) if acc else None, "std": float(np.std(acc)) if acc else None,
                         "n": len(acc), "drop": float(np.mean(drop)) if drop else None}
        cells = {f"{j['task']}_s{j['seed']}" for j in jobs}
        row["complete"] = cells <= set(row["by_seed"])
        row["mean_all"] = float(np.mean(list(row["by_seed"].values())))
        row["epochs"] = runs[0]["epochs"]
        row["seconds"] = float(np.median([r["seconds"] for r in runs]))
        rows.append(row)
    return rows


def write_outputs(rows: list[dict], payload: dict, out: Path, stem: str) -> None:
    from _report import machine_line, write_atomic

    tasks = payload["tasks"]
    cols = [f"{t}_s{seed}" for t in tasks for seed in range(payload["seeds"])]
    lines = [f"# compress recipes on task specialisation ({int(100 * payload['budget'])}% MACs)", "",
             f"Command: `{payload['command']}`  ", machine_line(payload["machine"]), "",
             "Test accuracy (%) of `result.model` at the budget per (task, seed); drop = task base minus "
             "compressed, mean over seeds, points. MobileNetV2(alpha=0.35) generalist on Fashion-MNIST, 300 training "
             "images per class; see tools/ablation_recipe.py for each recipe.", "",
             "Each (task, seed) column uses one task base and one data draw for every recipe, so a column "
             "compares recipes paired; `mean` is over all the columns and is shown only for recipes run in "
             "every one (the others are sorted after them).", "",
             "| recipe | " + " | ".join(f"{c}" for c in cols) + " | "
             + " | ".join(f"{t} drop" for t in tasks) + " | mean | epochs | s/run |",
             "|---|" + "---:|" * (len(cols) + len(tasks)) + "---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (not r["complete"], -r["mean_all"])):
        cells = [f"{r['by_seed'][c]:.1f}" if c in r["by_seed"] else "" for c in cols]
        cells += [f"{r[t]['drop']:.1f}" if r[t]["n"] else "" for t in tasks]
        mean = f"**{r['mean_all']:.1f}**" if r["complete"] else ""
        lines.append(f"| {r['recipe']} | " + " | ".join(cells) + f" | {mean} | {r['epochs']} | {r['seconds']:.0f} |")
    lines += ["", *payload.get("notes", []), "", f"![recipes]({stem}.png)"]
    write_atomic(out / f"{stem}.md", "\n".join(lines) + "\n")
    write_atomic(out / f"{stem}.json", json.dumps({**payload, "rows": rows}, indent=2, default=str))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.8))
    order = sorted(rows, key=lambda r: r["mean_all"] or 0)
    for k, t in enumerate(tasks):
        ys = np.arange(len(order)) + (k - (len(tasks) - 1) / 2) * 0.35
        means = [r[t]["mean"] or np.nan for r in order]
        stds = [r[t]["std"] or 0 for r in order]
        ax.barh(ys, means, height=0.35, xerr=stds, label=t, alpha=0.85)
    ax.set_yticks(np.arange(len(order)), [r["recipe"] for r in order])
    lo = min((r[t]["mean"] for r in rows for t in tasks if r[t]["mean"] is not None), default=0)
    ax.set_xlim(max(0, lo - 10), 100)
    ax.set_xlabel("test accuracy (%) at the budget")
    ax.set_title(f"compress recipes, {int(100 * payload['budget'])}% MACs, MobileNetV2 specialised")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / f"{stem}.png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", default=",".join(RECIPES), help=f"subset of {','.join(RECIPES)}")
    parser.add_argument("--tasks", default="hard,easy")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--budget", type=float, default=0.25)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=REPO / "benchmarks" / "cache" / "recipes")
    parser.add_argument("--generalist-cache", type=Path, default=Path.home() / ".cache" / "tf_gpp" / "specialize")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--note", action="append", default=[], help="a paragraph added under the table")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    set_threads(args.threads)
    started = time.time()

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')} {time.time() - started:7.1f}s] {msg}", flush=True)

    recipes, tasks = args.recipes.split(","), args.tasks.split(",")
    unknown = set(recipes) - set(RECIPES)
    if unknown:
        parser.error(f"unknown recipes {sorted(unknown)}; choose from {', '.join(RECIPES)}")
    study = Study(args, log)
    gen_recipe = spec.GENERALIST_RECIPES[study.run["generalist"]]
    gen_path, gen_info = spec.ensure_generalist(args.generalist_cache, gen_recipe, spec.load_fmnist(), log)
    jobs = [{"id": f"{r}_{t}_b{int(100 * args.budget)}_s{s}", "recipe": r, "task": t, "seed": s}
            for s in range(args.seeds) for r in recipes for t in tasks]
    if not args.report_only:
        study.execute(jobs, gen_path)
    from _report import machine_info

    payload = {"command": "python tools/ablation_recipe.py " + " ".join(argv if argv is not None else sys.argv[1:]),
               "budget": args.budget, "tasks": tasks, "seeds": args.seeds, "machine": machine_info(),
               "compress_defaults": {k: str(v) for k, v in spec.compress_defaults().items()},
               "recipes": {r: {k: str(v) for k, v in RECIPES[r].items()} for r in recipes},
               "generalist": gen_info, "notes": args.note, "runs": [study.done[j["id"]] for j in jobs if j["id"] in study.done]}
    write_outputs(summarise(study.done, jobs), payload, args.out, "recipes")
    log(f"wrote {args.out}/recipes.md/.json/.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
