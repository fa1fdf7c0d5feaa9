"""The inference handler end to end: a real digits release on a folder standing for EFS.

Good release: the right label through an API Gateway 2.0 event. Corrupted releases: each
verdict answers 503 with its code, and nothing from that release's lib/ is imported (run
in a fresh interpreter, with sentinel modules in lib/ that record any import).
"""

from __future__ import annotations

import base64
import io
import json
import os
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from ci.build_model import build
from efs_layout import Interpreter, assemble_release
from efs_layout.layout import release_path
from lambda_src.inference import handler
from lambda_src.inference.runtime import Config, Runtime
from tests.lambda_src import releases
from tests.lambda_src.test_inference_http import event, multipart
from tests.models.conftest import black_on_white, hand_drawn

REPO_ROOT = Path(__file__).resolve().parents[2]
RID = "20261125T120000Z-abcdef1"


@pytest.fixture(scope="module")
def digits_dir(digits_model_dir: Path) -> Path:
    return digits_model_dir


def make_release(
    root: Path, release_id: str, model_dir: Path, *, sentinels: tuple[str, ...] = ()
) -> Path:
    import joblib

    predictor = joblib.load(model_dir / "model.joblib")
    src = releases.source_tree(
        root.parent / f"src-{release_id}",
        predictor,
        sentinels=("sentinel_lib_module", *sentinels),
    )
    metadata = json.loads((model_dir / "metadata.json").read_text())
    fields = releases.fields(name="digits-resnet", metadata={"labels": metadata["labels"]})
    assemble_release(root, release_id, src, fields)
    return release_path(root, release_id)


@pytest.fixture()
def served(tmp_path: Path, digits_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    root = tmp_path / "efs"
    make_release(root, RID, digits_dir)
    monkeypatch.setenv("LIB_IMPORT_MARKER", str(tmp_path / "marker"))
    monkeypatch.setattr(handler, "RUNTIME", Runtime(Config(root, RID)))
    saved = list(sys.path)
    yield root
    sys.path[:] = saved


def call(e: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = handler.handle(e, None)
    return response["statusCode"], json.loads(response["body"])


def test_round_trip_reads_the_digit(served: Path) -> None:
    status, health = call(event(None, method="GET", path="/health"))
    assert status == 200 and health["loaded"] is False and health["cold_start"] is True
    for digit in (3, 7):
        status, body = call(event(hand_drawn(digit), content_type="image/png"))
        assert status == 200, body
        assert body["predictions"][0]["label"] == str(digit)
        assert len(body["predictions"]) == 5
        assert abs(sum(p["score"] for p in body["predictions"])) <= 1.0 + 1e-6
        assert body["release"] == RID and body["model"] == "digits-resnet"
        # The call that loaded the model says where its cold start went; later ones do not.
        cold_steps = {"stamp_check", "imports", "model_load"} if body["cold_start"] else set()
        assert body["cold_start"] is (digit == 3)
        assert set(body["timing_ms"]) == {"init", "decode", "inference", "total"} | cold_steps
    status, health = call(event(None, method="GET", path="/health"))
    assert health["loaded"] is True and health["stamp"]["model"]["name"] == "digits-resnet"


def test_first_call_is_cold_and_later_calls_warm(served: Path) -> None:
    status, first = call(event("", method="POST", path="/warmup", content_type=None))
    assert status == 200 and first["cold_start"] is True and first["release"] == RID
    assert first["timing_ms"]["init"] > 0
    status, second = call(event("", method="POST", path="/warmup", content_type=None))
    assert status == 200 and second["cold_start"] is False


def test_cold_predict_total_is_the_handlers_wall_time_with_the_load_counted_once(
    served: Path,
) -> None:
    """Issue 11: a cold reply said "total 8.15 s, model load 3.98 s" for a 4.38 s round trip."""
    # Figures are rounded to 0.1 ms, so a total may read up to 0.05 ms over the true time.
    rounding = 0.05
    for expect_cold in (True, False):
        started = time.perf_counter()
        response = handler.handle(event(hand_drawn(3), content_type="image/png"), None)
        round_trip_ms = (time.perf_counter() - started) * 1000
        assert response["statusCode"] == 200, response["body"]
        body = json.loads(response["body"])
        timing = body["timing_ms"]
        assert body["cold_start"] is expect_cold
        assert timing["total"] <= round_trip_ms + rounding, (timing, round_trip_ms)
        assert timing["total"] >= timing["init"] + timing["decode"] + timing["inference"] - (
            3 * rounding
        ), timing
        if expect_cold:
            steps = timing["stamp_check"] + timing["imports"] + timing["model_load"]
            assert 0 < steps <= timing["init"] + 3 * rounding, timing
        else:
            assert timing["init"] == 0 and "model_load" not in timing, timing


def test_multipart_and_json_bodies_and_top_k(served: Path) -> None:
    png = black_on_white(4)
    body = multipart({"image": ("image/png", png)})
    status, result = call(
        event(body, content_type="multipart/form-data; boundary=XyZ", query={"top_k": "2"})
    )
    assert status == 200 and len(result["predictions"]) == 2
    data_url = "data:image/png;base64," + base64.b64encode(png).decode()
    status, result = call(
        event(json.dumps({"image_base64": data_url}), content_type="application/json", b64=False)
    )
    assert status == 200 and result["predictions"][0]["label"] == "4"


def _bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header declaring huge dimensions, with one tiny compressed row."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0"))
        + chunk(b"IEND", b"")
    )


