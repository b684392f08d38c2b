"""Bring the local infrastructure and the services up and down, as plain processes. The
services run under the supervisor (alur/infra/supervisor.py), which restarts them when they
exit or fail their liveness probe."""

from __future__ import annotations

import asyncio
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import SecretStr

from alur.infra import kafka, postgres, prometheus
from alur.infra.procs import Proc, StartError, wait_gone
from alur.infra.supervisor import want_file
from alur.runtime.topics import ensure_topics
from alur.settings import SERVICES, Settings

ROOT = Path(__file__).resolve().parents[2]
SIMULATORS = ("smtp-sink", "gateway-sim", "carrier-kilat", "carrier-nusapost")


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as ALUR_* variables, so child processes see exactly the parent's."""
    return {f"ALUR_{k.upper()}": v.get_secret_value() if isinstance(v, SecretStr) else str(v)
            for k, v in settings.model_dump().items()}


def proc(settings: Settings, name: str) -> Proc:
    return Proc(name, settings.state_dir / "run", settings.log_dir)


def _port(name: str, settings: Settings) -> int:
    if name == "smtp-sink":
        return settings.smtp_port
    if name == "gateway-sim":
        return settings.gateway_port
    if name.startswith("carrier-"):
        return settings.carrier_port(name.removeprefix("carrier-"))
    return settings.metrics_port(name)


