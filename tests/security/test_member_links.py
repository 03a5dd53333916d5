"""Members' links (issue 11): one member's links can be revoked without touching anyone else's,
they live 30 days by default, their tokens never reach a log, and the signing secret is 0600."""
from __future__ import annotations

import logging
import os
import stat
import time

import pytest

from serving.web import links
from web_browser import console_client


@pytest.fixture
def client(pipeline_home, records):
    with console_client(pipeline_home, records, scorer=None) as c:
        yield c


def test_revoked_member_link_stops_working(client, pipeline_home, records):
    os.environ.pop(links.SECRET_ENV, None)
    first = links.member_link("TV9000011", "", paths=pipeline_home, records=records)
    other = links.member_link("TV9000012", "", paths=pipeline_home, records=records)
    path = lambda url: url.removeprefix("/app")  # noqa: E731 (the app is mounted at /app)
    assert client.get(path(first)).status_code == 200
    assert client.get(path(other)).status_code == 200
    version = links.revoke_links("TV9000011", records=records)
    assert version == records.member_link_version("TV9000011") >= 1
    assert client.get(path(first)).status_code == 403  # every earlier link of that member
    assert client.get(path(other)).status_code == 200  # nobody else's
    again = links.member_link("TV9000011", "", paths=pipeline_home, records=records)
    assert client.get(path(again)).status_code == 200  # a new link works
    links.revoke_links("TV9000011", paths=pipeline_home)  # the CLI's way: opens the records itself
    assert client.get(path(again)).status_code == 403


def test_member_link_lives_30_days_by_default(pipeline_home, records):
    assert links.MEMBER_LINK_DAYS == 30
    token = links.member_link("TV9000013", "", paths=pipeline_home, records=records).rsplit("/", 1)[1]
    secret = links.web_secret(pipeline_home)
    in_29_days, in_31_days = time.time() + 29 * 86400, time.time() + 31 * 86400
    assert links.verify_link(token, secret, now=in_29_days)[0] == "TV9000013"
    with pytest.raises(links.InvalidToken, match="expired"):
        links.verify_link(token, secret, now=in_31_days)


def test_a_forged_version_is_refused(pipeline_home):
    secret = links.web_secret(pipeline_home)
    token = links.member_token("TV9000014", secret, version=0)
    member, expires, version, signature = token.split(".")
    with pytest.raises(links.InvalidToken, match="bad signature"):
        links.verify_link(f"{member}.{expires}.7.{signature}", secret)


def test_member_tokens_never_reach_a_log():
    token = links.member_token("TV9000015", b"k" * 32)
    # uvicorn's access log: '%s - "%s %s HTTP/%s" %d' with the path among the args
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "GET", f"/app/member/{token}?lang=en", "1.1", 200), None)
    plain = logging.LogRecord("coopscore", logging.INFO, __file__, 1,
                              f"GET /app/member/{token} took 3 ms", None, None)
    named = logging.LogRecord("x", logging.INFO, __file__, 1, "%(path)s", ({"path": f"/member/{token}"},), None)
    for r in (record, plain, named):
        assert links.redact_member_tokens.filter(r) is True  # redacted, never dropped
        assert token not in r.getMessage() and "[redacted]" in r.getMessage()
    assert record.getMessage() == '127.0.0.1:5000 - "GET /app/member/[redacted]?lang=en HTTP/1.1" 200'
    assert plain.getMessage() == "GET /app/member/[redacted] took 3 ms"


def test_web_secret_file_is_0600(tmp_path):
    from settings import Paths

    os.environ.pop(links.SECRET_ENV, None)
    links.web_secret(Paths(tmp_path))
    mode = stat.S_IMODE((tmp_path / "service" / links.SECRET_FILE).stat().st_mode)
    assert mode == 0o600, oct(mode)
