"""Who may ask, how often, and about whom: API keys with scopes, rate limits, and consent.

Every check fails with an ApiError that says what was wrong and what to do: 401 (no or bad key),
429 (too many
requests, with Retry-After).
"""
from __future__ import annotations

import math

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from scoring.errors import ApiError
from serving import metrics
from serving.rate_limit import RateLimiter
from records import AuthError, Principal, Records

bearer = HTTPBearer(auto_error=False, scheme_name="bank API key",
                    description="`Authorization: Bearer cs_<key id>_<secret>`, issued by "
                                "`coopscore banks add`.")


def _records(request: Request) -> Records:
    return request.app.state.records


def _limiter(request: Request) -> RateLimiter:
    return request.app.state.limiter


async def authenticate(request: Request,
                       credentials: HTTPAuthorizationCredentials | None = Security(bearer)) -> Principal:
    """Async on purpose: a sync dependency costs every request a thread-pool hop. The key check is an
    in-memory cache hit almost always (Records.authenticate); a miss is one indexed SELECT."""
    if credentials is None or not credentials.credentials:
        raise ApiError(401, "unauthenticated", "this API needs a bank API key: send "
                       "`Authorization: Bearer <key>` (keys are issued with `coopscore banks add`).")
    try:
        principal = _records(request).authenticate(credentials.credentials)
    except AuthError as exc:
        raise ApiError(401, "unauthenticated", f"the API key was not accepted: {exc}. Ask the "
                       "platform operator for a new key.") from None
    request.state.principal = principal
    return principal


def rate_limit(request: Request, principal: Principal, cost: int = 1) -> None:
    wait = _limiter(request).take(principal.bank_id, cost)
    if wait > 0:
        metrics.rate_limited(metrics.route_template(request.scope) or metrics.UNMATCHED)
        retry = "a smaller batch" if math.isinf(wait) else f"in {math.ceil(wait)} s"
        raise ApiError(429, "rate_limited", f"bank {principal.bank_id} sent more requests than its "
                       f"limit allows; try again {retry}.",
                       headers={"Retry-After": "60" if math.isinf(wait) else str(max(1, math.ceil(wait)))})
