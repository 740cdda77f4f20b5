"""The one place a Redis client is built from :class:`~stream_infer.config.RedisSettings`.

Standalone, Sentinel (the master found through the sentinels) or Cluster; ACL user and
password; TLS with a CA, a client certificate and key. Every client built here bounds each
call by ``redis.socket_timeout_s`` and never retries by itself (the callers' backoff is the one
retry policy, docs/ARCHITECTURE.md "Store outages").

What is an outage and what is not: a refused, hung or failing-over Redis is an outage
(:class:`~stream_infer.errors.StoreUnavailableError`, retried by the callers until it answers);
wrong credentials, a missing permission or an untrusted certificate are not, and retrying them
for ever would only hide them: :class:`RedisAccessError` (a :class:`ConfigError`, fatal) at
open and while running.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException
from redis.retry import Retry
from redis.sentinel import Sentinel

from stream_infer.config import RedisSettings
from stream_infer.errors import ConfigError, StoreUnavailableError

log = logging.getLogger(__name__)

Access = Literal["read", "write", "none"]

#: Errors that mean "the credentials or the ACL are wrong", whatever the call.
_ACCESS_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.AuthenticationError,
    redis.exceptions.AuthorizationError,
    redis.exceptions.AuthenticationWrongNumberOfArgsError,
    redis.exceptions.NoPermissionError,
)
_ACCESS_CODES = ("NOAUTH", "WRONGPASS", "NOPERM")

#: What a Redis that is down, hung, loading, read-only or failing over raises.
UNAVAILABLE: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.SlotNotCoveredError,  # its node is gone and no other took the slot yet
)


class RedisAccessError(ConfigError):
    """Redis refused our credentials, a permission, or our TLS handshake: fatal, not an
    outage. The message names the cause and the settings to check."""


def access_error(exc: BaseException) -> RedisAccessError | None:
    """The fatal reading of ``exc``, or None if it is something else (an outage, a bug)."""
    text = str(exc)
    if isinstance(exc, _ACCESS_ERRORS) or text.startswith(_ACCESS_CODES):
        return RedisAccessError(
            f"redis refused access ({type(exc).__name__}: {text}); check redis.username, "
            "redis.password and the user's ACL (keys under redis.key_prefix, the commands "
            "stream-infer runs: hashes, strings, EVAL/EVALSHA)"
        )
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(cause):
            return RedisAccessError(
                f"redis TLS handshake failed ({text}); check redis.tls_ca_file (the CA that "
                "signs the server), redis.tls_cert_file / redis.tls_key_file and "
                "redis.tls_check_hostname"
            )
        cause = cause.__cause__ or cause.__context__
    if "SSL" in text and ("handshake" in text or "certificate" in text or "wrong version" in text):
        return RedisAccessError(f"redis TLS handshake failed ({text}); check redis.tls_*")
    return None


@contextmanager
def store_errors(
    what: str, unavailable: tuple[type[Exception], ...] = (redis.RedisError,)
) -> Iterator[None]:
    """Translate a Redis failure inside the block: access problems become
    :class:`RedisAccessError`, ``unavailable`` ones :class:`StoreUnavailableError`; anything
    else propagates as it is."""
    try:
        yield
    except (redis.RedisError, RedisClusterException) as exc:
        fatal = access_error(exc)
        if fatal is not None:
            raise fatal from exc
        if isinstance(exc, unavailable):
            raise StoreUnavailableError(f"redis {what} failed: {exc}") from exc
        raise


def _host_port(node: str) -> tuple[str, int]:
    host, _, port = node.rpartition(":")
    return host.strip("[]"), int(port)


def connection_kwargs(settings: RedisSettings) -> dict[str, Any]:
    """redis-py keyword arguments for one connection: timeouts, no retries, credentials, TLS.

    The URL's host, port and database are not included (each mode places them itself).
    """
    url = urlsplit(settings.url.get_secret_value()) if settings.url is not None else None
    kwargs: dict[str, Any] = {
        "socket_timeout": settings.socket_timeout_s,
        "socket_connect_timeout": settings.connect_timeout_s,
        # redis-py retries timeouts and refused connections by default, which would multiply
        # the bound; the callers' backoff is the one retry policy.
        "retry": Retry(NoBackoff(), 0),
    }
    username = settings.username or (unquote(url.username) if url and url.username else None)
    password: str | None = None
    if settings.password is not None:
        password = settings.password.get_secret_value()
    elif url is not None and url.password:
        password = unquote(url.password)
    if username:
        kwargs["username"] = username
    if password is not None:
        kwargs["password"] = password
    if settings.tls_enabled:
        kwargs.update(
            ssl=True,
            ssl_cert_reqs=settings.tls_verify,
            ssl_check_hostname=settings.tls_check_hostname and settings.tls_verify == "required",
        )
        if settings.tls_ca_file is not None:
            kwargs["ssl_ca_certs"] = str(settings.tls_ca_file)
        if settings.tls_cert_file is not None:
            kwargs["ssl_certfile"] = str(settings.tls_cert_file)
        if settings.tls_key_file is not None:
            kwargs["ssl_keyfile"] = str(settings.tls_key_file)
        if settings.tls_key_password is not None:
            kwargs["ssl_password"] = settings.tls_key_password.get_secret_value()
    return kwargs


def build_client(settings: RedisSettings) -> Any:
    """A client for the configured topology (``redis.Redis``, a Sentinel-managed master, or a
    ``RedisCluster``), not checked yet (see :func:`open_redis`).

    Raises:
        ConfigError: Redis is not configured.
        StoreUnavailableError: cluster mode and no seed node answered (the cluster client reads
            the slot map when it is built).
        RedisAccessError: a seed node refused the credentials or the TLS handshake.
    """
    if not settings.enabled:
        raise ConfigError("redis is not configured (redis.url, or redis.mode=sentinel)")
    kwargs = connection_kwargs(settings)
    if settings.mode == "sentinel":
        # The sentinels get the same timeouts and TLS, and their own credentials.
        sentinel_kwargs = {k: v for k, v in kwargs.items() if k.startswith(("socket_", "ssl"))}
        if settings.sentinel_username:
            sentinel_kwargs["username"] = settings.sentinel_username
        if settings.sentinel_password is not None:
            sentinel_kwargs["password"] = settings.sentinel_password.get_secret_value()
        db = 0
        if settings.url is not None:
            db = int(urlsplit(settings.url.get_secret_value()).path.strip("/") or 0)
        sentinel = Sentinel(
            [_host_port(s) for s in settings.sentinels],
            sentinel_kwargs=sentinel_kwargs,
            **kwargs,
        )
        return sentinel.master_for(settings.sentinel_master, db=db)
    assert settings.url is not None  # enabled and not sentinel
    url = settings.url.get_secret_value()
    if settings.mode == "cluster":
        parts = urlsplit(url)
        seeds = [f"{parts.hostname}:{parts.port or 6379}", *settings.cluster_nodes]
        # No seed node reachable is a RedisClusterException, not a RedisError.
        with store_errors("cluster discovery", (*UNAVAILABLE, RedisClusterException)):
            return RedisCluster(
                startup_nodes=[ClusterNode(*_host_port(n)) for n in seeds],
                # kwargs' retry (none) is also the cluster's: a moved slot is still followed
                # (redirects are not retries), a dead node is the callers' outage to retry.
                **kwargs,
            )
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return redis.Redis(unix_socket_path=parts.path, **kwargs)
    return redis.Redis(
        host=parts.hostname or "localhost",
        port=parts.port or 6379,
        db=int(parts.path.strip("/") or 0),
        **kwargs,
    )


_PROBE_SCRIPT = "return redis.call('EXISTS', KEYS[1])"


def check_access(client: Any, settings: RedisSettings, access: Access) -> None:
    """Exercise what the caller will do, once: PING, then (``read``) read a hash and a string
    under the prefix, or (``write``) also write a short-lived hash and run a script on it.

    Raises:
        RedisAccessError: wrong user or password, a missing ACL permission, an untrusted or
            refused certificate: fatal, named.
        StoreUnavailableError: Redis did not answer (an outage: callers retry later).
    """
    if access == "none":
        return
    probe = f"{settings.key_prefix}:probe"
    with store_errors("access check", UNAVAILABLE):
        client.ping()
        client.hgetall(probe)
        client.get(f"{settings.key_prefix}:first_day")
        if access == "write":
            client.hset(probe, "probe", "1")
            client.pexpire(probe, 60_000)
            client.eval(_PROBE_SCRIPT, 1, probe)


def open_redis(settings: RedisSettings, access: Access = "write") -> Any:
    """:func:`build_client`, checked with :func:`check_access`. An unreachable Redis is not
    fatal here (the process starts and treats it as an outage, as when it fails later); wrong
    credentials, permissions or certificates are.

    Raises:
        RedisAccessError: see :func:`check_access`.
        StoreUnavailableError: cluster mode and no seed node answered.
        ConfigError: Redis is not configured.
    """
    client = build_client(settings)
    try:
        check_access(client, settings, access)
    except StoreUnavailableError as exc:
        log.warning("redis does not answer at start (%s); carrying on as in an outage", exc)
    return client


def connect(url: str, *, socket_timeout_s: float = 1.0, connect_timeout_s: float = 1.0) -> Any:
    """A standalone redis client for ``url`` (redis://host:port/db) whose every call ends
    within about ``socket_timeout_s`` (connecting: ``connect_timeout_s``), retried by no one.

    A shorthand for tests and tools; the service builds its clients from the whole
    :class:`~stream_infer.config.RedisSettings` (:func:`open_redis`).
    """
    from pydantic import SecretStr

    return build_client(
        RedisSettings(
            url=SecretStr(url),
            socket_timeout_s=socket_timeout_s,
            connect_timeout_s=connect_timeout_s,
        )
    )