def _encoded(fmt: str, size: tuple[int, int] = (64, 64)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, "white").save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("make_event", "status", "code"),
    [
        (lambda: event(b"x", query={"top_k": "99"}), 400, "bad_top_k"),
        (lambda: event("{oops", content_type="application/json", b64=False), 400, "bad_json"),
        (lambda: event(None), 400, "empty_body"),
        (lambda: event(b"\0" * (5 * 1024 * 1024)), 413, "payload_too_large"),
        (
            lambda: event(b"<html>hi</html>", content_type="text/html"),
            415,
            "unsupported_media_type",
        ),
        (lambda: event(_encoded("ICO", (32, 32))), 415, "unsupported_image_format"),
        (lambda: event(b"<html>not an image</html>"), 422, "undecodable_image"),
        (lambda: event(_bomb_png(40_000, 40_000)), 422, "image_too_large"),
        (lambda: event(_encoded("PNG")[:60]), 422, "undecodable_image"),
        (
            lambda: event(_encoded("JPEG", (640, 480))[:300], content_type="image/jpeg"),
            422,
            "undecodable_image",
        ),
        (lambda: event(None, method="GET", path="/nowhere"), 404, "not_found"),
    ],
)
def test_bad_inputs_get_their_status_and_the_environment_survives(
    served: Path, make_event: Any, status: int, code: str
) -> None:
    got, body = call(make_event())
    assert (got, body["error"]["code"]) == (status, code), body
    assert body["error"]["message"]
    ok, result = call(event(hand_drawn(1), content_type="image/png"))
    assert ok == 200 and result["predictions"][0]["label"] == "1"


# --- corrupted releases, in a fresh interpreter ------------------------------------------

PROBE = """
import json, os, sys
from lambda_src.inference import handler
responses = [handler.handle(e, None) for e in json.loads(sys.argv[1])]
lib = os.path.join(os.environ["EFS_MOUNT_PATH"], "releases", os.environ["RELEASE_ID"], "lib")
from_lib = sorted(
    name for name, module in list(sys.modules.items())
    if (getattr(module, "__file__", None) or "").startswith(lib)
)
print(json.dumps({"responses": responses, "from_lib": from_lib, "lib_on_path": lib in sys.path}))
"""


def probe(
    root: Path, release_id: str, marker: Path, events: list[dict[str, Any]]
) -> dict[str, Any]:
    env = dict(os.environ)
    env.update(
        {
            "EFS_MOUNT_PATH": str(root),
            "RELEASE_ID": release_id,
            "LIB_IMPORT_MARKER": str(marker),
            "PYTHONPATH": str(REPO_ROOT),
        }
    )
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(events)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _edit_stamp(release: Path, change: Any) -> None:
    stamp_file = release / "STAMP.json"
    releases.make_writable(stamp_file)
    doc = json.loads(stamp_file.read_text())
    change(doc)
    stamp_file.write_text(json.dumps(doc))


