"""Grow -> push -> prune in one call: grow an Inception net, then :func:`tf_gpp.compress` it.

This module sits above both rooms it joins: it uses :mod:`tf_gpp.grow` and
:mod:`tf_gpp.prune`, and neither imports it (nor each other).

:func:`grow_push_prune` runs :class:`tf_gpp.grow.Grower` on the data and hands a
copy of the grown model to :func:`tf_gpp.compress` (push-train, score, prune,
fine-tune, in rounds) on the same pipelines. :func:`compress_grown` is the
second half alone, for a :class:`GrowResult` obtained otherwise.

With ``checkpoint_dir`` the grown net is saved (``grown.keras`` + ``grown.json``)
and the compress rounds go to ``checkpoint_dir/compress``; calling again with the
same directory skips growing and resumes compression after its last round.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras

from tf_gpp.data.arrays import to_sparse_labels, validate_inputs
from tf_gpp.data.intake import as_dataset, as_tf_data
from tf_gpp.errors import DataError, PruningRequestError
from tf_gpp.grow.checks import resolve_data, unpack_bundle
from tf_gpp.grow.cost import Cost, model_cost
from tf_gpp.grow.errors import GrowError
from tf_gpp.grow.grower import Grower, GrowResult, load_growth
from tf_gpp.prune.compress import CompressResult, compress
from tf_gpp.prune.config import CompressConfig

__all__ = ["DEFAULT_TARGET_MACS", "GPPResult", "as_pipelines", "compress_grown", "grow_push_prune"]

#: ``compress`` arguments the pipeline supplies itself.
_COMPRESS_RESERVED = ("model", "train_data", "validation_data", "config")
#: ``target_macs`` used when ``compress_kwargs`` names no target (half the grown net's MACs).
DEFAULT_TARGET_MACS = 0.5
#: Batch size of pipelines built from ``(x, y)`` arrays (``compress``'s default).
DEFAULT_BATCH_SIZE = 64



@dataclass
class GPPResult:
    """Outcome of :func:`grow_push_prune`.

    Attributes:
        grown: the growth result (grown model, per-step history, spec). Its model
            is left as growing produced it: compression works on a copy.
        compressed: the :class:`tf_gpp.CompressResult` of compressing the grown net.
        seconds: wall time of the ``"grow"`` and ``"compress"`` stages.
    """

    grown: GrowResult
    compressed: CompressResult
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def model(self) -> keras.Model:
        """The final slim model (``compressed.model``)."""
        return self.compressed.model

    def _final(self) -> tuple[Cost, float | None]:
        cost = model_cost(self.model)
        for r in self.compressed.history:
            if (r.params, r.macs) == (cost.params, cost.macs):
                return cost, r.accuracy
        return cost, None

    def summary(self) -> str:
        """Growth steps, compression rounds and a closing line grown -> final."""
        cost, acc = self._final()
        g = self.grown
        acc_text = "?" if acc is None else f"{acc:.4f}"
        return "\n".join([
            g.summary(),
            "[compress]",
            self.compressed.summary(),
            f"[gpp] {g.spec.model_name}: {g.cost.params:,} -> {cost.params:,} params, "
            f"{g.cost.macs:,} -> {cost.macs:,} MACs ({100 * cost.macs / g.cost.macs:.1f}%), "
            f"val_accuracy {self.compressed.base_accuracy:.4f} -> {acc_text}",
        ])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the grown net and its history, the compress rounds, the final model."""
        cost, acc = self._final()
        g = self.grown
        return {
            "grown": {
                "name": g.spec.model_name, "params": g.cost.params, "macs": g.cost.macs,
                "val_accuracy": g.val_accuracy, "stop_reason": g.stop_reason,
                "spec": g.spec.to_dict(), "history": g.history,
            },
            "compressed": self.compressed.to_dict(),
            "final": {
                "params": cost.params, "macs": cost.macs, "val_accuracy": acc,
                "params_ratio": cost.params / g.cost.params, "macs_ratio": cost.macs / g.cost.macs,
            },
            "seconds": dict(self.seconds),
        }


