"""Apache Kafka (KRaft) from its Maven Central jars, run with Java on loopback.

One node by default. With `brokers` = 3 (`alur infra up --brokers 3`) it is a cluster of three
combined broker + controller nodes (a KRaft quorum of three voters): topics are replicated
three times, a write is acknowledged once two replicas have it (min.insync.replicas=2, with
the producers' acks=all), and a replica that was behind is never elected leader (unclean
leader election off), so losing any one node loses no acknowledged record.
"""

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


def proc(settings: Settings, node: int = 1) -> Proc:
    """Node 1 is `kafka`, as with a single broker; node n > 1 is `kafka-n`."""
    return Proc("kafka" if node == 1 else f"kafka-{node}", settings.state_dir / "run",
                settings.log_dir)


def nodes(settings: Settings) -> range:
    return range(1, settings.brokers + 1)


def node_home(settings: Settings, node: int) -> Path:
    home = (settings.state_dir / "kafka").resolve()
    return home if node == 1 else home / f"node-{node}"


def node_of_port(settings: Settings, port: int) -> int:
    """The node whose client port this is."""
    return settings.kafka_ports.index(port) + 1


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


def _config(settings: Settings, node: int, data_dir: Path) -> str:
    host = "127.0.0.1"
    port = settings.kafka_ports[node - 1]
    shops = settings.kafka_shop_ports[node - 1]
    controller = settings.kafka_controller_port + 10 * (node - 1)
    voters = ",".join(f"{n}@{host}:{settings.kafka_controller_port + 10 * (n - 1)}"
                      for n in nodes(settings))
    replicas, min_isr = settings.replication_factor, settings.min_insync_replicas
    return "\n".join([
        "process.roles=broker,controller",
        f"node.id={node}",
        f"controller.quorum.voters={voters}",
        # PLAINTEXT: the services and the brokers themselves, on loopback (deployments keep it
        # on the cluster's private network). SHOPS: shops, authenticated with SCRAM-SHA-512 and
        # held to their ACLs (alur.infra.kafka_access). TLS in front of it is a deployment's.
        f"listeners=PLAINTEXT://{host}:{port},SHOPS://{host}:{shops},"
        f"CONTROLLER://{host}:{controller}",
        f"advertised.listeners=PLAINTEXT://{host}:{port},SHOPS://{host}:{shops}",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SHOPS:SASL_PLAINTEXT,"
        "CONTROLLER:PLAINTEXT",
        "sasl.enabled.mechanisms=SCRAM-SHA-512",
        "listener.name.shops.sasl.enabled.mechanisms=SCRAM-SHA-512",
        "listener.name.shops.scram-sha-512.sasl.jaas.config="
        "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        # ACLs decide on every request. The internal listeners' principal (ANONYMOUS) is a
        # super user; a shop's principal (User:<shop id>) may do only what its ACLs allow.
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users=User:ANONYMOUS",
        "allow.everyone.if.no.acl.found=false",
        f"log.dirs={data_dir}",
        "auto.create.topics.enable=false",
        "group.initial.rebalance.delay.ms=0",
        f"default.replication.factor={replicas}",
        f"min.insync.replicas={min_isr}",
        "unclean.leader.election.enable=false",
        f"offsets.topic.replication.factor={replicas}",
        "offsets.topic.num.partitions=8",
        f"transaction.state.log.replication.factor={replicas}",
        f"transaction.state.log.min.isr={min_isr}",
        f"num.partitions={settings.partitions}",
        "",
    ])


def start(settings: Settings) -> int:
    """Format storage on first use, start every node that is not running, and wait until the
    cluster answers a metadata request with all its brokers. Returns node 1's PID."""
    if shutil.which("java") is None:
        raise StartError("Java 17+ is needed to run Kafka; install a JDK first")
    home = (settings.state_dir / "kafka").resolve()
    home.mkdir(parents=True, exist_ok=True)
    recorded = home / "brokers"
    if recorded.exists() and int(recorded.read_text()) != settings.brokers:
        raise StartError(f"{home} holds a cluster of {recorded.read_text().strip()} node(s), "
                         f"not {settings.brokers}: `alur infra down` and remove {home} first")
    cluster_id_file = home / "cluster.id"
    # An id that begins with "-" was never usable (see new_cluster_id): no storage has it.
    if not cluster_id_file.exists() or cluster_id_file.read_text().startswith("-"):
        cluster_id_file.write_text(new_cluster_id())
    recorded.write_text(f"{settings.brokers}\n")
    started = [start_node(settings, node, wait=False) for node in nodes(settings)]
    _wait_ready(settings, [proc(settings, n) for n in nodes(settings)])
    return started[0]


def new_cluster_id() -> str:
    """A KRaft cluster id: a random UUID in URL-safe base64, as `kafka-storage random-uuid`
    makes them, and like it never one that begins with "-", which the storage tool's command
    line takes for an option (one id in 64 did, and the broker never started)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def start_node(settings: Settings, node: int, wait: bool = True) -> int:
    """Start one node (formatting its storage on first use); with `wait`, until the cluster
    has all its brokers again."""
    p = proc(settings, node)
    if (pid := p.pid()) is not None:
        return pid
    jars = ensure_jars(settings)
    home = node_home(settings, node)
    data = home / "data"
    home.mkdir(parents=True, exist_ok=True)
    config = home / "server.properties"
    config.write_text(_config(settings, node, data))
    log4j = home / "log4j2.yaml"
    log4j.write_text(LOG4J)
    java = ["java", f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{jars}/*"]
    if not (data / "meta.properties").exists():
        cluster_id = (settings.state_dir / "kafka" / "cluster.id").resolve().read_text()
        result = subprocess.run(
            [*java, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config)],
            capture_output=True, text=True)
        if result.returncode != 0:
            raise StartError(f"formatting Kafka storage failed:\n{result.stdout}{result.stderr}")
    pid = p.start(["java", f"-Xmx{settings.kafka_heap}", f"-Xms{settings.kafka_heap}",
                   "-XX:+UseG1GC", *java[1:], "kafka.Kafka", str(config)])
    if wait:
        _wait_ready(settings, [p])
    return pid


def stop(settings: Settings) -> bool:
    """Stop every node; True if any was running."""
    stopped = [proc(settings, node).stop(timeout=30) for node in reversed(nodes(settings))]
    return any(stopped)


def _wait_ready(settings: Settings, procs: list[Proc], timeout: float = 90.0) -> None:
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # refused connects are expected
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        for p in procs:
            if p.pid() is None:
                raise StartError(f"Kafka ({p.name}) exited during start-up; see "
                                 f"{p.log_file}:\n{p.tail()}")
        try:
            brokers = asyncio.run(_metadata(settings.kafka_bootstrap))
            if brokers >= settings.brokers:
                return
            last_error = RuntimeError(f"{brokers} of {settings.brokers} brokers registered")
        except Exception as exc:  # not listening yet
            last_error = exc
        time.sleep(0.5)
    raise StartError(f"Kafka did not answer within {timeout:.0f}s ({last_error}); "
                     f"see {procs[0].log_file}")


async def _metadata(bootstrap: str) -> int:
    """How many brokers the cluster's metadata lists."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    await admin.start()
    try:
        await admin.list_topics()
        cluster = await admin.describe_cluster()
        return len(cluster.get("brokers", []))
    finally:
        await admin.close()
