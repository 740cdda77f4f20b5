"""The label processor's msgspec decoder and the pydantic schema of record agree."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_infer.errors import DeadLetterError
from stream_infer.events import decode_label
from stream_infer.features.definitions import SECONDS_PER_DAY
from stream_infer.labels.decode import CountedLabel, decode_counted

ids = st.one_of(
    st.text(min_size=0, max_size=130),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)
datetimes = st.one_of(
    st.datetimes().map(lambda d: d.isoformat()),
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
    st.datetimes().map(lambda d: d.isoformat() + "+05:30"),
    st.datetimes().map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S")),
    st.sampled_from(
        ["2026-04-01", "1700000000", "soon", "2026-04-01T25:00:00", "", "2018-04-01t00:00:29z"]
    ),
    st.integers(min_value=-(2**33), max_value=2**35),
    st.floats(allow_nan=False, allow_infinity=False),
    st.none(),
)
frauds = st.one_of(
    st.integers(min_value=-2, max_value=3),
    st.sampled_from([0.0, 1.0, 0.5, True, False, "1", "0", None, 2**70]),
)


def _both(raw: bytes) -> tuple[Any, Any]:
    try:
        fast: Any = decode_counted(raw)
    except DeadLetterError as exc:
        fast = exc
    try:
        label = decode_label(raw)
        slow: Any = CountedLabel(
            label.terminal_id,
            int(label.tx_datetime.timestamp()) // SECONDS_PER_DAY,
            label.tx_fraud,
        )
    except DeadLetterError as exc:
        slow = exc
    return fast, slow


def _assert_agree(raw: bytes) -> None:
    fast, slow = _both(raw)
    assert isinstance(fast, DeadLetterError) == isinstance(slow, DeadLetterError), (raw, fast)
    if isinstance(fast, DeadLetterError):
        assert fast.reason == slow.reason
    else:
        assert fast == slow


@settings(max_examples=500, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "transaction_id": ids,
            "tx_datetime": datetimes,
            "terminal_id": ids,
            "tx_fraud": frauds,
        }
    )
)
def test_fast_decoder_and_schema_of_record_agree(label: dict[str, Any]) -> None:
    _assert_agree(json.dumps(label).encode())  # json: ids beyond 64 bits stay integers


def test_typical_label_takes_the_fast_path_and_big_ids_the_schema() -> None:
    raw = b'{"transaction_id":"7","tx_datetime":"2018-04-01T23:59:59Z","terminal_id":"12",'
    assert decode_counted(raw + b'"tx_fraud":1}') == CountedLabel("12", 17622, 1)
    big = b'{"transaction_id":123456789012345678901234,"tx_datetime":"2018-04-02T00:00:00",'
    assert decode_counted(big + b'"terminal_id":12,"tx_fraud":0}') == CountedLabel("12", 17623, 0)


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"", "empty"),
        (None, "empty"),
        (b"{", "not valid JSON"),
        (b'{"transaction_id": 1}', "invalid label"),
        (
            b'{"transaction_id":1,"tx_datetime":"1969-12-31T23:59:59Z","terminal_id":1,'
            b'"tx_fraud":0}',
            "out of range",
        ),
    ],
)
def test_reasons_come_from_the_schema(raw: bytes | None, needle: str) -> None:
    with pytest.raises(DeadLetterError, match=needle):
        decode_counted(raw)


offsets = st.sampled_from(["", "Z", "+00:00", "-07:00", "+14:00", ".5Z", ".999999+01:00"])


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(st.text(min_size=1, max_size=128), st.integers(0, 2**63 - 1)),
    st.datetimes(),
    offsets,
    st.one_of(st.text(min_size=1, max_size=128), st.integers(0, 2**63 - 1)),
    st.integers(0, 1),
)
def test_well_formed_labels_decode_to_the_same_values(
    tid: str | int, when: Any, offset: str, terminal: str | int, fraud: int
) -> None:
    stamp = when.replace(microsecond=0).isoformat() + offset
    raw = json.dumps(
        {"transaction_id": tid, "tx_datetime": stamp, "terminal_id": terminal, "tx_fraud": fraud}
    ).encode()
    _assert_agree(raw)
