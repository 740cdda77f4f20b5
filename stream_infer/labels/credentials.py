"""The label processor's broker credentials: faust/aiokafka from the same ``kafka.*`` settings
as every confluent-kafka client (:mod:`stream_infer.kafka.security`).

TLS becomes one :class:`ssl.SSLContext` (CA, mTLS certificate and key, endpoint
identification); SASL PLAIN and SCRAM become :class:`faust.SASLCredentials`; OAUTHBEARER
becomes :class:`faust.auth.OAuthCredentials` with an OIDC client-credentials token provider.
``kafka.extra`` is librdkafka's vocabulary and does not reach aiokafka.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
import urllib.request
from typing import Any

from aiokafka.abc import AbstractTokenProvider

from stream_infer.config import KafkaSettings
from stream_infer.errors import ConfigError
from stream_infer.kafka.security import ssl_context

#: Refresh a token this long before the expiry its issuer announced.
_REFRESH_MARGIN_S = 30.0


class OidcTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """OAuth 2.0 client credentials against ``kafka.oauth_token_url``; the token is reused
    until shortly before it expires. ``repr`` shows no secret."""

    def __init__(self, kafka: KafkaSettings, timeout_s: float = 10.0) -> None:
        self._kafka = kafka
        self._timeout_s = timeout_s
        self._token: str | None = None
        self._expires_at = 0.0

    def __repr__(self) -> str:
        return f"OidcTokenProvider(url={self._kafka.oauth_token_url!r})"

    async def token(self) -> str:
        """A current access token.

        Raises:
            ConfigError: the token endpoint refused the client or answered without a token.
        """
        if self._token is not None and time.monotonic() < self._expires_at:
            return self._token
        token, lifetime = await asyncio.to_thread(self._fetch)
        self._token = token
        self._expires_at = time.monotonic() + max(0.0, lifetime - _REFRESH_MARGIN_S)
        return token

    def _fetch(self) -> tuple[str, float]:
        k = self._kafka
        secret = k.oauth_client_secret.get_secret_value() if k.oauth_client_secret else ""
        form = {"grant_type": "client_credentials", "client_id": k.oauth_client_id or ""}
        form["client_secret"] = secret
        if k.oauth_scope:
            form["scope"] = k.oauth_scope
        request = urllib.request.Request(
            k.oauth_token_url or "",
            data=urllib.parse.urlencode(form).encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as resp:
                body: dict[str, Any] = json.loads(resp.read())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"OIDC token request to {k.oauth_token_url} failed: {exc}") from exc
        token = body.get("access_token")
        if not isinstance(token, str):
            raise ConfigError(f"OIDC token endpoint {k.oauth_token_url} returned no access_token")
        return token, float(body.get("expires_in", 300))


def faust_credentials(kafka: KafkaSettings) -> Any:
    """faust's ``broker_credentials`` for ``kafka`` (None for PLAINTEXT).

    Raises:
        ConfigError: a TLS file is missing or unusable.
    """
    import faust
    from faust.auth import OAuthCredentials

    context = ssl_context(kafka)
    if kafka.sasl_mechanism == "OAUTHBEARER":
        return OAuthCredentials(oauth_cb=OidcTokenProvider(kafka), ssl_context=context)
    if kafka.sasl_mechanism is not None:
        password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else None
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=password,
            ssl_context=context,
            mechanism=kafka.sasl_mechanism,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def faust_brokers(kafka: KafkaSettings, transport: str) -> list[str]:
    """faust's ``broker`` list: one URL per bootstrap server.

    Raises:
        ConfigError: ``kafka.bootstrap_servers`` is not set.
    """
    if not kafka.bootstrap_servers:
        raise ConfigError("kafka.bootstrap_servers is not set")
    return [f"{transport}://{host.strip()}" for host in kafka.bootstrap_servers.split(",")]
