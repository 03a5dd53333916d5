"""The service's Prometheus metrics, served by BentoML's `GET /metrics` next to its own.

    coopscore_answers_total{endpoint, outcome}          every answer of the /v1 API, one per request
    coopscore_batch_items_total{outcome}                each application of a POST /v1/scores:batch
    coopscore_request_duration_seconds{endpoint}        latency of the /v1 API (histogram)
    coopscore_audit_write_seconds                       one audit commit (a group of requests' rows)
    coopscore_audit_write_failures_total{stage}         `commit` failed, or a request's wait `timeout`
    coopscore_model_info{subject, version}              1 for each model version serving, 0 once replaced
    coopscore_model_reload_failures_total{subject, stage}  a new champion not loaded (`load`), or the
                                                        registry not reachable (`registry`)
    coopscore_rate_limited_total{endpoint}              429 answers of the rate limit

Labels carry closed sets only: `endpoint` is a route template ("/v1/subjects/{subject_type}/
{subject_id}/consents", never the path a client sent), `outcome` one of OUTCOMES, `subject` a subject
type ("member", "cooperative"). No subject id, bank, key, request id or any personal data.

BentoML's own series label `endpoint` with the raw path, which for `/app/member/<token>` is a member's
key to their page and for `/v1/subjects/.../{id}/...` a subject id; `relabel_endpoints` rewrites them
to route templates when /metrics is scraped (the service's `__metrics__` hook).

BentoML runs several worker processes and aggregates them through Prometheus' multiprocess mode, whose
directory each worker learns at start-up: the metrics are created on first use, in the worker, through
`bentoml.metrics` (which imports prometheus_client only then). Recording is an in-memory update.
"""
from __future__ import annotations

import logging
import re
import time
import uuid
import warnings
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from functools import cache

from starlette.routing import Route

log = logging.getLogger("coopscore.request")
# The server's request id while a /v1 request runs: log lines carry it (serving/json_logs.py).
REQUEST_ID: ContextVar[str | None] = ContextVar("coopscore_request_id", default=None)

OUTCOMES = ("scored", "insufficient_history", "ok", "no_consent", "refused", "invalid", "not_found",
            "rate_limited", "cancelled", "unavailable", "error")
UNMATCHED = "unmatched"  # a path no route matches: never the path itself
BENTOML_PATHS = frozenset({"/", "/healthz", "/livez", "/readyz", "/metrics", "/docs.json", "/schema.json"})
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
AUDIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def outcome_of(status: int, error: str | None = None) -> str:
    """The `outcome` label of an answer from its HTTP status and error code (scoring's 200s say
    `scored` or `insufficient_history` themselves)."""
    if status < 400:
        return "ok"
    if status == 403 and error == "no_consent":
        return "no_consent"
    return {401: "refused", 403: "refused", 404: "not_found", 429: "rate_limited",
            499: "cancelled", 503: "unavailable"}.get(status, "invalid" if status < 500 else "error")


class _Metrics:
    def __init__(self) -> None:
        with warnings.catch_warnings():  # 1.4 marks it deprecated; it is what defers the import
            warnings.simplefilter("ignore", DeprecationWarning)
            import bentoml.metrics as m

            counter, histogram, gauge = m.Counter, m.Histogram, m.Gauge
        self.answers = counter("coopscore_answers", "Answers of the /v1 API by route template and "
                               "outcome, one per request", ["endpoint", "outcome"])
        self.batch_items = counter("coopscore_batch_items", "Applications of POST /v1/scores:batch "
                                   "by outcome", ["outcome"])
        self.latency = histogram("coopscore_request_duration_seconds", "Time to answer a /v1 request, "
                                 "by route template", ["endpoint"], buckets=LATENCY_BUCKETS)
        self.audit_seconds = histogram("coopscore_audit_write_seconds", "Time of one audit-log commit "
                                       "(the rows of every request waiting)", buckets=AUDIT_BUCKETS)
        self.audit_failures = counter("coopscore_audit_write_failures", "Audit writes that failed: a "
                                      "commit, or a request's wait for it (timeout)", ["stage"])
        self.model_info = gauge("coopscore_model_info", "1 for each model version serving, by subject "
                                "type", ["subject", "version"], multiprocess_mode="livemax")
        self.reload_failures = counter("coopscore_model_reload_failures", "New champions that could "
                                       "not be loaded, or registry checks that failed", ["subject", "stage"])
        self.rate_limited = counter("coopscore_rate_limited", "Requests refused by the rate limit "
                                    "(429), by route template", ["endpoint"])
        self.shadow = counter("coopscore_shadow_scores", "Answers the challenger was scored on in the "
                              "shadow, by outcome: recorded, skipped (queue full: the answers come "
                              "first), failed (scoring or writing)", ["subject", "outcome"])


@cache
def _m() -> _Metrics:
    return _Metrics()


# -- recording: one call each, in memory -----------------------------------------------------------
_answer_series: dict[tuple[str, str], tuple] = {}  # (endpoint, outcome) -> its two series: a closed set


def answered(endpoint: str, outcome: str, seconds: float) -> None:
    series = _answer_series.get((endpoint, outcome))
    if series is None:  # .labels() takes a lock and a lookup: done once per pair, not per request
        m = _m()
        series = _answer_series[endpoint, outcome] = (m.answers.labels(endpoint, outcome), m.latency.labels(endpoint))
    series[0].inc()
    series[1].observe(seconds)


