"""The service's records behind one thread-safe facade: parties and their keys, consents, audit log,
console sessions and member-link versions.

The service calls it from several threads on every request, so authentication is cached briefly
in memory, and the audit log is written in bulk, one transaction per call, each row hash-chained
to the one before (chain.py).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable

from sqlalchemy import and_, bindparam, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.exc import DBAPIError

from data_contracts.vocabulary import ENTITY_TYPES
from settings import get_settings
from settings.paths import Paths, get_paths
from records import chain
from records.db import RecordsError, database_url, masked, open_engine
from records.migrations import ensure_schema
from records.tables import (SHADOW_FIELDS, api_keys, audit_chain_head, audit_log, banks, consents, member_links,
                           shadow_scores, web_sessions)

LENDER_SCOPES = {
    "scores:read": "score single applications",
    "scores:batch": "score up to 1,000 applications per call",
    "console": "sign in to the loan officers' console (a cooperative development fund)",
}
PLATFORM_SCOPES = {
    "consents:write": "record and withdraw consents as members gave them (the platform only)",
    "audit:read": "read a subject's access log (the platform only)",
}
SCOPES = {**LENDER_SCOPES, **PLATFORM_SCOPES}
KINDS = ("lender", "platform")
SUBJECT_TYPES = tuple(ENTITY_TYPES)
PURPOSES = ("credit_scoring",)
CONSENT_SOURCES = ("application_form", "member_page", "operator")
CONSENT_MAX_DAYS = 365
CACHE_SECONDS = 5.0

_BANK_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,39}$")
_TOKEN = re.compile(r"^cs_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_OPERATOR = re.compile(r"^[A-Za-z0-9_.@-]{1,55}$")  # fits 'operator:<name>' in 64 characters
RESERVED_PARTY_IDS = ("operator", "member")  # the acting party of rows written by the CLI and by members
_MEMBER = re.compile(r"^[A-Za-z0-9_-]{1,57}$")  # fits 'member:<id>' in 64 characters


class NotAllowed(Exception):
    """This party may not do this; str() says what was refused and why (e.g. a bank writing consent)."""


class AuthError(Exception):
    """An API key was refused; str() is the reason ('unknown key', 'expired key on ...', ...)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class IssuedKey:
    """A new key: the only place its plaintext token ever exists (hidden from repr and logs)."""

    bank_id: str
    key_id: str
    token: str = field(repr=False)
    scopes: tuple[str, ...]
    expires_at: datetime | None


@dataclass(frozen=True)
class Principal:
    """Who is asking: the party (a lender's or the platform's id), its key, what it may do, its kind."""

    bank_id: str
    key_id: str
    scopes: frozenset[str]
    kind: str  # 'lender' or 'platform'


@dataclass(frozen=True)
class Operator:
    """A person at the server's command line (the CLI passes Operator(getpass.getuser()))."""

    name: str

    def __post_init__(self):
        if not isinstance(self.name, str) or not _OPERATOR.match(self.name):
            raise ValueError(f"operator name {self.name!r} is not valid: 1-55 letters, digits, '.', '_', "
                             "'@' or '-' (the login name of the person at the server).")


@dataclass(frozen=True)
class Member:
    """A member acting on their own page (reached through their signed link): the only thing a member
    may write is the withdrawal of one of their own consents (`revoke_consent`)."""

    member_id: str

    def __post_init__(self):
        if not isinstance(self.member_id, str) or not _MEMBER.match(self.member_id):
            raise ValueError(f"member id {self.member_id!r} is not valid: 1-57 letters, digits, '_' or '-'.")


@dataclass(frozen=True)
class ChainReport:
    """What `verify_audit_chain` found: rows checked, and the first bad row with what is wrong."""

    rows_checked: int
    first_bad_id: int | None = None
    problem: str | None = None  # 'changed', 'missing' or 'reordered'
    detail: str = ""
    last_hash: str = chain.GENESIS

    @property
    def intact(self) -> bool:
        """True when every row links to the one before and matches its own hash."""
        return self.first_bad_id is None


@dataclass(frozen=True)
class ConsentCheck:
    """Whether a bank may look at a subject now, and why (or why not) in words."""

    active: bool
    consent_id: str | None
    reason: str
    state: str = "active"  # active, none, revoked, expired or not_started
    on: datetime | None = None  # when it was revoked or expired, or when it starts


@dataclass
class AuditEntry:
    """One row of the audit log: which bank looked at which subject, how, and what it was told."""

    request_id: str
    at: datetime
    bank_id: str
    key_id: str
    subject_type: str
    subject_id: str
    endpoint: str
    http_status: int
    outcome: str
    model_name: str | None = None
    model_version: str | None = None
    as_of_date: date | str | None = None
    features_sha256: str | None = None
    answer: Any = None  # a dict/list (stored as JSON) or a JSON string
    client_request_id: str | None = None  # the client's own id (the server assigns request_id)


