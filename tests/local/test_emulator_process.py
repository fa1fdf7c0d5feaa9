"""The emulator's process management: readiness wait, pid file, log, idempotent start, stop."""

from __future__ import annotations

import os
from pathlib import Path

import boto3
import pytest

from local.emulator import process


def test_start_writes_pid_and_log_answers_and_stops(tmp_path: Path) -> None:
    port = process.free_port()
    emulator = process.start(port=port, state_dir=tmp_path)
    try:
        assert (tmp_path / "emulator.pid").read_text().strip() == str(emulator.pid)
        assert process.is_ready(port)
        sts = boto3.client(
            "sts",
            endpoint_url=emulator.endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        assert sts.get_caller_identity()["Account"] == "123456789012"
        # A second start finds the running one instead of starting another.
        again = process.start(port=port, state_dir=tmp_path)
        assert again.pid == emulator.pid
    finally:
        assert process.stop(tmp_path) is True
    assert not (tmp_path / "emulator.pid").exists()
    assert not process.is_ready(port)
    assert emulator.log_path.exists()
    # Stopping what is not running is not an error.
    assert process.stop(tmp_path) is False


def test_start_refuses_a_port_held_by_someone_else(tmp_path: Path) -> None:
    import socket

    with socket.socket() as holder:
        holder.bind((process.HOST, 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(RuntimeError, match="taken"):
            process.start(port=port, state_dir=tmp_path)


def test_stale_pid_file_is_not_mistaken_for_a_running_emulator(tmp_path: Path) -> None:
    # A pid that cannot be alive: beyond the kernel's pid range.
    (tmp_path / "emulator.pid").write_text("4194305\n")
    assert process.running(tmp_path) is None
    assert process.stop(tmp_path) is False
    assert not (tmp_path / "emulator.pid").exists()


def test_cli_status_reports_not_running(tmp_path: Path) -> None:
    from local.emulator.cli import main

    assert main(["status", "--state-dir", str(tmp_path), "--port", str(process.free_port())]) == 1
    assert os.path.isdir(tmp_path)
