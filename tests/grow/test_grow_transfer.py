"""Warm start: trained weights survive growing; widening keeps the old function."""

import numpy as np
import pytest

from tf_gpp.errors import UnsupportedModelError
from tf_gpp.grow import build_inception, default_start_spec, inbound_layers, transfer_weights


def _trained_like(spec, seed=0):
    """A model whose weights (incl. BN statistics) are random, as if trained."""
    model = build_inception(spec)
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            new = [rng.normal(size=w.shape).astype(w.dtype) for w in weights]
            if layer.__class__.__name__ == "BatchNormalization":
                new[3] = rng.uniform(0.5, 2.0, size=weights[3].shape).astype("float32")
            layer.set_weights(new)
    return model


@pytest.fixture(scope="module")
def spec():
    return default_start_spec((8, 8, 1), 5, width=4)


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(1).uniform(size=(6, 8, 8, 1)).astype("float32")


def test_add_module_keeps_every_trained_layer(spec):
    old = _trained_like(spec)
    grown_spec = spec.with_module()
    new = build_inception(grown_spec)
    report = transfer_weights(old, new)
    added = grown_spec.modules[-1].name
    for layer in old.layers:
        for w_old, w_new in zip(layer.get_weights(), new.get_layer(layer.name).get_weights(),
                                strict=True):
            np.testing.assert_array_equal(w_old, w_new, err_msg=layer.name)
    assert {n for n, r in report.items() if r == "new"} == {
        layer.name for layer in new.layers if layer.name.startswith(f"{added}_") and layer.weights
    }


@pytest.mark.parametrize("target", ["m1", "m2", "m3"])
def test_widening_copies_old_channels_and_preserves_outputs(spec, x, target):
    old = _trained_like(spec, seed=2)
    wide_spec = spec.with_module_widened(target, 1.5)
    new = build_inception(wide_spec)
    report = transfer_weights(old, new)
    assert report[f"{target}_b1_conv1x1" if target != "m2" else "m2_b1_conv3x3"] == "partial"
    # old channels sit in the first channels of the wider layers
    name = f"{target}_b2_conv1x1"
    k_old, k_new = old.get_layer(name).get_weights()[0], new.get_layer(name).get_weights()[0]
    assert k_new.shape[-1] > k_old.shape[-1]
    np.testing.assert_array_equal(k_new[..., : k_old.shape[-1]], k_old)
    assert np.any(k_new[..., k_old.shape[-1]:] != 0)  # new filters are initialised
    bn_old = old.get_layer(f"{name}_bn").get_weights()
    bn_new = new.get_layer(f"{name}_bn").get_weights()
    for a, b in zip(bn_old, bn_new, strict=True):
        np.testing.assert_array_equal(b[: len(a)], a)
    # the widened network computes exactly what the old one did
    np.testing.assert_allclose(
        np.asarray(new(x, training=False)), np.asarray(old(x, training=False)), rtol=1e-4, atol=1e-4
    )


def test_consumer_after_concat_gets_channels_at_shifted_positions(spec):
    """Widening m1's first branch shifts the other branches inside m1_concat."""
    old = _trained_like(spec, seed=3)
    new = build_inception(spec.with_module_widened("m1", 2.0))
    transfer_weights(old, new)
    w = spec.module("m1").widths
    b1_old, b1_new = w[0], 2 * w[0]
    consumer = "m2_b2_conv1x1"  # reads m1_concat
    k_old = old.get_layer(consumer).get_weights()[0]
    k_new = new.get_layer(consumer).get_weights()[0]
    n_out = k_old.shape[-1]
    np.testing.assert_array_equal(k_new[:, :, :b1_old, :n_out], k_old[:, :, :b1_old])
    np.testing.assert_array_equal(k_new[:, :, b1_old:b1_new, :n_out], 0.0)  # new inputs: zero
    np.testing.assert_array_equal(
        k_new[:, :, b1_new : b1_new + w[2], :n_out], k_old[:, :, b1_old : b1_old + w[2]]
    )


def test_transfer_refuses_shrinking(spec):
    wide = build_inception(spec.with_module_widened("m1"))
    with pytest.raises(UnsupportedModelError, match="fewer than the source"):
        transfer_weights(wide, build_inception(spec))


def test_inbound_layers(spec):
    graph = inbound_layers(build_inception(spec))
    assert graph["input"] == []
    assert graph["m1_concat"] == ["m1_b1_conv1x1_relu", "m1_b2_conv3x3_relu",
                                  "m1_b3_conv3x3b_relu", "m1_b4_conv1x1_relu"]
    assert graph["classifier"] == ["gap"]
