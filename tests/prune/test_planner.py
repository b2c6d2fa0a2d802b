import keras
import numpy as np
import pytest

import tf_gpp
from tf_gpp.graph import DependencyGraph
from tf_gpp.profile import Cost
from tf_gpp.prune import Constraints, estimate_cost, plan_global, plan_threshold
from tf_gpp.surgery import rebuild


def cnn() -> keras.Model:
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(24, 3, padding="same", name="c1")(inp)
    x = keras.layers.BatchNormalization(name="bn")(x)
    y = keras.layers.Conv2D(24, 3, padding="same", name="c2")(x)
    x = keras.layers.Add(name="add")([x, y])
    x = keras.layers.SeparableConv2D(20, 3, name="sep")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(16, activation="relu", name="fc")(x)
    return keras.Model(inp, keras.layers.Dense(4, name="out")(x))


def scores(dep, seed=0):
    rng = np.random.default_rng(seed)
    return {g.index: rng.random(g.size) for g in dep.groups}


def test_constraints_round_and_minimum():
    c = Constraints(round_to=8, min_channels=4)
    assert c.allowed(24, 5) == 0  # 19 kept -> rounded up to 24
    assert c.allowed(24, 9) == 8  # 15 -> 16 kept
    assert c.allowed(24, 23) == 16  # at least 4 kept -> rounded up to 8
    assert c.allowed(6, 5) == 2  # narrower than round_to: only the minimum applies
    with pytest.raises(ValueError, match="round_to"):
        Constraints(round_to=0)


def test_estimate_cost_equals_profile_of_rebuilt_model():
    m = cnn()
    dep = DependencyGraph(m)
    plan = {g.index: list(range(0, g.size, 3)) for g in dep.groups}
    params, macs = estimate_cost(dep, plan)
    p = tf_gpp.profile(rebuild(dep, dep.removed_units(plan)))
    assert (params, macs) == (p.params, p.macs)


@pytest.mark.parametrize("fraction", [0.7, 0.4])
def test_global_plan_meets_macs_target_with_round_to(fraction):
    m = cnn()
    dep = DependencyGraph(m)
    base = tf_gpp.profile(m).macs
    c = Constraints(round_to=4)
    plan = plan_global(dep, scores(dep), c, target_macs=int(fraction * base))
    _, macs = estimate_cost(dep, plan)
    assert macs <= fraction * base
    slim = rebuild(dep, dep.removed_units(plan))
    for name in ("c1", "sep", "fc"):
        assert slim.get_layer(name).get_weights()[-1].shape[0] % 4 == 0


def test_global_plan_ignores_layers_and_rejects_impossible_targets():
    m = cnn()
    dep = DependencyGraph(m)
    c = Constraints(ignored_layers={"fc"})
    plan = plan_global(dep, scores(dep), c, target_params=int(0.6 * m.count_params()))
    fc_group = next(g.index for g in dep.groups if "fc" in g.producers)
    assert fc_group not in plan
    with pytest.raises(tf_gpp.PruningRequestError, match="cannot be met"):
        plan_global(dep, scores(dep), Constraints(min_channels=8), target_macs=10)


def test_threshold_plan_removes_units_below_eta_std():
    m = cnn()
    dep = DependencyGraph(m)
    s = scores(dep)
    plan = plan_threshold(dep, s, eta=1.0, constraints=Constraints())
    for gi, units in plan.items():
        cut = np.std(s[gi])
        assert all(s[gi][u] < cut for u in units)
        assert len(units) == int(np.sum(s[gi] < cut))


def dynamic_cnn() -> keras.Model:
    inp = keras.Input((None, None, 3), name="img")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="c1")(inp)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(8, activation="relu", name="fc")(x)
    return keras.Model(inp, keras.layers.Dense(3, name="out")(x))


def test_planner_on_dynamic_model_prices_at_the_given_shape():
    m = dynamic_cnn()
    shape = (16, 16, 3)
    with pytest.raises(tf_gpp.ArgumentError, match="'img'"):
        plan_global(DependencyGraph(m), scores(DependencyGraph(m)), Constraints(), target_macs=1000)
    dep = DependencyGraph(m, input_shape=shape)
    base = tf_gpp.profile(m, input_shape=shape).macs
    assert estimate_cost(dep, {})[1] == base
    target = int(0.5 * base)
    plan = plan_global(dep, scores(dep), Constraints(), target_macs=target)
    slim = rebuild(dep, dep.removed_units(plan))
    measured = tf_gpp.profile(slim, input_shape=shape)
    assert measured.macs <= target
    assert estimate_cost(dep, plan) == (measured.params, measured.macs)
    # by hand, from the slim model's widths at 16x16
    f1, f2 = slim.get_layer("c1").filters, slim.get_layer("c2").filters
    units = slim.get_layer("fc").units
    assert measured.macs == 16 * 16 * 9 * (3 * f1 + f1 * f2) + f2 * units + units * 3


