"""Schema migrations of the service's records, run from code: no alembic.ini to ship or lose.

`upgrade(engine)` brings any database to the newest schema and does nothing when it is there
already; `Records` calls it on open. DBAs can run the same migrations by hand (see __main__.py).
"""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

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
