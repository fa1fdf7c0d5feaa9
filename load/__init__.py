"""A bounded load test of the local endpoint (`make load`): many clients POST digit PNGs to
/predict for a fixed time; the report says what was served, throttled and failed, the
latency of the answers, how many execution environments served them and whether their
memory grew.

Loopback only: the URL must name a loopback address literally (127.0.0.1, ::1), so the
tool cannot be pointed at a real API Gateway, where every request costs money.

Throttled clients back off (exponentially, with jitter, as the AWS SDKs do) instead of
spinning on 429s, which would only burn the CPU the environments need. Environments and
their memory come from the endpoint's `/_local/stats` (pids) and `/proc/<pid>/status`
(VmRSS), so the tool must run on the endpoint's machine, which loopback guarantees.
"""

from __future__ import annotations

import io
import ipaddress
import json
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_MAX_GROWTH_MB = 50.0
# The share of the run at each end whose RSS is compared for growth.
WINDOW = 0.1


class RefusedTarget(ValueError):
    """The URL does not name the local endpoint on a loopback address."""


def check_url(url: str) -> str:
    """The endpoint's base URL (``http://<loopback>:<port>``), or RefusedTarget.

    Only a loopback IP literal is accepted: a host name (even ``localhost``) is resolved
    by whatever the resolver says, and this tool must never load a remote API.
    """
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise RefusedTarget(f"{url!r}: only http:// to the local endpoint is allowed")
    host = parts.hostname or ""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise RefusedTarget(
            f"{url!r}: the host must be a loopback address such as 127.0.0.1 "
            "(this tool only loads the local endpoint)"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise RefusedTarget(f"{url!r}: give the endpoint's base URL, e.g. {DEFAULT_URL}")
    return f"http://{parts.netloc}"


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), interpolating linearly between the closest ranks."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} is not within 0-100")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# Finger strokes on the page's 280 px canvas, per digit: what people send, and what the
# digits model reads (tests/models draws the same ones).
_STROKES: dict[int, list[tuple[str, Any]]] = {
    0: [("ellipse", (80, 40, 200, 240))],
    1: [("line", ((110, 80), (150, 45), (150, 240)))],
    2: [("arc", ((80, 40, 200, 150), 180, 30)), ("line", ((190, 120), (85, 240), (205, 240)))],
    3: [("arc", ((85, 40, 195, 140), 200, 90)), ("arc", ((80, 135, 200, 240), 270, 160))],
    4: [("line", ((160, 240), (160, 40), (70, 180), (210, 180)))],
    5: [("line", ((195, 45), (100, 45), (95, 130))), ("arc", ((85, 110, 205, 240), 220, 150))],
    6: [("arc", ((75, 40, 210, 300), 190, 280)), ("ellipse", (80, 130, 200, 240))],
    7: [("line", ((75, 45), (205, 45), (120, 240)))],
    8: [("ellipse", (90, 35, 190, 135)), ("ellipse", (80, 135, 200, 245))],
    9: [("ellipse", (80, 40, 200, 145)), ("line", ((195, 95), (185, 240)))],
}


def digit_png(digit: int) -> bytes:
    """A PNG of a digit drawn in thick black strokes on white, as on the page's canvas."""
    from PIL import Image, ImageDraw

    image = Image.new("L", (280, 280), 255)
    draw = ImageDraw.Draw(image)
    width = 26
    for kind, spec in _STROKES[digit]:
        if kind == "ellipse":
            draw.ellipse(spec, outline=0, width=width)
        elif kind == "arc":
            box, start, end = spec
            draw.arc(box, start, end, fill=0, width=width)
        else:
            draw.line(list(spec), fill=0, width=width, joint="curve")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class Config:
    """What to run: against which endpoint, how many clients, for how long."""

    url: str = DEFAULT_URL
    clients: int = 50
    seconds: float = 60.0
    warmup_seconds: float = 10.0
    sample_interval: float = 0.5
    request_timeout: float = 60.0
    backoff_base: float = 0.05
    backoff_cap: float = 1.0
    max_growth_mb: float = DEFAULT_MAX_GROWTH_MB


@dataclass(frozen=True)
class Sample:
    """One request: when it started (seconds into its phase), its status and latency."""

    started: float
    status: str  # "200", "429", ... or "transport:<error>", "bad_body"
    latency_ms: float
    cold_start: bool = False
    label_matched: bool = False


