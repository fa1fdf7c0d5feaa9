"""Run moto's server in this process with the project's gap fills registered first."""

from __future__ import annotations

from moto.server import main as moto_main

from local.emulator import gaps


def serve(host: str, port: int) -> None:
    """Register every gap fill, then serve until SIGTERM/SIGINT."""
    gaps.register_all()
    moto_main(["--host", host, "--port", str(port)])
