"""``PushModel``: train a user's own Keras model with the push objective in plain ``fit``.

Mechanism (Keras 3 native, no custom training loop):

* ``PushModel(model)`` wraps a functional or Sequential classifier. Internally it
  holds one extra functional view ``inputs -> [features, outputs]`` that shares
  the user's layers, so the forward pass is computed once.
* ``call`` returns the model's usual output (``predict``/``evaluate``/metrics are
  unchanged) and keeps the batch's features for the matching ``compute_loss``
  call (held per thread, keyed by the returned output tensor, so
  ``tf.distribute`` replicas never see each other's features; if the keys do
  not match the features are recomputed from ``x``).
* ``compute_loss`` (the public Keras 3 hook used by ``train_step`` and
  ``test_step``) adds :meth:`PushModel.push_loss`, ``a*L_sep + b*L_cov + g*L_align``,
  to the compiled loss; ``push_loss`` records each term in the
  ``push_sep``/``push_cov``/``push_align`` metrics (:attr:`PushModel.push_metrics`),
  so they appear in the progress bar, ``History`` and TensorBoard (with a
  ``val_`` prefix during validation; the validation loss includes the push
  terms, as it includes regularisation losses).
* A wrapper that trains a ``PushModel`` as its sub-model (e.g.
  :class:`~tf_gpp.training.Distiller`, with the ``PushModel`` as student) adds
  ``student.push_loss(x, y, y_pred)`` to its own loss and lists ``push_metrics``
  and ``push_weights``, so push and its schedule compose with it.
* The weights a, b, g are non-trainable scalar weights (``push_a`` …), so
  :class:`~tf_gpp.push.PushSchedule` changes them between epochs without
  retracing the train function.
* Under ``tf.distribute`` each replica computes the terms on its own shard
  (like unsynchronised BatchNorm) and they are scaled by ``1/replicas`` like
  the compiled loss.

``PushModel`` trains the wrapped model's own variables (as any Keras wrapper
does); :meth:`PushModel.strip` / :func:`strip` return an independent plain
functional model with the trained weights. Saving as ``.keras`` stores the
wrapped model's config, the feature layer name and the ``PushLoss`` config.
"""

from __future__ import annotations

import threading
from typing import Any

import keras
import tensorflow as tf

from tf_gpp.discriminant.features import feature_tensor, find_feature_layer, model_inputs
from tf_gpp.errors import UnsupportedModelError
from tf_gpp.push.losses import PushLoss

__all__ = ["PushModel", "strip", "PUSH_TERMS"]

#: metric names of the tracked push terms, in the order a, b, g weigh them.
PUSH_TERMS = ("push_sep", "push_cov", "push_align")


class _Untracked:
    """Holds an object out of sight of Keras attribute tracking and saving."""

    __slots__ = ("model",)

    def __init__(self, model: keras.Model):
        self.model = model


