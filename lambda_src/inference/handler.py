"""Inference handler (API Gateway HTTP API, payload format 2.0). Thin: routing only.

Module import is standard library + efs_layout only, so a cold start costs nothing
until the first request, and a bad release is refused before anything is imported.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from lambda_src.inference.http import (
    HttpError,
    error_response,
    extract_image,
    json_response,
    parse_event,
)
from lambda_src.inference.runtime import Config, Runtime

LOG = logging.getLogger("inference")
RUNTIME = Runtime(Config.from_env())


def handle(event: dict[str, Any], context: object) -> dict[str, Any]:
    """Answer one API Gateway event; never raises."""
    started = time.perf_counter()
    cold = RUNTIME.next_invocation()
    try:
        return _route(event, cold, started)
    except Exception:  # a bug must answer 500, not kill the execution environment
        LOG.exception("unhandled error")
        return error_response(HttpError(500, "internal_error", "the server failed unexpectedly"))


def _route(event: dict[str, Any], cold: bool, started: float) -> dict[str, Any]:
    request = parse_event(event)
    if isinstance(request, HttpError):
        return error_response(request)
    if request.route == "GET /health":
        return json_response(200, {**RUNTIME.health(), "cold_start": cold})
    if request.route == "POST /warmup":
        was_loaded = RUNTIME.loaded is not None
        loaded = RUNTIME.ensure_loaded()
        if isinstance(loaded, HttpError):
            return error_response(loaded)
        return json_response(
            200,
            {
                "release": loaded.release_id,
                "model": loaded.stamp.model.name,
                "cold_start": cold or not was_loaded,
                "timing_ms": {k: round(v, 1) for k, v in loaded.timings_ms.items()},
            },
        )
    if request.route == "POST /predict":
        return _predict(request, cold, started)
    return error_response(HttpError(404, "not_found", f"no route {request.route}"))


def _predict(request: Any, cold: bool, started: float) -> dict[str, Any]:
    payload = extract_image(request)
    if isinstance(payload, HttpError):
        return error_response(payload)
    was_loaded = RUNTIME.loaded is not None
    loaded = RUNTIME.ensure_loaded(warm=False)
    if isinstance(loaded, HttpError):
        return error_response(loaded)
    # A cold start, for the caller, is a call that waited for the model to load.
    cold = cold or not was_loaded
    from lambda_src.inference.imaging import decode_errors, open_image

    t_decode = time.perf_counter()
    opened = open_image(payload.data)
    if isinstance(opened, HttpError):
        return error_response(opened)
    t_infer = time.perf_counter()
    try:
        predictions = loaded.predictor.predict_image(opened.image, payload.top_k)
    except decode_errors() as exc:
        return error_response(
            HttpError(422, "undecodable_image", f"the image could not be decoded: {exc}")
        )
    done = time.perf_counter()
    init_ms = loaded.timings_ms["init"] if cold else 0.0
    timing_ms = {
        "init": round(init_ms, 1),
        "decode": round((t_infer - t_decode) * 1000, 1),
        "inference": round((done - t_infer) * 1000, 1),
        # The clock started when handle() was entered, before ensure_loaded(): a load done
        # by this request is already inside it, so init is a part of total, never added.
        "total": round((done - started) * 1000, 1),
    }
    if cold:
        # Where the cold start went, for the caller and the benchmark.
        for step in ("stamp_check", "imports", "model_load"):
            timing_ms[step] = round(loaded.timings_ms[step], 1)
    return json_response(
        200,
        {
            "predictions": [
                {"label": label, "score": float(score)} for label, score in predictions
            ],
            "release": loaded.release_id,
            "model": loaded.stamp.model.name,
            "cold_start": cold,
            "timing_ms": timing_ms,
        },
    )
