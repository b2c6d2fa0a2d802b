"""The public importance registry: get(identifier), register_importance, names."""

import numpy as np
import pytest

import tf_gpp
from tf_gpp import importance


class _Ones(importance.Importance):
    name = "ones"

    def __call__(self, dep, group):
        return np.ones(group.size)


def test_get_by_name_dict_and_instance():
    assert isinstance(importance.get("l1"), importance.L1Norm)
    lda = importance.get("gpp_lda")
    assert isinstance(lda, importance.GPPUtility) and lda.get_config()["utility"] == "lda"
    custom = importance.get({"class_name": "gpp_grad", "config": {"utility": "lda", "trace": "linear"}})
    assert custom.get_config()["trace"] == "linear"
    inst = importance.L1Norm()
    assert importance.get(inst) is inst
    assert isinstance(importance.get("gpp"), importance.CVIUUtility)
    assert {"gpp", "gpp_grad", "gpp_lda", "gpp_linear", "l1", "bn_scale", "taylor", "random"} <= set(importance.names())
    with pytest.raises(tf_gpp.PruningRequestError, match="unknown importance 'magic'.*register_importance"):
        importance.get("magic")


def test_registered_importance_is_usable_by_name():
    importance.register_importance("ones_for_test", _Ones)
    try:
        with pytest.raises(tf_gpp.ArgumentError, match="already registered"):
            importance.register_importance("ones_for_test", _Ones)
        assert "ones_for_test" in importance.names()
        import keras

        inp = keras.Input((4,))
        h = keras.layers.Dense(8, name="h")(inp)
        model = keras.Model(inp, keras.layers.Dense(2, name="out")(h))
        res = tf_gpp.Pruner(model, importance="ones_for_test").step(target_params=0.6)
        assert res.removed_units > 0 and res.params <= 0.6 * res.base_params
    finally:
        importance.unregister_importance("ones_for_test")
    assert "ones_for_test" not in importance.names()


class _Stripes(importance.Importance):
    """Data- and weight-free: unit i scores ((i + offset) % 3) + 1, so the plan depends on the config."""

    def __init__(self, offset: int = 0) -> None:
        self.offset = offset

    def __call__(self, dep, group):
        return ((np.arange(group.size) + self.offset) % 3).astype(float) + 1

    def get_config(self):
        return {"offset": self.offset}


@pytest.fixture
def stripes():
    importance.register_importance("stripes_for_test", _Stripes)
    yield "stripes_for_test"
    importance.unregister_importance("stripes_for_test")


def test_custom_importance_serializes_by_its_registered_name(stripes):
    imp = importance.get({"class_name": stripes, "config": {"offset": 2}})
    config = importance.serialize(imp)
    assert config == {"class_name": stripes, "config": {"offset": 2}}
    again = importance.get(config)
    assert type(again) is _Stripes and again.offset == 2
    # an instance made by the user (not by get) is found by its registered class
    assert importance.serialize(_Stripes(1)) == {"class_name": stripes, "config": {"offset": 1}}
    # JSON-ready: what a saved callback config holds
    import json

    assert importance.get(json.loads(json.dumps(config))).offset == 2


def test_builtin_names_round_trip_and_keep_their_name():
    for name in importance.names():
        imp = importance.get(name)
        config = importance.serialize(imp)
        assert config["class_name"] == name
        assert importance.serialize(importance.get(config)) == config
    lda = importance.get(importance.serialize(importance.get("gpp_lda")))
    assert lda.get_config()["utility"] == "lda"
    assert importance.serialize(importance.L1Norm())["class_name"] == "l1"


def test_configs_naming_the_python_class_still_load():
    assert isinstance(importance.get({"class_name": "L1Norm", "config": {}}), importance.L1Norm)
    gpp = importance.get({"class_name": "GPPUtility", "config": {"utility": "lda"}})
    assert isinstance(gpp, importance.GPPUtility) and gpp.utility == "lda"
    assert importance.get({"class_name": "RandomImportance", "config": {"seed": 3}}).seed == 3


def test_unregistered_importance_cannot_be_serialized_and_says_how():
    class Mine(_Stripes):
        pass

    with pytest.raises(tf_gpp.ArgumentError, match=r"register_importance\('mine', Mine\)"):
        importance.serialize(Mine())


def test_register_importance_as_a_decorator():
    try:
        @importance.register_importance("decorated_for_test")
        class Decorated(_Stripes):
            pass

        assert isinstance(importance.get("decorated_for_test"), Decorated)
        assert importance.serialize(Decorated(4))["class_name"] == "decorated_for_test"
        with pytest.raises(tf_gpp.ArgumentError, match="not a tf_gpp.importance.Importance"):
            importance.register_importance("not_an_importance", dict)
    finally:
        importance.unregister_importance("decorated_for_test")
