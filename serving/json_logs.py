"""The service's log as one JSON line per event, for a log shipper: on with COOPSCORE_JSON_LOGS=1.

    {"time": "2026-01-05T08:01:02.345+00:00", "level": "INFO", "logger": "coopscore.request",
     "event": "request", "request_id": "9f0c...", "endpoint": "/v1/scores", "status": 200,
     "outcome": "scored", "duration_ms": 3.412}

`request_id` is the server's id of the request being served (the one its answer or error body
carries), on every line logged while it runs. Each /v1 request adds one `request` line
(serving/metrics.py's middleware), its endpoint a route template, never the path. No personal data
(docs/security.md): a record's traceback is reduced to the exception type and code locations (an
exception's message may quote a subject id or a SQL parameter), and member page tokens are redacted
from every message. BentoML's access log (COOPSCORE_ACCESS_LOG=1) keeps its own fields: the raw path
and the client address.
"""
from __future__ import annotations

import json
import logging
import sys
import traceback
from datetime import datetime, timezone

from serving.metrics import REQUEST_ID
from serving.web.links import redact_member_tokens

REQUEST_FIELDS = ("endpoint", "status", "outcome", "duration_ms")
REQUEST_ID_EXTRA = "coopscore_request_id"  # extra={...} of a line logged outside the request's context


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        redact_member_tokens.filter(record)
        line = {"time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
                "level": record.levelname, "logger": record.name, "event": record.getMessage()}
        request_id = REQUEST_ID.get() or getattr(record, REQUEST_ID_EXTRA, None)
        if request_id:
            line["request_id"] = request_id
        for name in REQUEST_FIELDS:
            if name in record.__dict__:
                line[name] = record.__dict__[name]
        if record.exc_info and record.exc_info[0] is not None:
            line["exc_type"] = record.exc_info[0].__name__
            line["where"] = [f"{f.filename}:{f.lineno} in {f.name}"
                             for f in traceback.extract_tb(record.exc_info[2])[-4:]]
        return json.dumps(line, ensure_ascii=False, default=str)


def install() -> None:
    """Format every configured handler's lines as JSON (BentoML's, uvicorn's, the root's; a stderr
    handler on the root if it has none), log coopscore's INFO events, and route Python warnings
    through logging so that they become JSON lines too."""
    formatter = JsonFormatter()
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
    loggers = [root, *(lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger))]
    for logger in loggers:
        for handler in logger.handlers:
            handler.setFormatter(formatter)
    logging.getLogger("coopscore").setLevel(logging.INFO)
    logging.captureWarnings(True)
