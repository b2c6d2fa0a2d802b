"""The schedule registry: register_schedule, get(identifier) and serialize by registered name."""

import json

import pytest

import tf_gpp
from tf_gpp.prune import schedules
from tf_gpp.prune.schedules import Geometric, PerLayerThreshold, Threshold


class _EveryOther(Geometric):
    """A custom schedule with a config of its own."""

    def __init__(self, rounds=None, skip: int = 2) -> None:
        super().__init__(rounds)
        self.skip = skip

    def get_config(self):
        return {**super().get_config(), "skip": self.skip}


def test_builtin_schedules_round_trip_by_name():
    for sched, name in ((Geometric(3), "geometric"), (Threshold(0.1, 0.2), "threshold"),
                        (PerLayerThreshold(2), "per_layer")):
        config = schedules.serialize(sched)
        assert config["class_name"] == name
        assert schedules.get(json.loads(json.dumps(config))) == sched
    assert schedules.get("Threshold") == Threshold() and schedules.get(None) == Geometric()
    assert {"geometric", "threshold", "per_layer"} <= set(schedules.names())


def test_configs_naming_the_python_class_still_load():
    assert schedules.get({"class_name": "PerLayerThreshold", "config": {"rounds": 2}}) == PerLayerThreshold(2)
    assert schedules.get({"class_name": "Geometric", "config": {"rounds": 3}}) == Geometric(3)


def test_custom_schedule_registered_round_trips():
    schedules.register_schedule("every_other_for_test", _EveryOther)
    try:
        config = schedules.serialize(_EveryOther(rounds=2, skip=5))
        assert config == {"class_name": "every_other_for_test", "config": {"rounds": 2, "skip": 5}}
        again = schedules.get(config)
        assert type(again) is _EveryOther and again.skip == 5 and again.rounds == 2
        assert type(schedules.get("every_other_for_test")) is _EveryOther
        with pytest.raises(tf_gpp.ArgumentError, match="already registered"):
            schedules.register_schedule("every_other_for_test", _EveryOther)
    finally:
        schedules.unregister_schedule("every_other_for_test")
    with pytest.raises(tf_gpp.ArgumentError, match="unknown pruning schedule.*register_schedule"):
        schedules.get("every_other_for_test")


def test_unregistered_subclass_is_not_saved_as_its_parent():
    # a subclass inherits the parent's `name`: serializing it as "geometric" would restore a Geometric
    with pytest.raises(tf_gpp.ArgumentError, match=r"register_schedule\('_everyother', _EveryOther\)"):
        schedules.serialize(_EveryOther())
    with pytest.raises(tf_gpp.ArgumentError, match="not a PruningSchedule subclass"):
        schedules.register_schedule("bad", dict)
