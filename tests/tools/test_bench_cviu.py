"""Smoke test of ``tools/bench_cviu.py --quick`` (slow: about a minute on a loaded 2-core machine)."""

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
def test_quick_cviu_benchmark_writes_results(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "bench_cviu.py"), "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=1200, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    payload = json.loads((tmp_path / "cviu.json").read_text())
    (run,) = payload["runs"]
    assert set(run["fig17"]) == {"fisher", "pca", "random"}
    assert set(run["zero_utility"]) == {"c1", "c2", "c3", "fc"}
    assert {"gpp@0.5", "taylor@0.5", "random@0.75"} <= set(run["rates"])
    assert "Fig. 18" in (tmp_path / "cviu.md").read_text() and (tmp_path / "cviu.png").stat().st_size > 0
