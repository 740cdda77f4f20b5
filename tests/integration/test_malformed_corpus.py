"""No record can crash the worker: a corpus of malformed records, interleaved with good ones,
through the real worker process on a real broker.

Every good event gets exactly its score(s); every bad record is in the dead-letter topic once,
with a reason and its source partition/offset, and small enough to produce; the worker is
never restarted and exits 0 on SIGTERM; started again it has nothing left to fail on.

A record's size is counted as Kafka counts it against a topic's ``max.message.bytes``: the size
of the record batch holding it alone (:func:`_batch_size`), so "at the maximum" is exactly the
largest record the topic takes (Tansu does not enforce the limit; a Kafka broker would).
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import orjson
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from stream_infer.config import Settings
from stream_infer.dead_letters import KEY_MAX_BYTES
from stream_infer.events import DeadLetter
from stream_infer.records import Headers, record_size

from .conftest import make_test_settings
from .kafka_io import read_topic, setup_topics
from .processes import WorkerProcess

DEEP = 100_000
RecordT = TypeVar("RecordT", tuple[bytes, bytes], tuple[bytes, bytes, Headers])
#: The header that makes a valid event's score too large to produce: scores copy the input's
#: headers (and key).
PAD_HEADER = "x-pad"
REFUSED = "MSG_SIZE_TOO_LARGE"


@dataclass
class Sent:
    """One record of the corpus: what was sent, what must come of it, where it landed."""

    name: str
    value: bytes | None
    key: bytes | None
    headers: Headers | None = None
    #: the transaction_id it must be scored under; None: it must be dead-lettered
    scored_as: str | None = None
    #: what its dead letter's reason must say (any reason at all when None)
    reason_has: str | None = None
    partition: int = -1
    offset: int = -1


def _varint_len(n: int) -> int:
    zigzag = (n << 1) ^ (n >> 63)
    size = 1
    while zigzag >= 0x80:
        zigzag >>= 7
        size += 1
    return size


def _batch_size(key: bytes | None, value: bytes | None, headers: Headers | None = None) -> int:
    """Bytes of a v2 record batch holding only this record (what ``max.message.bytes`` caps)."""

    def field(data: bytes | None) -> int:
        return 1 if data is None else _varint_len(len(data)) + len(data)

    body = 3 + field(key) + field(value) + _varint_len(len(headers or ()))
    for name, data in headers or ():
        body += field(name.encode()) + field(data)
    return 61 + _varint_len(body) + body


def _fit(size: int, make: Callable[[int], RecordT]) -> RecordT:
    """``make(n)`` (key, value[, headers]) for the largest ``n`` whose record batch is at most
    ``size`` bytes."""
    n = size
    while _batch_size(*make(n)) > size:
        n -= 1
    return make(n)


def _tx(i: int, customer: str, **changes: Any) -> dict[str, Any]:
    start = datetime(2026, 4, 1, tzinfo=UTC)
    event = {
        "transaction_id": f"good-{i}",
        "tx_datetime": (start + timedelta(minutes=7 * i)).isoformat(),
        "customer_id": customer,
        "terminal_id": f"T{i % 13}",
        "tx_amount": round(5 + i * 1.37, 2),
    }
    event.update(changes)
    return event


def _good(name: str, event: dict[str, Any], key: bytes | None = b"", **kw: Any) -> Sent:
    raw = orjson.dumps(event)
    key = event["customer_id"].encode() if key == b"" else key
    return Sent(name, raw, key, scored_as=event["transaction_id"], **kw)


def _bad(
    name: str, value: bytes | None, key: bytes | None = b"bad", reason_has: str | None = None
) -> Sent:
    return Sent(name, value, key, reason_has=reason_has)


def _malformed(limit: int) -> list[Sent]:
    """Records the stream must dead-letter (and not crash on)."""
    base = _tx(999, "c-bad")

    def with_(**changes: Any) -> bytes:
        return orjson.dumps({**base, **changes})

    def replace(field: str, raw: bytes) -> bytes:
        text = orjson.dumps(base)
        head, _, tail = text.partition(f'"{field}":'.encode())
        rest = tail[tail.index(b",") :] if b"," in tail else tail[tail.index(b"}") :]
        return head + f'"{field}":'.encode() + raw + rest

    missing = {k: v for k, v in base.items() if k != "terminal_id"}

    def unterminated(n: int) -> tuple[bytes, bytes]:
        return b"bad", (b'{"tx_amount": "lots", "pad": "' + b"x" * n)[:n]

    def invalid(n: int) -> tuple[bytes, bytes]:
        head = b'{"tx_amount":"lots","pad":"'
        return b"bad", head + b"x" * max(0, n - len(head) - 2) + b'"}'

    return [
        _bad("empty value", b"", reason_has="empty message value"),
        _bad("null value", None, reason_has="empty message value"),
        _bad("not JSON", b"not json at all", reason_has="not valid JSON"),
        _bad("array", b"[1, 2, 3]"),
        _bad("string", b'"a transaction"'),
        _bad("number", b"42"),
        _bad("JSON null", b"null"),
        _bad("amount as text", with_(tx_amount="lots"), reason_has="tx_amount"),
        _bad("id as list", with_(transaction_id=[1, 2])),
        _bad("customer as float", with_(customer_id=1.5)),
        _bad("unix time", with_(tx_datetime=1_775_000_000), reason_has="tx_datetime"),
        _bad("missing terminal", orjson.dumps(missing), reason_has="terminal_id"),
        _bad("empty object", b"{}"),
        _bad("NaN", replace("tx_amount", b"NaN"), reason_has="not valid JSON"),
        _bad("Infinity", replace("tx_amount", b"Infinity")),
        _bad("-Infinity", replace("tx_amount", b"-Infinity")),
        _bad("1e400", replace("tx_amount", b"1e400"), reason_has="tx_amount"),
        _bad("negative amount", with_(tx_amount=-5), reason_has="tx_amount"),
        _bad("absurd amount", with_(tx_amount=1e12), reason_has="tx_amount"),
        _bad("huge amount", replace("tx_amount", b"9" * 5000)),
        _bad("year 1", with_(tx_datetime="0001-01-01T00:00:00Z"), reason_has="tx_datetime"),
        _bad("before 1970", with_(tx_datetime="1969-12-31T23:59:59Z")),
        _bad("year 3000", with_(tx_datetime="3000-01-01T00:00:00Z")),
        _bad(
            "last second of 2999: ahead of the wall clock",
            with_(tx_datetime="2999-12-31T23:59:59Z"),
            reason_has="tx_datetime: event from the future: 2999-12-31T23:59:59Z is ahead",
        ),
        _bad("year 9999", with_(tx_datetime="9999-12-31T23:59:59Z")),
        _bad("nested arrays", b"[" * DEEP + b"]" * DEEP),
        _bad("nested objects", b'{"a":' * DEEP + b"1" + b"}" * DEEP, reason_has="nested"),
        _bad("nested in ignored field", with_()[:-1] + b',"x":' + b"[" * DEEP + b"}"),
        _bad("random bytes", random.Random(7).randbytes(4096)),
        _bad("invalid UTF-8", replace("customer_id", b'"\xff\xfe"'), reason_has="UTF-8"),
        _bad("not JSON, null key", b"{oops", key=None),
        _bad("not JSON, just under the max", _fit(limit - 1, unterminated)[1]),
        _bad("invalid, at the max", _fit(limit, invalid)[1]),
    ]


def _wellformed(limit: int) -> list[Sent]:
    """Valid events, some at the edges of what is valid."""
    good = [_good(f"good {i}", _tx(i, f"c{i % 7}")) for i in range(40)]
    edges = [
        _good("valid, null key", _tx(100, "c-null"), key=None),
        _good("first second of 1970", _tx(101, "c-1970", tx_datetime="1970-01-01T00:00:00Z")),
        _good("largest amount", _tx(103, "c-max", tx_amount=1e9)),
        _good("zero amount", _tx(104, "c-zero", tx_amount=0)),
        _good("resent (duplicate)", _tx(5, "c5")),  # exactly good-5 again: scored again
    ]
    padded: list[Sent] = []
    for name, size in (("just under the max", limit - 1), ("at the max", limit)):
        event = _tx(len(padded) + 110, "c-pad")

        def make(n: int, event: dict[str, Any] = event) -> tuple[bytes, bytes]:
            head = orjson.dumps(event)[:-1] + b',"pad":"'
            return b"c-pad", head + b"x" * max(0, n - len(head) - 2) + b'"}'

        key, value = _fit(size, make)
        assert _batch_size(key, value) == size, name
        padded.append(Sent(f"valid, {name}", value, key, scored_as=event["transaction_id"]))
    return good + edges + padded


def _refused_at_produce(limit: int) -> list[Sent]:
    """Valid events whose score Kafka refuses (it copies the input's key and headers)."""

    def headers(n: int) -> tuple[bytes, bytes, Headers]:
        return b"c-hdr", orjson.dumps(_tx(200, "c-hdr")), [(PAD_HEADER, b"h" * n)]

    key, value, hdrs = _fit(limit, headers)
    big_key = _fit(limit, lambda n: (b"k" * n, orjson.dumps(_tx(201, "c-key"))))
    return [
        Sent("headers too large for its score", value, key, hdrs, reason_has=REFUSED),
        Sent("key too large for its score", big_key[1], big_key[0], reason_has=REFUSED),
    ]


def _interleave(good: list[Sent], bad: list[Sent]) -> list[Sent]:
    out: list[Sent] = []
    step = max(1, len(good) // max(1, len(bad)))
    for i, rec in enumerate(bad):
        out.extend(good[i * step : (i + 1) * step])
        out.append(rec)
    out.extend(good[len(bad) * step :])
    return out


def _produce(settings: Settings, corpus: list[Sent], limit: int) -> None:
    """Send the corpus, recording where each record landed; the producer's own limit is raised
    past the topic's so records of the topic's maximum size can be sent at all."""
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "message.max.bytes": limit + 4096,
            "enable.idempotence": True,  # a retried send must not become a second record
            "linger.ms": 5,
        }
    )
    errors: list[Any] = []
    topic = settings.topics.transactions
    for rec in corpus:

        def landed(err: Any, msg: Any, rec: Sent = rec) -> None:
            if err is not None:
                errors.append((rec.name, err))
            else:
                rec.partition, rec.offset = msg.partition(), msg.offset()

        producer.produce(topic, rec.value, rec.key, headers=rec.headers, on_delivery=landed)
        producer.poll(0)
    assert producer.flush(60) == 0
    assert not errors, errors
    assert all(rec.offset >= 0 for rec in corpus)


