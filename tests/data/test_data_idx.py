"""IDX reading/writing: hand-made files, round trips, corrupt files."""

import gzip
import struct

import numpy as np
import pytest

from tf_gpp.data import load_idx, read_idx, write_idx
from tf_gpp.errors import DataError


def _idx_bytes(array: np.ndarray, code: int) -> bytes:
    """An IDX file written by hand (independent of tf_gpp.data.write_idx)."""
    header = struct.pack(">BBBB", 0, 0, code, array.ndim)
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.fixture
def tiny_pair(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
    labels = np.array([0, 1, 2, 1, 0], dtype=np.uint8)
    img_path = tmp_path / "imgs-idx3-ubyte.gz"
    lbl_path = tmp_path / "labels-idx1-ubyte.gz"
    img_path.write_bytes(gzip.compress(_idx_bytes(images, 0x08)))
    lbl_path.write_bytes(gzip.compress(_idx_bytes(labels, 0x08)))
    return images, labels, img_path, lbl_path


def test_load_idx_gz_round_trip(tiny_pair):
    images, labels, img_path, lbl_path = tiny_pair
    x, y = load_idx(img_path, lbl_path)
    assert x.dtype == np.uint8 and x.shape == (5, 4, 3)
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)


def test_read_plain_idx_other_dtypes(tmp_path):
    arr = np.arange(12, dtype=np.int32).reshape(3, 4) - 5
    (tmp_path / "a.idx").write_bytes(_idx_bytes(arr, 0x0C))
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx"), arr)
    flt = np.linspace(-1, 1, 6, dtype=np.float32)
    (tmp_path / "f.idx").write_bytes(_idx_bytes(flt, 0x0D))
    out = read_idx(tmp_path / "f.idx")
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, flt)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("name", ["x.idx", "x.idx.gz"])
def test_write_idx_round_trip(tmp_path, dtype, name):
    arr = (np.arange(24).reshape(2, 3, 4) % 100).astype(dtype)
    path = write_idx(tmp_path / name, arr)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back, arr)


def test_bad_magic_names_file(tmp_path):
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(b"\x12\x34\x08\x01" + b"\x00" * 8))
    with pytest.raises(DataError, match="bad.gz.*magic"):
        read_idx(path)


def test_truncated_data_names_file(tiny_pair, tmp_path):
    images = tiny_pair[0]
    raw = _idx_bytes(images, 0x08)
    path = tmp_path / "short-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(raw[:-7]))
    with pytest.raises(DataError, match="short-idx3-ubyte.gz.*truncated"):
        read_idx(path)


def test_truncated_gzip_names_file(tiny_pair, tmp_path):
    raw = tiny_pair[2].read_bytes()
    path = tmp_path / "cut.gz"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="cut.gz"):
        read_idx(path)


def test_trailing_bytes_and_header_truncation(tmp_path):
    arr = np.zeros((2, 2), np.uint8)
    (tmp_path / "long").write_bytes(_idx_bytes(arr, 0x08) + b"\x00")
    with pytest.raises(DataError, match="trailing"):
        read_idx(tmp_path / "long")
    (tmp_path / "hdr").write_bytes(_idx_bytes(arr, 0x08)[:6])
    with pytest.raises(DataError, match="header"):
        read_idx(tmp_path / "hdr")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.gz"):
        read_idx(tmp_path / "nope.gz")


def test_load_idx_count_mismatch_and_swapped(tiny_pair, tmp_path):
    images, _, img_path, lbl_path = tiny_pair
    other = tmp_path / "l4.gz"
    other.write_bytes(gzip.compress(_idx_bytes(np.zeros(4, np.uint8), 0x08)))
    with pytest.raises(DataError, match="5 images but .* 4 labels"):
        load_idx(img_path, other)
    with pytest.raises(DataError, match="swapped"):
        load_idx(lbl_path, img_path)
