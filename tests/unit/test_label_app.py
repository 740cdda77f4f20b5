"""The label app's wiring: which faust transport it consumes through (no broker needed)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from stream_infer.config import load_settings
from stream_infer.errors import ConfigError
from stream_infer.labels.app import create_app, load_repository
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


def test_the_repository_is_read_once_and_a_daily_view_needs_a_label_source(
    tmp_path: Path,
) -> None:
    settings = load_settings(features={"state_dir": str(tmp_path)})
    defs = load_repository(settings)  # the default: the fraud example's declared repository
    assert [v.name for v in defs.daily_views] == ["terminal_counts"]
    assert defs.label_source is not None and defs.label_source.topic == "transaction-labels"
    with pytest.raises(ConfigError, match="label source"):
        aggregator(
            SqliteLabelPartials(tmp_path / "l.db"), [], 1, defs=replace(defs, label_source=None)
        )
