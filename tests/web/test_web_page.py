"""The digit reader page in a real headless Chromium, against the API at `page_base_url`.

Each test opens a new page (a new browser context), drives it like a person would, and
leaves a screenshot in test-output/web/.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Request, Response, Route, expect

from tests.models.conftest import hand_drawn
from tests.web.harness import LocalApi, PageLog, open_context, screenshot_path, watch

ANSWER_TIMEOUT_MS = 30_000
Shot = Callable[[str], Path]

# Strokes in the 280 x 280 canvas space, the way tests/models/conftest.py's hand_drawn() has them.
SEVEN = [[(75, 45), (205, 45), (120, 240)]]
ONE = [[(110, 80), (150, 45), (150, 240)]]


def is_call(path: str) -> Callable[[Request | Response], bool]:
    """A predicate for the page's POST to `path` on the API."""

    def match(item: Request | Response) -> bool:
        req = item if isinstance(item, Request) else item.request
        return req.method == "POST" and urlsplit(req.url).path == path

    return match


def open_ready(page: Page, url: str) -> dict[str, Any]:
    """Open the page, see its POST /warmup, wait for "ready"; return the warm-up answer."""
    with (
        page.expect_request(is_call("/warmup")) as sent,
        page.expect_response(is_call("/warmup"), timeout=ANSWER_TIMEOUT_MS) as answered,
    ):
        page.goto(url)
    assert sent.value.post_data in (None, "")
    assert answered.value.status == 200, answered.value.text()
    body: dict[str, Any] = answered.value.json()
    status = page.get_by_role("status")
    expect(status).to_contain_text(re.compile("ready", re.I), timeout=ANSWER_TIMEOUT_MS)
    expect(status).to_contain_text(f"release {body['release']}")
    return body


def predict_after(page: Page, action: Callable[[], None]) -> tuple[int, dict[str, Any]]:
    """Do `action` and return the status and JSON of the POST /predict it causes."""
    with page.expect_response(is_call("/predict"), timeout=ANSWER_TIMEOUT_MS) as answered:
        action()
    response = answered.value
    return response.status, json.loads(response.text())


def digit_file(folder: Path, digit: int) -> Path:
    path = folder / f"digit-{digit}.png"
    path.write_bytes(hand_drawn(digit))
    return path


def draw(page: Page, strokes: list[list[tuple[int, int]]]) -> None:
    """Draw strokes on the canvas with the mouse (coordinates in the canvas's 280 px space)."""
    box = page.locator("#pad").bounding_box()
    assert box is not None
    scale = box["width"] / 280

    def at(point: tuple[int, int]) -> tuple[float, float]:
        return box["x"] + point[0] * scale, box["y"] + point[1] * scale

    for stroke in strokes:
        page.mouse.move(*at(stroke[0]))
        page.mouse.down()
        for point in stroke[1:]:
            page.mouse.move(*at(point), steps=12)
        page.mouse.up()


def touch_draw(page: Page, strokes: list[list[tuple[int, int]]]) -> None:
    """Draw strokes with a finger: real touch events through the DevTools protocol."""
    box = page.locator("#pad").bounding_box()
    assert box is not None
    scale = box["width"] / 280
    cdp = page.context.new_cdp_session(page)
    for stroke in strokes:
        points: list[tuple[float, float]] = []
        for (x0, y0), (x1, y1) in itertools.pairwise(stroke):
            points += [(x0 + (x1 - x0) * i / 12, y0 + (y1 - y0) * i / 12) for i in range(12)]
        points.append(stroke[-1])
        xy = [{"x": box["x"] + x * scale, "y": box["y"] + y * scale} for x, y in points]
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [xy[0]]})
        for point in xy[1:]:
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [point]})
        for _ in range(5):  # the finger rests before it lifts: no fling to swallow the next tap
            page.wait_for_timeout(30)
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [xy[-1]]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    cdp.detach()


