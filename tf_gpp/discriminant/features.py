"""Locating the feature layer (the last hidden layer) of a Keras model.

The feature layer is the input of the classifier head: by default the input
of the last ``Dense`` layer, walking back through layers that only add noise
during training (``Dropout`` and friends) so the features are the hidden
layer's clean activations. For conv nets that is the output of global pooling
or ``Flatten``. Pass a layer name to choose another layer; its output is used.
"""

from __future__ import annotations

from typing import Any

import keras

from tf_gpp.errors import UnsupportedModelError

__all__ = ["find_feature_layer", "feature_model", "feature_tensor", "model_inputs"]

#: layers skipped when walking back from the head: identity at inference time.
PASS_THROUGH = (
    keras.layers.Dropout,
    keras.layers.GaussianNoise,
    keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
    keras.layers.ActivityRegularization,
)


def _producer(model: keras.Model, tensor: Any) -> str:
    """Name of the layer (or model input) that produces ``tensor``."""
    for layer in model.layers:
        try:
            out = layer.output
        except (AttributeError, ValueError):  # layer called zero or several times
            continue
        if out is tensor:
            return layer.name
    for t in model.inputs:
        if t is tensor:
            return t.name
    raise UnsupportedModelError(
        f"cannot find the layer producing {getattr(tensor, 'name', tensor)} in model "
        f"{model.name!r}; pass feature_layer= explicitly."
    )


def find_feature_layer(model: keras.Model, output: str | None = None) -> str:
    """Name of the layer whose output is the feature layer (see the module docstring).

    ``output``: name of the classifier output of a multi-output model; its ``Dense``
    layer is the head (default: the last ``Dense`` layer of the model).
    """
    if not getattr(model, "inputs", None):
        raise UnsupportedModelError(
            f"model {model.name!r} has no symbolic inputs; build it as a functional or "
            "Sequential model with keras.Input so its last hidden layer can be located."
        )
    dense = [la for la in model.layers if isinstance(la, keras.layers.Dense)]
    if not dense:
        raise UnsupportedModelError(
            f"model {model.name!r} has no Dense classifier head; pass feature_layer= with the "
            "name of the last hidden layer."
        )
    head = dense[-1]
    if output is not None:
        try:
            head = model.get_layer(output)
        except ValueError as exc:
            raise UnsupportedModelError(f"output {output!r} is not a layer of model {model.name!r}.") from exc
        if not isinstance(head, keras.layers.Dense):
            raise UnsupportedModelError(
                f"output {output!r} is a {type(head).__name__}, not a Dense classifier head; pass "
                "feature_layer= with the name of the last hidden layer."
            )
    try:
        name = _producer(model, head.input)
    except (AttributeError, ValueError) as exc:
        raise UnsupportedModelError(
            f"Dense layer {head.name!r} is shared or not connected; pass feature_layer=."
        ) from exc
    names = {la.name: la for la in model.layers}
    while name in names and isinstance(names[name], PASS_THROUGH):
        name = _producer(model, names[name].input)
    return name


def feature_tensor(model: keras.Model, layer: str | None = None) -> Any:
    """Symbolic output of feature layer ``layer`` (default :func:`find_feature_layer`)."""
    name = find_feature_layer(model) if layer is None else layer
    for t in model.inputs:
        if t.name == name:
            return t
    try:
        out = model.get_layer(name).output
    except ValueError as exc:
        raise UnsupportedModelError(
            f"feature layer {name!r} is not a layer of model {model.name!r} (or it is called "
            "more than once)."
        ) from exc
    if isinstance(out, list | tuple):
        raise UnsupportedModelError(f"feature layer {name!r} has several outputs; pick one layer.")
    if len(out.shape) != 2:
        raise UnsupportedModelError(
            f"feature layer {name!r} outputs shape {tuple(out.shape)}; the features must be a "
            "vector per sample. Choose the layer after GlobalAveragePooling or Flatten."
        )
    return out


def feature_model(model: keras.Model, layer: str | None = None) -> keras.Model:
    """A functional model ``inputs -> features`` sharing ``model``'s layers and weights."""
    return keras.Model(
        model_inputs(model), feature_tensor(model, layer), name=f"{model.name}_features"
    )


def model_inputs(model: keras.Model) -> Any:
    """``model``'s symbolic inputs in a structure that accepts a bare tensor for one input."""
    return model.inputs[0] if len(model.inputs) == 1 else model.inputs
