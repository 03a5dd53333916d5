"""The service's records behind one thread-safe facade: banks and their keys, consents, audit log.

The service calls it from several threads on every request, so authentication is cached briefly
in memory, and the audit log is written in bulk, one transaction per call.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field, fields
from datetime import date, datetime, timezone
from typing import Any, Iterable

from sqlalchemy import and_, bindparam, func, insert, or_, select, update
from sqlalchemy.exc import DBAPIError

from coopscore.paths import Paths, get_paths
from serving.records.db import RecordsError, database_url, masked, open_engine
from serving.records.migrations import upgrade
from serving.records.tables import api_keys, audit_log, banks, consents

SCOPES = {
    "scores:read": "score single applications",
    "scores:batch": "score up to 1,000 applications per call",
    "consents:write": "record and revoke consents (the platform itself)",
    "audit:read": "read a subject's access log (the platform itself)",
    "console": "sign in to the loan officers' console (a cooperative development fund)",
}
SUBJECT_TYPES = ("member", "cooperative")
CACHE_SECONDS = 5.0

_BANK_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,39}$")
_TOKEN = re.compile(r"^cs_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_PURPOSE = re.compile(r"^[a-z][a-z0-9_]{1,63}$")


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
    """Who is asking: the bank, its key, and what that key may do."""

    bank_id: str
    key_id: str
    scopes: frozenset[str]


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


_AUDIT_FIELDS = tuple(f.name for f in fields(AuditEntry))


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


def _now(now: datetime | None) -> datetime:
    return _utc(now) if now is not None else datetime.now(timezone.utc)


def _when(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def _check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    scopes = tuple(dict.fromkeys(scopes))  # de-duplicated, order kept
    if not scopes:
        raise ValueError(f"give a key at least one scope; valid scopes: {', '.join(SCOPES)}.")
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise ValueError(f"unknown scope(s) {', '.join(unknown)}; valid scopes: "
                         + "; ".join(f"{k} ({v})" for k, v in SCOPES.items()) + ".")
    return scopes


def _check_subject(subject_type: str, subject_id: str) -> None:
    if subject_type not in SUBJECT_TYPES:
        raise ValueError(f"subject_type must be 'member' or 'cooperative', not {subject_type!r}.")
    if not subject_id or not subject_id.strip():
        raise ValueError(f"give the {subject_type}'s id (e.g. TV0000001 or HTX000001).")


class Records:
    """The service's own records; open once per process and share between threads."""

    def __init__(self, paths: Paths | None = None, url: str | None = None):
        self.url = url or database_url(paths or get_paths())
        self.engine = open_engine(self.url)
        try:
            upgrade(self.engine)
        except DBAPIError as exc:
            self.engine.dispose()
            cause = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise RecordsError(f"cannot bring the records database {masked(self.url)} to the current "
                               f"schema ({cause}): the user needs the right to create tables and "
                               "triggers, or a DBA runs `python -m serving.records.migrations upgrade "
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

    # ---- banks and API keys -------------------------------------------------------------------

    def add_bank(self, bank_id: str, name: str, scopes: Iterable[str],
                 expires_at: datetime | date | None = None) -> IssuedKey:
        """Register a bank and issue its first key."""
        if not isinstance(bank_id, str) or not _BANK_ID.match(bank_id):
            raise ValueError(f"bank id {bank_id!r} is not valid: use 2-40 lowercase letters, digits "
                             "and dashes, starting with a letter or digit (e.g. 'agribank' or 'vbsp-hn').")
        if not name or not name.strip():
            raise ValueError("give the bank's name (--name 'Agribank Ha Noi').")
        scopes = _check_scopes(scopes)
        with self._write_lock, self.engine.begin() as conn:
            if conn.execute(select(banks.c.bank_id).where(banks.c.bank_id == bank_id)).first():
                raise ValueError(f"bank {bank_id} exists already; issue it another key with "
                                 "`issue_key` (or revoke it first).")
            conn.execute(insert(banks).values(bank_id=bank_id, name=name.strip(),
                                              created_at=datetime.now(timezone.utc)))
            return self._insert_key(conn, bank_id, scopes, expires_at)

    def issue_key(self, bank_id: str, scopes: Iterable[str],
                  expires_at: datetime | date | None = None) -> IssuedKey:
        """Issue another key to a known bank (key rotation: issue, switch, then revoke the old one)."""
        scopes = _check_scopes(scopes)
        with self._write_lock, self.engine.begin() as conn:
            self._bank_must_exist(conn, bank_id)
            return self._insert_key(conn, bank_id, scopes, expires_at)

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
            row = conn.execute(select(api_keys).where(api_keys.c.key_id == key_id)).first()
        if row is None or not hmac.compare_digest(row.secret_sha256, digest):
            raise AuthError("unknown key")  # a wrong secret says no more than an unknown id
        if row.revoked_at is not None:
            raise AuthError("revoked key")
        if row.expires_at is not None and moment >= row.expires_at:
            raise AuthError(f"expired key (expired on {_when(row.expires_at)})")
        principal = Principal(row.bank_id, row.key_id, frozenset(row.scopes.split()))
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
            row = conn.execute(select(api_keys.c.bank_id, api_keys.c.scopes, api_keys.c.expires_at,
                                      api_keys.c.revoked_at).where(api_keys.c.key_id == key_id)).first()
        if row is None or row.revoked_at is not None:
            return None
        if row.expires_at is not None and _now(now) >= row.expires_at:
            return None
        return Principal(row.bank_id, key_id, frozenset(row.scopes.split()))

    def list_banks(self) -> list[dict]:
        """Every bank with its keys (ids, scopes, dates; never the hash)."""
        with self.engine.connect() as conn:
            bank_rows = conn.execute(select(banks).order_by(banks.c.bank_id)).all()
            key_rows = conn.execute(select(api_keys.c.key_id, api_keys.c.bank_id, api_keys.c.scopes,
                                           api_keys.c.created_at, api_keys.c.expires_at,
                                           api_keys.c.revoked_at)
                                    .order_by(api_keys.c.created_at, api_keys.c.key_id)).all()
        out = {b.bank_id: {"bank_id": b.bank_id, "name": b.name, "created_at": b.created_at,
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
        if conn.execute(select(banks.c.bank_id).where(banks.c.bank_id == bank_id)).first() is None:
            raise LookupError(f"no bank {bank_id!r}; `coopscore banks list` shows the banks, "
                              "`coopscore banks add` registers one.")

    # ---- consents -----------------------------------------------------------------------------

    def grant_consent(self, subject_type: str, subject_id: str, bank_id: str,
                      purpose: str = "credit_scoring", expires_at: datetime | date | None = None,
                      source: str = "cli", now: datetime | None = None) -> dict:
        """Record a subject's explicit consent for one bank, one purpose, until a date."""
        _check_subject(subject_type, subject_id)
        if not _PURPOSE.match(purpose or ""):
            raise ValueError(f"purpose {purpose!r} is not valid: one lowercase word such as "
                             "'credit_scoring' (consent is given for a purpose, not in general).")
        if source not in ("cli", "api"):
            raise ValueError(f"source must be 'cli' or 'api', not {source!r}.")
        if expires_at is None:
            raise ValueError("a consent needs an expiry date (expires_at): consent is never open-ended.")
        moment = _now(now)
        expires = _utc(expires_at, end_of_day=True)
        if expires <= moment:
            raise ValueError(f"the consent would expire on {_when(expires)}, which is not after now "
                             f"({_when(moment)}); give a later --expires date.")
        row = {"consent_id": "cn_" + secrets.token_hex(8), "subject_type": subject_type,
               "subject_id": subject_id.strip(), "bank_id": bank_id, "purpose": purpose,
               "granted_at": moment, "expires_at": expires, "revoked_at": None, "source": source}
        with self._write_lock, self.engine.begin() as conn:
            self._bank_must_exist(conn, bank_id)
            conn.execute(insert(consents).values(**row))
        return row

    def revoke_consent(self, consent_id: str, now: datetime | None = None) -> dict:
        """Withdraw a consent (from now on); revoking twice keeps the first date."""
        moment = _now(now)
        with self._write_lock, self.engine.begin() as conn:
            row = conn.execute(select(consents).where(consents.c.consent_id == consent_id)).first()
            if row is None:
                raise LookupError(f"no consent {consent_id!r}; `coopscore consents list --member ID` "
                                  "shows a subject's consents.")
            if row.revoked_at is None:
                conn.execute(update(consents).where(consents.c.consent_id == consent_id)
                             .values(revoked_at=moment))
        out = dict(row._mapping)
        out["revoked_at"] = out["revoked_at"] or moment
        return out

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
        """Append entries in one transaction (a batch of 1,000 scores is one insert); returns the count."""
        if not entries:
            return 0
        rows = []
        for e in entries:
            row = {name: getattr(e, name) for name in _AUDIT_FIELDS}  # shallow: asdict deep-copies
            row["at"] = _utc(e.at)
            if isinstance(e.as_of_date, str):
                row["as_of_date"] = date.fromisoformat(e.as_of_date)
            if e.answer is not None and not isinstance(e.answer, str):
                row["answer"] = json.dumps(e.answer, sort_keys=True, ensure_ascii=False,
                                           default=_json_default)
            rows.append(row)
        with self._write_lock, self.engine.begin() as conn:
            conn.execute(insert(audit_log), rows)
        return len(rows)

    def access_log(self, subject_type: str, subject_id: str, limit: int = 100) -> list[dict]:
        """Who looked at this subject's data, newest first: bank, when, endpoint, outcome, model."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(audit_log).where(
                audit_log.c.subject_type == subject_type, audit_log.c.subject_id == subject_id)
                .order_by(audit_log.c.at.desc(), audit_log.c.id.desc()).limit(limit)).all()
        out = []
        for r in rows:
            entry = dict(r._mapping)
            entry.pop("id")
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