_AUDIT_FIELDS = tuple(f.name for f in fields(AuditEntry))
_AUDIT_TEXT = ("request_id", "bank_id", "key_id", "subject_type", "subject_id", "endpoint", "outcome",
               "model_name", "model_version", "features_sha256", "client_request_id")


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars: 5 and np.int64(5) must hash the same
        return value.item()
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return str(value)


def features_sha256(values: dict | list) -> str:
    """A stable fingerprint of the features a score was computed from (JSON, sorted keys)."""
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=_json_default)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _utc(value: datetime | date | None, *, end_of_day: bool = False) -> datetime | None:
    """Aware UTC datetime; a naive datetime is taken as UTC; a date means its start (or end) in UTC."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
        return value.replace(hour=23, minute=59, second=59) if end_of_day else value
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


# Built once: constructing a SELECT costs more than running it (these run on every score request).
# The database picks the one active consent (or the latest one, to say why there is none), so the
# check reads one row however many consents a subject has given and withdrawn over the years.
_SAME_SUBJECT_BANK_PURPOSE = and_(consents.c.subject_type == bindparam("subject_type"),
                                  consents.c.subject_id == bindparam("subject_id"),
                                  consents.c.bank_id == bindparam("bank_id"),
                                  consents.c.purpose == bindparam("purpose"))
_ACTIVE_CONSENT = (select(consents.c.consent_id, consents.c.expires_at)
                   .where(_SAME_SUBJECT_BANK_PURPOSE, consents.c.granted_at <= bindparam("now"),
                          consents.c.expires_at > bindparam("now"),
                          or_(consents.c.revoked_at.is_(None), consents.c.revoked_at > bindparam("now")))
                   .order_by(consents.c.expires_at.desc()).limit(1))
_LATEST_CONSENT = (select(consents).where(_SAME_SUBJECT_BANK_PURPOSE)
                   .order_by(consents.c.granted_at.desc()).limit(1))


_KEY_WITH_KIND = (select(api_keys, banks.c.kind).join(banks, banks.c.bank_id == api_keys.c.bank_id)
                  .where(api_keys.c.key_id == bindparam("key_id")))


def _scopes_of(key_row) -> frozenset[str]:
    """The key's scopes that its party's kind may hold: a lender never gets a platform scope, even
    from a row written by hand or by an old version."""
    allowed = LENDER_SCOPES if key_row.kind == "lender" else PLATFORM_SCOPES
    return frozenset(s for s in key_row.scopes.split() if s in allowed)


def _now(now: datetime | None) -> datetime:
    return _utc(now) if now is not None else datetime.now(timezone.utc)


def _when(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def _check_scopes(scopes: Iterable[str], kind: str) -> tuple[str, ...]:
    if isinstance(scopes, str):  # 'scores:read' would otherwise become eleven one-letter scopes
        scopes = [scopes]
    scopes = tuple(dict.fromkeys(scopes))  # de-duplicated, order kept
    allowed = LENDER_SCOPES if kind == "lender" else PLATFORM_SCOPES
    if not scopes:
        raise ValueError(f"give a key at least one scope; valid {kind} scopes: {', '.join(allowed)}.")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise ValueError(f"unknown scope(s) {', '.join(unknown)}; valid scopes: "
                         + "; ".join(f"{k} ({v})" for k, v in SCOPES.items()) + ".")
    crossed = [s for s in scopes if s not in allowed]
    if crossed and kind == "lender":
        raise ValueError(f"a lender's key can never hold the platform scope(s) {', '.join(crossed)}: "
                         "consents are written only by the platform, as members gave them. Give the "
                         f"bank {', '.join(LENDER_SCOPES)} only; the platform's key comes from "
                         "`coopscore platform add-key`.")
    if crossed:
        raise ValueError(f"the platform's key does not score: {', '.join(crossed)} belong to lenders; "
                         f"platform scopes: {', '.join(PLATFORM_SCOPES)}.")
    return scopes


def _check_subject(subject_type: str, subject_id: str) -> None:
    if subject_type not in SUBJECT_TYPES:
        raise ValueError(f"subject_type must be 'member' or 'cooperative', not {subject_type!r}.")
    if not subject_id or not subject_id.strip():
        raise ValueError(f"give the {subject_type}'s id (e.g. TV0000001 or HTX000001).")


def _check_purpose(purpose: str) -> None:
    if purpose not in PURPOSES:
        raise ValueError(f"purpose {purpose!r} is not one a consent can cover: use one of "
                         f"{', '.join(PURPOSES)} (consent is given for a stated purpose, not in general).")


def _check_source(source: str) -> None:
    if source not in CONSENT_SOURCES:
        raise ValueError(f"source must be one of {', '.join(CONSENT_SOURCES)} (where the member gave or "
                         f"withdrew it), not {source!r}.")


def _consent_event(row: dict, endpoint: str, outcome: str, bank_id: str, key_id: str, moment: datetime,
                   source: str) -> dict:
    """The audit row of a consent grant or withdrawal (written in the same transaction)."""
    return _audit_row(AuditEntry(
        request_id=uuid.uuid4().hex, at=moment, bank_id=bank_id, key_id=key_id,
        subject_type=row["subject_type"], subject_id=row["subject_id"], endpoint=endpoint, http_status=200,
        outcome=outcome, answer={"consent_id": row["consent_id"], "bank_id": row["bank_id"],
                                 "purpose": row["purpose"], "source": source,
                                 "expires_at": row["expires_at"].isoformat()}))


def _audit_row(e: AuditEntry) -> dict:
    """The row exactly as the database will hand it back, so that its hash can be checked later."""
    row = {name: getattr(e, name) for name in _AUDIT_FIELDS}  # shallow: asdict deep-copies
    for name in _AUDIT_TEXT:  # e.g. model_version 3 is stored, and read back, as '3'
        if row[name] is not None and not isinstance(row[name], str):
            row[name] = str(row[name])
    if isinstance(row["http_status"], (int, float)) and not isinstance(row["http_status"], bool):
        row["http_status"] = int(row["http_status"])
    if row["client_request_id"] is not None and len(row["client_request_id"]) > 64:
        raise ValueError(f"client_request_id is {len(row['client_request_id'])} characters; at most 64.")
    row["at"] = _utc(e.at)
    if isinstance(e.as_of_date, datetime):
        row["as_of_date"] = e.as_of_date.date()
    elif isinstance(e.as_of_date, str):
        row["as_of_date"] = date.fromisoformat(e.as_of_date)
    if e.answer is not None and not isinstance(e.answer, str):
        row["answer"] = json.dumps(e.answer, sort_keys=True, ensure_ascii=False, default=_json_default)
    return row


def _lock_chain(conn, moment: datetime) -> None:
    """First statement of every transaction that appends: takes SQLite's write lock or the head row's
    lock on PostgreSQL, so writers in other processes queue here and the chain never forks."""
    conn.execute(update(audit_chain_head).where(audit_chain_head.c.id == 1).values(updated_at=moment))


def _append_locked(conn, rows: list[dict], moment: datetime) -> None:
    """Give rows the next ids and their hashes, insert them, move the head (the chain lock is held)."""
    last = conn.execute(select(audit_log.c.id, audit_log.c.row_hash)
                        .order_by(audit_log.c.id.desc()).limit(1)).first()
    next_id, prev = (last.id + 1, last.row_hash) if last else (1, chain.GENESIS)
    for row in rows:
        row["id"], row["prev_hash"] = next_id, prev
        row["row_hash"] = prev = chain.row_hash(prev, row)
        next_id += 1
    conn.execute(insert(audit_log), rows)
    conn.execute(update(audit_chain_head).where(audit_chain_head.c.id == 1)
                 .values(last_id=next_id - 1, last_hash=prev, updated_at=moment))


def _check_link(conn, r, prev_id: int, prev_hash: str) -> tuple[int, str, str] | None:
    """(first bad id, problem, detail) if row r does not follow the row before it, else None."""
    if r.id != prev_id + 1:
        span = f"row {prev_id + 1}" if r.id == prev_id + 2 else f"rows {prev_id + 1} to {r.id - 1}"
        return prev_id + 1, "missing", f"{span} missing (deleted): row {r.id} follows row {prev_id}"
    if r.row_hash is None or chain.row_hash(r.prev_hash or "", r._mapping) != r.row_hash:
        if r.prev_hash and r.prev_hash != prev_hash:
            holder = conn.execute(select(audit_log.c.id).where(audit_log.c.row_hash == r.prev_hash)
                                  .limit(1)).scalar()
            if holder is not None and holder != prev_id:
                return r.id, "reordered", (f"row {r.id} holds an entry that was chained after row "
                                           f"{holder}'s: rows were swapped or moved")
        return r.id, "changed", f"row {r.id}'s fields no longer match its hash (edited)"
    if r.prev_hash != prev_hash:  # consistent in itself but not linked: the row before was rewritten
        return prev_id, "changed", (f"row {prev_id} was changed and its hash recomputed: row {r.id} was "
                                    "chained to a different row before it")
    return None


class Records:
    """The service's own records; open once per process and share between threads."""

    def __init__(self, paths: Paths | None = None, url: str | None = None,
                 consent_max_days: int | None = None):
        if consent_max_days is None:  # COOPSCORE_CONSENT_MAX_DAYS, default CONSENT_MAX_DAYS
            consent_max_days = get_settings().consent_max_days
        if isinstance(consent_max_days, bool) or not isinstance(consent_max_days, int) \
                or not 1 <= consent_max_days <= 3660:
            raise ValueError(f"consent_max_days must be a whole number of days from 1 to 3660, not "
                             f"{consent_max_days!r} (default {CONSENT_MAX_DAYS}: twelve months).")
        self.consent_max_days = consent_max_days
        self.url = url or database_url(paths or get_paths())
        self.engine = open_engine(self.url)
        try:
            ensure_schema(self.engine)
        except RecordsError:
            self.engine.dispose()
            raise
        except DBAPIError as exc:
            self.engine.dispose()
            cause = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise RecordsError(f"cannot bring the records database {masked(self.url)} to the current "
                               f"schema ({cause}): the user needs the right to create tables and "
                               "triggers, or a DBA runs `python -m records.migrations upgrade "
                               "head` once (see docs/records.md).") from None
        self._write_lock = threading.Lock()  # SQLite has one writer; waiting here beats SQLITE_BUSY
        self._cache_lock = threading.Lock()
        # key_id -> (sha256 of secret, principal, key expiry, monotonic time cached)
        self._cache: dict[str, tuple[str, Principal, datetime | None, float]] = {}

    def __repr__(self) -> str:
        return f"Records({masked(self.url)})"

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Records:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- parties (lenders, the platform) and API keys -----------------------------------------

    def add_bank(self, bank_id: str, name: str, scopes: Iterable[str],
                 expires_at: datetime | date | None = None) -> IssuedKey:
        """Register a lender (partner bank or development fund) and issue its first key."""
        return self._add_party(bank_id, name, scopes, expires_at, "lender")

    def add_platform(self, platform_id: str, name: str, scopes: Iterable[str] = tuple(PLATFORM_SCOPES),
                     expires_at: datetime | date | None = None) -> IssuedKey:
        """Register the platform (the e-cooperative operator's own service) and issue its first key."""
        return self._add_party(platform_id, name, scopes, expires_at, "platform")

    def _add_party(self, bank_id: str, name: str, scopes: Iterable[str],
                   expires_at: datetime | date | None, kind: str) -> IssuedKey:
        if not isinstance(bank_id, str) or not _BANK_ID.match(bank_id):
            raise ValueError(f"{'bank' if kind == 'lender' else 'platform'} id {bank_id!r} is not valid: "
                             "use 2-40 lowercase letters, digits and dashes, starting with a letter or "
                             "digit (e.g. 'agribank' or 'vbsp-hn').")
        if bank_id in RESERVED_PARTY_IDS:  # the audit log's own actors: a bank by that name would read their rows
            raise ValueError(f"{bank_id!r} is reserved for the audit log's own actors "
                             f"({', '.join(RESERVED_PARTY_IDS)}): choose another id.")
        if not name or not name.strip():
            raise ValueError(f"give the {'bank' if kind == 'lender' else 'platform'}'s name "
                             "(--name 'Agribank Ha Noi').")
        scopes = _check_scopes(scopes, kind)
        with self._write_lock, self.engine.begin() as conn:
            if conn.execute(select(banks.c.bank_id).where(banks.c.bank_id == bank_id)).first():
                raise ValueError(f"{bank_id} exists already; issue it another key with "
                                 "`issue_key` (or revoke it first).")
            conn.execute(insert(banks).values(bank_id=bank_id, name=name.strip(), kind=kind,
                                              created_at=datetime.now(timezone.utc)))
            return self._insert_key(conn, bank_id, scopes, expires_at)

    def issue_key(self, bank_id: str, scopes: Iterable[str],
                  expires_at: datetime | date | None = None) -> IssuedKey:
        """Issue another key to a known party (rotation: issue, switch, then revoke the old one);
        a lender's key can never hold a platform scope (ValueError)."""
        with self._write_lock, self.engine.begin() as conn:
            kind = self._party_kind(conn, bank_id)
            return self._insert_key(conn, bank_id, _check_scopes(scopes, kind), expires_at)

    def _insert_key(self, conn, bank_id: str, scopes: tuple[str, ...],
                    expires_at: datetime | date | None) -> IssuedKey:
        expires = _utc(expires_at, end_of_day=True)
        now = datetime.now(timezone.utc)
        if expires is not None and expires <= now:
            raise ValueError(f"the key would expire on {_when(expires)}, which is in the past.")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        # API keys are 256-bit random secrets, not passwords: nothing to brute-force, so a fast
        # hash (SHA-256, as GitHub and Stripe do for tokens) is right; a slow KDF would only cost
        # every request its latency.
        conn.execute(insert(api_keys).values(key_id=key_id, bank_id=bank_id,
                                             secret_sha256=_digest(secret), scopes=" ".join(scopes),
                                             created_at=now, expires_at=expires))
        return IssuedKey(bank_id, key_id, f"cs_{key_id}_{secret}", scopes, expires)

    def authenticate(self, token: str, now: datetime | None = None) -> Principal:
        """The principal of a valid token, or AuthError with the reason it was refused."""
        match = _TOKEN.match(token or "")
        if not match:
            raise AuthError("malformed key")
        key_id, secret = match.groups()
        digest = _digest(secret)
        moment = _now(now)
        with self._cache_lock:
            cached = self._cache.get(key_id)
        if cached and time.monotonic() - cached[3] < CACHE_SECONDS \
                and hmac.compare_digest(cached[0], digest) and (cached[2] is None or moment < cached[2]):
            return cached[1]
        with self.engine.connect() as conn:
            row = conn.execute(_KEY_WITH_KIND, {"key_id": key_id}).first()
        if row is None or not hmac.compare_digest(row.secret_sha256, digest):
            raise AuthError("unknown key")  # a wrong secret says no more than an unknown id
        if row.revoked_at is not None:
            raise AuthError("revoked key")
        if row.expires_at is not None and moment >= row.expires_at:
            raise AuthError(f"expired key (expired on {_when(row.expires_at)})")
        principal = Principal(row.bank_id, row.key_id, _scopes_of(row), row.kind)
        with self._cache_lock:
            self._cache[key_id] = (digest, principal, row.expires_at, time.monotonic())
        return principal

    def key_principal(self, key_id: str, now: datetime | None = None) -> Principal | None:
        """The principal of a key that is live now, else None (unknown, revoked or expired).

        Read from the database on every call, never from the cache: a console session rests on a
        key and must end on the next request after `coopscore banks revoke-key`, even when that
        ran in another process. One SELECT by primary key.
        """
        with self.engine.connect() as conn:
            row = conn.execute(_KEY_WITH_KIND, {"key_id": key_id}).first()
        if row is None or row.revoked_at is not None:
            return None
        if row.expires_at is not None and _now(now) >= row.expires_at:
            return None
        return Principal(row.bank_id, key_id, _scopes_of(row), row.kind)

    def list_banks(self) -> list[dict]:
        """Every bank with its keys (ids, scopes, dates; never the hash)."""
        with self.engine.connect() as conn:
            bank_rows = conn.execute(select(banks).order_by(banks.c.bank_id)).all()
            key_rows = conn.execute(select(api_keys.c.key_id, api_keys.c.bank_id, api_keys.c.scopes,
                                           api_keys.c.created_at, api_keys.c.expires_at,
                                           api_keys.c.revoked_at)
                                    .order_by(api_keys.c.created_at, api_keys.c.key_id)).all()
        out = {b.bank_id: {"bank_id": b.bank_id, "name": b.name, "kind": b.kind, "created_at": b.created_at,
                           "keys": []} for b in bank_rows}
        for k in key_rows:
            out[k.bank_id]["keys"].append({"key_id": k.key_id, "scopes": k.scopes.split(),
                                           "created_at": k.created_at, "expires_at": k.expires_at,
                                           "revoked_at": k.revoked_at})
        return list(out.values())

    def revoke_key(self, key_id: str, now: datetime | None = None) -> datetime:
        """Revoke one key at once (this process's cache included); returns when it was revoked."""
        moment = _now(now)
        with self._write_lock, self.engine.begin() as conn:
            row = conn.execute(select(api_keys.c.revoked_at).where(api_keys.c.key_id == key_id)).first()
            if row is None:
                raise LookupError(f"no API key {key_id!r}; `coopscore banks list` shows the key ids.")
            if row.revoked_at is None:
                conn.execute(update(api_keys).where(api_keys.c.key_id == key_id).values(revoked_at=moment))
        self._forget(lambda kid, _p: kid == key_id)
        return row.revoked_at or moment

    def revoke_bank(self, bank_id: str, now: datetime | None = None) -> list[str]:
        """Revoke every key of a bank; returns the ids of the keys this call revoked."""
        moment = _now(now)
        with self._write_lock, self.engine.begin() as conn:
            self._bank_must_exist(conn, bank_id)
            live = conn.execute(select(api_keys.c.key_id).where(
                api_keys.c.bank_id == bank_id, api_keys.c.revoked_at.is_(None))).scalars().all()
            conn.execute(update(api_keys).where(api_keys.c.bank_id == bank_id,
                                                api_keys.c.revoked_at.is_(None)).values(revoked_at=moment))
        self._forget(lambda _kid, p: p.bank_id == bank_id)
        return list(live)

    def _forget(self, drop) -> None:
        with self._cache_lock:
            for kid in [kid for kid, entry in self._cache.items() if drop(kid, entry[1])]:
                del self._cache[kid]

    @staticmethod
    def _bank_must_exist(conn, bank_id: str) -> None:
        Records._party_kind(conn, bank_id)

    @staticmethod
    def _party_kind(conn, bank_id: str) -> str:
        kind = conn.execute(select(banks.c.kind).where(banks.c.bank_id == bank_id)).scalar()
        if kind is None:
            raise LookupError(f"no bank {bank_id!r}; `coopscore banks list` shows the banks, "
                              "`coopscore banks add` registers one.")
        return kind

    # ---- consents -----------------------------------------------------------------------------

    def grant_consent(self, subject_type: str, subject_id: str, bank_id: str, *, purpose: str,
                      expires_at: datetime | date, source: str, actor: Principal | Operator,
                      now: datetime | None = None) -> dict:
        """Record a subject's explicit consent for one lender, one purpose, until a date at most
        `consent_max_days` ahead. Only the platform (a platform key or an operator) may; a lender's
        key is refused with NotAllowed. The grant and its audit row commit together."""
        _check_subject(subject_type, subject_id)
        _check_purpose(purpose)
        _check_source(source)
        if expires_at is None:
            raise ValueError("a consent needs an expiry date (expires_at): consent is never open-ended.")
        moment = _now(now)
        expires = _utc(expires_at, end_of_day=True)
        if expires <= moment:
            raise ValueError(f"the consent would expire on {_when(expires)}, which is not after now "
                             f"({_when(moment)}); give a later --expires date.")
        # day granularity, so that 'valid through <date>' a year ahead is accepted
        latest = _utc((moment + timedelta(days=self.consent_max_days)).date(), end_of_day=True)
        if expires > latest:
            raise ValueError(f"a consent runs at most {self.consent_max_days} days: {_when(expires)} is "
                             f"beyond the limit ({_when(latest)}); the member renews it when it ends.")
        row = {"consent_id": "cn_" + secrets.token_hex(8), "subject_type": subject_type,
               "subject_id": subject_id.strip(), "bank_id": bank_id, "purpose": purpose,
               "granted_at": moment, "expires_at": expires, "revoked_at": None, "source": source,
               "granted_by": None, "revoked_by": None, "revoke_source": None}
        with self._write_lock, self.engine.begin() as conn:
            _lock_chain(conn, moment)  # first statement: the write lock, before anything is read
            acting_bank, acting_key, row["granted_by"] = self._actor(conn, actor, moment, "grant consent")
            if self._party_kind(conn, bank_id) != "lender":
                raise ValueError(f"{bank_id} is the platform, not a lender: a consent names the bank or "
                                 "fund the subject lets score them.")
            conn.execute(insert(consents).values(**row))
            _append_locked(conn, [_consent_event(row, "consents.grant", "consent_granted", acting_bank,
                                                 acting_key, moment, source)], moment)
        return row

    def revoke_consent(self, consent_id: str, *, source: str, actor: Principal | Operator | Member,
                       now: datetime | None = None) -> dict:
        """Withdraw a consent from now on, recording who and through what; the withdrawal and its audit
        row commit together. Withdrawing again changes nothing and keeps the first date and actor.
        A `Member` (their own page) may withdraw only their own consents: another subject's consent
        id answers exactly like an unknown one (LookupError), and nothing changes."""
        _check_source(source)
        moment = _now(now)
        with self._write_lock, self.engine.begin() as conn:
            _lock_chain(conn, moment)
            acting_bank, acting_key, by = self._actor(conn, actor, moment, "withdraw consent")
            row = conn.execute(select(consents).where(consents.c.consent_id == consent_id)).first()
            if row is not None and isinstance(actor, Member) \
                    and (row.subject_type, row.subject_id) != ("member", actor.member_id):
                row = None  # not theirs: said exactly as for an id that does not exist
            if row is None:
                raise LookupError(f"no consent {consent_id!r}; `coopscore consents list --member ID` "
                                  "shows a subject's consents.")
            out = dict(row._mapping)
            if row.revoked_at is None:
                out.update(revoked_at=moment, revoked_by=by, revoke_source=source)
                conn.execute(update(consents).where(consents.c.consent_id == consent_id)
                             .values(revoked_at=moment, revoked_by=by, revoke_source=source))
                _append_locked(conn, [_consent_event(out, "consents.revoke", "consent_revoked", acting_bank,
                                                     acting_key, moment, source)], moment)
        return out

    def _actor(self, conn, actor: Principal | Operator | Member, moment: datetime,
               action: str) -> tuple[str, str, str]:
        """(bank_id, key_id, recorded-by) of whoever writes a consent; NotAllowed unless the platform,
        or a member withdrawing (which consent: `revoke_consent` checks it is the member's own)."""
        if isinstance(actor, Operator):
            return "operator", f"operator:{actor.name}", f"operator:{actor.name}"
        if isinstance(actor, Member):
            if action != "withdraw consent":
                raise NotAllowed(f"a member may not {action} on their own page: consent is given on the "
                                 "platform, when applying; a member's page only withdraws it.")
            return "member", f"member:{actor.member_id}", f"member:{actor.member_id}"
        if not isinstance(actor, Principal):
            raise TypeError("actor must be a platform Principal, an Operator or a Member, not "
                            f"{type(actor).__name__}.")
        # read the key again: a Principal built by hand, or one whose key was revoked meanwhile, is not enough
        key = conn.execute(_KEY_WITH_KIND, {"key_id": actor.key_id}).first()
        if key is None or key.bank_id != actor.bank_id or key.kind != "platform":
            raise NotAllowed(f"{actor.bank_id} (key {actor.key_id}) may not {action}: only the platform "
                             "records consents, as the member gave them; a lender never writes its own.")
        if key.revoked_at is not None or (key.expires_at is not None and moment >= key.expires_at):
            raise NotAllowed(f"key {actor.key_id} may not {action}: it is revoked or expired.")
        if "consents:write" not in key.scopes.split():
            raise NotAllowed(f"key {actor.key_id} may not {action}: it lacks the consents:write scope.")
        return key.bank_id, key.key_id, f"key:{key.key_id}"

    def consent_for(self, subject_type: str, subject_id: str, bank_id: str,
                    purpose: str = "credit_scoring", at: datetime | None = None) -> ConsentCheck:
        """Is there an active consent at `at`? Explicit consent only: silence is not consent."""
        moment = _now(at)
        key = {"subject_type": subject_type, "subject_id": subject_id, "bank_id": bank_id,
               "purpose": purpose}
        with self.engine.connect() as conn:
            best = conn.execute(_ACTIVE_CONSENT, {**key, "now": moment}).first()
            last = None if best is not None else conn.execute(_LATEST_CONSENT, key).first()
        if best is not None:
            return ConsentCheck(True, best.consent_id,
                                f"consent {best.consent_id} valid until {_when(best.expires_at)}")
        if last is None:
            return ConsentCheck(False, None, f"no consent recorded for bank {bank_id} "
                                f"({subject_type} {subject_id}, purpose {purpose})", "none")
        if last.revoked_at is not None and last.revoked_at <= moment:
            state, on, says = "revoked", last.revoked_at, "was revoked on"
        elif last.expires_at <= moment:
            state, on, says = "expired", last.expires_at, "expired on"
        else:
            state, on, says = "not_started", last.granted_at, "starts on"
        return ConsentCheck(False, last.consent_id, f"consent {last.consent_id} {says} {_when(on)}",
                            state, on)

    def list_consents(self, subject_type: str, subject_id: str) -> list[dict]:
        """A subject's consents, newest first, revoked and expired ones included."""
        _check_subject(subject_type, subject_id)
        with self.engine.connect() as conn:
            rows = conn.execute(select(consents).where(
                consents.c.subject_type == subject_type, consents.c.subject_id == subject_id)
                .order_by(consents.c.granted_at.desc(), consents.c.consent_id)).all()
        return [dict(r._mapping) for r in rows]

    # ---- audit log ----------------------------------------------------------------------------

    def append_audit(self, entries: list[AuditEntry]) -> int:
        """Append entries in one transaction (a batch of 1,000 scores is one insert), each row chained
        to the one before; returns the count."""
        if not entries:
            return 0
        rows = [_audit_row(e) for e in entries]
        moment = datetime.now(timezone.utc)
        with self._write_lock, self.engine.begin() as conn:
            _lock_chain(conn, moment)
            _append_locked(conn, rows, moment)
        return len(rows)

    def verify_audit_chain(self) -> ChainReport:
        """Walk the audit log in id order and report the first row that was changed, deleted or reordered."""
        checked, prev_id, prev_hash = 0, 0, chain.GENESIS
        columns = [audit_log.c[n] for n in chain.HASHED_FIELDS] + [audit_log.c.prev_hash, audit_log.c.row_hash]
        with self.engine.connect() as conn:
            head = conn.execute(select(audit_chain_head)).first()
            rows = conn.execution_options(yield_per=5000).execute(select(*columns).order_by(audit_log.c.id))
            for r in rows:
                bad = _check_link(conn, r, prev_id, prev_hash)
                if bad:
                    return ChainReport(checked, *bad, last_hash=prev_hash)
                checked, prev_id, prev_hash = checked + 1, r.id, r.row_hash
        if head is not None and head.last_id > prev_id:
            return ChainReport(checked, prev_id + 1, "missing",
                               f"rows {prev_id + 1} to {head.last_id} are missing: the chain head says the "
                               f"log ends at row {head.last_id}, the table at row {prev_id} (deleted)",
                               last_hash=prev_hash)
        if head is not None and (head.last_id, head.last_hash) != (prev_id, prev_hash):
            # rows past the head were written around the chain lock; else the last row was rewritten
            bad = head.last_id + 1 if head.last_id < prev_id else max(head.last_id, 1)
            return ChainReport(checked, bad, "changed",
                               f"the chain head (row {head.last_id}, {head.last_hash[:12]}...) does not "
                               f"match the log's last row ({prev_id}, {prev_hash[:12]}...)",
                               last_hash=prev_hash)
        return ChainReport(checked, last_hash=prev_hash)

    def access_log(self, subject_type: str, subject_id: str, limit: int = 100) -> list[dict]:
        """Who looked at this subject's data, newest first: bank, when, endpoint, outcome, model."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(audit_log).where(
                audit_log.c.subject_type == subject_type, audit_log.c.subject_id == subject_id)
                .order_by(audit_log.c.at.desc(), audit_log.c.id.desc()).limit(limit)).all()
        out = []
        for r in rows:
            entry = dict(r._mapping)
            for internal in ("id", "prev_hash", "row_hash"):  # the chain is for verify, not for readers
                entry.pop(internal)
            out.append(entry)
        return out

    def audit_count(self, **filters: Any) -> int:
        """Rows of the audit log matching column=value filters (none: all rows)."""
        columns = set(_AUDIT_FIELDS)
        unknown = sorted(set(filters) - columns)
        if unknown:
            raise ValueError(f"cannot filter the audit log on {', '.join(unknown)}; columns: "
                             f"{', '.join(sorted(columns))}.")
        query = select(func.count()).select_from(audit_log)
        for name, value in filters.items():
            query = query.where(audit_log.c[name] == value)
        with self.engine.connect() as conn:
            return conn.execute(query).scalar_one()

    # ---- shadow scores (the challenger beside the champion) -------------------------------------
    def append_shadow(self, rows: list[dict]) -> int:
        """Record what the challenger would have answered (one dict per shadowed answer, every field of
        `tables.SHADOW_FIELDS`); one transaction; returns the count."""
        if not rows:
            return 0
        missing = sorted(set(SHADOW_FIELDS) - set(rows[0]))
        if missing:
            raise ValueError(f"a shadow row needs {', '.join(missing)}")
        with self._write_lock, self.engine.begin() as conn:
            conn.execute(shadow_scores.insert(), [{k: r[k] for k in SHADOW_FIELDS} for r in rows])
        return len(rows)

    def shadow_rows(self, subject_type: str, challenger_version: str | None = None,
                    since: datetime | date | None = None) -> list[dict]:
        """Recorded shadow rows of a subject type, oldest first (one challenger version, from a date)."""
        query = select(shadow_scores).where(shadow_scores.c.subject_type == subject_type)
        if challenger_version is not None:
            query = query.where(shadow_scores.c.challenger_version == str(challenger_version))
        if since is not None:
            query = query.where(shadow_scores.c.at >= _utc(since))
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query.order_by(shadow_scores.c.id)).all()]

    # ---- console sessions ---------------------------------------------------------------------

    def start_session(self, bank_id: str, key_id: str, expires_at: datetime) -> str:
        """Open a server-side console session for a key; returns its id (32 hex characters)."""
        moment = datetime.now(timezone.utc)
        expires = _utc(expires_at)
        if expires is None or expires <= moment:
            raise ValueError(f"a session must end in the future, not at {expires_at!r}.")
        session_id = secrets.token_hex(16)
        with self._write_lock, self.engine.begin() as conn:
            conn.execute(insert(web_sessions).values(session_id=session_id, bank_id=bank_id, key_id=key_id,
                                                     created_at=moment, expires_at=expires))
        return session_id

    def session_live(self, session_id: str, now: datetime | None = None) -> bool:
        """True when the session exists, has not been ended and has not expired."""
        with self.engine.connect() as conn:
            row = conn.execute(select(web_sessions.c.expires_at, web_sessions.c.ended_at)
                               .where(web_sessions.c.session_id == session_id)).first()
        return row is not None and row.ended_at is None and _now(now) < row.expires_at

    def end_session(self, session_id: str) -> None:
        """End a session on the server (logout). Ending an unknown or ended session changes nothing,
        so that logging out always succeeds."""
        with self._write_lock, self.engine.begin() as conn:
            conn.execute(update(web_sessions).where(web_sessions.c.session_id == session_id,
                                                    web_sessions.c.ended_at.is_(None))
                         .values(ended_at=datetime.now(timezone.utc)))

    # ---- member links -------------------------------------------------------------------------

    def member_link_version(self, member_id: str) -> int:
        """The member's current link version (0 when their links were never revoked)."""
        with self.engine.connect() as conn:
            version = conn.execute(select(member_links.c.version)
                                   .where(member_links.c.member_id == member_id)).scalar()
        return version or 0

    def revoke_member_links(self, member_id: str) -> int:
        """Invalidate every link issued to a member so far; returns the new version to sign into new links."""
        if not isinstance(member_id, str) or not member_id.strip():
            raise ValueError("give the member's id (e.g. TV0000001) whose links to revoke.")
        dialect = sqlite_dialect if self.engine.dialect.name == "sqlite" else pg_dialect
        moment = datetime.now(timezone.utc)
        upsert = dialect.insert(member_links).values(member_id=member_id, version=1, changed_at=moment)
        upsert = upsert.on_conflict_do_update(
            index_elements=[member_links.c.member_id],
            set_={"version": member_links.c.version + 1, "changed_at": moment}).returning(member_links.c.version)
        with self._write_lock, self.engine.begin() as conn:
            return conn.execute(upsert).scalar_one()