@dataclass(frozen=True)
class MemorySample:
    """RSS (MB) of each environment alive at one moment, ``at`` seconds into the run."""

    at: float
    rss_mb: dict[int, float]


@dataclass(frozen=True)
class MemoryReport:
    """Environments' memory over the run: the peak, and the growth between its two ends."""

    samples: int
    max_rss_mb: float | None
    first_window_mb: float | None
    last_window_mb: float | None
    growth_mb: float | None  # the largest growth of any environment that lived through the run
    growth_by_environment: dict[str, float] = field(default_factory=dict)


def memory_report(samples: Sequence[MemorySample], seconds: float) -> MemoryReport:
    """Compare each environment's peak RSS in the first and last 10% of the run.

    Peaks rather than means: an environment that cold-starts inside the first window
    ramps up while lib/ is imported, and its peak there is its loaded size. Environments
    not alive in both windows (replacements) count for the maximum only.
    """
    rss_values = [mb for s in samples for mb in s.rss_mb.values()]
    first = [s for s in samples if s.at <= seconds * WINDOW]
    last = [s for s in samples if s.at >= seconds * (1 - WINDOW)]

    def peaks(window: list[MemorySample]) -> dict[int, float]:
        found: dict[int, float] = {}
        for sample in window:
            for pid, mb in sample.rss_mb.items():
                found[pid] = max(found.get(pid, 0.0), mb)
        return found

    early, late = peaks(first), peaks(last)
    growth = {pid: round(late[pid] - early[pid], 1) for pid in sorted(set(early) & set(late))}
    return MemoryReport(
        samples=len(samples),
        max_rss_mb=round(max(rss_values), 1) if rss_values else None,
        first_window_mb=round(max(early.values()), 1) if early else None,
        last_window_mb=round(max(late.values()), 1) if late else None,
        growth_mb=max(growth.values()) if growth else None,
        growth_by_environment={str(pid): mb for pid, mb in growth.items()},
    )


@dataclass(frozen=True)
class PhaseReport:
    """Counts and latency of one phase (warm-up or the measured run)."""

    seconds: float
    requests: int
    served: int
    throttled: int
    errors: dict[str, int]
    cold_starts: int
    label_matches: int
    latency_ms: dict[str, float]
    served_per_second: float

    @property
    def error_count(self) -> int:
        """Answers other than 200 and 429, transport failures included."""
        return sum(self.errors.values())


def phase_report(samples: Sequence[Sample], seconds: float) -> PhaseReport:
    """Summarise a phase's samples: statuses, and p50/p95/p99 of the 200s' latency."""
    statuses = Counter(s.status for s in samples)
    served = [s for s in samples if s.status == "200"]
    latencies = [s.latency_ms for s in served]
    latency = (
        {
            "p50": round(percentile(latencies, 50), 1),
            "p95": round(percentile(latencies, 95), 1),
            "p99": round(percentile(latencies, 99), 1),
            "max": round(max(latencies), 1),
            "mean": round(sum(latencies) / len(latencies), 1),
        }
        if latencies
        else {}
    )
    return PhaseReport(
        seconds=seconds,
        requests=len(samples),
        served=len(served),
        throttled=statuses.get("429", 0),
        errors={k: v for k, v in sorted(statuses.items()) if k not in ("200", "429")},
        cold_starts=sum(s.cold_start for s in served),
        label_matches=sum(s.label_matched for s in served),
        latency_ms=latency,
        served_per_second=round(len(served) / seconds, 2) if seconds > 0 else 0.0,
    )


@dataclass(frozen=True)
class Environments:
    """Execution environments, from /_local/stats around the measured run."""

    before: int
    after: int
    started_during_run: int
    used: int  # distinct pids alive at some point of the measured run
    peak: int  # the endpoint's lifetime peak


@dataclass(frozen=True)
class Report:
    """Everything `make load` reports; ``problems`` empty means success."""

    url: str
    clients: int
    warmup: PhaseReport
    run: PhaseReport
    environments: Environments
    memory: MemoryReport
    max_growth_mb: float
    problems: list[str]

    @property
    def ok(self) -> bool:
        """No errors other than 429 and no memory growth over the threshold."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``--json``)."""
        body = asdict(self)
        body["ok"] = self.ok
        body["run"]["error_count"] = self.run.error_count
        body["warmup"]["error_count"] = self.warmup.error_count
        return body