# -- inputs ------------------------------------------------------------------------------


def _is_array_pair(data: Any) -> bool:
    return (
        isinstance(data, tuple | list) and len(data) == 2
        and not hasattr(data, "element_spec") and not hasattr(data[0], "element_spec")
    )


def _pipeline_from_arrays(
    data: Any, what: str, num_classes: int | None, batch_size: int, train: bool, seed: int
) -> tuple[Any, int]:
    """Arrays through the data intake; labels as class indices (grow trains with sparse
    cross-entropy), ``(n, H, W)`` images get a channel axis."""
    try:
        y, classes, _ = to_sparse_labels(data[1], num_classes, "y")
        x = validate_inputs(data[0], "x")
        ds = as_dataset((x, y), batch_size=batch_size, shuffle=train, seed=seed, what=what)
    except DataError as e:
        raise DataError(f"{what}: {e}") from None
    return ds, classes


def as_pipelines(
    train_data: Any,
    val_data: Any | None,
    input_shape: Any | None = None,
    num_classes: int | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
) -> tuple[Any, Any, Any, int | None]:
    """``(train, val, input_shape, num_classes)`` with train/val as ``tf.data`` pipelines.

    Accepts a :class:`tf_gpp.data.Dataset` bundle (its ``.train``/``.val`` and
    metadata), ``(x, y)`` arrays (validated; batched, the training split shuffled
    every epoch; inputs used as given) or ``tf.data`` datasets of ``(x, y)`` batches
    (used as they are; a PyDataset or generator is read into one by
    :func:`tf_gpp.data.as_tf_data`, so grow and compress share it). Shapes and labels are
    checked later by ``grow``.
    """
    train_data, val_data, input_shape, num_classes = unpack_bundle(
        train_data, val_data, input_shape, num_classes
    )
    train_data, val_data = as_tf_data(train_data, "train_data"), as_tf_data(val_data, "val_data")  # read once
    if _is_array_pair(train_data):
        train_data, inferred = _pipeline_from_arrays(
            train_data, "train_data", num_classes, batch_size, True, seed
        )
        num_classes = num_classes if num_classes is not None else inferred
    if _is_array_pair(val_data):
        val_data, _ = _pipeline_from_arrays(val_data, "val_data", num_classes, batch_size, False, seed)
    return train_data, val_data, input_shape, num_classes


def _check_grow_kwargs(grow_kwargs: dict[str, Any] | None) -> dict[str, Any]:
    if grow_kwargs is None:
        return {}
    if not isinstance(grow_kwargs, dict):
        raise GrowError(f"grow_kwargs must be a dict of grow() options, got {type(grow_kwargs).__name__}.")
    params = inspect.signature(Grower.__init__).parameters
    valid = sorted(p for p in params if p not in ("self", "input_shape", "num_classes"))
    for key in grow_kwargs:
        if key in ("input_shape", "num_classes"):
            raise GrowError(f"grow_kwargs may not set {key!r}: pass it to grow_push_prune itself.")
        if key not in params:
            raise GrowError(f"grow_kwargs: unknown option {key!r}; valid options are {valid}.")
    return dict(grow_kwargs)


def _compress_config(
    compress_kwargs: dict[str, Any] | CompressConfig | None, checkpoint_dir: str | os.PathLike | None
) -> CompressConfig:
    """``compress_kwargs`` as a validated :class:`CompressConfig` (checked before anything
    trains, by the same code and with the same messages as :func:`tf_gpp.compress`), with
    ``target_macs=DEFAULT_TARGET_MACS`` when the global strategy is given no target."""
    if compress_kwargs is None:
        compress_kwargs = {}
    if isinstance(compress_kwargs, CompressConfig):
        cfg = compress_kwargs
    else:
        if not isinstance(compress_kwargs, dict):
            raise PruningRequestError(
                f"compress_kwargs must be a dict of tf_gpp.compress options or a CompressConfig, got "
                f"{type(compress_kwargs).__name__}."
            )
        for key in compress_kwargs:
            if key in _COMPRESS_RESERVED:
                raise PruningRequestError(
                    f"compress_kwargs may not set {key!r}: the pipeline passes the grown model and data.")
        cfg = CompressConfig.from_kwargs(**compress_kwargs)
    if checkpoint_dir is not None and cfg.checkpoint_dir is not None:
        raise PruningRequestError(
            "Give checkpoint_dir either to grow_push_prune (compress rounds go to <dir>/compress) "
            "or in compress_kwargs, not both."
        )
    if cfg.strategy == "global" and cfg.target_macs is None and cfg.target_params is None:
        cfg = dataclasses.replace(cfg, target_macs=DEFAULT_TARGET_MACS)
    return cfg.validate()


