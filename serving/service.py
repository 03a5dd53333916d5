"""The coopscore scoring service, as a partner bank sees it.

    POST /v1/scores        score one loan application of a member or a cooperative
    GET  /v1/reason-codes  the stable catalogue of reason codes and their texts
    GET  /v1/docs          interactive API docs (OpenAPI at /v1/openapi.json)
    GET  /healthz /readyz  BentoML's liveness and readiness probes

Run it with `coopscore serve` (or `bentoml serve serving.service:CoopScore`). The API is a FastAPI
app mounted on the BentoML service, so that every error has the status and body we choose
(404 unknown subject, 422 naming the bad field), and the OpenAPI spec documents them.
"""
from __future__ import annotations

import uuid

import bentoml
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from coopscore.paths import get_paths
from features.reasons import REASONS
from serving import schemas
from serving.scorer import ApiError, Scorer

api = FastAPI(
    title="coopscore scoring API",
    version="1",
    description="Credit scores for members and cooperatives of Viet Nam's e-cooperatives: "
                "probability of default, score, grade and the reasons, exact for the score given.",
    responses={404: {"model": schemas.ErrorBody}, 422: {"model": schemas.ErrorBody},
               503: {"model": schemas.ErrorBody}},
)


def _request_id(request: Request) -> str:
    if not hasattr(request.state, "request_id"):
        request.state.request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    return request.state.request_id


@api.exception_handler(ApiError)
async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
    body = schemas.ErrorBody(error=exc.error, message=exc.message, request_id=_request_id(request),
                             fields=exc.fields)
    return JSONResponse(body.model_dump(), status_code=exc.status)


@api.exception_handler(RequestValidationError)
async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    fields = [{"field": ".".join(str(p) for p in e["loc"] if p != "body"), "problem": e["msg"]}
              for e in exc.errors()]
    summary = "; ".join(f"{f['field'] or 'body'}: {f['problem']}" for f in fields)
    body = schemas.ErrorBody(error="invalid_request", message=f"the request is not valid: {summary}",
                             request_id=_request_id(request), fields=fields)
    return JSONResponse(body.model_dump(), status_code=422)


@bentoml.service(name="coopscore", traffic={"timeout": 60})
@bentoml.asgi_app(api, path="/v1")
class CoopScore:
    def __init__(self) -> None:
        self.scorer = Scorer(get_paths())

    @api.post("/scores", response_model=schemas.ScoreResponse)
    def score(self, body: schemas.ScoreRequest, request: Request) -> schemas.ScoreResponse:
        """Score one application from data strictly before as_of_date."""
        return self.scorer.score(body, request_id=_request_id(request))

    @api.get("/reason-codes")
    def reason_codes(self) -> list[dict[str, str]]:
        return [{"code": r.code, "text_vi": r.vi, "text_en": r.en} for r in REASONS.values()]
