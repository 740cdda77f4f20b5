"""Consumer lag from librdkafka's statistics JSON.

Tansu answers ListOffsets wrongly, so lag comes from the statistics the client already
collects (``statistics.interval.ms``): per assigned partition, ``consumer_lag``.
"""

from __future__ import annotations

from typing import Any

import orjson


def consumer_lag(stats_json: str | bytes) -> dict[tuple[str, int], int]:
    """``{(topic, partition): lag}`` for partitions with a known lag (>= 0)."""
    stats: dict[str, Any] = orjson.loads(stats_json)
    lags: dict[tuple[str, int], int] = {}
    for topic, tstats in stats.get("topics", {}).items():
        for pid, pstats in tstats.get("partitions", {}).items():
            partition = int(pid)
            if partition < 0:  # librdkafka's internal UA partition
                continue
            lag = int(pstats.get("consumer_lag", -1))
            if lag >= 0:
                lags[(topic, partition)] = lag
    return lags