def _verbose(cfg: CompressConfig, compress_kwargs: Any, verbose: int) -> CompressConfig:
    """``verbose`` unless the caller's compress options set their own."""
    if isinstance(compress_kwargs, CompressConfig) or (isinstance(compress_kwargs, dict) and "verbose" in compress_kwargs):
        return cfg
    return dataclasses.replace(cfg, verbose=verbose)


def _check_target_below(grown: GrowResult, cfg: CompressConfig) -> None:
    """An absolute target the grown net already meets would prune nothing."""
    for key, have in (("target_macs", grown.cost.macs), ("target_params", grown.cost.params)):
        target = getattr(cfg, key)
        if target is not None and target > 1 and target >= have:
            err = GrowError(
                f"compress_kwargs[{key!r}]={target:,} is not below the grown net "
                f"{grown.spec.model_name} ({have:,}): nothing to prune. Use a fraction such as 0.5 "
                "or a smaller count; the grown net is attached to this error as .grown."
            )
            err.grown = grown  # type: ignore[attr-defined]
            raise err


def _copy(model: keras.Model) -> keras.Model:
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


# -- the pipeline ------------------------------------------------------------------------


def compress_grown(
    grown: GrowResult,
    train_data: Any,
    val_data: Any,
    *,
    compress_kwargs: dict[str, Any] | CompressConfig | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    verbose: int = 1,
) -> GPPResult:
    """Push and prune ``grown.model`` (a copy) with :func:`tf_gpp.compress`.

    ``train_data``/``val_data`` as for ``compress``: ``tf.data`` datasets or
    ``(x, y)`` arrays. ``compress_kwargs`` as for :func:`grow_push_prune`; the
    compress rounds are checkpointed to ``checkpoint_dir`` itself.
    """
    cfg = _verbose(_compress_config(compress_kwargs, checkpoint_dir), compress_kwargs, verbose)
    if checkpoint_dir is not None:
        cfg = dataclasses.replace(cfg, checkpoint_dir=checkpoint_dir)
    _check_target_below(grown, cfg)
    t0 = time.perf_counter()
    compressed = compress(_copy(grown.model), train_data, val_data, config=cfg)
    return GPPResult(grown=grown, compressed=compressed,
                     seconds={"compress": round(time.perf_counter() - t0, 1)})