def fetch_stats(base_url: str, timeout: float = 10.0) -> dict[str, dict[str, Any]]:
    """The endpoint's /_local/stats: per function pool, environments and their pids."""
    response = requests.get(base_url + "/_local/stats", timeout=timeout)
    response.raise_for_status()
    body = response.json()
    if not isinstance(body, dict):
        raise ValueError(f"/_local/stats answered {body!r}")
    return {str(k): dict(v) for k, v in body.items()}


def _pids(stats: dict[str, dict[str, Any]]) -> list[int]:
    return sorted(int(pid) for pool in stats.values() for pid in pool.get("pids", []))


def _total(stats: dict[str, dict[str, Any]], key: str) -> int:
    return sum(int(pool.get(key, 0)) for pool in stats.values())


def rss_mb(pid: int) -> float | None:
    """VmRSS of a process in MB; None once it has gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        return None
    return None


class _Sampler(threading.Thread):
    """Every ``interval`` seconds: which environments are alive and their RSS."""

    def __init__(self, base_url: str, interval: float, started: float) -> None:
        super().__init__(name="load-sampler", daemon=True)
        self.base_url = base_url
        self.interval = interval
        self.started = started
        self.samples: list[MemorySample] = []
        self.pids_seen: set[int] = set()
        self.failures = 0
        self._stop_event = threading.Event()

    def sample(self) -> None:
        """Take one sample now."""
        try:
            pids = _pids(fetch_stats(self.base_url, timeout=max(1.0, self.interval * 4)))
        except (requests.RequestException, ValueError):
            self.failures += 1
            return
        self.pids_seen.update(pids)
        rss = {pid: mb for pid in pids if (mb := rss_mb(pid)) is not None}
        self.samples.append(MemorySample(round(time.monotonic() - self.started, 3), rss))

    def run(self) -> None:
        self.sample()
        while not self._stop_event.wait(self.interval):
            self.sample()

    def finish(self) -> None:
        """Stop, then take a last sample at the very end of the run."""
        self._stop_event.set()
        self.join()
        self.sample()


def _client(
    config: Config,
    base_url: str,
    images: Sequence[tuple[int, bytes]],
    offset: int,
    started: float,
    deadline: float,
    out: list[Sample],
) -> None:
    session = requests.Session()
    throttled_in_a_row = 0
    index = offset
    try:
        while (now := time.monotonic()) < deadline:
            digit, png = images[index % len(images)]
            index += 1
            sample = _one_request(session, config, base_url, digit, png, now - started)
            out.append(sample)  # list.append is atomic: no lock needed between clients
            if sample.status != "429":
                throttled_in_a_row = 0
                continue
            throttled_in_a_row += 1
            pause = min(config.backoff_cap, config.backoff_base * 2 ** (throttled_in_a_row - 1))
            time.sleep(max(0.0, min(pause * random.uniform(0.5, 1.0), deadline - time.monotonic())))
    finally:
        session.close()


def _one_request(
    session: requests.Session, config: Config, base_url: str, digit: int, png: bytes, at: float
) -> Sample:
    t0 = time.perf_counter()
    try:
        response = session.post(
            base_url + "/predict",
            data=png,
            headers={"content-type": "image/png"},
            timeout=config.request_timeout,
        )
        body = response.content
    except requests.RequestException as exc:
        return Sample(round(at, 3), f"transport:{type(exc).__name__}", _ms(t0))
    latency = _ms(t0)
    if response.status_code != 200:
        return Sample(round(at, 3), str(response.status_code), latency)
    try:
        answer = json.loads(body)
        label = str(answer["predictions"][0]["label"])
        cold = bool(answer.get("cold_start", False))
    except (ValueError, KeyError, IndexError, TypeError):
        return Sample(round(at, 3), "bad_body", latency)
    return Sample(round(at, 3), "200", latency, cold, label == str(digit))


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 2)


def _phase(
    config: Config, base_url: str, images: Sequence[tuple[int, bytes]], seconds: float
) -> list[Sample]:
    samples: list[Sample] = []
    if seconds <= 0:
        return samples
    started = time.monotonic()
    deadline = started + seconds
    threads = [
        threading.Thread(
            target=_client,
            args=(config, base_url, images, i, started, deadline, samples),
            name=f"load-client-{i}",
            daemon=True,
        )
        for i in range(config.clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        # A request started before the deadline may take up to its timeout to answer.
        thread.join(seconds + config.request_timeout + 30)
    return samples


def run(config: Config) -> Report:
    """Warm up, then run the measured phase while sampling environments; judge the result."""
    base_url = check_url(config.url)
    if config.clients < 1 or config.seconds <= 0:
        raise ValueError("clients must be >= 1 and seconds > 0")
    images = [(digit, digit_png(digit)) for digit in range(10)]
    fetch_stats(base_url)  # fail early and clearly if nothing answers
    warmup = _phase(config, base_url, images, config.warmup_seconds)

    before = fetch_stats(base_url)
    started = time.monotonic()
    sampler = _Sampler(base_url, config.sample_interval, started)
    sampler.start()
    measured = _phase(config, base_url, images, config.seconds)
    sampler.finish()
    elapsed = time.monotonic() - started
    after = fetch_stats(base_url)

    environments = Environments(
        before=len(_pids(before)),
        after=len(_pids(after)),
        started_during_run=_total(after, "started_environments")
        - _total(before, "started_environments"),
        used=len(sampler.pids_seen | set(_pids(before)) | set(_pids(after))),
        peak=_total(after, "peak_environments"),
    )
    memory = memory_report(sampler.samples, elapsed)
    warm = phase_report(warmup, config.warmup_seconds)
    main = phase_report(measured, config.seconds)
    return Report(
        url=base_url,
        clients=config.clients,
        warmup=warm,
        run=main,
        environments=environments,
        memory=memory,
        max_growth_mb=config.max_growth_mb,
        problems=judge(warm, main, memory, config.max_growth_mb),
    )


def judge(
    warmup: PhaseReport, run: PhaseReport, memory: MemoryReport, max_growth_mb: float
) -> list[str]:
    """What makes the run a failure: errors other than 429, nothing served, memory growth."""
    problems = []
    for name, phase in (("warm-up", warmup), ("run", run)):
        if phase.errors:
            problems.append(f"{name}: {phase.error_count} error(s) other than 429: {phase.errors}")
    if run.served == 0:
        problems.append("run: no request was served")
    if memory.growth_mb is None:
        problems.append("memory growth could not be measured (no environment lived through it)")
    elif memory.growth_mb >= max_growth_mb:
        problems.append(
            f"memory grew by {memory.growth_mb} MB (threshold {max_growth_mb} MB) "
            f"between the first and last {WINDOW:.0%} of the run"
        )
    return problems


def render(report: Report) -> str:
    """The human-readable report."""
    run_ = report.run
    lat = run_.latency_ms
    env = report.environments
    mem = report.memory
    lines = [
        f"load test of {report.url}: {report.clients} clients for {run_.seconds:g} s "
        f"(after {report.warmup.seconds:g} s of warm-up)",
        f"  requests  {run_.requests}  served (200) {run_.served} ({run_.served_per_second}/s)  "
        f"throttled (429) {run_.throttled}  other errors {run_.error_count} {run_.errors or ''}",
        (
            f"  latency of 200s  p50 {lat['p50']} ms  p95 {lat['p95']} ms  p99 {lat['p99']} ms  "
            f"max {lat['max']} ms"
            if lat
            else "  latency of 200s  (none served)"
        ),
        f"  cold starts {run_.cold_starts}  top label = digit sent: {run_.label_matches}/"
        f"{run_.served}",
        f"  environments  used {env.used}  started during the run {env.started_during_run}  "
        f"alive before/after {env.before}/{env.after}  peak {env.peak}",
        f"  memory  max RSS {mem.max_rss_mb} MB  growth {mem.growth_mb} MB over the run "
        f"(first {WINDOW:.0%}: {mem.first_window_mb} MB, last: {mem.last_window_mb} MB; "
        f"{mem.samples} samples)",
        f"  warm-up  requests {report.warmup.requests}  served {report.warmup.served}  "
        f"throttled {report.warmup.throttled}  errors {report.warmup.error_count}  "
        f"cold starts {report.warmup.cold_starts}",
    ]
    lines.append("OK" if report.ok else "FAILED: " + "; ".join(report.problems))
    return "\n".join(lines)
