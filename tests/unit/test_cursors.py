"""shared.cursors: opaque keyset cursors that round-trip, and refuse anything cut, edited or made up."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.cursors import decode, encode
from shared.errors import BadRequest

keys = st.lists(
    st.one_of(st.integers(min_value=-(2**63), max_value=2**63 - 1), st.text(max_size=50), st.none()), max_size=4
)


@given(kind=st.text(min_size=1, max_size=20), key=keys)
def test_round_trip(kind: str, key: list[object]) -> None:
    cursor = encode(kind, key)
    assert decode(kind, cursor) == key


def test_cursor_is_url_safe() -> None:
    cursor = encode("products:-price", ["19.99", 42])
    assert all(c.isalnum() or c in "-_" for c in cursor)


def _refused(kind: str, cursor: str) -> BadRequest:
    with pytest.raises(BadRequest) as info:
        decode(kind, cursor)
    assert [e.loc for e in info.value.errors] == [["query", "cursor"]]
    return info.value


@pytest.mark.parametrize("cursor", ["", "garbage", "é", "%%%", "a", "====", "AAAAAAAAAAAAAAAAAAAA"])
def test_garbage_is_refused(cursor: str) -> None:
    _refused("records", cursor)


def test_cursor_for_another_listing_is_refused() -> None:
    err = _refused("products:name", encode("products:price", ["1.00", 1]))
    assert "another listing" in err.detail


def test_every_single_character_edit_is_refused() -> None:
    cursor = encode("records", [12345])
    for i in range(len(cursor)):
        for c in ("A", "z", "_"):
            edited = cursor[:i] + c + cursor[i + 1 :]
            if edited != cursor:
                with pytest.raises(BadRequest):
                    decode("records", edited)


def test_truncated_cursor_is_refused() -> None:
    cursor = encode("records", [12345])
    for n in range(len(cursor)):
        with pytest.raises(BadRequest):
            decode("records", cursor[:n])


def test_forged_cursor_without_the_checksum_is_refused() -> None:
    forged = base64.urlsafe_b64encode(b'["records",[1]]').rstrip(b"=").decode()
    _refused("records", forged)


def test_checksummed_body_that_is_not_a_pair_is_refused() -> None:
    import hashlib
    import hmac

    from shared import cursors

    body = b'{"not": "a pair"}'
    mac = hmac.new(cursors._KEY, body, hashlib.sha256).digest()[: cursors._MAC_LEN]
    cursor = base64.urlsafe_b64encode(mac + body).rstrip(b"=").decode()
    _refused("records", cursor)
