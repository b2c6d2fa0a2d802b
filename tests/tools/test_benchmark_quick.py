"""Smoke test of the Fashion-MNIST benchmark's ``--quick`` mode (slow: ~10 min on a loaded 2-core machine)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = Path("/usr/share/datasets/fashion-mnist")
SCRIPT = REPO / "tools" / "benchmark_fashion_mnist.py"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--quick", *args],
                          capture_output=True, text=True, timeout=1800, check=False)


@pytest.mark.slow
@pytest.mark.skipif(not DATA.exists(), reason="needs the Debian package dataset-fashion-mnist")
def test_quick_benchmark_writes_results(tmp_path: Path) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"
    common = ("--methods", "taylor,gpp,scratch,scratch_time", "--out", str(out), "--cache", str(cache))
    proc = _run(*common)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    payload = json.loads((out / "fashion_mnist.json").read_text())
    assert payload["failed_jobs"] == [] and payload["complete"]
    base = payload["base"]
    assert base["test_accuracy"] > 0.6  # a base worth compressing
    rows = {r["method"]: r for r in payload["rows"]}
    assert set(rows) == {"taylor", "gpp", "scratch", "scratch_time"}
    assert payload["default_method"] == "taylor"  # compress's default criterion, marked
    for method in ("taylor", "gpp"):
        r = rows[method]
        assert r["macs_ratio"] <= 0.25 + 1e-9, (method, r["macs_ratio"])
        assert 0.5 < r["accuracy_mean"] <= 1.0
        assert r["speedup_cpu"] and r["speedup_cpu"] > 1.0  # a quarter of the MACs runs faster
        assert r["train_images"] == payload["compress_steps"] * payload["settings"]["batch_size"]
    # equal epochs: scratch sees the base's images plus one compression's
    scratch = rows["scratch"]
    assert scratch["train_images"] == (base["recipe"]["epochs"] * base["n_train"]
                                       + payload["compress_steps"] * payload["settings"]["batch_size"])
    # equal time: base training + the default criterion's compression, in CPU seconds, stopped at the limit
    timed = rows["scratch_time"]
    default_cpu = payload["jobs"]["taylor_b25_s0"]["cpu_seconds"]
    assert timed["time_limit_s"] == pytest.approx(base["train_cpu_seconds"] + default_cpu, abs=0.2)
    assert timed["cpu_seconds"] == pytest.approx(timed["time_limit_s"], rel=0.1, abs=5)
    assert timed["stopped_by_time"]
    md = (out / "fashion_mnist.md").read_text()
    assert "| gpp | 25% |" in md and "| taylor | 25% |" in md and "**taylor (default)**" in md and "| scratch_time |" in md
    assert (out / "fashion_mnist.png").stat().st_size > 10_000
    # resumable: a second call finds every run in the JSONL and trains nothing
    again = _run(*common)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "done before" in again.stdout and "[tf_gpp]" not in again.stdout
    payload2 = json.loads((out / "fashion_mnist.json").read_text())
    assert {r["method"]: r["accuracies"] for r in payload2["rows"]} == {
        m: r["accuracies"] for m, r in rows.items()}
