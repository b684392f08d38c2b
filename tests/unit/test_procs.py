"""Background processes are tracked and stopped by their PID only."""

import sys
import time
from pathlib import Path

from alur.infra.procs import Proc


def proc(tmp_path: Path) -> Proc:
    return Proc("sleeper", tmp_path / "run", tmp_path / "logs")


def wait_for_output(p: Proc, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in p.tail():
        assert time.monotonic() < deadline, f"{p.name} never printed {text!r}"
        time.sleep(0.02)


def test_start_records_the_pid_and_stop_ends_exactly_that_process(tmp_path: Path) -> None:
    p = proc(tmp_path)
    pid = p.start([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"])
    assert p.pid() == pid and p.pid_file.read_text().strip() == str(pid)
    wait_for_output(p, "up")
    assert p.stop(timeout=5) is True
    assert p.pid() is None and not p.pid_file.exists()


def test_a_process_that_ignores_sigterm_is_killed_after_the_timeout(tmp_path: Path) -> None:
    p = proc(tmp_path)
    p.start([sys.executable, "-c",
             "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
             "print('ready', flush=True); time.sleep(60)"])
    wait_for_output(p, "ready")
    assert p.stop(timeout=0.5) is True and p.pid() is None


def test_a_stale_pid_file_is_not_a_running_process(tmp_path: Path) -> None:
    p = proc(tmp_path)
    pid = p.start([sys.executable, "-c", "pass"])
    p.stop(timeout=5)
    p.pid_file.parent.mkdir(parents=True, exist_ok=True)
    p.pid_file.write_text(f"{pid}\n")
    assert p.pid() is None
    assert p.stop() is False and not p.pid_file.exists()
