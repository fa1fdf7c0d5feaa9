"""Helpers of the fault tests: HTTP calls, a second endpoint on demand, releases with new bytes.

They reuse the session's stack (tests/conftest.py): the emulator, the applied "pipe" stack
and its promoted release. Nothing here moves `live`; tests that damage the live release
on "EFS" put it back before they return.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from ci import package_release
from tests.conftest import Deployed
from tests.models.conftest import hand_drawn

Answer = tuple[int, dict[str, Any], dict[str, str]]


def call(
    url: str, method: str = "GET", body: bytes | None = None, ctype: str | None = None
) -> Answer:
    """One HTTP request; status, JSON body and headers, whatever the status."""
    headers = {"content-type": ctype} if ctype else {}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read() or b"{}"), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}"), dict(exc.headers)


def predict(url: str, digit: int = 3) -> Answer:
    """POST a hand-drawn digit to /predict."""
    return call(url + "/predict", "POST", hand_drawn(digit), "image/png")


def stats(url: str) -> dict[str, Any]:
    """The inference pool's figures from /_local/stats."""
    status, body, _ = call(url + "/_local/stats")
    assert status == 200, body
    return dict(next(iter(body.values())))


def efs_root(deployed: Deployed) -> Path:
    """The folder standing for the stack's EFS access point root (both functions share it)."""
    fs_id = deployed.outputs["efs_file_system_id"]
    (releases,) = (deployed.build_dir / "efs" / fs_id).glob("*/releases")
    return releases.parent


@pytest.fixture()
def stack_efs(deployed: Deployed, promoted: str) -> Path:
    """The stack's EFS folder, holding the live release."""
    root = efs_root(deployed)
    assert (root / "releases").is_dir()
    return root


def unique_release_id() -> str:
    """A release id in the pipeline's format that no other test can collide with."""
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(4)}"


def package_with_new_bytes(
    deployed: Deployed, out: Path, new_bytes: int
) -> package_release.PackagedRelease:
    """Package the stack's lib/ and model plus one file of ``new_bytes`` random bytes.

    Random bytes neither compress nor already sit in the EFS store, so the syncer really
    writes them: the delta bundle carries that file (and STAMP.json) only.
    """
    lib = out / "lib"
    shutil.copytree(deployed.build_dir / "lib", lib, copy_function=_link_or_copy)
    shutil.copy(deployed.build_dir / "lib.json", out / "lib.json")
    (lib / "fault_payload.bin").write_bytes(os.urandom(new_bytes))
    return package_release.package(
        lib, deployed.build_dir / "model", out / "release", release_id=unique_release_id()
    )


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def entries(directory: Path) -> set[str]:
    """Names in a directory (empty when it does not exist)."""
    return {p.name for p in directory.iterdir()} if directory.is_dir() else set()
