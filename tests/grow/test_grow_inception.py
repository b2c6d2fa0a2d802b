"""Inception modules, specs and model building."""

import json

import keras
import numpy as np
import pytest

from tf_gpp.grow import (
    GrowError,
    InceptionSpec,
    ModuleSpec,
    build_inception,
    default_start_spec,
    inception_module,
    reduction_module,
)


@pytest.mark.parametrize("widths", [(3, 2, 5, 1, 7, 2), (1, 1, 1, 1, 1, 1), (16, 3, 4, 9, 2, 11)])
def test_normal_module_concatenates_any_widths(widths):
    x = keras.Input((9, 7, 5))
    y = inception_module(x, widths, "mx")
    b1, b2r, b2, b3r, b3, b4 = widths
    assert tuple(y.shape) == (None, 9, 7, b1 + b2 + b3 + b4)
    model = keras.Model(x, y)
    filters = {layer.name: layer.filters for layer in model.layers if hasattr(layer, "filters")}
    assert filters == {
        "mx_b1_conv1x1": b1, "mx_b2_conv1x1": b2r, "mx_b2_conv3x3": b2,
        "mx_b3_conv1x1": b3r, "mx_b3_conv3x3a": b3, "mx_b3_conv3x3b": b3, "mx_b4_conv1x1": b4,
    }
    # every conv is followed by its BN and ReLU
    names = {layer.name for layer in model.layers}
    assert all(f"{n}_bn" in names and f"{n}_relu" in names for n in filters)


@pytest.mark.parametrize("hw, out_hw", [((9, 9), (5, 5)), ((8, 6), (4, 3)), ((2, 2), (1, 1))])
def test_reduction_module_halves_and_passes_input_through(hw, out_hw):
    x = keras.Input((*hw, 6))
    y = reduction_module(x, (5, 2, 3), "r1")
    assert tuple(y.shape) == (None, *out_hw, 5 + 3 + 6)


def test_build_names_deterministic_unique_and_depth():
    spec = default_start_spec((16, 16, 1), 3, width=4, modules=2)
    assert [m.reduction for m in spec.modules] == [False, True, False]
    a, b = build_inception(spec), build_inception(spec)
    names = [layer.name for layer in a.layers]
    assert names == [layer.name for layer in b.layers]
    assert len(names) == len(set(names))
    assert "m3_b2_conv3x3" in names and "m2_b2_conv3x3b" in names and "classifier" in names
    assert spec.depth == 1 + 3 * 3 + 1 and a.name == "Inception-11"
    assert tuple(a.output.shape) == (None, 3)
    assert spec.feature_channels() == a.get_layer("gap").output.shape[-1]


def test_classifier_activation_and_dropout():
    spec = InceptionSpec((8, 8, 1), 4, stem_filters=4, modules=(ModuleSpec("m1", (2,) * 6),),
                         classifier_activation="softmax", dropout=0.3)
    model = build_inception(spec)
    assert model.get_layer("dropout").rate == 0.3
    out = np.asarray(model(np.random.rand(2, 8, 8, 1).astype("float32")))
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    logits = build_inception(InceptionSpec((8, 8, 1), 4, stem_filters=4))
    assert logits.get_layer("classifier").get_config()["activation"] == "linear"
    assert logits.name == "Inception-2"


def test_spec_round_trip():
    spec = default_start_spec((28, 28, 1), 10, width=8, modules=3, dropout=0.2)
    d = json.loads(json.dumps(spec.to_dict()))
    back = InceptionSpec.from_dict(d)
    assert back == spec
    assert [layer.name for layer in build_inception(d).layers] == [
        layer.name for layer in build_inception(spec).layers
    ]
    assert ModuleSpec.from_dict(spec.modules[1].to_dict()) == spec.modules[1]
    with pytest.raises(GrowError, match="unknown keys"):
        InceptionSpec.from_dict({**d, "depth": 3})


def test_growth_steps_on_specs():
    spec = default_start_spec((8, 8, 1), 5, width=4)
    grown = spec.with_module()
    assert [m.name for m in grown.modules] == ["m1", "m2", "m3", "m4"]
    assert grown.modules[-1].widths == spec.modules[-1].widths
    assert grown.depth == spec.depth + 3
    narrow = spec.narrowest_module()
    assert narrow.conv_out_channels == min(m.conv_out_channels for m in spec.modules)
    wide = spec.with_module_widened(narrow.name, 1.5)
    w_old, w_new = narrow.widths, wide.module(narrow.name).widths
    assert all(n == max(o + 1, -(-o * 3 // 2)) for o, n in zip(w_old, w_new, strict=True))
    assert spec.modules == InceptionSpec.from_dict(spec.to_dict()).modules  # spec untouched


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: ModuleSpec("m1", (1, 2, 3)), "6 widths"),
        (lambda: ModuleSpec("m1", (1, 2, 3, 4, 5, 6), reduction=True), "3 widths"),
        (lambda: ModuleSpec("m1", (1, 0, 3, 4, 5, 6)), ">= 1"),
        (lambda: ModuleSpec("m-1", (1,) * 6), "invalid"),
        (lambda: ModuleSpec("m1", (1.5,) * 6), "integers"),
        (lambda: InceptionSpec((8, 8, 1), 1), "num_classes"),
        (lambda: InceptionSpec((8, 8), 3), "input_shape"),
        (lambda: InceptionSpec((8, 8, 1), 3, dropout=1.0), "dropout"),
        (lambda: InceptionSpec((8, 8, 1), 3, classifier_activation="relu"), "classifier_activation"),
        (lambda: InceptionSpec((8, 8, 1), 3, modules=(ModuleSpec("a", (1,) * 6),) * 2), "unique"),
        (
            lambda: InceptionSpec(
                (8, 8, 1), 3, stem_strides=2,
                modules=tuple(ModuleSpec(f"r{i}", (1, 1, 1), True) for i in range(3)),
            ),
            "too small for 3 reduction",
        ),
        (lambda: inception_module(keras.Input((4, 4, 1)), (1, 2), "m1"), "6 widths"),
    ],
)
def test_invalid_specs(make, match):
    with pytest.raises(GrowError, match=match):
        make()
