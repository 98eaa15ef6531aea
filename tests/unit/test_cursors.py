"""shared.cursors: opaque keyset cursors that round-trip, and refuse anything cut, edited or made up."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.cursors import Cursors
from shared.errors import BadRequest

SECRET = "unit-test-cursor-secret-0123456789"
_CURSORS = Cursors(SECRET)
encode, decode = _CURSORS.encode, _CURSORS.decode

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

    body = b'{"not": "a pair"}'
    mac = hmac.new(SECRET.encode(), body, hashlib.sha256).digest()[:8]
    cursor = base64.urlsafe_b64encode(mac + body).rstrip(b"=").decode()
    _refused("records", cursor)


def test_a_cursor_signed_with_another_secret_is_refused() -> None:
    # Given a cursor made by a service with another CURSOR_SECRET (or by someone guessing one)
    cursor = Cursors("some-other-secret-0123456789").encode("records", [1])

    # Then this one refuses it
    _refused("records", cursor)


def test_the_same_secret_reads_another_process_cursor() -> None:
    # Two codecs with one secret (two API processes) read each other's cursors.
    assert Cursors(SECRET).decode("records", Cursors(SECRET).encode("records", [7])) == [7]
