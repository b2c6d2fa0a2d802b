"""Smoke test of the task-specialisation benchmark's ``--tiny`` mode (slow: ~10 min on an idle 2-core machine, much longer under load).

A tiny generalist (1,000 images, 1 epoch) is trained, one sub-task is specialised and
compressed by two criteria with one width-multiplier baseline; a second invocation must
find every run in the results file and redo none of them (resumability).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DATA = Path("/usr/share/datasets/fashion-mnist")
SCRIPT = REPO / "tools" / "benchmark_specialize.py"


def _run(tmp: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--baselines", "base,scratch", "--out", str(tmp / "out"),
         "--cache", str(tmp / "cache"), "--generalist-cache", str(tmp / "gen"), *extra],
        capture_output=True, text=True, timeout=3600, check=False,
    )


@pytest.mark.slow
@pytest.mark.skipif(not DATA.exists(), reason="needs the Debian package dataset-fashion-mnist")
def test_tiny_specialisation_benchmark_end_to_end(tmp_path: Path) -> None:
    proc = _run(tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    payload = json.loads((tmp_path / "out" / "specialize.json").read_text())
    assert payload["failed"] == []
    assert 0.0 <= payload["generalist"]["test_accuracy"] <= 1.0
    rows = {(r["method"], r["budget"]): r for r in payload["rows"]}
    assert set(rows) == {("base", 1.0), ("gpp", 0.25), ("l1", 0.25), ("scratch", 0.25)}
    base = rows[("base", 1.0)]
    for method in ("gpp", "l1", "scratch"):
        r = rows[(method, 0.25)]
        assert 0.0 <= r["accuracy_mean"] <= 1.0
        assert r["executed_macs"] < base["executed_macs"], method
    for method in ("gpp", "l1"):  # compress reached the budget (max_accuracy_drop=1.0)
        assert rows[(method, 0.25)]["macs_ratio"] <= 0.25 + 1e-9
    # the narrowed scratch net is sized to about the budget
    assert 0.15 < rows[("scratch", 0.25)]["macs_ratio"] < 0.35
    md = (tmp_path / "out" / "specialize.md").read_text()
    assert "| gpp |" in md and "| scratch |" in md and "hard 25%" in md
    assert (tmp_path / "out" / "specialize.png").stat().st_size > 10_000

    lines = Path(payload["results_file"]).read_text().splitlines()
    again = _run(tmp_path, "--no-latency")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "4 runs, 4 already done" in again.stdout
    assert Path(payload["results_file"]).read_text().splitlines() == lines
