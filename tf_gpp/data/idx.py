"""Read and write IDX files (the MNIST / Fashion-MNIST format), gzipped or plain.

Layout: two zero bytes, a type code, the number of dimensions, one big-endian
uint32 per dimension, then the values in big-endian row-major order.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from tf_gpp.errors import DataError

_GZIP_MAGIC = b"\x1f\x8b"

# IDX type code -> big-endian NumPy dtype.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"IDX file not found: {path}") from None
    except OSError as e:
        raise DataError(f"Cannot read IDX file {path}: {e}") from e
    if raw[:2] == _GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(
                f"IDX file {path} is a corrupt or truncated gzip archive ({e}); "
                "delete it and download / reinstall it."
            ) from e
    return raw


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (``.gz`` detected from content) into a native-endian array.

    Raises:
        DataError: naming the file, if it is missing, not IDX (bad magic
            number), truncated, or has trailing bytes.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(f"IDX file {path} is truncated: {len(data)} bytes, no header.")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in _IDX_DTYPES or ndim == 0:
        raise DataError(
            f"{path} is not an IDX file: bad magic number 0x{data[:4].hex()} "
            "(expected 0x0000 <type 08/09/0B/0C/0D/0E> <ndim >= 1>)."
        )
    header_end = 4 + 4 * ndim
    if len(data) < header_end:
        raise DataError(f"IDX file {path} is truncated inside its header ({ndim} dimensions).")
    dims = struct.unpack(f">{ndim}I", data[4:header_end])
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    got = len(data) - header_end
    if got < expected:
        raise DataError(
            f"IDX file {path} is truncated: header says shape {dims} ({expected} bytes of data) "
            f"but only {got} bytes follow; re-download or reinstall the file."
        )
    if got > expected:
        raise DataError(
            f"IDX file {path} has {got - expected} unexpected trailing bytes after shape {dims}; "
            "the file is corrupt."
        )
    arr = np.frombuffer(data, dtype=dtype, count=int(np.prod(dims)), offset=header_end)
    return arr.reshape(dims).astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``array`` as IDX; gzip when ``compress`` is true (default: path ends in ``.gz``)."""
    path = Path(path)
    arr = np.asarray(array)
    codes = {dt.newbyteorder("="): code for code, dt in _IDX_DTYPES.items()}
    native = arr.dtype.newbyteorder("=")
    if native not in codes:
        raise DataError(f"write_idx: dtype {arr.dtype} has no IDX type code.")
    if arr.ndim == 0 or arr.ndim > 255:
        raise DataError(f"write_idx: need 1..255 dimensions, got shape {arr.shape}.")
    header = struct.pack(">HBB", 0, codes[native], arr.ndim) + struct.pack(
        f">{arr.ndim}I", *arr.shape
    )
    payload = header + arr.astype(native.newbyteorder(">")).tobytes()
    if compress is None:
        compress = path.suffix == ".gz"
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


def load_idx(
    images_path: str | os.PathLike, labels_path: str | os.PathLike
) -> tuple[np.ndarray, np.ndarray]:
    """Read an images/labels IDX pair; returns ``(images, labels)`` as NumPy arrays.

    Images keep their stored dtype and shape (``(n, H, W)`` for MNIST-style
    files); pass them to :func:`tf_gpp.data.from_arrays` for a pipeline.

    Raises:
        DataError: for unreadable/corrupt files, labels that are not 1-D, or a
            count mismatch between the two files.
    """
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim < 2:
        raise DataError(
            f"{images_path} holds an array of shape {images.shape}; expected images "
            "(n, H, W[, C]). Are the images and labels paths swapped?"
        )
    if labels.ndim != 1:
        raise DataError(
            f"{labels_path} holds an array of shape {labels.shape}; expected 1-D labels. "
            "Are the images and labels paths swapped?"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} has {len(images)} images but {labels_path} has {len(labels)} labels."
        )
    return images, labels
