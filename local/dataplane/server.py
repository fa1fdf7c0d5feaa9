"""The local endpoint: API Gateway's data plane for what Terraform deployed into the emulator.

Reads the HTTP API's routes, integrations, stage throttling and CORS from the emulator,
runs the integrated functions' deployed code in local execution environments, and serves
web/ at / (on AWS, CloudFront serves it).
"""

from __future__ import annotations

import json
import mimetypes
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ci.aws import client
from local.dataplane import apigw
from local.dataplane.functions import FunctionNotRunnable, resolve
from local.dataplane.pool import FunctionPool

REPO_ROOT = Path(__file__).resolve().parents[2]
WEB_DIR = REPO_ROOT / "web"


@dataclass(frozen=True)
class Route:
    """One route: which function (and alias or version) it integrates."""

    route_key: str
    function_name: str
    qualifier: str | None


@dataclass(frozen=True)
class ApiConfig:
    """The parts of the HTTP API the data plane honours."""

    api_id: str
    routes: dict[str, Route]
    rate_limit: float
    burst_limit: int
    cors_origins: tuple[str, ...]
    timeout_ms: int


def _function_of(integration_uri: str) -> tuple[str, str | None]:
    # ...:function:NAME[:QUALIFIER]/invocations or a plain function ARN.
    arn = integration_uri.split("/functions/")[-1].removesuffix("/invocations")
    parts = arn.split(":function:")[-1].split(":")
    return parts[0], (parts[1] if len(parts) > 1 else None)


def read_api(api_id: str) -> ApiConfig:
    """Read routes, integrations, stage settings and CORS of an HTTP API from the emulator."""
    api = client("apigatewayv2")
    integrations = {i["IntegrationId"]: i for i in api.get_integrations(ApiId=api_id)["Items"]}
    routes: dict[str, Route] = {}
    timeout_ms = 30_000
    for route in api.get_routes(ApiId=api_id)["Items"]:
        target = str(route.get("Target", ""))
        integration = integrations.get(target.removeprefix("integrations/"))
        if integration is None:
            continue
        name, qualifier = _function_of(str(integration["IntegrationUri"]))
        routes[route["RouteKey"]] = Route(route["RouteKey"], name, qualifier)
        timeout_ms = int(integration.get("TimeoutInMillis", timeout_ms))
    stage = api.get_stage(ApiId=api_id, StageName="$default")
    settings = stage.get("DefaultRouteSettings") or {}
    cors = api.get_api(ApiId=api_id).get("CorsConfiguration") or {}
    return ApiConfig(
        api_id=api_id,
        routes=routes,
        rate_limit=float(settings.get("ThrottlingRateLimit") or 10_000),
        burst_limit=int(settings.get("ThrottlingBurstLimit") or 5_000),
        cors_origins=tuple(cors.get("AllowOrigins") or ()),
        timeout_ms=timeout_ms,
    )


