"""Start and stop the emulator as a background process with a pid file and a log.

Used by ``make emulator-up``/``emulator-down`` and by the pytest session fixture,
so both start it the same way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STATE_DIR = REPO_ROOT / ".state" / "emulator"
DEFAULT_PORT = 4566
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Emulator:
    """A running emulator: where it listens and where its pid and log live."""

    port: int
    pid: int
    state_dir: Path

    @property
    def endpoint(self) -> str:
        """The URL to put in AWS_ENDPOINT_URL."""
        return f"http://{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        """The server's combined stdout/stderr."""
        return self.state_dir / "emulator.log"


def _pid_path(state_dir: Path) -> Path:
    return state_dir / "emulator.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_ready(port: int, timeout: float = 1.0) -> bool:
    """True when a moto server answers on the port."""
    try:
        with urllib.request.urlopen(f"http://{HOST}:{port}/moto-api/", timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def port_in_use(port: int) -> bool:
    """True when something listens on the loopback port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex((HOST, port)) == 0


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def running(state_dir: Path = DEFAULT_STATE_DIR, port: int = DEFAULT_PORT) -> Emulator | None:
    """The emulator recorded in state_dir, if its process is alive."""
    pid_file = _pid_path(state_dir)
    if not pid_file.exists():
        return None
    try:
        pid = int(pid_file.read_text().split()[0])
    except (ValueError, IndexError):
        return None
    if not _alive(pid):
        return None
    return Emulator(port=port, pid=pid, state_dir=state_dir)


def start(
    port: int = DEFAULT_PORT, state_dir: Path = DEFAULT_STATE_DIR, ready_timeout: float = 60.0
) -> Emulator:
    """Start the emulator in the background and wait until it answers.

    Idempotent: an emulator already recorded in state_dir and answering is returned as is.
    """
    existing = running(state_dir, port)
    if existing is not None and is_ready(port):
        return existing
    if port_in_use(port):
        raise RuntimeError(
            f"port {port} is taken by another process; stop it or choose another port"
        )
    state_dir.mkdir(parents=True, exist_ok=True)
    log = (state_dir / "emulator.log").open("ab")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "local.emulator", "serve", "--port", str(port)],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # outlives `make emulator-up`
    )
    _pid_path(state_dir).write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"emulator exited with {proc.returncode}; see {state_dir / 'emulator.log'}"
            )
        if is_ready(port):
            return Emulator(port=port, pid=proc.pid, state_dir=state_dir)
        time.sleep(0.2)
    stop(state_dir)
    raise TimeoutError(f"emulator did not answer on port {port} within {ready_timeout:.0f} s")


def stop(state_dir: Path = DEFAULT_STATE_DIR, timeout: float = 10.0) -> bool:
    """Stop the emulator recorded in state_dir; True if one was running."""
    pid_file = _pid_path(state_dir)
    emulator = running(state_dir)
    if emulator is None:
        pid_file.unlink(missing_ok=True)
        return False
    os.kill(emulator.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(emulator.pid):
        _reap(emulator.pid)
        time.sleep(0.1)
    if _alive(emulator.pid):
        os.kill(emulator.pid, signal.SIGKILL)
        _reap(emulator.pid)
    pid_file.unlink(missing_ok=True)
    return True


def _reap(pid: int) -> None:
    # A child of this process stays a zombie (and "alive" to kill -0) until waited for.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
