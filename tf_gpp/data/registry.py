"""Dataset loaders by name: one registry for the command line's ``--data`` and for scripts.

An identifier is a built-in name (``fashion_mnist``, ``digits``, ``default``), an image
folder (``path/<class>/<images>``), an ``.npz`` file with ``x``/``y`` (optional
``x_val``/``y_val``, ``x_test``/``y_test``) or a TFDS name (``tfds:mnist``, or a bare
name when ``tensorflow-datasets`` is installed). :func:`get` returns the loader for an
identifier; adding a loader is one :func:`register` call.

>>> from tf_gpp.data import registry
>>> ds = registry.load("digits", limit=500)
>>> ds = registry.load("photos/", model=model)     # image size and channels from the model
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tf_gpp.data.arrays import make_pipeline, stratified_order, to_sparse_labels
from tf_gpp.data.bundle import Dataset
from tf_gpp.data.preprocessing import Preprocessing
from tf_gpp.errors import DataError

Loader = Callable[..., Dataset]
"""``load(identifier, *, limit=None, batch_size=128, model=None) -> Dataset``; ``model`` (when
known) gives image sizes, channels and the number of classes."""


@dataclass(frozen=True)
class DatasetLoader:
    """One entry of the registry.

    Attributes:
        name: the identifier (built-ins) or the kind of identifier (``folder``, ``npz``, ``tfds``).
        description: one line for help texts.
        load: the :data:`Loader`.
        matches: for kinds of identifiers, whether an identifier is of this kind; ``None`` for a
            fixed name.
        aliases: other names of a fixed-name loader.
    """

    name: str
    description: str
    load: Loader
    matches: Callable[[str], bool] | None = None
    aliases: tuple[str, ...] = ()


_NAMED: dict[str, DatasetLoader] = {}
_KINDS: list[DatasetLoader] = []


def register(loader: DatasetLoader) -> DatasetLoader:
    """Add a loader (a fixed name when ``loader.matches`` is ``None``, else a kind of
    identifier tried in registration order, after the fixed names). Returns it."""
    if loader.matches is None:
        for key in (loader.name, *loader.aliases):
            _NAMED[key.lower()] = loader
    else:
        _KINDS[:] = [k for k in _KINDS if k.name != loader.name] + [loader]
    return loader


def unregister(name: str) -> None:
    """Remove the loader called ``name`` (a fixed name with its aliases, or a kind)."""
    entry = _NAMED.get(name.lower())
    if entry is not None:
        for key in [k for k, v in _NAMED.items() if v is entry]:
            del _NAMED[key]
    elif any(k.name == name for k in _KINDS):
        _KINDS[:] = [k for k in _KINDS if k.name != name]
    else:
        raise DataError(f"no registered dataset loader {name!r}; registered: {names()}.")


def names() -> tuple[str, ...]:
    """The fixed names (built-in datasets), without aliases."""
    return tuple(dict.fromkeys(v.name for v in _NAMED.values()))


def help_text() -> str:
    """One line listing what ``--data`` accepts."""
    kinds = ", ".join(k.description for k in _KINDS)
    return f"{', '.join(names())}, {kinds}"


def get(identifier: str) -> DatasetLoader:
    """The loader for ``identifier`` (a name, a folder, an ``.npz`` file, a TFDS name).

    Raises:
        DataError: no loader takes it; the message lists what is accepted.
    """
    if not isinstance(identifier, str) or not identifier.strip():
        raise DataError(f"a dataset identifier must be a non-empty string, got {identifier!r}.")
    if identifier.lower() in _NAMED:
        return _NAMED[identifier.lower()]
    for kind in _KINDS:
        if kind.matches is not None and kind.matches(identifier):
            return kind
    looks_like_path = any(c in identifier for c in "/\\.") or Path(identifier).suffix
    why = f"no such file or folder {identifier!r}" if looks_like_path else f"unknown dataset {identifier!r}"
    tfds = "" if _tfds_installed() else " (tensorflow-datasets is not installed)"
    raise DataError(f"{why}; use one of {', '.join(names())}, an image folder, an .npz file with x/y, "
                    f"or a TFDS name (tfds:mnist){tfds}.")


def load(identifier: str, **kwargs: Any) -> Dataset:
    """``get(identifier).load(identifier, **kwargs)``."""
    return get(identifier).load(identifier, **kwargs)


# -- built-in names ------------------------------------------------------------------------


def _fashion(identifier: str, *, limit: int | None = None, batch_size: int = 128, model: Any = None) -> Dataset:
    from tf_gpp.data.fashion_mnist import load_fashion_mnist

    return load_fashion_mnist(limit=limit, batch_size=batch_size)


def _digits(identifier: str, *, limit: int | None = None, batch_size: int = 128, model: Any = None) -> Dataset:
    from tf_gpp.data.digits import load_digits

    return load_digits(limit=limit, batch_size=batch_size)


def _default(identifier: str, *, limit: int | None = None, batch_size: int = 128, model: Any = None) -> Dataset:
    from tf_gpp.data.default import load_default

    return load_default(limit=limit, batch_size=batch_size)


register(DatasetLoader("fashion_mnist", "Fashion-MNIST 28x28x1 (local files, else download)", _fashion,
                       aliases=("fashion-mnist",)))
register(DatasetLoader("digits", "scikit-learn's 8x8 digits", _digits))
register(DatasetLoader("default", "Fashion-MNIST if available, else digits", _default))


# -- image folders ---------------------------------------------------------------------------

_MODES = {1: "grayscale", 3: "rgb", 4: "rgba"}


def model_input_shape(model: Any) -> tuple | None:
    """The per-sample shape of a one-input model, ``None`` otherwise."""
    inputs = getattr(model, "inputs", None) or []
    if len(inputs) != 1:
        return None
    return tuple(inputs[0].shape[1:])


def rescales_inputs(model: Any) -> bool:
    """Whether ``model`` holds its own pixel scaling (a ``Rescaling`` or ``Normalization``
    layer, nested models included): then images are fed as 0..255 pixels."""
    stack = list(getattr(model, "layers", None) or [])
    while stack:
        layer = stack.pop()
        if type(layer).__name__ in ("Rescaling", "Normalization"):
            return True
        stack.extend(getattr(layer, "layers", None) or [])
    return False


def _first_image(folder: Path) -> Path:
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        for f in sorted(sub.iterdir()):
            if f.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".gif"):
                return f
    raise DataError(f"{folder}: no images found; expected {folder}/<class name>/<image files>.")


def _folder(identifier: str, *, limit: int | None = None, batch_size: int = 128, model: Any = None) -> Dataset:
    from tf_gpp.data.folder import from_image_folder

    folder = Path(identifier).expanduser()
    shape = model_input_shape(model) if model is not None else None
    if shape is not None and (len(shape) != 3 or shape[-1] not in _MODES):
        raise DataError(f"--data {identifier}: an image folder feeds (height, width, 1|3|4) images but the "
                        f"model's input is {shape}; give an .npz file with x/y instead.")
    if shape is not None and None not in shape[:2]:
        size, mode = (int(shape[0]), int(shape[1])), _MODES[int(shape[2])]
    else:
        import keras

        first = keras.utils.load_img(_first_image(folder))
        size = (first.height, first.width)
        mode = _MODES[int(shape[2])] if shape is not None else ("grayscale" if first.mode in ("L", "1") else "rgb")
    raw = model is not None and rescales_inputs(model)
    ds = from_image_folder(folder, size, batch_size=batch_size, color_mode=mode,
                           preprocessing=None if raw else Preprocessing.rescale(1.0 / 255.0))
    if limit is not None:
        ds.train = ds.train.unbatch().take(int(limit)).batch(batch_size)
        ds.num_examples["train"] = min(ds.num_examples.get("train", int(limit)), int(limit))
    scaling = "pixels 0..255 (the model rescales them itself)" if raw else "pixels scaled to [0, 1]"
    ds.source = f"{folder} ({size[0]}x{size[1]} {mode}, {scaling})"
    return ds


def _is_folder(identifier: str) -> bool:
    return Path(identifier).expanduser().is_dir()


register(DatasetLoader("folder", "an image folder path/<class>/<images>", _folder, matches=_is_folder))


# -- .npz arrays ------------------------------------------------------------------------------


def _numbers(array: np.ndarray, key: str, path: Path) -> np.ndarray:
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if array.dtype.kind not in "iuf":
        raise DataError(f"{path}: '{key}' has dtype {array.dtype}; expected numbers "
                        f"({'integer class indices' if key.startswith('y') else 'the model inputs'}).")
    if array.ndim == 0 or len(array) == 0:
        raise DataError(f"{path}: '{key}' is empty (shape {array.shape}).")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise DataError(f"{path}: '{key}' contains NaN or inf; clean or impute it first.")
    return array


def _npz(identifier: str, *, limit: int | None = None, batch_size: int = 128, model: Any = None) -> Dataset:
    path = Path(identifier).expanduser()
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except ValueError as e:
        raise DataError(f"{path}: holds Python objects (pickled arrays), refused; save numeric arrays "
                        f"with np.savez(path, x=x, y=y) ({e})") from e
    except Exception as e:  # zip errors, truncated files
        raise DataError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from e
    for pair in (("x", "y"), ("x_val", "y_val"), ("x_test", "y_test")):
        if (pair[0] in arrays) != (pair[1] in arrays) or (pair[0] == "x" and "x" not in arrays):
            raise DataError(f"{path}: needs the arrays {pair[0]!r} and {pair[1]!r} together; it holds "
                            f"{sorted(arrays)}. Save with np.savez(path, x=x, y=y[, x_val=..., y_val=...]).")
    splits: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    names_ = None
    for split, (kx, ky) in {"train": ("x", "y"), "val": ("x_val", "y_val"), "test": ("x_test", "y_test")}.items():
        if kx not in arrays:
            continue
        x, y = _numbers(arrays[kx], kx, path), _numbers(arrays[ky], ky, path)
        if len(x) != len(y):
            raise DataError(f"{path}: '{kx}' has {len(x)} samples but '{ky}' has {len(y)} labels.")
        labels, _, names_ = to_sparse_labels(y, None, f"{path.name}:{ky}", min_distinct=2 if split == "train" else 1)
        splits[split] = (x, labels)
    x, y = splits["train"]
    if limit is not None and int(limit) < len(y):
        keep = np.sort(stratified_order(y, 0)[: int(limit)])
        x, y = x[keep], y[keep]
    if "val" not in splits:
        order = stratified_order(y, 2)
        n_val = max(1, len(y) // 10)
        val_idx, rest = np.sort(order[:n_val]), np.sort(order[n_val:])
        splits["val"] = (x[val_idx], y[val_idx])
        x, y = x[rest], y[rest]
    splits["train"] = (x, y)
    num_classes = max(int(v[1].max()) for v in splits.values()) + 1
    identity = Preprocessing()
    pipes = {k: make_pipeline(a, b, batch_size=batch_size, preprocessing=identity, shuffle=k == "train")
             for k, (a, b) in splits.items()}
    return Dataset(
        train=pipes["train"], val=pipes.get("val"), test=pipes.get("test"), num_classes=num_classes,
        input_shape=tuple(int(d) for d in x.shape[1:]), class_names=[str(i) for i in range(num_classes)],
        source=f"{path} (arrays as saved)", preprocessing=identity, name=path.stem,
        num_examples={k: len(v[1]) for k, v in splits.items()},
    )


def _is_npz(identifier: str) -> bool:
    return identifier.lower().endswith(".npz") and Path(identifier).expanduser().is_file()


register(DatasetLoader("npz", "an .npz file with x, y (and x_val, y_val)", _npz, matches=_is_npz))


# -- TFDS -------------------------------------------------------------------------------------


def _tfds_installed() -> bool:
    return importlib.util.find_spec("tensorflow_datasets") is not None


def _tfds(identifier: str, *, limit: int | None = None, batch_size: int = 128, model: Any = None) -> Dataset:
    from tf_gpp.data.tfds import from_tfds

    name = identifier.split(":", 1)[1] if identifier.lower().startswith("tfds:") else identifier
    shape = model_input_shape(model) if model is not None else None
    size = (int(shape[0]), int(shape[1])) if shape is not None and len(shape) == 3 and None not in shape[:2] else None
    return from_tfds(name, limit=limit, batch_size=batch_size, image_size=size)


def _is_tfds(identifier: str) -> bool:
    if identifier.lower().startswith("tfds:"):
        return True
    bare = identifier.replace("_", "").replace("/", "").replace(":", "").isalnum() and "." not in identifier
    return bare and _tfds_installed()


register(DatasetLoader("tfds", "a TFDS name (tfds:mnist)", _tfds, matches=_is_tfds))