def test_per_layer_threshold_is_one_eta_times_std_meeting_the_target():
    """strategy="per_layer": every group cut at ``eta * std`` of its non-zero scores, with the
    smallest single eta whose plan meets the target (reference: the rule written out by hand,
    eta swept over every candidate value)."""
    m = cnn()
    dep = DependencyGraph(m)
    s = scores(dep, seed=3)
    first = dep.groups[0].index
    s[first][:5] = 0.0  # zero utility (units outside CVIU's top-M'): below any eta > 0
    base = tf_gpp.profile(m).macs
    target = int(0.45 * base)
    plan = tf_gpp.prune.PerLayerThreshold(rounds=1).plan(
        dep, s, Constraints(), round=1, rounds=1, base=Cost(macs=base),
        target=Cost(macs=target))

    spread = {g: float(np.std(v[v != 0])) for g, v in s.items()}

    def by_hand(eta: float) -> dict:
        out = {}
        for g, v in s.items():
            cut = [int(u) for u in np.flatnonzero(v < eta * spread[g])]
            cut = sorted(np.argsort(v, kind="stable")[:min(len(cut), len(v) - 1)].tolist())  # >= 1 kept
            if cut:
                out[g] = cut
        return out

    etas = sorted({float(x / spread[g]) + 1e-9 for g, v in s.items() for x in v})
    eta = next(e for e in etas if estimate_cost(dep, by_hand(e))[1] <= target)
    assert estimate_cost(dep, plan)[1] <= target
    assert {g: sorted(u) for g, u in plan.items()} == by_hand(eta)
    assert set(range(5)) <= set(plan[first])


def test_per_layer_strategy_reaches_the_target_in_compress():
    from tf_gpp.prune.config import CompressConfig
    from tf_gpp.prune.schedules import PerLayerThreshold, get, serialize

    assert get(serialize(PerLayerThreshold(rounds=3))) == PerLayerThreshold(rounds=3)
    assert CompressConfig(target_macs=0.3, strategy="per_layer").schedule() == PerLayerThreshold(rounds=4)
    with pytest.raises(tf_gpp.PruningRequestError, match="per_layer.*needs target_macs"):
        CompressConfig(strategy="per_layer").validate()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 4, 96)
    res = tf_gpp.compress(cnn(), (x, y), (x, y), target_macs=0.4, strategy="per_layer", rounds=2,
                          finetune_epochs=0, final_finetune_epochs=0, verbose=0)
    assert res.target_met and tf_gpp.profile(res.model).macs <= 0.4 * tf_gpp.profile(cnn()).macs


def _widths(model) -> dict[str, int]:
    """Output widths of the conv and dense layers, read from the layers themselves."""
    return {layer.name: layer.get_config().get("filters") or layer.get_config()["units"] for layer in model.layers
            if isinstance(layer, keras.layers.Conv2D | keras.layers.SeparableConv2D | keras.layers.Dense)}


def skewed_scores(dep):
    """Random scores, but fc's units all score near 0 but one: a global ranking strips fc first."""
    out = scores(dep)
    for g in dep.groups:
        if "fc" in g.producers:
            out[g.index] = np.r_[100.0, np.full(g.size - 1, 1e-3)]
    return out


@pytest.mark.parametrize("ratio", [0.5, 0.75, 0.9])
def test_max_pruning_ratio_keeps_that_share_of_every_layer(ratio):
    """No layer keeps fewer than ceil((1 - ratio) * its width), the widths read from the layers;
    without the limit the same scores strip fc to 1 unit."""
    m = cnn()
    dep = DependencyGraph(m)
    floors = {name: int(np.ceil((1 - ratio) * w)) for name, w in _widths(m).items()}
    target = int(0.4 * estimate_cost(dep, {})[1])
    unlimited = _widths(rebuild(dep, dep.removed_units(plan_global(dep, skewed_scores(dep), Constraints(), target))))
    assert unlimited["fc"] == 1
    plan = plan_global(dep, skewed_scores(dep), Constraints(max_pruning_ratio=ratio), target)
    slim = _widths(rebuild(dep, dep.removed_units(plan)))
    assert all(slim[name] >= floors[name] for name in floors), (slim, floors)
    assert slim["fc"] == floors["fc"]  # held at its floor
    assert estimate_cost(dep, plan)[1] <= target


def test_an_unreachable_target_names_max_pruning_ratio():
    dep = DependencyGraph(cnn())
    with pytest.raises(tf_gpp.PruningRequestError, match=r"max_pruning_ratio=0.5"):
        plan_global(dep, scores(dep), Constraints(max_pruning_ratio=0.5), target_macs=int(0.1 * estimate_cost(dep, {})[1]))


def test_max_pruning_ratio_is_a_share_of_the_base_width_across_steps():
    """Two Pruner steps: the second, on the already narrower model, still keeps the share of
    the first model's widths; a pruned model continued with the base widths does the same."""
    m = cnn()
    floors = {name: int(np.ceil(0.5 * w)) for name, w in _widths(m).items()}
    pruner = tf_gpp.Pruner(m, importance="l1", max_pruning_ratio=0.5)
    first = pruner.step(target_macs=0.6)
    second = pruner.step(target_macs=int(0.3 * first.base_macs))
    widths = _widths(second.model)
    assert all(widths[name] >= floors[name] for name in floors) and widths != _widths(first.model)
    assert any(widths[name] == floors[name] for name in floors)  # the limit binds
    based = Constraints(max_pruning_ratio=0.5).with_base(DependencyGraph(m))
    again = tf_gpp.Pruner(first.model, importance="l1", constraints=based, base=Cost(first.base_params, first.base_macs),
                          round=1).step(target_macs=int(0.3 * first.base_macs))
    assert _widths(again.model) == widths


@pytest.mark.parametrize("bad", [0, 1.5, -0.1, True, "0.9"])
def test_max_pruning_ratio_out_of_range_is_refused_naming_it(bad):
    with pytest.raises(tf_gpp.PruningRequestError, match=r"max_pruning_ratio=.*in \(0, 1\]"):
        Constraints(max_pruning_ratio=bad)
    with pytest.raises(tf_gpp.PruningRequestError, match=r"max_pruning_ratio="):
        tf_gpp.CompressConfig(target_macs=0.3, max_pruning_ratio=bad).validate()
