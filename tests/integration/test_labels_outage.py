"""The label processor rides out a Redis outage: it stays up, resumes by itself, loses nothing.

The processor runs as a child (``stream-infer labels``) with its counts and rows on a private
Redis that the test pauses (SIGSTOP) mid-stream; the shared Redis on 6379 is never paused.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from stream_infer.config import Settings
from stream_infer.events import DeadLetter
from stream_infer.features.definitions import SECONDS_PER_DAY
from stream_infer.process import ChildProcess
from stream_infer.state.factory import open_state
from tests.unit.label_fixtures import FINAL_LAG, VIEW

from .conftest import make_test_settings
from .kafka_io import produce, read_topic, setup_topics
from .redis_server import RedisServer
from .test_labels import START, make_labels
from .test_labels_scaleout import all_rows, wait_complete

DAYS = 14
OUTAGE_S = 10.0
DOWN = "label store unavailable"
BACK = "label store is back"


def outage_settings(base: Settings, bootstrap: str, tmp: Path, redis: RedisServer) -> Settings:
    return make_test_settings(
        base,
        bootstrap,
        tmp,
        redis={
            "url": redis.url,
            "key_prefix": "outage",
            "socket_timeout_s": 0.5,
            "connect_timeout_s": 0.5,
        },
        worker={"store_retry_initial_s": 0.05, "store_retry_max_s": 1.0},
    )


def wait_output(child: ChildProcess, needle: str, timeout_s: float = 60.0) -> None:
    try:
        child.wait_for(needle, timeout_s)
    except RuntimeError as exc:
        pytest.fail(str(exc))


def check_rows(settings: Settings, labels: list[dict[str, object]], complete: int) -> None:
    first_day = int(START.timestamp()) // SECONDS_PER_DAY
    days = range(first_day, complete + FINAL_LAG + 1)
    want = all_rows(labels, days)  # the fraud view's rows counted from the labels themselves
    terminals = sorted({str(lab["terminal_id"]) for lab in labels})
    got = open_state(settings).terminals.rows(VIEW, [(t, d) for t in terminals for d in days])
    assert want  # the scenario publishes rows at all
    wrong = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
    assert not wrong, f"{len(wrong)} of {len(want)} rows wrong, e.g. {list(wrong.items())[:3]}"
    assert set(got) == set(want)
    assert open_state(settings).terminals.complete_through() == complete


def test_a_paused_redis_mid_stream_is_ridden_out(
    base_settings: Settings, kafka_bootstrap: str, tmp_path: Path, own_redis: RedisServer
) -> None:
    settings = outage_settings(base_settings, kafka_bootstrap, tmp_path, own_redis)
    setup_topics(settings)
    labels = make_labels(days=DAYS, terminals=60)
    half = len(labels) // 2
    first_day = int(START.timestamp()) // SECONDS_PER_DAY
    complete = first_day + DAYS - 2

    child = ChildProcess(settings, tmp_path / "labels.log", "labels")
    try:
        produce(settings, settings.topics.labels, labels[:half], key_field="terminal_id")
        wait_complete(settings, [child], first_day + DAYS // 2 - 3)
        with own_redis.paused(OUTAGE_S):
            # Labels (and one broken record) arrive while the store does not answer.
            produce(settings, settings.topics.labels, labels[half:], key_field="terminal_id")
            produce(settings, settings.topics.labels, [b"{broken"])
            wait_output(child, DOWN)
        wait_complete(settings, [child], complete)
        wait_output(child, BACK)
        assert child.proc.poll() is None, child.output()[-3000:]
    finally:
        code = child.terminate()
    assert code == 0, child.output()[-3000:]
    out = child.output()
    assert out.count(DOWN) == 1 and out.count(BACK) == 1, out[-3000:]
    check_rows(settings, labels, complete)
    letters = read_topic(settings, settings.topics.dead_letter, lambda r: len(r) >= 1)
    assert {DeadLetter.model_validate_json(m.value()).original for m in letters} == {b"{broken"}


def test_a_stop_during_an_outage_commits_nothing_unapplied(
    base_settings: Settings, kafka_bootstrap: str, tmp_path: Path, own_redis: RedisServer
) -> None:
    settings = outage_settings(base_settings, kafka_bootstrap, tmp_path, own_redis)
    setup_topics(settings)
    labels = make_labels(days=DAYS, terminals=60)
    half = len(labels) // 2
    first_day = int(START.timestamp()) // SECONDS_PER_DAY
    complete = first_day + DAYS - 2

    first = ChildProcess(settings, tmp_path / "labels-1.log", "labels")
    try:
        produce(settings, settings.topics.labels, labels[:half], key_field="terminal_id")
        wait_complete(settings, [first], first_day + DAYS // 2 - 3)
        with own_redis.outage():
            produce(settings, settings.topics.labels, labels[half:], key_field="terminal_id")
            wait_output(first, DOWN)  # a batch of the second half is in retry now
            started = time.monotonic()
            code = first.terminate(timeout_s=60)  # SIGTERM; SIGKILL (-9) only after 60 s
            stopped_in = time.monotonic() - started
    finally:
        first.kill()
    assert code == 0, f"exit {code} after {stopped_in:.1f}s: {first.output()[-3000:]}"

    # A restart must see the second half again: the batch in retry was never committed.
    second = ChildProcess(settings, tmp_path / "labels-2.log", "labels")
    try:
        wait_complete(settings, [second], complete)
    finally:
        second.terminate()
    check_rows(settings, labels, complete)
