"""Bad configuration stops the process at start with a message naming the setting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stream_infer.config import load_settings
from stream_infer.errors import ConfigError


def test_invalid_setting_is_named_by_its_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STREAM_INFER_WORKER__MAX_IN_FLIGHT_BATCHES", "0")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "STREAM_INFER_WORKER__MAX_IN_FLIGHT_BATCHES" in message
    assert "greater than or equal to 1" in message


def test_every_invalid_setting_is_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAM_INFER_KAFKA__SESSION_TIMEOUT_MS", "soon")
    monkeypatch.setenv("STREAM_INFER_MODEL__THRESHOLD", "2")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "STREAM_INFER_KAFKA__SESSION_TIMEOUT_MS" in message
    assert "STREAM_INFER_MODEL__THRESHOLD" in message


def test_cli_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    env = {**os.environ, "STREAM_INFER_MODEL__THRESHOLD": "2"}
    done = subprocess.run(
        [sys.executable, "-m", "stream_infer", "lag", "--help"],
        env=env,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == [lines[-1]]
    assert lines[-1].startswith("error: invalid settings: STREAM_INFER_MODEL__THRESHOLD")
