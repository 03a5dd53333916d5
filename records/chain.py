"""The audit log's hash chain: how one row is serialised and hashed (shared by the code and migration 0002).

row_hash = sha256(prev_hash + "\\n" + canonical(row)), and prev_hash is the row_hash of the row with
the previous id (GENESIS for the first row). Changing this serialisation breaks every existing
chain: it is versioned by CHAIN_VERSION and must never change silently.
"""
from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, timezone
from typing import Any, Mapping

CHAIN_VERSION = 1
GENESIS = "0" * 64

# The row's own fields in a fixed order; id is included, so moving a row to another id breaks it.
HASHED_FIELDS = ("id", "request_id", "client_request_id", "at", "bank_id", "key_id", "subject_type",
                 "subject_id", "endpoint", "http_status", "outcome", "model_name", "model_version",
                 "as_of_date", "features_sha256", "answer")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:  # SQLite hands back naive UTC
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, date):
        return value.isoformat()
    return value


def canonical(row: Mapping[str, Any]) -> str:
    """One line of JSON holding the hashed fields in order: the same text on SQLite and PostgreSQL."""
    return json.dumps([_plain(row[name]) for name in HASHED_FIELDS], ensure_ascii=False,
                      separators=(",", ":"))


def row_hash(prev_hash: str, row: Mapping[str, Any]) -> str:
    """The hash that links `row` to the row before it (whose own hash is `prev_hash`)."""
    return hashlib.sha256(f"{prev_hash}\n{canonical(row)}".encode("utf-8")).hexdigest()
