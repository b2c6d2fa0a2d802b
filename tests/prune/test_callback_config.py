"""PruningCallback.get_config()/from_config() with a custom importance and schedule, registered
by name: the restored callback prunes exactly like the original."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

import tf_gpp
from tf_gpp.importance import Importance, register_importance, unregister_importance
from tf_gpp.prune import masked_view
from tf_gpp.prune.schedules import PruningSchedule, register_schedule, unregister_schedule


class Stripes(Importance):
    """Unit i of a group scores ((i + offset) % 3) + 1: the plan depends on the config only."""

    def __init__(self, offset: int = 0) -> None:
        self.offset = offset

    def __call__(self, dep, group):
        return ((np.arange(group.size) + self.offset) % 3).astype(float) + 1

    def get_config(self) -> dict:
        return {"offset": self.offset}


class LowestK(PruningSchedule):
    """Each round, remove the ``k`` lowest-scoring units of every group (one unit always stays)."""

    def __init__(self, k: int = 1) -> None:
        self.k = k

    def plan(self, dep, scores, constraints, *, round, rounds, base, target):
        return {g: sorted(np.argsort(s, kind="stable")[: min(self.k, len(s) - 1)].tolist())
                for g, s in scores.items()}

    def get_config(self) -> dict:
        return {"k": self.k}


@pytest.fixture
def registered():
    register_importance("stripes_cb_test", Stripes)
    register_schedule("lowest_k_cb_test", LowestK)
    yield
    unregister_importance("stripes_cb_test")
    unregister_schedule("lowest_k_cb_test")


def _mlp() -> keras.Model:
    keras.utils.set_random_seed(0)
    inp = keras.Input((6,))
    h = keras.layers.Dense(12, activation="relu", name="h1")(inp)
    h = keras.layers.Dense(9, activation="relu", name="h2")(h)
    return keras.Model(inp, keras.layers.Dense(3, name="out")(h))


def _masked_after_fit(callback: tf_gpp.PruningCallback) -> tuple[set, list[float]]:
    gated = tf_gpp.prunable(_mlp())
    gated.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 6)).astype("float32"), rng.integers(0, 3, 64)
    hist = gated.fit(x, y, epochs=3, batch_size=32, verbose=0, shuffle=False, callbacks=[callback])
    return masked_view(gated).removed(), hist.history["gpp_kept_units"]


def test_custom_importance_and_schedule_survive_the_callback_config(registered):
    original = tf_gpp.PruningCallback(importance=Stripes(offset=1), schedule=LowestK(k=2), end_epoch=1)
    config = json.loads(json.dumps(original.get_config()))  # as a saved config reads back
    assert config["importance"] == {"class_name": "stripes_cb_test", "config": {"offset": 1}}
    assert config["schedule"] == {"class_name": "lowest_k_cb_test", "config": {"k": 2}}
    restored = tf_gpp.PruningCallback.from_config(config)
    assert restored.get_config() == original.get_config()

    removed, kept = _masked_after_fit(original)
    assert removed and kept == [21 - 4, 21 - 8, 21 - 8]  # 12 + 9 units, 2 per group per pruning epoch
    assert _masked_after_fit(restored) == (removed, kept)
    # the config is what decides: another offset masks other units
    other = tf_gpp.PruningCallback.from_config({**config, "importance": {**config["importance"], "config": {}}})
    assert _masked_after_fit(other)[0] != removed


def test_names_in_the_constructor_and_old_class_name_configs(registered):
    cb = tf_gpp.PruningCallback(importance="stripes_cb_test", schedule="lowest_k_cb_test")
    assert isinstance(cb.importance, Stripes) and isinstance(cb.schedule, LowestK)
    old = {**cb.get_config(), "importance": {"class_name": "L1Norm", "config": {}},
           "schedule": {"class_name": "Threshold", "config": {"eta": 1.0, "eta_step": 0.5}}}
    loaded = tf_gpp.PruningCallback.from_config(old)  # written before names were recorded
    assert isinstance(loaded.importance, tf_gpp.importance.L1Norm)
    assert loaded.get_config()["importance"] == {"class_name": "l1", "config": {}}
    assert loaded.get_config()["schedule"]["class_name"] == "threshold"
    with pytest.raises(tf_gpp.PruningRequestError, match="unknown importance 'nowhere'.*register_importance"):
        tf_gpp.PruningCallback.from_config({**old, "importance": {"class_name": "nowhere", "config": {}}})


def _stripped_widths(callback: tf_gpp.PruningCallback) -> dict[str, int]:
    gated = tf_gpp.prunable(_mlp())
    gated.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 6)).astype("float32"), rng.integers(0, 3, 64)
    gated.fit(x, y, epochs=2, batch_size=32, verbose=0, shuffle=False, callbacks=[callback])
    return {layer.name: layer.units for layer in tf_gpp.strip(gated).layers if isinstance(layer, keras.layers.Dense)}


def test_max_pruning_ratio_limits_the_masks_and_survives_the_config():
    """h1 (12 units) and h2 (9) keep at least half of their units, counted on the stripped model;
    without the limit the same target leaves fewer; the option round-trips through the config."""
    free = _stripped_widths(tf_gpp.PruningCallback(target_params=0.45, importance="l1"))
    assert free["h1"] < 6 or free["h2"] < 5
    limited = tf_gpp.PruningCallback(target_params=0.45, importance="l1", max_pruning_ratio=0.5)
    config = json.loads(json.dumps(limited.get_config()))
    assert config["max_pruning_ratio"] == 0.5
    restored = tf_gpp.PruningCallback.from_config(config)
    widths = _stripped_widths(limited)
    assert widths["h1"] >= 6 and widths["h2"] >= 5
    assert _stripped_widths(restored) == widths
    old = {k: v for k, v in config.items() if k != "max_pruning_ratio"}  # a config from before the option
    assert tf_gpp.PruningCallback.from_config(old).constraints.max_pruning_ratio == 1.0
