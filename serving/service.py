"""The coopscore scoring service, as a partner bank sees it.

    POST /v1/scores                 score one loan application of a member or a cooperative
    POST /v1/scores:batch           score up to 1,000 applications in one call
    GET  /v1/reason-codes           the stable catalogue of reason codes and their texts
    POST /v1/consents               the platform records a subject's consent for a bank
    POST /v1/consents/{id}/revoke   ... and its withdrawal
    GET  /v1/subjects/{type}/{id}/consents     a subject's consents
    GET  /v1/subjects/{type}/{id}/access-log   who looked at a subject's data, when, with what answer
    GET  /v1/status                 the model versions serving now, and the last reload check
    GET  /v1/docs                   interactive API docs (OpenAPI at /v1/openapi.json)
    GET  /healthz /readyz           BentoML's liveness and readiness probes

Every call but reason-codes, status and docs needs a bank's API key (`Authorization: Bearer ...`,
issued by `coopscore banks add`) with the right scope. A bank gets a subject's score only while the
subject's consent for that bank is active. Every decision about a subject is written to the
append-only audit log before the answer leaves; if it cannot be written, nothing is answered.

Run it with `coopscore serve` (or `bentoml serve serving.service:CoopScore`). The API is a FastAPI
app mounted on the BentoML service, so that every error has the status and body we choose, and the
OpenAPI spec documents them.
"""
from __future__ import annotations

import gc
import logging
import re
import time
import traceback
import uuid
from datetime import datetime
from typing import Annotated, Literal

import anyio
import bentoml
from fastapi import FastAPI, Path, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from pydantic import BaseModel, ConfigDict, Field

from settings import get_paths, get_settings
from features.reasons import REASONS
from scoring import disclosure, limit, policy, schemas
from scoring.disclosure import Disclosure
from scoring.errors import ApiError, AuditUnavailable, Forbidden, InvalidApplication, field
from scoring.scorer import Scorer
from serving import json_logs, metrics
from serving.access import authenticate, rate_limit
from serving.audit_writer import AuditWriter
from serving.body_limit import BodyLimit
from serving.json_not_found import JsonNotFound
from serving.model_watch import ChampionWatcher
from serving.rate_limit import RateLimiter
from serving.shadow import ShadowRecorder
from records import PURPOSES, AuditEntry, NotAllowed, Principal, Records, RecordsError
from serving.security_headers import SecurityHeaders
from serving.web.app import web
from serving.web.links import redact_member_tokens

log = logging.getLogger("coopscore.service")
# A member's page link is their key to it: it never reaches a log line, even with the access log on.
for _name in ("bentoml.access", "uvicorn.access", "uvicorn.error"):
    logging.getLogger(_name).addFilter(redact_member_tokens)

api = FastAPI(
    title="coopscore scoring API",
    version="1",
    description="Credit scores for members and cooperatives of Viet Nam's e-cooperatives: "
                "probability of default, score, grade and the reasons, exact for the score given. "
                "Only for subjects who consented to the calling bank; every answer is audited.",
    responses={code: {"model": schemas.ErrorBody} for code in (400, 401, 403, 404, 405, 413, 422, 429, 503)},
)
api.add_middleware(BodyLimit)
# Outermost in the API: the request id, then the answer's outcome and latency by route template.
ENDPOINTS = metrics.Endpoints({"/v1": api, "/app": web})
api.add_middleware(metrics.RequestMetrics, endpoints=ENDPOINTS)


# -- errors: always our JSON body, never a stack trace ------------------------------------------------
def _request_id(request: Request) -> str:
    """The server's own id of this request: always ours, so that two clients can never collide
    in the audit log. A client's X-Request-Id is kept beside it (`_client_request_id`)."""
    if not hasattr(request.state, "request_id"):
        request.state.request_id = uuid.uuid4().hex
    return request.state.request_id


CLIENT_REQUEST_ID = re.compile(r"^[\x21-\x7e]{1,64}$")  # printable ASCII, no spaces, at most 64