def _check_topic_limits(settings: Settings, limit: int) -> None:
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    topics = [settings.topics.transactions, settings.topics.scores, settings.topics.dead_letter]
    futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, t) for t in topics])
    for resource, future in futures.items():
        assert future.result(timeout=30)["max.message.bytes"].value == str(limit), resource


def _run_corpus(
    base_settings: Settings,
    kafka_bootstrap: str,
    tmp_path: Path,
    model_registry: Path,
    corpus_of: Any,
) -> None:
    settings = make_test_settings(
        base_settings,
        kafka_bootstrap,
        tmp_path,
        model={"registry_dir": str(model_registry)},
        worker={"emit_features": True},
    )
    limit = settings.kafka.message_max_bytes
    setup_topics(settings)
    _check_topic_limits(settings, limit)
    corpus: list[Sent] = corpus_of(limit)
    names = [rec.name for rec in corpus]
    assert len(names) == len(set(names)), "corpus names must be unique"
    expected_scores = Counter(rec.scored_as for rec in corpus if rec.scored_as is not None)
    bad = {rec.name: rec for rec in corpus if rec.scored_as is None}

    worker = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        worker.wait_for("assigned [0", timeout_s=120)
        _produce(settings, corpus, limit)
        read_topic(
            settings,
            settings.topics.dead_letter,
            lambda r: len(r) >= len(bad),
            timeout_s=120,
        )
        read_topic(
            settings,
            settings.topics.scores,
            lambda r: len(r) >= sum(expected_scores.values()),
            timeout_s=120,
        )
        alive = worker.proc.poll() is None
    finally:
        code = worker.terminate()
    log = worker.output()
    assert alive, f"the worker died: {log[-3000:]}"
    assert code == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert worker.stats() == {
        "consumed": len(corpus),
        "scored": sum(expected_scores.values()),
        "dead_lettered": len(bad),
    }

    # Stopped and drained: what the topics hold now is all there will be.
    scores = read_topic(
        settings,
        settings.topics.scores,
        lambda r: len(r) >= sum(expected_scores.values()),
        idle_s=1.0,
    )
    letters = read_topic(
        settings, settings.topics.dead_letter, lambda r: len(r) >= len(bad), idle_s=1.0
    )
    _check_scores(scores, expected_scores)
    _check_letters(settings, letters, bad)

    # Started again, it resumes after the corpus: one new event per partition is all it sees.
    again = WorkerProcess(settings, tmp_path / "again.log")
    try:
        again.wait_for("assigned [0", timeout_s=120)
        sentinels = _sentinels(settings)
        read_topic(
            settings,
            settings.topics.scores,
            lambda r: sentinels <= {orjson.loads(m.value())["transaction_id"] for m in r},
            timeout_s=120,
        )
    finally:
        code = again.terminate()
    assert code == 0, again.output()[-3000:]
    assert "Traceback" not in again.output()
    assert again.stats() == {
        "consumed": len(sentinels),
        "scored": len(sentinels),
        "dead_lettered": 0,
    }


