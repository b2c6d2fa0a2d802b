"""keras.applications models: analyse, prune ~30% of every group, rebuild, check.

The default suite runs two small ones; the full 40-model sweep is slow and is
run by tools/bench_engine.py, which writes benchmarks/results/engine_coverage.md.
"""

import keras
import pytest

import tf_gpp
from tf_gpp.graph import DependencyGraph
from tf_gpp.testing import equivalence_error, random_request, sample_inputs

FAST = {
    "MobileNetV3Small": lambda: keras.applications.MobileNetV3Small(
        weights=None, input_shape=(64, 64, 3), classes=10, classifier_activation=None
    ),
    "MobileNetV2": lambda: keras.applications.MobileNetV2(
        weights=None, alpha=0.35, input_shape=(64, 64, 3), classes=10, classifier_activation=None
    ),
}


def _check(model: keras.Model) -> keras.Model:
    dep = DependencyGraph(model)
    plan = random_request(dep, 0.3, seed=0)
    assert plan, "no prunable group found"
    err, slim = equivalence_error(model, plan, sample_inputs(model), dep=dep)
    assert err < 1e-4
    assert slim.output_shape == model.output_shape
    assert tf_gpp.profile(slim).macs < tf_gpp.profile(model).macs
    return slim


@pytest.mark.parametrize("name", sorted(FAST))
def test_small_applications(name):
    _check(FAST[name]())


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [n for n in dir(keras.applications) if n[0].isupper() and callable(getattr(keras.applications, n))],
)
def test_all_applications(name):
    try:
        model = getattr(keras.applications, name)(weights=None, classifier_activation=None)
    except TypeError:
        model = getattr(keras.applications, name)(weights=None)
    _check(model)
