"""Reports a person would rather look at than read: the accuracy-MACs-latency
trade-off across rounds, per-layer widths before/after, and a 2-D LDA
projection of the final-layer features before and after pushing.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tf_gpp.discriminant import feature_model, find_feature_layer
from tf_gpp.io import replace_atomic, write_atomic
from tf_gpp.profile import profile


def _widths(model: keras.Model) -> dict[str, int]:
    return {r.name: int(r.output_shape[-1]) for r in profile(model).layers if r.macs and r.output_shape}


def lda_projection(model: keras.Model, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Final-layer features of ``x`` projected on their top-2 LDA directions (n, 2)."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    fm = feature_model(model, find_feature_layer(model))
    f = np.asarray(fm.predict(x, verbose=0), dtype=np.float64)
    k = min(2, len(np.unique(y)) - 1)
    z = LinearDiscriminantAnalysis(n_components=k, solver="eigen", shrinkage="auto").fit_transform(f, y)
    return z if z.shape[1] == 2 else np.hstack([z, np.zeros_like(z)])


def plot_report(
    path: str | os.PathLike,
    history: dict,
    base_model: keras.Model | None = None,
    slim_model: keras.Model | None = None,
    pushed_model: keras.Model | None = None,
    data: tuple[np.ndarray, np.ndarray] | None = None,
    latency: dict | None = None,
    title: str = "tf_gpp compression report",
) -> Path:
    """Write a PNG report (written atomically) and return its path.

    Args:
        history: ``CompressResult.to_dict()`` (base + per-round MACs/params/accuracy).
        base_model, slim_model: for the per-layer width panel.
        pushed_model, data: for the LDA panel (base vs pushed features on ``data``).
        latency: optional ``{"base_ms": .., "slim_ms": ..}`` shown on the trade-off panel.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 1 + (base_model is not None and slim_model is not None) + 2 * (data is not None and base_model is not None)
    cols = min(panels, 2)
    rows_ = (panels + 1) // 2
    fig, axes = plt.subplots(rows_, cols, figsize=(6.0 * cols, 4.6 * rows_))
    axes = np.atleast_1d(axes).ravel()
    ax = axes[0]
    base = history["base"]
    rounds = history["history"]
    macs = [100.0] + [100 * r["macs_ratio"] for r in rounds]
    acc = [100 * base["accuracy"]] + [100 * r["accuracy"] for r in rounds]
    ax.plot(macs, acc, "o-", color="tab:blue")
    for i, (m_, a_) in enumerate(zip(macs, acc, strict=True)):
        ax.annotate("base" if i == 0 else f"r{i}", (m_, a_), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.invert_xaxis()
    ax.set_xlabel("MACs (% of base)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("accuracy vs MACs across rounds")
    if latency:
        ax.text(0.02, 0.04, f"LiteRT 1-thread: {latency['base_ms']:.2f} ms -> {latency['slim_ms']:.2f} ms "
                f"({latency['base_ms'] / latency['slim_ms']:.2f}x)", transform=ax.transAxes, fontsize=8)
    ax.grid(alpha=0.3)
    i = 1
    if base_model is not None and slim_model is not None:
        before, after = _widths(base_model), _widths(slim_model)
        names = [n for n in before if n in after]
        pos = np.arange(len(names))
        axes[i].bar(pos - 0.2, [before[n] for n in names], 0.4, label="before", color="tab:gray")
        axes[i].bar(pos + 0.2, [after[n] for n in names], 0.4, label="after", color="tab:green")
        axes[i].set_xticks(pos, names, rotation=60, fontsize=7, ha="right")
        axes[i].set_ylabel("output channels")
        axes[i].set_title("per-layer width")
        axes[i].legend()
        i += 1
    if data is not None and base_model is not None:
        x, y = data
        after = (pushed_model, "after push") if pushed_model is not None else (slim_model, "compressed")
        for model, label in ((base_model, "base"), after):
            if model is None:
                continue
            z = lda_projection(model, x, y)
            sc = axes[i].scatter(z[:, 0], z[:, 1], c=y, s=6, cmap="tab10")
            axes[i].set_title(f"final-layer features, 2-D LDA: {label}")
            axes[i].set_xticks([])
            axes[i].set_yticks([])
            i += 1
        fig.colorbar(sc, ax=axes[i - 1], fraction=0.04)
    fig.suptitle(title)
    fig.tight_layout()
    try:
        return replace_atomic(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"), suffix=".png")
    finally:
        plt.close(fig)


def html_report(path: str | os.PathLike, png: str | os.PathLike, history: dict, extra: dict[str, Any] | None = None) -> Path:
    """A small self-contained HTML page: the PNG and the per-round table."""
    rows = "".join(
        f"<tr><td>{r['round']}</td><td>{r['params']:,}</td><td>{r['macs']:,}</td>"
        f"<td>{100 * r['macs_ratio']:.1f}%</td><td>{100 * r['accuracy']:.2f}%</td></tr>"
        for r in history["history"]
    )
    b = history["base"]
    facts = "".join(f"<li>{html.escape(str(k))}: {html.escape(str(v))}</li>" for k, v in (extra or {}).items())
    page = (
        "<!doctype html><meta charset='utf-8'><title>tf_gpp report</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}td,th{padding:4px 10px;text-align:right}</style>"
        f"<h1>tf_gpp compression report</h1><img src='{html.escape(Path(png).name)}' style='max-width:100%'>"
        f"<ul>{facts}</ul><table><tr><th>round</th><th>params</th><th>MACs</th><th>MACs %</th><th>accuracy</th></tr>"
        f"<tr><td>base</td><td>{b['params']:,}</td><td>{b['macs']:,}</td><td>100%</td><td>{100 * b['accuracy']:.2f}%</td></tr>"
        f"{rows}</table>"
    )
    return write_atomic(path, page)
