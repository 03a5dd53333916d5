"""A path that no route of the service matches answers with our JSON error body, not plain text.

BentoML's own router answers "Not Found" as text/plain for paths outside the mounted API (a path
with a newline in it, say); the API promises JSON errors everywhere, so this outermost middleware
rewrites exactly those answers.
"""
from __future__ import annotations

import json
import uuid


class JsonNotFound:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rewrite = False

        async def patched(message):
            nonlocal rewrite
            if message["type"] == "http.response.start" and message["status"] == 404:
                content_type = dict(message.get("headers") or []).get(b"content-type", b"")
                if content_type.startswith(b"text/plain"):
                    rewrite = True
                    body = json.dumps({"error": "not_found", "message": "no such endpoint: see /v1/docs "
                                       "for the API", "request_id": uuid.uuid4().hex, "fields": []}).encode()
                    await send({"type": "http.response.start", "status": 404,
                                "headers": [(b"content-type", b"application/json"),
                                            (b"content-length", str(len(body)).encode())]})
                    await send({"type": "http.response.body", "body": body})
                    return
            if rewrite:
                return  # the plain-text body is dropped
            await send(message)

        await self.app(scope, receive, patched)
