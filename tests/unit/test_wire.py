"""The stream's msgspec decoder and the pydantic schema of record agree, value for value."""

from __future__ import annotations

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
