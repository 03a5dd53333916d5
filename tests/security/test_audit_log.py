"""Attacks on the audit log: rewriting it in place, hiding the rewrite, and the service's own
PostgreSQL role trying to get around the append-only triggers.

PostgreSQL: COOPSCORE_TEST_POSTGRES_URL (default postgres@127.0.0.1:5432, a superuser) creates two
roles for this run, an owner and a service role, and a database owned by the owner; each test gets
a schema of its own in it, migrated as the owner. All of it is dropped at the end.
"""
from __future__ import annotations

import os
import secrets
import stat
import threading
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import pytest
from sqlalchemy import create_engine, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from settings import reset_settings
from settings.paths import Paths
from records import AuditEntry, Records, RecordsError
from records.chain import row_hash
from records.migrations import upgrade
from records.roles import grant_service_role
from records.tables import audit_log

ADMIN_URL = os.environ.get("COOPSCORE_TEST_POSTGRES_URL",
                           "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
NOW = datetime(2026, 11, 1, 9, 0, tzinfo=timezone.utc)


def entry(i: int, **kw) -> AuditEntry:
    """One scoring answer about member TV<i>."""
    values = dict(request_id=f"req-{i}", at=NOW + timedelta(seconds=i), bank_id="agribank", key_id="k" * 12,
                  subject_type="member", subject_id=f"TV{i:07d}", endpoint="/v1/scores", http_status=200,
                  outcome="scored", model_name="member-pd", model_version="3", as_of_date=date(2026, 10, 1),
                  features_sha256="f" * 64, answer={"pd": 0.05 + i / 1000, "grade": "B"},
                  client_request_id=f"client-{i}")
    values.update(kw)
    return AuditEntry(**values)


@pytest.fixture
def fresh_settings():
    """Settings are read once per process: forget them before and after a test that changes the environment."""
    reset_settings()
    yield
    reset_settings()


# ---- PostgreSQL: an owner role and a service role ---------------------------------------------

@dataclass
class Cluster:
    """The run's PostgreSQL database and its two roles (trust authentication: no passwords)."""

    admin_url: str
    database: str
    owner: str
    app: str

    def url(self, role: str, schema: str | None = None) -> str:
        """The URL of this run's database as `role`, with `schema` first on the search path."""
        url = make_url(self.admin_url).set(username=role, password=None, database=self.database)
        if schema:
            url = url.update_query_dict({"options": f"-csearch_path={schema}"})
        return url.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def cluster():
    """Two roles and a database owned by the first, for this test run only."""
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except DBAPIError as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL at {ADMIN_URL} is unreachable ({str(exc.orig).splitlines()[0]}); start it "
                    "or set COOPSCORE_TEST_POSTGRES_URL")
    suffix = secrets.token_hex(3)
    found = Cluster(ADMIN_URL, f"coopscore_sec_{suffix}", f"coopscore_owner_t_{suffix}",
                    f"coopscore_app_t_{suffix}")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE ROLE "{found.owner}" LOGIN'))
        conn.execute(text(f'CREATE ROLE "{found.app}" LOGIN'))
        conn.execute(text(f'CREATE DATABASE "{found.database}" OWNER "{found.owner}"'))
    try:
        yield found
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{found.database}" WITH (FORCE)'))
            conn.execute(text(f'DROP ROLE IF EXISTS "{found.app}"'))
            conn.execute(text(f'DROP ROLE IF EXISTS "{found.owner}"'))
        admin.dispose()


@dataclass
class Roles:
    """One migrated schema: the owner's URL (migrates, may lift triggers) and the service's."""

    owner_url: str
    app_url: str
    app_role: str


@pytest.fixture
def roles(cluster):
    """A fresh schema migrated as the owner, the service role granted its rights on it."""
    schema = f"s_{secrets.token_hex(4)}"
    owner = create_engine(cluster.url(cluster.owner), isolation_level="AUTOCOMMIT")
    with owner.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    with Records(url=cluster.url(cluster.owner, schema)) as migrated:
        grant_service_role(migrated.engine, cluster.app)
    yield Roles(cluster.url(cluster.owner, schema), cluster.url(cluster.app, schema), cluster.app)
    with owner.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    owner.dispose()


