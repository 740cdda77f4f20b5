"""The one builder of every Kafka client's base configuration, and the settings it reads."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any

import pytest

from stream_infer.config import KafkaSettings, load_settings
from stream_infer.errors import ConfigError
from stream_infer.kafka.security import librdkafka_config, redacted, ssl_context
from stream_infer.labels.credentials import OidcTokenProvider, faust_brokers, faust_credentials

BOOT = "b1:9093,b2:9093"


def kafka(**kw: Any) -> KafkaSettings:
    return load_settings(kafka={"bootstrap_servers": BOOT, **kw}).kafka


@pytest.fixture
def pems(tmp_path: Path) -> dict[str, Path]:
    """A CA and a client certificate and key made here (no network, no files checked in)."""
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("test-ca"))
        .issuer_name(name("test-ca"))
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("client"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(ca_key, hashes.SHA256())
    )
    paths = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "c.pem", "key": tmp_path / "k.pem"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"kp4ss"),
        )
    )
    return paths


def test_plaintext_is_bootstrap_protocol_and_client_id_only() -> None:
    assert librdkafka_config(kafka()) == {
        "bootstrap.servers": BOOT,
        "security.protocol": "PLAINTEXT",
        "client.id": "stream-infer",
        "allow.auto.create.topics": False,
    }
    assert kafka().client_config() == librdkafka_config(kafka())


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_password_mechanisms_over_tls(mechanism: str, pems: dict[str, Path]) -> None:
    cfg = librdkafka_config(
        kafka(
            security_protocol="SASL_SSL",
            sasl_mechanism=mechanism,
            sasl_username="svc",
            sasl_password="pw-1",
            ssl_ca_file=pems["ca"],
        )
    )
    assert cfg["security.protocol"] == "SASL_SSL"
    assert cfg["sasl.mechanism"] == mechanism
    assert (cfg["sasl.username"], cfg["sasl.password"]) == ("svc", "pw-1")
    assert cfg["ssl.ca.location"] == str(pems["ca"])
    assert cfg["ssl.endpoint.identification.algorithm"] == "https"
    assert "ssl.certificate.location" not in cfg


def test_mtls_with_key_password_and_no_endpoint_identification(pems: dict[str, Path]) -> None:
    k = kafka(
        security_protocol="SSL",
        ssl_ca_file=pems["ca"],
        ssl_cert_file=pems["cert"],
        ssl_key_file=pems["key"],
        ssl_key_password="kp4ss",
        ssl_endpoint_identification=False,
    )
    cfg = librdkafka_config(k)
    assert cfg["ssl.certificate.location"] == str(pems["cert"])
    assert cfg["ssl.key.location"] == str(pems["key"])
    assert cfg["ssl.key.password"] == "kp4ss"
    assert cfg["ssl.endpoint.identification.algorithm"] == "none"
    context = ssl_context(k)
    assert context is not None and context.check_hostname is False
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert ssl_context(kafka()) is None


def test_a_wrong_key_password_is_refused_building_the_ssl_context(pems: dict[str, Path]) -> None:
    k = kafka(
        security_protocol="SSL",
        ssl_cert_file=pems["cert"],
        ssl_key_file=pems["key"],
        ssl_key_password="wrong",
    )
    with pytest.raises(ConfigError, match="unusable"):
        ssl_context(k)


def test_oauthbearer_is_oidc_client_credentials() -> None:
    cfg = librdkafka_config(
        kafka(
            security_protocol="SASL_SSL",
            sasl_mechanism="OAUTHBEARER",
            oauth_token_url="https://idp.example/token",
            oauth_client_id="svc",
            oauth_client_secret="cs-1",
            oauth_scope="kafka",
        )
    )
    assert cfg["sasl.oauthbearer.method"] == "oidc"
    assert cfg["sasl.oauthbearer.token.endpoint.url"] == "https://idp.example/token"
    assert cfg["sasl.oauthbearer.client.id"] == "svc"
    assert cfg["sasl.oauthbearer.client.secret"] == "cs-1"
    assert cfg["sasl.oauthbearer.scope"] == "kafka"
    assert "sasl.username" not in cfg


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"sasl_mechanism": "PLAIN", "sasl_username": "u", "sasl_password": "p"}, "needs"),
        ({"security_protocol": "SASL_SSL"}, "needs sasl_mechanism"),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512"}, "sasl_username"),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER"}, "oauth_token_url"),
        ({"security_protocol": "SSL", "ssl_cert_file": "/c.pem"}, "together"),
        ({"security_protocol": "SSL", "ssl_key_password": "x"}, "without kafka.ssl_key_file"),
        ({"ssl_ca_file": "/ca.pem"}, "does not use TLS"),
        ({"sasl_mechanism": "GSSAPI"}, "STREAM_INFER_KAFKA__SASL_MECHANISM"),
    ],
)
def test_contradicting_settings_are_refused_at_load(kw: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        kafka(**kw)


@pytest.mark.parametrize("key", sorted(KafkaSettings.DENIED_EXTRA))
def test_the_deny_list_refuses_each_key_naming_it(key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        kafka(extra={key: "x"})
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        kafka(extra_secret={key: "x"})


def test_the_deny_list_holds_the_keys_the_guarantees_depend_on() -> None:
    assert {
        "enable.auto.offset.store",
        "enable.idempotence",
        "acks",
        "isolation.level",
        "transactional.id",
        "enable.auto.commit",
        "allow.auto.create.topics",
    } <= KafkaSettings.DENIED_EXTRA
    with pytest.raises(ConfigError, match="ACKS"):
        kafka(extra={"ACKS": "1"})  # case does not get a key past the list


def test_extra_passes_through_and_extra_secret_too() -> None:
    k = kafka(
        extra={"socket.keepalive.enable": "true", "client.dns.lookup": "use_all_dns_ips"},
        extra_secret={"sasl.oauthbearer.extensions": "tenant=t1"},
    )
    cfg = librdkafka_config(k)
    assert cfg["socket.keepalive.enable"] == "true"
    assert cfg["client.dns.lookup"] == "use_all_dns_ips"
    assert cfg["sasl.oauthbearer.extensions"] == "tenant=t1"
    with pytest.raises(ConfigError, match="both set"):
        kafka(extra={"a.b": "1"}, extra_secret={"a.b": "2"})


@pytest.mark.parametrize("name", ["ssl_ca_file", "ssl_cert_file", "ssl_key_file"])
def test_a_missing_tls_file_is_refused_at_start_naming_the_setting(
    name: str, pems: dict[str, Path], tmp_path: Path
) -> None:
    files = {"ssl_ca_file": pems["ca"], "ssl_cert_file": pems["cert"], "ssl_key_file": pems["key"]}
    files[name] = tmp_path / "gone.pem"
    k = kafka(security_protocol="SSL", **files)
    with pytest.raises(ConfigError, match=f"kafka.{name}="):
        librdkafka_config(k)
    with pytest.raises(ConfigError, match=f"kafka.{name}="):
        ssl_context(k)


def test_no_bootstrap_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="bootstrap"):
        librdkafka_config(KafkaSettings())


def test_secrets_never_show_in_repr_logs_or_redacted_config(
    caplog: pytest.LogCaptureFixture,
) -> None:
    secrets = ["pw-SECRET-1", "cs-SECRET-2", "xs-SECRET-3", "kp-SECRET-4"]
    settings = load_settings(
        kafka={
            "bootstrap_servers": BOOT,
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "svc",
            "sasl_password": secrets[0],
            "oauth_client_secret": secrets[1],
            "extra_secret": {"some.token": secrets[2]},
            "ssl_cert_file": "/c.pem",
            "ssl_key_file": "/k.pem",
            "ssl_key_password": secrets[3],
        }
    )
    shown = [repr(settings), str(settings), repr(settings.kafka), settings.model_dump_json()]
    k = settings.kafka.model_copy(update={"ssl_cert_file": None, "ssl_key_file": None})
    k = k.model_copy(update={"ssl_key_password": None})
    cfg = librdkafka_config(k)
    assert cfg["sasl.password"] == secrets[0] and cfg["some.token"] == secrets[2]
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("t").info("client config %s", redacted(cfg, k))
    shown += [caplog.text, repr(redacted(cfg, k))]
    for text in shown:
        for secret in secrets:
            assert secret not in text


def test_faust_gets_the_same_tls_and_sasl(pems: dict[str, Path]) -> None:
    import faust
    from faust.auth import OAuthCredentials

    tls = {"ssl_ca_file": pems["ca"], "ssl_cert_file": pems["cert"], "ssl_key_file": pems["key"]}
    tls["ssl_key_password"] = "kp4ss"  # type: ignore[assignment]
    scram = faust_credentials(
        kafka(
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-256",
            sasl_username="svc",
            sasl_password="pw",
            **tls,
        )
    )
    assert isinstance(scram, faust.SASLCredentials)
    assert scram.mechanism.value == "SCRAM-SHA-256" and scram.protocol.value == "SASL_SSL"
    assert (scram.username, scram.password) == ("svc", "pw")
    assert isinstance(scram.ssl_context, ssl.SSLContext)
    plain = faust_credentials(
        kafka(
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="PLAIN",
            sasl_username="u",
            sasl_password="p",
        )
    )
    assert plain.protocol.value == "SASL_PLAINTEXT" and plain.ssl_context is None
    mtls = faust_credentials(kafka(security_protocol="SSL", **tls))
    assert isinstance(mtls, faust.SSLCredentials)
    oauth = faust_credentials(
        kafka(
            security_protocol="SASL_SSL",
            sasl_mechanism="OAUTHBEARER",
            oauth_token_url="https://idp.example/token",
            oauth_client_id="svc",
            oauth_client_secret="cs-SECRET",
        )
    )
    assert isinstance(oauth, OAuthCredentials)
    assert isinstance(oauth.oauth_cb, OidcTokenProvider)
    assert "cs-SECRET" not in repr(oauth.oauth_cb)
    assert faust_credentials(kafka()) is None
    assert faust_brokers(kafka(), "kafka") == ["kafka://b1:9093", "kafka://b2:9093"]
