"""Where the service's records live and how to connect: SQLite by default, PostgreSQL on request.

One file under COOPSCORE_HOME is enough for a pilot; a bank-facing deployment with several
replicas points COOPSCORE_DATABASE_URL at PostgreSQL instead. Either way the connection problems
surface here, once, as a RecordsError that names the URL (password masked) and what to check.
"""
from __future__ import annotations

import os
import re

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from settings import get_settings
from settings.paths import Paths

ENV_VAR = "COOPSCORE_DATABASE_URL"


class RecordsError(RuntimeError):
    """The records database cannot be used; the message says which one and what to check."""


def database_url(paths: Paths) -> str:
    """COOPSCORE_DATABASE_URL (read once, by settings) if set, else a SQLite file in the home's service folder."""
    url = get_settings().database_url
    if url:
        return url
    folder = paths.home / "service"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'records.db'}"


def masked(url: str) -> str:
    """The URL as it may appear in logs and error messages: any password replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def _advice(url: str) -> str:
    if url.startswith("sqlite"):
        return ("check that the folder exists and is writable by this user, and that the file is "
                "a SQLite database (or unset COOPSCORE_DATABASE_URL to use COOPSCORE_HOME/service/records.db)")
    if url.startswith("postgres"):
        return ("check that PostgreSQL is running and reachable (`pg_isready -h HOST -p PORT`), that "
                "the database exists and that the user may connect; the URL form is "
                "postgresql+psycopg://USER[:PASSWORD]@HOST[:PORT]/DATABASE")
    return ("use sqlite:///PATH/records.db or postgresql+psycopg://USER@HOST/DATABASE "
            f"in {ENV_VAR}")


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets the CLI write while the service reads; NORMAL is durable enough under WAL; the busy
    # timeout makes a second writer wait instead of failing; SQLite leaves foreign keys off by default.
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=5000", "foreign_keys=ON"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def private_sqlite_file(path: str) -> None:
    """Create the SQLite file 0600 before SQLite opens it (SQLite gives its -wal and -shm files the
    database file's mode), and tighten an existing file and its companions to 0600: the records hold
    who consented to whom and who looked at whose data."""
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    try:
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        for name in (path, path + "-wal", path + "-shm"):
            if os.path.exists(name):
                os.chmod(name, 0o600)
    except OSError as exc:
        raise RecordsError(f"cannot create the records database {path} ({exc.strerror}): "
                           f"{_advice('sqlite')}.") from None


def open_engine(url: str) -> Engine:
    """An engine that has connected once, or a RecordsError that says what to check."""
    where = masked(url)
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            private_sqlite_file(parsed.database or "")
            engine = create_engine(parsed)
            event.listen(engine, "connect", _sqlite_pragmas)
        elif parsed.get_backend_name() == "postgresql":
            if parsed.drivername == "postgresql":  # plain postgresql:// would ask for psycopg2
                parsed = parsed.set(drivername="postgresql+psycopg")
            engine = create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20)
        else:
            raise RecordsError(f"the records database {where} is neither SQLite nor PostgreSQL: "
                               f"{_advice('')}.")
    except (ArgumentError, NoSuchModuleError) as exc:
        raise RecordsError(f"the records database URL {where} is not valid ({exc}): "
                           f"{_advice(url)}.") from None
    try:
        with engine.connect():
            pass
    except DBAPIError as exc:
        engine.dispose()
        cause = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise RecordsError(f"cannot open the records database {where} ({cause}): "
                           f"{_advice(url)}.") from None
    return engine
