"""The notebooks in notebooks/: stored executed and in step with their generator; each one runs.

The default suite runs every notebook in QUICK mode (``TF_GPP_NOTEBOOK_QUICK=1``: tiny data, a
fail on any cell error); the full runs are ``slow``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
MAX_BYTES = 300 * 1024


def _generator():
    spec = importlib.util.spec_from_file_location("make_notebooks", REPO / "tools" / "make_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _generator()
NAMES = sorted(GEN.NOTEBOOKS)
# What each run must show (besides finishing without a cell error) and the files it must write.
EXPECTED = {
    "quickstart.ipynb": (["push_align", "round", "PASSED"], ["digits_slim_int8.tflite"]),
    "fashion_mnist_gpp.ipynb": (["round", "TFLite verification"], ["fmnist_slim_int8.tflite", "fmnist_report.png"]),
    "transfer_learning.ipynb": (["of which the backbone", "inside the backbone", "slim int8"],
                                ["tl_slim_int8.tflite"]),
    "prune_in_fit.ipynb": (["gpp_macs", "max |masked - stripped|", "slim (TFLite int8)"],
                           ["fit_slim_int8.tflite"]),
}


def _text(nb: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def _images(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def test_every_notebook_has_expectations():
    assert sorted(EXPECTED) == NAMES
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_stored_notebook_matches_generator(name):
    stored = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert GEN.sources(stored) == GEN.sources(GEN.build(name)), (
        f"{name} differs from tools/make_notebooks.py: run `python tools/make_notebooks.py --execute`"
    )


@pytest.mark.parametrize("name", NAMES)
def test_stored_notebook_is_executed_small_and_clean(name):
    path = NOTEBOOKS / name
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None and c.outputs for c in code), "a code cell has no outputs"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    assert "notebook ran in" in _text(nb) and "(full mode)" in _text(nb), "stored from a QUICK run"
    assert _images(nb) >= 1, "no figure stored"
    assert path.stat().st_size < MAX_BYTES
    assert all(not c.metadata for c in nb.cells), "volatile cell metadata left in"
    assert set(nb.metadata) == {"kernelspec", "language_info"}


def _run(name: str, tmp_path: Path, monkeypatch, quick: bool) -> nbformat.NotebookNode:
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "1")
    monkeypatch.setenv("TF_NUM_INTEROP_THREADS", "1")
    nb = GEN.build(name)
    GEN.execute(nb, tmp_path, quick=quick, timeout=600 if quick else 3600)  # raises on a cell error
    words, files = EXPECTED[name]
    text = _text(nb)
    for word in words:
        assert word in text, f"{word!r} missing from the outputs of {name}"
    for file in files:
        assert (tmp_path / file).exists(), file
    assert _images(nb) >= 1
    return nb


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_quick(name, tmp_path, monkeypatch):
    nb = _run(name, tmp_path, monkeypatch, quick=True)
    assert "(QUICK mode)" in _text(nb)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_full(name, tmp_path, monkeypatch):
    nb = _run(name, tmp_path, monkeypatch, quick=False)
    assert "(full mode)" in _text(nb)
