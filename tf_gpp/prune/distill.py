"""Knowledge distillation for fine-tuning a pruned model from the unpruned one."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


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
