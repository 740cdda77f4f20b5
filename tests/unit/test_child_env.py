"""A child process rebuilds exactly the parent's settings from the environment it is given."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stream_infer.config import load_settings
from stream_infer.process import child_env


def test_every_section_round_trips_through_the_child_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parent = load_settings(
        kafka={
            "bootstrap_servers": "127.0.0.1:1",
            "sasl_password": "s3cret",
            "extra": {"socket.keepalive.enable": "true"},
            "extra_secret": {"sasl.oauthbearer.extensions": "k=v"},
        },
        topics={"labels": "l", "partitions": 3, "specs_dir": "/tmp/specs"},
        worker={"group_id": "g", "emit_features": True},
        redis={"url": "redis://127.0.0.1:6379/2", "key_prefix": "p"},
        features={"state_dir": "/tmp/state", "terminal_wait_ms": 250.0},
        labels={"batch_size": 77, "within_s": 0.05, "uvloop": False},
        metrics={"enabled": False, "port": 0},
    )
    env = child_env(parent, base={"PATH": "/bin", "STREAM_INFER_STALE": "x"})
    assert env["PATH"] == "/bin" and "STREAM_INFER_STALE" not in env
    for key in [k for k in os.environ if k.startswith("STREAM_INFER_")]:
        monkeypatch.delenv(key)
    monkeypatch.delenv("KAFKA_BOOTSTRAP", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    child = load_settings()
    assert child == parent
    assert child.redis.url is not None
    assert child.redis.url.get_secret_value() == "redis://127.0.0.1:6379/2"
    assert child.features.state_dir == Path("/tmp/state")
