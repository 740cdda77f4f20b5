"""Two label processors in one group split the partitions and publish what one publishes."""

from __future__ import annotations

import re
import signal
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest

from stream_infer.config import Settings
from stream_infer.features.definitions import SECONDS_PER_DAY
from stream_infer.process import ChildProcess
from stream_infer.state.factory import open_state
from tests.unit.label_fixtures import FINAL_LAG, VIEW, counts_row

from .conftest import make_test_settings
from .kafka_io import produce, setup_topics
from .test_labels import START, expected_rows, make_labels

PARTITIONS = 6
DAYS = 14
ASSIGNED = re.compile(r"labels partitions assigned: \[([0-9, ]*)\]")


def own_group(settings: Settings, state: Path, redis_prefix: str | None) -> Settings:
    """Same broker and topics; a consumer group, a state and a Redis namespace of its own."""
    update: dict[str, object] = {
        "worker": settings.worker.model_copy(update={"group_id": f"g-{uuid.uuid4().hex[:8]}"}),
        "features": settings.features.model_copy(update={"state_dir": state}),
    }
    if redis_prefix is not None:
        update["redis"] = settings.redis.model_copy(update={"key_prefix": redis_prefix})
    return settings.model_copy(update=update)


def start(settings: Settings, count: int, log_dir: Path) -> list[ChildProcess]:
    return [ChildProcess(settings, log_dir / f"labels-{i}.log", "labels") for i in range(count)]


def assignment(child: ChildProcess) -> list[int] | None:
    """The child's latest labels-topic assignment (None: none yet)."""
    found = ASSIGNED.findall(child.output())
    return [int(p) for p in found[-1].split(",") if p.strip()] if found else None


def wait_split(children: list[ChildProcess], timeout_s: float = 90.0) -> list[list[int]]:
    """Block until every child holds partitions and together they hold each exactly once."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = [assignment(c) or [] for c in children]
        if all(got) and sorted(p for a in got for p in a) == list(range(PARTITIONS)):
            return got
        if time.monotonic() > deadline or any(c.proc.poll() is not None for c in children):
            pytest.fail(f"partitions not split {got}: {children[-1].output()[-2000:]}")
        time.sleep(0.1)


def wait_complete(settings: Settings, children: list[ChildProcess], day: int) -> None:
    terminals = open_state(settings).terminals
    deadline = time.monotonic() + 120
    while (terminals.complete_through() or -1) < day:
        if time.monotonic() > deadline or any(c.proc.poll() is not None for c in children):
            pytest.fail(f"labels not complete through {day}: {children[0].output()[-3000:]}")
        time.sleep(0.1)


def stop(children: list[ChildProcess]) -> None:
    for child in children:
        child.terminate()


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_two_processors_in_one_group_publish_what_one_publishes(
    base_settings: Settings,
    kafka_bootstrap: str,
    tmp_path: Path,
    store: str,
    request: pytest.FixtureRequest,
) -> None:
    prefix: str | None = None
    extra: dict[str, object] = {}
    if store == "redis":
        prefix = request.getfixturevalue("redis_prefix")  # removes f"{prefix}:*" afterwards
        extra["redis"] = {"url": request.getfixturevalue("redis_url"), "key_prefix": prefix}
    one = make_test_settings(
        base_settings, kafka_bootstrap, tmp_path / "one", partitions=PARTITIONS, **extra
    )
    setup_topics(one)
    two = own_group(one, tmp_path / "two" / "state", f"{prefix}:two" if prefix else None)
    labels = make_labels(days=DAYS, terminals=60)
    complete = int(START.timestamp()) // SECONDS_PER_DAY + DAYS - 2

    # The pair starts on the empty topic, so the partitions are split before labels arrive.
    pair = start(two, 2, tmp_path / "two")
    try:
        split = wait_split(pair)
        produce(one, one.topics.labels, labels, key_field="terminal_id")
        wait_complete(two, pair, complete)
    finally:
        stop(pair)
    alone = start(one, 1, tmp_path / "one")
    try:
        wait_complete(one, alone, complete)
    finally:
        stop(alone)

    assert not set(split[0]) & set(split[1])
    rows_one, rows_two = open_state(one).terminals, open_state(two).terminals
    first_day = int(START.timestamp()) // SECONDS_PER_DAY
    keys = [
        (terminal, day)
        for terminal in sorted({lab["terminal_id"] for lab in labels})
        for day in range(first_day, complete + FINAL_LAG + 1)
    ]
    got_one = rows_one.rows(VIEW, keys)
    assert got_one  # rows were published at all
    assert rows_two.rows(VIEW, keys) == got_one
    assert rows_one.complete_through() == rows_two.complete_through() == complete
    want = expected_rows(labels)  # the last final day, from definitions.terminal_features
    assert {key: got_one.get(key) for key in want} == want


def all_rows(
    labels: list[dict[str, object]], days: range
) -> dict[tuple[str, int], tuple[float, ...]]:
    """Every terminal's row for each of ``days`` that has a label in its window."""
    daily: dict[str, dict[int, tuple[int, int]]] = {}
    for lab in labels:
        day = int(datetime.fromisoformat(str(lab["tx_datetime"])).timestamp()) // SECONDS_PER_DAY
        n, f = daily.setdefault(str(lab["terminal_id"]), {}).get(day, (0, 0))
        daily[str(lab["terminal_id"])][day] = (n + 1, f + int(str(lab["tx_fraud"])))
    return {
        (t, d): counts_row(per, d)
        for t, per in daily.items()
        for d in days
        if any(d - 37 <= x < d - 7 for x in per)
    }


def test_a_processor_killed_mid_stream_leaves_no_count_wrong(
    base_settings: Settings, kafka_bootstrap: str, tmp_path: Path
) -> None:
    settings = make_test_settings(base_settings, kafka_bootstrap, tmp_path, partitions=PARTITIONS)
    setup_topics(settings)
    labels = make_labels(days=DAYS, terminals=60)
    half = len(labels) // 2
    first_day = int(START.timestamp()) // SECONDS_PER_DAY
    complete = first_day + DAYS - 2

    pair = start(settings, 2, tmp_path)
    try:
        wait_split(pair)
        produce(settings, settings.topics.labels, labels[:half], key_field="terminal_id")
        wait_complete(settings, pair, first_day + DAYS // 2 - 3)
        # No graceful stop: whatever it counted but had not committed is delivered again to
        # the survivor, which must skip it.
        pair[0].proc.send_signal(signal.SIGKILL)
        pair[0].proc.wait(30)
        produce(settings, settings.topics.labels, labels[half:], key_field="terminal_id")
        wait_complete(settings, pair[1:], complete)
    finally:
        stop(pair)

    days = range(first_day, complete + FINAL_LAG + 1)
    want = all_rows(labels, days)
    terminals = sorted({str(lab["terminal_id"]) for lab in labels})
    got = open_state(settings).terminals.rows(VIEW, [(t, d) for t in terminals for d in days])
    assert want  # the scenario publishes rows at all
    wrong = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
    assert not wrong, f"{len(wrong)} of {len(want)} rows wrong, e.g. {list(wrong.items())[:3]}"
    assert set(got) == set(want)
