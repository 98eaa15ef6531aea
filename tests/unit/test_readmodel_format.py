"""The read model's format flag: the listing scripts and the rebuild name the same value."""

from __future__ import annotations

import fnmatch

from shared.readmodel import keys, scripts
from worker.readmodel.rebuild import READY_FIELDS


def test_the_listing_scripts_read_the_sets_only_in_the_format_the_rebuild_sets() -> None:
    assert f"'products') ~= '{keys.FORMAT}' then return false" in scripts.LIST_PAGE
    assert f"'products') ~= '{keys.FORMAT}' then return false" in scripts.LIST_RANK
    assert READY_FIELDS["products"] == keys.FORMAT


def test_the_older_layouts_patterns_match_its_keys_and_none_of_this_layouts() -> None:
    # Layout 1: 19-digit zero-padded members, a hash and a slug key per product, its per-category generations
    old = "0" * 18 + "7"
    layout_1 = [f"sr:{k}" for k in (f"p:{old}", "ps:spade", f"c:{old}", f"r:{old}", "cs:garden", "pj:spade")]
    layout_1 += ["sr:idx:p:created", f"sr:idx:c:{old}:price", f"sr:gen:products:c:{old}"]
    current = [keys.product_meta(i) for i in (7, 42, 1234567)] + [keys.category(7), keys.record(1234567)]
    current += [keys.product_copy("spade"), keys.category_slug("garden"), keys.user("pepe"), keys.birthday(2, 29)]
    current += [keys.product_index("created"), keys.product_index("price"), f"sr:ix:c:{keys.member(7)}:created"]
    current += [keys.READY, keys.generation("products"), keys.generation("products:c:" + keys.member(7))]
    current += [keys.page("products", f"c{keys.member(7)}.3", "ab"), keys.page_index("products")]
    current += [keys.page_bytes("products"), "sr:rl:read:127.0.0.1"]

    def old_layout(key: str) -> bool:
        return any(fnmatch.fnmatchcase(key, pattern) for pattern in keys.OLD_PATTERNS)

    assert [k for k in layout_1 if not old_layout(k)] == []
    assert [k for k in current if old_layout(k)] == []
