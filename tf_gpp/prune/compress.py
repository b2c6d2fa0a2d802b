"""The iterative Grow-Push-Prune driver: push-train -> score -> prune -> fine-tune, in rounds.

Each round (1) optionally trains with the push objective, (2) scores every
channel group with an importance, (3) removes units — either to a MACs/params
target that shrinks geometrically over the rounds (global ranking) or by the
paper's per-group threshold ``eta * std`` with ``eta`` rising — (4) rebuilds
and fine-tunes (optionally distilling from the unpruned model), then
evaluates. It stops when the target is met or accuracy falls more than the
tolerance. Rounds are checkpointed; a run given the same ``checkpoint_dir``
resumes after the last finished round.
"""

from __future__ import annotations

import functools
import json
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tf_gpp.data.intake import TaskInfo, as_training_data, split_fit_arguments
from tf_gpp.errors import DataError, PruningRequestError, UnsupportedModelError
from tf_gpp.graph.dependency import DependencyGraph
from tf_gpp.importance import Importance, get_importance
from tf_gpp.profile import input_shape_from_data, profile
from tf_gpp.prune.distill import Distiller
from tf_gpp.prune.planner import Constraints, group_scores, plan_global, plan_threshold
from tf_gpp.recalibrate import recalibrate_batchnorm
from tf_gpp.surgery import rebuild


@dataclass
class RoundRecord:
    """One round: cost and accuracy of the model it produced."""

    round: int
    params: int
    macs: int
    accuracy: float
    macs_ratio: float
    params_ratio: float
    removed_units: int
    seconds: float
    within_tolerance: bool
    checkpoint: str | None = None


@dataclass
class CompressResult:
    """The outcome: ``model`` (smallest within tolerance, else most accurate), both
    models the paper reports, the base figures and the per-round ``history``."""

    model: keras.Model
    most_accurate: keras.Model
    smallest_within_tolerance: keras.Model | None
    base_accuracy: float
    base_macs: int
    base_params: int
    history: list[RoundRecord] = field(default_factory=list)
    pushed_model: keras.Model | None = None  # after the first push training, before pruning

    def summary(self) -> str:
        lines = [f"{'round':>5} {'params':>10} {'MACs':>13} {'MACs %':>7} {'accuracy':>9}  ok",
                 f"{'base':>5} {self.base_params:>10,} {self.base_macs:>13,} {100.0:>6.1f}% {self.base_accuracy:>9.4f}"]
        for r in self.history:
            lines.append(f"{r.round:>5} {r.params:>10,} {r.macs:>13,} {100 * r.macs_ratio:>6.1f}% "
                         f"{r.accuracy:>9.4f}  {'yes' if r.within_tolerance else 'no'}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "base": {"accuracy": self.base_accuracy, "macs": self.base_macs, "params": self.base_params},
            "history": [asdict(r) for r in self.history],
        }


def _check_model(model: Any) -> DependencyGraph:
    """The model's dependency graph; refuses models ``compress`` cannot train or rebuild."""
    dep = DependencyGraph(model)  # UnsupportedModelError for subclassed models and non-models
    if len(model.outputs) != 1:
        raise UnsupportedModelError(
            f"model {model.name!r} has {len(model.outputs)} outputs; compress trains one classifier "
            "output: build a single-output model for compression."
        )
    for layer in model.layers:
        for v in layer.weights:
            if not np.all(np.isfinite(np.asarray(v))):
                raise UnsupportedModelError(
                    f"weight {v.path!r} of layer {layer.name!r} holds NaN or inf: the model has "
                    "diverged. Retrain it (lower learning rate) or restore a finite checkpoint."
                )
    return dep


def _label_errors(fn: Any) -> Any:
    """Turn TensorFlow's out-of-range label error (a batch past the scanned ones) into a DataError."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except tf.errors.InvalidArgumentError as exc:
            found = re.search(r"label value of (-?\d+) which is outside the valid range of \[0, (\d+)\)", str(exc))
            if found is None:
                raise
            raise DataError(
                f"a batch holds label {found[1]} but the model has {found[2]} classes; labels must be "
                f"class indices in [0, {found[2]}): remap them or give the model {found[2]}+ outputs."
            ) from exc

    return wrapper


class _CosineWithinFit(keras.callbacks.Callback):
    """Adam's learning rate decays from ``learning_rate`` to 0 (cosine) over each ``fit``."""

    def __init__(self, learning_rate: float) -> None:
        super().__init__()
        self.learning_rate = float(learning_rate)
        self.total, self.step = 1, 0

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.total = max(1, int(self.params.get("epochs") or 1) * int(self.params.get("steps") or 1))
        self.step = 0

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        t = min(self.step, self.total) / self.total
        self.model.optimizer.learning_rate.assign(0.5 * self.learning_rate * (1.0 + np.cos(np.pi * t)))
        self.step += 1


