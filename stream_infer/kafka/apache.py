"""Run a real Apache Kafka broker (KRaft, one node: broker and controller) on loopback ports.

The jars come from Maven Central through the small pom shipped beside this module
(``apache_pom.xml``, the one place the Kafka version is pinned): :func:`kafka_classpath` runs
``mvn dependency:build-classpath`` once and caches the resulting classpath in
``~/.cache/stream-infer/``; the jars themselves live in Maven's own cache (``~/.m2``). Needs
Java 17+ and Maven (``apt-get install default-jre-headless maven``).

What only a real Kafka shows (isolated transactions, durable restarts, ListOffsets, the log
cleaner, KIP-848 rebalances, TLS and SASL listeners) is tested on this broker; Tansu
(:mod:`stream_infer.kafka.broker`) stays the no-Java default of ``make demo``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import tempfile
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Final, Self

from stream_infer.errors import ConfigError, FatalError
from stream_infer.kafka.child import ChildProcess, free_port

_POM: Final = "apache_pom.xml"
_MAVEN_NS: Final = {"m": "http://maven.apache.org/POM/4.0.0"}
#: Kafka's own launcher scripts (kafka-run-class.sh) start the broker with these.
_JVM_DEFAULTS: Final = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)
_LOG4J2: Final = """\
rootLogger.level=WARN
rootLogger.appenderRef.stdout.ref=STDOUT
appender.stdout.type=Console
appender.stdout.name=STDOUT
appender.stdout.layout.type=PatternLayout
appender.stdout.layout.pattern=[%d] %p %m (%c)%n
"""


def _pom_text() -> str:
    return resources.files("stream_infer.kafka").joinpath(_POM).read_text(encoding="utf-8")


def kafka_version() -> str:
    """The Apache Kafka version pinned in ``apache_pom.xml``."""
    root = ET.fromstring(_pom_text())
    found = root.find("m:properties/m:kafka.version", _MAVEN_NS)
    if found is None or not found.text:
        raise ConfigError(f"{_POM} does not pin kafka.version")
    return found.text.strip()


def classpath_cache_file() -> Path:
    """Where the resolved classpath is cached: keyed by version and the pom's own hash, so an
    edited pom resolves afresh."""
    pom_hash = hashlib.sha256(_pom_text().encode()).hexdigest()[:12]
    return (
        Path.home()
        / ".cache"
        / "stream-infer"
        / f"kafka-classpath-{kafka_version()}-{pom_hash}.txt"
    )


def _cached_classpath(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    jars = text.split(os.pathsep)
    # A cleaned ~/.m2 leaves a cache file naming jars that are gone: resolve again.
    if not text or not all(Path(jar).is_file() for jar in jars):
        return None
    return text


def _require_tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise FatalError(
            f"Apache Kafka needs `{name}` on PATH (Debian: apt-get install default-jre-headless "
            "maven)"
        )
    return found


def kafka_classpath(timeout_s: float = 600.0) -> str:
    """The broker's classpath (jar paths joined by ``os.pathsep``), resolved by Maven from
    Maven Central on first use and cached afterwards.

    Raises:
        FatalError: Maven is missing, or could not resolve the jars (offline, wrong version).
    """
    cache = classpath_cache_file()
    cached = _cached_classpath(cache)
    if cached is not None:
        return cached
    mvn = _require_tool("mvn")
    cache.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="stream-infer-mvn-") as tmp:
        pom = Path(tmp) / "pom.xml"
        pom.write_text(_pom_text(), encoding="utf-8")
        out = Path(tmp) / "classpath.txt"
        try:
            done = subprocess.run(
                [
                    mvn,
                    "-q",
                    "-B",
                    "-f",
                    str(pom),
                    "dependency:build-classpath",
                    f"-Dmdep.outputFile={out}",
                ],
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise FatalError(f"Maven did not resolve Apache Kafka within {timeout_s}s") from exc
        if done.returncode != 0 or not out.exists():
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
            raise FatalError(
                f"Maven could not resolve Apache Kafka {kafka_version()} (exit {done.returncode}):"
                f"\n{tail}"
            )
        text = out.read_text(encoding="utf-8").strip()
    # Write-then-rename: concurrent resolvers (two test sessions) never read half a file.
    part = cache.with_suffix(f".{os.getpid()}.part")
    part.write_text(text, encoding="utf-8")
    part.replace(cache)
    return text


def _cluster_id() -> str:
    """A random cluster id as Kafka writes them (URL-safe base64 of a UUID)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


