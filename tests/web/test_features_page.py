"""The page for a model that takes rows of features, against a fake API: no model needed.

The harness's server serves web/ (its own API routes are never reached: a fixture checks
that); Playwright's `page.route` answers POST /warmup, POST /predict and GET /health in the
browser the way the inference handler does, and records every request the page sends.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, FilePayload, Locator, Page, Route, expect

from tests.web.harness import (
    API_ROUTES,
    RELEASE_ID,
    LocalApi,
    PageLog,
    open_context,
    screenshot_path,
    start_local_api,
    watch,
)

Shot = Callable[[str], Any]
Json = dict[str, Any]

NAMES = [
    "alcohol",
    "malic_acid",
    "ash",
    "alcalinity_of_ash",
    "magnesium",
    "total_phenols",
    "flavanoids",
    "nonflavanoid_phenols",
    "proanthocyanins",
    "color_intensity",
    "hue",
    "od280/od315_of_diluted_wines",
    "proline",
]
EXAMPLE: list[list[float]] = [
    [14.23, 1.71, 2.43, 15.6, 127, 2.8, 3.06, 0.28, 2.29, 5.64, 1.04, 3.92, 1065],
    [12.37, 0.94, 1.36, 10.6, 88, 1.98, 0.57, 0.28, 0.42, 1.95, 1.05, 1.82, 520],
    [12.86, 1.35, 2.32, 18.0, 122, 1.51, 1.25, 0.21, 0.94, 4.1, 0.76, 1.29, 630],
]
FEATURES_INPUT: Json = {
    "kind": "features",
    "features": len(NAMES),
    "names": NAMES,
    "max_rows": 1000,
    "example": EXAMPLE,
}
MODEL = "wine-classifier"
LABELS = ["class_0", "class_1", "class_2"]


@dataclass
class Sent:
    """One request the page sent to the (fake) API."""

    method: str
    path: str
    content_type: str
    body: str


@dataclass
class FakeApi:
    """Answers the API's routes in the browser, for a model with `input` (None: left out).

    `answer` turns the rows of a valid /predict request into its "predictions"; with
    `hold_warmup`, /warmup requests are kept in `held` until the test fulfils them.
    """

    input: Json | None
    answer: Callable[[list[list[float]]], list[Any]]
    hold_warmup: bool = False
    sent: list[Sent] = field(default_factory=list)
    held: list[Route] = field(default_factory=list)

    def warmup_body(self) -> Json:
        body: Json = {
            "release": RELEASE_ID,
            "model": MODEL,
            "cold_start": True,
            "timing_ms": {"init": 812.4, "total": 815.0},
        }
        if self.input is not None:
            body["input"] = self.input
        return body

    def handle(self, route: Route) -> None:
        request = route.request
        path = urlsplit(request.url).path
        self.sent.append(
            Sent(
                request.method,
                path,
                request.headers.get("content-type", ""),
                request.post_data or "",
            )
        )
        if (request.method, path) == ("POST", "/warmup"):
            if self.hold_warmup:
                self.held.append(route)
            else:
                fulfil(route, 200, self.warmup_body())
        elif (request.method, path) == ("POST", "/predict"):
            status, body = self.predict(request.headers.get("content-type", ""), request.post_data)
            fulfil(route, status, body)
        elif (request.method, path) == ("GET", "/health"):
            fulfil(route, 200, {"status": "ok", "release": RELEASE_ID, "model": MODEL})
        else:
            fulfil(route, 404, {"message": "Not Found"})

    def predict(self, content_type: str, data: str | None) -> tuple[int, Json]:
        """What the handler answers to a features request (the checks the page relies on)."""
        if self.input is None or self.input.get("kind") != "features":
            return 415, error("unsupported_media_type", "this model takes images")
        if content_type.split(";")[0].strip() != "application/json":
            return 415, error("unsupported_media_type", "send application/json")
        try:
            doc = json.loads(data or "")
        except ValueError:
            return 400, error("bad_json", "the body is not valid JSON")
        instances = doc.get("instances") if isinstance(doc, dict) else None
        if not isinstance(instances, list) or not instances:
            return 400, error("missing_field", 'JSON features need {"instances": [[...]]}')
        width = int(self.input["features"])
        for i, row in enumerate(instances):
            if not isinstance(row, list) or len(row) != width:
                size = len(row) if isinstance(row, list) else 0
                return 422, error(
                    "ragged_instances", f"instances[{i}] has length {size}; expected {width}"
                )
        return 200, {
            "predictions": self.answer(instances),
            "release": RELEASE_ID,
            "model": MODEL,
            "cold_start": False,
            "timing_ms": {"init": 0.0, "inference": 1.7, "total": 2.4},
        }

    def calls(self, method: str, path: str) -> list[Sent]:
        return [s for s in self.sent if (s.method, s.path) == (method, path)]


def error(code: str, message: str) -> Json:
    return {"error": {"code": code, "message": message}}


def fulfil(route: Route, status: int, body: Json) -> None:
    route.fulfill(status=status, content_type="application/json", body=json.dumps(body))


def classify(rows: list[list[float]]) -> list[Any]:
    """Row i reads as class_(i mod 3), 97 % sure; the other classes share the rest."""
    answers: list[Any] = []
    for i, _ in enumerate(rows):
        top = LABELS[i % 3]
        others = [label for label in LABELS if label != top]
        answers.append(
            [
                {"label": top, "score": 0.97},
                {"label": others[0], "score": 0.02},
                {"label": others[1], "score": 0.01},
            ]
        )
    return answers


def is_api(url: str) -> bool:
    return urlsplit(url).path in {path for _, path in API_ROUTES}


@pytest.fixture(scope="module")
def site() -> Iterator[LocalApi]:
    """web/ from the harness's server; its API routes answer 500 (the page must not reach them)."""

    def unfaked(event: Json) -> Json:
        body = error("not_faked", f"{event['routeKey']} reached the server, not the fake API")
        return {
            "statusCode": 500,
            "headers": {"content-type": "application/json"},
            "body": json.dumps(body),
        }

    server, state = start_local_api(unfaked)
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def opened(site: LocalApi) -> Iterator[Callable[[Page, FakeApi], None]]:
    """Open the page with a fake API routed in; afterwards, check no API call got through."""
    seen = len(site.seen)

    def open_page(page: Page, fake: FakeApi) -> None:
        page.route(is_api, fake.handle)
        page.goto(site.base_url + "/")

    yield open_page
    leaked = [s for s in site.seen[seen:] if s in API_ROUTES]
    assert not leaked, f"API calls reached the server, not the fake: {leaked}"


