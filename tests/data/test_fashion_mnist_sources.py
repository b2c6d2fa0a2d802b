"""Fashion-MNIST source order for the main job: Debian package, Keras cache, Keras download
(time-bounded, only when the network answers), else digits with a notice. No network is used:
the reachability check and ``keras.datasets.fashion_mnist.load_data`` are monkeypatched."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import keras
import numpy as np
import pytest

import tf_gpp.data.fashion_mnist as fm
from tf_gpp.data import load_default, write_idx


def _fake_files(folder: Path, n: int = 20) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8))


def _fake_arrays(n: int = 30):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    y = (np.arange(n) % 10).astype(np.uint8)
    return (x, y), (x[:20], y[:20])


@pytest.fixture
def places(monkeypatch, tmp_path):
    """Empty Debian folder and Keras cache, no TFDS; downloads recorded."""
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "debian")
    monkeypatch.setattr(fm, "keras_cache_dirs", lambda: [tmp_path / "keras"])
    monkeypatch.setattr(fm, "tfds_available", lambda: False)
    downloads = []

    def load_data():
        downloads.append(1)
        return _fake_arrays()

    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", load_data)
    return tmp_path, downloads


def test_debian_package_comes_first(places, monkeypatch):
    tmp, downloads = places
    monkeypatch.setattr(fm, "network_reachable", lambda *a, **k: True)
    _fake_files(tmp / "debian")
    _fake_files(tmp / "keras")
    assert load_default(limit=20).source == str(tmp / "debian")
    assert not downloads


def test_keras_cache_before_download(places, monkeypatch):
    tmp, downloads = places
    monkeypatch.setattr(fm, "network_reachable", lambda *a, **k: True)
    _fake_files(tmp / "keras")
    assert load_default(limit=20).source == str(tmp / "keras")
    assert not downloads


def test_download_when_the_network_answers(places, monkeypatch, recwarn):
    _, downloads = places
    monkeypatch.setattr(fm, "network_reachable", lambda *a, **k: True)
    ds = load_default(limit=30)
    assert ds.name == "fashion_mnist" and ds.source.startswith("keras.datasets") and downloads == [1]
    assert ds.input_shape == (28, 28, 1)
    assert not [w for w in recwarn if "digits" in str(w.message)]


def test_no_network_falls_back_to_digits_without_trying(places, monkeypatch):
    _, downloads = places
    monkeypatch.setattr(fm, "network_reachable", lambda *a, **k: False)
    with pytest.warns(UserWarning, match="digits") as record:
        ds = load_default(limit=200)
    assert ds.name == "digits" and not downloads
    assert "no network connection" in str(record[0].message)


def test_a_slow_download_is_abandoned(places, monkeypatch):
    monkeypatch.setattr(fm, "network_reachable", lambda *a, **k: True)
    release = threading.Event()

    def stuck():
        release.wait(5)
        return _fake_arrays()

    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", stuck)
    start = time.perf_counter()
    try:
        with pytest.warns(UserWarning, match="longer than 0s"):
            ds = load_default(limit=200, download_timeout=0.3)
    finally:
        release.set()
    assert ds.name == "digits" and time.perf_counter() - start < 4


def test_download_false_never_downloads(places, monkeypatch):
    _, downloads = places
    monkeypatch.setattr(fm, "network_reachable", lambda *a, **k: True)
    with pytest.warns(UserWarning, match="download=False"):
        assert load_default(limit=200, download=False).name == "digits"
    assert not downloads
