"""names.py rule by rule: each refused with an input that only that rule catches (a rule masked by
another would let a deliberate bug through: `make mutation`, docs/testing.md)."""

from __future__ import annotations

import hashlib
import random

import pytest

from adlab.errors import ConfigError, DataError
from adlab.names import MAX_NAME_BYTES, check_name, generated_name, name_field, name_problem


@pytest.mark.parametrize(
    "value",
    [
        "a",
        "run-1",
        "lr=0.1,wd=1e-4",
        "a.b",
        "a . b",
        "résumé",
        "日本",
        "a b",
        "a~b",
        "x" * MAX_NAME_BYTES,
        "é" * (MAX_NAME_BYTES // 2),
        "a.",
        "a\x80b",
        "f$^$",
    ],
)
def test_names_that_are_kept_as_given(value):
    assert name_problem(value) is None
    assert check_name(value, "key") is value
    assert name_field(value) is value


@pytest.mark.parametrize("value, kind", [(3, "int"), (None, "NoneType"), (b"a", "bytes"), (["a"], "list")])
def test_only_text_is_a_name(value, kind):
    assert name_problem(value) == f"expected a text name, got {kind}"


@pytest.mark.parametrize("value", ["", " ", "   ", "\u00a0", "\u3000"])
def test_an_empty_name(value):
    assert name_problem(value) == "empty name"


# Each input below is caught by its rule alone: no other character or position rule applies to it.


@pytest.mark.parametrize("value", ["a..b", "x..", "a...b", "é..é"])
def test_dotdot_inside_a_name(value):
    assert name_problem(value) == f"{value!r} contains '..'"


@pytest.mark.parametrize("value", ["/tmp/x", "/", "C:\\x", "c:/x", "Z:\\"])
def test_absolute_paths(value):
    assert name_problem(value) == f"{value!r} is an absolute path, not a name"


@pytest.mark.parametrize("value", ["ab:/x", "1:/x", "C:x"])
def test_not_absolute_but_still_refused_for_their_characters(value):
    assert "absolute" not in name_problem(value) and "contains" in name_problem(value)


def test_absolute_path_rule_comes_before_dotdot():
    assert name_problem("/a/../b") == "'/a/../b' is an absolute path, not a name"


@pytest.mark.parametrize("char", list('/\\<>:"|?*') + [chr(c) for c in range(0x20)] + ["\x7f"])
def test_each_forbidden_character(char):
    value = f"a{char}b"
    assert name_problem(value) == (
        f'{value!r} contains {char!r} (not allowed in names: / \\ < > : " | ? * or control characters)'
    )


@pytest.mark.parametrize("value", [" a", "a ", "\u00a0a", "a\u2003"])
def test_leading_or_trailing_space(value):
    assert name_problem(value) == f"{value!r} starts or ends with a space"


@pytest.mark.parametrize("value", [".", ".hidden", ".a.b"])
def test_a_leading_dot(value):
    assert name_problem(value) == f"{value!r} starts with '.' (hidden or special folder)"


def test_text_that_is_not_utf8():
    value = "a\udcffb"
    assert name_problem(value) == f"{value!r} is not valid UTF-8 text"


@pytest.mark.parametrize(
    "value, size",
    [
        ("x" * (MAX_NAME_BYTES + 1), MAX_NAME_BYTES + 1),
        ("é" * (MAX_NAME_BYTES // 2 + 1), MAX_NAME_BYTES + 2),
        ("x" * 300, 300),
    ],
)
def test_too_long_in_bytes(value, size):
    assert name_problem(value) == f"name of {size} bytes is too long (at most {MAX_NAME_BYTES})"


def test_messages_quote_at_most_60_characters():
    value = "a" * 100 + ".." + "b" * 100
    assert name_problem(value) == f"{value[:60]!r} contains '..'"
    for value in ("/" + "a" * 100, "a" * 100 + "|", " " + "a" * 100, "." + "a" * 100, "a" * 100 + "\udcff"):
        assert repr(value[:60]) in name_problem(value) and repr(value[:61]) not in name_problem(value)


def test_check_name_raises_the_given_error_naming_the_key():
    with pytest.raises(ConfigError) as info:
        check_name("../x", "variants.a")
    assert str(info.value) == "variants.a: '../x' contains '..'"
    with pytest.raises(DataError, match=r"^classes\[2\]: 'a\|b' contains '\|'"):
        check_name("a|b", "classes[2]", DataError)


def test_name_field_passes_none_and_raises_value_error():
    assert name_field(None) is None
    with pytest.raises(ValueError) as info:
        name_field("a..b")
    assert str(info.value) == "'a..b' contains '..'"
    with pytest.raises(ValueError, match="empty name"):
        name_field("")


# --- generated_name: made by adlab from values, never refused ----------------------------------------------


@pytest.mark.parametrize(
    "text, name",
    [
        ("lr=0.1,wd=1e-4", "lr=0.1,wd=1e-4"),
        ("a b/c", "a_b_c"),
        ("a..b", "a_b"),
        ("a  /\\<>b", "a_b"),
        (".hidden", "hidden"),
        ("...x", "_.x"),
        ("", "run"),
        (".", "run"),
        ("..", "_"),
        ("résumé", "r_sum_"),
        ("A-Z+a_z", "A-Z+a_z"),
        ("Xray.X", "Xray.X"),  # only leading dots go
    ],
)
def test_generated_names(text, name):
    assert generated_name(text) == name


def test_a_long_generated_name_keeps_its_start_and_gains_a_hash():
    limit = MAX_NAME_BYTES - 20
    assert generated_name("x" * limit) == "x" * limit
    text = "x" * (limit + 1)
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    assert generated_name(text) == "x" * (MAX_NAME_BYTES - 32) + "~" + digest
    a, b = generated_name("y" * 200 + "a"), generated_name("y" * 200 + "b")
    assert a != b and len(a) == len(b) == MAX_NAME_BYTES - 32 + 11
    odd = "z" * 200 + "\udcff"
    assert generated_name(odd).endswith(hashlib.sha256(odd.encode("utf-8", "surrogateescape")).hexdigest()[:10])


def test_every_generated_name_is_a_valid_name():
    rng = random.Random(0)
    alphabet = "ab.-_=/\\ :é\x00\t~"
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 160)))
        assert name_problem(generated_name(text)) is None, text
