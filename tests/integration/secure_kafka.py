"""A secured Apache Kafka for tests: one KRaft node with a SASL_SSL listener (SCRAM-SHA-256/512,
PLAIN, and OAUTHBEARER validated against a loopback OIDC provider, :class:`OidcServer`) and an
mTLS listener (``ssl.client.auth=required``), the StandardAuthorizer on, and the certificates
made here with ``cryptography`` (:func:`redis_secure.make_pki`).

The PLAINTEXT listener (inter-broker and controller traffic, and the tests' own admin) is the
super user ``User:ANONYMOUS``; SCRAM users are created through the admin API
(``alter_user_scram_credentials``) and ACLs with ``create_acls``.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from stream_infer.config import KafkaSettings, Settings
from stream_infer.kafka.apache import ApacheKafka

from .redis_secure import Pki

#: SCRAM users: the services' (every ACL they need), one with no ACL at all, and one allowed
#: its topics but not its consumer group.
APP_USER, APP_PASSWORD = "svc", "svc-s3cret"
NOACL_USER, NOACL_PASSWORD = "nobody", "nobody-s3cret"
TOPICS_ONLY_USER, TOPICS_ONLY_PASSWORD = "topics-only", "topics-only-s3cret"
#: PLAIN's users live in the broker's JAAS configuration.
PLAIN_USER, PLAIN_PASSWORD = "plain-svc", "plain-s3cret"
#: The mTLS principal: the client certificate's subject (make_pki's client CN).
MTLS_PRINCIPAL = "User:CN=stream-infer-client"

#: The OIDC client (its ``sub`` claim, so its principal is ``User:oidc-svc``).
OIDC_CLIENT_ID, OIDC_SECRET = "oidc-svc", "oidc-s3cret"

SASL_LISTENER, MTLS_LISTENER = "SASL_SSL", "MTLS"


@dataclass(frozen=True)
class SecureNode:
    """A started secured node and the certificates its clients use."""

    node: ApacheKafka
    pki: Pki
    rogue: Pki  # signed by a CA the broker does not trust

    @property
    def sasl_bootstrap(self) -> str:
        return self.node.listener_bootstrap(SASL_LISTENER)

    @property
    def mtls_bootstrap(self) -> str:
        return self.node.listener_bootstrap(MTLS_LISTENER)

    @property
    def admin_bootstrap(self) -> str:
        return self.node.bootstrap


class OidcServer:
    """A minimal OIDC provider on loopback: client credentials at ``/token`` (RS256 JWTs whose
    ``sub`` is the client id, so the Kafka principal is ``User:<client id>``) and the signing
    key at ``/jwks``. One client: ``OIDC_CLIENT_ID`` / ``OIDC_CLIENT_SECRET``."""

    def __init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/jwks":
                    self.send_error(404)
                    return
                self._json(200, {"keys": [server.jwk()]})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                client, secret = _client_credentials(self.headers, form)
                if self.path != "/token" or (client, secret) != (OIDC_CLIENT_ID, OIDC_SECRET):
                    self._json(401, {"error": "invalid_client"})
                    return
                scope = form.get("scope", [""])[0]
                self._json(200, server.token_response(client, scope))

            def _json(self, status: int, body: object) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: object) -> None:
                return

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def jwk(self) -> dict[str, str]:
        numbers = self._key.public_key().public_numbers()
        return {
            "kty": "RSA",
            "kid": "k1",
            "use": "sig",
            "alg": "RS256",
            "n": _b64(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
            "e": _b64(numbers.e.to_bytes(3, "big")),
        }

    def token_response(self, client: str, scope: str) -> dict[str, object]:
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "kid": "k1"}
        claims = {"sub": client, "iat": now, "exp": now + 600, "scope": scope or "kafka"}
        signing = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = self._key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
        token = f"{signing}.{_b64(signature)}"
        return {"access_token": token, "token_type": "bearer", "expires_in": 600}

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _client_credentials(headers: Any, form: dict[str, list[str]]) -> tuple[str, str]:
    auth = headers.get("Authorization", "")
    if auth.startswith("Basic "):  # librdkafka sends them as HTTP Basic (RFC 6749 2.3.1)
        client, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        return urllib.parse.unquote(client), urllib.parse.unquote(secret)
    return form.get("client_id", [""])[0], form.get("client_secret", [""])[0]


def server_properties(pki: Pki, folder: Path, oidc: OidcServer | None = None) -> dict[str, str]:
    """``server.properties`` for the two secured listeners and the authorizer (and
    OAUTHBEARER on the SASL_SSL listener, validated against ``oidc``'s keys)."""
    keystore = folder / "broker-keystore.pem"
    keystore.write_bytes(pki.server_key.read_bytes() + pki.server_cert.read_bytes())
    scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
    plain = (
        "org.apache.kafka.common.security.plain.PlainLoginModule required "
        f'user_{PLAIN_USER}="{PLAIN_PASSWORD}";'
    )
    props = {
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(pki.ca_file),
        "sasl.enabled.mechanisms": "SCRAM-SHA-512,SCRAM-SHA-256,PLAIN",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": scram,
        "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config": scram,
        "listener.name.sasl_ssl.plain.sasl.jaas.config": plain,
        "listener.name.mtls.ssl.client.auth": "required",
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": "User:ANONYMOUS",
        "allow.everyone.if.no.acl.found": "false",
    }
    if oidc is not None:
        prefix = "listener.name.sasl_ssl.oauthbearer."
        props["sasl.enabled.mechanisms"] += ",OAUTHBEARER"
        props[prefix + "sasl.jaas.config"] = (
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;"
        )
        props[prefix + "sasl.server.callback.handler.class"] = (
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler"
        )
        props["sasl.oauthbearer.jwks.endpoint.url"] = f"{oidc.url}/jwks"
    return props


def secure_node(pki: Pki, rogue: Pki, folder: Path, oidc: OidcServer | None = None) -> SecureNode:
    """Start the node (the caller stops it), create the SCRAM users and grant the ACLs."""
    jvm = []
    if oidc is not None:  # Kafka 4 fetches only the OAuth URLs it is allowed to
        jvm.append(f"-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls={oidc.url}/jwks")
    node = ApacheKafka(
        folder / "kafka",
        extra_listeners=[(SASL_LISTENER, "SASL_SSL", 0), (MTLS_LISTENER, "SSL", 0)],
        properties=server_properties(pki, folder, oidc),
        jvm_options=jvm,
    )
    node.start()
    try:
        admin = AdminClient({"bootstrap.servers": node.bootstrap})
        create_scram_users(
            admin,
            {APP_USER: APP_PASSWORD, NOACL_USER: NOACL_PASSWORD},
            {TOPICS_ONLY_USER: TOPICS_ONLY_PASSWORD},
        )
        users = (APP_USER, PLAIN_USER, OIDC_CLIENT_ID)
        for principal in (*(f"User:{u}" for u in users), MTLS_PRINCIPAL):
            grant(admin, principal, group=True)
        grant(admin, f"User:{TOPICS_ONLY_USER}", group=False)
    except BaseException:
        node.cleanup()
        raise
    return SecureNode(node, pki, rogue)


def create_scram_users(
    admin: AdminClient, sha512: dict[str, str], sha256: dict[str, str] | None = None
) -> None:
    """SCRAM credentials through the admin API, then wait until they are usable."""
    upserts = [
        UserScramCredentialUpsertion(
            user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), pw.encode()
        )
        for user, pw in sha512.items()
    ]
    upserts += [
        UserScramCredentialUpsertion(
            user, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 8192), pw.encode()
        )
        for user, pw in (sha256 or {}).items()
    ]
    for future in admin.alter_user_scram_credentials(upserts).values():
        future.result(timeout=30)
    users = [*sha512, *(sha256 or {})]
    deadline = time.monotonic() + 30
    while True:
        described = admin.describe_user_scram_credentials(users)
        try:
            if all(f.result(timeout=10) for f in described.values()):
                return
        except Exception:  # not propagated yet: KRaft applies it from the metadata log
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def grant(admin: AdminClient, principal: str, *, group: bool) -> None:
    """Everything on every topic and transactional id (and group, with ``group``)."""
    resources = [ResourceType.TOPIC, ResourceType.TRANSACTIONAL_ID]
    if group:
        resources.append(ResourceType.GROUP)
    bindings = [
        AclBinding(
            kind,
            "*",
            ResourcePatternType.LITERAL,
            principal,
            "*",
            AclOperation.ALL,
            AclPermissionType.ALLOW,
        )
        for kind in resources
    ]
    for future in admin.create_acls(bindings).values():
        future.result(timeout=30)


