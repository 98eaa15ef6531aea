"""shared.merge_patch: RFC 7396 JSON merge patch, including every example of the RFC's appendix A."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from shared.merge_patch import apply

RFC_7396_EXAMPLES: list[tuple[Any, Any, Any]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "expected"), RFC_7396_EXAMPLES)
def test_rfc_7396_examples(target: Any, patch: Any, expected: Any) -> None:
    assert apply(target, patch) == expected


def test_the_target_is_not_modified() -> None:
    target = {"a": {"b": 1, "c": [1, 2]}, "d": 2}
    before = copy.deepcopy(target)
    apply(target, {"a": {"b": None, "e": 3}, "d": None})
    assert target == before


def test_empty_patch_changes_nothing() -> None:
    assert apply({"a": 1, "b": {"c": 2}}, {}) == {"a": 1, "b": {"c": 2}}


def test_false_and_zero_are_values_not_removals() -> None:
    assert apply({"a": True, "b": 1, "c": "x"}, {"a": False, "b": 0, "c": ""}) == {"a": False, "b": 0, "c": ""}
