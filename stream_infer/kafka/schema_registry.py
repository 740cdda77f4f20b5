"""The Confluent schema registry, as the Avro decoder's
:class:`~stream_infer.streamdef.registry.SchemaRegistry`: writer schemas by id through
``confluent_kafka.schema_registry.SchemaRegistryClient`` (which caches by id itself).

What a failure means next: an id the registry does not hold (404, or another 4xx about the
request) is the record's fault, :class:`~stream_infer.streamdef.registry.UnknownSchemaError`
(dead-lettered naming the id); a registry that refuses our credentials (401, 403) is
:class:`~stream_infer.errors.ConfigError` (retrying cannot help); anything else (connection
refused, timeout, 5xx) is an outage, :class:`~stream_infer.errors.RetryableError`: the worker
pauses and retries the batch.
"""

from __future__ import annotations

from typing import Any, Protocol

from stream_infer.config import FeatureSettings
from stream_infer.errors import ConfigError, RetryableError
from stream_infer.streamdef.registry import UnknownSchemaError


class RegistryClient(Protocol):
    """The part of ``SchemaRegistryClient`` used here."""

    def get_schema(self, schema_id: int) -> Any:
        """The registered schema (``schema_str``, ``schema_type``, ``references``)."""
        ...


def _client(conf: dict[str, Any]) -> RegistryClient:
    # Imported only when a registry is configured: it pulls in httpx and authlib, whose
    # import prints a deprecation warning about its httpx integration.
    from confluent_kafka.schema_registry import SchemaRegistryClient

    client: RegistryClient = SchemaRegistryClient(conf)
    return client


class ConfluentSchemaRegistry:
    """Writer schemas by id from a Confluent-compatible registry (Confluent, Karapace,
    Redpanda, Apicurio's ccompat API)."""

    def __init__(
        self,
        url: str,
        *,
        user: str | None = None,
        secret: str | None = None,
        timeout_s: float = 10.0,
        client: RegistryClient | None = None,
    ) -> None:
        """``client``: given in tests; else a ``SchemaRegistryClient`` for ``url``.

        Raises:
            ConfigError: the URL or credentials are malformed.
        """
        if client is None:
            conf: dict[str, Any] = {"url": url, "timeout": timeout_s, "max.retries": 2}
            if user is not None:
                conf["basic.auth.user.info"] = f"{user}:{secret or ''}"
            try:
                client = _client(conf)
            except (ValueError, TypeError) as exc:
                raise ConfigError(f"features.schema_registry_url: {exc}") from exc
        self._client = client
        self._url = url

    def schema_text(self, schema_id: int) -> str:
        """The Avro schema registered under ``schema_id``.

        Raises:
            UnknownSchemaError: no such id; or it is not Avro, or uses references.
            ConfigError: the registry refused our credentials (401/403).
            RetryableError: the registry did not answer (connection, timeout, 5xx).
        """
        import httpx  # here, like the client: see _client
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            schema = self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            status = exc.http_status_code
            if status in (401, 403):
                raise ConfigError(f"schema registry {self._url} refused us: {exc}") from exc
            if isinstance(status, int) and 400 <= status < 500:
                raise UnknownSchemaError(f"unknown schema id {schema_id}: {exc}") from exc
            raise RetryableError(f"schema registry {self._url}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise RetryableError(f"schema registry {self._url} did not answer: {exc}") from exc
        kind = getattr(schema, "schema_type", None) or "AVRO"
        if kind != "AVRO":
            raise UnknownSchemaError(f"schema id {schema_id} is a {kind} schema, not Avro")
        if getattr(schema, "references", None):
            raise UnknownSchemaError(f"schema id {schema_id} uses schema references: not supported")
        text = getattr(schema, "schema_str", None)
        if not isinstance(text, str):
            raise UnknownSchemaError(f"schema id {schema_id}: the registry gave no schema text")
        return text


def schema_registry_from_settings(features: FeatureSettings) -> ConfluentSchemaRegistry | None:
    """The configured registry, or None (Avro records are then bare bodies).

    Raises:
        ConfigError: the URL or credentials are malformed.
    """
    if features.schema_registry_url is None:
        return None
    secret = features.schema_registry_secret
    return ConfluentSchemaRegistry(
        features.schema_registry_url,
        user=features.schema_registry_user,
        secret=None if secret is None else secret.get_secret_value(),
    )
