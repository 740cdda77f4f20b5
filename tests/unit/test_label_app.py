"""The label app's wiring: which faust transport it consumes through (no broker needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_infer.config import load_settings
from stream_infer.labels.app import create_app
from stream_infer.labels.stores import SqliteLabelPartials

from .label_fixtures import aggregator


@pytest.mark.parametrize(
    ("lean", "expected"), [(True, "LeanHandoffTransport"), (False, "Transport")]
)
def test_the_app_consumes_through_the_configured_hand_off(
    tmp_path: Path, lean: bool, expected: str
) -> None:
    settings = load_settings(
        kafka={"bootstrap_servers": "127.0.0.1:1"},
        features={"state_dir": str(tmp_path)},
        labels={"lean_handoff": lean},
    )
    app, stats = create_app(settings, aggregator(SqliteLabelPartials(tmp_path / "l.db"), [], 1))
    assert type(app.transport).__name__ == expected
    consumer = app.transport.Consumer.__name__
    assert consumer == ("LeanHandoffConsumer" if lean else "Consumer")
    assert stats == {"counted": 0, "dead_lettered": 0}
