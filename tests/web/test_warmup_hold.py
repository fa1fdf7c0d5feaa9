"""Issue 11: an image chosen while the page's own warm-up is in flight waits for it.

Sent at once, the prediction would cold-start a second (billed) execution environment on
AWS instead of using the one being warmed. The in-process server holds the /warmup answer
back until the test lets it go, and records when each request arrived and was answered, so
the order is proved on the server side without racing any sleep.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.web.harness import LocalApi, PageLog
from tests.web.test_web_page import (
    ANSWER_TIMEOUT_MS,
    Shot,
    digit_file,
    expect_answer,
    is_call,
)

# web/app.js's WARMUP_HOLD_MS: how long after the warm-up was sent a held image still waits.
WARMUP_HOLD_MS = 35_000
WAITING = "Waiting for the model to warm up"


@pytest.fixture()
def held_warmup(local_api: LocalApi) -> Iterator[threading.Event]:
    """The server keeps its /warmup answers back until the event is set (or the test ends)."""
    gate = local_api.hold("POST", "/warmup")
    try:
        yield gate
    finally:
        local_api.release("POST", "/warmup")


def expect_waiting(page: Page) -> None:
    """The page says, in the status line, beside the bar and in the bar's words, that it waits."""
    expect(page.get_by_role("status")).to_contain_text(WAITING)
    expect(page.locator("#waiting")).to_be_visible()
    expect(page.locator("#waiting")).to_contain_text(WAITING)
    progress = page.get_by_role("progressbar", name="Reading progress")
    expect(progress).to_have_attribute("aria-valuetext", re.compile(f"^{WAITING}"))


def test_a_prediction_chosen_during_warm_up_is_sent_after_the_warm_up_answered(
    page: Page,
    local_api: LocalApi,
    held_warmup: threading.Event,
    page_log: PageLog,
    tmp_path: Path,
    shot: Shot,
) -> None:
    since = len(local_api.calls)
    page.goto(local_api.base_url + "/")
    local_api.wait_for("POST", "/warmup", since=since)  # in flight: the server holds it
    page.set_input_files("#file", digit_file(tmp_path, 3))
    expect_waiting(page)
    shot("waiting")
    assert not local_api.calls_to("POST", "/predict", since)
    with page.expect_response(is_call("/predict"), timeout=ANSWER_TIMEOUT_MS) as answered:
        held_warmup.set()
    assert answered.value.status == 200, answered.value.text()
    body = json.loads(answered.value.text())
    assert body["predictions"][0]["label"] == "3"
    expect_answer(page, body)
    expect(page.locator("#waiting")).to_be_hidden()
    expect(page.get_by_role("status")).to_contain_text(re.compile("ready", re.I))
    # One prediction, and it reached the server only once the warm-up had been answered.
    warmup = local_api.wait_for("POST", "/warmup", since=since, answered=True)
    predicts = local_api.calls_to("POST", "/predict", since)
    assert len(predicts) == 1, predicts
    assert warmup.answered is not None and predicts[0].arrived > warmup.answered
    assert len(local_api.calls_to("POST", "/warmup", since)) == 1
    assert not page_log.errors


def test_a_held_prediction_is_sent_anyway_when_the_warm_up_does_not_answer_in_time(
    page: Page,
    local_api: LocalApi,
    held_warmup: threading.Event,
    page_log: PageLog,
    tmp_path: Path,
    shot: Shot,
) -> None:
    since = len(local_api.calls)
    page.clock.install()
    page.goto(local_api.base_url + "/")
    local_api.wait_for("POST", "/warmup", since=since)  # in flight, and never answered here
    # From now on the page's timers move only when the test moves its clock. The installed
    # clock runs in real time until paused, so pausing "1 ms from now" could already be in
    # the past on a busy machine; 1 s ahead is always ahead and fires no page timer (the
    # hold is 35 s).
    page.clock.pause_at((page.evaluate("Date.now()") + 1_000) / 1000)
    page.set_input_files("#file", digit_file(tmp_path, 7))
    expect_waiting(page)
    # Well inside the budget, the image still waits: the page never sends a second request.
    page.clock.run_for(WARMUP_HOLD_MS - 2_000)
    expect_waiting(page)
    assert not local_api.calls_to("POST", "/predict", since)
    with page.expect_response(is_call("/predict"), timeout=ANSWER_TIMEOUT_MS) as answered:
        page.clock.run_for(3_000)
    assert answered.value.status == 200, answered.value.text()
    body = json.loads(answered.value.text())
    assert body["predictions"][0]["label"] == "7"
    expect_answer(page, body)
    expect(page.locator("#waiting")).to_be_hidden()
    # The page gave up on the warm-up at the same moment; the answer shows the model is ready.
    expect(page.get_by_role("status")).to_contain_text(f"Ready: release {body['release']}")
    expect(page.get_by_role("button", name="Try again")).to_be_hidden()
    shot("sent-anyway")
    predict = local_api.wait_for("POST", "/predict", since=since, answered=True)
    (warmup,) = local_api.calls_to("POST", "/warmup", since)
    assert warmup.answered is None and predict.arrived > warmup.arrived
    assert not page_log.errors
