"""The loadgen command line without a broker: generate, option validation, help."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from click.testing import CliRunner

from loadgen.cli import cli


def test_generate_writes_parquet_and_prints_the_figures(tmp_path: Path) -> None:
    out = tmp_path / "tx.parquet"
    args = ["generate", "--customers", "50", "--terminals", "100", "--days", "10", "-o", str(out)]
    result = CliRunner().invoke(cli, [*args, "--seed", "4", "--no-progress"])
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(out)
    assert f"{len(frame):,} transactions" in result.output
    assert "scenario 2:" in result.output
    assert frame["tx_datetime"].min() >= pd.Timestamp("2018-04-01")


def test_contradictory_pacing_is_a_usage_error_before_any_io(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli,
        ["replay", "--bootstrap", "127.0.0.1:1", "--rate", "10", "--time-scale", "2"],
    )
    assert result.exit_code == 2 and "not both" in result.output


def test_every_command_has_help() -> None:
    for command in ("generate", "replay", "measure", "run"):
        result = CliRunner().invoke(cli, [command, "--help"])
        assert result.exit_code == 0 and "--" in result.output
    run_help = CliRunner().invoke(cli, ["run", "--help"]).output
    assert "--rate" in run_help and "--events" in run_help