def _client_request_id(request: Request) -> str | None:
    """The client's X-Request-Id, kept in the audit log beside ours; refused (never cut short) when
    it is longer than 64 characters or not printable ASCII."""
    given = request.headers.get("x-request-id")
    if given is None:
        return None
    if not CLIENT_REQUEST_ID.match(given):
        raise ApiError(400, "invalid_request", "the X-Request-Id header must be 1 to 64 printable "
                       "ASCII characters without spaces; the server assigns its own request id "
                       "and keeps yours beside it.", [field("header.x-request-id",
                                                           f"{len(given)} characters, or not printable ASCII")])
    return given


def _error(request: Request, status: int, error: str, message: str, fields=None, headers=None):
    request.state.outcome = metrics.outcome_of(status, error)
    body = schemas.ErrorBody(error=error, message=message, request_id=_request_id(request),
                             fields=fields or [])
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


@api.exception_handler(ApiError)
async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    return _error(request, exc.status, exc.error, exc.message, exc.fields, exc.headers)


@api.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """The framework's own errors (no such path, a body that is not JSON) in our body too."""
    error = {400: "invalid_request", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
    message = {404: "no such endpoint: see /v1/docs for the API",
               400: f"the body could not be read as JSON: {exc.detail}"}.get(exc.status_code, str(exc.detail))
    return _error(request, exc.status_code, error, message, headers=getattr(exc, "headers", None))


@api.exception_handler(RequestValidationError)
async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    fields = [{"field": ".".join(str(p) for p in e["loc"] if p != "body"), "problem": e["msg"]}
              for e in exc.errors()]
    summary = "; ".join(f"{f['field'] or 'body'}: {f['problem']}" for f in fields)
    return _error(request, 422, "invalid_request", f"the request is not valid: {summary}", fields)


def _json(model: BaseModel) -> Response:
    """Our answers are built by our own code from validated parts: serialise once, without
    FastAPI validating the whole response model again (response_model still documents it)."""
    return Response(model.model_dump_json(), media_type="application/json")


def _log_failure(what: str, request_id: str, exc: BaseException) -> None:
    """Log a failure by request id, exception type and code location only: the exception's own
    message may quote a subject id, a score or a SQL parameter, which never go to the server log."""
    where = " <- ".join(f"{f.filename}:{f.lineno} in {f.name}"
                        for f in reversed(traceback.extract_tb(exc.__traceback__)[-4:]))
    log.error("%s (request %s): %s at %s", what, request_id, type(exc).__name__, where,
              extra={json_logs.REQUEST_ID_EXTRA: request_id})


@api.exception_handler(Exception)
async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    _log_failure("unexpected error", _request_id(request), exc)
    return _error(request, 500, "internal_error", "something went wrong on our side; the request "
                  "id identifies it in our logs. Nothing was scored.")


# -- bodies of the consent and access-log endpoints ----------------------------------------------
ConsentPurpose = Literal[PURPOSES]  # type: ignore[valid-type]


class ConsentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject_type: schemas.SubjectType
    subject_id: str = Field(..., pattern=schemas.SUBJECT_ID_PATTERN)
    bank_id: str = Field(..., min_length=2, max_length=40, description="The one lender consented to")
    purpose: ConsentPurpose = Field(..., description="What the subject agreed to: one stated purpose")
    expires_at: datetime = Field(..., description="When the consent ends (ISO date-time); consent is "
                                 "never open-ended and runs at most the configured time (12 months)")
    source: Literal["application_form", "member_page"] = Field(
        ..., description="Where the member gave it on the platform (an operator records consents "
                         "given on paper with `coopscore consents grant`)")


class RevokeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: Literal["application_form", "member_page"] = Field(
        ..., description="Where the member withdrew it on the platform")


class Consent(BaseModel):
    consent_id: str
    subject_type: str
    subject_id: str
    bank_id: str
    purpose: str
    granted_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None
    source: str
    granted_by: str | None = None
    revoked_by: str | None = None
    revoke_source: str | None = None


class Access(BaseModel):
    at: datetime
    bank_id: str
    endpoint: str
    outcome: str
    http_status: int
    model_version: str | None = None
    request_id: str


class ServingStatus(BaseModel):
    models: dict[str, str | None] = Field(..., description="subject -> model version serving now")
    reload_failures: dict[str, str] = Field(..., description="subject -> version that failed to load, and why")
    shadow: dict[str, str] = Field(default_factory=dict, description=(
        "subject -> the `challenger` version scored in the shadow (empty: none, or the shadow is off)"))
    shadow_failures: dict[str, str] = Field(default_factory=dict, description=(
        "subject -> challenger version that could not be shadowed, and why"))
    snapshot_date: str


SUBJECT_TYPES = policy.SUBJECT_TYPES
SETTINGS = get_settings()  # read once, when the service module is loaded by each worker
if SETTINGS.json_logs:
    json_logs.install()
SubjectId = Annotated[str, Path(pattern=schemas.SUBJECT_ID_PATTERN, examples=["TV0000001"])]
# Worker processes: scoring is CPU-bound Python, so one process per core (each loads the models
# and the snapshot, about 200 MB at the demo size). The rate limit is split between them.
WORKERS = SETTINGS.workers
# BentoML's per-request access log line costs CPU on every request; the audit log already records
# every decision. COOPSCORE_ACCESS_LOG=1 turns it back on (for debugging traffic).
ACCESS_LOG = SETTINGS.access_log


# A batch's distinct as_of dates are each a point-in-time history query: at most this many per call.
BATCH_MAX_AS_OF_DATES = SETTINGS.batch_max_as_of_dates
# A batch still computing after this long is cancelled (BentoML's own timeout is 60 s): the client
# gets a clear 503 instead of a 504 while work nobody will receive goes on.
BATCH_DEADLINE_SECONDS = SETTINGS.batch_deadline_seconds


# BentoML records an OpenTelemetry span for every request even with no exporter configured (its
# sampler always records); that costs about 0.4 ms of CPU per request. COOPSCORE_TRACING=1 keeps it
# for a deployment that exports traces (set tracing.exporter_type in BentoML's configuration).
TRACING = SETTINGS.tracing


@bentoml.service(name="coopscore", workers=WORKERS, traffic={"timeout": 60},
                  logging={"access": {"enabled": ACCESS_LOG}},
                  tracing={} if TRACING else {"excluded_urls": [".*"]})
@bentoml.asgi_app(api, path="/v1")
@bentoml.asgi_app(web, path="/app")
class CoopScore:
    def __init__(self) -> None:
        paths = get_paths()
        try:
            self.records = Records(paths)
        except RecordsError as exc:
            raise SystemExit(f"coopscore cannot open its records database: {exc}") from None
        self.scorer = Scorer(paths)
        limit.prepare(self.scorer)  # the monthly net inflows of the latest data, once, before serving
        self.disclosure = Disclosure(self.records, self.scorer.knows)
        self.audit_writer = AuditWriter(self.records)
        # the challenger beside the champion, recorded after each answer by a thread of its own
        self.shadow = (ShadowRecorder(self.scorer, self.records, SETTINGS.shadow_queue, SETTINGS.reload_seconds or 60.0)
                       if SETTINGS.shadow else None)
        api.state.records, api.state.service = self.records, self
        api.state.limiter = RateLimiter.from_settings(processes=WORKERS)
        web.state.scorer, web.state.records, web.state.paths = self.scorer, self.records, paths
        self.watcher = ChampionWatcher(SUBJECT_TYPES, self.scorer.served_version,
                                       self.scorer.champion_version, self._reload)
        self.watcher.start()
        for subject in SUBJECT_TYPES:
            metrics.model_serving(subject, self.scorer.served_version(subject))
        # What is loaded now (frameworks, models, snapshot: ~400k objects) lives as long as the
        # process. Out of the garbage collector's sight, or each full collection walks all of it
        # (about 250 ms at the demo size) and every request in flight waits: the p99 at 200 req/s.
        gc.freeze()

    def __metrics__(self, content: str) -> str:
        """BentoML's hook on GET /metrics: its own series label `endpoint` with the raw path (a member's
        page token, a subject id); they are served with the route template instead."""
        return metrics.relabel_endpoints(content, ENDPOINTS)

    def _reload(self, subject: str, version: str) -> None:
        self.scorer.reload(subject, version)
        gc.freeze()  # the new model, too, stays until the next promotion

    # -- scoring ------------------------------------------------------------------------------------
    async def score_one(self, body: schemas.ScoreRequest, request: Request,
                        principal: Principal) -> Response:
        """POST /v1/scores (the route is `score` below the class): consent, score, audit, answer."""
        request_id, client_id = _request_id(request), _client_request_id(request)
        subject = (body.subject_type, body.subject_id)
        await self._require(principal, "scores:read", request_id, "/v1/scores", subject, client_id)
        rate_limit(request, principal)
        refusal = self.disclosure.refusal(principal.bank_id, *subject)
        if refusal is None:
            try:
                answer = self.scorer.score(body, request_id=request_id)
                limit.attach(self.scorer, [body], [answer])  # the recommended limit, when scored
            except ApiError as exc:
                refusal = exc
        if refusal is not None:
            await self._audit_async([disclosure.refused_entry(principal, request_id, "/v1/scores", *subject,
                                                              refusal, client_id)], request_id)
            raise refusal
        await self._audit_async([disclosure.answered_entry(principal, request_id, "/v1/scores", answer,
                                                           Scorer.features_used(answer), client_id)],
                                request_id)
        request.state.outcome = answer.status
        if self.shadow is not None:
            self.shadow.submit(request_id, answer, body.application.amount_vnd, body.application.term_months)
        return _json(answer)

    async def score_many(self, body: schemas.BatchScoreRequest, request: Request,
                         principal: Principal) -> Response:
        """POST /v1/scores:batch: each item through the same consent, scoring and audit steps as
        POST /v1/scores. The work runs off the event loop one as_of date at a time; between dates the
        service checks that the client is still there and that the deadline has not passed, and
        stops if not: the audit log then says `cancelled` for every item, nothing was delivered."""
        started = time.monotonic()
        request_id, client_id = _request_id(request), _client_request_id(request)
        items = body.applications
        endpoint = "/v1/scores:batch"
        await self._require(principal, "scores:batch", request_id, endpoint,
                            (items[0].subject_type, items[0].subject_id), client_id)
        too_costly = policy.batch_refusal([i.as_of_date for i in items], BATCH_MAX_AS_OF_DATES)
        if too_costly is not None:
            raise too_costly
        rate_limit(request, principal, cost=len(items))
        item_ids = [f"{request_id}-{i}" for i in range(len(items))]
        results: list = await anyio.to_thread.run_sync(
            lambda: [self.disclosure.refusal(principal.bank_id, i.subject_type, i.subject_id) for i in items])
        by_date: dict = {}
        for i, item in enumerate(items):
            if results[i] is None:
                by_date.setdefault(item.as_of_date, []).append(i)
        for idx in by_date.values():
            gone = await request.is_disconnected()
            late = time.monotonic() - started > BATCH_DEADLINE_SECONDS
            if gone or late:
                await self._cancel_batch(principal, items, item_ids, endpoint, client_id, request_id,
                                         "client_gone" if gone else "deadline")
                if gone:
                    return Response(status_code=499)  # nobody is listening; nginx's "client closed"
                raise ApiError(503, "batch_timeout", f"the batch was still computing after "
                               f"{BATCH_DEADLINE_SECONDS:.0f} s and was cancelled; nothing was scored. "
                               "Send fewer distinct as_of dates per call.")
            scored = await anyio.to_thread.run_sync(
                self._score_with_limits, [items[i] for i in idx], [item_ids[i] for i in idx])
            for i, outcome in zip(idx, scored):
                results[i] = outcome
        entries, out = [], []
        for i, (item, outcome) in enumerate(zip(items, results)):
            if isinstance(outcome, ApiError):
                entries.append(disclosure.refused_entry(principal, item_ids[i], endpoint, item.subject_type,
                                                        item.subject_id, outcome, client_id))
                out.append(schemas.BatchItemError(index=i, http_status=outcome.status, error=outcome.error,
                                                  message=outcome.message, fields=outcome.fields))
            else:
                entries.append(disclosure.answered_entry(principal, item_ids[i], endpoint, outcome,
                                                         Scorer.features_used(outcome), client_id))
                out.append(outcome)
        await self._audit_async(entries, request_id)
        if self.shadow is not None:
            for item, item_id, outcome in zip(items, item_ids, results):
                self.shadow.submit(item_id, outcome, item.application.amount_vnd, item.application.term_months)
        metrics.batch_items([metrics.outcome_of(r.status, r.error) if isinstance(r, ApiError) else r.status
                             for r in results])
        return _json(schemas.BatchScoreResponse.model_construct(request_id=request_id, results=out))

    def _score_with_limits(self, requests: list, ids: list[str]) -> list:
        """Score, then attach each scored answer's recommended limit (scoring/limit.py)."""
        answers = self.scorer.score_many(requests, ids)
        limit.attach(self.scorer, requests, answers)
        return answers

    async def _cancel_batch(self, principal, items, item_ids, endpoint, client_id, request_id,
                            why: str) -> None:
        """Every item of a cancelled batch is in the audit log as `cancelled`: computed or not,
        none of it was delivered."""
        error = ApiError(499 if why == "client_gone" else 503, "cancelled",
                         f"batch cancelled ({why}); nothing was delivered")
        error.internal_outcome = f"cancelled_{why}"
        await self._audit_async([disclosure.refused_entry(principal, item_ids[i], endpoint, item.subject_type,
                                                          item.subject_id, error, client_id)
                                 for i, item in enumerate(items)], request_id)

    @api.get("/reason-codes")
    def reason_codes(self) -> list[dict[str, str]]:
        """The stable reason codes, with their Vietnamese and English texts."""
        return [{"code": r.code, "text_vi": r.vi, "text_en": r.en} for r in REASONS.values()]

    @api.get("/status", response_model=ServingStatus)
    def status(self) -> ServingStatus:
        """Which model versions serve now (no personal data)."""
        return ServingStatus(models={s: self.scorer.served_version(s) for s in SUBJECT_TYPES},
                             reload_failures=dict(self.watcher.status.failed),
                             shadow=dict(self.shadow.models.versions) if self.shadow else {},
                             shadow_failures=dict(self.shadow.models.failed) if self.shadow else {},
                             snapshot_date=self.scorer.snapshot_date.isoformat())

    # -- consents and the access log: the platform's own key only --------------------------------------
    @api.post("/consents", response_model=Consent, status_code=201)
    def grant_consent(self, body: ConsentRequest, request: Request,
                      principal: Principal = Security(authenticate)) -> Consent:
        """The platform records a subject's explicit consent for one lender, one purpose, until a
        date (at most 12 months). A lender's key can never do this."""
        request_id, client_id = _request_id(request), _client_request_id(request)
        self._require_sync(principal, "consents:write", request_id, "/v1/consents",
                           (body.subject_type, body.subject_id), client_id)
        if not self.scorer.knows(body.subject_type, body.subject_id):
            raise ApiError(404, "unknown_subject", f"no {body.subject_type} with id "
                           f"'{body.subject_id}' on the platform; a consent needs a real subject.",
                           [field("subject_id", "not on the platform")])
        try:
            row = self.records.grant_consent(body.subject_type, body.subject_id, body.bank_id,
                                             purpose=body.purpose, expires_at=body.expires_at,
                                             source=body.source, actor=principal)
        except NotAllowed as exc:
            raise Forbidden(str(exc)) from None
        except LookupError as exc:
            raise ApiError(404, "unknown_bank", str(exc), [field("bank_id", "no such lender")]) from None
        except ValueError as exc:
            raise InvalidApplication(str(exc)) from None
        return Consent(**row)

    @api.post("/consents/{consent_id}/revoke", response_model=Consent)
    def revoke_consent(self, consent_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")],
                       body: RevokeRequest, request: Request,
                       principal: Principal = Security(authenticate)) -> Consent:
        """The platform records a withdrawal: from now on that lender gets 403 for this subject."""
        request_id, client_id = _request_id(request), _client_request_id(request)
        self._require_sync(principal, "consents:write", request_id, "/v1/consents/revoke", ("", ""),
                           client_id)
        try:
            return Consent(**self.records.revoke_consent(consent_id, source=body.source, actor=principal))
        except NotAllowed as exc:
            raise Forbidden(str(exc)) from None
        except LookupError as exc:
            raise ApiError(404, "unknown_consent", str(exc)) from None

    @api.get("/subjects/{subject_type}/{subject_id}/consents", response_model=list[Consent])
    def consents(self, subject_type: schemas.SubjectType, subject_id: SubjectId, request: Request,
                 principal: Principal = Security(authenticate)) -> list[Consent]:
        """Every consent of a subject, newest first (the platform's key; the read is audited)."""
        return self._read(request, principal, "/v1/subjects/consents", subject_type, subject_id,
                          lambda: [Consent(**row) for row in self.records.list_consents(subject_type, subject_id)])

    @api.get("/subjects/{subject_type}/{subject_id}/access-log", response_model=list[Access])
    def access_log(self, subject_type: schemas.SubjectType, subject_id: SubjectId, request: Request,
                   principal: Principal = Security(authenticate)) -> list[Access]:
        """Who asked about this subject, when, and what was answered, newest first (the platform's
        key; the read is audited)."""
        return self._read(request, principal, "/v1/subjects/access-log", subject_type, subject_id,
                          lambda: [Access(**{k: row[k] for k in Access.model_fields if k in row})
                                   for row in self.records.access_log(subject_type, subject_id)])

    # -- helpers ---------------------------------------------------------------------------------
    def _read(self, request, principal, endpoint, subject_type, subject_id, read):
        request_id, client_id = _request_id(request), _client_request_id(request)
        self._require_sync(principal, "audit:read", request_id, endpoint, (subject_type, subject_id), client_id)
        rows = read()
        self._audit([disclosure.read_entry(principal, request_id, endpoint, subject_type, subject_id,
                                           len(rows), client_id)], request_id)
        return rows

    @staticmethod
    def _scope_refusal(principal: Principal, scope: str) -> Forbidden | None:
        if scope in principal.scopes:
            return None
        return Forbidden(f"the key {principal.key_id} of {principal.bank_id} does not have the scope "
                         f"'{scope}' (it has: {', '.join(sorted(principal.scopes)) or 'none'}).")

    async def _require(self, principal, scope, request_id, endpoint, subject, client_id) -> None:
        """A missing scope is refused with 403, and the refusal is audited like any other."""
        refusal = self._scope_refusal(principal, scope)
        if refusal is not None:
            await self._audit_async([disclosure.refused_entry(principal, request_id, endpoint, *subject,
                                                              refusal, client_id)], request_id)
            raise refusal

    def _require_sync(self, principal, scope, request_id, endpoint, subject, client_id) -> None:
        refusal = self._scope_refusal(principal, scope)
        if refusal is not None:
            self._audit([disclosure.refused_entry(principal, request_id, endpoint, *subject, refusal,
                                                  client_id)], request_id)
            raise refusal

    async def _audit_async(self, entries: list[AuditEntry], request_id: str) -> None:
        """`_audit` for async routes: the commit is awaited, the event loop keeps serving."""
        try:
            await self.audit_writer.write_async(entries)
        except Exception as exc:
            _log_failure(f"could not write {len(entries)} audit rows", request_id, exc)
            raise AuditUnavailable() from None

    def _audit(self, entries: list[AuditEntry], request_id: str) -> None:
        """Written before the answer leaves: no audit row, no answer."""
        try:
            self.audit_writer.write(entries)
        except Exception as exc:
            _log_failure(f"could not write {len(entries)} audit rows", request_id, exc)
            raise AuditUnavailable() from None


# The single-score route is a plain async route, not a class view like the others: BentoML resolves a
# class view's `self` through a synchronous dependency, i.e. one thread-pool hop per request, and at
# 200 requests/s those hops (and the GIL hand-overs between threads) made the slow tail. Here the
# whole request runs on the worker's event loop; only the audit commit waits, and it is awaited.
@api.post("/scores", response_model=schemas.ScoreResponse)
async def score(body: schemas.ScoreRequest, request: Request,
                principal: Principal = Security(authenticate)) -> Response:
    """Score one application from data strictly before as_of_date."""
    service: CoopScore = request.app.state.service
    return await service.score_one(body, request, principal)


@api.post("/scores:batch", response_model=schemas.BatchScoreResponse)
async def score_batch(body: schemas.BatchScoreRequest, request: Request,
                      principal: Principal = Security(authenticate)) -> Response:
    """Score 1 to 1,000 applications (at most 31 distinct as_of dates); each result is a score or
    that item's error, in order."""
    service: CoopScore = request.app.state.service
    return await service.score_many(body, request, principal)


# BentoML wraps the app in these in the order added, the first outermost (inside its own timeout,
# metrics and access-log middlewares): the headers also reach JsonNotFound's rewritten 404.
CoopScore.add_asgi_middleware(SecurityHeaders)
CoopScore.add_asgi_middleware(JsonNotFound)  # even unrouted paths answer in JSON