def batch_items(outcomes: list[str]) -> None:
    counter = _m().batch_items
    for outcome in set(outcomes):
        counter.labels(outcome).inc(outcomes.count(outcome))


def audit_written(seconds: float) -> None:
    _m().audit_seconds.observe(seconds)


def audit_failed(stage: str) -> None:
    """`commit` (the database refused the group's transaction) or `timeout` (a request stopped
    waiting)."""
    _m().audit_failures.labels(stage).inc()


def model_serving(subject: str, version: str | None, replaced: str | None = None) -> None:
    """`version` of the subject's model serves now in this worker (and `replaced` no longer)."""
    gauge = _m().model_info
    if replaced is not None and replaced != version:
        gauge.labels(subject, str(replaced)).set(0)
    if version is not None:
        gauge.labels(subject, str(version)).set(1)


def reload_failed(subject: str, stage: str) -> None:
    _m().reload_failures.labels(subject, stage).inc()


def rate_limited(endpoint: str) -> None:
    _m().rate_limited.labels(endpoint).inc()


# -- route templates -------------------------------------------------------------------------------
def route_template(scope) -> str | None:
    """The template of the route a request was routed to ("/v1/scores"), None before routing."""
    route = scope.get("route")
    return scope.get("root_path", "") + route.path if isinstance(route, Route) else None


class Endpoints:
    """A raw path -> the template of the route of the mounted apps that matches it, else UNMATCHED
    (BentoML's own probes keep their path). The templates are the apps' OpenAPI paths (class-view
    routes sit in an included router) and their plain routes, read once, on the first call."""

    def __init__(self, mounts: Mapping[str, object]):
        self.mounts = mounts  # prefix -> a FastAPI app
        self._patterns: list[tuple[re.Pattern, str]] | None = None

    def __call__(self, path: str) -> str:
        if path in BENTOML_PATHS:
            return path
        if self._patterns is None:
            self._patterns = [(_template_regex(prefix + t), prefix + t) for prefix, app in self.mounts.items()
                              for t in _templates(app)]
        for pattern, template in self._patterns:
            if pattern.match(path):
                return template
        return UNMATCHED


def _templates(app) -> list[str]:
    plain = [r.path for r in app.routes if isinstance(r, Route)]
    return list(dict.fromkeys([*app.openapi().get("paths", {}), *plain]))


def _template_regex(template: str) -> re.Pattern:
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile("^" + "".join(("[^/]+" if ":" not in p else ".+") if p.startswith("{") else re.escape(p)
                                    for p in parts if p) + "$")


class RequestMetrics:
    """ASGI middleware of the /v1 app: gives each request its id (`request.state.request_id`, and
    REQUEST_ID for log lines), then records its answer, outcome and latency by route template, and
    logs one `request` event when the coopscore loggers are at INFO (COOPSCORE_JSON_LOGS).
    A route sets `request.state.outcome` when the status alone does not say it."""

    def __init__(self, app, endpoints: Callable[[str], str]):
        self.app, self.endpoints = app, endpoints

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        state = scope.setdefault("state", {})
        request_id = state.setdefault("request_id", uuid.uuid4().hex)
        token = REQUEST_ID.set(request_id)
        status = 500

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            seconds = time.perf_counter() - started
            endpoint = route_template(scope) or self.endpoints(scope["path"])
            outcome = state.get("outcome") or outcome_of(status)
            answered(endpoint, outcome, seconds)
            if log.isEnabledFor(logging.INFO):
                log.info("request", extra={"endpoint": endpoint, "status": status, "outcome": outcome,
                                           "duration_ms": round(seconds * 1000, 3)})
            REQUEST_ID.reset(token)


# -- BentoML's own series --------------------------------------------------------------------------
_SAMPLE = re.compile(r'^(?P<name>[^{\s]+)\{(?P<labels>.*)\}\s+(?P<value>\S+)$')
_ENDPOINT = re.compile(r'(?<![\w])endpoint="((?:[^"\\]|\\.)*)"')


def relabel_endpoints(text: str, template: Callable[[str], str]) -> str:
    """Rewrite every `endpoint="<raw path>"` label in a Prometheus text exposition to the path's route
    template, adding up the series that become one (counters, histogram buckets, in-progress gauges)."""
    out: list[str] = []
    merged: dict[str, int] = {}  # the rewritten series -> its index in `out`
    values: dict[int, float] = {}
    for line in text.splitlines():
        sample = _SAMPLE.match(line) if not line.startswith("#") else None
        found = _ENDPOINT.search(sample["labels"]) if sample else None
        if found is None:
            out.append(line)
            continue
        raw = found.group(1).replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
        labels = _ENDPOINT.sub(lambda _: f'endpoint="{template(raw)}"', sample["labels"], count=1)
        series = f"{sample['name']}{{{labels}}}"
        value = float(sample["value"])
        if series in merged:
            values[merged[series]] += value
            continue
        merged[series] = len(out)
        values[len(out)] = value
        out.append(series)
    for index, value in values.items():
        out[index] = f"{out[index]} {value!r}"
    return "\n".join(out) + "\n"


def shadowed(subject: str, outcome: str, count: int = 1) -> None:
    """`recorded`, `skipped` or `failed` shadow scores (serving/shadow.py)."""
    if count:
        _m().shadow.labels(subject, outcome).inc(count)
