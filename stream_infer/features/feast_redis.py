"""The Redis settings as Feast's Redis online store config: the same server, user, password,
TLS files and topology (standalone, Sentinel, Cluster) the stream's own clients use.

Feast 0.67 takes a ``connection_string`` ``host:port[,host:port...],key=value,...`` whose
values it JSON-decodes and hands to redis-py (``Redis``, ``RedisCluster`` or ``Sentinel``), and
``redis_type`` / ``sentinel_master`` beside it. It splits on commas, so no value may hold one.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote, urlsplit

from pydantic import SecretStr

from stream_infer.config import RedisSettings

_REDIS_TYPES = {"standalone": "redis", "cluster": "redis_cluster", "sentinel": "redis_sentinel"}


def _value(text: str) -> str:
    # Feast json-decodes each value: a password "123" or "true" must stay a string.
    try:
        json.loads(text)
    except ValueError:
        return text
    return json.dumps(text)


def _settings(redis: str | RedisSettings) -> RedisSettings:
    return RedisSettings(url=SecretStr(redis)) if isinstance(redis, str) else redis


def online_store(redis: str | RedisSettings) -> dict[str, Any]:
    """Feast's ``online_store`` mapping for ``redis`` (a URL, or the whole settings).

    Raises:
        ValueError: not a redis:// or rediss:// target, a value holding a comma, or TLS
            sentinels (Feast's connection string cannot carry their TLS settings).
    """
    s = _settings(redis)
    url = urlsplit(s.url.get_secret_value()) if s.url is not None else None
    if s.mode == "sentinel":
        nodes = list(s.sentinels)
    else:
        if url is None or url.scheme not in ("redis", "rediss") or not url.hostname:
            raise ValueError("expected redis://[user:password@]host[:port][/db]")
        nodes = [f"{url.hostname}:{url.port or 6379}", *s.cluster_nodes]
    params: list[tuple[str, str]] = []
    db = url.path.strip("/") if url is not None else ""
    if db and s.mode != "cluster":
        params.append(("db", str(int(db))))
    username = s.username or (unquote(url.username) if url and url.username else None)
    if username:
        params.append(("username", _value(username)))
    if s.password is not None:
        params.append(("password", _value(s.password.get_secret_value())))
    elif url is not None and url.password:
        params.append(("password", _value(unquote(url.password))))
    if s.tls_enabled:
        params.append(("ssl", "true"))
        files = {
            "ssl_ca_certs": s.tls_ca_file,
            "ssl_certfile": s.tls_cert_file,
            "ssl_keyfile": s.tls_key_file,
        }
        params += [(k, _value(str(v))) for k, v in files.items() if v is not None]
        if s.tls_key_password is not None:
            params.append(("ssl_password", _value(s.tls_key_password.get_secret_value())))
        if s.tls_verify != "required":
            params.append(("ssl_cert_reqs", s.tls_verify))
        if not s.tls_check_hostname or s.tls_verify != "required":
            params.append(("ssl_check_hostname", "false"))
    if s.mode == "sentinel" and s.sentinel_password is not None:
        if s.tls_enabled:
            raise ValueError("Feast's Redis online store cannot reach TLS sentinels")
        secret = json.dumps({"password": s.sentinel_password.get_secret_value()})
        params.append(("sentinel_kwargs", secret))
    parts = nodes + [f"{k}={v}" for k, v in params]
    if any("," in p for p in parts):
        raise ValueError("Feast cannot take a Redis setting containing a comma")
    config: dict[str, Any] = {
        "type": "redis",
        "redis_type": _REDIS_TYPES[s.mode],
        "connection_string": ",".join(parts),
    }
    if s.mode == "sentinel":
        config["sentinel_master"] = s.sentinel_master
    return config
