"""Refuse oversized request bodies before they are read into memory (413, with advice).

Pure ASGI middleware: a declared Content-Length above the limit is refused at once; a body sent
without one (chunked) is counted while it streams and refused when it crosses the limit.
"""
from __future__ import annotations

import json
import uuid

DEFAULT_MAX_BYTES = 2 * 1024 * 1024  # a full batch of 1,000 applications is about 200 KB


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    def __init__(self, app, max_bytes: int = DEFAULT_MAX_BYTES):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(headers, send)
        seen = 0
        started = False

        async def counted_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge()
            return message

        async def tracked_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(headers, send)

    async def _refuse(self, headers, send):
        request_id = (headers.get(b"x-request-id") or b"").decode("latin-1") or uuid.uuid4().hex
        body = json.dumps({
            "error": "body_too_large",
            "message": f"the request body is larger than {self.max_bytes:,} bytes; send at most "
                       "1,000 applications per batch call, or use `coopscore score` for files.",
            "request_id": request_id, "fields": []}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