def sasl_settings(
    settings: Settings,
    secure: SecureNode,
    user: str = APP_USER,
    password: str = APP_PASSWORD,
    mechanism: str = "SCRAM-SHA-512",
    ca_file: Path | None = None,
) -> Settings:
    """``settings`` pointed at the SASL_SSL listener as ``user``."""
    return _with_kafka(
        settings,
        bootstrap_servers=secure.sasl_bootstrap,
        security_protocol="SASL_SSL",
        sasl_mechanism=mechanism,
        sasl_username=user,
        sasl_password=password,
        ssl_ca_file=str(ca_file or secure.pki.ca_file),
        startup_timeout_s=8.0,
    )


def oauth_settings(
    settings: Settings, secure: SecureNode, oidc: OidcServer, secret: str = OIDC_SECRET
) -> Settings:
    """``settings`` pointed at the SASL_SSL listener with OAUTHBEARER (OIDC client
    credentials against ``oidc``)."""
    return _with_kafka(
        settings,
        bootstrap_servers=secure.sasl_bootstrap,
        security_protocol="SASL_SSL",
        sasl_mechanism="OAUTHBEARER",
        oauth_token_url=f"{oidc.url}/token",
        oauth_client_id=OIDC_CLIENT_ID,
        oauth_client_secret=secret,
        oauth_scope="kafka",
        ssl_ca_file=str(secure.pki.ca_file),
        startup_timeout_s=8.0,
    )


def mtls_settings(settings: Settings, secure: SecureNode, client: Pki | None = None) -> Settings:
    """``settings`` pointed at the mTLS listener with ``client``'s certificate (default: the
    trusted one); the broker's CA is always the trusted one."""
    client = client or secure.pki
    return _with_kafka(
        settings,
        bootstrap_servers=secure.mtls_bootstrap,
        security_protocol="SSL",
        ssl_ca_file=str(secure.pki.ca_file),
        ssl_cert_file=str(client.client_cert),
        ssl_key_file=str(client.client_key),
        startup_timeout_s=8.0,
    )


def _with_kafka(settings: Settings, **kafka: Any) -> Settings:
    merged = {**settings.kafka.model_dump(), **kafka}
    # KAFKA_BOOTSTRAP (the suite's cluster) must not win over this listener.
    return settings.model_copy(update={"kafka": KafkaSettings(**merged), "kafka_bootstrap": None})


def plaintext(settings: Settings, secure: SecureNode) -> Settings:
    """The tests' own view of the same cluster: the super-user PLAINTEXT listener."""
    return _with_kafka(
        settings,
        bootstrap_servers=secure.admin_bootstrap,
        security_protocol="PLAINTEXT",
        sasl_mechanism=None,
        ssl_ca_file=None,
        ssl_cert_file=None,
        ssl_key_file=None,
    )
