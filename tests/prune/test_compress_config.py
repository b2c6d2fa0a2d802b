"""compress's one validated config, and transfer learning: a frozen backbone compress prunes."""

import inspect
import warnings

import keras
import numpy as np
import pytest

import tf_gpp
from tests.digits_model import digits_split
from tf_gpp.prune import CompressConfig

QUICK = dict(rounds=1, push=False, importance="l1", finetune_epochs=1, recalibrate_steps=2, verbose=0)


def _mlp() -> keras.Model:
    keras.utils.set_random_seed(0)
    inp = keras.Input((64,))
    h = keras.layers.Dense(32, activation="relu", name="h1")(inp)
    return keras.Model(inp, keras.layers.Dense(10, name="out")(h), name="mlp")


def _flat_digits():
    (xt, yt), (xv, yv) = digits_split()
    return (xt[:400].reshape(-1, 64), yt[:400]), (xv[:200].reshape(-1, 64), yv[:200])


def test_signature_lists_every_option_with_the_configs_default():
    params = inspect.signature(tf_gpp.compress).parameters
    defaults = CompressConfig()
    for name in CompressConfig.names():
        assert params[name].default == getattr(defaults, name), name
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
    assert "config" in params


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"targt_macs": 0.3}, "unknown compress option 'targt_macs'; did you mean 'target_macs'"),
        ({}, "needs target_macs or target_params"),
        ({"target_macs": 0.3, "rounds": 0}, "rounds=0"),
        ({"target_macs": 0.3, "final_finetune_epochs": -1}, "final_finetune_epochs=-1"),
        ({"target_macs": 0.3, "recalibrate_steps": 1.5}, "recalibrate_steps=1.5"),
        ({"target_macs": 0.3, "importance": "magic"}, "unknown importance 'magic'"),
        ({"target_macs": 1.5}, "whole numbers"),
        ({"target_params": 1.0}, "already meets it"),
        ({"target_macs": 0.3, "batch_size": 0}, "batch_size=0"),
    ],
)
def test_validate_names_the_option(kwargs, match):
    with pytest.raises(tf_gpp.PruningRequestError, match=match):
        CompressConfig.from_kwargs(**kwargs).validate()


def test_config_and_keywords_give_the_same_run():
    """compress(config=...) and compress(**options) are one code path: same rounds, same model."""
    train, val = _flat_digits()
    base = _mlp()
    base.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    base.fit(*train, epochs=3, verbose=0)
    a = tf_gpp.compress(base, train, val, target_macs=0.5, **QUICK)
    cfg = CompressConfig(target_macs=0.9, **QUICK)
    b = tf_gpp.compress(base, train, val, config=cfg, target_macs=0.5)  # keywords override the config
    assert [(h.macs, h.params, h.removed_units) for h in a.history] == \
        [(h.macs, h.params, h.removed_units) for h in b.history]
    np.testing.assert_allclose(a.model.predict(val[0][:16], verbose=0), b.model.predict(val[0][:16], verbose=0),
                               rtol=1e-5, atol=1e-5)
    assert cfg.target_macs == 0.9  # the given config is not modified


# -- frozen backbone (transfer learning) ---------------------------------------------------

def _frozen_backbone_model() -> keras.Model:
    """A tiny conv backbone nested and frozen (trainable=False), a trainable head: digits 8x8."""
    keras.utils.set_random_seed(0)
    b_in = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name="conv_a")(b_in)
    x = keras.layers.BatchNormalization(name="bn_a")(x)
    x = keras.layers.ReLU(name="relu_a")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False, name="conv_b")(x)
    x = keras.layers.BatchNormalization(name="bn_b")(x)
    backbone = keras.Model(b_in, keras.layers.ReLU(name="relu_b")(x), name="backbone")
    inp = keras.Input((8, 8, 1))
    h = backbone(inp, training=False)
    h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
    h = keras.layers.Dense(16, activation="relu", name="fc")(h)
    model = keras.Model(inp, keras.layers.Dense(10, name="out")(h), name="transfer")
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    (xt, yt), _ = digits_split()
    model.fit(xt[:600], yt[:600], epochs=2, verbose=0)  # "pretrained" backbone
    backbone.trainable = False
    return model


@pytest.fixture(scope="module")
def frozen():
    return _frozen_backbone_model()


@pytest.mark.parametrize("unfreeze", [True, False])
def test_frozen_backbone_pruned_warns_and_unfreezes(frozen, unfreeze):
    (xt, yt), (xv, yv) = digits_split()
    widths = {layer.name: layer.filters for layer in frozen.get_layer("backbone").layers
              if isinstance(layer, keras.layers.Conv2D)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = tf_gpp.compress(frozen, (xt[:600], yt[:600]), (xv, yv), target_macs=0.5, unfreeze_pruned=unfreeze,
                              **QUICK)
    frozen_warnings = [w for w in caught if "frozen (trainable=False)" in str(w.message)]
    assert len(frozen_warnings) == 1 and "\n" not in str(frozen_warnings[0].message)
    slim = res.model
    pruned = [layer for layer in slim.layers
              if isinstance(layer, keras.layers.Conv2D) and layer.filters < widths.get(layer.name, 0)]
    assert pruned, "the backbone was pruned"
    for layer in pruned:
        assert layer.trainable is unfreeze, layer.name
    for layer in slim.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            assert not layer.trainable, layer.name  # BN stays frozen (inference mode) either way
    assert frozen.get_layer("backbone").trainable is False  # the user's model is left alone
