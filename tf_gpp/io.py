"""Atomic file writes: a reader never sees a half-written file, a crash leaves the old one.

Every file tf_gpp writes (models, ``.tflite`` files, JSON state, reports) goes through
:func:`write_atomic` or :func:`save_model_atomic`: the content is written to a hidden
temporary sibling, flushed to disk, then moved over the target with ``os.replace``
(atomic on POSIX and Windows within one file system).
"""

from __future__ import annotations

import json
import os
import re
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["RoundCheckpoint", "recipe_json", "replace_atomic", "save_model_atomic", "write_atomic",
           "write_json_atomic"]


def recipe_json(options: dict[str, Any]) -> dict[str, Any]:
    """``options`` as they read back from JSON, objects by their ``repr`` without the memory
    address (stable across processes): what a checkpoint records and compares."""
    def stable(obj: Any) -> str:
        return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(obj))

    return json.loads(json.dumps(options, default=stable))


def replace_atomic(path: str | os.PathLike, write: Callable[[str], Any], suffix: str = "") -> Path:
    """Call ``write(tmp_path)`` on a temporary sibling of ``path``, then move it onto ``path``.

    For writers that take a file name (``model.save``, ``fig.savefig``); ``suffix`` is the
    temporary file's extension when the writer looks at it (``".keras"``, ``".png"``). The
    parent folder is created; the temporary file is removed if ``write`` fails.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = str(out.parent / f".{out.name}.{uuid.uuid4().hex[:12]}.tmp{suffix}")
    # 0o666: the process umask decides the final permissions, as for open()
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        write(tmp)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` (bytes, or text as UTF-8) to ``path`` atomically; returns the path."""
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())

    return replace_atomic(path, write)


def write_json_atomic(path: str | os.PathLike, payload: Any, **dumps_kwargs: Any) -> Path:
    """``payload`` as indented JSON (``json.dumps`` options in ``dumps_kwargs``), atomically."""
    dumps_kwargs.setdefault("indent", 2)
    return write_atomic(path, json.dumps(payload, **dumps_kwargs))


def save_model_atomic(model: Any, path: str | os.PathLike) -> Path:
    """``model.save(path)`` (a ``.keras`` file) atomically; returns the path."""
    return replace_atomic(path, model.save, suffix=".keras")


class RoundCheckpoint:
    """A folder holding an iterative run: one model file per round and a JSON state file.

    :meth:`save` writes the round's model files first and the state last, each atomically,
    so an interruption at any point leaves a state whose named models all exist; a run
    given the same folder reads :meth:`load` and continues after the last saved round.
    ``compress`` (``state.json`` + ``round_<r>.keras``) and the grower (``grown.json`` +
    ``grown_round<r>.keras``) both keep their rounds this way.

    Args:
        folder: the checkpoint folder (created on the first :meth:`save`).
        state_name: file name of the state.
        stale: a glob of model files no longer needed once a newer state names others
            (removed after each save unless the state names them); ``None`` keeps all.
    """

    def __init__(self, folder: str | os.PathLike, state_name: str = "state.json", stale: str | None = None) -> None:
        self.folder = Path(folder)
        self.state_name = state_name
        self.stale = stale

    @property
    def state_path(self) -> Path:
        return self.folder / self.state_name

    def path(self, name: str) -> Path:
        """Where the model file ``name`` of this checkpoint lives."""
        return self.folder / name

    def load(self) -> dict | None:
        """The saved state, or ``None`` when the folder holds none."""
        if not self.state_path.exists():
            return None
        return json.loads(self.state_path.read_text())

    def mismatch(self, state: dict, recipe: dict) -> str | None:
        """How ``state``'s recorded ``"recipe"`` (the options that decide the run) differs from
        ``recipe`` (``"name=<there> there, <now> now; ..."``), or ``None`` when they match. A state
        written before recipes were recorded matches, with a warning that it was not checked."""
        saved = state.get("recipe")
        if saved is None:
            warnings.warn(f"{self.folder} was written by an older tf_gpp that did not record its options; "
                          "resuming without checking that they match this call's", UserWarning, stacklevel=3)
            return None
        recipe = recipe_json(recipe)
        if saved == recipe:
            return None
        return "; ".join(f"{k}={saved.get(k)!r} there, {recipe.get(k)!r} now"
                         for k in sorted(set(saved) | set(recipe)) if saved.get(k) != recipe.get(k))

    def load_model(self, name: str | os.PathLike) -> Any:
        """The model saved as ``name``: a bare file name is looked up in the folder, a path
        (with a folder part) is used as it is."""
        import keras

        path = Path(name)
        with warnings.catch_warnings():
            # a round's model is saved compiled for evaluation only (no optimizer slots): Keras
            # warns that it skips loading the slots it would build; nothing is lost
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            return keras.models.load_model(path if path.parent != Path() else self.path(path.name))

    def save(self, state: dict, models: dict[str, Any] | None = None) -> dict[str, Path]:
        """Write ``models`` (``{file name: model}``), then ``state``; return the models' paths."""
        self.folder.mkdir(parents=True, exist_ok=True)
        paths = {name: save_model_atomic(model, self.path(name)) for name, model in (models or {}).items()}
        write_json_atomic(self.state_path, state)
        if self.stale is not None:
            named = {p.name for p in paths.values()} | {Path(v).name for v in _strings(state)}
            for old in self.folder.glob(self.stale):
                if old.name not in named:
                    old.unlink()
        return paths


def _strings(obj: Any) -> list[str]:
    """Every string value in a JSON-like structure (the state's model references)."""
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, dict):
        return [s for v in obj.values() for s in _strings(v)]
    if isinstance(obj, list | tuple):
        return [s for v in obj for s in _strings(v)]
    return []
