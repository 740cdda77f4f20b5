"""One bad label cannot move the watermark or lose a dead letter (issue 19), with the real
label processor (``stream-infer labels``) on a real broker.

- A label dated in 2999 and an oversized broken label among good ones: both are dead letters
  (the large one bounded by ``worker.dead_letter_max_bytes``), and the terminal rows and the
  watermark are exactly those of the good labels alone.
- SIGKILL between a batch's delivered dead letters and its ack (``labels.ack_barrier`` holds
  the processor there): the batch is re-delivered after a restart and makes its dead letters
  again; none is lost, counts are not doubled.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_infer.config import Settings
from stream_infer.events import DeadLetter
from stream_infer.features.definitions import SECONDS_PER_DAY
from stream_infer.process import ChildProcess

from .conftest import make_test_settings
from .kafka_io import produce, read_topic, setup_topics
from .test_labels import START, make_labels
from .test_labels_outage import check_rows
from .test_labels_scaleout import wait_complete

DAYS = 12
FIRST_DAY = int(START.timestamp()) // SECONDS_PER_DAY
COMPLETE = FIRST_DAY + DAYS - 2  # the last day is still open: complete through the one before
MAX_LETTER = 65_536
#: A label far larger than a letter may be (base64 adds a third): bounded, not refused.
OVERSIZED = b'{"transaction_id": "big", "pad": "' + b"x" * 600_000 + b'"'
FUTURE = orjson.dumps(
    {
        "transaction_id": "from-2999",
        "tx_datetime": "2999-01-01T00:00:00Z",
        "terminal_id": "3",
        "tx_fraud": 1,
    }
)


def _settings(base: Settings, bootstrap: str, tmp: Path, **labels: Any) -> Settings:
    return make_test_settings(
        base,
        bootstrap,
        tmp,
        worker={"dead_letter_max_bytes": MAX_LETTER, "dead_letter_prefix_bytes": 4096},
        labels=labels,
    )


def _letters(
    settings: Settings, until: Any, timeout_s: float = 60.0, idle_s: float | None = None
) -> list[DeadLetter]:
    got = read_topic(
        settings, settings.topics.dead_letter, until, timeout_s=timeout_s, idle_s=idle_s
    )
    return [DeadLetter.model_validate_json(m.value()) for m in got]


def test_future_and_oversized_labels_are_bounded_dead_letters_and_rows_stay_exact(
    base_settings: Settings, kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = _settings(base_settings, kafka_bootstrap, tmp_path)
    setup_topics(settings)
    labels = make_labels(days=DAYS)
    half = len(labels) // 2
    child = ChildProcess(settings, tmp_path / "labels.log", "labels")
    try:
        produce(settings, settings.topics.labels, labels[:half], key_field="terminal_id")
        produce(settings, settings.topics.labels, [FUTURE, OVERSIZED])
        produce(settings, settings.topics.labels, labels[half:], key_field="terminal_id")
        wait_complete(settings, [child], COMPLETE)
        raw = read_topic(settings, settings.topics.dead_letter, lambda r: len(r) >= 2)
    finally:
        code = child.terminate()
    assert code == 0, child.output()[-3000:]
    # Exactly the rows and watermark of the good labels alone (the 2999 label moved nothing).
    check_rows(settings, labels, COMPLETE)

    assert max(len(m.value()) for m in raw) <= MAX_LETTER
    letters = [DeadLetter.model_validate_json(m.value()) for m in raw]
    by_id = {letter.original_sha256: letter for letter in letters}
    future = by_id[hashlib.sha256(FUTURE).hexdigest()]
    assert future.reason.startswith("event from the future: tx_datetime 2999-01-01T00:00:00Z")
    assert future.reason.endswith("ahead of the wall clock (events.max_future_s=3600)")
    assert future.original == FUTURE and future.source_topic == settings.topics.labels
    big = by_id[hashlib.sha256(OVERSIZED).hexdigest()]
    assert big.original_truncated and big.original_size == len(OVERSIZED)
    assert OVERSIZED.startswith(big.original)


def test_sigkill_between_dead_letters_and_ack_loses_none(
    base_settings: Settings, kafka_bootstrap: str, tmp_path: Path
) -> None:
    barrier = tmp_path / "held"
    settings = _settings(base_settings, kafka_bootstrap, tmp_path, ack_barrier=str(barrier))
    setup_topics(settings)
    labels = make_labels(days=DAYS)
    bad = [b"{broken-%d" % i for i in range(5)] + [FUTURE, OVERSIZED]
    half = len(labels) // 2
    produce(settings, settings.topics.labels, labels[:half], key_field="terminal_id")
    produce(settings, settings.topics.labels, bad)
    produce(settings, settings.topics.labels, labels[half:], key_field="terminal_id")

    first = ChildProcess(settings, tmp_path / "labels-1.log", "labels")
    try:
        deadline = time.monotonic() + 120
        while not barrier.exists():  # a batch's dead letters are delivered, its ack not sent
            if first.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"never held before an ack: {first.output()[-3000:]}")
            time.sleep(0.05)
        held = _letters(settings, lambda r: len(r) >= 1, idle_s=1.0)
        first.proc.kill()  # SIGKILL: no ack, no commit past the held batch
        first.proc.wait(30)
    finally:
        first.kill()
    assert held, "the held batch's dead letters were not delivered before the hold"
    before = Counter((d.source_partition, d.source_offset) for d in held)

    unheld = settings.labels.model_copy(update={"ack_barrier": None})
    again = settings.model_copy(update={"labels": unheld})
    second = ChildProcess(again, tmp_path / "labels-2.log", "labels")
    try:
        wait_complete(again, [second], COMPLETE)

        def done(records: list[Any]) -> bool:
            seen = Counter(
                (d.source_partition, d.source_offset)
                for d in (DeadLetter.model_validate_json(m.value()) for m in records)
            )
            made_again = all(seen[k] >= before[k] + 1 for k in before)
            return made_again and len(seen) >= len(bad)

        letters = _letters(again, done, timeout_s=120)
    finally:
        code = second.terminate()
    assert code == 0, second.output()[-3000:]
    after = Counter((d.source_partition, d.source_offset) for d in letters)
    # The re-delivered batch made each of its letters again (a duplicate, never a loss) ...
    assert all(after[k] >= before[k] + 1 for k in before), (before, after)
    # ... every bad label has a letter, and nothing good became one.
    assert {d.original_sha256 for d in letters} == {hashlib.sha256(b).hexdigest() for b in bad}
    check_rows(again, labels, COMPLETE)  # the re-delivered batch was not counted twice
