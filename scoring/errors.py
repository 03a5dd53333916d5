"""Refusals as typed errors: each carries a stable code, the HTTP status it maps to, a message that
says what to fix, and the fields at fault. The API maps them to a JSON body once (serving.service),
the CLI to a red line (coopscore.cli); nothing between the layers speaks in bare ValueErrors.

    ApiError                     the base: status, error (the stable code), message, fields, headers
    ├── InvalidApplication  422  the application breaks the policy (limit, term, date, batch size)
    ├── UnknownSubject      404  no such subject on the platform (banks see NoConsent instead)
    ├── NoConsent           403  no active consent of the subject for this lender and purpose
    ├── Forbidden           403  the key lacks the scope, or its kind may never do this
    ├── Unauthenticated     401  no key, or a key that is not accepted
    ├── RateLimited         429  too many requests (Retry-After)
    ├── ModelUnavailable    503  no champion model for this subject type
    └── AuditUnavailable    503  the decision could not be recorded, so it is not answered
"""
from __future__ import annotations


class ApiError(Exception):
    """An answer other than 200, with a message that tells the client what to fix."""

    def __init__(self, status: int, error: str, message: str, fields: list[dict] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.error, self.message = status, error, message
        self.fields, self.headers = fields or [], headers or {}


def field(name: str, problem: str) -> dict:
    """One entry of `fields`: which input is at fault and what is wrong with it."""
    return {"field": name, "problem": problem}


class InvalidApplication(ApiError):
    def __init__(self, message: str, fields: list[dict] | None = None):
        super().__init__(422, "invalid_request", message, fields)


class UnknownSubject(ApiError):
    def __init__(self, message: str, fields: list[dict] | None = None):
        super().__init__(404, "unknown_subject", message, fields)


class NoConsent(ApiError):
    def __init__(self, message: str):
        super().__init__(403, "no_consent", message)


class Forbidden(ApiError):
    def __init__(self, message: str):
        super().__init__(403, "forbidden", message)


class Unauthenticated(ApiError):
    def __init__(self, message: str):
        super().__init__(401, "unauthenticated", message)


class RateLimited(ApiError):
    def __init__(self, message: str, retry_after_seconds: int):
        super().__init__(429, "rate_limited", message, headers={"Retry-After": str(retry_after_seconds)})


class ModelUnavailable(ApiError):
    def __init__(self, message: str):
        super().__init__(503, "model_unavailable", message)


class AuditUnavailable(ApiError):
    def __init__(self) -> None:
        super().__init__(503, "audit_unavailable", "the decision could not be recorded in the audit "
                         "log, so it is not answered; try again shortly.")