class ApacheKafka(ChildProcess):
    """One Apache Kafka node (KRaft broker + controller) as a child process, by process id.

    ``bootstrap`` is the PLAINTEXT listener; inter-broker and controller traffic stay on
    PLAINTEXT. ``extra_listeners`` adds ``(NAME, protocol, port)`` listeners (port 0: a free
    one), ``properties`` adds or overrides ``server.properties`` keys (``ssl.*``, ``sasl.*``,
    ``listener.name.<x>.*``, an authorizer, ...). Ports and data survive :meth:`restart`.
    """

    def __init__(
        self,
        work_dir: Path | None = None,
        *,
        port: int | None = None,
        extra_listeners: Sequence[tuple[str, str, int]] = (),
        properties: Mapping[str, str] | None = None,
        jvm_options: Sequence[str] = (),
        heap: str = "512m",
        start_timeout_s: float = 90.0,
    ) -> None:
        self.work_dir = work_dir or Path(tempfile.mkdtemp(prefix="stream-infer-kafka-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.controller_port = free_port()
        self.listeners: dict[str, tuple[str, int]] = {"PLAINTEXT": ("PLAINTEXT", self.port)}
        for name, protocol, listener_port in extra_listeners:
            upper = name.upper()
            if upper in ("PLAINTEXT", "CONTROLLER"):
                raise ConfigError(f"listener name {name} is reserved")
            self.listeners[upper] = (protocol.upper(), listener_port or free_port())
        self._properties = dict(properties or {})
        self._jvm_options = tuple(jvm_options)
        self._heap = heap
        self._start_timeout_s = start_timeout_s
        super().__init__(self.work_dir / "broker.log", self.work_dir, own_dir=work_dir is None)
        self.data_dir = self.work_dir / "data"

    @property
    def bootstrap(self) -> str:
        return self.listener_bootstrap("PLAINTEXT")

    def listener_bootstrap(self, name: str) -> str:
        """``host:port`` of the named listener (``PLAINTEXT`` or one of ``extra_listeners``)."""
        try:
            return f"127.0.0.1:{self.listeners[name.upper()][1]}"
        except KeyError:
            raise ConfigError(f"no listener named {name}") from None

    def server_properties(self) -> dict[str, str]:
        """The ``server.properties`` this node runs with (defaults, then ``properties``)."""
        listeners = [f"{n}://127.0.0.1:{p}" for n, (_, p) in self.listeners.items()]
        protocols = [f"{n}:{proto}" for n, (proto, _) in self.listeners.items()]
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listeners": ",".join([*listeners, f"CONTROLLER://127.0.0.1:{self.controller_port}"]),
            "advertised.listeners": ",".join(listeners),
            "listener.security.protocol.map": ",".join([*protocols, "CONTROLLER:PLAINTEXT"]),
            "log.dirs": str(self.data_dir),
            # One node: every internal topic has one replica.
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            # Fewer internal partitions: the first group join and InitProducerId create them.
            "offsets.topic.num.partitions": "5",
            "transaction.state.log.num.partitions": "5",
            "group.initial.rebalance.delay.ms": "0",
            # Topics are created on purpose (`stream-infer topics apply`), as in production.
            "auto.create.topics.enable": "false",
            # The cleaner looks for dirty logs every second, not every 15 s.
            "log.cleaner.backoff.ms": "1000",
            # KIP-848 groups: heartbeats fast enough for a test's rebalance to settle quickly.
            "group.consumer.min.heartbeat.interval.ms": "500",
            "group.consumer.heartbeat.interval.ms": "1000",
        }
        props.update(self._properties)
        return props

    def _write_configs(self) -> Path:
        config = self.work_dir / "server.properties"
        lines = [f"{key}={value}" for key, value in self.server_properties().items()]
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        (self.work_dir / "log4j2.properties").write_text(_LOG4J2, encoding="utf-8")
        return config

    def _java(self, classpath: str, *args: str, heap: str) -> list[str]:
        return [
            _require_tool("java"),
            f"-Xmx{heap}",
            *_JVM_DEFAULTS,
            f"-Dlog4j2.configurationFile={self.work_dir / 'log4j2.properties'}",
            *self._jvm_options,
            "-cp",
            classpath,
            *args,
        ]

    def _format(self, classpath: str, config: Path) -> None:
        if (self.data_dir / "meta.properties").exists():
            return  # a restart keeps the formatted log
        done = subprocess.run(
            self._java(
                classpath,
                "kafka.tools.StorageTool",
                "format",
                # One argument: an id may start with "-", which argparse would take for an option.
                f"--cluster-id={_cluster_id()}",
                "--config",
                str(config),
                "--ignore-formatted",
                heap="256m",
            ),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise FatalError(f"formatting Kafka's storage failed: {done.stdout}{done.stderr}")

    def start(self) -> Self:
        """Format the storage (first start only), launch the node and block until it answers
        a metadata request naming a broker.

        Raises:
            FatalError: Java or Maven is missing, the jars cannot be resolved, the node exited,
                or it did not answer within the start timeout (the log's tail is in the message).
        """
        if self._proc is not None and self._proc.poll() is None:
            return self
        classpath = kafka_classpath()
        config = self._write_configs()
        self._format(classpath, config)
        self._spawn(self._java(classpath, "kafka.Kafka", str(config), heap=self._heap))
        status = self._wait_answering(self.bootstrap, self._start_timeout_s, poll_s=0.1)
        if status == "exited":
            code = self._proc.returncode if self._proc is not None else None
            self._proc = None
            raise FatalError(f"Apache Kafka exited early (code {code}):\n{self.tail_log()}")
        if status == "timeout":
            tail = self.tail_log()
            self.stop()
            raise FatalError(
                f"Apache Kafka did not answer on {self.bootstrap} within "
                f"{self._start_timeout_s}s:\n{tail}"
            )
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the node it started: SIGTERM (a controlled shutdown), then SIGKILL."""
        self._terminate(timeout_s)
