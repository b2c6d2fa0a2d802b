"""Push benchmark: training-step overhead of PushModel vs plain fit, and whether
pushing concentrates the discriminant utility (top-25% Fisher share).

    python tools/bench_push.py            # Fashion-MNIST subset, ~10 min on 2 cores
    python tools/bench_push.py --quick

Both figures come from models trained side by side in one run (interleaved
epochs for the timing). Writes benchmarks/results/push.{json,md,png}.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from _report import RESULTS, machine_info, machine_line, markdown_table, write_atomic, write_json  # noqa: E402

import tf_gpp  # noqa: E402
from tf_gpp.demo import base_cnn  # noqa: E402
from tf_gpp.discriminant import ScatterStats, feature_model, neuron_utility, top_share  # noqa: E402

#: the push loss of the committed results (PushLoss's defaults before issue 23: alignment-led)
PUSH = {"a": 0.1, "b": 0.1, "g": 1.0}


class StepTimer(keras.callbacks.Callback):
    """Wall time of each step, and process CPU time per step over the epoch (CPU time
    is what the machine's other jobs cannot inflate)."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []
        self.cpu_per_step = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._cpu = time.process_time()

    def on_train_batch_begin(self, batch, logs=None):
        self._t = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self._t)

    def on_epoch_end(self, epoch, logs=None):
        self.cpu_per_step = (time.process_time() - self._cpu) / max(1, len(self.times))


def _compile(m: keras.Model) -> None:
    m.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
              metrics=["accuracy"])


def overhead(ds, repeats: int) -> dict:
    plain = base_cnn(ds.input_shape, ds.num_classes)
    pushed_base = base_cnn(ds.input_shape, ds.num_classes)
    pushed_base.set_weights(plain.get_weights())
    pushed = tf_gpp.PushModel(pushed_base, push=tf_gpp.PushLoss(**PUSH))
    _compile(plain)
    _compile(pushed)
    plain.fit(ds.train, epochs=1, verbose=0)  # trace both first
    pushed.fit(ds.train, epochs=1, verbose=0)
    tp, tq, cp, cq = [], [], [], []
    for _ in range(repeats):  # interleaved epochs: the shared machine's noise hits both
        a, b = StepTimer(), StepTimer()
        plain.fit(ds.train, epochs=1, verbose=0, callbacks=[a], shuffle=False)
        pushed.fit(ds.train, epochs=1, verbose=0, callbacks=[b], shuffle=False)
        tp.append(statistics.median(a.times))
        tq.append(statistics.median(b.times))
        cp.append(a.cpu_per_step)
        cq.append(b.cpu_per_step)
    mp, mq = statistics.median(tp), statistics.median(tq)
    return {"plain_step_ms": 1e3 * mp, "push_step_ms": 1e3 * mq, "overhead": mq / mp - 1,
            "plain_cpu_step_ms": 1e3 * statistics.median(cp), "push_cpu_step_ms": 1e3 * statistics.median(cq),
            "cpu_overhead": statistics.median(cq) / statistics.median(cp) - 1,
            "per_repeat_ratio": [q / p for p, q in zip(tp, tq, strict=True)], "repeats": repeats}