def _other_machine() -> str:
    return "aarch64" if Interpreter.current().machine == "x86_64" else "x86_64"


def _flip_model_byte(release: Path) -> None:
    model = release / "model" / "model.joblib"
    releases.make_writable(model)
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    (release / ".verified").unlink()


def _partial(release: Path) -> None:
    import shutil

    stamp = release / "STAMP.json"
    releases.make_writable(stamp)
    os.chmod(release, 0o755)
    stamp.unlink()
    shutil.rmtree(release / "model", ignore_errors=True)


CORRUPTIONS: dict[str, tuple[Any, str]] = {
    "abi_mismatch": (
        lambda r: _edit_stamp(r, lambda d: d["python"].update(abi_tag="cp27")),
        "release_abi_mismatch",
    ),
    "platform_mismatch": (
        lambda r: _edit_stamp(r, lambda d: d["platform"].update(machine=_other_machine())),
        "release_platform_mismatch",
    ),
    "schema_unknown": (
        lambda r: _edit_stamp(r, lambda d: d.update(schema_version=99)),
        "release_schema_unknown",
    ),
    "manifest_mismatch": (_flip_model_byte, "release_manifest_mismatch"),
    "missing_lib_file": (lambda r: (r / "lib" / "README.txt").unlink(), "release_incomplete"),
    "partial_directory": (_partial, "release_incomplete"),
    "missing": (lambda r: None, "release_missing"),
}


@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
def test_corrupted_release_answers_503_and_imports_nothing_from_it(
    tmp_path: Path, digits_dir: Path, corruption: str
) -> None:
    root = tmp_path / "efs"
    release = make_release(root, RID, digits_dir, sentinels=("joblib", "torch", "PIL", "numpy"))
    for directory in [release, *release.rglob("*")]:
        if directory.is_dir():
            os.chmod(directory, 0o755)
    corrupt, code = CORRUPTIONS[corruption]
    corrupt(release)
    release_id = "20990101T000000Z-0000000" if corruption == "missing" else RID
    marker = tmp_path / "marker"
    result = probe(
        root,
        release_id,
        marker,
        [
            event(hand_drawn(2), content_type="image/png"),
            event("", method="POST", path="/warmup", content_type=None),
            event(None, method="GET", path="/health"),
        ],
    )
    predict, warmup, health = result["responses"]
    for response in (predict, warmup):
        assert response["statusCode"] == 503
        assert json.loads(response["body"])["error"]["code"] == code
    assert health["statusCode"] == 200 and json.loads(health["body"])["loaded"] is False
    assert result["from_lib"] == [] and result["lib_on_path"] is False
    assert not marker.exists(), f"{marker.read_text()} was imported from a refused release"


def test_the_same_probe_sees_imports_from_a_good_release(tmp_path: Path, digits_dir: Path) -> None:
    """The proof above can fail: with a good release, the sentinel module is importable."""
    root = tmp_path / "efs"
    make_release(root, RID, digits_dir)
    marker = tmp_path / "marker"
    result = probe(root, RID, marker, [event(hand_drawn(2), content_type="image/png")])
    assert result["responses"][0]["statusCode"] == 200
    assert result["lib_on_path"] is True
    probe_import = probe(root, RID, marker, [event(b"x", query={"top_k": "99"})])
    assert probe_import["lib_on_path"] is False  # a 4xx before loading touches nothing
    env = dict(
        os.environ, PYTHONPATH=str(root / "releases" / RID / "lib"), LIB_IMPORT_MARKER=str(marker)
    )
    subprocess.run([sys.executable, "-c", "import sentinel_lib_module"], env=env, check=True)
    assert marker.read_text() == "sentinel_lib_module"


def test_a_bring_your_own_scikit_learn_model_is_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = tmp_path / "sklearn-model"
    build("sklearn-digits", model_dir)
    root = tmp_path / "efs"
    make_release(root, RID, model_dir)
    monkeypatch.setattr(handler, "RUNTIME", Runtime(Config(root, RID)))
    saved = list(sys.path)
    try:
        status, body = call(event(hand_drawn(7), content_type="image/png", query={"top_k": "3"}))
    finally:
        sys.path[:] = saved
    assert status == 200, body
    assert len(body["predictions"]) == 3
    assert body["predictions"][0]["label"] == "7"