def _compile(model: keras.Model, learning_rate: float, task: TaskInfo) -> None:
    task.compile(model, keras.optimizers.Adam(learning_rate))


@_label_errors
def _accuracy(model: keras.Model, data: tf.data.Dataset, task: TaskInfo) -> float:
    _compile(model, 1e-3, task)
    return float(model.evaluate(data, verbose=0, return_dict=True)[task.accuracy_key])


def _save_atomic(model: keras.Model, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".keras")
    os.close(fd)
    model.save(tmp)
    os.replace(tmp, path)


def _write_json_atomic(payload: dict, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=2)
    os.replace(tmp, path)


def _resolve_target(target: float | None, base: int, name: str) -> int | None:
    if target is None:
        return None
    if isinstance(target, bool) or not isinstance(target, int | float | np.number) or not np.isfinite(target) or target <= 0:
        raise PruningRequestError(f"{name}={target!r}: give a fraction of the base model in (0, 1] or an absolute count > 1")
    if target > 1 and target != int(target):
        raise PruningRequestError(
            f"{name}={target}: values above 1 are absolute counts and must be whole numbers; "
            "for a fraction of the base model give a value in (0, 1]"
        )
    return int(target * base) if target <= 1 else int(target)


def compress(
    model: keras.Model,
    train_data: Any,
    validation_data: Any = None,
    *,
    validation_split: float = 0.0,
    target_macs: float | None = None,
    target_params: float | None = None,
    max_accuracy_drop: float = 0.02,
    importance: str | Importance = "gpp_lda",
    push: bool = True,
    push_loss: Any = None,
    strategy: str = "global",
    rounds: int = 4,
    eta: float = 0.5,
    eta_step: float = 0.25,
    push_epochs: int = 2,
    finetune_epochs: int = 2,
    final_finetune_epochs: int | None = None,
    distill: bool = False,
    learning_rate: float = 1e-3,
    lr_schedule: str = "cosine",
    batch_size: int = 64,
    round_to: int = 1,
    min_channels: int = 1,
    ignored_layers: tuple[str, ...] | list[str] = (),
    checkpoint_dir: str | os.PathLike | None = None,
    log_dir: str | os.PathLike | None = None,
    seed: int = 0,
    verbose: int = 1,
    callbacks: list[keras.callbacks.Callback] | None = None,
    recalibrate_steps: int | None = 100,
) -> CompressResult:
    """Compress a classifier with Grow-Push-Prune rounds (see the module docstring).

    Args:
        model: functional or Sequential classifier (one output: logits or softmax).
        train_data, validation_data: ``(x, y)`` arrays or ``tf.data`` datasets of
            ``(x, y)`` batches; labels sparse or one-hot.
        target_macs, target_params: fraction of the base model (<= 1) or absolute
            count; with ``strategy="global"`` at least one is required.
        max_accuracy_drop: tolerated validation accuracy loss (0.02 = 2 points).
        importance: ``"gpp_lda"`` (default: see docs/method.md, ablation), ``"gpp"``, ``"gpp_linear"``, ``"l1"``,
            ``"bn_scale"``, ``"taylor"``, ``"random"`` or an :class:`Importance`.
        push: train with the push objective before each prune (GPP); ``False``
            gives the CVIU paper's LDA-prune.
        strategy: ``"global"`` (ranking to the target) or ``"threshold"`` (per-group
            ``eta * std``, eta raised by ``eta_step`` each round).
        round_to, min_channels, ignored_layers: structural constraints.
        checkpoint_dir: where each round is saved; an interrupted run resumes.
        log_dir: TensorBoard folder for per-round MACs, params and accuracy scalars
            (push terms are logged by a ``keras.callbacks.TensorBoard`` in ``callbacks``).
        final_finetune_epochs: fine-tuning epochs of the last round (``rounds``), whose model is
            the smallest one; ``None``: ``finetune_epochs``.
        lr_schedule: ``"cosine"`` (Adam's rate decays from ``learning_rate`` to 0 within
            every push-training and fine-tuning fit) or ``"constant"``.
        callbacks: extra Keras callbacks for every push-training and fine-tuning fit.
        recalibrate_steps: training batches over which every BatchNormalization's moving
            statistics are re-estimated (:func:`tf_gpp.recalibrate_batchnorm`) after push
            training and after every rebuild + fine-tune, before the model is scored,
            evaluated or checkpointed; ``None`` uses all of ``train_data``, ``0`` turns it off
            (a momentum-0.99 BN barely follows a short fine-tune: without it pruned models
            can be judged, and returned, at chance level).
    """
    if lr_schedule not in ("cosine", "constant"):
        raise PruningRequestError(f"lr_schedule={lr_schedule!r}: choose 'cosine' or 'constant'")
    schedule = [_CosineWithinFit(learning_rate)] if lr_schedule == "cosine" else []
    callbacks = [*schedule, *(callbacks or [])]
    if strategy not in ("global", "threshold"):
        raise PruningRequestError(f"strategy={strategy!r}: choose 'global' or 'threshold'")
    if strategy == "global" and target_macs is None and target_params is None:
        raise PruningRequestError("strategy='global' needs target_macs or target_params (a fraction like 0.3)")
    if rounds < 1:
        raise PruningRequestError(f"rounds={rounds}: must be >= 1")
    for name, value in (("push_epochs", push_epochs), ("finetune_epochs", finetune_epochs),
                        ("final_finetune_epochs", final_finetune_epochs)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise PruningRequestError(f"{name}={value!r}: a whole number of epochs >= 0")
    if recalibrate_steps is not None and (isinstance(recalibrate_steps, bool) or not isinstance(recalibrate_steps, int)
                                          or recalibrate_steps < 0):
        raise PruningRequestError(f"recalibrate_steps={recalibrate_steps!r}: a whole number >= 0 (0: off) or None (all)")

    def recalibrated(m: keras.Model) -> keras.Model:
        return recalibrate_batchnorm(m, train, recalibrate_steps) if recalibrate_steps != 0 else m

    if not 0 <= max_accuracy_drop <= 1:
        raise PruningRequestError(f"max_accuracy_drop={max_accuracy_drop}: a fraction of accuracy in [0, 1]")
    keras.utils.set_random_seed(seed)
    imp = get_importance(importance)
    constraints = Constraints(round_to, min_channels, set(ignored_layers))
    base_dep = _check_model(model)
    x, y, validation_data = split_fit_arguments(train_data, validation_data)  # compress(model, x, y) as fit
    train, val, task = as_training_data(model, x, y, validation_data=validation_data, validation_split=validation_split,
                                        batch_size=batch_size, seed=seed, require_validation=True)
    input_shape = input_shape_from_data(model, train)  # the data's size prices dynamic dimensions
    teacher = keras.models.clone_model(model) if distill else None
    if teacher is not None:
        teacher.set_weights(model.get_weights())

    base = profile(model, input_shape=input_shape)
    t_macs = _resolve_target(target_macs, base.macs, "target_macs")
    t_params = _resolve_target(target_params, base.params, "target_params")
    if strategy == "global" and all(t is None or t >= b for t, b in ((t_macs, base.macs), (t_params, base.params))):
        raise PruningRequestError(
            f"target_macs={target_macs}, target_params={target_params}: the base model "
            f"({base.macs:,} MACs, {base.params:,} params) already meets it, nothing to prune; "
            "give a fraction below 1 (e.g. 0.3) or a count below the base model's"
        )
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    history: list[RoundRecord] = []
    models: dict[int, keras.Model] = {}
    current = rebuild(base_dep, set())  # a copy: the user's model is never trained
    base_copy = current  # nor recompiled: the base accuracy is measured on the copy
    start = 1
    base_acc = None
    if ckpt is not None:
        ckpt.mkdir(parents=True, exist_ok=True)
        state_path = ckpt / "state.json"
        if state_path.exists():
            state = json.loads(state_path.read_text())
            base_acc = state["base_accuracy"]
            history = [RoundRecord(**r) for r in state["history"]]
            for r in history:
                models[r.round] = keras.models.load_model(r.checkpoint)
            if history:
                current = models[history[-1].round]
                start = history[-1].round + 1
            if verbose:
                print(f"[tf_gpp] resuming from {ckpt} after round {start - 1}")
            if state.get("done"):
                start = rounds + 1
    if base_acc is None:
        base_acc = _accuracy(base_copy, val, task)
    if verbose:
        print(f"[tf_gpp] base: {base.params:,} params, {base.macs:,} MACs, accuracy {base_acc:.4f}")

    writer = tf.summary.create_file_writer(str(log_dir)) if log_dir is not None else None
    done = False
    pushed_model = None
    for r in range(start, rounds + 1):
        t0 = time.perf_counter()
        keras.utils.set_random_seed(seed + r)  # per-round seed: a resumed run replays the same round
        if push:
            current = _push_train(current, train, val, push_loss, push_epochs, learning_rate, task,
                                  verbose, callbacks)
            current = recalibrated(current)
            pushed_model = pushed_model or current
        dep = DependencyGraph(current, input_shape=input_shape)
        imp.prepare(current, dep, train if imp.requires_data else None)
        scores = group_scores(dep, imp)
        if strategy == "global":
            frac = r / rounds
            rm = int(base.macs * (t_macs / base.macs) ** frac) if t_macs is not None else None
            rp = int(base.params * (t_params / base.params) ** frac) if t_params is not None else None
            plan = plan_global(dep, scores, constraints, target_macs=rm, target_params=rp)
        else:
            plan = plan_threshold(dep, scores, eta + (r - 1) * eta_step, constraints)
        removed = sum(len(v) for v in plan.values())
        if removed == 0:
            if verbose:
                print(f"[tf_gpp] round {r}: nothing left to remove under the constraints; stopping")
            break
        slim = rebuild(dep, dep.removed_units(plan))
        epochs = finetune_epochs if r < rounds or final_finetune_epochs is None else final_finetune_epochs
        slim = _finetune(slim, teacher, train, epochs, learning_rate, task, verbose, callbacks)
        slim = recalibrated(slim)
        acc = _accuracy(slim, val, task)
        p = profile(slim, input_shape=input_shape)
        rec = RoundRecord(
            round=r, params=p.params, macs=p.macs, accuracy=acc,
            macs_ratio=p.macs / base.macs, params_ratio=p.params / base.params,
            removed_units=removed, seconds=round(time.perf_counter() - t0, 1),
            within_tolerance=acc >= base_acc - max_accuracy_drop,
        )
        models[r] = slim
        current = slim
        met = (t_macs is None or p.macs <= t_macs) and (t_params is None or p.params <= t_params)
        done = (strategy == "global" and met) or not rec.within_tolerance
        if ckpt is not None:
            path = ckpt / f"round_{r}.keras"
            _save_atomic(slim, path)
            rec.checkpoint = str(path)
        history.append(rec)
        if writer is not None:
            with writer.as_default(step=r):
                for key in ("macs", "params", "accuracy", "macs_ratio"):
                    tf.summary.scalar(f"gpp/{key}", getattr(rec, key))
            writer.flush()
        if ckpt is not None:
            _write_json_atomic({"base_accuracy": base_acc, "history": [asdict(h) for h in history],
                                "done": done}, ckpt / "state.json")
        if verbose:
            print(f"[tf_gpp] round {r}/{rounds}: {p.params:,} params, {p.macs:,} MACs "
                  f"({100 * rec.macs_ratio:.1f}% of base), accuracy {acc:.4f} "
                  f"({'within' if rec.within_tolerance else 'beyond'} tolerance), {rec.seconds:.0f}s")
        if done:
            break

    if not history:
        raise PruningRequestError("no round pruned anything: relax the constraints or raise eta/the target")
    best = max(history, key=lambda h: h.accuracy)
    within = [h for h in history if h.within_tolerance]
    smallest = min(within, key=lambda h: h.macs) if within else None
    chosen = smallest or best
    return CompressResult(
        model=models[chosen.round],
        most_accurate=models[best.round],
        smallest_within_tolerance=models[smallest.round] if smallest else None,
        base_accuracy=base_acc,
        base_macs=base.macs,
        base_params=base.params,
        history=history,
        pushed_model=pushed_model,
    )


@_label_errors
def _push_train(model, train, val, push_loss, epochs, lr, task, verbose, callbacks):
    from tf_gpp.push import PushModel, PushSchedule

    if epochs <= 0:
        return model
    pm = PushModel(model, push=push_loss)
    _compile(pm, lr, task)
    pm.fit(train, epochs=epochs, verbose=1 if verbose > 1 else 0, shuffle=False,
           callbacks=[PushSchedule(warmup_epochs=min(1, epochs - 1)), *(callbacks or [])])
    return pm.strip()


@_label_errors
def _finetune(slim, teacher, train, epochs, lr, task, verbose, callbacks):
    if epochs <= 0:
        return slim
    if teacher is not None and not task.probabilities and task.kind != "binary":
        trainer = Distiller(slim, teacher)
        _compile(trainer, lr, task)
        trainer.fit(train, epochs=epochs, verbose=1 if verbose > 1 else 0, shuffle=False, callbacks=callbacks)
        return slim
    _compile(slim, lr, task)
    slim.fit(train, epochs=epochs, verbose=1 if verbose > 1 else 0, shuffle=False, callbacks=callbacks)
    return slim
