"""The growth loop: acceptance, budgets, history, errors, saving."""

import numpy as np
import pytest
import tensorflow as tf

from tf_gpp.errors import DataError
from tf_gpp.grow import (
    Grower,
    GrowError,
    InceptionSpec,
    build_inception,
    default_start_spec,
    grow,
    model_cost,
)

EAGER = {"run_eagerly": True}  # tiny runs: tracing a graph per candidate costs more than it saves
HISTORY_KEYS = {"step", "round", "action", "target", "modules", "name", "params", "macs",
                "val_accuracy", "val_loss", "accepted", "reason", "epochs", "seconds", "spec"}


@pytest.fixture(scope="module")
def grown(tiny_digits):
    """One round, widen before add; min_delta=-1 accepts the first candidate."""
    return grow(
        tiny_digits, start=1, start_width=4, max_rounds=1, min_delta=-1.0, actions=("widen", "add"),
        epochs_per_round=1, compile_kwargs=EAGER, seed=0, verbose=1,
    )


def test_history_and_accepted_growth(grown, tiny_digits):
    hist = grown.history
    assert [h["action"] for h in hist] == ["start", "widen"]
    assert all(set(h) == HISTORY_KEYS for h in hist)
    assert all(h["accepted"] for h in hist)
    assert [h["step"] for h in hist] == [0, 1] and [h["round"] for h in hist] == [0, 1]
    assert hist[0]["name"] == "Inception-8" and hist[0]["modules"] == 2
    assert hist[1]["params"] > hist[0]["params"] and hist[1]["macs"] > hist[0]["macs"]
    assert hist[1]["target"] == "m2"  # reduction m2 (8 conv channels) is narrower than m1 (12)
    assert all(0.0 <= h["val_accuracy"] <= 1.0 for h in hist)
    assert grown.stop_reason.startswith("max_rounds")
    assert InceptionSpec.from_dict(hist[-1]["spec"]) == grown.spec
    cost = model_cost(grown.model)
    assert (cost.params, cost.macs) == (hist[-1]["params"], hist[-1]["macs"])
    assert grown.model.name == grown.spec.model_name
    assert grown.val_accuracy == hist[-1]["val_accuracy"]
    assert "stop: max_rounds" in grown.summary()


def test_budget_stops_growth_without_training_candidates(tiny_digits, capsys):
    start = default_start_spec((8, 8, 1), 10, width=2, modules=1)
    macs = model_cost(build_inception(start)).macs
    result = grow(tiny_digits, start=start, max_macs=macs, max_rounds=3, epochs_per_round=1,
                  compile_kwargs=EAGER, verbose=1)
    assert result.stop_reason.startswith("budget")
    assert result.spec == start
    skipped = result.history[1:]
    assert [h["action"] for h in skipped] == ["add", "widen"]
    assert all(not h["accepted"] and h["val_accuracy"] is None and h["epochs"] == 0
               for h in skipped)
    assert all(h["macs"] > macs for h in skipped)
    out = capsys.readouterr().out  # progress: one line per step, then the stop line
    assert out.count("[grow] step") == 3 and "over budget" in out and "[grow] stop: budget" in out


def test_no_improvement_stops_with_continued_baseline(tiny_digits):
    result = grow(tiny_digits, start=1, start_width=2, max_rounds=3, min_delta=0.99,
                  actions=("add",), baseline="continued", epochs_per_round=1,
                  compile_kwargs=EAGER, verbose=0)
    assert result.stop_reason.startswith("no improvement")
    assert [(h["action"], h["accepted"]) for h in result.history] == [
        ("start", True), ("continue", True), ("add", False)]
    assert result.val_accuracy == result.history[1]["val_accuracy"]  # the continued net
    assert len(result.model.layers) == len(build_inception(result.spec).layers)


def test_saves_and_loads_keras(grown, tmp_path):
    import keras

    path = tmp_path / "grown.keras"
    grown.model.save(path)
    loaded = keras.models.load_model(path)
    x = np.random.default_rng(0).uniform(size=(4, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(np.asarray(loaded(x)), np.asarray(grown.model(x)), rtol=1e-5,
                               atol=1e-5)
    assert loaded.name == grown.model.name


def _pipe(x, y, batch=8):
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


@pytest.fixture(scope="module")
def xs():
    return np.random.default_rng(0).uniform(size=(16, 8, 8, 1)).astype("float32")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_params": 100}, "max_params=100 is smaller than the starting network"),
        ({"max_macs": 10}, "max_macs=10 is smaller than the starting network"),
        ({"num_classes": 1}, "num_classes"),
        ({"min_delta": 2}, "min_delta"),
        ({"actions": ("deepen",)}, "actions"),
        ({"epochs_per_round": 0}, "epochs_per_round"),
        ({"max_rounds": -1}, "max_rounds"),
        ({"widen_factor": 1.0}, "widen_factor"),
        ({"compile_kwargs": {"loss": "mse"}}, "compile_kwargs"),
        ({"baseline": "best"}, "baseline"),
        ({"start": InceptionSpec((8, 8, 1), 3)}, "num_classes"),
    ],
)
def test_bad_requests(xs, kwargs, match):
    y = np.arange(16) % 4
    args = {"num_classes": 4, "compile_kwargs": EAGER, **kwargs}
    with pytest.raises(GrowError, match=match):
        grow(_pipe(xs, y), _pipe(xs, y), verbose=0, **args)


def test_input_too_small_for_reductions(xs):
    start = {"input_shape": [8, 8, 1], "num_classes": 4, "stem_filters": 2,
             "modules": [{"name": f"r{i}", "widths": [1, 1, 1], "reduction": True}
                         for i in range(4)]}
    y = np.arange(16) % 4
    with pytest.raises(GrowError, match=r"too small for 4 reduction.*>= 16"):
        grow(_pipe(xs, y), _pipe(xs, y), start=start, compile_kwargs=EAGER, verbose=0)


@pytest.mark.parametrize(
    "y, match",
    [
        (np.linspace(0, 3, 16).astype("float32"), "continuous"),
        (np.zeros(16, "int32"), "single class"),
        (np.arange(16) % 6, "num_classes=4"),
        (np.eye(4, dtype="float32")[np.arange(16) % 4], "one-hot"),
    ],
)
def test_non_classification_data(xs, y, match):
    with pytest.raises(DataError, match=match):
        grow(_pipe(xs, y), _pipe(xs, y), num_classes=4, verbose=0, compile_kwargs=EAGER)


def test_data_problems(xs):
    y = np.arange(16) % 4
    with pytest.raises(GrowError, match="val_data is required"):
        grow(_pipe(xs, y), None, num_classes=4)
    with pytest.raises(DataError, match="tf.data.Dataset"):
        grow((xs, y), _pipe(xs, y), num_classes=4)
    with pytest.raises(DataError, match=r"input_shape=\(9, 9, 1\)"):
        grow(_pipe(xs, y), _pipe(xs, y), input_shape=(9, 9, 1), num_classes=4)
    with pytest.raises(GrowError, match="num_classes is required"):
        Grower().run(_pipe(xs, y), _pipe(xs, y))
