"""Start-up against a cluster: reachable, authenticated and authorized in bounded time.

:func:`connect` runs before a process builds its clients: it asks the cluster for metadata
(and, when given, for its topics and consumer group) until ``kafka.startup_timeout_s`` runs
out. A broker that never answers ends in one :class:`~stream_infer.errors.KafkaAccessError`
naming the bootstrap and the last transport error, with librdkafka's own log silenced while
it waits (no "Connection refused" line per retry). A refusal that retrying cannot cure (SASL
authentication, a TLS handshake, a missing ACL) ends it at once, named. :func:`access_failure`
classifies a librdkafka error the same way for clients already running (the worker's
``error_cb`` and consumer errors).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, Final

from stream_infer.config import Settings
from stream_infer.errors import KafkaAccessError

log = logging.getLogger(__name__)

#: librdkafka error names that no retry cures, and what they mean to an operator.
_REFUSALS: Final = {
    "_AUTHENTICATION": "authentication failed (check kafka.sasl_* / kafka.oauth_* settings)",
    "SASL_AUTHENTICATION_FAILED": "SASL authentication failed (check the username/password)",
    "UNSUPPORTED_SASL_MECHANISM": "the broker does not offer kafka.sasl_mechanism",
    "ILLEGAL_SASL_STATE": "SASL handshake out of order (security_protocol mismatch?)",
    "_SSL": "TLS handshake failed (check kafka.ssl_ca_file and the client certificate)",
    "TOPIC_AUTHORIZATION_FAILED": "not authorized on a topic (missing ACL)",
    "GROUP_AUTHORIZATION_FAILED": "not authorized on the consumer group (missing ACL)",
    "CLUSTER_AUTHORIZATION_FAILED": "not authorized on the cluster (missing ACL)",
    "TRANSACTIONAL_ID_AUTHORIZATION_FAILED": "not authorized on the transactional.id (ACL)",
}


def access_failure(err: Any) -> str | None:
    """What a librdkafka ``KafkaError`` means when it is a refusal no retry cures (named
    cause and librdkafka's text); None for anything transient."""
    name = err.name() if hasattr(err, "name") else ""
    meaning = _REFUSALS.get(name)
    text = err.str() if hasattr(err, "str") else str(err)
    if meaning is None and name == "_TRANSPORT" and ("SSL routines" in text or "SSL alert" in text):
        # The broker refused our certificate with a TLS alert after the handshake (TLS 1.3):
        # librdkafka reports it as a transport error.
        meaning = _REFUSALS["_SSL"]
    if meaning is None:
        return None
    return f"{meaning}: {name}: {text}"


class _Watch:
    """``error_cb`` target: keeps the last error and the first refusal."""

    def __init__(self) -> None:
        self.refusal: str | None = None
        self.last: str = "no answer"

    def __call__(self, err: Any) -> None:
        # "1/1 brokers are down" follows each refused connect; the connect error says why.
        if err.name() != "_ALL_BROKERS_DOWN" or self.last == "no answer":
            self.last = f"{err.name()}: {err.str()}"
        if self.refusal is None:
            self.refusal = access_failure(err)


def connect(
    settings: Settings, topics: Sequence[str] = (), group: str | None = None, who: str = ""
) -> None:
    """Block until the cluster answers, this client is authenticated, and it may describe
    ``topics`` and ``group``; at most ``kafka.startup_timeout_s``.

    Raises:
        KafkaAccessError: authentication, TLS or an ACL refused us (at once), or no broker
            answered within the timeout (naming the bootstrap and the last error).
        ConfigError: the settings cannot build a client (missing bootstrap or TLS file).
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    kafka = settings.kafka
    timeout = kafka.startup_timeout_s
    deadline = time.monotonic() + timeout
    watch = _Watch()
    # log_level 0: librdkafka's retries stay quiet; error_cb still sees every error.
    admin = AdminClient(kafka.client_config() | {"error_cb": watch, "log_level": 0})
    prefix = f"{who}: " if who else ""

    def refused(cause: str) -> KafkaAccessError:
        return KafkaAccessError(f"{prefix}Kafka at {kafka.bootstrap_servers} refused us: {cause}")

    while True:
        admin.poll(0)  # error_cb runs only from poll()
        left = deadline - time.monotonic()
        if watch.refusal is not None:
            raise refused(watch.refusal)
        if left <= 0:
            raise KafkaAccessError(
                f"{prefix}no Kafka broker answered at {kafka.bootstrap_servers} within "
                f"kafka.startup_timeout_s={timeout:g}s (last error: {watch.last})"
            )
        try:
            meta = admin.list_topics(timeout=max(0.1, min(1.0, left)))
        except KafkaException as exc:
            cause = access_failure(exc.args[0]) if exc.args else None
            if cause is not None:
                raise refused(cause) from exc
            continue
        if meta.brokers:
            break
    for topic in topics:
        meta = admin.list_topics(topic, timeout=max(0.1, deadline - time.monotonic()))
        err = meta.topics[topic].error if topic in meta.topics else None
        cause = access_failure(err) if err is not None else None
        if cause is not None:
            raise refused(f"{cause} (topic {topic})")
    if group is not None:
        _check_group(admin, group, deadline, refused)
    log.info("%sKafka at %s answers", prefix, kafka.bootstrap_servers)


def _check_group(admin: Any, group: str, deadline: float, refused: Any) -> None:
    from confluent_kafka import KafkaException

    future = admin.describe_consumer_groups([group])[group]
    try:
        future.result(timeout=max(0.1, deadline - time.monotonic()))
    except KafkaException as exc:
        cause = access_failure(exc.args[0]) if exc.args else None
        if cause is not None:
            raise refused(f"{cause} (group {group})") from exc
    except TimeoutError:
        return  # slow coordinator: the consumer's own errors still name a refusal later
