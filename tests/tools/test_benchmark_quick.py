"""Smoke test of the Fashion-MNIST benchmark's ``--quick`` mode (slow: ~3-5 min)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.slow
@pytest.mark.skipif(not DATA.exists(), reason="needs the Debian package dataset-fashion-mnist")
def test_quick_benchmark_writes_results(tmp_path: Path) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "benchmark_fashion_mnist.py"), "--quick",
         "--methods", "gpp,l1,scratch", "--out", str(out), "--cache", str(cache)],
        capture_output=True, text=True, timeout=1200, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    payload = json.loads((out / "fashion_mnist.json").read_text())
    assert payload["failed_jobs"] == []
    assert payload["base"]["test_accuracy"] > 0.6  # a base worth compressing
    rows = {r["method"]: r for r in payload["rows"]}
    assert set(rows) == {"gpp", "l1", "scratch"}
    for method in ("gpp", "l1"):
        r = rows[method]
        assert r["macs_ratio"] <= 0.25 + 1e-9, (method, r["macs_ratio"])
        assert 0.5 < r["accuracy_mean"] <= 1.0
        assert r["speedup_cpu"] and r["speedup_cpu"] > 1.0  # a quarter of the MACs runs faster
    md = (out / "fashion_mnist.md").read_text()
    assert "| gpp | 25% |" in md and "| l1 | 25% |" in md
    assert (out / "fashion_mnist.png").stat().st_size > 10_000
