"""Inference handler (API Gateway HTTP API, payload format 2.0). Thin: routing only.

Module import is standard library + efs_layout only, so a cold start costs nothing
until the first request, and a bad release is refused before anything is imported.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from lambda_src.inference.http import (
    MAX_FEATURE_ROWS,
    FeaturesPayload,
    HttpError,
    ImagePayload,
    error_response,
    extract_image,
    extract_instances,
    is_features_request,
    json_response,
    parse_event,
)
from lambda_src.inference.runtime import Config, Loaded, Runtime

if TYPE_CHECKING:
    from efs_layout.model_manifest import InputSpec

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
                "input": loaded.input.public(),
                "cold_start": cold or not was_loaded,
                "timing_ms": {k: round(v, 1) for k, v in loaded.timings_ms.items()},
            },
        )
    if request.route == "POST /predict":
        return _predict(request, cold, started)
    return error_response(HttpError(404, "not_found", f"no route {request.route}"))


def _predict(request: Any, cold: bool, started: float) -> dict[str, Any]:
    # The request is checked before anything is loaded, so a bad one never costs a cold
    # start; what depends on the model (its input kind, row width) is checked after.
    payload: ImagePayload | FeaturesPayload | HttpError
    if is_features_request(request):
        payload = extract_instances(request, features=None, max_rows=MAX_FEATURE_ROWS)
    else:
        payload = extract_image(request)
    if isinstance(payload, HttpError):
        return error_response(payload)
    was_loaded = RUNTIME.loaded is not None
    loaded = RUNTIME.ensure_loaded(warm=False)
    if isinstance(loaded, HttpError):
        return error_response(loaded)
    # A cold start, for the caller, is a call that waited for the model to load.
    cold = cold or not was_loaded
    mismatch = input_mismatch(payload, loaded.input)
    if mismatch is not None:
        return error_response(mismatch)
    if isinstance(payload, FeaturesPayload):
        return _predict_rows(payload, loaded, cold, started)
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


def _predict_rows(
    payload: FeaturesPayload, loaded: Loaded, cold: bool, started: float
) -> dict[str, Any]:
    t_infer = time.perf_counter()
    answers = loaded.predictor.predict_rows(payload.rows, payload.top_k)
    done = time.perf_counter()
    predictions = [
        [{"label": label, "score": float(score)} for label, score in answer]
        if isinstance(answer, list) and answer and isinstance(answer[0], tuple)
        else answer
        for answer in answers
    ]
    timing_ms = {
        "init": round(loaded.timings_ms["init"] if cold else 0.0, 1),
        "inference": round((done - t_infer) * 1000, 1),
        "total": round((done - started) * 1000, 1),
    }
    return json_response(
        200,
        {
            "predictions": predictions,
            "release": loaded.release_id,
            "model": loaded.stamp.model.name,
            "cold_start": cold,
            "timing_ms": timing_ms,
        },
    )


def input_mismatch(payload: ImagePayload | FeaturesPayload, spec: InputSpec) -> HttpError | None:
    """Why a well-formed request does not fit the served model's input, if it does not."""
    if isinstance(payload, ImagePayload):
        if spec.kind == "image":
            return None
        return HttpError(
            415,
            "unsupported_media_type",
            f"this model takes JSON features, not images: send application/json "
            f'{{"instances": [[{spec.features} numbers], ...]}}',
        )
    if spec.kind != "features":
        return HttpError(
            415,
            "unsupported_media_type",
            "this model takes images, not JSON features: send image/png, image/jpeg, ... or "
            '{"image_base64": ...}',
        )
    if len(payload.rows) > spec.max_rows:
        return HttpError(
            413,
            "too_many_rows",
            f"{len(payload.rows)} rows; this model takes at most {spec.max_rows} per request",
        )
    width = len(payload.rows[0])
    if width != spec.features:
        return HttpError(
            422,
            "ragged_instances",
            f"rows have {width} numbers; this model takes {spec.features} per row",
        )
    return None
