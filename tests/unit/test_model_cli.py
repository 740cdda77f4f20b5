"""``stream-infer model`` on a real folder registry: tables, --json, and one-line refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

from stream_infer.cli import cli
from stream_infer.features.definitions import FEATURE_NAMES
from stream_infer.model.manifest import MODEL_FILE
from stream_infer.model.registry import ModelRegistry


@pytest.fixture
def root(tmp_path: Path, onnx_bytes: bytes) -> Path:
    """Three versions of ``fraud``: v1 champion, v2 and v3 candidates."""
    reg = ModelRegistry(tmp_path / "registry")
    for data in ("d1", "d2", "d2"):
        reg.register("fraud", onnx_bytes, FEATURE_NAMES, training_data_hash=data)
    return tmp_path / "registry"


def run(root: Path, *args: str) -> Result:
    env = {"STREAM_INFER_MODEL__REGISTRY_DIR": str(root)}
    return CliRunner().invoke(cli, ["model", *args], env=env)


def ok_json(root: Path, *args: str) -> Any:
    result = run(root, *args, "--json")
    assert result.exit_code == 0, result.output
    return orjson.loads(result.stdout)


def refused(root: Path, *args: str) -> str:
    """The one line a refused command prints (and checks that it failed)."""
    result = run(root, *args)
    assert result.exit_code != 0, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def test_list_and_show_for_people_and_scripts(root: Path) -> None:
    rows = ok_json(root, "list")
    assert [(r["version"], r["roles"], r["semver"]) for r in rows] == [
        (1, ["champion"], "1.0.0"),
        (2, [], "1.1.0"),
        (3, [], "1.1.1"),
    ]
    table = run(root, "list").stdout
    assert "champion" in table and "candidate" in table and "1.1.1" in table
    shown = ok_json(root, "show", "fraud")
    assert shown["roles"]["champion"] == 1 and shown["roles"]["rollback_to"] is None
    assert [e["action"] for e in shown["history"]] == ["promote"]
    version = ok_json(root, "show", "fraud", "2")
    assert version["manifest"]["training_data_hash"] == "d2" and version["roles"] == []
    assert "feature_names" in run(root, "show", "fraud", "2").stdout
    assert "no models registered" in run(root.parent / "empty", "list").stdout


def test_changes_record_who_and_why(root: Path) -> None:
    result = run(root, "promote", "fraud", "2", "--reason", "better auc", "--actor", "alice")
    assert result.exit_code == 0 and "v1 -> v2" in result.stdout
    changed = ok_json(root, "canary", "fraud", "3", "--percent", "25", "--reason", "try v3")
    assert changed["roles"]["challenger"] == {"version": 3, "percent": 25}
    assert changed["event"]["percent"] == 25
    assert ok_json(root, "shadow", "fraud", "1")["roles"]["shadow"] == 1
    assert ok_json(root, "clear", "fraud", "shadow")["roles"]["shadow"] is None
    assert ok_json(root, "clear", "fraud", "challenger")["roles"]["challenger"] is None
    back = ok_json(root, "rollback", "fraud", "--reason", "alerts")
    assert back["event"]["to_version"] == 1 and back["roles"]["champion"] == 1
    history = ok_json(root, "show", "fraud")["history"]
    assert [e["revision"] for e in history] == list(range(1, 8))
    promote = history[1]
    assert (promote["actor"], promote["reason"], promote["from_version"]) == (
        "alice",
        "better auc",
        1,
    )
    assert "better auc" in run(root, "show", "fraud").stdout


def test_refusals_are_one_line_and_change_nothing(root: Path) -> None:
    assert "not registered" in refused(root, "promote", "fraud", "9")
    assert "0-100" in refused(root, "canary", "fraud", "2", "--percent", "150")
    assert "no previous champion" in refused(root, "rollback", "fraud")
    assert "cannot be cleared" in refused(root, "clear", "fraud", "champion")
    assert "no models" not in refused(root, "show", "nope")
    (root / "fraud" / "3" / MODEL_FILE).write_bytes(b"tampered")
    assert "sha256" in refused(root, "promote", "fraud", "3")
    assert "sha256" in refused(root, "shadow", "fraud", "3")
    shown = ok_json(root, "show", "fraud")
    assert shown["roles"]["revision"] == 1 and len(shown["history"]) == 1


def test_load_reports_show_in_the_listing(root: Path) -> None:
    ModelRegistry(root).record_status("fraud", 2, "failed", "input shape", reporter="w1")
    row = ok_json(root, "list")[1]
    assert (row["state"], row["reason"]) == ("failed", "input shape")
    assert ok_json(root, "show", "fraud", "2")["statuses"]["w1"]["state"] == "failed"
    assert "input shape" in run(root, "list").stdout


def test_help_names_every_command() -> None:
    result = CliRunner().invoke(cli, ["model", "--help"])
    commands = ("list", "show", "promote", "rollback", "canary", "shadow", "clear", "compare")
    for command in commands:
        assert command in result.output
    assert "--promote" in CliRunner().invoke(cli, ["train", "--help"]).output


def test_train_registers_the_first_as_champion_then_candidates(tmp_path: Path) -> None:
    env = {"STREAM_INFER_MODEL__REGISTRY_DIR": str(tmp_path / "registry")}
    first = CliRunner().invoke(cli, ["train", "--quick"], env=env)
    assert first.exit_code == 0, first.output
    assert "registered fraud v1 (1.0.0) as champion" in first.stdout
    second = CliRunner().invoke(cli, ["train", "--quick", "--model", "tree"], env=env)
    assert "v2 (1.0.1) as candidate (champion stays v1)" in second.stdout, second.output
    third = CliRunner().invoke(
        cli, ["train", "--quick", "--seed", "1", "--promote", "--reason", "new data"], env=env
    )
    assert "v3 (1.1.0) as champion" in third.stdout, third.output
    last = ModelRegistry(tmp_path / "registry").history("fraud")[-1]
    assert (last.from_version, last.to_version, last.reason) == (1, 3, "new data")
