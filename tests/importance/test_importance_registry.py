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
