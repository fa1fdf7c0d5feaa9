"""Browser tests of web/: headless Chromium (Debian's /usr/bin/chromium) through Playwright.

`page_base_url` is where the page is opened; the page finds the API at its own origin.
By default it is a small threaded HTTP server on 127.0.0.1 (free port) that serves web/
at / and answers POST /predict, POST /warmup and GET /health the way API Gateway does:
it builds a payload-format-2.0 event and calls the real inference handler in-process,
which serves a real digits release (the model is trained once per session by
`ci.build_model.build`, the release assembled like the pipeline does).

To run the same tests against another deployment (the local data plane, or AWS), override
`page_base_url` in a conftest.py or test module below this folder; the in-process server
is then never started.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from tests.web.harness import (
    CHROMIUM,
    CHROMIUM_ARGS,
    RELEASE_ID,
    SKIP_REASON,
    LocalApi,
    PageLog,
    open_context,
    screenshot_path,
    start_local_api,
    watch,
)

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip this folder's tests, with the reason, when there is no Chromium to drive."""
    if CHROMIUM.is_file():
        return
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.skip(reason=SKIP_REASON))


@pytest.fixture(scope="session")
def digits_release(
    tmp_path_factory: pytest.TempPathFactory, digits_model_dir: Path
) -> tuple[Path, str]:
    """(EFS root, release id): the session's digits model, assembled into a release."""
    import joblib

    from efs_layout import assemble_release
    from tests.lambda_src import releases

    model_dir = digits_model_dir
    root = tmp_path_factory.mktemp("web-efs") / "efs"
    src = releases.source_tree(
        root.parent / f"src-{RELEASE_ID}",
        joblib.load(model_dir / "model.joblib"),
        sentinels=(),
    )
    metadata = json.loads((model_dir / "metadata.json").read_text())
    fields = releases.fields(name="digits-resnet", metadata={"labels": metadata["labels"]})
    assemble_release(root, RELEASE_ID, src, fields)
    return root, RELEASE_ID


@pytest.fixture(scope="session")
def local_api(digits_release: tuple[Path, str]) -> Iterator[LocalApi]:
    """web/ and the real handler (one execution environment) on a free port of 127.0.0.1."""
    from lambda_src.inference import handler
    from lambda_src.inference.runtime import Config, Runtime

    root, release_id = digits_release
    saved_runtime, saved_path = handler.RUNTIME, list(sys.path)
    handler.RUNTIME = Runtime(Config(root, release_id))
    one_at_a_time = threading.Lock()  # an execution environment serves one request at a time

    def api(event: dict[str, Any]) -> dict[str, Any]:
        with one_at_a_time:
            return handler.handle(event, None)

    server, state = start_local_api(api)
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        handler.RUNTIME = saved_runtime
        sys.path[:] = saved_path


@pytest.fixture(scope="session")
def page_base_url(request: pytest.FixtureRequest) -> str:
    """Where the page is opened (ending in /); the page finds the API at the same origin.

    WEB_TEST_BASE_URL=http://127.0.0.1:PORT/ points the tests at a running deployment;
    otherwise the in-process server is started. Override this fixture for other variants.
    """
    external = os.environ.get("WEB_TEST_BASE_URL", "").strip()
    if external:
        return external.rstrip("/") + "/"
    local: LocalApi = request.getfixturevalue("local_api")
    return local.base_url + "/"


@pytest.fixture(scope="session")
def playwright_driver() -> Iterator[Playwright]:
    """Playwright's driver, once per session."""
    if not CHROMIUM.is_file():
        pytest.skip(SKIP_REASON)
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    """Headless Chromium from the system; Playwright gives it a new, empty user data dir."""
    with tempfile.TemporaryDirectory(prefix="web-tests-chromium-") as downloads:
        launched = playwright_driver.chromium.launch(
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            downloads_path=downloads,
            timeout=60_000,
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture()
def page_log() -> PageLog:
    """The log of this test's page."""
    return PageLog()


@pytest.fixture()
def page(browser: Browser, page_log: PageLog, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A new page in a new context; a screenshot of its last state is saved after the test."""
    context = open_context(browser)
    opened = watch(context.new_page(), page_log)
    try:
        yield opened
    finally:
        try:
            opened.screenshot(path=str(screenshot_path(request.node.name)), full_page=True)
        finally:
            context.close()


@pytest.fixture()
def shot(page: Page, request: pytest.FixtureRequest) -> Callable[[str], Path]:
    """Save a screenshot of `page` now, as test-output/web/<test name>-<suffix>.png."""

    def take(suffix: str) -> Path:
        path = screenshot_path(request.node.name, suffix)
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
