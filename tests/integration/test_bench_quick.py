"""`python -m bench --quick` runs end to end and writes every row (a harness check, not a speed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[2]


def test_quick_benchmark_writes_every_row(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--events", "3000"],
        cwd=tmp_path,
        env={**__import__("os").environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    results = list((tmp_path / "bench" / "results").glob("*.json"))
    assert len(results) == 1
    result = orjson.loads(results[0].read_bytes())
    assert set(result["rows"]) == {
        "transport",
        "quix",
        "naive",
        "worker",
        "worker_eos",
        "worker_shadow",
        "worker_procs_1",
        "worker_procs_2",
    }
    assert all(row["events_per_s"] > 0 for row in result["rows"].values())
    # The Apache Kafka rows, beside the embedded broker's: exactly-once really committed.
    apache = result["apache"]
    assert set(apache["rows"]) == {"transport", "worker", "worker_eos"}
    assert all(row["events_per_s"] > 0 for row in apache["rows"].values())
    assert all(t["committed"] > 0 for t in apache["exactly_once"]["transactions"])
    # Each row's memory is its own: the kernel's high-water mark of the row's process agrees
    # with its RSS sampled from outside (an inherited figure, the harness's, would not).
    for name, row in result["rows"].items():
        assert row["peak_rss_mb"] > 0, name
        if row["processes"] == 1:
            assert abs(row["sampled_rss_mb"] - row["peak_rss_mb"]) <= 0.1 * row["peak_rss_mb"] + 10
    # --processes 2 is a supervisor and two workers, each worker owning half the partitions.
    assert result["rows"]["worker_procs_1"]["processes"] == 1
    assert result["rows"]["worker_procs_2"]["processes"] == 3
    scale = result["scale_out"]
    assert scale["vs_one_process"] > 0
    for parts in scale["assignments"]:
        assert len(parts) == 2 and all(parts)
        assert sorted(p for group in parts for p in group) == list(range(scale["partitions"]))
    assert scale["exit_codes"] == [0, 0]
    assert scale["scores"] == [{"records": 3000, "transactions": 3000}] * 2
    assert result["model_limit"]["rows_per_s_batch_512"] > 0
    assert result["own_repo_features_us_per_event"] > 0
    assert result["latency_at_half_max"]["missing"] == 0
    # The broker's two hops ran at the worker's offered rate, and every record came through.
    floor = result["broker_two_hops_at_half_max"]
    assert floor["rate"] == result["latency_at_half_max"]["rate"]
    assert floor["missing"] == 0 and floor["p50_ms"] > 0
    # The same pair at a quarter of the maximum, with what each kept up with.
    quarter, quarter_floor = (
        result["latency_at_quarter_max"],
        result["broker_two_hops_at_quarter_max"],
    )
    assert quarter["rate"] == quarter_floor["rate"] == floor["rate"] / 2
    assert quarter["missing"] == quarter_floor["missing"] == 0
    assert all(r["received_per_s"] > 0 for r in (quarter, quarter_floor, floor))
    # Exactly-once ran its transactions: every one committed, none aborted.
    eos = result["exactly_once"]
    assert eos["vs_at_least_once"] > 0
    assert all(t["committed"] > 0 and t["aborted"] == 0 for t in eos["transactions"])
    # The shadow wrote one score per event to scores-shadow.
    shadow = result["shadow"]
    assert shadow["vs_no_shadow"] > 0
    assert shadow["scores_shadow"] == [{"records": 3000, "transactions": 3000}]
    # The promoted version served, and every paced event was scored by the swapping worker.
    swap = result["hot_swap"]
    assert swap["to_v2_s"] > 0
    assert all(r["scores"] == r["events"] and r["worker_exit"] == 0 for r in swap["runs"])
    assert swap["gap_ms_swap"] > 0 and swap["gap_ms_before"] > 0
    assert (tmp_path / "bench" / "results" / results[0].with_suffix(".md").name).exists()
