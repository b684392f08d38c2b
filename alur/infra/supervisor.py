"""The local stack's supervisor: keeps the wanted services running, as Kubernetes would.

`alur stack up` starts one supervisor process (`alur supervise`), which starts each service as
its child. Nobody has to restart a service by hand:

- Which services should run is the set of files `<state>/run/<name>.want`
  (`stack.services_up` writes them, `stack.services_down` removes them); the supervisor starts
  the wanted ones and stops (SIGTERM, SIGKILL after 20 s) the ones no longer wanted.
- A wanted service that exits (status 70 when its core is wedged, a crash, a SIGKILL) is
  started again after a back-off: 1 s, doubling up to 8 s, and back to 1 s once it has run
  for a minute (Kubernetes' CrashLoopBackOff, with a shorter ceiling).
- Liveness: once a service has answered `/healthz`, it is probed every 5 s; three failures in
  a row (503, or no answer within 3 s: an event loop that hangs cannot wedge itself out) and
  it is killed with SIGKILL and started again, as a liveness probe would have it.
- SIGTERM or SIGINT stops every service it runs, then the supervisor itself. A supervisor
  that starts while services from an earlier one still run adopts them.

Every start, exit and kill is logged (`logs/supervisor.log`); `run/supervisor.json` holds each
service's PID, restarts, last exit and last start (the fault suite reads it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from alur.infra.procs import Proc, exit_status, wait_gone
from alur.settings import SERVICES, Settings

log = logging.getLogger("alur.supervisor")
ROOT = Path(__file__).resolve().parents[2]
BACKOFF_FIRST, BACKOFF_MAX, RESET_AFTER = 1.0, 8.0, 60.0
PROBE_EVERY, PROBE_TIMEOUT, PROBE_FAILURES = 5.0, 3.0, 3
STOP_GRACE = 20.0
TICK = 0.2


def want_file(settings: Settings, name: str) -> Path:
    return settings.state_dir / "run" / f"{name}.want"


def status_file(settings: Settings) -> Path:
    return settings.state_dir / "run" / "supervisor.json"


@dataclass
class Child:
    pid: int | None = None
    restarts: int = 0
    last_exit: str | None = None
    last_start: str | None = None
    started_at: float = field(default=0.0, repr=False)


class Supervisor:
    def __init__(self, settings: Settings, names: tuple[str, ...] = SERVICES) -> None:
        self.settings = settings
        self.names = names
        self.children = {name: Child() for name in names}
        self.stopping = asyncio.Event()

    def proc(self, name: str) -> Proc:
        return Proc(name, self.settings.state_dir / "run", self.settings.log_dir)

    def wanted(self, name: str) -> bool:
        return want_file(self.settings, name).exists() and not self.stopping.is_set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        log.info("supervising %s", ", ".join(self.names))
        async with httpx.AsyncClient(timeout=PROBE_TIMEOUT) as client:
            await asyncio.gather(*(self.keep(name, client) for name in self.names))
        self.write_status()
        log.info("supervisor stopped")

    async def keep(self, name: str, client: httpx.AsyncClient) -> None:
        """Keep one service running while it is wanted; stop it when it no longer is."""
        child, backoff = self.children[name], BACKOFF_FIRST
        adopted = self.proc(name).pid()
        if adopted is not None:
            log.info("%s: adopted running pid %d", name, adopted)
            child.pid, child.started_at = adopted, time.monotonic()
        while True:
            if not self.wanted(name):
                if child.pid is not None:
                    await self.stop(name, child)
                if self.stopping.is_set():
                    return
                await asyncio.sleep(TICK)
                continue
            if child.pid is None:
                self.start(name, child)
            reason = await self.watch(name, child, client)
            if reason is None:  # no longer wanted: the loop above stops it
                continue
            ran = time.monotonic() - child.started_at
            child.pid, child.last_exit = None, reason
            child.restarts += 1
            backoff = BACKOFF_FIRST if ran >= RESET_AFTER else backoff
            log.warning("%s %s after %.0fs; starting it again in %.0fs", name, reason, ran,
                        backoff)
            self.write_status()
            try:
                await asyncio.wait_for(self.stopping.wait(), backoff)
            except TimeoutError:
                pass
            backoff = min(2 * backoff, BACKOFF_MAX)

    def start(self, name: str, child: Child) -> None:
        child.pid = self.proc(name).start([sys.executable, "-m", "alur.cli", "run", name],
                                          cwd=ROOT)
        child.started_at = time.monotonic()
        child.last_start = datetime.now(UTC).isoformat(timespec="seconds")
        log.info("%s started, pid %d", name, child.pid)
        self.write_status()

    async def watch(self, name: str, child: Child, client: httpx.AsyncClient) -> str | None:
        """Until the child exits (why), or is no longer wanted (None)."""
        assert child.pid is not None
        pid, proc = child.pid, self.proc(name)
        url = f"http://127.0.0.1:{self.settings.metrics_port(name)}/healthz"
        answered, failures, next_probe = False, 0, time.monotonic() + PROBE_EVERY
        while self.wanted(name):
            status = exit_status(pid)
            if status is not None or proc.pid() != pid:
                return _exited(status)
            if time.monotonic() >= next_probe:
                next_probe = time.monotonic() + PROBE_EVERY
                healthy, detail = await _probe(client, url)
                answered = answered or healthy
                failures = 0 if healthy else failures + 1
                if answered and failures >= PROBE_FAILURES:
                    log.error("%s failed its liveness probe %d times (%s); killing pid %d",
                              name, failures, detail, pid)
                    proc.kill()
                    return f"was killed after {failures} failed liveness probes ({detail})"
            await asyncio.sleep(TICK)
        return None

    async def stop(self, name: str, child: Child) -> None:
        proc = self.proc(name)
        if proc.pid() == child.pid:
            log.info("%s: stopping pid %d", name, child.pid)
            await asyncio.to_thread(proc.stop, STOP_GRACE)
        elif child.pid is not None:
            await asyncio.to_thread(wait_gone, child.pid, 1.0)
        child.pid = None
        self.write_status()

    def write_status(self) -> None:
        status = {name: {k: v for k, v in asdict(c).items() if k != "started_at"}
                  for name, c in self.children.items()}
        path = status_file(self.settings)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(status, indent=2) + "\n")
        tmp.replace(path)


async def _probe(client: httpx.AsyncClient, url: str) -> tuple[bool, str]:
    try:
        response = await client.get(url)
    except httpx.HTTPError as exc:
        return False, f"no answer: {type(exc).__name__}"
    if response.status_code == 200:
        return True, "alive"
    try:
        detail = json.dumps(response.json().get("wedged", {}))[:300]
    except ValueError:
        detail = response.text[:300]
    return False, f"{response.status_code} {detail}"


def _exited(status: int | None) -> str:
    if status is None:
        return "exited"
    if status < 0:
        return f"was killed by {signal.Signals(-status).name}"
    return f"exited with status {status}"


def supervise(settings: Settings) -> None:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per probe
    asyncio.run(Supervisor(settings).run())
