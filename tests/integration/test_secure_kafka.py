"""Secured Apache Kafka: every component connects and scores over SASL_SSL (SCRAM) and over
mTLS; a wrong password, an untrusted certificate or a missing ACL ends the process within
10 s, non-zero, naming the cause (never retried for ever, never ready)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pandas as pd
import pytest

from loadgen.simulator import SimulationConfig, generate
from stream_infer.config import Settings
from stream_infer.labels.app import labels_counted
from stream_infer.model.control import ControlListener, announce

from .conftest import make_test_settings
from .kafka_io import read_topic
from .processes import WorkerProcess, settings_env
from .redis_secure import make_pki
from .secure_kafka import (
    NOACL_PASSWORD,
    NOACL_USER,
    PLAIN_PASSWORD,
    PLAIN_USER,
    TOPICS_ONLY_PASSWORD,
    TOPICS_ONLY_USER,
    OidcServer,
    SecureNode,
    mtls_settings,
    oauth_settings,
    plaintext,
    sasl_settings,
    secure_node,
)

pytestmark = pytest.mark.apache

#: The issue's bound on a refused start.
REFUSED_WITHIN_S = 10.0


@pytest.fixture(scope="module")
def oidc() -> Iterator[OidcServer]:
    server = OidcServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory, oidc: OidcServer) -> Iterator[SecureNode]:
    folder = tmp_path_factory.mktemp("secure-kafka")
    node = secure_node(make_pki(folder / "pki"), make_pki(folder / "rogue"), folder, oidc)
    try:
        yield node
    finally:
        node.node.cleanup()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    frame: pd.DataFrame = generate(SimulationConfig(30, 60, 12, seed=5), progress=False)
    path = tmp_path_factory.mktemp("secure-data") / "tx.parquet"
    frame.to_parquet(path, index=False)
    return path, len(frame)


def run(
    settings: Settings, *args: str, module: str = "stream_infer", timeout_s: float = 120.0
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def wait_until(check: Callable[[], bool], what: str, procs: list[WorkerProcess]) -> None:
    deadline = time.monotonic() + 120
    while not check():
        for proc in procs:
            if proc.proc.poll() is not None:
                pytest.fail(f"{what}: a child exited:\n{proc.output()[-3000:]}")
        if time.monotonic() > deadline:
            logs = "\n---\n".join(p.output()[-2000:] for p in procs)
            pytest.fail(f"{what} not reached:\n{logs}")
        time.sleep(0.2)


def secured_settings(
    kind: str, base: Settings, secure: SecureNode, oidc: OidcServer, tmp: Path, registry: Path
) -> Settings:
    settings = make_test_settings(
        base, secure.admin_bootstrap, tmp, partitions=2, model={"registry_dir": str(registry)}
    )
    if kind == "sasl-scram-sha-512":
        return sasl_settings(settings, secure)
    if kind == "sasl-plain":
        return sasl_settings(settings, secure, PLAIN_USER, PLAIN_PASSWORD, "PLAIN")
    if kind == "oauthbearer":
        return oauth_settings(settings, secure, oidc)
    return mtls_settings(settings, secure)


@pytest.mark.parametrize("kind", ["sasl-scram-sha-512", "mtls", "oauthbearer"])
def test_every_component_connects_and_scores(
    kind: str,
    base_settings: Settings,
    secure: SecureNode,
    oidc: OidcServer,
    tmp_path: Path,
    model_registry: Path,
    dataset: tuple[Path, int],
) -> None:
    settings = secured_settings(kind, base_settings, secure, oidc, tmp_path, model_registry)
    mine = plaintext(settings, secure)  # the test's own reads: the super-user listener

    applied = run(settings, "topics", "apply")
    assert applied.returncode == 0, applied.stderr
    assert settings.topics.transactions in applied.stdout

    path, n = dataset
    sent = run(settings, "replay", "--dataset", str(path), "--no-progress",
               "--sent-ids", str(tmp_path / "ids.npy"), module="loadgen")  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    report = orjson.loads(sent.stdout[sent.stdout.index("{") :])
    assert report["transactions_sent"] == n and report["delivery_errors"] == 0
    labels_sent = report["labels_sent"]
    assert labels_sent == n

    worker = WorkerProcess(settings, tmp_path / "worker.log", "worker")
    labels = WorkerProcess(settings, tmp_path / "labels.log", "labels")
    heard: list[tuple[str, int]] = []
    listening = threading.Event()

    def on_change(name: str, revision: int) -> None:
        heard.append((name, revision))
        listening.set()

    listener = ControlListener(settings, on_change)
    try:
        scores = read_topic(mine, settings.topics.scores, lambda r: len(r) >= n, timeout_s=120)
        ids = {orjson.loads(m.value())["transaction_id"] for m in scores}
        assert len(ids) == n

        wait_until(lambda: labels_counted(settings) >= labels_sent, "labels counted", [labels])

        assert listener.start()
        assert listening.wait(60), "model-control listener never assigned"

        def heard_it() -> bool:
            # Announced again until heard: the listener reads from "latest", and its position
            # may settle just after an announcement made right at its assignment.
            if (settings.model.name, 4242) in heard:
                return True
            assert announce(settings, settings.model.name, 4242)
            return False

        wait_until(heard_it, "announcement", [worker])

        lag = run(settings, "lag", "--json", "--samples", "1", "--group", settings.worker.group_id)
        assert lag.returncode == 0, lag.stderr
        rows = orjson.loads(lag.stdout)
        assert rows and all(r["group"] == settings.worker.group_id for r in rows)
    finally:
        listener.stop()
        codes = (worker.terminate(), labels.terminate())
    assert codes[0] == 0, worker.output()[-3000:]
    assert "Kafka refused" not in worker.output() + labels.output()


def test_sasl_plain_connects(
    base_settings: Settings,
    secure: SecureNode,
    oidc: OidcServer,
    tmp_path: Path,
    model_registry: Path,
) -> None:
    settings = secured_settings("sasl-plain", base_settings, secure, oidc, tmp_path, model_registry)
    applied = run(settings, "topics", "apply")
    assert applied.returncode == 0, applied.stderr


def _refused(
    kind: str, base: Settings, secure: SecureNode, oidc: OidcServer, tmp: Path
) -> Settings:
    settings = make_test_settings(base, secure.admin_bootstrap, tmp)
    if kind == "wrong-client-secret":
        return oauth_settings(settings, secure, oidc, secret="not-the-secret")
    if kind == "wrong-password":
        return sasl_settings(settings, secure, password="not-the-password")
    if kind == "untrusted-broker-certificate":
        return sasl_settings(settings, secure, ca_file=secure.rogue.ca_file)
    if kind == "untrusted-client-certificate":
        return mtls_settings(settings, secure, client=secure.rogue)
    if kind == "no-topic-acl":
        return sasl_settings(settings, secure, NOACL_USER, NOACL_PASSWORD)
    assert kind == "no-group-acl"
    return sasl_settings(settings, secure, TOPICS_ONLY_USER, TOPICS_ONLY_PASSWORD, "SCRAM-SHA-256")


CAUSES = {
    "wrong-password": "authentication failed",
    "wrong-client-secret": "authentication failed",
    "untrusted-broker-certificate": "TLS handshake failed",
    "untrusted-client-certificate": "TLS handshake failed",
    "no-topic-acl": "TOPIC_AUTHORIZATION_FAILED",
    "no-group-acl": "GROUP_AUTHORIZATION_FAILED",
}
COMMANDS = {
    "worker": ["worker"],
    "labels": ["labels"],
    "serve": ["serve", "--port", "0"],
    "topics-apply": ["topics", "apply"],
    "lag": ["lag", "--samples", "1"],
    "loadgen": ["replay", "--count", "10", "--no-progress"],
}


@pytest.mark.parametrize(
    ("kind", "command"),
    [(kind, "worker") for kind in CAUSES]
    + [("no-group-acl", "labels"), ("wrong-client-secret", "labels")]
    + [("wrong-password", c) for c in COMMANDS if c != "worker"],
)
def test_a_refused_start_exits_within_seconds_naming_the_cause(
    kind: str,
    command: str,
    base_settings: Settings,
    secure: SecureNode,
    oidc: OidcServer,
    tmp_path: Path,
    model_registry: Path,
    dataset: tuple[Path, int],
) -> None:
    settings = _refused(kind, base_settings, secure, oidc, tmp_path)
    settings = settings.model_copy(
        update={"model": settings.model.model_copy(update={"registry_dir": model_registry})}
    )
    # Topics exist (created by the super user): only the credentials are wrong.
    applied = run(plaintext(settings, secure), "topics", "apply")
    assert applied.returncode == 0, applied.stderr
    args = list(COMMANDS[command])
    module = "loadgen" if command == "loadgen" else "stream_infer"
    if command == "loadgen":
        args += ["--dataset", str(dataset[0])]
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        env=settings_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out, _ = proc.communicate(timeout=REFUSED_WITHIN_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"{command} still running after {REFUSED_WITHIN_S}s:\n{out[-3000:]}")
    elapsed = time.monotonic() - started
    assert proc.returncode != 0, out
    assert CAUSES[kind] in out, out
    assert "assigned" not in out  # never got as far as a partition, let alone ready
    assert elapsed < REFUSED_WITHIN_S
