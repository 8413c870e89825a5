"""Class names as detectors write them -> NOCS class ids (categories.ClassNames) and the
class_aliases parameter."""

import pytest

from posediff_ros.categories import ClassNames
from posediff_ros.ros.params import parse_class_aliases

BOTTLE, BOWL, CAMERA, CAN, LAPTOP, MUG = range(1, 7)


@pytest.mark.parametrize("name, cls", [
    ("cup", MUG), ("Cup", MUG), ("COFFEE_CUP", MUG), ("mug", MUG), ("bottle", BOTTLE),
    ("wine-bottle", BOTTLE), ("bowl", BOWL), ("laptop", LAPTOP), ("laptop_computer", LAPTOP),
    ("camera", CAMERA), ("can", CAN), ("tin can", CAN), ("Tin  Can", CAN), ("6", MUG),
    (" 1 ", BOTTLE),
])
def test_detector_names_resolve_to_nocs_classes(name, cls):
    assert ClassNames().resolve(name) == cls


def test_unknown_names_are_none_and_counted_with_a_bounded_table():
    names = ClassNames()
    assert names.resolve("person") is None and names.resolve("person") is None
    assert names.resolve("7") is None and names.resolve("") is None
    assert names.unknown == {"person": 2, "7": 1, "": 1}
    for k in range(500):  # names from the wire: the table stays bounded
        names.resolve(f"junk{k}")
    assert len(names.unknown) <= ClassNames.MAX_NAMES + 1 and names.unknown["..."] > 0


def test_user_aliases_extend_and_override_the_defaults():
    names = ClassNames(parse_class_aliases(["Tumbler:mug", "cup:bowl", "41:6", ""]))
    assert names.resolve("tumbler") == MUG and names.resolve("41") == MUG
    assert names.resolve("cup") == BOWL  # the user's word wins
    assert ClassNames(defaults=False).resolve("cup") is None


@pytest.mark.parametrize("bad", ["cup", ":mug", "cup:person", "cup:9"])
def test_bad_alias_entries_are_rejected(bad):
    with pytest.raises(ValueError):
        parse_class_aliases([bad])
