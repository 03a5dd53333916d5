"""PostgreSQL roles: the owner migrates, the service role may only append to and read the audit log.

The service never runs as the owner: an owner may `ALTER TABLE audit_log DISABLE TRIGGER`, so a
service holding the owner's password could rewrite history. `grant_service_role` gives a login
role exactly what the service needs, run once by the owner after each `upgrade head`.
"""
from __future__ import annotations

import re

from sqlalchemy import Engine, text

# what the service reads and writes; everything else it is not granted
APPEND_ONLY = ("audit_log",)
READ_UPDATE = ("audit_chain_head",)  # the chain lock: UPDATE its one row, never INSERT or DELETE
READ_WRITE = ("banks", "api_keys", "consents", "web_sessions", "member_links")
READ_ONLY = ("alembic_version",)  # to check the schema is at head without migrating it

_ROLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def grant_service_role(owner_engine: Engine, role: str) -> list[str]:
    """Grant `role` the service's rights on the records schema (run as the owner); returns the
    statements run. Refuses a superuser or the owner itself, whom no grant can restrict."""
    if owner_engine.dialect.name != "postgresql":
        raise ValueError("roles exist only on PostgreSQL; on SQLite the file's owner is the only user "
                         "(the records file is created 0600).")
    if not isinstance(role, str) or not _ROLE.match(role):
        raise ValueError(f"role name {role!r} is not valid: 1-63 lowercase letters, digits and '_', "
                         "starting with a letter or '_' (e.g. coopscore_app).")
    with owner_engine.begin() as conn:
        if conn.execute(text("SELECT to_regclass('audit_log')")).scalar() is None:
            raise LookupError("the records schema is not there yet: run `python -m records.migrations "
                              "upgrade head` as the owner first.")
        found = conn.execute(text("SELECT rolsuper, pg_has_role(:r, (SELECT tableowner FROM pg_tables "
                                  "WHERE tablename = 'audit_log' AND schemaname = current_schema()), "
                                  "'USAGE') FROM pg_roles WHERE rolname = :r"), {"r": role}).first()
        if found is None:
            raise LookupError(f"no role {role!r} in this cluster: create it first "
                              f"(CREATE ROLE {role} LOGIN PASSWORD '...').")
        superuser, owns = found
        if superuser or owns:
            raise ValueError(f"role {role} is {'a superuser' if superuser else 'the owner of the audit log'}: "
                             "it could disable the audit triggers whatever is granted. The service needs a "
                             "role of its own that owns nothing.")
        schema = conn.execute(text("SELECT current_schema()")).scalar_one()
        statements = [f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"']
        statements += [f'REVOKE ALL ON "{t}" FROM "{role}"' for t in APPEND_ONLY + READ_UPDATE]
        statements += [f'GRANT SELECT, INSERT ON "{t}" TO "{role}"' for t in APPEND_ONLY]
        statements += [f'GRANT SELECT, UPDATE ON "{t}" TO "{role}"' for t in READ_UPDATE]
        statements += [f'GRANT SELECT, INSERT, UPDATE ON "{t}" TO "{role}"' for t in READ_WRITE]
        statements += [f'GRANT SELECT ON "{t}" TO "{role}"' for t in READ_ONLY]
        for statement in statements:
            conn.execute(text(statement))
    return statements