def concentration(ds, epochs: int, seed: int) -> dict:
    keras.utils.set_random_seed(seed)
    plain = base_cnn(ds.input_shape, ds.num_classes)
    init = plain.get_weights()
    _compile(plain)
    plain.fit(ds.train, epochs=epochs, verbose=0, shuffle=False)
    other = base_cnn(ds.input_shape, ds.num_classes)
    other.set_weights(init)
    pm = tf_gpp.PushModel(other, push=tf_gpp.PushLoss(**PUSH))
    _compile(pm)
    keras.utils.set_random_seed(seed)
    pm.fit(ds.train, epochs=epochs, verbose=0, shuffle=False,
           callbacks=[tf_gpp.PushSchedule(start_epoch=epochs // 3, warmup_epochs=1)])
    pushed = pm.strip()
    x, y = ds.as_numpy("test")
    out = {"seed": seed}
    for name, m in (("plain", plain), ("pushed", pushed)):
        stats = ScatterStats.accumulate(feature_model(m), ds.train, ds.num_classes)
        u = neuron_utility(stats, "fisher")
        _compile(m)
        out[f"{name}_top25_share"] = top_share(u, 0.25)
        out[f"{name}_test_accuracy"] = float(m.evaluate(x, y, verbose=0, return_dict=True)["accuracy"])
        out[f"{name}_utility"] = np.sort(u)[::-1].tolist()
    return out


def plot(conc: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for r, ls in zip(conc, ["-", "--", ":"], strict=False):
        for name, color in (("plain", "tab:gray"), ("pushed", "tab:blue")):
            u = np.asarray(r[f"{name}_utility"])
            ax.plot(np.arange(1, len(u) + 1) / len(u), np.cumsum(u) / u.sum(), ls, color=color,
                    label=f"{name}, seed {r['seed']} (top-25%: {r[f'{name}_top25_share']:.2f})")
    ax.axvline(0.25, color="k", lw=0.6)
    ax.set_xlabel("fraction of final-layer neurons (sorted by Fisher utility)")
    ax.set_ylabel("share of total Fisher utility")
    ax.set_title("pushing concentrates the discriminant utility")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    limit = 3000 if args.quick else 10000
    ds = tf_gpp.data.load_default(limit=limit, batch_size=128)
    t0 = time.perf_counter()
    ov = overhead(ds, repeats=2 if args.quick else 5)
    print("overhead", {k: v for k, v in ov.items() if k != "per_repeat_ratio"}, flush=True)
    seeds = [0] if args.quick else [0, 1]
    conc = [concentration(ds, 3 if args.quick else 9, s) for s in seeds]
    info = machine_info()
    payload = {"machine": info, "data": ds.describe(), "overhead": ov, "concentration": conc,
               "seconds": round(time.perf_counter() - t0)}
    name = "push_quick" if args.quick else "push"
    write_json(name, payload)
    rows = [{"seed": r["seed"], "plain top-25% share": f"{r['plain_top25_share']:.3f}",
             "pushed top-25% share": f"{r['pushed_top25_share']:.3f}",
             "plain test acc": f"{r['plain_test_accuracy']:.4f}", "pushed test acc": f"{r['pushed_test_accuracy']:.4f}"}
            for r in conc]
    md = (f"# Push benchmark\n\nData: {ds.describe()}. Model: the demo CNN (`tf_gpp.demo.base_cnn`, "
          f"{tf_gpp.profile(base_cnn(ds.input_shape, ds.num_classes)).params:,} params), batch 128.\n\n"
          f"## Training-step overhead (PushModel vs plain fit, {ov['repeats']} interleaved epochs)\n\n"
          f"Process CPU time per step (not inflated by other jobs on the machine): plain "
          f"{ov['plain_cpu_step_ms']:.1f} ms, push {ov['push_cpu_step_ms']:.1f} ms -> overhead "
          f"**{100 * ov['cpu_overhead']:+.1f}%** (goal <= 10%). Wall-clock median step: plain "
          f"{ov['plain_step_ms']:.1f} ms, push {ov['push_step_ms']:.1f} ms ({100 * ov['overhead']:+.1f}%); "
          f"per-epoch wall ratios {', '.join(f'{x:.3f}' for x in ov['per_repeat_ratio'])}.\n\n"
          "## Concentration: top-25% Fisher share of the final hidden layer\n\n"
          "Same initial weights and epochs; push starts at a third of training "
          "(`PushSchedule(start_epoch=epochs//3, warmup_epochs=1)`).\n\n"
          + markdown_table(rows, list(rows[0])) + "\n" + machine_line(info)
          + f"\n\nReproduce: `python tools/bench_push.py{' --quick' if args.quick else ''}` "
          f"({payload['seconds']} s here).\n")
    write_atomic(RESULTS / f"{name}.md", md)
    plot(conc, RESULTS / f"{name}.png")
    print(md)


if __name__ == "__main__":
    main()
