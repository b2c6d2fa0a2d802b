"""One trainer: the optimizer, its learning-rate schedule, distillation, compile and ``fit``.

:class:`Trainer` is how tf_gpp trains: :func:`tf_gpp.compress` (push training and every
fine-tune), the :class:`~tf_gpp.grow.Grower` (the start net and every candidate) and the demo
(the base model). One trainer holds one recipe; each :meth:`Trainer.fit` compiles the model
with a fresh optimizer made from it (a model never shares optimizer state with another fit)::

    trainer = Trainer("sgd", learning_rate=1e-2, lr_schedule="cosine")
    trainer.fit(student, train, epochs=4, task=task, teacher=unpruned)  # distilled

The optimizer is given as Keras takes it (:func:`keras.optimizers.get`): a name, a
``{"class_name": ..., "config": {...}}`` dict or an instance, which is a template: it is
copied through its config for every fit and never trained or changed. Its learning rate is
the trainer's ``learning_rate`` (the rate every fit starts at; the cosine schedule decays it to
0 within the fit). :class:`Distiller` (knowledge distillation from a teacher's logits) lives
here too.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from tf_gpp.data.intake import TaskInfo
from tf_gpp.errors import ArgumentError

__all__ = ["LR_SCHEDULES", "CosineWithinFit", "Distiller", "OptimizerLike", "Trainer",
           "make_optimizer", "serialize_optimizer"]

#: a Keras optimizer identifier: a name, a config dict, an instance (a template) or a factory
OptimizerLike = str | dict | keras.optimizers.Optimizer | Callable[[], keras.optimizers.Optimizer]
LR_SCHEDULES = ("cosine", "constant")
#: config entries that are not the optimizer's recipe: its name, and the rate the trainer sets
_NOT_RECIPE = ("name", "learning_rate")
_FORMS = ("a Keras optimizer name ('adam', 'sgd', 'adamw', 'rmsprop', ...), a config dict such as "
          "{'class_name': 'SGD', 'config': {'momentum': 0.9}}, or an optimizer instance (a template: "
          "each fit trains a fresh copy)")


# -- the optimizer ---------------------------------------------------------------------------


def _template(identifier: Any) -> tuple[type, dict] | Callable[[], keras.optimizers.Optimizer]:
    """``(class, config)`` of a name, dict or instance (a copy: the instance is left alone),
    or the factory itself; refuses anything else with the accepted forms."""
    if isinstance(identifier, keras.optimizers.Optimizer):
        return type(identifier), copy.deepcopy(identifier.get_config())
    if callable(identifier) and not isinstance(identifier, str | dict | type):
        return identifier
    if not isinstance(identifier, str | dict):
        raise ArgumentError(f"optimizer={identifier!r}: give {_FORMS}")
    if isinstance(identifier, dict) and "class_name" not in identifier:
        raise ArgumentError(f"optimizer={identifier!r}: a config dict names its class ('class_name'); give {_FORMS}")
    try:
        opt = keras.optimizers.get(copy.deepcopy(identifier))
    except (ValueError, TypeError, KeyError) as exc:
        raise ArgumentError(f"optimizer={identifier!r} is not a Keras optimizer ({exc}); give {_FORMS}") from exc
    if not isinstance(opt, keras.optimizers.Optimizer):
        raise ArgumentError(f"optimizer={identifier!r} gives a {type(opt).__name__}, not an optimizer; give {_FORMS}")
    return type(opt), opt.get_config()


def make_optimizer(identifier: OptimizerLike = "adam", learning_rate: float | None = None
                   ) -> keras.optimizers.Optimizer:
    """A fresh optimizer from ``identifier`` (a name, a config dict, an instance used as a
    template, or a factory called once), at ``learning_rate`` when given (else its own rate).

    Raises:
        ArgumentError: ``identifier`` is not one of these forms or names no Keras optimizer.
    """
    return _fresh(_template(identifier), learning_rate)


def _fresh(made: tuple[type, dict] | Callable[[], keras.optimizers.Optimizer], learning_rate: float | None
           ) -> keras.optimizers.Optimizer:
    """A new optimizer of a :func:`_template`, at ``learning_rate`` when given."""
    if isinstance(made, tuple):
        cls, config = made
        config = {k: v for k, v in copy.deepcopy(config).items() if k != "name"}  # a fresh name, as Adam(...)
        if learning_rate is not None:
            config["learning_rate"] = learning_rate
        return cls.from_config(config)
    opt = made()
    if not isinstance(opt, keras.optimizers.Optimizer):
        raise ArgumentError(f"the optimizer factory {made!r} returned a {type(opt).__name__}, not an optimizer")
    if learning_rate is not None:
        try:
            opt.learning_rate = learning_rate
        except TypeError as exc:  # made with a LearningRateSchedule
            raise ArgumentError(
                f"the optimizer factory {made!r} makes an optimizer whose learning rate is a schedule; the "
                "trainer sets the rate (learning_rate=, lr_schedule=): make it with a number") from exc
    return opt


def serialize_optimizer(identifier: OptimizerLike) -> str | dict:
    """The optimizer's recipe in a stable JSON form: its name (``"adam"``) when it has its
    class's default hyperparameters, else ``{"class_name": ..., "config": {the non-default
    ones}}``. The learning rate and the name are left out (a :class:`Trainer` sets the rate).

    Raises:
        ArgumentError: a factory (it has no config), or not an optimizer.
    """
    made = _template(identifier)
    if not isinstance(made, tuple):
        raise ArgumentError(f"optimizer={identifier!r}: a factory has no config to record; give {_FORMS}")
    cls, config = made
    try:
        defaults = cls().get_config()
    except TypeError:  # a class with required arguments: every entry is recorded
        defaults = {}
    changed = {k: v for k, v in config.items()
               if k not in _NOT_RECIPE and (k not in defaults or not _same(v, defaults[k]))}
    name = keras.saving.get_registered_name(cls)
    if not changed:
        try:
            if type(keras.optimizers.get(cls.__name__.lower())) is cls:
                return cls.__name__.lower()
        except ValueError:
            pass
    return {"class_name": name, "config": changed}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-6)
    return a == b


def _stated_rate(identifier: Any) -> Any:
    """The learning rate a dict, instance or factory states (``None``: none stated, or a name);
    a factory is called once to read it."""
    if isinstance(identifier, keras.optimizers.Optimizer):
        return identifier.get_config().get("learning_rate")
    if callable(identifier) and not isinstance(identifier, str | dict | type):
        made = identifier()
        return made.get_config().get("learning_rate") if isinstance(made, keras.optimizers.Optimizer) else None
    if isinstance(identifier, dict):
        return (identifier.get("config") or {}).get("learning_rate")
    return None


# -- the learning-rate schedule --------------------------------------------------------------


class CosineWithinFit(keras.callbacks.Callback):
    """The optimizer's learning rate decays from ``learning_rate`` to 0 (cosine) over each ``fit``."""

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


