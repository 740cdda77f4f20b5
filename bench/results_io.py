"""Where every benchmark writes its results: ``bench/results/<prefix><UTC stamp>.{json,md}``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson

RESULTS_DIR = Path("bench/results")


def write_results(prefix: str, data: Any, table: str) -> Path:
    """Write ``data`` as indented JSON and ``table`` as markdown; returns the .md path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (RESULTS_DIR / f"{prefix}{stamp}.json").write_bytes(
        orjson.dumps(data, option=orjson.OPT_INDENT_2)
    )
    md = RESULTS_DIR / f"{prefix}{stamp}.md"
    md.write_text(table + "\n")
    return md
