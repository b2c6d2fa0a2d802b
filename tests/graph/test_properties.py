"""Property tests: random DAGs of supported layers, random channel subsets."""

import keras
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tf_gpp
from tf_gpp.graph import DependencyGraph
from tf_gpp.testing import equivalence_error, random_request

OPS = ["conv", "bn", "relu", "dw", "sep", "add", "concat", "pool", "se", "convt", "gconv"]


def build(ops: list[tuple[str, int, int]]) -> keras.Model:
    inp = keras.Input((6, 6, 3))
    tensors = [keras.layers.Conv2D(4, 1, name="stem")(inp)]
    for i, (op, a, b) in enumerate(ops):
        x = tensors[a % len(tensors)]
        c = x.shape[-1]
        name = f"{op}{i}"
        if op == "conv":
            y = keras.layers.Conv2D(2 + b % 6, 1 + 2 * (b % 2), padding="same", name=name)(x)
        elif op == "bn":
            y = keras.layers.BatchNormalization(name=name)(x)
        elif op == "relu":
            y = keras.layers.ReLU(name=name)(x)
        elif op == "dw":
            y = keras.layers.DepthwiseConv2D(3, depth_multiplier=1 + b % 2, padding="same", name=name)(x)
        elif op == "sep":
            y = keras.layers.SeparableConv2D(2 + b % 5, 3, padding="same", name=name)(x)
        elif op == "pool":
            y = keras.layers.MaxPooling2D(3, strides=1, padding="same", name=name)(x)
        elif op == "convt":
            y = keras.layers.Conv2DTranspose(2 + b % 4, 3, padding="same", name=name)(x)
        elif op == "gconv":
            g = 2 if c % 2 == 0 else 1
            y = keras.layers.Conv2D(2 * (1 + b % 3), 3, groups=g, padding="same", name=name)(x)
        elif op == "se":
            s = keras.layers.GlobalAveragePooling2D(keepdims=True)(x)
            s = keras.layers.Conv2D(c, 1, activation="sigmoid", name=name + "_e")(s)
            y = keras.layers.Multiply(name=name)([x, s])
        else:
            z = tensors[b % len(tensors)]
            if op == "add":
                same = [t for t in tensors if t.shape[-1] == c and t is not x]
                if not same:
                    continue
                y = keras.layers.Add(name=name)([x, same[b % len(same)]])
            else:
                y = keras.layers.Concatenate(name=name)([x, z])
        tensors.append(y)
    x = keras.layers.Concatenate(name="join")(tensors[-2:]) if len(tensors) > 1 else tensors[-1]
    head = keras.layers.Flatten() if len(ops) % 2 else keras.layers.GlobalAveragePooling2D()
    return keras.Model(inp, keras.layers.Dense(3, name="out")(head(x)))


dags = st.lists(
    st.tuples(st.sampled_from(OPS), st.integers(0, 20), st.integers(0, 20)), min_size=2, max_size=9
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=dags, fraction=st.floats(0.1, 0.9), seed=st.integers(0, 1000))
def test_random_dag_random_channels_equivalent(ops, fraction, seed):
    keras.backend.clear_session()
    m = build(ops)
    dep = DependencyGraph(m)
    plan = random_request(dep, fraction, seed=seed)
    if not plan:
        return
    err, slim = equivalence_error(m, plan, dep=dep)
    assert err < 1e-5
    assert slim.output_shape == m.output_shape
    assert tf_gpp.profile(slim).params < tf_gpp.profile(m).params
    # every unit of a group is a disjoint set of channels of each member layer
    for g in dep.groups:
        for layer in g.layers:
            pos = np.concatenate(g.channels(layer))
            assert len(pos) == len(set(pos.tolist()))
