"""Apache Kafka (KRaft, single node) from its Maven Central jars, run with Java on loopback."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import shutil
import subprocess
import time
import uuid
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from alur.infra.procs import Proc, StartError
from alur.settings import Settings

POM = Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "pom.xml"
LOG4J = """Configuration:
  Appenders:
    Console:
      name: STDOUT
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: STDOUT
    Logger:
      - name: kafka.request.logger
        level: WARN
      - name: org.apache.kafka.controller
        level: WARN
"""


def proc(settings: Settings) -> Proc:
    return Proc("kafka", settings.state_dir / "run", settings.log_dir)


def ensure_jars(settings: Settings) -> Path:
    """Resolve the broker jars into the cache once per pom version; later calls are instant."""
    jar_dir = settings.jar_dir.resolve()
    stamp = jar_dir / ".pom-sha256"
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return jar_dir
    if shutil.which("mvn") is None:
        raise StartError("Maven (mvn) is needed to fetch the Kafka jars; install it first")
    if jar_dir.exists():
        shutil.rmtree(jar_dir)
    print(f"  resolving Kafka jars from Maven Central into {jar_dir} ...", flush=True)
    result = subprocess.run(
        ["mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
         f"-DoutputDirectory={jar_dir}", "-DincludeScope=runtime"],
        capture_output=True, text=True)
    if result.returncode != 0:
        raise StartError(f"mvn could not resolve the Kafka jars:\n{result.stdout}{result.stderr}")
    stamp.write_text(digest)
    return jar_dir


def _config(settings: Settings, data_dir: Path) -> str:
    host = "127.0.0.1"
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@{host}:{settings.kafka_controller_port}",
        f"listeners=PLAINTEXT://{host}:{settings.kafka_port},"
        f"CONTROLLER://{host}:{settings.kafka_controller_port}",
        f"advertised.listeners=PLAINTEXT://{host}:{settings.kafka_port}",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        f"log.dirs={data_dir}",
        "auto.create.topics.enable=false",
        "group.initial.rebalance.delay.ms=0",
        "offsets.topic.replication.factor=1",
        "offsets.topic.num.partitions=8",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        f"num.partitions={settings.partitions}",
        "",
    ])


def start(settings: Settings) -> int:
    """Format storage on first use, start the broker, wait for a real metadata answer."""
    p = proc(settings)
    if (pid := p.pid()) is not None:
        return pid
    if shutil.which("java") is None:
        raise StartError("Java 17+ is needed to run Kafka; install a JDK first")
    jars = ensure_jars(settings)
    home = (settings.state_dir / "kafka").resolve()
    data = home / "data"
    home.mkdir(parents=True, exist_ok=True)
    (home / "server.properties").write_text(_config(settings, data))
    (home / "log4j2.yaml").write_text(LOG4J)
    classpath = f"{jars}/*"
    java = ["java", f"-Dlog4j2.configurationFile={home / 'log4j2.yaml'}", "-cp", classpath]
    if not (data / "meta.properties").exists():
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        result = subprocess.run(
            [*java, "kafka.tools.StorageTool", "format", "-t", cluster_id,
             "-c", str(home / "server.properties")], capture_output=True, text=True)
        if result.returncode != 0:
            raise StartError(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")
    pid = p.start(["java", f"-Xmx{settings.kafka_heap}", f"-Xms{settings.kafka_heap}",
                   "-XX:+UseG1GC", *java[1:], "kafka.Kafka", str(home / "server.properties")])
    _wait_ready(settings, p)
    return pid


def _wait_ready(settings: Settings, p: Proc, timeout: float = 90.0) -> None:
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # refused connects are expected
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if p.pid() is None:
            raise StartError(f"Kafka exited during start-up; see {p.log_file}:\n{p.tail()}")
        try:
            asyncio.run(_metadata(settings.kafka_bootstrap))
            return
        except Exception as exc:  # not listening yet
            last_error = exc
            time.sleep(0.5)
    raise StartError(f"Kafka did not answer within {timeout:.0f}s ({last_error}); "
                     f"see {p.log_file}")


async def _metadata(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    await admin.start()
    try:
        await admin.list_topics()
    finally:
        await admin.close()
