"""Feature-state growth over a long stream.

``python -m bench.state_growth [--events N] [--redis URL] [--cache-sizes 200000,2000]``

The default simulation (loadgen's simulator: 5,000 customers, 183 days, about 1.78M
transactions) goes in time order, in batches of 512, through the real ``FeatureComputer`` with
write-behind: each batch's entries are saved on a writer thread, at most 32 batches in flight,
as the worker does. Every 100k events (and at the end) a sample: the process RSS (psutil), the
customers in memory, the entries taken but not yet saved, the deletions not due yet (the store
keeps an entry ``DROP_DELAY_S`` past its reach, for re-delivery after a crash), and the store's
size (SQLite: file plus WAL bytes and rows; Redis: this run's keys, entries and
``MEMORY USAGE``). Each
configuration (store x ``customer_cache_size``) runs in a fresh process, so one's memory never
shows in another's RSS. Every customer feature computed goes to a file (not to memory) and is
compared with the first configuration's: the counts must be equal and the means within 1e-6
(a reloaded history sums its amounts from another start than a long-lived one, so a mean's
last bits may differ, as after any restart). A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import psutil  # type: ignore[import-untyped,unused-ignore]  # stubs: types-psutil

from bench.results_io import write_results

BATCH = 512
IN_FLIGHT = 32
SAMPLE_EVERY = 100_000
DAY = 86_400


def _store_size(store: Any, kind: str, where: str, prefix: str) -> dict[str, int]:
    if kind == "sqlite":
        db = Path(where) / "state.db"
        wal = db.with_name("state.db-wal")
        return {
            "store_entries": store.entries(),
            "store_bytes": db.stat().st_size,
            "wal_bytes": wal.stat().st_size if wal.exists() else 0,
        }
    client = store.client
    keys = list(client.scan_iter(match=f"{prefix}:e:*", count=1000))
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.hlen(key)
        pipe.memory_usage(key)
    replies = pipe.execute()
    return {
        "store_keys": len(keys),
        "store_entries": sum(replies[0::2]),
        "store_bytes": sum(r or 0 for r in replies[1::2]),
    }


def _batches(data: Any) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """(events so far, batch) in stream order: the fraud example's event columns per batch."""
    from stream_infer.streamdef.spec import SEQ_COLUMN

    n = len(data["tid"])
    for i in range(0, n, BATCH):
        j = min(n, i + BATCH)
        yield (
            j,
            {
                "transaction_id": data["tid"][i:j].astype(str).astype(object),
                "customer_id": data["cid"][i:j].astype(str).astype(object),
                "terminal_id": data["term"][i:j].astype(str).astype(object),
                "tx_datetime": data["epoch"][i:j].astype(np.int64),
                "tx_amount": data["amount"][i:j].astype(np.float64),
                SEQ_COLUMN: np.arange(i, j, dtype=np.int64),
            },
        )


