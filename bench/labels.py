"""Label processor throughput: ``python -m bench.labels [--quick]``.

One embedded Tansu broker, one labels topic (6 partitions) pre-loaded with the first N labels of
the default simulation (keyed by terminal, in event-time order per partition, encoded as loadgen
encodes them). Each configuration runs in fresh child processes with a fresh consumer group and
fresh state; labels/s is counted from the first label counted to the last, read from the count
store's applied offsets (the processors' own progress), so start-up and the group join are
left out. Every run of a processor with a store is checked: the watermark reached the expected
day and the last final day's rows of the fraud example's daily view ``terminal_counts`` are the
transactions and frauds counted here (risks via the ODFV: ``definitions.terminal_features``).

Configurations: the product's faust app (``stream_infer.labels.app.run``) with its knobs
(``take_events`` batch, event loop, count store, transport, processes in one group), a plain
confluent-kafka loop feeding the same aggregator and store, and a bare confluent-kafka loop
that only decodes (orjson) and counts in a dict: the transport's ceiling for this work.
``run(quick)`` returns one dict per configuration with the median of the runs.
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson

from bench.results_io import write_results
from stream_infer.config import Settings, load_settings
from stream_infer.features.definitions import LABEL_DELAY_DAYS, SECONDS_PER_DAY, WINDOWS_DAYS

#: The fraud example's daily view and how many days after the watermark its final rows are.
VIEW = "terminal_counts"
FINAL_LAG = LABEL_DELAY_DAYS + 1

REDIS_URL = "redis://127.0.0.1:6379/0"
PARTITIONS = 6


@dataclass(frozen=True)
class Config:
    """One way to run the label processor."""

    name: str
    processor: Literal["faust", "confluent", "bare"] = "faust"
    store: Literal["sqlite", "redis", "none"] = "sqlite"
    processes: int = 1
    batch_size: int = 2000
    within_s: float = 0.2
    transport: Literal["kafka", "confluent"] = "kafka"
    lean_handoff: bool = True
    uvloop: bool = True
    reps: int | None = None  # None: the run's default
    timeout_s: float = 300.0


FULL: tuple[Config, ...] = (
    Config("faust (product defaults: lean hand-off, batch 2000, uvloop, SQLite)"),
    Config("faust, faust's own hand-off (2 tasks per message)", lean_handoff=False),
    Config("faust, batch 500 / within 0.05 s", batch_size=500, within_s=0.05),
    Config("faust, batch 10000 / within 0.5 s", batch_size=10000, within_s=0.5),
    Config("faust, asyncio event loop", uvloop=False),
    Config("faust, Redis counts", store="redis"),
    Config("faust, 2 processes in one group, SQLite", processes=2),
    Config("faust, 2 processes in one group, Redis", processes=2, store="redis"),
    Config("faust, confluent:// transport", transport="confluent", reps=1, timeout_s=45.0),
    Config("confluent-kafka loop, same aggregator, SQLite", processor="confluent"),
    Config("confluent-kafka loop, same aggregator, Redis", processor="confluent", store="redis"),
    Config("confluent-kafka loop, decode + count in memory", processor="bare", store="none"),
)
QUICK: tuple[Config, ...] = (
    FULL[0],
    FULL[1],
    FULL[6],
    FULL[9],
    FULL[11],
)


@dataclass(frozen=True)
class Dataset:
    bootstrap: str
    topic: str
    labels: int
    complete_through: int  # the watermark once every label is counted
    final_rows: Mapping[tuple[str, int], tuple[float, ...]]  # rows of the last final day


def _settings(bootstrap: str, topic: str, state: Path, group: str, prefix: str | None) -> Settings:
    data: dict[str, Any] = {
        "kafka": {"bootstrap_servers": bootstrap},
        "topics": {"labels": topic, "dead_letter": f"{topic}-dlq"},
        "worker": {"group_id": group},
        "features": {"state_dir": str(state)},
        "metrics": {"enabled": False},
    }
    if prefix is not None:
        data["redis"] = {"url": REDIS_URL, "key_prefix": prefix}
    return load_settings(**data)


def prepare(bootstrap: str, n: int) -> Dataset:
    """Create the topic, produce the first ``n`` labels of the default simulation, and work
    out the watermark and final rows a correct processor ends with."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    from loadgen.simulator import SimulationConfig, generate
    from loadgen.stream import iso_seconds

    df = generate(SimulationConfig(), progress=False).head(n)
    times = iso_seconds(df["tx_datetime"].to_numpy("datetime64[ns]").view(np.int64))
    topic = f"bench-labels-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    last_day: dict[int, int] = {}
    errors: list[str] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(str(err))
        else:
            day = int(datetime.fromisoformat(orjson.loads(msg.value())["tx_datetime"]).timestamp())
            last_day[msg.partition()] = max(last_day.get(msg.partition(), -1), day // 86400)

    daily: dict[str, dict[int, tuple[int, int]]] = {}
    rows = zip(df["transaction_id"], times, df["terminal_id"], df["tx_fraud"], strict=True)
    for tid, when, terminal, fraud in rows:
        value = orjson.dumps(
            {
                "transaction_id": str(tid),
                "tx_datetime": when,
                "terminal_id": str(terminal),
                "tx_fraud": int(fraud),
            }
        )
        while True:
            try:
                producer.produce(topic, value, str(terminal).encode(), on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
        day = int(datetime.fromisoformat(when).timestamp()) // SECONDS_PER_DAY
        nb, fr = daily.setdefault(str(terminal), {}).get(day, (0, 0))
        daily[str(terminal)][day] = (nb + 1, fr + int(fraud))
    if producer.flush(60) or errors:
        raise RuntimeError(f"preload failed: {errors[:3]}")
    complete = min(last_day.values()) - 1
    final = complete + FINAL_LAG
    expected = {
        (t, final): _counts_row(per, final)
        for t, per in daily.items()
        if any(d in per for d in range(final - 37, final - 7))
    }
    return Dataset(bootstrap, topic, n, complete, expected)


def _counts_row(daily: Mapping[int, tuple[int, int]], day: int) -> tuple[float, ...]:
    """``terminal_counts``' row for ``day``: transactions and frauds over 1, 7 and 30 days."""
    end = day - LABEL_DELAY_DAYS
    out: list[float] = []
    for n in WINDOWS_DAYS:
        out.append(float(sum(daily.get(d, (0, 0))[0] for d in range(end - n, end))))
        out.append(float(sum(daily.get(d, (0, 0))[1] for d in range(end - n, end))))
    return tuple(out)


def _progress(cfg: Config, state: Path, prefix: str) -> int:
    """Labels counted so far (sum over partitions of applied offset + 1)."""
    if cfg.store == "redis":
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        try:
            return sum(int(v) + 1 for v in client.hgetall(f"{prefix}:lo").values())
        finally:
            client.close()
    db = state / "labels.db"
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
        try:
            row = con.execute("SELECT coalesce(sum(last_offset + 1), 0) FROM label_progress")
            return int(row.fetchone()[0])
        finally:
            con.close()
    except sqlite3.OperationalError:  # the table is not created yet
        return 0


def _verify(data: Dataset, settings: Settings) -> str:
    from stream_infer.state.factory import open_state

    terminals = open_state(settings).terminals
    deadline = time.monotonic() + 30
    while (terminals.complete_through() or -1) < data.complete_through:
        if time.monotonic() > deadline:
            return f"watermark {terminals.complete_through()} != {data.complete_through}"
        time.sleep(0.05)
    got = terminals.rows(VIEW, data.final_rows.keys())
    if got != data.final_rows:
        bad = sum(1 for k, v in data.final_rows.items() if got.get(k) != v)
        return f"{bad} of {len(data.final_rows)} final rows differ"
    return "ok"


def run_once(cfg: Config, data: Dataset, work: Path) -> dict[str, Any]:
    """One run of ``cfg`` in fresh child processes; labels/s and the check's verdict."""
    state = Path(tempfile.mkdtemp(prefix="state-", dir=work))
    group = f"bench-{uuid.uuid4().hex[:8]}"
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    args = {
        "config": asdict(cfg),
        "bootstrap": data.bootstrap,
        "topic": data.topic,
        "state": str(state),
        "group": group,
        "prefix": prefix,
        "labels": data.labels,
    }
    logs = [(state / f"child-{i}.log").open("wb") for i in range(cfg.processes)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.labels", "--child", orjson.dumps(args).decode()],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        for log in logs
    ]
    started = time.monotonic()
    result: dict[str, Any] = {"labels_per_s": 0.0, "cpu_us_per_label": None, "check": "no progress"}
    try:
        if cfg.processor == "bare":
            procs[0].wait(cfg.timeout_s)
            lines = (state / "child-0.log").read_text().splitlines()
            result = orjson.loads([ln for ln in lines if ln.startswith("{")][-1])
            result["check"] = "not checked (no store)"
            return result
        first: tuple[float, int, float] | None = None
        while time.monotonic() - started < cfg.timeout_s:
            time.sleep(0.02)
            if any(p.poll() is not None for p in procs):
                result["check"] = "a child exited: " + (state / "child-0.log").read_text()[-800:]
                return result
            done = _progress(cfg, state, prefix)
            now = time.monotonic()
            if done and first is None:
                first = (now, done, _cpu_s(procs))
            if done >= data.labels and first is not None:
                result["labels_per_s"] = (done - first[1]) / max(now - first[0], 1e-9)
                # CPU time per label is what a loaded machine distorts least.
                cpu = _cpu_s(procs) - first[2]
                result["cpu_us_per_label"] = cpu / max(done - first[1], 1) * 1e6
                redis_prefix = prefix if cfg.store == "redis" else None
                check = _settings(data.bootstrap, data.topic, state, group, redis_prefix)
                result["check"] = _verify(data, check)
                return result
        result["check"] = (
            f"timeout after {cfg.timeout_s:.0f}s ({_progress(cfg, state, prefix)} counted)"
        )
        return result
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        for log in logs:
            log.close()
        if cfg.store == "redis":
            _drop_redis(prefix)


def _cpu_s(procs: Sequence[subprocess.Popen[bytes]]) -> float:
    """User + system CPU seconds of the processor processes so far."""
    import psutil  # type: ignore[import-untyped,unused-ignore]  # stubs: types-psutil

    total = 0.0
    for p in procs:
        try:
            times = psutil.Process(p.pid).cpu_times()
            total += times.user + times.system
        except psutil.Error:  # it exited: its time is no longer readable
            pass
    return total


def _drop_redis(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


def _redis_up() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


def run(
    quick: bool, labels: int | None = None, reps: int | None = None, only: str | None = None
) -> list[dict[str, Any]]:
    """Every configuration on one broker and one pre-loaded topic; one dict per configuration
    (``labels_per_s`` is the median of its runs; ``runs`` holds each run)."""
    from stream_infer.kafka.broker import EmbeddedBroker

    configs = QUICK if quick else FULL
    if only:
        configs = tuple(c for c in configs if any(o in c.name for o in only.split("|")))
    reps = reps or (1 if quick else 3)
    labels = labels or (30_000 if quick else 200_000)
    redis_up = _redis_up()
    out: list[dict[str, Any]] = []
    with EmbeddedBroker("tansu") as broker, tempfile.TemporaryDirectory() as tmp:
        data = prepare(broker.bootstrap, labels)
        for cfg in configs:
            row: dict[str, Any] = {**asdict(cfg), "labels": data.labels}
            if cfg.store == "redis" and not redis_up:
                out.append({**row, "labels_per_s": None, "runs": [], "check": "Redis is down"})
                continue
            runs = [run_once(cfg, data, Path(tmp)) for _ in range(cfg.reps or reps)]
            rates = [r["labels_per_s"] for r in runs]
            cpus = [r["cpu_us_per_label"] for r in runs if r.get("cpu_us_per_label") is not None]
            checks = sorted({r["check"] for r in runs})
            row.update(
                labels_per_s=statistics.median(rates),
                runs=rates,
                cpu_us_per_label=statistics.median(cpus) if cpus else None,
                check="; ".join(checks),
            )
            out.append(row)
            print(f"{cfg.name}: {row['labels_per_s']:,.0f}/s {rates} {row['check']}", flush=True)
    return out


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The results as a markdown table (median labels/s, each run, the check)."""
    lines = [
        "| configuration | labels/s (median) | runs | CPU µs/label (median) | check |",
        "|---|---:|---|---:|---|",
    ]
    for r in rows:
        rate = "n/a" if r["labels_per_s"] is None else f"{r['labels_per_s']:,.0f}"
        runs = ", ".join(f"{x:,.0f}" for x in r["runs"])
        cpu = "n/a" if r.get("cpu_us_per_label") is None else f"{r['cpu_us_per_label']:.1f}"
        lines.append(f"| {r['name']} | {rate} | {runs} | {cpu} | {r['check']} |")
    return "\n".join(lines)


# -- child processes --------------------------------------------------------------------------


def _child(args: dict[str, Any]) -> None:
    cfg = Config(**args["config"])
    prefix = args["prefix"] if cfg.store == "redis" else None
    settings = _settings(
        args["bootstrap"], args["topic"], Path(args["state"]), args["group"], prefix
    )
    if cfg.processor == "faust":
        from stream_infer.labels.app import run as run_faust

        labels = settings.labels.model_copy(
            update={
                "batch_size": cfg.batch_size,
                "within_s": cfg.within_s,
                "transport": cfg.transport,
                "uvloop": cfg.uvloop,
                "lean_handoff": cfg.lean_handoff,
            }
        )
        run_faust(settings.model_copy(update={"labels": labels}))
    elif cfg.processor == "confluent":
        _confluent_loop(settings, cfg)
    else:
        _bare_loop(settings, cfg, int(args["labels"]))


def _consumer(settings: Settings) -> Any:
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            **settings.kafka.client_config(),
            "group.id": settings.worker.group_id,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": settings.kafka.session_timeout_ms,
        }
    )
    consumer.subscribe([settings.topics.labels])
    return consumer


def _confluent_loop(settings: Settings, cfg: Config) -> None:
    """The same aggregator and store behind a plain consume loop (commit after each batch)."""
    from stream_infer.labels.aggregator import LabelRecord
    from stream_infer.labels.app import build_aggregator, load_repository, topic_partitions

    defs = load_repository(settings)
    aggregator = build_aggregator(settings, topic_partitions(settings), defs)
    consumer = _consumer(settings)
    stop = [False]
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
    while not stop[0]:
        msgs = [m for m in consumer.consume(cfg.batch_size, cfg.within_s) if m.error() is None]
        if msgs:
            aggregator.process([LabelRecord(m.partition(), m.offset(), m.value()) for m in msgs])
            consumer.commit(asynchronous=True)
    consumer.close()


def _bare_loop(settings: Settings, cfg: Config, labels: int) -> None:
    """Decode each label (orjson, ISO time) and count (day, terminal) in a dict: no store."""
    consumer = _consumer(settings)
    counts: dict[tuple[int, str], list[int]] = {}
    seen = 0
    first: tuple[float, int, float] | None = None
    loads, parse = orjson.loads, datetime.fromisoformat
    while seen < labels:
        msgs = consumer.consume(cfg.batch_size, cfg.within_s)
        for m in msgs:
            label = loads(m.value())
            day = int(parse(label["tx_datetime"]).timestamp()) // SECONDS_PER_DAY
            acc = counts.setdefault((day, label["terminal_id"]), [0, 0])
            acc[0] += 1
            acc[1] += label["tx_fraud"]
        seen += len(msgs)
        if msgs and first is None:
            first = (time.monotonic(), seen, time.process_time())
    assert first is not None
    rate = (seen - first[1]) / max(time.monotonic() - first[0], 1e-9)
    cpu_us = (time.process_time() - first[2]) / max(seen - first[1], 1) * 1e6
    print(orjson.dumps({"labels_per_s": rate, "cpu_us_per_label": cpu_us}).decode(), flush=True)
    consumer.close()


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m bench.labels [--quick]``: run, print the table, write bench/results/."""
    parser = argparse.ArgumentParser(prog="python -m bench.labels")
    parser.add_argument("--quick", action="store_true", help="30k labels, 4 configurations, once")
    parser.add_argument("--labels", type=int, default=None, help="labels to preload")
    parser.add_argument("--reps", type=int, default=None, help="runs per configuration")
    parser.add_argument("--only", default=None, help="configurations whose name has one of a|b")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)
    if ns.child is not None:
        _child(orjson.loads(ns.child))
        return
    began = time.time()
    rows = run(ns.quick, ns.labels, ns.reps, ns.only)
    load = os.getloadavg()
    header = (
        f"{rows[0]['labels']:,} labels, {PARTITIONS} partitions, Tansu, medians of "
        f"{ns.reps or (1 if ns.quick else 3)} (this machine: {os.cpu_count()} cores, load average "
        f"{load[0]:.1f} at the end, {time.time() - began:.0f} s)"
    )
    table = header + "\n\n" + markdown(rows)
    print("\n" + table)
    write_results("labels-", rows, table)


if __name__ == "__main__":
    main()
