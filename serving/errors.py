"""The one error type of the API: a status, a stable error code and a message that says what to fix."""
from __future__ import annotations


class ApiError(Exception):
    """An answer other than 200, with a message that tells the client what to fix."""

    def __init__(self, status: int, error: str, message: str, fields: list[dict] | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.error, self.message = status, error, message
        self.fields, self.headers = fields or [], headers or {}
