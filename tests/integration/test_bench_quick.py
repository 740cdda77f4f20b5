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
    assert set(result["rows"]) == {"transport", "quix", "naive", "worker"}
    assert all(row["events_per_s"] > 0 for row in result["rows"].values())
    assert result["model_limit"]["rows_per_s_batch_512"] > 0
    assert result["latency_at_half_max"]["missing"] == 0
    assert (tmp_path / "bench" / "results" / results[0].with_suffix(".md").name).exists()