def wait_port(port: int, p: Proc, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if p.pid() is None:
            raise StartError(f"{p.name} exited during start-up; see {p.log_file}:\n{p.tail()}")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise StartError(f"{p.name} did not listen on port {port} within {timeout:.0f}s; "
                     f"see {p.log_file}")


def start_process(settings: Settings, name: str) -> int:
    """Start `alur run NAME` in the background and wait until it listens (a service: have the
    supervisor run it)."""
    if name in SERVICES:
        return services_up(settings, (name,))[name]
    p = proc(settings, name)
    if (pid := p.pid()) is not None:
        return pid
    pid = p.start([sys.executable, "-m", "alur.cli", "run", name], env=settings_env(settings),
                  cwd=ROOT)
    wait_port(_port(name, settings), p)
    return pid


def replica_settings(settings: Settings, n: int) -> Settings:
    """Replica n (2, 3, ...) of a service: the same consumer group and database, its own
    HTTP ports (metrics base shifted by 10 * (n - 1); payments callbacks, carrier webhooks and
    inventory admin by 100 * (n - 1)) so it can run next to the first on one machine."""
    k = n - 1
    return settings.model_copy(update={
        "metrics_port_base": settings.metrics_port_base + 10 * k,
        "payments_port": settings.payments_port + 100 * k,
        "shipping_port": settings.shipping_port + 100 * k,
        "inventory_port": settings.inventory_port + 100 * k})


def start_replica(settings: Settings, name: str, n: int) -> int:
    """Start replica n >= 2 of service NAME (`NAME-n` in the run and log dirs)."""
    if n < 2:
        raise ValueError("replica 1 is the service itself; start it with start_process")
    shifted = replica_settings(settings, n)
    p = proc(settings, f"{name}-{n}")
    if (pid := p.pid()) is not None:
        return pid
    pid = p.start([sys.executable, "-m", "alur.cli", "run", name], env=settings_env(shifted),
                  cwd=ROOT)
    wait_port(shifted.metrics_port(name), p)
    return pid


def infra_up(settings: Settings, say: Callable[[str], None] = print) -> None:
    """Idempotent: what runs already is reused."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    say(f"kafka       {settings.kafka_bootstrap}  pid {kafka.start(settings)}")
    created = asyncio.run(ensure_topics(
        settings.kafka_bootstrap, settings.partitions, replication=settings.replication_factor,
        min_insync=settings.min_insync_replicas))
    if created:
        say(f"            created topics: {', '.join(created)}")
    say(f"postgres    127.0.0.1:{settings.pg_port}  pid {postgres.start(settings)}")
    for name in SIMULATORS:
        say(f"{name:<11} 127.0.0.1:{_port(name, settings)}  pid {start_process(settings, name)}")
    say(f"prometheus  {prometheus.url(settings)}  pid {prometheus.start(settings)}")


def infra_down(settings: Settings, say: Callable[[str], None] = print) -> None:
    if prometheus.proc(settings).stop():
        say("stopped prometheus")
    for name in reversed(SIMULATORS):
        if proc(settings, name).stop():
            say(f"stopped {name}")
    if kafka.stop(settings):
        say("stopped kafka")
    if postgres.stop(settings):
        say("stopped postgres")


@contextmanager
def fresh(settings: Settings, say: Callable[[str], None] = print) -> Iterator[Settings]:
    """For tests and benchmarks: wipe the state dir, bring the infrastructure up for the block,
    and stop everything (services too) by PID afterwards."""
    services_down(settings)
    infra_down(settings, say=lambda _: None)
    for leftover in (settings.state_dir, postgres.home(settings)):
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        infra_up(settings, say=say)
        yield settings
    finally:
        services_down(settings)
        infra_down(settings, say=lambda _: None)


def supervisor(settings: Settings) -> Proc:
    return proc(settings, "supervisor")


def services_up(settings: Settings, names: tuple[str, ...] = SERVICES) -> dict[str, int]:
    """Have the supervisor run the services (starting it if need be); wait until each listens
    (a service it is restarting is waited for too)."""
    for name in names:
        want_file(settings, name).parent.mkdir(parents=True, exist_ok=True)
        want_file(settings, name).touch()
    sup = supervisor(settings)
    if sup.pid() is None:
        sup.start([sys.executable, "-m", "alur.cli", "supervise"], env=settings_env(settings),
                  cwd=ROOT)
    return {name: wait_supervised(settings, name) for name in names}


def wait_supervised(settings: Settings, name: str, timeout: float = 90.0) -> int:
    """The PID of the supervised service once it listens."""
    p, port = proc(settings, name), settings.metrics_port(name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if supervisor(settings).pid() is None:
            raise StartError(f"the supervisor is not running; see "
                             f"{supervisor(settings).log_file}:\n{supervisor(settings).tail()}")
        pid = p.pid()
        if pid is not None:
            with socket.socket() as s:
                s.settimeout(0.5)
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return pid
        time.sleep(0.1)
    raise StartError(f"{name} did not listen on port {port} within {timeout:.0f}s; see "
                     f"{p.log_file}:\n{p.tail()}")


def services_down(settings: Settings, names: tuple[str, ...] = SERVICES) -> None:
    """Stop the services, and any replicas of them, by the PIDs they were started with. The
    supervisor stops the ones it runs (and itself, once it runs none)."""
    run_dir = settings.state_dir / "run"
    for name in names:
        want_file(settings, name).unlink(missing_ok=True)
        for replica in sorted(run_dir.glob(f"{name}-[0-9]*.pid")):
            proc(settings, replica.stem).stop()
    sup = supervisor(settings)
    if sup.pid() is not None:
        for name in names:
            pid = proc(settings, name).pid()
            if pid is not None and not wait_gone(pid, 30.0):
                proc(settings, name).stop()
        if not any(want_file(settings, name).exists() for name in SERVICES):
            sup.stop(timeout=40.0)
    for name in names:  # not supervised (the supervisor was gone), or it did not stop
        proc(settings, name).stop()


def status(settings: Settings) -> list[tuple[str, str, str, str]]:
    """(component, state, address, log) rows."""
    rows = []
    procs = [(kafka.proc(settings, n).name, kafka.proc(settings, n),
              f"127.0.0.1:{settings.kafka_ports[n - 1]}") for n in kafka.nodes(settings)]
    procs += [("postgres", postgres.proc(settings), f"127.0.0.1:{settings.pg_port}"),
              ("prometheus", prometheus.proc(settings), prometheus.url(settings))]
    procs += [(n, proc(settings, n), f"127.0.0.1:{_port(n, settings)}")
              for n in (*SIMULATORS, *SERVICES)]
    procs.append(("supervisor", supervisor(settings), "-"))
    for name, p, address in procs:
        pid = p.pid()
        rows.append((name, f"running (pid {pid})" if pid else "stopped", address,
                     str(p.log_file)))
    return rows
