"""The label processor decodes with the generated decoder of the repository's label source,
plus the wall-clock rule: a label past the batch's future limit is a dead letter with
:mod:`stream_infer.event_time`'s reason. Held to the decoder's slow reference, one record at a
time (``decode_one``) and the rule applied by hand."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_infer.errors import DeadLetterError
from stream_infer.event_time import FutureLimit
from stream_infer.features.definitions import SECONDS_PER_DAY
from stream_infer.labels.decode import DecodedLabels, LabelDecoder
from stream_infer.streamdef.decoders import build_decoder
from stream_infer.streamdef.feast_reader import load_definitions
from stream_infer.streamdef.spec import StreamDefinitions

REPO = Path(__file__).resolve().parents[2] / "examples" / "fraud" / "feature_repo"
NOW = datetime(2026, 4, 1, 12, tzinfo=UTC).timestamp()
LIMIT = FutureLimit(NOW, 3600)


@pytest.fixture(scope="module")
def defs() -> StreamDefinitions:
    return load_definitions(REPO)


def _decoder(defs: StreamDefinitions) -> LabelDecoder:
    assert defs.label_source is not None
    return LabelDecoder(defs.label_source, defs.daily_views)


def _label(when: str, terminal: Any = "12", fraud: Any = 1, tid: Any = "7") -> bytes:
    body = {"transaction_id": tid, "tx_datetime": when, "terminal_id": terminal, "tx_fraud": fraud}
    return json.dumps(body).encode()


def test_a_typical_label_gives_its_day_key_and_values(defs: StreamDefinitions) -> None:
    labels, refused = _decoder(defs).decode(
        [_label("2018-04-01T23:59:59Z"), _label("2018-04-02T00:00:00", terminal=12, fraud=0)]
    )
    assert refused == []
    assert labels == DecodedLabels(
        [0, 1], [17622, 17623], {"terminal_counts": (["12", "12"], [(1.0,), (0.0,)])}
    )


def test_a_label_from_the_future_is_refused_with_the_wall_clock_reason(
    defs: StreamDefinitions,
) -> None:
    at_limit = datetime.fromtimestamp(LIMIT.limit_s, tz=UTC).isoformat()
    labels, refused = _decoder(defs).decode(
        [_label("2999-01-01T00:00:00Z"), _label(at_limit)], LIMIT
    )
    assert refused == [
        (
            0,
            "event from the future: tx_datetime 2999-01-01T00:00:00Z is 973 years ahead of the "
            "wall clock (events.max_future_s=3600)",
        )
    ]
    assert labels.index == [1]  # at the limit is allowed


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"", "empty"),
        (None, "empty"),
        (b"{", "not valid JSON"),
        (b'{"transaction_id": 1}', "field required"),
        (_label("1969-12-31T23:59:59Z"), "out of range"),
    ],
)
def test_reasons_name_the_problem(defs: StreamDefinitions, raw: bytes | None, needle: str) -> None:
    labels, refused = _decoder(defs).decode([raw])
    assert len(labels) == 0 and len(refused) == 1 and needle in refused[0][1]


stamps = st.one_of(
    st.datetimes().map(lambda d: d.isoformat() + "Z"),
    st.datetimes().map(lambda d: d.isoformat()),
    st.sampled_from(["2026-04-01T13:00:00Z", "2026-04-01T13:00:01Z", "soon", "2999-01-01"]),
    st.integers(-(2**33), 2**35),
)
values = st.one_of(st.integers(-2, 3), st.sampled_from([0.5, True, "1", None]))
keys = st.one_of(st.text(min_size=0, max_size=5), st.integers(0, 99), st.none())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(stamps, keys, values), max_size=12))
def test_a_batch_decides_as_each_record_alone(
    defs: StreamDefinitions, records: list[tuple[Any, Any, Any]]
) -> None:
    assert defs.label_source is not None
    raws = [_label(w, k, v, tid=str(i)) for i, (w, k, v) in enumerate(records)]
    labels, refused = _decoder(defs).decode(raws, LIMIT)
    keys, values = labels.views["terminal_counts"]
    got: dict[int, Any] = {
        i: (day, key, x)
        for i, day, key, x in zip(labels.index, labels.days, keys, values, strict=True)
    }
    got.update({i: reason for i, reason in refused})
    one = build_decoder(defs.label_source)
    for i, raw in enumerate(raws):
        try:
            event = one.decode_one(raw)
        except DeadLetterError as exc:
            assert got[i] == exc.reason
            continue
        seconds = event["tx_datetime"]
        if seconds > LIMIT.limit_s:
            assert got[i] == LIMIT.reason(seconds, "tx_datetime")
        else:
            want = (seconds // SECONDS_PER_DAY, event["terminal_id"], (float(event["tx_fraud"]),))
            assert got[i] == want