def grow_push_prune(
    train_data: Any,
    val_data: Any | None = None,
    input_shape: Any | None = None,
    num_classes: int | None = None,
    *,
    grow_kwargs: dict[str, Any] | None = None,
    compress_kwargs: dict[str, Any] | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    verbose: int = 1,
) -> GPPResult:
    """Grow an Inception classifier, then push and prune it: Grow-Push-Prune in one call.

    Args:
        train_data: a :class:`tf_gpp.data.Dataset` (its ``.train``, and by default
            its ``.val``, ``input_shape`` and ``num_classes``), ``(x, y)`` arrays
            (sparse or one-hot labels) or a ``tf.data.Dataset`` of ``(x, y)`` batches.
        val_data: validation data in the same forms (required unless the bundle
            has a ``val`` split); growth steps are accepted and compression
            tolerance judged on it.
        input_shape, num_classes: as for :func:`tf_gpp.grow.grow` (inferred from
            a bundle, labelled arrays or the start spec when omitted).
        grow_kwargs: options of :func:`tf_gpp.grow.grow` / :class:`Grower`
            (``start``, ``max_params``, ``max_macs``, ``max_rounds``, ``min_delta``,
            ``epochs_per_round``, ``optimizer``, ``compile_kwargs``, ``seed``, ...).
        compress_kwargs: options of :func:`tf_gpp.compress`, as a dict or a
            :class:`~tf_gpp.prune.CompressConfig` (``target_macs``,
            ``target_params``, ``importance``, ``push``, ``rounds``, ``push_epochs``,
            ``finetune_epochs``, ``max_accuracy_drop``, ``batch_size``, ...). Targets
            <= 1 are fractions of the grown net; without a target (global
            strategy) ``target_macs=0.5``.
        checkpoint_dir: saves the grown net and the compress rounds; a second call
            with the same directory skips growing and resumes compression.
        verbose: 0 silent, 1 one line per growth step and compress round, 2 also
            per-epoch lines (overridden by ``verbose`` in either kwargs dict).

    Returns:
        :class:`GPPResult`: ``.grown``, ``.compressed``, ``.model`` (the slim model),
        ``.summary()``, ``.to_dict()``.

    Raises:
        GrowError: bad ``grow_kwargs`` (checked before any training), an impossible growth
            budget, input too small, num_classes < 2, an absolute target the grown net
            already meets, or a checkpoint of another task.
        PruningRequestError: bad ``compress_kwargs``, checked before any training by
            :meth:`CompressConfig.validate` (the same checks and messages as ``compress``).
        DataError: data that is not single-label image classification data.
    """
    gkw = _check_grow_kwargs(grow_kwargs)
    cfg = _verbose(_compress_config(compress_kwargs, checkpoint_dir), compress_kwargs, verbose)
    gkw.setdefault("verbose", verbose)
    batch_size = cfg.batch_size
    seed = gkw.get("seed") if gkw.get("seed") is not None else cfg.seed
    train, val, input_shape, num_classes = as_pipelines(
        train_data, val_data, input_shape, num_classes, batch_size=batch_size, seed=seed
    )
    grower = Grower(input_shape, num_classes, **gkw)  # option errors before any data work

    folder = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if folder is not None and grower.checkpoint_dir is None:
        grower.checkpoint_dir = folder  # growth rounds are checkpointed there too
    saved = load_growth(folder, grower.recipe()) if folder is not None else None
    grown = saved[0] if saved is not None and saved[1].get("done", True) else None
    t0 = time.perf_counter()
    if grown is None:
        grown = grower.run(train, val)  # resumes an interrupted growth from the folder
    else:
        spec = grown.spec
        _, _, shape, classes = resolve_data(
            train, val, input_shape if input_shape is not None else spec.input_shape,
            num_classes if num_classes is not None else spec.num_classes,
        )
        if tuple(shape) != spec.input_shape or classes != spec.num_classes:
            raise GrowError(
                f"checkpoint_dir {folder} holds {spec.model_name} for input {spec.input_shape} and "
                f"{spec.num_classes} classes, but the data has {tuple(shape)} and {classes}: "
                "use another checkpoint_dir."
            )
        if verbose:
            print(f"[gpp] resuming: grown {spec.model_name} loaded from {folder}", flush=True)
    grow_seconds = round(time.perf_counter() - t0, 1)

    result = compress_grown(
        grown, train, val, compress_kwargs=cfg,
        checkpoint_dir=folder / "compress" if folder is not None else None, verbose=verbose,
    )
    result.seconds = {"grow": grow_seconds, **result.seconds}
    if verbose:
        cost, acc = result._final()
        acc_text = "?" if acc is None else f"{acc:.4f}"
        print(
            f"[gpp] {grown.spec.model_name} {grown.cost.macs:,} -> {cost.macs:,} MACs, "
            f"{grown.cost.params:,} -> {cost.params:,} params, val_accuracy "
            f"{result.compressed.base_accuracy:.4f} -> {acc_text}", flush=True,
        )
    return result