# -- the trainer -----------------------------------------------------------------------------


class Trainer:
    """One training recipe: optimizer, learning-rate schedule, distillation, callbacks, ``fit``.

    Args:
        optimizer: a name, a ``{"class_name", "config"}`` dict, an instance (a template,
            copied for every fit, never changed) or a factory (called for every fit).
        learning_rate: the rate every fit starts at; it replaces the optimizer's own (a
            warning says so when a dict or instance states another one).
        lr_schedule: ``"cosine"`` (decayed to 0 within every fit) or ``"constant"``.
        callbacks: Keras callbacks for every fit (after the schedule's).
        distill_alpha, distill_temperature: the distillation's share of the loss and its
            softmax temperature, when a fit is given a teacher.
        compile_kwargs: further ``model.compile`` arguments (e.g. ``{"jit_compile": False}``).
        verbose: ``fit``'s verbosity.
    """

    def __init__(self, optimizer: OptimizerLike = "adam", learning_rate: float = 1e-3, *,
                 lr_schedule: str = "constant", callbacks: Sequence[keras.callbacks.Callback] | None = None,
                 distill_alpha: float = 0.5, distill_temperature: float = 4.0,
                 compile_kwargs: dict[str, Any] | None = None, verbose: int = 0) -> None:
        if lr_schedule not in LR_SCHEDULES:
            raise ArgumentError(f"lr_schedule={lr_schedule!r}: choose 'cosine' or 'constant'")
        if isinstance(learning_rate, bool) or not isinstance(learning_rate, int | float) or not (
                math.isfinite(learning_rate) and learning_rate >= 0):
            raise ArgumentError(f"learning_rate={learning_rate!r}: a finite number >= 0")
        self._template = _template(optimizer)  # refused here, before anything trains
        stated = _stated_rate(optimizer)
        if stated is not None and not (isinstance(stated, int | float) and _same(float(stated), float(learning_rate))):
            shown = f"{float(stated):.6g}" if isinstance(stated, int | float) else "(a schedule)"
            warnings.warn(
                f"the optimizer's learning rate {shown} is replaced by learning_rate={learning_rate} (the rate "
                f"every fit starts at{', decayed to 0 within it' if lr_schedule == 'cosine' else ''}); pass "
                "learning_rate= to train at another rate", UserWarning, stacklevel=2)
        self.optimizer = optimizer
        self.learning_rate = float(learning_rate)
        self.lr_schedule = lr_schedule
        self.user_callbacks = list(callbacks or [])
        self.distill_alpha = float(distill_alpha)
        self.distill_temperature = float(distill_temperature)
        self.compile_kwargs = dict(compile_kwargs or {})
        self.verbose = verbose

    def make_optimizer(self) -> keras.optimizers.Optimizer:
        """A fresh optimizer of the recipe, at ``learning_rate``."""
        return _fresh(self._template, self.learning_rate)

    @property
    def callbacks(self) -> list[keras.callbacks.Callback]:
        """The callbacks of every fit: the learning-rate schedule's, then the user's."""
        schedule = [CosineWithinFit(self.learning_rate)] if self.lr_schedule == "cosine" else []
        return [*schedule, *self.user_callbacks]

    def distilled(self, student: keras.Model, teacher: keras.Model | None, task: TaskInfo | None = None
                  ) -> keras.Model:
        """``student`` wrapped in a :class:`Distiller` from ``teacher``, else ``student`` itself:
        without a teacher, or when ``task`` says the classifier outputs probabilities or is
        binary (distillation matches logits); a multi-output ``task`` distils its classifier."""
        if teacher is None or (task is not None and (task.probabilities or task.kind == "binary")):
            return student
        index = task.output_index if task is not None and task.num_outputs > 1 else None
        return Distiller(student, teacher, alpha=self.distill_alpha, temperature=self.distill_temperature,
                         output=index)

    def compile(self, model: keras.Model, loss: Any = None, metrics: Any = None, *, task: TaskInfo | None = None,
                losses_of: keras.Model | None = None, build: bool = True) -> None:
        """Compile ``model`` with a fresh optimizer and ``task``'s losses and accuracy (of
        ``losses_of``, the model a wrapper trains; see :meth:`TaskInfo.compile`), or with
        ``loss``/``metrics``. ``build``: create the optimizer's slots now."""
        if task is not None:
            task.compile(model, self.make_optimizer(), losses_of=losses_of, **self.compile_kwargs)
        else:
            model.compile(optimizer=self.make_optimizer(), loss=loss, metrics=metrics, **self.compile_kwargs)
        if build:
            # Built here, the slots exist before fit traces its step: otherwise the first trace
            # creates them and TensorFlow traces the whole train step a second time, which
            # doubles the cost of every short fit of a rebuilt model.
            model.optimizer.build(model.trainable_variables)

    def fit(self, model: keras.Model, data: Any, epochs: int, *, loss: Any = None, metrics: Any = None,
            task: TaskInfo | None = None, teacher: keras.Model | None = None,
            losses_of: keras.Model | None = None, callbacks: Sequence[keras.callbacks.Callback] = (),
            **fit_kwargs: Any) -> keras.callbacks.History:
        """Train ``model`` in place for ``epochs`` on ``data`` (``fit``'s ``x``: a dataset, or
        arrays with ``y=``), distilled from ``teacher`` when given, with a fresh optimizer and
        ``task``'s losses and accuracy (or ``loss``/``metrics``); ``callbacks`` run before the
        trainer's. ``fit_kwargs`` go to ``model.fit`` (``y``, ``validation_data``,
        ``batch_size``, ...; ``shuffle`` is off unless given). Returns the fit's history."""
        trainer = self.distilled(model, teacher, task)
        self.compile(trainer, loss, metrics, task=task, losses_of=losses_of or model)
        fit_kwargs.setdefault("shuffle", False)
        return trainer.fit(data, epochs=epochs, verbose=self.verbose, callbacks=[*callbacks, *self.callbacks],
                           **fit_kwargs)

    def __repr__(self) -> str:
        return (f"Trainer(optimizer={self.optimizer!r}, learning_rate={self.learning_rate}, "
                f"lr_schedule={self.lr_schedule!r})")


