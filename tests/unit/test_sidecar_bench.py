"""bench.sidecar's table: a peer that cannot be installed is a row saying why (the run goes
on), and every row is compared with its reference at the same concurrency."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import sidecar
from bench.peers import venvs


def row(server: str, api: str, conc: int, rps: float) -> dict[str, object]:
    return {"server": server, "api": api, "concurrency": conc, "rps": rps, "p50_ms": 1.0} | {
        "p99_ms": 2.0,
        "non_2xx": 0.0,
        "cpu_us": 100.0,
        "reps": 3,
        "note": "",
    }


def test_a_peer_that_cannot_install_is_a_row_saying_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setattr(venvs, "ROOT", blocker)  # a venv cannot be created under a file
    with pytest.raises(venvs.PeerUnavailableError) as refused:
        venvs.ensure("mlserver", echo=False)
    rows = [row("sidecar", "v2 http", 1, 1000.0)]
    rows += sidecar._unavailable("mlserver", "v2 http", str(refused.value))
    table = sidecar.markdown(rows)
    lines = table.splitlines()
    assert all(line.count("|") == lines[0].count("|") for line in lines)  # well-formed
    assert "| mlserver | v2 http | 1 | not run: " in table


def test_ratios_are_against_each_rows_reference() -> None:
    rows = [
        row("sidecar", "v1", 16, 3000.0),
        row("baseline", "v1", 16, 1000.0),
        row("sidecar", "v2 http", 16, 4000.0),
        row("sidecar", "v2 grpc", 16, 1000.0),
        row("mlserver", "v2 http", 16, 2000.0),
    ]
    table = sidecar.markdown(rows)
    assert "| sidecar | v1 | 16 | 3,000 | 3.00x | baseline v1 |" in table
    assert "| sidecar | v2 grpc | 16 | 1,000 | 0.25x | sidecar v2 http |" in table
    assert "| mlserver | v2 http | 16 | 2,000 | 0.50x | sidecar v2 http |" in table
