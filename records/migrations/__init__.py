"""Schema migrations of the service's records, run from code: no alembic.ini to ship or lose.

`upgrade(engine)` brings any database to the newest schema and does nothing when it is there
already. `Records` calls `ensure_schema` on open: on SQLite it migrates (one user owns the file);
on PostgreSQL it migrates only as the role that owns the schema, and otherwise refuses to start on
an old schema, because a service role that ran the migrations would own the audit table and could
disable its triggers. DBAs run the migrations by hand as the owner (see __main__.py).
"""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from records.db import RecordsError, masked

HERE = Path(__file__).resolve().parent
_LOCK_ID = 0x636F6F70  # 'coop': the PostgreSQL advisory lock that serialises concurrent upgrades


def alembic_config(url: str | None = None) -> Config:
    """The Alembic configuration, built in code with script_location pointing at this folder."""
    config = Config()
    config.set_main_option("script_location", str(HERE))
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate to `revision` in one locked transaction, so two processes starting together are safe."""
    config = alembic_config()
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock, before reading the version
        else:
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        connection.commit()


def downgrade(engine: Engine, revision: str) -> None:
    """Undo migrations down to `revision` ('base' drops everything, the audit log included)."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def current(engine: Engine) -> str | None:
    """The revision the database is at (None before the first upgrade)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head() -> str:
    """The newest revision in this code."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def may_migrate(engine: Engine) -> bool:
    """Whether the connected role owns the schema: a superuser, a member of the role owning
    alembic_version, or (before the first migration) of the database's owner. Always on SQLite."""
    if engine.dialect.name == "sqlite":
        return True
    with engine.connect() as connection:
        return bool(connection.execute(text(
            "SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) OR COALESCE("
            " (SELECT pg_has_role(tableowner, 'USAGE') FROM pg_tables"
            "  WHERE tablename = 'alembic_version' AND schemaname = current_schema()),"
            " (SELECT pg_has_role(pg_get_userbyid(datdba), 'USAGE') FROM pg_database"
            "  WHERE datname = current_database()))")).scalar())


def ensure_schema(engine: Engine) -> None:
    """Leave a database at head alone; migrate it when this role may; else RecordsError with advice."""
    if current(engine) == head():
        return
    if not may_migrate(engine):
        raise RecordsError(
            f"the records database {masked(str(engine.url.render_as_string(hide_password=False)))} is at "
            f"revision {current(engine) or 'none'}, not {head()}, and this role does not own the schema, so "
            "it will not migrate it: run `python -m records.migrations upgrade head` with the "
            "owner role's URL in COOPSCORE_DATABASE_URL, then `coopscore records grant ROLE` (see "
            "docs/records.md).")
    upgrade(engine)