# -- distillation ----------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="tf_gpp")
class Distiller(keras.Model):
    """Train ``student`` on ``(1-alpha) * task loss + alpha * T^2 * KL(teacher_T || student_T)``.

    Both models must output logits (or the same kind of output); the teacher is
    frozen. ``call`` returns the student's output, so metrics are the student's. For
    multi-output models ``output`` (an index, or a key of dict outputs) names the classifier
    output that is distilled; the other outputs keep their task losses only.

    A student with a ``push_loss(x, y, y_pred, training)`` hook (a :class:`~tf_gpp.push.PushModel`)
    trains with its push term added to this loss, unscaled by ``alpha``; its ``push_metrics``
    are this model's metrics and its ``push_weights`` are this model's, so
    :class:`~tf_gpp.push.PushSchedule` drives them.
    """

    def __init__(self, student: keras.Model, teacher: keras.Model, alpha: float = 0.5,
                 temperature: float = 4.0, output: int | str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.student = student
        self.teacher = teacher
        self.teacher.trainable = False
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        self.classifier_output = output

    @property
    def output_names(self) -> list[str] | None:
        """The student's output names: losses and metrics keyed by output compile as for it."""
        return getattr(self.student, "output_names", None)

    def _classifier(self, out: Any) -> Any:
        if self.classifier_output is None:
            return out
        if isinstance(out, dict):
            key = self.classifier_output
            return out[key] if isinstance(key, str) else list(out.values())[key]
        return out[self.classifier_output]

    @property
    def metrics(self) -> list:
        """Keras' metrics, and the student's push terms when it has them."""
        return [*super().metrics, *getattr(self.student, "push_metrics", [])]

    @property
    def push_weights(self) -> dict:
        """The student's schedulable push weights (a :class:`~tf_gpp.push.PushModel` student)."""
        weights = getattr(self.student, "push_weights", None)
        if weights is None:
            raise AttributeError(f"the student {self.student.name!r} has no push weights (not a PushModel)")
        return weights

    def call(self, x: Any, training: bool | None = None) -> Any:
        return self.student(x, training=training)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = super().compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training)
        if training and self.alpha != 0:
            t = self.temperature
            soft_t = ops.softmax(self._classifier(self.teacher(x, training=False)) / t, axis=-1)
            log_s = ops.log_softmax(self._classifier(y_pred) / t, axis=-1)
            kl = ops.mean(ops.sum(soft_t * (ops.log(soft_t + 1e-8) - log_s), axis=-1))
            loss = (1.0 - self.alpha) * loss + self.alpha * t * t * kl
        push = getattr(self.student, "push_loss", None)
        if push is not None and y is not None:
            loss = loss + ops.cast(push(x, y, y_pred, training=training), loss.dtype)
        return loss

    def get_config(self) -> dict:
        return {
            "student": keras.saving.serialize_keras_object(self.student),
            "teacher": keras.saving.serialize_keras_object(self.teacher),
            "alpha": self.alpha,
            "temperature": self.temperature,
            "output": self.classifier_output,
        }

    @classmethod
    def from_config(cls, config: dict) -> Distiller:
        config = dict(config)
        config["student"] = keras.saving.deserialize_keras_object(config["student"])
        config["teacher"] = keras.saving.deserialize_keras_object(config["teacher"])
        return cls(**config)
