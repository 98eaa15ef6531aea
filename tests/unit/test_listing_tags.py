"""What a cached listing page depends on: the tags a product is given and the counters a listing reads agree, so a
write that can change a page always moves it on."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest

from shared.readmodel import keys
from shared.store.products import lexeme_required_by


@pytest.mark.parametrize(
    ("tsquery", "lexeme"),
    [
        ("'steel'", "steel"),
        ("'steel' & 'rake'", "steel"),
        ("'steel' <-> 'shovel'", "shovel"),
        ("'o''brien' & 'tool'", "o'brien"),
        ("'steel' | 'copper'", None),
        ("!'copper'", None),
        ("'steel' & !'copper'", None),
        ("", None),
    ],
)
def test_a_q_names_a_lexeme_only_when_every_match_must_have_it(tsquery: str, lexeme: str | None) -> None:
    assert lexeme_required_by(tsquery) == lexeme


def _tags(price: Decimal) -> set[str]:
    """The tag counters a product at ``price`` bumps (what the projection script derives from its tags)."""
    bucket = keys.price_bucket(keys.price_score(price))
    return {keys.tag_counter(f"p{bucket}"), keys.tag_counter(f"P{bucket // keys.PRICE_GROUP}")}


def test_every_price_in_a_range_bumps_a_counter_the_range_reads() -> None:
    rng = random.Random(7)
    for _ in range(3_000):
        low = Decimal(rng.randrange(0, 10 ** rng.randrange(1, 14))) / 100
        high = low + Decimal(rng.randrange(0, 10 ** rng.randrange(1, 14))) / 100
        counters = keys.price_counters(low, high)
        assert counters is not None
        assert len(counters) <= 2 * (keys.PRICE_GROUP - 1) + 14
        for price in (low, high, (low + high) / 2, low + Decimal("0.01")):
            price = price.quantize(Decimal("0.01"))
            if low <= price <= high:
                assert _tags(price) & set(counters), (low, high, price)
    # Open ends reach the cheapest and the dearest prices
    assert _tags(Decimal("0.00")) & set(keys.price_counters(None, Decimal(1)) or [])
    assert _tags(Decimal("999999999999.99")) & set(keys.price_counters(Decimal(5), None) or [])


def test_price_buckets_keep_the_order_of_prices() -> None:
    cents = sorted(random.Random(3).randrange(0, 10**14) for _ in range(5_000))
    buckets = [keys.price_bucket(c) for c in cents]
    assert buckets == sorted(buckets)


def test_a_products_tags_name_its_price_stock_and_words() -> None:
    tags = keys.product_tags(Decimal("19.99"), 0, ["steel", "spade", "steel"])
    price, stock, words = tags.split(".")
    assert int(price) == keys.price_bucket(1999)
    assert stock == "0"
    assert sorted(words[i : i + 2] for i in range(0, len(words), 2)) == sorted(
        {keys.word_code("steel"), keys.word_code("spade")}
    )
    assert keys.product_tags(Decimal(1), 3, None) == ""
