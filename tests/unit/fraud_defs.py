"""The fraud example's definitions, read once per test session (Feast imports in seconds)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from stream_infer.streamdef.spec import StreamDefinitions

FRAUD_REPO = Path(__file__).resolve().parents[2] / "examples" / "fraud" / "feature_repo"


@cache
def fraud_defs() -> StreamDefinitions:
    """The shipped fraud example's :class:`StreamDefinitions`."""
    from stream_infer.streamdef.feast_reader import load_definitions

    return load_definitions(FRAUD_REPO)
