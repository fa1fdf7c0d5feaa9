"""``python -m local.dataplane {serve,up,down,status}``: the local endpoint on 127.0.0.1:8080."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("ENDPOINT_STATE_DIR") or REPO_ROOT / ".state" / "endpoint")


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=120) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (urllib.error.URLError, OSError):
        return False


def _pid() -> int | None:
    try:
        pid = int((STATE / "endpoint.pid").read_text())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    return pid


def serve(port: int, api_id: str | None, idle_timeout: float) -> int:
    """Serve in the foreground until SIGTERM."""
    from ci import stack
    from local.dataplane import limits
    from local.dataplane.server import DataPlane, make_server, read_api

    if api_id is None:
        try:
            api_id = str(stack.outputs()["api_id"])
        except stack.StackNotDeployed as exc:
            print(
                f"endpoint: {exc} (start it with `make up`, which sets the emulator's environment)",
                file=sys.stderr,
            )
            return 1
    plane = DataPlane(read_api(api_id), STATE / "logs", idle_timeout_s=idle_timeout)
    server = make_server(plane, port=port)
    signal.signal(signal.SIGTERM, lambda *_: server.shutdown())
    print(f"serving {api_id} on http://127.0.0.1:{port}", flush=True)
    print(limits.describe(), flush=True)
    import threading

    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.5)
    except KeyboardInterrupt:
        server.shutdown()
    plane.close()
    return 0


def up(port: int, idle_timeout: float) -> int:
    """Start in the background, wait until /health answers, print the URL."""
    url = f"http://127.0.0.1:{port}"
    if _pid() is not None and _ready(url):
        print(f"endpoint already running at {url}")
        return 0
    STATE.mkdir(parents=True, exist_ok=True)
    log = (STATE / "endpoint.log").open("ab")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "local.dataplane",
            "serve",
            "--port",
            str(port),
            "--idle-timeout",
            str(idle_timeout),
        ],
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    (STATE / "endpoint.pid").write_text(str(proc.pid))
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            print(f"endpoint exited; see {STATE / 'endpoint.log'}", file=sys.stderr)
            return 1
        if _ready(url):
            print(f"endpoint ready at {url}")
            return 0
        time.sleep(0.5)
    print("endpoint did not answer /health within 180 s", file=sys.stderr)
    return 1


def down() -> int:
    """Stop the background endpoint (and so its execution environments)."""
    pid = _pid()
    if pid is None:
        print("endpoint was not running")
        (STATE / "endpoint.pid").unlink(missing_ok=True)
        return 0
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
    (STATE / "endpoint.pid").unlink(missing_ok=True)
    print("endpoint stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m local.dataplane")
    parser.add_argument("command", choices=["serve", "up", "down", "status"])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--api-id")
    parser.add_argument("--idle-timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(args.port, args.api_id, args.idle_timeout)
    if args.command == "up":
        return up(args.port, args.idle_timeout)
    if args.command == "down":
        return down()
    running = _pid() is not None
    print("endpoint running" if running else "endpoint not running")
    return 0 if running else 1


if __name__ == "__main__":
    raise SystemExit(main())
