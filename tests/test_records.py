"""The service's records on both real databases: SQLite (a temp file) and PostgreSQL (a fresh database).

PostgreSQL: COOPSCORE_TEST_POSTGRES_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/postgres)
is used to create `coopscore_test_<hex>` for the session and drop it at the end; each test gets
its own schema in it. When the server is unreachable the PostgreSQL half is skipped, saying so.
"""
from __future__ import annotations

import os
import secrets
import threading
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from settings import reset_settings
from settings.paths import Paths
from records import (SCOPES, AuditEntry, AuthError, Operator, Records, RecordsError, features_sha256)
from records import store as store_module
from records.db import database_url
from records.migrations import current, head, upgrade

ADMIN_URL = os.environ.get("COOPSCORE_TEST_POSTGRES_URL",
                           "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
NOW = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)
LATER = timedelta(days=30)
OPERATOR = Operator("tester")


def grant(records, subject_type, subject_id, bank_id, *, purpose="credit_scoring", source="operator",
          actor=OPERATOR, **kw):
    """grant_consent with the keyword arguments these tests do not vary."""
    return records.grant_consent(subject_type, subject_id, bank_id, purpose=purpose, source=source,
                                 actor=actor, **kw)


@pytest.fixture(scope="session")
def postgres_database():
    """A fresh PostgreSQL database for this session (dropped afterwards), or None if unreachable."""
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except DBAPIError as exc:
        admin.dispose()
        yield None, (f"PostgreSQL at {ADMIN_URL} is unreachable ({str(exc.orig).splitlines()[0]}); "
                     "start it (pg_ctlcluster ... main start) or set COOPSCORE_TEST_POSTGRES_URL")
        return
    name = f"coopscore_test_{secrets.token_hex(4)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False), None
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    """A database URL with nothing in it yet: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'records.db'}"
        return
    database, unreachable = request.getfixturevalue("postgres_database")
    if unreachable:
        pytest.skip(unreachable)
    schema = f"t_{secrets.token_hex(4)}"
    engine = create_engine(database, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    yield make_url(database).update_query_dict({"options": f"-csearch_path={schema}"}) \
        .render_as_string(hide_password=False)
    with engine.connect() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()


@pytest.fixture
def records(url):
    with Records(url=url) as opened:
        yield opened


def entry(i: int, subject: str = "TV0000001", bank: str = "agribank", **kw) -> AuditEntry:
    values = dict(request_id=f"req-{i}", at=NOW + timedelta(seconds=i), bank_id=bank, key_id="k" * 12,
                  subject_type="member", subject_id=subject, endpoint="/score/member",
                  http_status=200, outcome="scored", model_name="member-pd", model_version="3",
                  as_of_date=date(2026, 10, 1), features_sha256=features_sha256({"x": i}),
                  answer={"pd": 0.05, "grade": "B"})
    values.update(kw)
    return AuditEntry(**values)


# ---- schema -----------------------------------------------------------------------------------

def test_migrations_create_the_tables_and_running_them_again_changes_nothing(url):
    with Records(url=url) as first:
        assert current(first.engine) == head() == "0003"
        key = first.add_bank("agribank", "Agribank", ["scores:read"])
        upgrade(first.engine)  # again, by hand
    with Records(url=url) as second:  # and again, on open
        assert current(second.engine) == "0003"
        assert {"banks", "api_keys", "consents", "audit_log", "audit_chain_head", "web_sessions",
                "member_links", "shadow_scores"} <= set(inspect(second.engine).get_table_names())
        assert second.authenticate(key.token).bank_id == "agribank"
        assert len(second.list_banks()) == 1


def test_audit_log_refuses_update_and_delete_in_the_database_itself(records):
    records.append_audit([entry(1), entry(2)])
    for statement in ("UPDATE audit_log SET outcome = 'tampered'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"):
            with records.engine.begin() as conn:
                conn.execute(text(statement))
    assert records.audit_count(outcome="scored") == 2
    assert records.audit_count(outcome="tampered") == 0


# ---- banks and keys ---------------------------------------------------------------------------

def test_an_issued_token_authenticates_with_its_scopes(records):
    key = records.add_bank("agribank", "Agribank", ["scores:read", "scores:batch"])
    assert key.token.startswith(f"cs_{key.key_id}_") and len(key.key_id) == 12
    assert key.token not in repr(key)
    principal = records.authenticate(key.token)
    assert (principal.bank_id, principal.key_id) == ("agribank", key.key_id)
    assert principal.scopes == frozenset({"scores:read", "scores:batch"})
    assert principal.kind == "lender"
    second = records.issue_key("agribank", ["console"])
    assert records.authenticate(second.token).scopes == frozenset({"console"})
    platform = records.authenticate(records.add_platform("ecoop", "E-cooperative platform").token)
    assert platform.kind == "platform" and platform.scopes == frozenset({"consents:write", "audit:read"})


def test_each_refused_key_says_why(records):
    key = records.add_bank("agribank", "Agribank", ["scores:read"])
    secret = key.token.split("_", 2)[2]
    wrong = f"cs_{key.key_id}_{secrets.token_urlsafe(32)}"
    cases = {wrong: "unknown key",
             f"cs_{secrets.token_hex(6)}_{secret}": "unknown key",
             "": "malformed key", "Bearer x": "malformed key", key.token + "x": "malformed key",
             f"cs_{key.key_id.upper()}_{secret}": "malformed key"}
    for token, reason in cases.items():
        with pytest.raises(AuthError) as refused:
            records.authenticate(token)
        assert str(refused.value) == reason, token

    expiring = records.issue_key("agribank", ["scores:read"], expires_at=date(2099, 12, 31))
    assert records.authenticate(expiring.token, now=datetime(2099, 12, 31, 23, 0, tzinfo=timezone.utc))
    with pytest.raises(AuthError, match=r"^expired key .*2099-12-31"):
        records.authenticate(expiring.token, now=datetime(2100, 1, 1, tzinfo=timezone.utc))

    records.revoke_key(key.key_id)
    with pytest.raises(AuthError, match="^revoked key$"):
        records.authenticate(key.token)


def test_the_database_holds_no_plaintext_secret(records):
    key = records.add_bank("agribank", "Agribank", ["scores:read"])
    secret = key.token.split("_", 2)[2]
    with records.engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM api_keys")).all()
        dump = " ".join(str(v) for row in rows for v in row)
        hits = conn.execute(text("SELECT count(*) FROM api_keys WHERE secret_sha256 LIKE :s OR "
                                 "scopes LIKE :s"), {"s": f"%{secret[:20]}%"}).scalar_one()
    assert secret not in dump and key.token not in dump and hits == 0
    assert "secret" not in str(records.list_banks())


def test_bad_bank_ids_scopes_and_duplicates_are_refused_with_advice(records):
    with pytest.raises(ValueError, match="lowercase letters"):
        records.add_bank("Agri Bank!", "Agribank", ["scores:read"])
    with pytest.raises(ValueError, match="valid scopes: .*scores:read"):
        records.add_bank("agribank", "Agribank", ["scores:write"])
    records.add_bank("agribank", "Agribank", ["scores:read"])
    with pytest.raises(ValueError, match="exists already"):
        records.add_bank("agribank", "Agribank again", ["scores:read"])
    for call in (lambda: records.issue_key("nobank", ["scores:read"]), lambda: records.revoke_key("0" * 12),
                 lambda: records.revoke_bank("nobank"),
                 lambda: records.revoke_consent("cn_none", source="operator", actor=OPERATOR)):
        with pytest.raises(LookupError, match="banks list|consents list"):
            call()
    assert set(SCOPES) == {"scores:read", "scores:batch", "consents:write", "audit:read", "console"}


def test_the_cache_is_short_and_revocation_here_clears_it_at_once(records, monkeypatch):
    key = records.add_bank("agribank", "Agribank", ["scores:read"])
    other = records.issue_key("agribank", ["scores:read"])
    records.authenticate(key.token)
    records.authenticate(other.token)
    # revoked behind this object's back (another process): the cache may answer for <= 5 s ...
    with records.engine.begin() as conn:
        conn.execute(text("UPDATE api_keys SET revoked_at = created_at WHERE key_id = :k"), {"k": other.key_id})
    assert records.authenticate(other.token).key_id == other.key_id
    clock = store_module.time.monotonic() + store_module.CACHE_SECONDS + 0.1
    monkeypatch.setattr(store_module.time, "monotonic", lambda: clock)
    with pytest.raises(AuthError, match="revoked"):  # ... and no longer
        records.authenticate(other.token)
    monkeypatch.undo()
    # revoked through this object: refused immediately, cache or not
    records.authenticate(key.token)
    records.revoke_bank("agribank")
    with pytest.raises(AuthError, match="revoked"):
        records.authenticate(key.token)
    assert all(k["revoked_at"] for k in records.list_banks()[0]["keys"])


def test_key_principal_reads_past_the_cache_so_sessions_end_with_their_key(records):
    key = records.add_bank("quy-htx", "Quỹ HTX", ["console"])
    expiring = records.issue_key("quy-htx", ["console", "scores:read"], expires_at=date(2099, 12, 31))
    live = records.key_principal(key.key_id)
    assert (live.bank_id, live.key_id, live.scopes) == ("quy-htx", key.key_id, frozenset({"console"}))
    assert records.key_principal(expiring.key_id, now=datetime(2099, 12, 31, 23, 0, tzinfo=timezone.utc))
    assert records.key_principal(expiring.key_id, now=datetime(2100, 1, 1, tzinfo=timezone.utc)) is None
    assert records.key_principal("0" * 12) is None
    records.authenticate(key.token)  # now cached for authenticate ...
    with records.engine.begin() as conn:  # ... and revoked by another process
        conn.execute(text("UPDATE api_keys SET revoked_at = created_at WHERE key_id = :k"), {"k": key.key_id})
    assert records.authenticate(key.token).key_id == key.key_id  # the cache still answers
    assert records.key_principal(key.key_id) is None  # this does not


def test_threads_share_one_records_object(records):
    key = records.add_bank("agribank", "Agribank", ["scores:batch"])
    errors = []

    def work(n: int) -> None:
        try:
            for i in range(20):
                assert records.authenticate(key.token).bank_id == "agribank"
                records.append_audit([entry(n * 1000 + i), entry(n * 1000 + i, subject="TV2")])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert records.audit_count() == 8 * 20 * 2


# ---- consents ---------------------------------------------------------------------------------

def test_consent_is_explicit_purpose_bound_expiring_and_revocable(records):
    records.add_bank("agribank", "Agribank", ["scores:read"])
    records.add_bank("vbsp", "VBSP", ["scores:read"])
    none = records.consent_for("member", "TV0000001", "agribank", at=NOW)
    assert not none.active and none.consent_id is None
    assert none.reason.startswith("no consent recorded for bank agribank")

    granted = grant(records, "member", "TV0000001", "agribank", expires_at=date(2026, 12, 31), now=NOW)
    check = records.consent_for("member", "TV0000001", "agribank", at=NOW + timedelta(days=1))
    assert check.active and check.consent_id == granted["consent_id"]
    assert not records.consent_for("member", "TV0000001", "vbsp", at=NOW).active  # one bank only
    assert not records.consent_for("member", "TV0000001", "agribank", "marketing", at=NOW).active
    assert not records.consent_for("member", "TV0000002", "agribank", at=NOW).active
    assert not records.consent_for("cooperative", "TV0000001", "agribank", at=NOW).active

    expired = records.consent_for("member", "TV0000001", "agribank", at=datetime(2027, 1, 1, tzinfo=timezone.utc))
    assert not expired.active
    assert expired.reason == f"consent {granted['consent_id']} expired on 2026-12-31 23:59 UTC"

    revoked_on = NOW + timedelta(days=2)
    records.revoke_consent(granted["consent_id"], source="member_page", actor=OPERATOR, now=revoked_on)
    assert records.consent_for("member", "TV0000001", "agribank", at=NOW + timedelta(days=1)).active  # before
    after = records.consent_for("member", "TV0000001", "agribank", at=NOW + timedelta(days=3))
    assert not after.active and after.reason == f"consent {granted['consent_id']} was revoked on 2026-11-03 09:00 UTC"

    renewed = grant(records, "member", "TV0000001", "agribank", expires_at=NOW + LATER,
                    source="application_form", now=NOW + timedelta(days=4))
    assert records.consent_for("member", "TV0000001", "agribank", at=NOW + timedelta(days=5)).consent_id \
        == renewed["consent_id"]
    listed = records.list_consents("member", "TV0000001")
    assert [c["consent_id"] for c in listed] == [renewed["consent_id"], granted["consent_id"]]
    assert listed[1]["revoked_at"] == revoked_on and listed[0]["source"] == "application_form"
    assert (listed[1]["granted_by"], listed[1]["revoked_by"], listed[1]["revoke_source"]) \
        == ("operator:tester", "operator:tester", "member_page")


def test_consent_needs_a_future_expiry_a_known_bank_and_a_known_subject_type(records):
    records.add_bank("agribank", "Agribank", ["scores:read"])
    with pytest.raises(ValueError, match="not after now"):
        grant(records, "member", "TV1", "agribank", expires_at=NOW - LATER, now=NOW)
    with pytest.raises(LookupError, match="no bank 'vbsp'"):
        grant(records, "member", "TV1", "vbsp", expires_at=NOW + LATER, now=NOW)
    with pytest.raises(ValueError, match="'member' or 'cooperative'"):
        grant(records, "household", "TV1", "agribank", expires_at=NOW + LATER, now=NOW)
    with pytest.raises(ValueError, match="purpose 'marketing' .* credit_scoring"):
        grant(records, "member", "TV1", "agribank", purpose="marketing", expires_at=NOW + LATER, now=NOW)
    with pytest.raises(ValueError, match="source must be one of application_form, member_page, operator"):
        grant(records, "member", "TV1", "agribank", source="cli", expires_at=NOW + LATER, now=NOW)
    assert records.list_consents("member", "TV1") == [] and records.audit_count() == 0


# ---- audit log --------------------------------------------------------------------------------

def test_async_audit_writes_share_commits_and_every_waiter_learns_of_a_failure(records):
    """The service's scoring route awaits its audit rows (AuditWriter.write_async): 200 requests at
    once are all committed, and when a commit fails every request in it gets the error (so none is
    answered) while the writer keeps working for the next ones."""
    import asyncio

    from serving.audit_writer import AuditWriter

    writer = AuditWriter(records)

    async def many(n: int, offset: int, **kw):
        return await asyncio.gather(*(writer.write_async([entry(offset + i, **kw)]) for i in range(n)),
                                    return_exceptions=True)

    before = records.audit_count()
    outcomes = asyncio.run(many(200, 0))
    assert outcomes == [None] * 200 and records.audit_count() == before + 200

    # a row the database refuses (outcome is NOT NULL): that request fails, loudly
    failed = asyncio.run(many(3, 10_000, outcome=None))
    assert len(failed) == 3 and all(isinstance(o, Exception) for o in failed)
    assert records.audit_count() == before + 200
    assert asyncio.run(many(5, 20_000)) == [None] * 5 and records.audit_count() == before + 205


def test_audit_appends_in_bulk_and_reads_newest_first(records):
    assert records.append_audit([entry(i) for i in range(1000)]) == 1000
    records.append_audit([entry(5000, subject="TV0000002", bank="vbsp", http_status=403, outcome="no_consent",
                                model_name=None, model_version=None, answer=None, as_of_date="2026-10-01")])
    log = records.access_log("member", "TV0000001", limit=5)
    assert [e["request_id"] for e in log] == ["req-999", "req-998", "req-997", "req-996", "req-995"]
    assert log[0]["at"] == NOW + timedelta(seconds=999) and log[0]["at"].tzinfo is not None
    assert log[0]["model_version"] == "3" and log[0]["as_of_date"] == date(2026, 10, 1)
    assert "id" not in log[0]
    other = records.access_log("member", "TV0000002")
    assert len(other) == 1 and other[0]["outcome"] == "no_consent" and other[0]["answer"] is None
    assert records.audit_count() == 1001
    assert records.audit_count(bank_id="agribank") == 1000
    assert records.audit_count(subject_id="TV0000002", http_status=403) == 1
    with pytest.raises(ValueError, match="cannot filter the audit log on colour"):
        records.audit_count(colour="red")


def test_features_fingerprint_is_stable():
    assert features_sha256({"b": 1, "a": [1.5, None]}) == features_sha256({"a": [1.5, None], "b": 1})
    assert features_sha256({"a": 1}) != features_sha256({"a": 2})
    assert len(features_sha256([1, 2])) == 64


# ---- configuration ----------------------------------------------------------------------------

@pytest.fixture
def fresh_settings():
    """Settings are read once per process: forget them before and after a test that changes the environment."""
    reset_settings()
    yield
    reset_settings()


def test_default_is_sqlite_under_home_and_the_variable_overrides_it(tmp_path, monkeypatch, fresh_settings):
    monkeypatch.delenv("COOPSCORE_DATABASE_URL", raising=False)
    assert database_url(Paths(tmp_path)) == f"sqlite:///{tmp_path / 'service' / 'records.db'}"
    assert (tmp_path / "service").is_dir()
    monkeypatch.setenv("COOPSCORE_DATABASE_URL", "postgresql+psycopg://u@db/x")
    reset_settings()
    assert database_url(Paths(tmp_path)) == "postgresql+psycopg://u@db/x"


def test_sqlite_connections_use_wal_and_foreign_keys(tmp_path):
    with Records(url=f"sqlite:///{tmp_path / 'r.db'}") as records, records.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000


@pytest.mark.parametrize("bad, says", [
    ("postgresql+psycopg://coop:s3cret@127.0.0.1:1/records", "pg_isready"),
    ("not a url", "is not valid"),
    ("mysql+pymysql://u@h/db", "neither SQLite nor PostgreSQL"),
])
def test_a_wrong_url_or_unreachable_server_says_what_to_check(bad, says):
    with pytest.raises(RecordsError, match=says) as refused:
        Records(url=bad)
    assert "s3cret" not in str(refused.value)
    if "s3cret" in bad:
        assert "coop:***@127.0.0.1:1/records" in str(refused.value)


def test_sqlite_in_a_folder_that_cannot_exist_says_what_to_check(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(RecordsError, match="writable"):
        Records(url=f"sqlite:///{blocker / 'records.db'}")


# ---- command line -----------------------------------------------------------------------------

def test_cli_banks_and_consents(tmp_path, monkeypatch, fresh_settings):
    from coopscore import records_cli
    from coopscore.records_cli import audit_app, banks_app, consents_app

    monkeypatch.setattr(records_cli.console, "width", 160)
    monkeypatch.setenv("COOPSCORE_HOME", str(tmp_path))
    monkeypatch.delenv("COOPSCORE_DATABASE_URL", raising=False)
    runner = CliRunner()
    added = runner.invoke(banks_app, ["add", "agribank", "--name", "Agribank", "--scope", "scores:read",
                                      "--scope", "scores:batch", "--expires", "2099-12-31"])
    assert added.exit_code == 0, added.output
    token = added.output.strip().splitlines()[-1]
    assert "shown only this once" in added.output and token.startswith("cs_")
    records = Records(Paths(Path(tmp_path)))
    key_id = records.authenticate(token).key_id

    listed = runner.invoke(banks_app, ["list"])
    assert listed.exit_code == 0 and "agribank" in listed.output and key_id in listed.output
    assert token.split("_", 2)[2] not in listed.output

    bad = runner.invoke(banks_app, ["add", "Bad Id", "--name", "x"])
    assert bad.exit_code == 1 and "error:" in bad.output and "Traceback" not in bad.output

    soon = (date.today() + timedelta(days=200)).isoformat()
    granted = runner.invoke(consents_app, ["grant", "--member", "TV0000001", "--bank", "agribank",
                                           "--expires", soon])
    assert granted.exit_code == 0, granted.output
    assert records.consent_for("member", "TV0000001", "agribank").active
    listed = runner.invoke(consents_app, ["list", "--member", "TV0000001"])
    assert listed.exit_code == 0 and "active" in listed.output and "agribank" in listed.output
    both = runner.invoke(consents_app, ["grant", "--member", "A", "--cooperative", "B", "--bank", "agribank",
                                        "--expires", soon])
    assert both.exit_code == 1 and "exactly one subject" in both.output
    unknown = runner.invoke(consents_app, ["grant", "--member", "A", "--bank", "nobank", "--expires", soon])
    assert unknown.exit_code == 1 and "no bank 'nobank'" in unknown.output

    records.append_audit([entry(1, key_id=key_id)])
    looked = runner.invoke(audit_app, ["show", "--member", "TV0000001"])
    assert looked.exit_code == 0 and "agribank" in looked.output and "member-pd v3" in looked.output
    # both reads above were audited as the operator at the keyboard
    user = __import__("getpass").getuser()
    assert records.audit_count(endpoint="cli.consents.list", bank_id="operator", key_id=f"operator:{user}",
                               subject_id="TV0000001") == 1
    assert records.audit_count(endpoint="cli.audit", subject_id="TV0000001") == 1
    assert records.audit_count(endpoint="consents.grant", key_id=f"operator:{user}") == 1
    verified = runner.invoke(audit_app, ["verify"])
    assert verified.exit_code == 0 and "intact: 4 row(s)" in verified.output, verified.output
    platform_scope = runner.invoke(banks_app, ["add", "sneaky", "--name", "x", "--scope", "consents:write"])
    assert platform_scope.exit_code == 1 and "platform add-key" in platform_scope.output

    revoked = runner.invoke(banks_app, ["revoke", "agribank"])
    assert revoked.exit_code == 0 and "1 key(s) revoked" in revoked.output
    with pytest.raises(AuthError, match="revoked"):
        Records(Paths(Path(tmp_path))).authenticate(token)
    missing = runner.invoke(banks_app, ["revoke-key", "000000000000"])
    assert missing.exit_code == 1 and "no API key" in missing.output
    records.close()


# ---- shadow scores -------------------------------------------------------------------------------

def _shadow_row(i: int, version: str = "2", at: datetime | None = None) -> dict:
    return {"request_id": f"req-{i}", "at": at or NOW + timedelta(seconds=i), "subject_type": "member",
            "subject_id": f"TV{i:07d}", "as_of_date": date(2026, 6, 1), "amount_vnd": 50_000_000 + i,
            "term_months": 12, "champion_version": "1", "champion_pd": 0.05, "champion_score": 640.5,
            "champion_grade": "C", "challenger_version": version, "challenger_pd": 0.07,
            "challenger_score": 630.1, "challenger_grade": "D"}


def test_shadow_rows_round_trip_and_filter(records):
    assert records.append_shadow([_shadow_row(i) for i in range(3)] + [_shadow_row(9, version="3")]) == 4
    rows = records.shadow_rows("member", "2")
    assert [r["request_id"] for r in rows] == ["req-0", "req-1", "req-2"]
    assert rows[1]["amount_vnd"] == 50_000_001 and rows[1]["at"].tzinfo is not None
    assert rows[0]["as_of_date"] == date(2026, 6, 1) and rows[0]["challenger_grade"] == "D"
    assert [r["request_id"] for r in records.shadow_rows("member", since=NOW + timedelta(seconds=2))] == \
        ["req-2", "req-9"]
    assert records.shadow_rows("cooperative") == []
    with pytest.raises(ValueError, match="challenger_pd"):
        records.append_shadow([{k: v for k, v in _shadow_row(5).items() if k != "challenger_pd"}])