def wait_until(page: Page, condition: Callable[[], bool], what: str, timeout_s: float = 15) -> None:
    """Let the page (and Playwright's route handlers) run until `condition()` holds."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout_s} s")
        page.wait_for_timeout(20)  # runs Playwright's event loop: the route handlers get called


def expect_ready(page: Page) -> None:
    expect(page.get_by_role("status")).to_contain_text(f"Ready: release {RELEASE_ID}")


def expect_image_ui(page: Page, visible: bool) -> None:
    """The image UI: file picker, top-k, drawing pad and its buttons, all shown or all hidden."""
    for item in (
        page.get_by_role("heading", name="Send a picture of one digit"),
        page.get_by_label("Choose an image"),
        page.get_by_role("spinbutton", name="Guesses to show"),
        page.get_by_role("heading", name="Or draw one"),
        page.get_by_role("img", name="Drawing area for one digit"),
        page.get_by_role("button", name="Read drawing"),
        page.get_by_role("button", name="Clear"),
    ):
        if visible:
            expect(item).to_be_visible()
        else:
            expect(item).to_be_hidden()


def rows_box(page: Page) -> Locator:
    return page.get_by_role("textbox", name="Rows to send, as JSON")


def expect_features_form(page: Page, visible: bool) -> None:
    for item in (
        page.get_by_role("heading", name="Send rows of features"),
        rows_box(page),
        page.get_by_role("button", name="Predict", exact=True),
    ):
        if visible:
            expect(item).to_be_visible()
        else:
            expect(item).to_be_hidden()


def features_page(page: Page, opened: Callable[[Page, FakeApi], None], fake: FakeApi) -> None:
    """Open the page for a features model and wait until it shows the features form."""
    opened(page, fake)
    expect(page.locator("body")).to_have_attribute("data-input-kind", "features")
    expect_ready(page)


# ---------------------------------------------------------------- tests


def test_a_features_model_gets_the_features_form_instead_of_the_image_ui(
    page: Page, opened: Callable[[Page, FakeApi], None], page_log: PageLog, shot: Shot
) -> None:
    fake = FakeApi(FEATURES_INPUT, classify)
    features_page(page, opened, fake)
    expect_image_ui(page, visible=False)
    expect_features_form(page, visible=True)
    about = page.locator("#features-about")
    expect(about).to_contain_text(MODEL)
    expect(about).to_contain_text("13 features per row")
    expect(about).to_contain_text("at most 1000 rows")
    expect(page.locator("#features-help")).to_contain_text("alcohol, malic_acid")
    # The example, pretty-printed: one row a line.
    text = rows_box(page).input_value()
    assert json.loads(text) == {"instances": EXAMPLE}
    assert len(text.splitlines()) == len(EXAMPLE) + 4, text
    expect(page.get_by_role("heading", level=1)).to_have_text("Predict from features")
    expect(page.locator("#placeholder")).to_contain_text("Predict")
    shot("form")
    # An image pasted now is refused in words, and nothing is sent.
    page.evaluate(
        """() => {
          const dt = new DataTransfer();
          dt.items.add(new File([new Uint8Array([137, 80, 78, 71])], "digit.png",
            {type: "image/png"}));
          document.body.dispatchEvent(new ClipboardEvent("paste",
            {bubbles: true, cancelable: true, clipboardData: dt}));
        }"""
    )
    expect(page.get_by_role("alert")).to_contain_text("reads rows of features, not images")
    assert not fake.calls("POST", "/predict")
    assert [(s.method, s.path) for s in fake.sent] == [("POST", "/warmup")]
    assert not page_log.errors


def test_predict_sends_the_rows_as_json_and_shows_each_rows_top_label(
    page: Page, opened: Callable[[Page, FakeApi], None], page_log: PageLog, shot: Shot
) -> None:
    fake = FakeApi(FEATURES_INPUT, classify)
    features_page(page, opened, fake)
    page.get_by_role("button", name="Predict", exact=True).click()
    rows = page.get_by_role("list", name="Prediction for each row").locator("li")
    expect(rows).to_have_count(len(EXAMPLE))
    for i, row in enumerate(rows.all()):
        expect(row).to_have_text(f"Row {i + 1}: {LABELS[i % 3]} (97% sure)")
    (sent,) = fake.calls("POST", "/predict")
    assert sent.content_type == "application/json"
    assert json.loads(sent.body) == {"instances": EXAMPLE}
    result = page.locator("#result")
    expect(result).to_have_attribute("aria-live", "polite")
    expect(page.locator("#image-answer")).to_be_hidden()
    expect(page.locator("#model")).to_have_text(MODEL)
    expect(page.locator("#release")).to_have_text(RELEASE_ID)
    expect(page.locator("#timings")).to_have_text("total 2 ms (inference 2 ms)")
    expect(page.get_by_role("alert")).to_be_hidden()
    progress = page.get_by_role("progressbar", name="Reading progress")
    expect(progress).to_have_attribute("aria-valuenow", "100")
    expect(progress).to_have_attribute("data-state", "done")
    shot("answered")
    # Ctrl+Enter in the box sends the rows again, edited.
    box = rows_box(page)
    box.fill(json.dumps({"instances": EXAMPLE[1:]}))
    box.press("Control+Enter")
    expect(rows).to_have_count(len(EXAMPLE) - 1)
    expect(rows.first).to_have_text("Row 1: class_0 (97% sure)")
    assert json.loads(fake.calls("POST", "/predict")[1].body) == {"instances": EXAMPLE[1:]}
    assert not page_log.errors


def test_a_ragged_row_gets_the_apis_422_message(
    page: Page, opened: Callable[[Page, FakeApi], None], page_log: PageLog, shot: Shot
) -> None:
    fake = FakeApi(FEATURES_INPUT, classify)
    features_page(page, opened, fake)
    ragged = '{"instances": [\n  ' + json.dumps(EXAMPLE[0]) + ",\n  "
    ragged += json.dumps(EXAMPLE[1][:-1]) + "\n]}"
    rows_box(page).fill(ragged)
    page.get_by_role("button", name="Predict", exact=True).click()
    alert = page.get_by_role("alert")
    expect(alert).to_be_visible()
    expect(alert).to_contain_text("The rows could not be read")
    expect(alert).to_contain_text("ragged_instances: instances[1] has length 12; expected 13")
    expect(alert).to_contain_text("Every row needs 13 numbers")
    expect(page.locator("#result")).to_be_hidden()
    progress = page.get_by_role("progressbar", name="Reading progress")
    expect(progress).to_have_attribute("data-state", "failed")
    (sent,) = fake.calls("POST", "/predict")
    assert sent.body == ragged  # sent as typed: the API, not the page, judges the rows
    assert sent.content_type == "application/json"
    shot("ragged")
    assert not page_log.errors


def test_a_regression_model_shows_the_value_of_each_row(
    page: Page, opened: Callable[[Page, FakeApi], None], page_log: PageLog
) -> None:
    values: list[Any] = [5.25, 6.123456789, [1.5, 2]]
    fake = FakeApi({**FEATURES_INPUT, "max_rows": 10}, lambda rows: values[: len(rows)])
    features_page(page, opened, fake)
    expect(page.locator("#features-about")).to_contain_text("at most 10 rows")
    page.get_by_role("button", name="Predict", exact=True).click()
    rows = page.get_by_role("list", name="Prediction for each row").locator("li")
    expect(rows).to_have_text(["Row 1: 5.25", "Row 2: 6.12346", "Row 3: 1.5, 2"])
    assert not page_log.errors


def test_an_image_chosen_during_warm_up_is_not_sent_to_a_features_model(
    page: Page, opened: Callable[[Page, FakeApi], None], page_log: PageLog, shot: Shot
) -> None:
    fake = FakeApi(FEATURES_INPUT, classify, hold_warmup=True)
    opened(page, fake)
    # The kind is not known yet: the image UI is there, and an image chosen now waits.
    expect_image_ui(page, visible=True)
    expect_features_form(page, visible=False)
    png: FilePayload = {"name": "digit.png", "mimeType": "image/png", "buffer": b"\x89PNG"}
    page.set_input_files("#file", files=[png])
    expect(page.locator("#waiting")).to_contain_text("Waiting for the model to warm up")
    wait_until(page, lambda: bool(fake.held), "the page's POST /warmup")
    shot("waiting")
    fulfil(fake.held.pop(), 200, fake.warmup_body())
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("This model reads rows of features, not images")
    expect(alert).to_contain_text("Your image was not sent")
    expect(page.locator("#waiting")).to_be_hidden()
    expect_image_ui(page, visible=False)
    expect_features_form(page, visible=True)
    expect_ready(page)
    assert not fake.calls("POST", "/predict")
    progress = page.get_by_role("progressbar", name="Reading progress")
    expect(progress).to_have_attribute("data-state", "failed")
    assert not page_log.errors


@pytest.mark.parametrize(
    "model_input", [{"kind": "image"}, None], ids=["image-kind", "no-input-older-api"]
)
def test_an_image_model_keeps_the_image_ui(
    page: Page,
    opened: Callable[[Page, FakeApi], None],
    page_log: PageLog,
    model_input: Json | None,
) -> None:
    fake = FakeApi(model_input, classify)
    opened(page, fake)
    expect(page.locator("body")).to_have_attribute("data-input-kind", "image")
    expect_ready(page)
    expect_image_ui(page, visible=True)
    expect_features_form(page, visible=False)
    expect(page.get_by_role("heading", level=1)).to_have_text("Digit reader")
    expect(page.locator("#placeholder")).to_contain_text(re.compile("draw a digit"))
    assert [(s.method, s.path) for s in fake.sent] == [("POST", "/warmup")]
    assert not page_log.errors


def test_the_features_form_fits_a_phone(
    browser: Browser,
    opened: Callable[[Page, FakeApi], None],
    request: pytest.FixtureRequest,
) -> None:
    context = open_context(
        browser, viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True
    )
    log = PageLog()
    page = watch(context.new_page(), log)
    try:
        features_page(page, opened, FakeApi(FEATURES_INPUT, classify))
        page.get_by_role("button", name="Predict", exact=True).tap()
        rows = page.get_by_role("list", name="Prediction for each row").locator("li")
        expect(rows).to_have_count(len(EXAMPLE))
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page is {overflow} px wider than a phone"
        box = rows_box(page).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375
        assert not log.errors
    finally:
        page.screenshot(path=str(screenshot_path(request.node.name)), full_page=True)
        context.close()
