"""Redis as production runs it, for tests: certificates made here (``cryptography``), a TLS-only
server with ACL users, a 3-master Redis Cluster and a Sentinel, each on free loopback ports.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from stream_infer.config import RedisSettings

from .redis_server import RedisServer, ServerTls

#: The ACL users of the secured server: a writer (what worker and label processor need) and a
#: reader (what the sidecar needs; no write command).
APP_USER, APP_PASSWORD = "stream-infer", "s3cret-app"
READER_USER, READER_PASSWORD = "reader", "s3cret-reader"
ADMIN_USER, ADMIN_PASSWORD = "admin", "s3cret-admin"  # the tests' own: ACL changes


@dataclass(frozen=True)
class Pki:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate."""

    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer if issuer is not None else (name, key)
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def make_ca(
    folder: Path, name: str = "test-ca"
) -> tuple[Path, x509.Name, ec.EllipticCurvePrivateKey]:
    """A self-signed CA: its PEM file, name and key."""
    folder.mkdir(parents=True, exist_ok=True)
    key = _key()
    cert = _cert(name, key, None, ca=True)
    return _pem(cert, folder / f"{name}.pem"), cert.subject, key


def make_pki(folder: Path) -> Pki:
    """A CA and the server and client certificates it signs, as PEM files in ``folder``."""
    ca_file, ca_name, ca_key = make_ca(folder)
    server_key, client_key = _key(), _key()
    server = _cert("localhost", server_key, (ca_name, ca_key), server=True)
    client = _cert("stream-infer-client", client_key, (ca_name, ca_key))
    return Pki(
        ca_file=ca_file,
        server_cert=_pem(server, folder / "server.pem"),
        server_key=_write_key(server_key, folder / "server.key"),
        client_cert=_pem(client, folder / "client.pem"),
        client_key=_write_key(client_key, folder / "client.key"),
    )


def acl_args() -> list[str]:
    """The default user off; a writer (no dangerous commands), a read-only user, an admin."""
    return [
        "--user", "default", "off",
        "--user", ADMIN_USER, "on", f">{ADMIN_PASSWORD}", "~*", "&*", "+@all",
        "--user", APP_USER, "on", f">{APP_PASSWORD}", "~*", "+@all", "-@dangerous",
        "--user", READER_USER, "on", f">{READER_PASSWORD}", "~*", "-@all", "+@read",
        "+ping", "+hello", "+auth",
    ]  # fmt: skip


def secure_settings(server: RedisServer, pki: Pki, prefix: str, **over: Any) -> RedisSettings:
    """Settings reaching :func:`tls_acl_redis` as the app user, with a client certificate."""
    fields: dict[str, Any] = {
        "url": SecretStr(server.url),
        "username": APP_USER,
        "password": SecretStr(APP_PASSWORD),
        "tls_ca_file": pki.ca_file,
        "tls_cert_file": pki.client_cert,
        "tls_key_file": pki.client_key,
        "key_prefix": prefix,
    }
    return RedisSettings(**(fields | over))


def cluster_settings(cluster: RedisClusterServers, prefix: str) -> RedisSettings:
    """Settings reaching :class:`RedisClusterServers` through its first node."""
    return RedisSettings(url=SecretStr(cluster.url), mode="cluster", key_prefix=prefix)


@contextmanager
def tls_acl_redis(pki: Pki) -> Iterator[RedisServer]:
    """A TLS-only redis-server (client certificates checked when sent) with :func:`acl_args`."""
    tls = ServerTls(pki.server_cert, pki.server_key, pki.ca_file, auth_clients="optional")
    client = {
        "username": APP_USER,
        "password": APP_PASSWORD,
        "ssl": True,
        "ssl_ca_certs": str(pki.ca_file),
    }
    with RedisServer(extra_args=acl_args(), tls=tls, client_kwargs=client) as server:
        yield server


class RedisClusterServers:
    """Three masters (no replicas) made one Redis Cluster with ``redis-cli --cluster create``.

    Raises (on enter):
        FileNotFoundError: ``redis-server`` or ``redis-cli`` is not installed.
        RuntimeError: the cluster did not report ``cluster_state:ok`` on every node in time.
    """

    def __init__(self, masters: int = 3, startup_timeout_s: float = 60.0) -> None:
        self._masters = masters
        self._timeout_s = startup_timeout_s
        self._stack = ExitStack()
        self.nodes: list[RedisServer] = []

    @property
    def url(self) -> str:
        """A seed node (any node will do: the client reads the slot map from it)."""
        return self.nodes[0].url

    def __enter__(self) -> RedisClusterServers:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise FileNotFoundError("redis-cli is not installed")
        try:
            for _ in range(self._masters):
                args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
                self.nodes.append(self._stack.enter_context(RedisServer(extra_args=args)))
            addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
            subprocess.run(
                [
                    cli,
                    "--cluster",
                    "create",
                    *addresses,
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],
                check=True,
                capture_output=True,
                timeout=self._timeout_s,
            )
            self._wait_ok()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _wait_ok(self) -> None:
        deadline = time.monotonic() + self._timeout_s
        clients = [redis.Redis(port=n.port, socket_timeout=1.0) for n in self.nodes]
        try:
            while time.monotonic() < deadline:
                infos = [c.execute_command("CLUSTER", "INFO") for c in clients]
                if all(b"cluster_state:ok" in info for info in infos):
                    return
                time.sleep(0.05)
            raise RuntimeError(f"redis cluster not ok: {infos}")
        finally:
            for c in clients:
                c.close()


@contextmanager
def sentinel_for(master: RedisServer, name: str = "mymaster") -> Iterator[int]:
    """A Sentinel (``redis-server --sentinel``) monitoring ``master``; yields its port once it
    reports the master."""
    with tempfile.TemporaryDirectory(prefix="sentinel-") as tmp:
        conf = Path(tmp) / "sentinel.conf"
        conf.write_text(f"sentinel monitor {name} 127.0.0.1 {master.port} 1\n")
        with RedisServer(config_file=conf, extra_args=["--sentinel"]) as sentinel:
            client = redis.Redis(port=sentinel.port, socket_timeout=1.0)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", name):
                        break
                except redis.RedisError:
                    pass
                time.sleep(0.05)
            client.close()
            yield sentinel.port
