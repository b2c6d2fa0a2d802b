import keras
import numpy as np
import pytest

from tests.digits_model import digits_cnn, digits_split
from tf_gpp.graph import DependencyGraph
from tf_gpp.importance import GPPUtility, get_importance
from tf_gpp.importance.gates import gated_model

NAMES = ["gpp", "gpp_grad", "gpp_lda", "gpp_linear", "l1", "bn_scale", "taylor", "random"]


@pytest.fixture(scope="module")
def trained():
    m = digits_cnn(epochs=3)
    # kill 8 filters of c2 (zero kernel, BN gamma/beta): they carry nothing
    c2, bn2 = m.get_layer("c2"), m.get_layer("bn2")
    k, b = c2.get_weights()
    k[..., :8] = 0
    b[:8] = 0
    c2.set_weights([k, b])
    g, be, mu, var = bn2.get_weights()
    g[:8], be[:8] = 0, 0
    bn2.set_weights([g, be, mu, var])
    return m, DependencyGraph(m)


@pytest.mark.parametrize("name", NAMES)
def test_every_importance_scores_every_group(trained, name):
    m, dep = trained
    imp = get_importance(name)
    imp.prepare(m, dep, digits_split()[0])
    for g in dep.groups:
        s = imp(dep, g)
        assert s.shape == (g.size,)
        assert np.all(np.isfinite(s)) and np.all(s >= 0)
    if name != "random":
        c2_group = next(g for g in dep.groups if "c2" in g.producers)
        s = imp(dep, c2_group)
        assert s[:8].max() <= np.sort(s[8:])[0] + 1e-12, f"{name}: dead filters must score lowest"


def test_gates_do_not_change_outputs(trained):
    m, dep = trained
    gated, gates = gated_model(dep, ["c1", "c2", "fc"], feature_layer="fc")
    x = digits_split()[1][0][:16]
    out, feats = gated(x, training=False)
    np.testing.assert_allclose(out, m(x, training=False), rtol=1e-5, atol=1e-6)
    assert feats.shape == (16, 64) and set(gates) == {"c1", "c2", "fc"}


def test_gpp_utility_concentrates_on_informative_features():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 600)
    x = rng.standard_normal((600, 6)).astype("float32")
    x[:, 0] += 3.0 * y  # only feature 0 separates the classes
    inp = keras.Input((6,))
    h = keras.layers.Dense(6, kernel_initializer="identity", use_bias=False, name="h")(inp)
    m = keras.Model(inp, keras.layers.Dense(3, name="out")(h))
    dep = DependencyGraph(m)
    imp = GPPUtility(trace="deconv")
    imp.prepare(m, dep, (x, y))
    assert imp.final_utility.argmax() == 0
    (group,) = dep.groups
    assert imp(dep, group).argmax() == 0


def test_unknown_importance_and_options():
    with pytest.raises(ValueError, match="unknown importance"):
        get_importance("magic")
    with pytest.raises(ValueError, match="trace"):
        GPPUtility(trace="backwards")
