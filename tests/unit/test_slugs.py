"""shared.slugs: ASCII lower-case slugs from names, numbered suffixes on collision, the length limit."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.slugs import MAX_LEN, SLUG_RE, base_slug, first_free_number, next_free, with_suffix


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Garden Tools", "garden-tools"),
        ("  Garden   Tools  ", "garden-tools"),
        ("Café Crème", "cafe-creme"),
        ("Ørsted & Søn", "orsted-son"),
        ("C++ / C#", "c-c"),
        ("100% Cotton", "100-cotton"),
        ("---", "fallback"),
        ("!!!", "fallback"),
        ("", "fallback"),
    ],
)
def test_base_slug(name: str, slug: str) -> None:
    assert base_slug(name, "fallback") == slug


@given(st.text(max_size=300))
def test_base_slug_always_matches_the_contract_pattern(name: str) -> None:
    slug = base_slug(name, "item")
    assert SLUG_RE.match(slug)
    assert len(slug) <= MAX_LEN


def test_with_suffix_keeps_within_the_limit_and_the_pattern() -> None:
    base = "a" * 98 + "-b"
    slug = with_suffix(base, 12)
    assert len(slug) <= MAX_LEN
    assert slug.endswith("-12")
    assert SLUG_RE.match(slug)


def test_with_suffix_does_not_leave_a_double_dash() -> None:
    base = "a" * 97 + "-bc"  # cutting 3 characters leaves a trailing dash
    assert with_suffix(base, 2) == "a" * 97 + "-2"


@pytest.mark.parametrize(
    ("taken", "expected"),
    [
        ([], 2),
        (["tools"], 2),
        (["tools", "tools-2", "tools-3"], 4),
        (["tools", "tools-3"], 4),
        (["tools", "tools-extra", "tools-2-2", "tools-x7"], 2),
        (["tools-41", "tools-9"], 42),
    ],
)
def test_first_free_number_is_past_every_number_in_use(taken: list[str], expected: int) -> None:
    assert first_free_number("tools", taken) == expected


@given(st.sets(st.integers(min_value=2, max_value=10_000)), st.booleans())
def test_first_free_number_is_never_taken(numbers: set[int], base_taken: bool) -> None:
    taken = {f"tools-{n}" for n in numbers} | ({"tools"} if base_taken else set())
    assert with_suffix("tools", first_free_number("tools", taken)) not in taken


@given(st.sets(st.integers(min_value=2, max_value=30)), st.booleans())
def test_next_free_is_never_taken(numbers: set[int], base_taken: bool) -> None:
    taken = {f"tools-{n}" for n in numbers} | ({"tools"} if base_taken else set())
    assert next_free("tools", taken) not in taken
