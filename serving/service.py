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
import json
import logging
import os
import uuid
from datetime import datetime, timezone
from typing import Annotated

import bentoml
from fastapi import FastAPI, Path, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from pydantic import BaseModel, ConfigDict, Field

from coopscore.paths import get_paths
from features.reasons import REASONS
from serving import schemas
from serving.access import authenticate, rate_limit, require
from serving.audit_writer import AuditWriter
from serving.body_limit import BodyLimit
from serving.errors import ApiError
from serving.json_not_found import JsonNotFound
from serving.model_watch import ChampionWatcher
from serving.rate_limit import RateLimiter
from serving.records import AuditEntry, Principal, Records, RecordsError, features_sha256
from serving.scorer import Scorer
from serving.web.app import web

log = logging.getLogger("coopscore.service")

api = FastAPI(
    title="coopscore scoring API",
    version="1",
    description="Credit scores for members and cooperatives of Viet Nam's e-cooperatives: "
                "probability of default, score, grade and the reasons, exact for the score given. "
                "Only for subjects who consented to the calling bank; every answer is audited.",
    responses={code: {"model": schemas.ErrorBody} for code in (400, 401, 403, 404, 405, 413, 422, 429, 503)},
)
api.add_middleware(BodyLimit)


# -- errors: always our JSON body, never a stack trace ------------------------------------------------
def _request_id(request: Request) -> str:
    if not hasattr(request.state, "request_id"):
        given = request.headers.get("x-request-id", "")
        request.state.request_id = given if 0 < len(given) <= 64 else uuid.uuid4().hex
    return request.state.request_id


def _error(request: Request, status: int, error: str, message: str, fields=None, headers=None):
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


@api.exception_handler(Exception)
async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error in request %s", _request_id(request))
    return _error(request, 500, "internal_error", "something went wrong on our side; the request "
                  "id identifies it in our logs. Nothing was scored.")


# -- bodies of the consent and access-log endpoints ----------------------------------------------
class ConsentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subject_type: schemas.SubjectType
    subject_id: str = Field(..., pattern=schemas.SUBJECT_ID_PATTERN)
    bank_id: str = Field(..., min_length=2, max_length=40)
    purpose: str = Field("credit_scoring", min_length=1, max_length=64,
                         description="What the subject agreed to: a stated purpose, nothing else")
    expires_at: datetime = Field(..., description="When the consent ends (ISO date-time); consent "
                                 "is never open-ended")


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
    snapshot_date: str


SUBJECT_TYPES = ("member", "cooperative")
SubjectId = Annotated[str, Path(pattern=schemas.SUBJECT_ID_PATTERN, examples=["TV0000001"])]
# Worker processes: scoring is CPU-bound Python, so one process per core (each loads the models
# and the snapshot, about 200 MB at the demo size). The rate limit is split between them.
WORKERS = int(os.environ.get("COOPSCORE_WORKERS", "2"))
# BentoML's per-request access log line costs CPU on every request; the audit log already records
# every decision. COOPSCORE_ACCESS_LOG=1 turns it back on (for debugging traffic).
ACCESS_LOG = os.environ.get("COOPSCORE_ACCESS_LOG", "0") == "1"


