"""The iterative compression driver: [push-train ->] score -> prune -> fine-tune, in rounds.

``compress`` is a short loop over the public parts: a :class:`~tf_gpp.prune.Pruner` does each
round's score -> plan -> rebuild with a :mod:`schedule <tf_gpp.prune.schedules>`
(:class:`~tf_gpp.prune.schedules.Geometric` to a MACs/params target for ``strategy="global"``,
the paper's :class:`~tf_gpp.prune.schedules.Threshold` ``eta * std`` otherwise); before it,
optionally, push training (:class:`~tf_gpp.PushModel`); after it fine-tuning (optionally
distilling from the unpruned model) and BatchNorm re-estimation
(:func:`~tf_gpp.recalibrate_batchnorm`), then evaluation. It stops when the target is met or
accuracy falls more than ``max_accuracy_drop`` (only when it is set: by default every round runs
and the target is reached, as tfmot's and Torch-Pruning's targets are). Options live in one validated
:class:`~tf_gpp.prune.config.CompressConfig`. Rounds are checkpointed
(:class:`tf_gpp.io.RoundCheckpoint`); a run given the same ``checkpoint_dir`` resumes after
the last finished round.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import re
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tf_gpp.data.intake import TaskInfo, as_training_data, split_fit_arguments
from tf_gpp.errors import DataError, PruningRequestError, UnsupportedModelError
from tf_gpp.graph.dependency import DependencyGraph
from tf_gpp.importance import Importance, get_importance
from tf_gpp.io import RoundCheckpoint
from tf_gpp.profile import input_shape_from_data, profile
from tf_gpp.prune.config import PUSH_WARMUP_SHARE, CompressConfig
from tf_gpp.prune.planner import validate_ignored_layers
from tf_gpp.prune.pruner import Pruner
from tf_gpp.prune.schedules import Cost, resolve_target
from tf_gpp.push import PushModel, PushSchedule
from tf_gpp.recalibrate import batchnorm_layers, recalibrate_batchnorm
from tf_gpp.surgery import frozen_pruned_layers, frozen_pruned_message, rebuild, unfreeze_layers
from tf_gpp.training import Trainer

__all__ = ["CompressConfig", "CompressResult", "RoundRecord", "compress"]


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
    within_tolerance: bool | None  # None: no max_accuracy_drop was set
    checkpoint: str | None = None


#: a returned model this far below the base accuracy is reported (summary and a warning)
REPORTED_GAP = 0.02


@dataclass
class CompressResult:
    """The outcome, the base figures and the per-round ``history``.

    ``model`` is the last round's (the one at the target) by default; with ``max_accuracy_drop``
    set, it is the smallest model within tolerance, else the most accurate one. Both models the
    CVIU paper reports are kept: ``most_accurate`` and ``smallest_within_tolerance`` (``None``
    when no tolerance was set or no round stayed within it).
    """

    model: keras.Model
    most_accurate: keras.Model
    smallest_within_tolerance: keras.Model | None
    base_accuracy: float
    base_macs: int
    base_params: int
    history: list[RoundRecord] = field(default_factory=list)
    pushed_model: keras.Model | None = None  # after the first push training, before pruning
    chosen_round: int | None = None  # the round whose model is ``model``
    target_met: bool | None = None  # None: no MACs/params target (strategy="threshold")

    @property
    def chosen(self) -> RoundRecord | None:
        """The record of the returned ``model``."""
        return next((r for r in self.history if r.round == self.chosen_round), None)

    def gap_note(self) -> str | None:
        """A sentence when the returned model is more than 2 points below the base (else None),
        naming the options that trade size or time for accuracy."""
        c = self.chosen
        if c is None or self.base_accuracy - c.accuracy <= REPORTED_GAP:
            return None
        return (f"the returned model (round {c.round}, {100 * c.macs_ratio:.1f}% MACs) is "
                f"{100 * (self.base_accuracy - c.accuracy):.1f} points below the base accuracy "
                f"({c.accuracy:.4f} vs {self.base_accuracy:.4f}). To trade for accuracy: more fine-tuning "
                "(finetune_epochs, final_finetune_epochs, min_finetune_steps), more rounds, a milder "
                "target_macs/target_params, or max_accuracy_drop=0.02 to return the smallest round within "
                "2 points (result.most_accurate is the most accurate round).")

    def summary(self) -> str:
        lines = [f"{'round':>5} {'params':>10} {'MACs':>13} {'MACs %':>7} {'accuracy':>9}  ok",
                 f"{'base':>5} {self.base_params:>10,} {self.base_macs:>13,} {100.0:>6.1f}% {self.base_accuracy:>9.4f}"]
        for r in self.history:
            ok = "-" if r.within_tolerance is None else "yes" if r.within_tolerance else "no"
            mark = "  <- model" if r.round == self.chosen_round else ""
            lines.append(f"{r.round:>5} {r.params:>10,} {r.macs:>13,} {100 * r.macs_ratio:>6.1f}% "
                         f"{r.accuracy:>9.4f}  {ok}{mark}")
        if self.target_met is False:
            lines.append("target not reached: the constraints left nothing more to remove")
        note = self.gap_note()
        if note:
            lines.append("note: " + note)
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "base": {"accuracy": self.base_accuracy, "macs": self.base_macs, "params": self.base_params},
            "history": [asdict(r) for r in self.history],
            "chosen_round": self.chosen_round,
            "target_met": self.target_met,
        }


def compress(model: keras.Model, train_data: Any, validation_data: Any = None, *,
             config: CompressConfig | None = None, **options: Any) -> CompressResult:
    """Compress a classifier with Grow-Push-Prune rounds (see the module docstring).

    ``options`` are those of :class:`~tf_gpp.prune.config.CompressConfig` (their defaults are
    in this function's signature); with ``config=`` they replace its values.

    What it trains with: the classifier output with cross-entropy for its labels (sparse,
    one-hot or binary; from logits or probabilities as the output is), other outputs with the
    model's own compiled losses, half of it distilled from the unpruned model's logits
    (``distill``), with ``optimizer`` (Adam by default) at ``learning_rate``, decayed to 0 within
    each fit (``lr_schedule``), all through one :class:`~tf_gpp.training.Trainer`. The model's
    compiled optimizer is not reused: the recipe was measured with Adam.

    Args:
        model: functional or Sequential classifier (logits or softmax, or a binary
            classifier's single unit; a multi-output model with ``output=`` naming the classifier).
        train_data, validation_data: any form ``model.fit`` takes (``(x, y)`` arrays,
            ``tf.data`` datasets, ``compress(model, x, y, validation_split=...)``).
        output: the classifier output of a multi-output model (labels: a dict by output name or
            a list in output order). It is scored, distilled and drives the importance; the
            other outputs train with the model's own compiled losses (compile it first).
        target_macs, target_params: fraction of the base model (<= 1) or absolute
            count; required unless ``strategy="threshold"``.
        max_accuracy_drop: ``None`` (default): every round runs and the target is reached; the
            returned model is the last round's. A fraction (0.02 = 2 points): the run stops after
            the first round that falls more than that below the base validation accuracy, and
            returns the smallest round within it (else the most accurate one).
        importance: a name of :func:`tf_gpp.importance.get` (``"taylor"``, the default, measured
            best in docs/method.md §9; ``"gpp"``, the CVIU paper's pipeline: Fisher utility, top-M'
            final neurons, per-image deconv trace; ``"gpp_lda"``, ``"gpp_grad"``, ``"gpp_linear"``,
            ``"l1"``, ``"bn_scale"``, ``"random"``, or one registered) or an :class:`Importance`.
        push: a push phase before round 1: ``push_epochs`` of training with the push objective
            (:class:`~tf_gpp.PushLoss`, ``push_loss``), its weights ramped from 0 over the first
            half of the phase, distilled from the unpruned model when ``distill`` is on; its epochs
            come on top of fine-tuning, never out of it. Off by default (docs/method.md §7).
        push_loss: the :class:`~tf_gpp.PushLoss` pushed with; ``None``: ``PushLoss()``.
        push_every_round: also push ``push_epochs`` before every later round (the papers
            alternate push and prune), on the pruned model; ``False`` (default): push once.
        push_epochs, finetune_epochs: epochs of the push phase (only with ``push=True``) and of
            fine-tuning per round.
        distill: fine-tune against the unpruned model's logits as well as the labels (on by
            default: it measured better for every criterion; logits classifiers only).
        distill_alpha, distill_temperature: the distillation's share of the loss and its
            softmax temperature (``(1-alpha) * task + alpha * T^2 * KL``).
        strategy: ``"global"`` (ranking to the target, each group's scores over their mean),
            ``"per_layer"`` (the CVIU per-group ``eta * std`` rule, with the one ``eta`` that
            meets each round's target: :class:`~tf_gpp.prune.schedules.PerLayerThreshold`) or
            ``"threshold"`` (per-group ``eta * std``, eta raised by ``eta_step`` each round, no
            size target).
        round_to, min_channels, ignored_layers: structural constraints.
        max_pruning_ratio: the largest share of any layer's width (in ``model``) that may go over
            all rounds: the default ``0.9`` keeps at least 10% of every layer (it measured better
            than no limit on 3 of 4 specialisation cells, docs/method.md §10a); ``1``: no limit.
        checkpoint_dir: where each round is saved; an interrupted run resumes.
        log_dir: TensorBoard folder for per-round MACs, params and accuracy scalars
            (push terms are logged by a ``keras.callbacks.TensorBoard`` in ``callbacks``).
        final_finetune_epochs: fine-tuning epochs of the last round (``rounds``), whose model is
            the one returned; ``None`` (default): 4 x ``finetune_epochs`` (16), the recovery recipe
            that measured best (docs/method.md §10).
        min_finetune_steps: a floor in optimizer steps for every fine-tuning fit: its epochs are
            raised to reach it, so a small dataset (a few batches per epoch) is not under-trained
            (0: off).
        optimizer: what every push-training and fine-tuning fit trains with: a Keras optimizer
            name (``"adam"``, the default, ``"sgd"``, ``"adamw"``, ...), a config dict
            (``{"class_name": "SGD", "config": {"momentum": 0.9}}``) or an instance, a template
            copied for every fit (never trained nor changed). Its learning rate is
            ``learning_rate`` (a warning says so when the template states another one).
        lr_schedule: ``"cosine"`` (the rate decays from ``learning_rate`` to 0 within
            every push-training and fine-tuning fit) or ``"constant"``.
        callbacks: extra Keras callbacks for every push-training and fine-tuning fit.
        recalibrate_steps: training batches over which every BatchNormalization's moving
            statistics are re-estimated (:func:`tf_gpp.recalibrate_batchnorm`) after push
            training and after every rebuild + fine-tune, before the model is scored,
            evaluated or checkpointed; ``None`` uses all of ``train_data``, ``0`` turns it off
            (a momentum-0.99 BN barely follows a short fine-tune: without it pruned models
            can be judged, and returned, at chance level). Before round 1 the copy of the
            user's model is re-estimated too, and kept so only if its validation accuracy is
            not lower (round 1 then scores, and distils from, the better-calibrated model).
        unfreeze_pruned: layers with ``trainable=False`` (a frozen backbone) that a round
            prunes are made trainable for fine-tuning, BatchNormalization excepted (it stays
            frozen, in inference mode: the Keras transfer-learning recipe); a warning names
            them. ``False`` leaves them frozen (and warns that their loss is not recovered).
    """
    cfg = CompressConfig.from_kwargs(config, **options).validate()
    keras.utils.set_random_seed(cfg.seed)
    base_dep = _check_model(model, cfg.push)
    validate_ignored_layers(base_dep, cfg.ignored_layers)  # a typo is refused before any training
    x, y, validation_data = split_fit_arguments(train_data, validation_data)  # compress(model, x, y) as fit
    train, val, task = as_training_data(model, x, y, validation_data=validation_data,
                                        validation_split=cfg.validation_split, batch_size=cfg.batch_size,
                                        seed=cfg.seed, output=cfg.output, require_validation=True)
    input_shape = input_shape_from_data(model, train)  # the data's size prices dynamic dimensions
    base = profile(model, input_shape=input_shape)
    sized = cfg.sized
    target = Cost(macs=resolve_target(cfg.target_macs, base.macs, "target_macs"),
                  params=resolve_target(cfg.target_params, base.params, "target_params"))
    if sized and all(t is None or t >= b for t, b in ((target.macs, base.macs), (target.params, base.params))):
        raise PruningRequestError(
            f"target_macs={cfg.target_macs}, target_params={cfg.target_params}: the base model "
            f"({base.macs:,} MACs, {base.params:,} params) already meets it, nothing to prune; "
            "give a fraction below 1 (e.g. 0.3) or a count below the base model's"
        )
    train_kw = _Training(cfg, task, train)
    teacher = _copy(model) if cfg.distill else None
    pruner = Pruner(rebuild(base_dep, set()),  # a copy: the user's model is never trained nor recompiled
                    _importance_for(cfg.importance, task), cfg.constraints().with_base(base_dep), input_shape=input_shape,
                    recalibrate_steps=0, batch_size=cfg.batch_size, base=Cost(params=base.params, macs=base.macs))
    sched = cfg.schedule()

    ckpt = RoundCheckpoint(cfg.checkpoint_dir) if cfg.checkpoint_dir is not None else None
    recipe = {**cfg.recipe(), "base_macs": base.macs, "base_params": base.params}
    history, models, base_acc, done = _resume(ckpt, pruner, recipe, cfg.verbose)
    start = cfg.rounds + 1 if done else (history[-1].round + 1 if history else 1)
    if base_acc is None:
        base_acc, teacher = _base_accuracy(train_kw, pruner, val, teacher)
    if cfg.verbose:
        print(f"[tf_gpp] base: {base.params:,} params, {base.macs:,} MACs, accuracy {base_acc:.4f}")

    writer = tf.summary.create_file_writer(str(cfg.log_dir)) if cfg.log_dir is not None else None
    pushed_model = None
    warned = False
    for r in range(start, cfg.rounds + 1):
        t0 = time.perf_counter()
        keras.utils.set_random_seed(cfg.seed + r)  # per-round seed: a resumed run replays the same round
        if cfg.push and (r == 1 or cfg.push_every_round):  # the push phase, on top of fine-tuning
            pruner.continue_from(train_kw.recalibrated(train_kw.push(pruner.model, teacher)))
            pushed_model = pushed_model or pruner.model
        step = pruner.step(train, target_macs=target.macs if sized else None,
                           target_params=target.params if sized else None, schedule=sched)
        if not step.plan:
            if cfg.verbose:
                print(f"[tf_gpp] round {r}: nothing left to remove under the constraints; stopping")
            break
        frozen = frozen_pruned_layers(step.dep, step.plan)
        if frozen and not warned:
            warnings.warn(_frozen_message(frozen, cfg.unfreeze_pruned), UserWarning, stacklevel=2)
            warned = True
        if frozen and cfg.unfreeze_pruned:
            unfreeze_layers(step.model, frozen)
        slim = train_kw.recalibrated(train_kw.finetune(step.model, teacher, cfg.epochs_of_round(r)))
        pruner.continue_from(slim)
        acc = train_kw.accuracy(slim, val)
        p = profile(slim, input_shape=input_shape)
        rec = RoundRecord(
            round=r, params=p.params, macs=p.macs, accuracy=acc,
            macs_ratio=p.macs / base.macs, params_ratio=p.params / base.params,
            removed_units=step.removed_units, seconds=round(time.perf_counter() - t0, 1),
            within_tolerance=None if cfg.max_accuracy_drop is None else acc >= base_acc - cfg.max_accuracy_drop,
        )
        models[r] = slim
        done = (sized and target.reached_by(p)) or rec.within_tolerance is False
        history.append(rec)
        if ckpt is not None:
            name = f"round_{r}.keras"
            rec.checkpoint = str(ckpt.path(name))
            ckpt.save({"base_accuracy": base_acc, "history": [asdict(h) for h in history], "done": done,
                       "recipe": recipe}, {name: slim})
        if writer is not None:
            with writer.as_default(step=r):
                for key in ("macs", "params", "accuracy", "macs_ratio"):
                    tf.summary.scalar(f"gpp/{key}", getattr(rec, key))
            writer.flush()
        if cfg.verbose:
            print(f"[tf_gpp] round {r}/{cfg.rounds}: {p.params:,} params, {p.macs:,} MACs "
                  f"({100 * rec.macs_ratio:.1f}% of base), accuracy {acc:.4f}"
                  + ("" if rec.within_tolerance is None else
                     f" ({'within' if rec.within_tolerance else 'beyond'} tolerance)") + f", {rec.seconds:.0f}s")
        if done:
            break

    return _result(cfg, history, models, base, base_acc, target, pushed_model)


# The signature shows every option with its default (tools record them from it).
compress.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
    *list(inspect.signature(compress).parameters.values())[:3],
    *(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=f.type)
      for f in dataclasses.fields(CompressConfig)),
    inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None,
                      annotation="CompressConfig | None"),
], return_annotation="CompressResult")


def _check_model(model: Any, push: bool) -> DependencyGraph:
    """The model's dependency graph; refuses models ``compress`` cannot train or rebuild."""
    dep = DependencyGraph(model)  # UnsupportedModelError for subclassed models and non-models
    if len(model.outputs) != 1 and push:
        raise UnsupportedModelError(
            f"model {model.name!r} has {len(model.outputs)} outputs; push training needs a single "
            "classifier output: pass push=False (the other heads are then trained with their own "
            "compiled losses), or build a single-output model for compression."
        )
    for layer in model.layers:
        for v in layer.weights:
            if not np.all(np.isfinite(np.asarray(v))):
                raise UnsupportedModelError(
                    f"weight {v.path!r} of layer {layer.name!r} holds NaN or inf: the model has "
                    "diverged. Retrain it (lower learning rate) or restore a finite checkpoint."
                )
    return dep


def _base_accuracy(train_kw: _Training, pruner: Pruner, val: Any, teacher: keras.Model | None
                   ) -> tuple[float, keras.Model | None]:
    """The base model's validation accuracy; its BatchNorm statistics re-estimated on the
    training data and kept (in ``pruner.model`` and the teacher) only when that is not less
    accurate. Returns the accuracy and the teacher."""
    base_acc = train_kw.accuracy(pruner.model, val)
    cfg = train_kw.cfg
    if cfg.recalibrate_steps != 0 and batchnorm_layers(pruner.model):
        fresh = train_kw.recalibrated(_copy(pruner.model))
        fresh_acc = train_kw.accuracy(fresh, val)
        if cfg.verbose:
            print(f"[tf_gpp] BatchNorm statistics re-estimated on the training data: validation accuracy "
                  f"{base_acc:.4f} -> {fresh_acc:.4f} ({'kept' if fresh_acc >= base_acc else 'not kept'})")
        if fresh_acc >= base_acc:
            pruner.continue_from(fresh)
            base_acc = fresh_acc
            teacher = _copy(fresh) if teacher is not None else None
    return base_acc, teacher


def _result(cfg: CompressConfig, history: list[RoundRecord], models: dict[int, keras.Model], base: Any,
            base_acc: float, target: Cost, pushed_model: keras.Model | None) -> CompressResult:
    """The returned round (the last, or with ``max_accuracy_drop`` the smallest within it), the
    warnings that say what fell short, and the result."""
    if not history:
        raise PruningRequestError("no round pruned anything: relax the constraints or raise eta/the target")
    best = max(history, key=lambda h: h.accuracy)
    within = [h for h in history if h.within_tolerance]
    smallest = min(within, key=lambda h: h.macs) if within else None
    last = history[-1]
    met = target.reached_by(last)
    if cfg.max_accuracy_drop is None:
        chosen = last
    else:
        chosen = smallest or best
        if smallest is None:
            warnings.warn(
                f"no round stayed within max_accuracy_drop={cfg.max_accuracy_drop} of the base accuracy "
                f"{base_acc:.4f}; returning the most accurate round ({best.round}: {best.accuracy:.4f} at "
                f"{100 * best.macs_ratio:.1f}% MACs). Give more fine-tuning (finetune_epochs, "
                "final_finetune_epochs), a milder target, or more rounds.", UserWarning, stacklevel=3)
    if cfg.sized and not met:
        warnings.warn(
            f"target not reached: the last round has {last.macs:,} MACs / {last.params:,} params "
            f"(target_macs={cfg.target_macs}, target_params={cfg.target_params}); the constraints "
            "(min_channels, round_to, ignored_layers, channels that reach an output) left nothing more to "
            "remove. Relax them to go further.", UserWarning, stacklevel=3)
    result = CompressResult(
        model=models[chosen.round],
        most_accurate=models[best.round],
        smallest_within_tolerance=models[smallest.round] if smallest else None,
        base_accuracy=base_acc,
        base_macs=base.macs,
        base_params=base.params,
        history=history,
        pushed_model=pushed_model,
        chosen_round=chosen.round,
        target_met=met if cfg.sized else None,
    )
    note = result.gap_note()
    if note:
        warnings.warn(note[0].upper() + note[1:], UserWarning, stacklevel=3)
    return result


def _importance_for(importance: Any, task: TaskInfo) -> Importance:
    """The importance, told which output is the classifier of a multi-output model (a copy:
    the caller's instance is left as it is)."""
    imp = get_importance(importance)
    if task.num_outputs > 1 and getattr(imp, "output", False) is None:
        imp = copy.copy(imp)
        imp.output = task.output
    return imp


def _copy(model: keras.Model) -> keras.Model:
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def _frozen_message(names: list[str], unfreezing: bool) -> str:
    if not unfreezing:
        return frozen_pruned_message(names)
    shown = ", ".join(f"'{n}'" for n in names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return (f"{len(names)} pruned layer(s) are frozen (trainable=False): {shown}. compress unfreezes them to "
            "fine-tune (unfreeze_pruned=True; BatchNormalization stays frozen, in inference mode); pass "
            "unfreeze_pruned=False to keep them frozen, or list them in ignored_layers to leave them unpruned.")


def _resume(ckpt: RoundCheckpoint | None, pruner: Pruner, recipe: dict, verbose: int
            ) -> tuple[list[RoundRecord], dict[int, keras.Model], float | None, bool]:
    """History, models, base accuracy and ``done`` of a checkpointed run (the pruner continues
    from its last model), or an empty start.

    Raises:
        PruningRequestError: the checkpoint was made with other options or another model.
    """
    state = ckpt.load() if ckpt is not None else None
    if state is None:
        return [], {}, None, False
    if state.get("recipe") is not None:
        state["recipe"] = CompressConfig.completed(state["recipe"])
    diff = ckpt.mismatch(state, recipe)
    if diff:
        raise PruningRequestError(
            f"checkpoint_dir={str(ckpt.folder)!r} holds a run with other options or another model ({diff}); "
            "resuming it would return that run's models. Call again with its options to resume it, or give a "
            "new checkpoint_dir (or delete that folder) to start afresh.")
    history = [RoundRecord(**r) for r in state["history"]]
    models = {r.round: ckpt.load_model(r.checkpoint) for r in history}
    if history:
        pruner.continue_from(models[history[-1].round], round=history[-1].round)
    if verbose:
        print(f"[tf_gpp] resuming from {ckpt.folder} after round {history[-1].round if history else 0}")
    return history, models, state["base_accuracy"], bool(state.get("done"))


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


class _Training:
    """compress's training recipe around one :class:`~tf_gpp.training.Trainer` (the optimizer
    at ``learning_rate``, cosine within each fit or constant, distillation, callbacks): the
    task's loss and accuracy, push training, fine-tuning and BatchNorm re-estimation on the
    training data."""

    def __init__(self, cfg: CompressConfig, task: TaskInfo, train: tf.data.Dataset) -> None:
        self.cfg, self.task, self.train = cfg, task, train
        self.trainer = Trainer(cfg.optimizer, cfg.learning_rate, lr_schedule=cfg.lr_schedule,
                               callbacks=cfg.callbacks, distill_alpha=cfg.distill_alpha,
                               distill_temperature=cfg.distill_temperature, verbose=1 if cfg.verbose > 1 else 0)

    def recalibrated(self, model: keras.Model) -> keras.Model:
        steps = self.cfg.recalibrate_steps
        return recalibrate_batchnorm(model, self.train, steps) if steps != 0 else model

    @_label_errors
    def accuracy(self, model: keras.Model, data: tf.data.Dataset) -> float:
        self.trainer.compile(model, task=self.task, build=False)
        return float(model.evaluate(data, verbose=0, return_dict=True)[self.task.accuracy_key])

    @_label_errors
    def push(self, model: keras.Model, teacher: keras.Model | None = None) -> keras.Model:
        """``push_epochs`` of push training (the weights ramp from 0 over the first
        ``PUSH_WARMUP_SHARE`` of its steps), distilled from ``teacher`` when given."""
        epochs = self.cfg.push_epochs
        if epochs <= 0:
            return model
        pm = PushModel(model, push=self.cfg.push_loss)
        ramp = max(1, round(PUSH_WARMUP_SHARE * epochs * self.steps_per_epoch))
        self.trainer.fit(pm, self.train, epochs, task=self.task, teacher=teacher, losses_of=model,
                         callbacks=[PushSchedule(warmup_steps=ramp)])
        return pm.strip()

    @functools.cached_property
    def steps_per_epoch(self) -> int:
        """Batches in one pass of the training data (counted once if the pipeline does not say)."""
        n = int(self.train.cardinality())
        if n < 0:
            n = int(self.train.reduce(np.int64(0), lambda count, _: count + 1))
        return max(1, n)

    def finetune_epochs(self, epochs: int) -> int:
        """``epochs`` raised to reach ``min_finetune_steps`` optimizer steps (0 stays 0)."""
        if epochs <= 0 or self.cfg.min_finetune_steps <= 0:
            return max(epochs, 0)
        return max(epochs, -(-self.cfg.min_finetune_steps // self.steps_per_epoch))

    @_label_errors
    def finetune(self, slim: keras.Model, teacher: keras.Model | None, epochs: int) -> keras.Model:
        epochs = self.finetune_epochs(epochs)
        if epochs <= 0:
            return slim
        self.trainer.fit(slim, self.train, epochs, task=self.task, teacher=teacher)
        return slim

