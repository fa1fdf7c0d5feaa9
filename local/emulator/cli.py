"""``python -m local.emulator``: serve in the foreground, or manage a background server."""

from __future__ import annotations

import argparse
from pathlib import Path

from local.emulator import process


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m local.emulator", description=__doc__)
    parser.add_argument("command", choices=["serve", "up", "down", "status"])
    parser.add_argument("--port", type=int, default=process.DEFAULT_PORT)
    parser.add_argument("--state-dir", type=Path, default=process.DEFAULT_STATE_DIR)
    args = parser.parse_args(argv)

    if args.command == "serve":
        from local.emulator.server import serve

        serve(process.HOST, args.port)
        return 0
    if args.command == "up":
        emulator = process.start(args.port, args.state_dir)
        print(
            f"emulator ready at {emulator.endpoint} (pid {emulator.pid}, log {emulator.log_path})"
        )
        return 0
    if args.command == "down":
        stopped = process.stop(args.state_dir)
        print("emulator stopped" if stopped else "emulator was not running")
        return 0
    found = process.running(args.state_dir, args.port)
    if found is not None and process.is_ready(args.port):
        print(f"emulator running at {found.endpoint} (pid {found.pid})")
        return 0
    print("emulator not running")
    return 1