def _sentinels(settings: Settings) -> set[str]:
    """A valid event on each partition of the input topic; returns their transaction ids."""
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers})
    ids = set()
    partitions = settings.topics.partitions or 1
    for p in range(partitions):
        event = _tx(300 + p, f"c-sentinel-{p}")
        producer.produce(
            settings.topics.transactions,
            orjson.dumps(event),
            event["customer_id"].encode(),
            partition=p,
        )
        ids.add(event["transaction_id"])
    assert producer.flush(30) == 0
    return ids


def _check_scores(scores: list[Any], expected: Counter[str]) -> None:
    payloads = [orjson.loads(m.value()) for m in scores]
    got = Counter(p["transaction_id"] for p in payloads)
    assert got == expected, {
        "missing": expected - got,
        "unexpected": got - expected,
    }
    features: dict[str, list[dict[str, float]]] = {}
    for p in payloads:
        features.setdefault(p["transaction_id"], []).append(p["features"])
    resent = features["good-5"]
    assert len(resent) == 2 and resent[0] == resent[1], resent


def _check_letters(settings: Settings, letters: list[Any], bad: dict[str, Sent]) -> None:
    by_source: dict[tuple[int, int], list[DeadLetter]] = {}
    for msg in letters:
        size = record_size(msg.value(), msg.key(), msg.headers())
        assert size <= settings.worker.dead_letter_max_bytes
        letter = DeadLetter.model_validate_json(msg.value())
        by_source.setdefault((letter.source_partition, letter.source_offset), []).append(letter)
    expected = {(rec.partition, rec.offset): rec for rec in bad.values()}
    assert set(by_source) == set(expected), {
        "not dead-lettered": sorted(expected[k].name for k in set(expected) - set(by_source)),
        "dead-lettered but good": sorted(set(by_source) - set(expected)),
    }
    for source, found in by_source.items():
        rec = expected[source]
        assert len(found) == 1, (rec.name, len(found))
        letter = found[0]
        original = rec.value or b""
        assert letter.reason, rec.name
        assert rec.reason_has is None or rec.reason_has in letter.reason, (rec.name, letter.reason)
        assert letter.source_topic == settings.topics.transactions, rec.name
        assert letter.original_size == len(original), rec.name
        assert letter.original_sha256 == hashlib.sha256(original).hexdigest(), rec.name
        if letter.original_truncated:
            assert len(original) > settings.worker.dead_letter_prefix_bytes, rec.name
            assert letter.original == original[: settings.worker.dead_letter_prefix_bytes]
        else:
            assert letter.original == original, rec.name
        if rec.name.endswith("the max"):
            assert letter.original_truncated, rec.name
        kept = None if rec.key is None else rec.key[:KEY_MAX_BYTES]
        assert letter.original_key == kept, rec.name
        assert letter.original_key_truncated == (kept != rec.key), rec.name


def test_malformed_records_are_dead_lettered_and_the_worker_lives(
    base_settings: Settings, kafka_bootstrap: str, tmp_path: Path, model_registry: Path
) -> None:
    _run_corpus(
        base_settings,
        kafka_bootstrap,
        tmp_path,
        model_registry,
        lambda limit: _interleave(_wellformed(limit), _malformed(limit)),
    )


def test_records_kafka_refuses_at_produce_are_dead_lettered(
    base_settings: Settings, kafka_bootstrap: str, tmp_path: Path, model_registry: Path
) -> None:
    # Valid input whose score would be larger than the producer sends: dead-lettered by the
    # worker when produce refuses it, and the stream goes on.
    _run_corpus(
        base_settings,
        kafka_bootstrap,
        tmp_path,
        model_registry,
        lambda limit: _interleave(_wellformed(limit), _refused_at_produce(limit)),
    )