# ---- both engines: the service's records, and a way around the triggers -----------------------

@dataclass
class Log:
    """The records as the service opens them, plus `behind_triggers(fn)`: run fn(conn) with the
    append-only triggers lifted, the way a DBA (or an intruder with the owner's rights) could."""

    records: Records
    url: str
    behind_triggers: Callable


@pytest.fixture(params=["sqlite", "postgresql"])
def log(request, tmp_path):
    """The audit log on SQLite (a file) or on PostgreSQL (connected as the service role)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'records.db'}"
        records = Records(url=url)

        def behind_triggers(fn):
            with records.engine.begin() as conn:
                conn.exec_driver_sql("DROP TRIGGER audit_log_no_update")
                conn.exec_driver_sql("DROP TRIGGER audit_log_no_delete")
                fn(conn)
                conn.exec_driver_sql("CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
                                     "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END")
                conn.exec_driver_sql("CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
                                     "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END")
        yield Log(records, url, behind_triggers)
        records.close()
        return
    found: Roles = request.getfixturevalue("roles")
    records = Records(url=found.app_url)
    owner = create_engine(found.owner_url)

    def behind_triggers(fn):
        with owner.begin() as conn:
            conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_delete"))
            fn(conn)
            conn.execute(text("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update_delete"))
    yield Log(records, found.app_url, behind_triggers)
    records.close()
    owner.dispose()


def _ten(log: Log) -> None:
    assert log.records.append_audit([entry(i) for i in range(1, 11)]) == 10
    report = log.records.verify_audit_chain()
    assert report.intact and report.rows_checked == 10


# ---- append-only at the database --------------------------------------------------------------

def test_insert_or_replace_cannot_rewrite_an_audit_row(tmp_path):
    with Records(url=f"sqlite:///{tmp_path / 'records.db'}") as records:
        records.append_audit([entry(1), entry(2)])
        columns = "id, request_id, at, bank_id, key_id, subject_type, subject_id, endpoint, http_status, outcome"
        values = "1, 'forged', '2026-11-01 09:00:00', 'agribank', 'k', 'member', 'TV0000001', '/v1/scores', 200"
        for statement in (f"INSERT OR REPLACE INTO audit_log ({columns}) VALUES ({values}, 'declined')",
                          f"REPLACE INTO audit_log ({columns}) VALUES ({values}, 'declined')",
                          f"INSERT INTO audit_log ({columns}) VALUES ({values}, 'declined') "
                          "ON CONFLICT(id) DO UPDATE SET outcome = 'declined'"):
            with pytest.raises(DBAPIError, match="append-only"):
                with records.engine.begin() as conn:
                    conn.exec_driver_sql(statement)
        assert records.audit_count() == 2 and records.audit_count(outcome="declined") == 0
        assert records.verify_audit_chain().intact


def test_service_role_cannot_update_delete_or_truncate_the_audit_log(log):
    _ten(log)
    for statement in ("UPDATE audit_log SET outcome = 'declined' WHERE id = 3",
                      "DELETE FROM audit_log WHERE id = 3",
                      "INSERT INTO audit_log (id, request_id, at, bank_id, key_id, subject_type, subject_id, "
                      "endpoint, http_status, outcome) VALUES (3, 'x', now(), 'b', 'k', 'member', 'TV1', 'e', "
                      "200, 'declined') ON CONFLICT (id) DO UPDATE SET outcome = 'declined'"):
        if log.url.startswith("sqlite"):
            statement = statement.replace("now()", "'2026-11-01'")
        with pytest.raises(DBAPIError, match="append-only|permission denied"):
            with log.records.engine.begin() as conn:
                conn.execute(text(statement))
    if not log.url.startswith("sqlite"):  # SQLite has no TRUNCATE (DELETE is refused above)
        with pytest.raises(DBAPIError, match="permission denied|append-only"):
            with log.records.engine.begin() as conn:
                conn.execute(text("TRUNCATE audit_log"))
    assert log.records.audit_count() == 10 and log.records.audit_count(outcome="declined") == 0
    assert log.records.verify_audit_chain().intact


def test_service_role_cannot_disable_the_audit_triggers(roles):
    with Records(url=roles.app_url) as records:
        records.append_audit([entry(1)])
        for statement in ("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_delete",
                          "ALTER TABLE audit_log DISABLE TRIGGER ALL",
                          "DROP TRIGGER audit_log_no_update_delete ON audit_log",
                          "DROP TABLE audit_log",
                          "UPDATE audit_chain_head SET id = 2",
                          "DELETE FROM audit_chain_head"):
            with pytest.raises(DBAPIError, match="must be owner|permission denied|check constraint"):
                with records.engine.begin() as conn:
                    conn.execute(text(statement))
        assert records.append_audit([entry(2)]) == 1  # while appending and verifying work
        report = records.verify_audit_chain()
        assert report.intact and report.rows_checked == 2


def test_service_role_does_not_migrate_a_schema_it_does_not_own(cluster):
    schema = f"s_{secrets.token_hex(4)}"
    owner = create_engine(cluster.url(cluster.owner), isolation_level="AUTOCOMMIT")
    with owner.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        conn.execute(text(f'GRANT USAGE, CREATE ON SCHEMA "{schema}" TO "{cluster.app}"'))  # even so
    try:
        with pytest.raises(RecordsError, match="run `python -m records.migrations upgrade head` "
                                               "with the owner role's URL"):
            Records(url=cluster.url(cluster.app, schema))
        with owner.connect() as conn:
            tables = conn.execute(text("SELECT count(*) FROM pg_tables WHERE schemaname = :s"),
                                  {"s": schema}).scalar_one()
        assert tables == 0  # it created nothing, so it owns nothing
    finally:
        with owner.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        owner.dispose()


def test_no_grant_makes_the_owner_or_a_superuser_the_service_role(roles, cluster):
    owner = create_engine(roles.owner_url)
    try:
        with pytest.raises(ValueError, match="owner of the audit log"):
            grant_service_role(owner, cluster.owner)
        with pytest.raises(ValueError, match="superuser"):
            grant_service_role(owner, make_url(ADMIN_URL).username)
        with pytest.raises(LookupError, match="CREATE ROLE"):
            grant_service_role(owner, "nobody_here_" + secrets.token_hex(3))
    finally:
        owner.dispose()


# ---- tamper evidence --------------------------------------------------------------------------

def test_verify_names_the_first_edited_row(log):
    _ten(log)
    log.behind_triggers(lambda conn: conn.execute(
        update(audit_log).where(audit_log.c.id.in_([4, 7])).values(outcome="declined")))
    report = log.records.verify_audit_chain()
    assert (report.first_bad_id, report.problem, report.rows_checked) == (4, "changed", 3)
    assert "row 4" in report.detail


def test_verify_finds_an_edit_whose_hash_was_recomputed(log):
    _ten(log)

    def rewrite(conn):
        row = dict(conn.execute(select(audit_log).where(audit_log.c.id == 5)).first()._mapping)
        row["answer"] = '{"grade": "A", "pd": 0.001}'
        conn.execute(update(audit_log).where(audit_log.c.id == 5)
                     .values(answer=row["answer"], row_hash=row_hash(row["prev_hash"], row)))
    log.behind_triggers(rewrite)
    report = log.records.verify_audit_chain()
    assert (report.first_bad_id, report.problem) == (5, "changed")  # row 6 no longer follows it


def test_verify_names_a_deleted_row(log):
    _ten(log)
    log.behind_triggers(lambda conn: conn.execute(audit_log.delete().where(audit_log.c.id == 6)))
    report = log.records.verify_audit_chain()
    assert (report.first_bad_id, report.problem) == (6, "missing") and "row 6 missing" in report.detail


def test_verify_notices_rows_cut_from_the_end(log):
    _ten(log)
    log.behind_triggers(lambda conn: conn.execute(audit_log.delete().where(audit_log.c.id >= 9)))
    report = log.records.verify_audit_chain()
    assert (report.first_bad_id, report.problem, report.rows_checked) == (9, "missing", 8)


def test_verify_names_two_swapped_rows(log):
    _ten(log)

    def swap(conn):
        third, fourth = (dict(conn.execute(select(audit_log).where(audit_log.c.id == i)).first()._mapping)
                         for i in (3, 4))
        for row, other in ((third, fourth), (fourth, third)):
            values = {k: v for k, v in other.items() if k != "id"}
            conn.execute(update(audit_log).where(audit_log.c.id == row["id"]).values(**values))
    log.behind_triggers(swap)
    report = log.records.verify_audit_chain()
    assert (report.first_bad_id, report.problem) == (3, "reordered") and "row 4" in report.detail


def test_audit_verify_command_exits_non_zero_naming_the_row(tmp_path, monkeypatch, fresh_settings):
    from coopscore.records_cli import audit_app

    monkeypatch.setenv("COOPSCORE_HOME", str(tmp_path))
    monkeypatch.delenv("COOPSCORE_DATABASE_URL", raising=False)
    with Records(Paths(tmp_path)) as records:
        records.append_audit([entry(i) for i in range(1, 6)])
    runner = CliRunner()
    intact = runner.invoke(audit_app, ["verify"])
    assert intact.exit_code == 0 and "intact: 5 row(s) checked" in intact.output, intact.output
    with Records(Paths(tmp_path)) as records, records.engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER audit_log_no_update")
        conn.exec_driver_sql("UPDATE audit_log SET http_status = 403 WHERE id = 2")
    broken = runner.invoke(audit_app, ["verify"])
    assert broken.exit_code == 1 and "row 2 changed" in broken.output and "Traceback" not in broken.output


def test_concurrent_writers_never_fork_the_chain(log):
    # three processes' worth of Records (each its own engine and in-process lock) writing at once
    writers = [log.records] + [Records(url=log.url) for _ in range(2)]
    errors = []

    def work(records: Records, n: int) -> None:
        try:
            for i in range(15):
                records.append_audit([entry(n * 1000 + i * 10 + j) for j in range(1 + i % 3)])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w, k * 2 + t)) for k, w in enumerate(writers) for t in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for w in writers[1:]:
        w.close()
    assert not errors, errors[0]
    expected = 6 * sum(1 + i % 3 for i in range(15))
    report = log.records.verify_audit_chain()
    assert report.intact, report
    assert report.rows_checked == log.records.audit_count() == expected


def test_rows_written_before_the_chain_are_chained_by_its_migration(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "0001")
    with engine.begin() as conn:
        for i in (1, 2, 3):
            conn.exec_driver_sql(
                "INSERT INTO audit_log (request_id, at, bank_id, key_id, subject_type, subject_id, endpoint, "
                f"http_status, outcome, answer) VALUES ('old-{i}', '2026-01-0{i} 08:00:00.000000', 'agribank', "
                f"'kkkk', 'member', 'TV1', '/score/member', 200, 'scored', '{{\"pd\": 0.1}}')")
    engine.dispose()
    with Records(url=f"sqlite:///{tmp_path / 'old.db'}") as records:
        records.append_audit([entry(4)])
        report = records.verify_audit_chain()
        assert report.intact and report.rows_checked == 4
        with records.engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM audit_log WHERE row_hash IS NULL").scalar() == 0


# ---- the records file -------------------------------------------------------------------------

def test_the_records_file_and_its_journal_are_private(tmp_path):
    with Records(Paths(tmp_path)) as records:
        records.append_audit([entry(1)])  # the -wal and -shm files exist while a connection is open
        folder = tmp_path / "service"
        files = sorted(p.name for p in folder.iterdir())
        assert files == ["records.db", "records.db-shm", "records.db-wal"]
        for name in files:
            assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name
    # a file an older version left world-readable is tightened on the next open
    os.chmod(folder / "records.db", 0o644)
    with Records(Paths(tmp_path)):
        assert stat.S_IMODE((folder / "records.db").stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(folder).stat().st_mode) & 0o077 == 0  # and the folder is the owner's alone


def test_the_documented_setup_migrates_as_owner_then_grants_the_service_role(cluster, tmp_path, monkeypatch, fresh_settings):
    """docs/records.md: `python -m records.migrations upgrade head` and `coopscore records grant
    ROLE`, both with the owner's URL; then the service connects as its own role."""
    import subprocess
    import sys

    from coopscore.records_cli import records_app

    schema = f"s_{secrets.token_hex(4)}"
    owner = create_engine(cluster.url(cluster.owner), isolation_level="AUTOCOMMIT")
    with owner.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        env = {**os.environ, "COOPSCORE_DATABASE_URL": cluster.url(cluster.owner, schema),
               "COOPSCORE_HOME": str(tmp_path)}
        done = subprocess.run([sys.executable, "-m", "records.migrations", "upgrade", "head"], env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        monkeypatch.setenv("COOPSCORE_DATABASE_URL", cluster.url(cluster.owner, schema))
        monkeypatch.setenv("COOPSCORE_HOME", str(tmp_path))
        granted = CliRunner().invoke(records_app, ["grant", cluster.app])
        assert granted.exit_code == 0, granted.output
        assert 'GRANT SELECT, INSERT ON "audit_log"' in granted.output
        with Records(url=cluster.url(cluster.app, schema)) as records:
            records.append_audit([entry(1)])
            assert records.verify_audit_chain().intact
            with pytest.raises(DBAPIError, match="permission denied"):
                with records.engine.begin() as conn:
                    conn.execute(text("DELETE FROM audit_log"))
        refused = CliRunner().invoke(records_app, ["grant", cluster.owner])
        assert refused.exit_code == 1 and "owner of the audit log" in refused.output
    finally:
        with owner.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        owner.dispose()


def test_rows_and_consents_from_before_the_chain_migrate_on_postgresql(cluster):
    schema = f"s_{secrets.token_hex(4)}"
    owner = create_engine(cluster.url(cluster.owner), isolation_level="AUTOCOMMIT")
    with owner.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = create_engine(cluster.url(cluster.owner, schema))
    try:
        upgrade(engine, "0001")
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO banks VALUES ('agribank', 'Agribank', now())"))
            conn.execute(text("INSERT INTO consents VALUES ('cn_old', 'member', 'TV1', 'agribank', "
                              "'credit_scoring', now(), now() + interval '30 days', NULL, 'cli')"))
            for i in (1, 2, 3):
                conn.execute(text(
                    "INSERT INTO audit_log (request_id, at, bank_id, key_id, subject_type, subject_id, endpoint, "
                    f"http_status, outcome) VALUES ('old-{i}', now(), 'agribank', 'kkkk', 'member', 'TV1', "
                    "'/score/member', 200, 'scored')"))
        with Records(url=cluster.url(cluster.owner, schema)) as records:
            records.append_audit([entry(4)])
            report = records.verify_audit_chain()
            assert report.intact and report.rows_checked == 4
            [old] = records.list_consents("member", "TV1")
            assert (old["source"], old["granted_by"]) == ("operator", "operator:unrecorded")
            with records.engine.begin() as conn:  # the triggers are back on after the backfill
                with pytest.raises(DBAPIError, match="append-only"):
                    conn.execute(text("UPDATE audit_log SET outcome = 'x' WHERE id = 1"))
    finally:
        engine.dispose()
        with owner.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        owner.dispose()
