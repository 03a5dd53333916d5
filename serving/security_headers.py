"""Headers every answer of the service carries, whatever produced it (/v1, /app, BentoML's probes and
metrics, the JSON 404): `X-Content-Type-Options: nosniff`, so that no browser runs a JSON or CSV
answer as script, and `Strict-Transport-Security` when the request came over HTTPS (a plain-HTTP
answer must not pin HSTS: browsers ignore it there, and a test setup would be locked out).
"""
from __future__ import annotations

HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
NOSNIFF = (b"x-content-type-options", b"nosniff")


def _over_https(scope) -> bool:
    if scope.get("scheme") == "https":
        return True
    # behind a TLS-terminating load balancer (uvicorn's proxy headers may not be trusted)
    for name, value in scope.get("headers") or []:
        if name == b"x-forwarded-proto":
            return value.strip().lower() == b"https"
    return False


class SecurityHeaders:
    """ASGI middleware: adds the headers to every http.response.start, replacing any earlier value."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        extra = [NOSNIFF, HSTS] if _over_https(scope) else [NOSNIFF]
        names = {name for name, _ in extra}

        async def with_headers(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in (message.get("headers") or []) if k.lower() not in names]
                message = {**message, "headers": headers + extra}
            await send(message)

        await self.app(scope, receive, with_headers)
