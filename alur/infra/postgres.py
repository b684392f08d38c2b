"""A project-local PostgreSQL cluster from Debian's packages: its own data dir and port.

Nothing on the host is touched: `initdb` into the state dir, start with `pg_ctl`, stop the
postmaster whose PID the data dir records. PostgreSQL refuses to run as root, so under root
the cluster runs as the `postgres` system user the Debian package creates.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

import asyncpg

from alur.infra.procs import Proc, StartError, wait_gone
from alur.settings import Settings


def bin_dir() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                        else 0)
    if candidates:
        return candidates[-1].parent
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise StartError("PostgreSQL server binaries not found: run `make setup` "
                     "(installs Debian's postgresql package) or apt-get install postgresql")


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise StartError("running as root needs the `postgres` system user "
                         "(apt-get install postgresql creates it)") from None
    return "postgres"


def home(settings: Settings) -> Path:
    """Where the cluster lives: the state dir, unless the postgres user cannot reach it."""
    local = (settings.state_dir / "pg").resolve()
    user = _run_as()
    if user is None or _reachable(user, local.parent):
        return local
    tag = hashlib.sha256(str(local).encode()).hexdigest()[:12]
    return Path("/var/tmp/alur-pg") / tag


def _reachable(user: str, path: Path) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(path)],
                          capture_output=True).returncode == 0


def _cmd(argv: list[str]) -> list[str]:
    user = _run_as()
    return ["runuser", "-u", user, "--", *argv] if user else argv


def proc(settings: Settings) -> Proc:
    # The log sits beside the cluster: the postgres user writes it, so it must reach it.
    return Proc("postgres", settings.state_dir / "run", home(settings))


def _postmaster_pid(data: Path) -> int | None:
    try:
        return int((data / "postmaster.pid").read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError, PermissionError):
        return None


def start(settings: Settings) -> int:
    p = proc(settings)
    if (pid := p.pid()) is not None:
        return pid
    binaries = bin_dir()
    base = home(settings)
    data, sockets = base / "data", base / "run"
    user = _run_as()
    base.mkdir(parents=True, exist_ok=True)
    sockets.mkdir(parents=True, exist_ok=True)
    if user:
        shutil.chown(base, user)
        shutil.chown(sockets, user)
    if not (data / "PG_VERSION").exists():
        pwfile = base / "pwfile"
        pwfile.write_text(settings.pg_password.get_secret_value() + "\n")
        if user:
            shutil.chown(pwfile, user)
        result = subprocess.run(_cmd([
            str(binaries / "initdb"), "-D", str(data), "-U", settings.pg_user,
            f"--pwfile={pwfile}", "--auth-host=scram-sha-256", "--auth-local=peer",
            "-E", "UTF8", "--no-locale"]), capture_output=True, text=True)
        pwfile.unlink()
        if result.returncode != 0:
            raise StartError(f"initdb failed:\n{result.stdout}{result.stderr}")
        with open(data / "postgresql.conf", "a") as conf:
            conf.write(
                f"\n# Alur local cluster\nlisten_addresses = '127.0.0.1'\n"
                f"port = {settings.pg_port}\nunix_socket_directories = '{sockets}'\n"
                "max_connections = 200\nshared_buffers = 256MB\n"
                "log_min_messages = warning\n")
            if (binaries.parent / "lib" / "pg_stat_statements.so").exists():
                # What bench/e2e.py counts statements with; loaded, it costs next to nothing.
                conf.write("shared_preload_libraries = 'pg_stat_statements'\n")
    log = p.log_file.resolve()
    log.touch()
    if user:
        shutil.chown(log, user)
    result = subprocess.run(_cmd([str(binaries / "pg_ctl"), "-D", str(data), "-l", str(log),
                                  "-w", "-t", "60", "start"]), capture_output=True, text=True)
    pid = _postmaster_pid(data)
    if result.returncode != 0 or pid is None:
        raise StartError(f"PostgreSQL did not start ({result.stderr.strip()}); see {log}")
    p.run_dir.mkdir(parents=True, exist_ok=True)
    p.pid_file.write_text(f"{pid}\n{data}\n")
    asyncio.run(_ensure_database(settings))
    return pid


def stop(settings: Settings) -> bool:
    p = proc(settings)
    pid = p.pid()
    if pid is None:
        p.pid_file.unlink(missing_ok=True)
        return False
    # SIGINT is PostgreSQL's "fast shutdown": roll back sessions, checkpoint, exit.
    os.kill(pid, 2)
    if not wait_gone(pid, 30):
        os.kill(pid, 9)
        wait_gone(pid, 5)
    p.pid_file.unlink(missing_ok=True)
    return True


async def _ensure_database(settings: Settings, timeout: float = 30.0) -> None:
    dsn = settings.pg_dsn.rsplit("/", 1)[0] + "/postgres"
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = await asyncpg.connect(dsn)
            break
        except (OSError, asyncpg.PostgresError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)
    try:
        await conn.fetchval("SELECT 1")
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1",
                                   settings.pg_database):
            await conn.execute(f'CREATE DATABASE "{settings.pg_database}"')
    finally:
        await conn.close()
