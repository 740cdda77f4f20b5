"""The stream's msgspec decoder and the pydantic schema of record agree, value for value, and
no bytes at all make the decoder raise anything but DeadLetterError."""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_infer import wire
from stream_infer.errors import DeadLetterError
from stream_infer.events import decode_transaction

ids = st.one_of(
    st.text(min_size=0, max_size=130),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)
datetimes = st.one_of(
    st.datetimes().map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
    st.datetimes().map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S")),
    st.sampled_from(["2026-04-01", "1700000000", "soon", "2026-04-01T25:00:00", ""]),
    st.integers(min_value=0, max_value=2**32),
    st.none(),
)
amounts = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(min_value=-(10**10), max_value=10**10),
    st.sampled_from(["12.5", True, None, 1e9, 1e9 + 1, -0.0]),
)


def _both(raw: bytes) -> tuple[Any, Any]:
    try:
        a: Any = wire.decode(raw)
    except DeadLetterError as exc:
        a = exc
    try:
        b: Any = decode_transaction(raw)
    except DeadLetterError as exc:
        b = exc
    return a, b


@settings(max_examples=400, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "transaction_id": ids,
            "tx_datetime": datetimes,
            "customer_id": ids,
            "terminal_id": ids,
            "tx_amount": amounts,
        }
    )
)
def test_msgspec_and_pydantic_agree(event: dict[str, Any]) -> None:
    a, b = _both(orjson.dumps(event))
    assert isinstance(a, DeadLetterError) == isinstance(b, DeadLetterError), (event, a, b)
    if not isinstance(a, DeadLetterError):
        assert str(a.transaction_id) == b.transaction_id
        assert str(a.customer_id) == b.customer_id
        assert str(a.terminal_id) == b.terminal_id
        assert a.tx_amount == b.tx_amount
        assert wire.utc(a.tx_datetime) == b.tx_datetime
        assert wire.epoch_seconds(a.tx_datetime) == int(b.tx_datetime.timestamp() // 1)


@pytest.mark.parametrize(
    ("raw", "needle"),
    [(b"", "empty"), (b"{", "not valid JSON"), (b'{"transaction_id": 1}', "invalid transaction")],
)
def test_wire_reasons(raw: bytes, needle: str) -> None:
    with pytest.raises(DeadLetterError, match=needle):
        wire.decode(raw)


VALID = (
    b'{"transaction_id":"t1","tx_datetime":"2026-04-01T10:11:12Z","customer_id":"c1",'
    b'"terminal_id":"T1","tx_amount":12.5}'
)
DEEP = 100_000


def _with(field: bytes, raw: bytes) -> bytes:
    """VALID with ``field``'s value replaced by ``raw``, or ``raw`` added as field "x"."""
    if field == b"x":
        return VALID[:-1] + b',"x":' + raw + b"}"
    start = VALID.index(b'"' + field + b'":') + len(field) + 3
    end = min(i for i in (VALID.find(b",", start), VALID.find(b"}", start)) if i > 0)
    return VALID[:start] + raw + VALID[end:]


def _outcome(raw: bytes) -> wire.WireTransaction | DeadLetterError:
    """The decoder's answer; any other exception fails the test that calls this."""
    try:
        return wire.decode(raw)
    except DeadLetterError as exc:
        assert exc.reason, raw[:200]
        return exc


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"[" * DEEP + b"]" * DEEP, "not valid JSON"),
        (b'{"a":' * DEEP + b"1" + b"}" * DEEP, "nested too deeply"),
        (_with(b"customer_id", b"[" * DEEP + b"]" * DEEP), "not valid JSON"),
        (_with(b"x", b'{"a":' * DEEP + b"1" + b"}" * DEEP), "nested too deeply"),
        (_with(b"x", b"[" * DEEP), "nested too deeply"),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
        (_with(b"customer_id", b'"\xff\xfe"'), "not valid JSON"),
        (b"\xef\xbb\xbf" + VALID, "not valid JSON"),
        (_with(b"customer_id", b'"\\ud800"'), "not valid JSON"),
        (b"\x00", "not valid JSON"),
        (_with(b"tx_amount", b"NaN"), "not valid JSON"),
        (_with(b"tx_amount", b"Infinity"), "not valid JSON"),
        (_with(b"tx_amount", b"-Infinity"), "not valid JSON"),
        (_with(b"x", b"NaN"), "not valid JSON"),
        (_with(b"tx_amount", b"1e400"), "tx_amount"),
        (_with(b"tx_amount", b"-1e400"), "tx_amount"),
        (_with(b"tx_amount", b"1" * 5000), "not valid JSON"),
        (_with(b"transaction_id", b"1" * 5000), "not valid JSON"),
        (_with(b"tx_amount", b"1e9000000000000"), "tx_amount"),
        (_with(b"tx_datetime", b'"0001-01-01T00:00:00+23:59"'), "tx_datetime"),
        (_with(b"tx_datetime", b'"9999-12-31T23:59:59-23:59"'), "tx_datetime"),
        (_with(b"tx_datetime", b'"0000-01-01T00:00:00"'), "tx_datetime"),
        (b"null", "invalid transaction"),
        (b'"a string"', "invalid transaction"),
        (b"12", "invalid transaction"),
        (b"   ", "not valid JSON"),
    ],
)
def test_hostile_bytes_become_dead_letters(raw: bytes, needle: str) -> None:
    out = _outcome(raw)
    assert isinstance(out, DeadLetterError), out
    assert needle in out.reason


def test_ignored_fields_are_skipped_unvalidated() -> None:
    # The documented leniency: msgspec skips unknown fields; the schema of record refuses these.
    for extra in (b'"\xff"', b"1" * 5000, b"[" * 300 + b"]" * 300):
        out = _outcome(_with(b"x", extra))
        assert isinstance(out, wire.WireTransaction)
        assert out.transaction_id == "t1"


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=512))
def test_any_bytes_decode_or_dead_letter(raw: bytes) -> None:
    _outcome(raw)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(VALID)), st.integers(0, 8), st.binary(min_size=1, max_size=16))
def test_corrupted_transactions_decode_or_dead_letter(at: int, cut: int, junk: bytes) -> None:
    _outcome(VALID[:at] + junk + VALID[at + cut :])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=25,
)


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    return True


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_any_json_value_decodes_or_dead_letters(value: Any) -> None:
    # json.dumps writes NaN and Infinity literals for non-finite floats, as some producers do.
    _outcome(json.dumps(value).encode())


@settings(max_examples=500, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "transaction_id": json_values | ids,
            "tx_datetime": json_values | datetimes,
            "customer_id": json_values | ids,
            "terminal_id": json_values | ids,
            "tx_amount": json_values | amounts,
        },
    ),
    st.dictionaries(st.text(max_size=8), json_values, max_size=3),
)
def test_any_json_object_agrees_with_the_schema_of_record(
    event: dict[str, Any], extra: dict[str, Any]
) -> None:
    raw = json.dumps({**extra, **event}).encode()
    a, b = _both(raw)
    assert isinstance(a, (wire.WireTransaction, DeadLetterError)), a
    if isinstance(a, wire.WireTransaction):
        # The stream never scores an event the schema of record refuses, values identical.
        assert not isinstance(b, DeadLetterError), (raw, b)
        assert str(a.transaction_id) == b.transaction_id
        assert a.tx_amount == b.tx_amount
        assert wire.utc(a.tx_datetime) == b.tx_datetime
    elif _finite({**extra, **event}):
        # ... and refuses only what it refuses too (NaN/Infinity literals: the stream alone).
        assert isinstance(b, DeadLetterError), (raw, a)
