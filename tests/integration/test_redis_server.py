"""The private Redis that outage tests pause: a paused server times calls out, resume heals."""

from __future__ import annotations

import os

import pytest
import redis

from .redis_server import RedisServer, redis_server_binary


def test_pause_times_calls_out_and_resume_restores(own_redis: RedisServer) -> None:
    assert own_redis.port != 6379
    client = redis.Redis.from_url(own_redis.url, socket_timeout=0.5, socket_connect_timeout=0.5)
    client.set("k", b"v")
    with own_redis.outage():
        assert own_redis.is_paused
        with pytest.raises(redis.TimeoutError):
            client.get("k")
    assert not own_redis.is_paused
    assert client.get("k") == b"v"
    client.close()


@pytest.mark.skipif(redis_server_binary() is None, reason="redis-server is not installed")
def test_exit_kills_a_paused_server() -> None:
    with RedisServer() as server:
        pid = server.pid
        server.pause()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # signal 0 only asks whether the process exists
