"""The one rule for choosing classes by name or id (data.classes, data filter --keep, synth --classes)."""

from __future__ import annotations

import pytest

from adlab.classes import resolve_classes
from adlab.errors import DataError

NAMES = ["cat", "dog", "bird"]


def test_by_name_and_id_in_the_given_order():
    assert resolve_classes(["bird", "cat"], NAMES, "k") == [2, 0]
    assert resolve_classes([1, "bird"], NAMES, "k") == [1, 2]
    assert resolve_classes(["2"], NAMES, "k") == [2]  # a digit string that is not a name is an id


def test_digit_names_are_names_before_ids():
    names = [str(i) for i in range(10)]
    assert resolve_classes([3, "5"], names, "k") == [3, 5]
    shuffled = ["7", "3", "1"]
    assert resolve_classes(["3"], shuffled, "k") == [1]  # the name '3', not id 3
    assert resolve_classes([2], shuffled, "k") == [2]  # an int is always an id


def test_case_insensitive_and_spaces_ignored():
    names = ["Trouser", "Bag", "Ankle boot"]
    assert resolve_classes(["bag", " ANKLE BOOT "], names, "k") == [1, 2]


def test_exact_spelling_wins_over_a_case_insensitive_match():
    names = ["Car", "car", "bike"]
    assert resolve_classes(["car", "Car"], names, "k") == [1, 0]
    with pytest.raises(DataError, match=r"^k: class 'CAR' matches Car, car ignoring case; give the exact name$"):
        resolve_classes(["CAR"], names, "k")


def test_unknown_names_all_listed_with_the_valid_ones_and_the_key():
    with pytest.raises(DataError) as info:
        resolve_classes(["cat", "fish", "cow"], NAMES, "data.classes")
    assert str(info.value) == "data.classes: unknown classes 'fish', 'cow' (valid: cat, dog, bird)"
    with pytest.raises(DataError, match=r"^f\.yaml: keep: unknown class 'fish' \(valid"):
        resolve_classes(["fish"], NAMES, "f.yaml: keep")


def test_a_long_list_of_valid_names_is_cut_short():
    names = [f"c{i}" for i in range(1000)]
    with pytest.raises(DataError) as info:
        resolve_classes(["nope"], names, "k")
    message = str(info.value)
    assert "c29, ... (1000 in all)" in message and "c30" not in message and "\n" not in message


@pytest.mark.parametrize("bad", [3, -1, "7"])
def test_id_out_of_range(bad):
    with pytest.raises(DataError, match=r"^k: class id -?\d+ out of range 0\.\.2$"):
        resolve_classes([bad], NAMES, "k")


@pytest.mark.parametrize("wanted", [["dog", 1], ["dog", "DOG"], [0, "0"]])
def test_a_class_given_twice(wanted):
    with pytest.raises(DataError, match=r"^k: class '(dog|cat)' given twice$"):
        resolve_classes(wanted, NAMES, "k")


@pytest.mark.parametrize(
    "wanted, message",
    [
        ([], "give at least one class"),
        ([1.5], "neither"),
        ([True], "neither"),
        ([None], "neither"),
        (["-1"], "unknown"),
    ],
)
def test_other_bad_lists(wanted, message):
    with pytest.raises(DataError, match=f"^k: .*{message}"):
        resolve_classes(wanted, NAMES, "k")
