"""Signed links: a member sees only their own page, officers keep a short signed session.

A member's link carries `<member id>.<expiry>.<link version>.<HMAC-SHA256>` (base64url parts,
stdlib hmac): nobody can make one for another member without the secret. The version is the
member's in the service's records (`Records.member_link_version`); `revoke_links` bumps it, so
every link given to that member before stops working, and nobody else's. Links live
MEMBER_LINK_DAYS (30) days unless COOPSCORE_MEMBER_LINK_DAYS says otherwise.

An officer's session cookie carries the id of a server-side session (`Records.start_session`):
logging out ends it on the server, so a copied cookie is worthless afterwards.

The secret comes from COOPSCORE_WEB_SECRET, else a random one generated once and kept in
`<COOPSCORE_HOME>/service/web-secret` (mode 0600), shared by every worker of the service.

    member_link("TV0000001", base_url="https://coopscore.example.vn")   # what the CLI prints
    revoke_links("TV0000001")                                           # every earlier link dies
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from settings import Paths, get_paths, get_settings

SECRET_ENV = "COOPSCORE_WEB_SECRET"
SECRET_FILE = "web-secret"
MEMBER_LINK_DAYS = 30  # the default of settings.member_link_days


class InvalidToken(Exception):
    """A link or session that must be refused; str() says why (malformed, forged, expired)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def web_secret(paths: Paths | None = None) -> bytes:
    """The signing secret: COOPSCORE_WEB_SECRET (the settings), else the one kept in the home
    (made once, 0600)."""
    given = get_settings().web_secret
    if given is not None and given.get_secret_value():
        return given.get_secret_value().encode("utf-8")
    path = (paths or get_paths()).service / SECRET_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:  # O_EXCL: two workers starting together agree on one secret
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(48))
        except FileExistsError:
            pass
    for _ in range(50):  # the winner may still be writing
        text = Path(path).read_text().strip()
        if text:
            return text.encode("utf-8")
        time.sleep(0.01)
    raise RuntimeError(f"the web secret file {path} is empty; delete it to make a new one")


def _sign(secret: bytes, kind: str, payload: str) -> str:
    return _b64(hmac.new(secret, f"{kind}|{payload}".encode("utf-8"), hashlib.sha256).digest())


def _expiry(expires: datetime | timedelta | int | float | None, default: timedelta) -> int:
    if expires is None:
        expires = default
    if isinstance(expires, timedelta):
        return int(time.time() + expires.total_seconds())
    if isinstance(expires, datetime):
        return int(expires.timestamp())
    return int(expires)


def member_token(member_id: str, secret: bytes | str,
                 expires: datetime | timedelta | int | None = None, version: int = 0) -> str:
    """A token for `member_id`'s page at link `version`, valid until `expires` (datetime, epoch
    seconds or a timedelta from now; default MEMBER_LINK_DAYS)."""
    secret = secret.encode("utf-8") if isinstance(secret, str) else secret
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise ValueError(f"a link version is a whole number >= 0, not {version!r}")
    payload = (f"{_b64(member_id.encode('utf-8'))}."
               f"{_expiry(expires, timedelta(days=MEMBER_LINK_DAYS))}.{version}")
    return f"{payload}.{_sign(secret, 'member', payload)}"


def verify_link(token: str, secret: bytes | str, now: float | None = None) -> tuple[str, int]:
    """(member id, link version) of a genuine, unexpired token; raises InvalidToken if forged,
    malformed or expired. The caller compares the version with the member's current one."""
    secret = secret.encode("utf-8") if isinstance(secret, str) else secret
    fields = _verify(token, secret, "member", now)
    if len(fields) != 2 or not fields[1].isdigit():
        raise InvalidToken("malformed")
    return fields[0], int(fields[1])


def verify(token: str, secret: bytes | str, now: float | None = None) -> str:
    """The member id a token was made for; raises InvalidToken if forged, malformed or expired
    (signature and expiry only: the page also checks the link version, see `verify_link`)."""
    return verify_link(token, secret, now)[0]


