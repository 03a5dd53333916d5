"""Signed links: a member sees only their own page, officers keep a short signed session.

A member's link carries `<member id>.<expiry>.<HMAC-SHA256>` (base64url parts, stdlib hmac):
nobody can make one for another member without the secret. The secret comes from
COOPSCORE_WEB_SECRET, else a random one generated once and kept in
`<COOPSCORE_HOME>/service/web-secret` (mode 0600), shared by every worker of the service.

    member_link("TV0000001", base_url="https://coopscore.example.vn")   # what the CLI prints
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from coopscore.paths import Paths, get_paths

SECRET_ENV = "COOPSCORE_WEB_SECRET"
SECRET_FILE = "web-secret"
MEMBER_LINK_DAYS = 90


class InvalidToken(Exception):
    """A link or session that must be refused; str() says why (malformed, forged, expired)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def web_secret(paths: Paths | None = None) -> bytes:
    """The signing secret: the environment's, else the one kept in the home (made once, 0600)."""
    given = os.environ.get(SECRET_ENV, "")
    if given:
        return given.encode("utf-8")
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
                 expires: datetime | timedelta | int | None = None) -> str:
    """A token for `member_id`'s page, valid until `expires` (datetime, epoch seconds or a
    timedelta from now; default 90 days)."""
    secret = secret.encode("utf-8") if isinstance(secret, str) else secret
    payload = f"{_b64(member_id.encode('utf-8'))}.{_expiry(expires, timedelta(days=MEMBER_LINK_DAYS))}"
    return f"{payload}.{_sign(secret, 'member', payload)}"


def verify(token: str, secret: bytes | str, now: float | None = None) -> str:
    """The member id a token was made for; raises InvalidToken if forged, malformed or expired."""
    secret = secret.encode("utf-8") if isinstance(secret, str) else secret
    return _verify(token, secret, "member", now)[0]


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


def member_link(member_id: str, base_url: str = "http://127.0.0.1:3000", paths: Paths | None = None,
                days: int = MEMBER_LINK_DAYS) -> str:
    """The link a member opens on their phone (for the CLI: `coopscore member-link TV0000001`)."""
    token = member_token(member_id, web_secret(paths),
                         datetime.now(timezone.utc) + timedelta(days=days))
    return f"{base_url.rstrip('/')}/app/member/{token}"


# -- officers' sessions ------------------------------------------------------------------------
SESSION_SECONDS = 30 * 60


def session_token(bank_id: str, key_id: str, secret: bytes, seconds: int = SESSION_SECONDS) -> str:
    """`<bank>.<expiry>.<key id>.<nonce>.<sig>`: short-lived; the nonce also seeds the CSRF token."""
    payload = f"{_b64(bank_id.encode())}.{int(time.time()) + seconds}.{key_id}.{secrets.token_urlsafe(12)}"
    return f"{payload}.{_sign(secret, 'session', payload)}"


def verify_session(token: str, secret: bytes) -> tuple[str, str, str]:
    """(bank_id, key_id, nonce) of a valid session; raises InvalidToken."""
    fields = _verify(token, secret, "session", None)
    if len(fields) != 3:
        raise InvalidToken("malformed")
    return fields[0], fields[1], fields[2]


def csrf_token(nonce: str, secret: bytes) -> str:
    return _sign(secret, "csrf", nonce)
