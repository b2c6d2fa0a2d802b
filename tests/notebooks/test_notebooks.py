"""The quickstart notebook is executed so it never rots."""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def _run(name: str, tmp_path: Path, timeout: int) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    return nb


def test_quickstart_notebook_runs(tmp_path):
    nb = _run("quickstart.ipynb", tmp_path, timeout=900)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "push_align" in text and "round" in text and "PASSED" in text
    assert (tmp_path / "digits_slim_int8.tflite").exists()


@pytest.mark.slow
def test_fashion_mnist_notebook_runs(tmp_path):
    _run("fashion_mnist_gpp.ipynb", tmp_path, timeout=3600)
    assert (tmp_path / "fmnist_slim_int8.tflite").exists()
