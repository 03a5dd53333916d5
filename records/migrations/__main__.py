"""The Alembic command line over these migrations, for DBAs who run schema changes by hand.

    COOPSCORE_DATABASE_URL=postgresql+psycopg://owner@db/coopscore \
        python -m records.migrations upgrade head [--sql]

Same commands as `alembic` (current, history, upgrade, downgrade, --sql for a script to review),
without an alembic.ini: the URL comes from COOPSCORE_DATABASE_URL or COOPSCORE_HOME.
"""
from __future__ import annotations

import sys

from alembic.config import CommandLine

from settings.paths import get_paths
from records.db import database_url
from records.migrations import alembic_config


def main(argv: list[str] | None = None) -> None:
    cli = CommandLine(prog="python -m records.migrations")
    options = cli.parser.parse_args(argv)
    if not hasattr(options, "cmd"):
        cli.parser.error("name a command, e.g. `upgrade head` or `current`")
    config = alembic_config(database_url(get_paths()))
    config.cmd_opts = options
    cli.run_cmd(config, options)


if __name__ == "__main__":
    main(sys.argv[1:])
