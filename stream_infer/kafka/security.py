"""Every Kafka client's connection and security settings, built in one place.

:func:`librdkafka_config` is the base of every confluent-kafka client (the worker's consumer
and producer, transactions, the admin of ``topics apply``, lag, model-control, loadgen, the
demo): bootstrap, TLS (CA, mTLS certificate and key, endpoint identification), SASL (PLAIN,
SCRAM-SHA-256/512, OAUTHBEARER through OIDC client credentials) and the ``kafka.extra``
passthrough. :func:`ssl_context` gives the label processor's aiokafka the same TLS settings as
an :class:`ssl.SSLContext`. Settings that contradict each other are refused when the settings
are loaded (:class:`~stream_infer.config.KafkaSettings`); a TLS file that does not exist is
refused here, naming its setting.

The returned dicts carry secrets in clear (librdkafka needs them): log :func:`redacted`, never
the dict itself.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from stream_infer.errors import ConfigError

if TYPE_CHECKING:
    from stream_infer.config import KafkaSettings

#: librdkafka keys whose values are secrets (shown as ``***`` by :func:`redacted`).
SECRET_KEYS: Final = frozenset(
    {"sasl.password", "ssl.key.password", "sasl.oauthbearer.client.secret"}
)


def check_files(kafka: KafkaSettings) -> None:
    """Refuse TLS files that are not there.

    Raises:
        ConfigError: a configured ``kafka.ssl_*_file`` does not exist (the message names it).
    """
    for name in ("ssl_ca_file", "ssl_cert_file", "ssl_key_file"):
        path: Path | None = getattr(kafka, name)
        if path is not None and not path.is_file():
            raise ConfigError(f"kafka.{name}={path} does not exist or is not a file")


def librdkafka_config(kafka: KafkaSettings) -> dict[str, Any]:
    """The base configuration of every confluent-kafka client (callers add their role's keys).

    Raises:
        ConfigError: ``kafka.bootstrap_servers`` is not set, or a TLS file is missing.
    """
    if kafka.bootstrap_servers is None:
        raise ConfigError(
            "kafka.bootstrap_servers is not set (KAFKA_BOOTSTRAP or "
            "STREAM_INFER_KAFKA__BOOTSTRAP_SERVERS)"
        )
    check_files(kafka)
    cfg: dict[str, Any] = {
        "bootstrap.servers": kafka.bootstrap_servers,
        "security.protocol": kafka.security_protocol,
        "client.id": kafka.client_id,
        # Topics are made on purpose (`stream-infer topics apply`), never by a subscription or
        # a metadata request that names a typo (librdkafka applies it to consumers).
        "allow.auto.create.topics": False,
    }
    if kafka.security_protocol.endswith("SSL"):
        cfg["ssl.endpoint.identification.algorithm"] = (
            "https" if kafka.ssl_endpoint_identification else "none"
        )
        if kafka.ssl_ca_file is not None:
            cfg["ssl.ca.location"] = str(kafka.ssl_ca_file)
        if kafka.ssl_cert_file is not None and kafka.ssl_key_file is not None:
            cfg["ssl.certificate.location"] = str(kafka.ssl_cert_file)
            cfg["ssl.key.location"] = str(kafka.ssl_key_file)
        if kafka.ssl_key_password is not None:
            cfg["ssl.key.password"] = kafka.ssl_key_password.get_secret_value()
    if kafka.sasl_mechanism is not None:
        cfg["sasl.mechanism"] = kafka.sasl_mechanism
    if kafka.sasl_mechanism == "OAUTHBEARER":
        cfg["sasl.oauthbearer.method"] = "oidc"
        cfg["sasl.oauthbearer.token.endpoint.url"] = kafka.oauth_token_url
        cfg["sasl.oauthbearer.client.id"] = kafka.oauth_client_id
        if kafka.oauth_client_secret is not None:
            cfg["sasl.oauthbearer.client.secret"] = kafka.oauth_client_secret.get_secret_value()
        if kafka.oauth_scope:
            cfg["sasl.oauthbearer.scope"] = kafka.oauth_scope
    elif kafka.sasl_mechanism is not None:
        cfg["sasl.username"] = kafka.sasl_username
        if kafka.sasl_password is not None:
            cfg["sasl.password"] = kafka.sasl_password.get_secret_value()
    cfg.update(kafka.extra)
    cfg.update({k: v.get_secret_value() for k, v in kafka.extra_secret.items()})
    return cfg


def redacted(cfg: dict[str, Any], kafka: KafkaSettings | None = None) -> dict[str, Any]:
    """``cfg`` fit to log: secret values (and ``kafka.extra_secret``'s keys) as ``***``,
    callbacks by name."""
    secret = SECRET_KEYS | (set(kafka.extra_secret) if kafka is not None else set())
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        if key in secret:
            out[key] = "***"
        elif callable(value):
            out[key] = getattr(value, "__name__", "callback")
        else:
            out[key] = value
    return out


def ssl_context(kafka: KafkaSettings) -> ssl.SSLContext | None:
    """The TLS settings as a client :class:`ssl.SSLContext` (for aiokafka); None without TLS.

    Raises:
        ConfigError: a TLS file is missing, or the certificate, key or passphrase is unusable.
    """
    if not kafka.security_protocol.endswith("SSL"):
        return None
    check_files(kafka)
    try:
        context = ssl.create_default_context(
            cafile=str(kafka.ssl_ca_file) if kafka.ssl_ca_file is not None else None
        )
        if kafka.ssl_cert_file is not None and kafka.ssl_key_file is not None:
            password = kafka.ssl_key_password
            context.load_cert_chain(
                str(kafka.ssl_cert_file),
                str(kafka.ssl_key_file),
                password.get_secret_value() if password is not None else None,
            )
    except ssl.SSLError as exc:
        raise ConfigError(f"kafka.ssl_* settings are unusable: {exc}") from exc
    if not kafka.ssl_endpoint_identification:
        context.check_hostname = False
    return context