@keras.saving.register_keras_serializable(package="tf_gpp")
class PushModel(keras.Model):
    """A classifier trained with task loss + push terms on its last hidden layer.

    Args:
        model: the user's functional/Sequential classifier (single output of C
            logits or probabilities; a single sigmoid unit counts as C = 2).
        feature_layer: name of the layer whose output is pushed; default the
            input of the last ``Dense`` layer (see :func:`tf_gpp.discriminant.find_feature_layer`).
        push: a :class:`PushLoss` giving the initial weights a, b, g, the separation
            form and eps; default ``PushLoss()``.
        num_classes: C; default from the output width.

    Example::

        pm = PushModel(model)
        pm.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        pm.fit(x, y, epochs=10, callbacks=[PushSchedule(warmup_epochs=3)])
        slim_ready = pm.strip()
    """

    def __init__(
        self,
        model: keras.Model,
        feature_layer: str | None = None,
        push: PushLoss | dict[str, Any] | None = None,
        num_classes: int | None = None,
        **kwargs: Any,
    ):
        kwargs.setdefault("name", f"push_{model.name}")
        super().__init__(**kwargs)
        if not isinstance(model, keras.Model) or not getattr(model, "inputs", None):
            raise UnsupportedModelError(
                "PushModel wraps a built functional or Sequential keras.Model (with keras.Input); "
                f"got {type(model).__name__}."
            )
        if len(model.outputs) != 1:
            raise UnsupportedModelError(
                f"model {model.name!r} has {len(model.outputs)} outputs; PushModel needs a single "
                "classification output. Attach PushLoss to a feature output instead."
            )
        out_shape = tuple(model.outputs[0].shape)
        if len(out_shape) != 2 or out_shape[-1] is None:
            raise UnsupportedModelError(
                f"model {model.name!r} output has shape {out_shape}; expected (batch, classes)."
            )
        if isinstance(push, dict):
            push = keras.saving.deserialize_keras_object(push)
        self.push = push if push is not None else PushLoss()
        self.num_classes = int(num_classes or max(2, out_shape[-1]))
        self.feature_layer = feature_layer or find_feature_layer(model)
        self.base_model = model
        self._view = _Untracked(
            keras.Model(
                model_inputs(model),
                [feature_tensor(model, self.feature_layer), model.outputs[0]],
                name=f"{model.name}_push_view",
            )
        )  # not tracked as a sublayer: its layers (and weights) belong to base_model
        for key in ("a", "b", "g"):
            weight = self.add_weight(
                shape=(),
                initializer=keras.initializers.Constant(getattr(self.push, key)),
                trainable=False,
                name=f"push_{key}",
            )
            setattr(self, f"push_{key}", weight)
        self._trackers = {n: keras.metrics.Mean(name=n) for n in PUSH_TERMS}
        self._stash = threading.local()
        self.built = True

    # ------------------------------------------------------------------ forward / loss
    @property
    def push_weights(self) -> dict[str, keras.Variable]:
        """The schedulable weights ``{"a", "b", "g"}``."""
        return {"a": self.push_a, "b": self.push_b, "g": self.push_g}

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        features, outputs = self._view.model(inputs, training=training)
        self._stash.pair = (outputs, features)
        return outputs

    def features(self, x: Any, training: bool = False) -> Any:
        """Feature-layer activations for ``x``."""
        return self._view.model(x, training=training)[0]

    @property
    def push_metrics(self) -> list[keras.metrics.Metric]:
        """The trackers of the unweighted push terms (``PUSH_TERMS``)."""
        return list(self._trackers.values())

    def compute_loss(
        self,
        x: Any = None,
        y: Any = None,
        y_pred: Any = None,
        sample_weight: Any = None,
        training: bool = True,
    ) -> Any:
        total = super().compute_loss(x, y, y_pred, sample_weight, training=training)
        if y is None:
            return total
        return total + tf.cast(self.push_loss(x, y, y_pred, training=training), total.dtype)

    def push_loss(self, x: Any, y: Any, y_pred: Any, training: bool = True) -> tf.Tensor:
        """The weighted push term ``a*L_sep + b*L_cov + g*L_align`` of one batch (float32),
        with each term recorded in :attr:`push_metrics`.

        ``y_pred`` is this model's output for ``x`` (its features are reused when it is the
        tensor :meth:`call` returned, else recomputed from ``x``). Under ``tf.distribute`` it
        is scaled by ``1/replicas`` like the compiled loss.
        """
        pair = getattr(self._stash, "pair", None)
        self._stash.pair = None
        if pair is not None and pair[0] is y_pred:
            features = pair[1]
        else:
            features = self.features(x, training=training)
        terms = self.push.terms(features, y, self.num_classes)
        for name, key in zip(PUSH_TERMS, ("sep", "cov", "align"), strict=True):
            self._trackers[name].update_state(terms[key])
        push = (
            tf.cast(self.push_a, tf.float32) * terms["sep"]
            + tf.cast(self.push_b, tf.float32) * terms["cov"]
            + tf.cast(self.push_g, tf.float32) * terms["align"]
        )
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:
            push = push / replicas
        return push

    # ------------------------------------------------------------------ export / config
    def strip(self, copy: bool = True) -> keras.Model:
        """The wrapped model without push machinery.

        ``copy=True`` (default) returns an independent clone with the trained weights;
        ``copy=False`` returns the wrapped model object itself (shares variables).
        """
        if not copy:
            return self.base_model
        clone = keras.models.clone_model(self.base_model)
        clone.set_weights(self.base_model.get_weights())
        return clone

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "model": keras.saving.serialize_keras_object(self.base_model),
            "feature_layer": self.feature_layer,
            "push": keras.saving.serialize_keras_object(self.push),
            "num_classes": self.num_classes,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> PushModel:
        config = dict(config)
        model = keras.saving.deserialize_keras_object(
            config.pop("model"), custom_objects=custom_objects
        )
        push = keras.saving.deserialize_keras_object(
            config.pop("push"), custom_objects=custom_objects
        )
        trainable = config.pop("trainable", True)
        out = cls(model, push=push, **config)
        out.trainable = trainable
        return out


def strip(model: keras.Model, copy: bool = True) -> keras.Model:
    """Plain model from a :class:`PushModel` (see :meth:`PushModel.strip`); others pass through."""
    if isinstance(model, PushModel):
        return model.strip(copy=copy)
    return model
