"""The read model's format flag: the listing scripts and the rebuild name the same value."""

from __future__ import annotations

from shared.readmodel import keys, scripts
from worker.readmodel.rebuild import READY_FIELDS


def test_the_listing_scripts_read_the_sets_only_in_the_format_the_rebuild_sets() -> None:
    assert f"'products') ~= '{keys.PRODUCTS_READY}' then return false" in scripts.LIST_PAGE
    assert f"'products') ~= '{keys.PRODUCTS_READY}' then return false" in scripts.LIST_RANK
    assert READY_FIELDS["products"] == keys.PRODUCTS_READY
