"""A product's stored bytes unpack to its JSON exactly, whether the process has seen those bytes before or not."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import orjson

from shared.models import Product
from shared.readmodel import render


def _product(i: int, description: str = "") -> bytes:
    at = dt.datetime(2026, 12, 3, 10, 0, tzinfo=dt.UTC)
    p = Product(
        id=i,
        slug=f"spade-{i}",
        name=f"Spade {i}",
        description=description,
        price=Decimal("9.50"),
        currency="EUR",
        category="garden",
        stock=i,
        attributes={},
        is_active=True,
        image_status="none",
        image_original=None,
        image_thumbnails={},
        image_error=None,
        created_at=at,
        updated_at=at,
        version=1,
    )
    return render.dumps(render.product(p, "/media/"))


def test_a_copy_unpacks_to_the_same_json_the_first_time_and_every_time_after() -> None:
    # Given a product's JSON and its stored form
    body = _product(1)
    stored = render.pack(body)
    # When it is unpacked again and again (the second time from what the process remembers)
    first, second = render.unpack(stored), render.unpack(bytes(stored))
    # Then each is the JSON, byte for byte
    assert first == second == body
    assert orjson.loads(second)["slug"] == "spade-1"


def test_remembered_copies_stay_within_their_byte_budget() -> None:
    # Given more distinct copies than the budget holds
    size = len(render.pack(_product(0, "x" * 2000))) + len(_product(0, "x" * 2000))
    count = render.UNPACKED_BYTES // size + 50
    # When each is unpacked
    for i in range(count):
        assert render.unpack(render.pack(_product(i, "x" * 2000))) == _product(i, "x" * 2000)
    # Then the process keeps no more than the budget, and the newest are still remembered
    remembered = sum(len(k) + len(v) for k, v in render._unpacked.items())
    assert remembered <= render.UNPACKED_BYTES
    assert render.pack(_product(count - 1, "x" * 2000)) in render._unpacked


def test_a_page_of_joined_copies_unpacks_whole_and_is_not_remembered() -> None:
    # Given a page's copies joined, longer than one remembered copy may be
    bodies = [_product(i, "y" * 400) for i in range(20)]
    joined = b"\0".join(render.pack(b) for b in bodies)
    assert len(joined) > render.UNPACKED_ITEM_MAX
    # When it is unpacked
    out = render.unpack(joined)
    # Then every product's JSON comes back, and the page is not kept
    assert out.split(b"\0") == bodies
    assert joined not in render._unpacked
