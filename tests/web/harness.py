"""The web tests' harness: the in-process API server, the Chromium settings, page helpers.

Kept out of conftest.py so tests (and other conftests, e.g. one against the local data
plane) can import it as `tests.web.harness`.
"""

from __future__ import annotations

import base64
import mimetypes
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from playwright.sync_api import Browser, BrowserContext, Page

REPO_ROOT = Path(__file__).resolve().parents[2]
WEB_DIR = REPO_ROOT / "web"
SCREENSHOT_DIR = REPO_ROOT / "test-output" / "web"
CHROMIUM = Path(os.environ.get("WEB_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RELEASE_ID = "20261201T090000Z-0b1d9e7"
API_ROUTES = frozenset({("POST", "/predict"), ("POST", "/warmup"), ("GET", "/health")})
# A request held by a test that forgot to release it is let through after this long, so a
# server thread never waits forever.
HOLD_LIMIT_S = 120.0
SKIP_REASON = (
    f"no Chromium at {CHROMIUM}: the browser tests need Debian's chromium "
    "(apt-get install chromium), or WEB_TEST_CHROMIUM=/path/to/chromium"
)


def gateway_event(
    method: str, path: str, query: str, headers: list[tuple[str, str]], body: bytes, source: str
) -> dict[str, Any]:
    """An API Gateway HTTP API payload-format-2.0 event, as the real integration sends it."""
    joined: dict[str, str] = {}
    for key, value in headers:
        name = key.lower()
        joined[name] = f"{joined[name]},{value}" if name in joined else value
    params: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        params[key] = f"{params[key]},{value}" if key in params else value
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": query,
        "headers": joined,
        "requestContext": {
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source,
                "userAgent": joined.get("user-agent", ""),
            },
            "requestId": uuid.uuid4().hex,
            "routeKey": f"{method} {path}",
            "stage": "$default",
            "timeEpoch": int(time.time() * 1000),
        },
        "isBase64Encoded": bool(body),
    }
    if params:
        event["queryStringParameters"] = params
    if body:
        event["body"] = base64.b64encode(body).decode("ascii")
    return event


@dataclass
class Call:
    """One request the server got, with its times on the server's monotonic clock."""

    method: str
    path: str
    arrived: float
    # When the server began to send the answer: taken before the first byte goes out, so
    # anything the page does in reaction to the answer reaches the server after it.
    answered: float | None = None