class DataPlane:
    """Routes requests to function pools; owns the throttle and the reaper."""

    def __init__(self, config: ApiConfig, log_dir: Path, idle_timeout_s: float = 300.0) -> None:
        self.config = config
        self.bucket = apigw.TokenBucket(config.rate_limit, config.burst_limit)
        self.pools: dict[str, FunctionPool] = {}
        for route in config.routes.values():
            key = f"{route.function_name}:{route.qualifier}"
            if key not in self.pools:
                self.pools[key] = FunctionPool(
                    self._resolver(route), log_dir, idle_timeout_s=idle_timeout_s
                )
        self._stop = threading.Event()
        self._reaper = threading.Thread(target=self._reap, daemon=True)
        self._reaper.start()

    @staticmethod
    def _resolver(route: Route) -> Any:
        cache: dict[str, Any] = {}

        def current() -> Any:
            # The pipeline moves `live`; look again every two seconds, not every request.
            if "spec" not in cache or time.monotonic() - cache["at"] > 2.0:
                cache["spec"] = resolve(route.function_name, route.qualifier)
                cache["at"] = time.monotonic()
            return cache["spec"]

        return current

    def _reap(self) -> None:
        while not self._stop.wait(1.0):
            for pool in self.pools.values():
                pool.reap()

    def close(self) -> None:
        """Stop the reaper and every execution environment."""
        self._stop.set()
        for pool in self.pools.values():
            pool.close()

    def _stats(self) -> apigw.HttpResponse:
        # Local only (not an API route): what the tests and `make load` observe.
        body = {
            key: {
                "environments": pool.environment_count,
                "peak_environments": pool.peak_environments,
                "started_environments": pool.started_environments,
                "pids": pool.pids(),
            }
            for key, pool in self.pools.items()
        }
        return apigw.HttpResponse(
            200, [("content-type", "application/json")], json.dumps(body).encode()
        )

    def handle(self, request: apigw.HttpRequest) -> apigw.HttpResponse:
        """One request through throttling, routing, the function, and back."""
        if request.path == "/_local/stats":
            return self._stats()
        if request.path == "/_local/api":
            body = json.dumps({"api_id": self.config.api_id}).encode()
            return apigw.HttpResponse(200, [("content-type", "application/json")], body)
        route_key = f"{request.method} {request.path}"
        route = self.config.routes.get(route_key)
        if route is None:
            return apigw.json_error(404, "Not Found")
        if len(request.body) > apigw.MAX_REQUEST_BYTES:
            return apigw.json_error(413, "Request Entity Too Large")
        if not self.bucket.take():
            return apigw.json_error(429, "Too Many Requests")
        event = apigw.build_event(request, route_key, self.config.api_id)
        if len(json.dumps(event)) > apigw.MAX_EVENT_BYTES:
            return apigw.json_error(413, "Request Entity Too Large")
        pool = self.pools[f"{route.function_name}:{route.qualifier}"]
        try:
            outcome = pool.invoke(event)
        except FunctionNotRunnable as exc:
            return apigw.json_error(500, f"Internal Server Error: {exc}")
        if outcome.kind == "ok":
            return apigw.map_response(outcome.payload)
        if outcome.kind == "throttled":
            return apigw.json_error(429, "Too Many Requests")
        if outcome.kind == "timeout":
            return apigw.json_error(504, f"Service Unavailable: {outcome.message}")
        if outcome.kind in ("crashed", "init_failed"):
            return apigw.json_error(502, f"Bad Gateway: {outcome.message}")
        return apigw.json_error(500, f"Internal Server Error: {outcome.message}")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _serve(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        if length > apigw.MAX_REQUEST_BYTES:
            # Drain what the client sends (up to a bound) so it can read the 413.
            remaining = min(length, 8 * apigw.MAX_REQUEST_BYTES)
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                remaining -= len(chunk)
            self._send(apigw.json_error(413, "Request Entity Too Large"), close=True)
            return
        body = self.rfile.read(length) if length else b""
        origin = self.headers.get("origin")
        if self.command == "GET" and not parts.path.startswith(("/health",)):
            static = self._static(parts.path)
            if static is not None:
                self._send(static)
                return
        if self.command == "OPTIONS":
            self._send(self._preflight(origin))
            return
        request = apigw.HttpRequest(
            self.command,
            parts.path,
            parts.query,
            list(self.headers.items()),
            body,
            self.client_address[0],
        )
        response = self.server.plane.handle(request)
        self._send(self._with_cors(response, origin))

    do_GET = do_POST = do_PUT = do_DELETE = do_OPTIONS = _serve

    def _static(self, path: str) -> apigw.HttpResponse | None:
        name = "index.html" if path in ("", "/") else path.lstrip("/")
        target = (WEB_DIR / name).resolve()
        if WEB_DIR.resolve() not in target.parents or not target.is_file():
            return None
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        return apigw.HttpResponse(200, [("content-type", ctype)], target.read_bytes())

    def _allowed(self, origin: str | None) -> bool:
        origins = self.server.plane.config.cors_origins
        return origin is not None and (origin in origins or "*" in origins)

    def _preflight(self, origin: str | None) -> apigw.HttpResponse:
        if not self._allowed(origin):
            return apigw.HttpResponse(204, [], b"")
        return apigw.HttpResponse(
            204,
            [
                ("access-control-allow-origin", str(origin)),
                ("access-control-allow-methods", "GET,POST,OPTIONS"),
                ("access-control-allow-headers", "content-type"),
                ("access-control-max-age", "3600"),
            ],
            b"",
        )

    def _with_cors(self, response: apigw.HttpResponse, origin: str | None) -> apigw.HttpResponse:
        if not self._allowed(origin):
            return response
        headers = [*response.headers, ("access-control-allow-origin", str(origin))]
        return apigw.HttpResponse(response.status, headers, response.body)

    def _send(self, response: apigw.HttpResponse, close: bool = False) -> None:
        self.send_response(response.status)
        names = {k.lower() for k, _ in response.headers}
        for key, value in response.headers:
            self.send_header(key, value)
        if "content-length" not in names:
            self.send_header("content-length", str(len(response.body)))
        if close:
            self.send_header("connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(response.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], plane: DataPlane) -> None:
        super().__init__(address, _Handler)
        self.plane = plane


def make_server(plane: DataPlane, host: str = "127.0.0.1", port: int = 8080) -> _Server:
    """An HTTP server bound to loopback, not yet serving."""
    return _Server((host, port), plane)