def _child(spec: dict[str, Any]) -> None:
    """One configuration in this process: prints one JSON line with its samples."""
    from stream_infer.config import load_settings
    from stream_infer.features.compiled import FeatureComputer
    from stream_infer.runtime import load_stream_definitions
    from stream_infer.state.redis_client import connect
    from stream_infer.state.redis_entities import RedisEntityStore
    from stream_infer.state.sqlite_entities import SqliteEntityStore

    data = dict(np.load(spec["events"]))
    epochs = data["epoch"]
    prefix = f"bench-sg-{uuid.uuid4().hex[:8]}"
    work = tempfile.mkdtemp(prefix="state-growth-")
    store: Any
    if spec["store"] == "sqlite":
        store = SqliteEntityStore(Path(work) / "state.db")
    else:
        store = RedisEntityStore(connect(spec["redis"], socket_timeout_s=30.0), prefix)
    defs = load_stream_definitions(load_settings())
    fc = FeatureComputer(defs, store=store, write_behind=True, entity_cache_size=spec["cache_size"])
    stream_at = [defs.inputs.index(n) for n in defs.stream_features()]
    writer = ThreadPoolExecutor(1, thread_name_prefix="state-writer")
    inflight: deque[Future[None]] = deque()
    proc = psutil.Process()
    samples: list[dict[str, Any]] = []
    next_sample = SAMPLE_EVERY
    start = time.monotonic()
    with Path(spec["features"]).open("wb") as features:
        for done, batch in _batches(data):
            matrix, _ = fc.compute(batch)
            features.write(np.ascontiguousarray(matrix[:, stream_at]).tobytes())
            inflight.append(writer.submit(fc.state.save, fc.state.take_pending()))
            while len(inflight) > IN_FLIGHT or (inflight and inflight[0].done()):
                inflight.popleft().result()
            if done >= next_sample or done == len(epochs):
                next_sample += SAMPLE_EVERY
                samples.append(
                    {
                        "events": done,
                        "day": int((epochs[done - 1] - epochs[0]) // DAY),
                        "rss_mb": proc.memory_info().rss / 2**20,
                        "customers_in_memory": fc.state.entities(),
                        "unsaved_entries": fc.state.unsaved(),
                        "drops_waiting": fc.state.drops_waiting(),
                        "seconds": time.monotonic() - start,
                        **_store_size(store, spec["store"], work, prefix),
                    }
                )
    while inflight:
        inflight.popleft().result()
    writer.shutdown()
    if spec["store"] == "redis":
        keys = list(store.client.scan_iter(match=f"{prefix}:*", count=1000))
        for k in range(0, len(keys), 1000):
            store.client.delete(*keys[k : k + 1000])
    else:
        store.close()
    shutil.rmtree(work)
    out = {"samples": samples, "seconds": time.monotonic() - start}
    print(orjson.dumps(out).decode(), flush=True)


def _events(path: Path, limit: int | None) -> int:
    """The default simulation's first ``limit`` events (time order), saved as arrays."""
    from loadgen.simulator import SimulationConfig, generate

    df = generate(SimulationConfig(), progress=False)
    if limit is not None:
        df = df.iloc[:limit]
    np.savez(
        path,
        tid=df["transaction_id"].to_numpy(),
        cid=df["customer_id"].to_numpy(),
        term=df["terminal_id"].to_numpy(),
        epoch=df["tx_datetime"].to_numpy().astype("datetime64[s]").astype(np.int64),
        amount=df["tx_amount"].to_numpy(),
    )
    return len(df)


def _run(spec: dict[str, Any]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.state_growth", "--child", orjson.dumps(spec).decode()]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{spec['name']} failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = orjson.loads(done.stdout.strip().splitlines()[-1])
    return {"name": spec["name"], **result}


def _compare(reference: Path, other: Path) -> dict[str, Any]:
    a, b = (np.fromfile(f).reshape(-1, 6) for f in (reference, other))
    return {
        "counts_equal": bool(np.array_equal(a[:, 0::2], b[:, 0::2])),
        "max_mean_diff": float(np.max(np.abs(a[:, 1::2] - b[:, 1::2]))),
    }


def markdown(runs: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| configuration | events | sim day | RSS MB | customers in memory | unsaved "
        "| drops waiting | store entries | store MB | SQLite WAL MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        for s in run["samples"]:
            wal = f"{s['wal_bytes'] / 2**20:.1f}" if "wal_bytes" in s else "n/a"
            lines.append(
                f"| {run['name']} | {s['events']:,} | {s['day']} | {s['rss_mb']:.0f} "
                f"| {s['customers_in_memory']:,} | {s['unsaved_entries']:,} "
                f"| {s['drops_waiting']:,} "
                f"| {s['store_entries']:,} | {s['store_bytes'] / 2**20:.1f} | {wal} |"
            )
    lines += ["", "| configuration | s | counts equal | max mean diff | RSS MB mid -> end "
              "| store entries mid -> end |", "|---|---:|---|---:|---|---|"]  # fmt: skip
    for run in runs:
        mid, end = run["samples"][len(run["samples"]) // 2], run["samples"][-1]
        lines.append(
            f"| {run['name']} | {run['seconds']:.0f} | {run['counts_equal']} "
            f"| {run['max_mean_diff']:.1e} "
            f"| {mid['rss_mb']:.0f} -> {end['rss_mb']:.0f} "
            f"| {mid['store_entries']:,} -> {end['store_entries']:,} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """Run every configuration, print the table, write bench/results/state-growth-*."""
    parser = argparse.ArgumentParser(prog="python -m bench.state_growth")
    parser.add_argument("--events", type=int, default=None, help="first N events (default all)")
    parser.add_argument("--redis", default=None, help="also run on this Redis (redis://...)")
    parser.add_argument(
        "--cache-sizes", default="200000,2000", help="customer_cache_size values, comma-separated"
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ns = parser.parse_args(argv)
    if ns.child is not None:
        _child(orjson.loads(ns.child))
        return
    began = time.time()
    with tempfile.TemporaryDirectory(prefix="state-growth-") as tmp:
        events = Path(tmp) / "events.npz"
        total = _events(events, ns.events)
        stores = ["sqlite", "redis"] if ns.redis else ["sqlite"]
        configs = [(st, int(n)) for st in stores for n in ns.cache_sizes.split(",")]
        runs = []
        for i, (store, size) in enumerate(configs):
            out = Path(tmp) / f"features-{i}.bin"
            spec = {"name": f"{store}, cache {size:,}", "store": store, "cache_size": size}
            spec |= {"redis": ns.redis, "events": str(events), "features": str(out)}
            runs.append(_run(spec) | _compare(Path(tmp) / "features-0.bin", out))
    load = os.getloadavg()
    header = (
        f"{total:,} events of the default simulation, batches of {BATCH}, write-behind "
        f"({IN_FLIGHT} in flight), one process per configuration (this machine: "
        f"{os.cpu_count()} cores, load average {load[0]:.1f} at the end, "
        f"{time.time() - began:.0f} s)"
    )
    table = header + "\n\n" + markdown(runs)
    print("\n" + table)
    write_results("state-growth-", {"events": total, "runs": runs}, table)


if __name__ == "__main__":
    main()