@dataclass
class LocalApi:
    """The running in-process server: page and API on one origin, CORS for `cors_origins`.

    `calls` records every request's arrival and answer times; `hold` keeps a route's
    answers back until the test releases them, so a test can act while a request is
    in flight without racing it.
    """

    base_url: str
    port: int
    cors_origins: set[str] = field(default_factory=set)
    seen: list[tuple[str, str]] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    held: dict[tuple[str, str], threading.Event] = field(default_factory=dict)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def hold(self, method: str, path: str) -> threading.Event:
        """Keep answers to `method path` back (before the handler runs) until the event is set."""
        gate = threading.Event()
        with self.changed:
            self.held[(method, path)] = gate
        return gate

    def release(self, method: str, path: str) -> None:
        """Let held and later requests to `method path` through."""
        with self.changed:
            gate = self.held.pop((method, path), None)
        if gate is not None:
            gate.set()

    def calls_to(self, method: str, path: str, since: int = 0) -> list[Call]:
        """The calls to `method path` among `calls[since:]`, in order of arrival."""
        with self.changed:
            return [c for c in self.calls[since:] if (c.method, c.path) == (method, path)]

    def wait_for(
        self, method: str, path: str, since: int = 0, answered: bool = False, timeout: float = 30
    ) -> Call:
        """The first call to `method path` in `calls[since:]`, once it arrived (or was answered)."""

        def found() -> Call | None:
            for c in self.calls[since:]:
                if (c.method, c.path) == (method, path) and (not answered or c.answered):
                    return c
            return None

        with self.changed:
            if not self.changed.wait_for(lambda: found() is not None, timeout):
                state = "answered" if answered else "arrived"
                raise TimeoutError(f"no {method} {path} {state} within {timeout} s")
            call = found()
            assert call is not None
            return call

    def _arrived(self, method: str, path: str) -> tuple[Call, threading.Event | None]:
        with self.changed:
            call = Call(method, path, arrived=time.monotonic())
            self.calls.append(call)
            self.changed.notify_all()
            return call, self.held.get((method, path))

    def _answering(self, call: Call) -> None:
        with self.changed:
            call.answered = time.monotonic()
            self.changed.notify_all()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], api: Callable[[dict[str, Any]], dict[str, Any]]):
        super().__init__(address, _Handler)
        self.api = api
        self.state = LocalApi(base_url="", port=self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the page gave up on this request (an aborted fetch): nothing to report
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    _call: Call

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        origin = self.headers.get("origin")
        self.server.state.seen.append((self.command, parts.path))
        self._call, gate = self.server.state._arrived(self.command, parts.path)
        if gate is not None:
            # Outside the handler, whose lock stands for the one execution environment: a
            # held warm-up must not keep other requests from being served meanwhile.
            gate.wait(HOLD_LIMIT_S)
        if self.command == "OPTIONS":
            self._preflight(origin)
            return
        if (self.command, parts.path) in API_ROUTES:
            event = gateway_event(
                self.command,
                parts.path,
                parts.query,
                list(self.headers.items()),
                body,
                self.client_address[0],
            )
            response = self.server.api(event)
            data = response.get("body") or ""
            raw = base64.b64decode(data) if response.get("isBase64Encoded") else data.encode()
            headers = dict(response.get("headers") or {})
            self._send(int(response["statusCode"]), headers, raw, origin)
            return
        if self.command in ("GET", "HEAD"):
            name = "index.html" if parts.path in ("", "/") else parts.path.lstrip("/")
            target = (WEB_DIR / name).resolve()
            if WEB_DIR.resolve() in target.parents and target.is_file():
                ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
                headers = {"content-type": ctype, "cache-control": "no-store"}
                self._send(200, headers, target.read_bytes(), None)
                return
        # API Gateway's own answer for a route it does not have.
        self._send(404, {"content-type": "application/json"}, b'{"message":"Not Found"}', origin)

    do_GET = do_POST = do_OPTIONS = do_HEAD = _serve

    def _preflight(self, origin: str | None) -> None:
        headers: dict[str, str] = {}
        if origin in self.server.state.cors_origins:  # as the HTTP API's cors_configuration
            headers = {
                "access-control-allow-origin": str(origin),
                "access-control-allow-methods": "GET,OPTIONS,POST",
                "access-control-allow-headers": "content-type",
                "access-control-max-age": "3600",
            }
        self._send(204, headers, b"", None)

    def _send(self, status: int, headers: dict[str, str], body: bytes, origin: str | None) -> None:
        if origin and origin in self.server.state.cors_origins:
            headers = {**headers, "access-control-allow-origin": origin}
        self.server.state._answering(self._call)
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def start_local_api(api: Callable[[dict[str, Any]], dict[str, Any]]) -> tuple[_Server, LocalApi]:
    """Serve web/ and `api` (a Lambda handler taking payload-2.0 events) on a free port."""
    server = _Server(("127.0.0.1", 0), api)
    server.state.base_url = f"http://127.0.0.1:{server.state.port}"
    thread = threading.Thread(target=server.serve_forever, name="web-test-api", daemon=True)
    thread.start()
    return server, server.state


@dataclass
class PageLog:
    """What a page did: uncaught script errors, console errors and every request URL."""

    errors: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


def screenshot_path(node_name: str, suffix: str = "") -> Path:
    """test-output/web/<test name>[-suffix].png (the folder is git-ignored)."""
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", node_name).strip("-")
    return SCREENSHOT_DIR / f"{stem}{'-' + suffix if suffix else ''}.png"


def open_context(browser: Browser, **options: Any) -> BrowserContext:
    """A fresh incognito-like context: no cookies, cache or storage from other tests."""
    context = browser.new_context(**{"viewport": {"width": 1100, "height": 900}, **options})
    context.set_default_timeout(30_000)
    return context


def watch(page: Page, log: PageLog) -> Page:
    """Record the page's script errors and requests into `log`."""
    page.on("pageerror", lambda exc: log.errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: log.console_errors.append(msg.text) if msg.type == "error" else None,
    )
    page.on("request", lambda req: log.requests.append(req.url))
    return page
