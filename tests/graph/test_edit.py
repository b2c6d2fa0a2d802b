"""graph/edit.py, the one writer of the functional config: insert, drop, outputs, rebuild."""

import keras
import numpy as np
import pytest

import tf_gpp
from tf_gpp.graph import ModelGraph, TensorRef
from tf_gpp.graph.edit import ChannelMask, retarget, tensor_refs
from tf_gpp.importance.gates import ChannelGate

H = TensorRef("h", 0, 0)


def _net() -> keras.Model:
    """``h`` is read by two layers and is a model output."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((6,), name="x")
    h = keras.layers.Dense(5, name="h")(inp)
    a = keras.layers.Dense(4, name="a")(h)
    b = keras.layers.Dense(4, name="b")(h)
    return keras.Model(inp, [keras.layers.Add(name="add")([a, b]), h], name="net")


def _inputs(graph: ModelGraph, layer: str) -> list[TensorRef]:
    return [r for node in graph.nodes_of(layer) for r in node.inputs]


X = np.random.default_rng(0).normal(size=(3, 6)).astype("float32")


def test_insert_after_a_tensor_for_every_reader_and_output():
    model = _net()
    edit = ModelGraph(model).edit()
    out = edit.insert_after(H, ChannelMask(name="m"))
    new = edit.build()
    graph = ModelGraph(new)
    assert out == TensorRef("m", 0, 0)
    assert _inputs(graph, "a") == _inputs(graph, "b") == [out] and out in graph.outputs
    for got, want in zip(new(X), model(X), strict=True):
        np.testing.assert_array_equal(got, want)  # weights copied, the mask at one
    assert [la.name for la in model.layers] == ["x", "h", "a", "b", "add"]  # the model is not touched


def test_insert_before_one_call_then_drop_gives_the_model_back():
    model = _net()
    edit = ModelGraph(model).edit()
    edit.insert_after(H, ChannelMask(name="m", trainable=False), readers=[("a", 0)])
    masked = edit.build()
    graph = ModelGraph(masked)
    assert _inputs(graph, "a") == [TensorRef("m", 0, 0)] and _inputs(graph, "b") == [H] and H in graph.outputs
    masked.get_layer("m").keep.assign(np.array([0, 1, 1, 1, 1], "float32"))
    np.testing.assert_array_equal(masked(X)[1], model(X)[1])  # the output h is not masked
    assert not np.allclose(masked(X)[0], model(X)[0])

    edit = graph.edit()
    assert edit.drop("m") == H
    plain = edit.build()
    assert [la.name for la in plain.layers] == [la.name for la in model.layers]
    for got, want in zip(plain(X), model(X), strict=True):
        np.testing.assert_array_equal(got, want)


def test_names_outputs_and_refusals():
    graph = ModelGraph(_net())
    edit = graph.edit()
    assert edit.free_name("h") == "h_" and edit.free_name("new") == "new"
    with pytest.raises(tf_gpp.UnsupportedModelError, match="'add' must be called once on one tensor"):
        edit.drop("add")
    edit.add_output(TensorRef("a", 0, 0))
    assert len(edit.build().outputs) == 3
    edit = graph.edit()
    edit.reconfigure("a", {**graph.layer_config("a"), "units": -1})
    with pytest.raises(tf_gpp.UnsupportedModelError, match="could not rebuild model 'net' from its config"):
        edit.build()


def test_one_walker_reads_and_retargets_calls_and_output_lists():
    config = _net().get_config()
    assert tensor_refs(config["output_layers"], histories=True) == [TensorRef("add", 0, 0), H]
    call = next(e for e in config["layers"] if e["name"] == "add")["inbound_nodes"][0]
    moved = retarget(call, lambda r: TensorRef("z", 0, r.index) if r.layer == "a" else r)
    assert tensor_refs(moved) == [TensorRef("z", 0, 0), TensorRef("b", 0, 0)]
    assert tensor_refs(call) == [TensorRef("a", 0, 0), TensorRef("b", 0, 0)]  # a copy: the original stays


def test_masks_and_gates_are_one_layer_that_loads_by_its_saved_name():
    assert ChannelGate is ChannelMask is tf_gpp.prune.ChannelMask
    assert keras.saving.get_registered_name(ChannelMask) == "tf_gpp>ChannelMask"  # what masked checkpoints carry