# BentoML records an OpenTelemetry span for every request even with no exporter configured (its
# sampler always records); that costs about 0.4 ms of CPU per request. COOPSCORE_TRACING=1 keeps it
# for a deployment that exports traces (set tracing.exporter_type in BentoML's configuration).
TRACING = os.environ.get("COOPSCORE_TRACING", "0") == "1"


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
        self.audit_writer = AuditWriter(self.records)
        api.state.records, api.state.service = self.records, self
        api.state.limiter = RateLimiter.from_env(processes=WORKERS)
        web.state.scorer, web.state.records, web.state.paths = self.scorer, self.records, paths
        self.watcher = ChampionWatcher(SUBJECT_TYPES, self.scorer.served_version,
                                       self.scorer.champion_version, self._reload)
        self.watcher.start()
        # What is loaded now (frameworks, models, snapshot: ~400k objects) lives as long as the
        # process. Out of the garbage collector's sight, or each full collection walks all of it
        # (about 250 ms at the demo size) and every request in flight waits: the p99 at 200 req/s.
        gc.freeze()

    def _reload(self, subject: str, version: str) -> None:
        self.scorer.reload(subject, version)
        gc.freeze()  # the new model, too, stays until the next promotion

    # -- scoring ------------------------------------------------------------------------------------
    async def score_one(self, body: schemas.ScoreRequest, request: Request,
                        principal: Principal) -> Response:
        """POST /v1/scores (the route is `score` below the class): consent, score, audit, answer."""
        require(principal, "scores:read")
        rate_limit(request, principal)
        request_id = _request_id(request)
        refusal = self._consent_refusal(principal, body)
        if refusal is not None:
            await self._audit_async([self._refused(principal, request_id, "/v1/scores", body, refusal)])
            raise refusal
        try:
            answer = self.scorer.score(body, request_id=request_id)
        except ApiError as exc:
            await self._audit_async([self._refused(principal, request_id, "/v1/scores", body, exc)])
            raise
        await self._audit_async([self._answered(principal, request_id, "/v1/scores", answer)])
        return _json(answer)

    @api.post("/scores:batch", response_model=schemas.BatchScoreResponse)
    def score_batch(self, body: schemas.BatchScoreRequest, request: Request,
                    principal: Principal = Security(authenticate)) -> schemas.BatchScoreResponse:
        """Score 1 to 1,000 applications; each result is a score or that item's error, in order."""
        require(principal, "scores:batch")
        rate_limit(request, principal, cost=len(body.applications))
        request_id = _request_id(request)
        results: list = [None] * len(body.applications)
        allowed = []
        for i, item in enumerate(body.applications):
            refusal = self._consent_refusal(principal, item)
            if refusal is None:
                allowed.append(i)
            else:
                results[i] = refusal
        scored = self.scorer.score_many([body.applications[i] for i in allowed],
                                        [f"{request_id}-{i}" for i in allowed])
        for i, outcome in zip(allowed, scored):
            results[i] = outcome
        entries, out = [], []
        for i, (item, outcome) in enumerate(zip(body.applications, results)):
            item_id = f"{request_id}-{i}"
            if isinstance(outcome, ApiError):
                entries.append(self._refused(principal, item_id, "/v1/scores:batch", item, outcome))
                out.append(schemas.BatchItemError(index=i, http_status=outcome.status, error=outcome.error,
                                                  message=outcome.message, fields=outcome.fields))
            else:
                entries.append(self._answered(principal, item_id, "/v1/scores:batch", outcome))
                out.append(outcome)
        self._audit(entries)
        return _json(schemas.BatchScoreResponse.model_construct(request_id=request_id, results=out))

    @api.get("/reason-codes")
    def reason_codes(self) -> list[dict[str, str]]:
        """The stable reason codes, with their Vietnamese and English texts."""
        return [{"code": r.code, "text_vi": r.vi, "text_en": r.en} for r in REASONS.values()]

    @api.get("/status", response_model=ServingStatus)
    def status(self) -> ServingStatus:
        """Which model versions serve now (no personal data)."""
        return ServingStatus(models={s: self.scorer.served_version(s) for s in SUBJECT_TYPES},
                             reload_failures=dict(self.watcher.status.failed),
                             snapshot_date=self.scorer.snapshot_date.isoformat())

    # -- consents and the access log: called by the platform itself --------------------------------
    @api.post("/consents", response_model=Consent, status_code=201)
    def grant_consent(self, body: ConsentRequest, principal: Principal = Security(authenticate)) -> Consent:
        """Record a subject's explicit consent to be scored for one bank, for one purpose, until a date."""
        require(principal, "consents:write")
        if not self.scorer.knows(body.subject_type, body.subject_id):
            raise ApiError(404, "unknown_subject", f"no {body.subject_type} with id "
                           f"'{body.subject_id}' on the platform; a consent needs a real subject.")
        try:
            row = self.records.grant_consent(body.subject_type, body.subject_id, body.bank_id,
                                             purpose=body.purpose, expires_at=body.expires_at,
                                             source="api")
        except LookupError as exc:
            raise ApiError(404, "unknown_bank", str(exc)) from None
        except ValueError as exc:
            raise ApiError(422, "invalid_request", str(exc),
                           [{"field": "expires_at", "problem": str(exc)}]) from None
        return Consent(**row)

    @api.post("/consents/{consent_id}/revoke", response_model=Consent)
    def revoke_consent(self, consent_id: Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")], principal: Principal = Security(authenticate)) -> Consent:
        """Withdraw a consent: from now on that bank gets 403 for this subject."""
        require(principal, "consents:write")
        try:
            return Consent(**self.records.revoke_consent(consent_id))
        except LookupError as exc:
            raise ApiError(404, "unknown_consent", str(exc)) from None

    @api.get("/subjects/{subject_type}/{subject_id}/consents", response_model=list[Consent])
    def consents(self, subject_type: schemas.SubjectType, subject_id: SubjectId,
                 principal: Principal = Security(authenticate)) -> list[Consent]:
        """Every consent of a subject, newest first."""
        require(principal, "audit:read")
        return [Consent(**row) for row in self.records.list_consents(subject_type, subject_id)]

    @api.get("/subjects/{subject_type}/{subject_id}/access-log", response_model=list[Access])
    def access_log(self, subject_type: schemas.SubjectType, subject_id: SubjectId,
                   principal: Principal = Security(authenticate)) -> list[Access]:
        """Who asked about this subject, when, and what was answered (newest first)."""
        require(principal, "audit:read")
        return [Access(**{k: row[k] for k in Access.model_fields if k in row})
                for row in self.records.access_log(subject_type, subject_id)]

    # -- helpers ---------------------------------------------------------------------------------
    def _consent_refusal(self, principal: Principal, item: schemas.ScoreRequest) -> ApiError | None:
        if not self.scorer.knows(item.subject_type, item.subject_id):
            return ApiError(404, "unknown_subject", f"no {item.subject_type} with id "
                            f"'{item.subject_id}' on the platform; check the id and the subject_type.")
        check = self.records.consent_for(item.subject_type, item.subject_id, principal.bank_id)
        if check.active:
            return None
        return ApiError(403, "no_consent", f"{item.subject_type} {item.subject_id} has no active "
                        f"consent for bank {principal.bank_id} to be scored: {check.reason}. The "
                        "subject grants it on the platform; silence is not consent.")

    def _answered(self, principal: Principal, request_id: str, endpoint: str,
                  answer: schemas.ScoreResponse) -> AuditEntry:
        used = Scorer.features_used(answer)
        summary = {"status": answer.status, "pd": answer.pd, "score": answer.score,
                   "grade": answer.grade, "reasons": [r.code for r in answer.reasons],
                   "missing": [m.code for m in answer.missing]}
        return AuditEntry(request_id=request_id, at=datetime.now(timezone.utc),
                          bank_id=principal.bank_id, key_id=principal.key_id,
                          subject_type=answer.subject_type, subject_id=answer.subject_id,
                          endpoint=endpoint, http_status=200, outcome=answer.status,
                          model_name=answer.model.name, model_version=answer.model.version,
                          as_of_date=answer.as_of_date,
                          features_sha256=features_sha256(used) if used is not None else None,
                          answer=json.dumps(summary))

    def _refused(self, principal: Principal, request_id: str, endpoint: str,
                 item: schemas.ScoreRequest, error: ApiError) -> AuditEntry:
        return AuditEntry(request_id=request_id, at=datetime.now(timezone.utc),
                          bank_id=principal.bank_id, key_id=principal.key_id,
                          subject_type=item.subject_type, subject_id=item.subject_id,
                          endpoint=endpoint, http_status=error.status, outcome=error.error,
                          answer=json.dumps({"error": error.error, "message": error.message}))

    async def _audit_async(self, entries: list[AuditEntry]) -> None:
        """`_audit` for async routes: the commit is awaited, the event loop keeps serving."""
        try:
            await self.audit_writer.write_async(entries)
        except Exception as exc:
            log.exception("could not write %d audit rows", len(entries))
            raise _audit_unavailable() from exc

    def _audit(self, entries: list[AuditEntry]) -> None:
        """Written before the answer leaves: no audit row, no answer."""
        try:
            self.audit_writer.write(entries)
        except Exception as exc:
            log.exception("could not write %d audit rows", len(entries))
            raise _audit_unavailable() from exc


def _audit_unavailable() -> ApiError:
    return ApiError(503, "audit_unavailable", "the decision could not be recorded in the audit log, "
                    "so it is not answered; try again shortly.")


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


CoopScore.add_asgi_middleware(JsonNotFound)  # outermost: even unrouted paths answer in JSON