def expect_answer(page: Page, body: dict[str, Any]) -> None:
    """The page shows this /predict answer: top label, bars, release, cold start, timings."""
    top = body["predictions"][0]
    expect(page.locator("#result")).to_be_visible()
    expect(page.locator("#top-label")).to_have_text(top["label"])
    guesses = page.get_by_role("list", name="Top guesses with their scores").locator("li")
    expect(guesses).to_have_count(len(body["predictions"]))
    expect(guesses.first).to_contain_text(top["label"])
    expect(guesses.first).to_contain_text("%")
    expect(page.locator("#release")).to_have_text(body["release"])
    expect(page.locator("#model")).to_have_text(body["model"])
    expect(page.locator("#cold-start")).to_contain_text("yes" if body["cold_start"] else "no")
    expect(page.locator("#timings")).to_contain_text("total")
    expect(page.locator("#timings")).to_contain_text("inference")
    expect(page.get_by_role("alert")).to_be_hidden()
    progress = page.get_by_role("progressbar", name="Reading progress")
    expect(progress).to_have_attribute("aria-valuenow", "100")


@pytest.fixture()
def closed_port() -> Iterator[int]:
    """A port of 127.0.0.1 that refuses connections (bound, never listening)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


# ---------------------------------------------------------------- tests


def test_page_opens_warms_up_and_says_ready(
    page: Page, page_base_url: str, page_log: PageLog, shot: Shot
) -> None:
    warmup = open_ready(page, page_base_url)
    status = page.get_by_role("status")
    expect(status).to_contain_text("cold start" if warmup["cold_start"] else "already warm")
    expect(page.get_by_role("heading", name="Digit reader")).to_be_visible()
    # Every control has a name people and screen readers can find.
    expect(page.get_by_label("Choose an image")).to_be_attached()
    expect(page.get_by_role("button", name="Read drawing")).to_be_visible()
    expect(page.get_by_role("button", name="Clear")).to_be_visible()
    expect(page.get_by_role("spinbutton", name="Guesses to show")).to_have_value("5")
    expect(page.get_by_role("img", name="Drawing area for one digit")).to_be_visible()
    expect(page.get_by_role("progressbar", name="Reading progress")).to_be_attached()
    expect(page.locator("#endpoint")).to_have_text(page_base_url.rstrip("/"))
    shot("ready")
    assert not page_log.errors
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(page_base_url))
    foreign = [u for u in page_log.requests if not u.startswith((origin + "/", "data:"))]
    assert not foreign, f"the page loaded something from elsewhere: {foreign}"


@pytest.mark.parametrize("digit", [3, 7])
def test_uploaded_digit_is_read(
    page: Page, page_base_url: str, page_log: PageLog, tmp_path: Path, digit: int
) -> None:
    open_ready(page, page_base_url)
    image = digit_file(tmp_path, digit)
    status, body = predict_after(page, lambda: page.set_input_files("#file", image))
    assert status == 200, body
    assert body["predictions"][0]["label"] == str(digit)
    expect_answer(page, body)
    expect(page.get_by_role("img", name="The image that was read")).to_be_visible()
    assert not page_log.errors


def test_progress_bar_eases_out_then_jumps_to_100(
    page: Page, page_base_url: str, tmp_path: Path, shot: Shot
) -> None:
    page.add_init_script(
        """
        window.__progress = [];
        document.addEventListener("DOMContentLoaded", () => {
          const bar = document.getElementById("progress");
          new MutationObserver(() => window.__progress.push([
            performance.now(), Number(bar.getAttribute("aria-valuenow")), bar.dataset.state,
          ])).observe(bar, {attributes: true, attributeFilter: ["aria-valuenow"]});
        });
        """
    )
    open_ready(page, page_base_url)
    delay_s = 1.2

    def slow(route: Route) -> None:  # an answer that takes a while, whatever the backend
        answer = route.fetch()
        time.sleep(delay_s)
        route.fulfill(response=answer)

    page.route(re.compile(r"/predict(\?|$)"), slow)
    page.evaluate("window.__progress.length = 0")
    image = digit_file(tmp_path, 4)
    status, body = predict_after(page, lambda: page.set_input_files("#file", image))
    assert status == 200, body
    progress = page.get_by_role("progressbar", name="Reading progress")
    expect(progress).to_have_attribute("aria-valuenow", "100")
    expect(progress).to_have_attribute("data-state", "done")
    shot("answered")
    samples: list[tuple[float, int, str]] = [tuple(s) for s in page.evaluate("window.__progress")]
    start = max(i for i, s in enumerate(samples) if s[1] == 0)
    samples = samples[start:]
    values = [value for _, value, _ in samples]
    assert values == sorted(values), values
    assert values[-1] == 100 and samples[-1][2] == "done"
    busy = [(t, v) for t, v, state in samples if state == "busy"]
    assert len(busy) >= 10, samples
    assert max(v for _, v in busy) <= 95, busy
    # Ease-out: by half the wait, well over half of the progress shown before the answer.
    t0, t_end, v_end = busy[0][0], busy[-1][0], busy[-1][1]
    v_mid = max(v for t, v in busy if t <= t0 + (t_end - t0) / 2)
    assert v_end >= 50 and v_mid >= 0.6 * v_end, busy
    if not body["cold_start"]:  # the next request is expected to last as long as this one
        expected = float(progress.get_attribute("data-expected-ms") or 0)
        assert delay_s * 1000 <= expected <= delay_s * 1000 + 5000


def test_drawing_a_seven_with_the_mouse_is_read(
    page: Page, page_base_url: str, page_log: PageLog, shot: Shot
) -> None:
    open_ready(page, page_base_url)
    read = page.get_by_role("button", name="Read drawing")
    read.click()  # nothing drawn yet: said in words, nothing sent
    expect(page.get_by_role("alert")).to_contain_text("The drawing is empty")
    draw(page, SEVEN)
    shot("drawn")
    status, body = predict_after(page, read.click)
    assert status == 200, body
    expect_answer(page, body)
    assert body["predictions"][0]["label"] == "7"
    page.get_by_role("button", name="Clear").click()
    blank = page.evaluate(
        "() => { const c = document.getElementById('pad');"
        " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        " return d.every((v) => v === 255); }"
    )
    assert blank, "Clear left ink on the canvas"
    assert not page_log.errors


@pytest.mark.parametrize(
    ("name", "content", "status", "headline"),
    [
        ("notes.txt", b"a shopping list, not a picture\n", 415, "This kind of file cannot be read"),
        ("fake.png", b"not really a PNG\n", 422, "The image could not be read"),
    ],
    ids=["text-file-415", "fake-png-422"],
)
def test_a_file_that_is_not_an_image_is_explained_in_words(
    page: Page,
    page_base_url: str,
    page_log: PageLog,
    tmp_path: Path,
    name: str,
    content: bytes,
    status: int,
    headline: str,
) -> None:
    open_ready(page, page_base_url)
    path = tmp_path / name
    path.write_bytes(content)
    got, body = predict_after(page, lambda: page.set_input_files("#file", path))
    assert got == status, body
    message: str = body["error"]["message"]
    alert = page.get_by_role("alert")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text(headline)
    expect(alert).to_contain_text(message[1:])  # the page capitalises the first letter
    expect(page.locator("#result")).to_be_hidden()
    expect(page.get_by_role("heading", name="Digit reader")).to_be_visible()
    progress = page.get_by_role("progressbar", name="Reading progress")
    expect(progress).to_have_attribute("data-state", "failed")
    assert len(page.locator("body").inner_text().strip()) > 100  # never a blank page
    assert not page_log.errors


def test_an_unreachable_endpoint_is_explained(
    page: Page, page_base_url: str, page_log: PageLog, tmp_path: Path, closed_port: int
) -> None:
    api = f"http://127.0.0.1:{closed_port}"
    page.goto(f"{page_base_url}?api={api}")
    status = page.get_by_role("status")
    expect(status).to_contain_text("cannot be reached", timeout=ANSWER_TIMEOUT_MS)
    expect(page.get_by_role("button", name="Try again")).to_be_visible()
    expect(page.locator("#endpoint")).to_have_text(api)
    page.set_input_files("#file", digit_file(tmp_path, 2))
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("The endpoint cannot be reached", timeout=ANSWER_TIMEOUT_MS)
    expect(alert).to_contain_text(api)
    assert not page_log.errors


def test_config_js_sets_the_endpoint(
    page: Page, page_base_url: str, page_log: PageLog, closed_port: int
) -> None:
    """window.API_BASE from config.js wins over ?api= (and a missing config.js breaks nothing)."""
    api = f"http://127.0.0.1:{closed_port}"
    page.route(
        re.compile(r"/config\.js$"),
        lambda route: route.fulfill(
            content_type="text/javascript", body=f'window.API_BASE = "{api}/";'
        ),
    )
    page.goto(f"{page_base_url}?api={page_base_url}")
    expect(page.locator("#endpoint")).to_have_text(api)
    expect(page.get_by_role("status")).to_contain_text(
        "cannot be reached", timeout=ANSWER_TIMEOUT_MS
    )
    assert not page_log.errors


def test_dropped_and_pasted_images_are_read(
    page: Page, page_base_url: str, page_log: PageLog
) -> None:
    open_ready(page, page_base_url)
    for digit, how in ((4, "drop"), (2, "paste")):
        data = base64.b64encode(hand_drawn(digit)).decode()

        def give(data: str = data, how: str = how) -> None:
            page.evaluate(
                """([data, how]) => {
                  const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
                  const dt = new DataTransfer();
                  dt.items.add(new File([bytes], "digit.png", {type: "image/png"}));
                  if (how === "drop") {
                    const zone = document.getElementById("dropzone");
                    zone.dispatchEvent(new DragEvent("dragenter",
                      {bubbles: true, dataTransfer: dt}));
                    zone.dispatchEvent(new DragEvent("drop",
                      {bubbles: true, cancelable: true, dataTransfer: dt}));
                  } else {
                    document.body.dispatchEvent(new ClipboardEvent("paste",
                      {bubbles: true, cancelable: true, clipboardData: dt}));
                  }
                }""",
                [data, how],
            )

        status, body = predict_after(page, give)
        assert status == 200, body
        assert body["predictions"][0]["label"] == str(digit), how
        expect_answer(page, body)
        page.screenshot(path=str(screenshot_path(f"test_dropped_and_pasted_images_are_read-{how}")))
    assert not page_log.errors


def test_phone_width_and_touch_drawing(
    browser: Browser, page_base_url: str, request: pytest.FixtureRequest
) -> None:
    context = open_context(
        browser,
        viewport={"width": 375, "height": 740},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    log = PageLog()
    page = watch(context.new_page(), log)
    try:
        open_ready(page, page_base_url)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page is {overflow} px wider than a phone"
        box = page.locator("#pad").bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375
        page.locator("#pad").scroll_into_view_if_needed()
        touch_draw(page, ONE)
        read = page.get_by_role("button", name="Read drawing")
        status, body = predict_after(page, read.tap)
        assert status == 200, body
        expect_answer(page, body)
        assert body["predictions"][0]["label"] == "1"
        assert not log.errors
    finally:
        page.screenshot(path=str(screenshot_path(request.node.name)), full_page=True)
        context.close()


def test_page_and_api_on_different_origins(
    browser: Browser, local_api: LocalApi, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """As on AWS: the page from one origin (CloudFront), the API from another, with CORS."""
    page_origin = f"http://localhost:{local_api.port}"
    local_api.cors_origins.add(page_origin)
    context = open_context(browser)
    log = PageLog()
    page = watch(context.new_page(), log)
    try:
        open_ready(page, f"{page_origin}/?api={local_api.base_url}")
        status, body = predict_after(
            page, lambda: page.set_input_files("#file", digit_file(tmp_path, 5))
        )
        assert status == 200, body
        expect_answer(page, body)
        assert body["predictions"][0]["label"] == "5"
        assert ("OPTIONS", "/predict") in local_api.seen  # a real preflight, answered
        assert not log.errors
    finally:
        page.screenshot(path=str(screenshot_path(request.node.name)), full_page=True)
        context.close()
        local_api.cors_origins.discard(page_origin)