def _verify(token: str, secret: bytes, kind: str, now: float | None) -> list[str]:
    parts = token.split(".")
    if len(parts) < 3:
        raise InvalidToken("malformed")
    payload, signature = ".".join(parts[:-1]), parts[-1]
    if not hmac.compare_digest(signature, _sign(secret, kind, payload)):
        raise InvalidToken("bad signature")
    fields = parts[:-1]
    try:
        expires = int(fields[1])
        first = _unb64(fields[0]).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise InvalidToken("malformed") from None
    if expires < (now if now is not None else time.time()):
        raise InvalidToken("expired")
    return [first, *fields[2:]]


def _records(paths: Paths | None):
    from records import Records  # noqa: PLC0415 (the database only when a link is made)

    return Records(paths or get_paths())


def member_link(member_id: str, base_url: str = "http://127.0.0.1:3000", paths: Paths | None = None,
                days: int | None = None, records=None) -> str:
    """The link a member opens on their phone (for the CLI: `coopscore member-link TV0000001`),
    signed with the member's current link version; `days` defaults to settings.member_link_days."""
    if days is None:
        from settings import get_settings  # noqa: PLC0415

        days = get_settings().member_link_days
    if records is None:
        with _records(paths) as own:
            version = own.member_link_version(member_id)
    else:
        version = records.member_link_version(member_id)
    token = member_token(member_id, web_secret(paths),
                         datetime.now(timezone.utc) + timedelta(days=days), version=version)
    return f"{base_url.rstrip('/')}/app/member/{token}"


def revoke_links(member_id: str, paths: Paths | None = None, records=None) -> int:
    """Make every link issued to `member_id` so far stop working (a lost or shared phone); returns
    the new link version. Other members' links are untouched. For `coopscore member-link ID --revoke`."""
    if records is not None:
        return records.revoke_member_links(member_id)
    with _records(paths) as own:
        return own.revoke_member_links(member_id)


# -- officers' sessions ------------------------------------------------------------------------
SESSION_SECONDS = 30 * 60


def session_token(bank_id: str, key_id: str, session_id: str, secret: bytes,
                  seconds: int = SESSION_SECONDS) -> str:
    """`<bank>.<expiry>.<key id>.<session id>.<sig>`: short-lived, naming a server-side session
    (`Records.start_session`); the session id also seeds the CSRF token."""
    payload = f"{_b64(bank_id.encode())}.{int(time.time()) + seconds}.{key_id}.{session_id}"
    return f"{payload}.{_sign(secret, 'session', payload)}"


def verify_session(token: str, secret: bytes) -> tuple[str, str, str]:
    """(bank_id, key_id, session_id) of a genuine, unexpired cookie; raises InvalidToken. Whether
    the session is still live is the records' to say (`Records.session_live`)."""
    fields = _verify(token, secret, "session", None)
    if len(fields) != 3:
        raise InvalidToken("malformed")
    return fields[0], fields[1], fields[2]


def csrf_token(session_id: str, secret: bytes) -> str:
    """The CSRF token of a session: forms and the what-if fetch send it back."""
    return _sign(secret, "csrf", session_id)


# -- logs ----------------------------------------------------------------------------------------
_MEMBER_PATH = re.compile(r"(/member/)[^/?#\s\"']+")
REDACTED = r"\1[redacted]"


def _redact(value):
    return _MEMBER_PATH.sub(REDACTED, value) if isinstance(value, str) else value


class MemberTokenRedactor(logging.Filter):
    """Rewrites /app/member/<token> to /app/member/[redacted] in a log record's message and
    arguments: a link in a log is the member's key to their page. Install it on the access
    logger (and any handler that may see request paths); it never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact in place; always True (the record is kept)."""
        record.msg = _redact(record.msg)
        if isinstance(record.args, dict):
            record.args = {k: _redact(v) for k, v in record.args.items()}
        elif isinstance(record.args, tuple):
            record.args = tuple(_redact(a) for a in record.args)
        return True


redact_member_tokens = MemberTokenRedactor()
