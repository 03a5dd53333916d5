"""Trust boundary (issue 11): party kinds, consents that say who gave them, a hash-chained audit log,
web sessions and member-link versions.

- banks.kind: 'lender' (every existing bank) or 'platform'. Existing keys lose the platform scopes
  (consents:write, audit:read) a lender can no longer hold; a key that held nothing else is revoked
  now (its scopes stay listed, so the operator sees what it was and issues the platform a key).
- consents: source is now 'application_form' | 'member_page' | 'operator' (old 'cli' -> 'operator',
  'api' -> 'application_form'); granted_by, revoked_by, revoke_source. Rows from before this
  migration did not record who granted them: granted_by says 'operator:unrecorded' or
  'key:unrecorded' rather than inventing a name.
- audit_log: client_request_id; prev_hash and row_hash (chain.py), computed here for existing rows;
  key_id widened to 64 characters ('operator:<name>'); on SQLite a BEFORE INSERT trigger refuses an
  id that exists (INSERT OR REPLACE deletes without firing DELETE triggers).
- audit_chain_head: the one-row lock and memory of the chain's last row.
- web_sessions, member_links: the console's server-side sessions and the members' link versions.

Revision ID: 0002
Revises: 0001
"""
from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

from records.chain import GENESIS, HASHED_FIELDS, row_hash
from records.tables import audit_log

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
SOURCES = "('application_form', 'member_page', 'operator')"
SQLITE_NO_REUSED_ID = ("CREATE TRIGGER audit_log_no_reused_id BEFORE INSERT ON audit_log "
                       "WHEN EXISTS (SELECT 1 FROM audit_log WHERE id = NEW.id) "
                       "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only: id exists'); END")
SQLITE_NO_UPDATE = ("CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log "
                    "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END")


def _consents_sqlite() -> None:
    # SQLite cannot change a CHECK constraint in place: build the new table, copy, swap.
    op.create_table(
        "consents_new",
        sa.Column("consent_id", sa.String(32), primary_key=True),
        sa.Column("subject_type", sa.String(16), nullable=False),
        sa.Column("subject_id", sa.String(64), nullable=False),
        sa.Column("bank_id", sa.String(40), sa.ForeignKey("banks.bank_id"), nullable=False),
        sa.Column("purpose", sa.String(64), nullable=False),
        sa.Column("granted_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("granted_by", sa.String(64), nullable=False),
        sa.Column("revoked_by", sa.String(64), nullable=True),
        sa.Column("revoke_source", sa.String(16), nullable=True),
        sa.CheckConstraint(f"source IN {SOURCES}", name="ck_consents_source"),
        sa.CheckConstraint(f"revoke_source IS NULL OR revoke_source IN {SOURCES}",
                           name="ck_consents_revoke_source"),
        sa.CheckConstraint("subject_type IN ('member', 'cooperative')", name="ck_consents_subject_type"),
    )
    op.execute("INSERT INTO consents_new SELECT consent_id, subject_type, subject_id, bank_id, purpose, "
               "granted_at, expires_at, revoked_at, "
               "CASE source WHEN 'cli' THEN 'operator' ELSE 'application_form' END, "
               "CASE source WHEN 'cli' THEN 'operator:unrecorded' ELSE 'key:unrecorded' END, "
               "CASE WHEN revoked_at IS NULL THEN NULL ELSE 'unrecorded' END, NULL FROM consents")
    op.drop_table("consents")
    op.rename_table("consents_new", "consents")
    op.create_index("ix_consents_subject_bank", "consents", ["subject_type", "subject_id", "bank_id"])


def _consents_postgresql() -> None:
    op.drop_constraint("ck_consents_source", "consents", type_="check")
    op.alter_column("consents", "source", type_=sa.String(16))
    op.add_column("consents", sa.Column("granted_by", sa.String(64), nullable=True))
    op.add_column("consents", sa.Column("revoked_by", sa.String(64), nullable=True))
    op.add_column("consents", sa.Column("revoke_source", sa.String(16), nullable=True))
    op.execute("UPDATE consents SET "
               "granted_by = CASE source WHEN 'cli' THEN 'operator:unrecorded' ELSE 'key:unrecorded' END, "
               "revoked_by = CASE WHEN revoked_at IS NULL THEN NULL ELSE 'unrecorded' END, "
               "source = CASE source WHEN 'cli' THEN 'operator' ELSE 'application_form' END")
    op.alter_column("consents", "granted_by", nullable=False)
    op.create_check_constraint("ck_consents_source", "consents", f"source IN {SOURCES}")
    op.create_check_constraint("ck_consents_revoke_source", "consents",
                               f"revoke_source IS NULL OR revoke_source IN {SOURCES}")


PLATFORM_ONLY = ("consents:write", "audit:read")


def _strip_platform_scopes_from_lenders() -> None:
    bind = op.get_bind()
    keys = sa.table("api_keys", sa.column("key_id", sa.String), sa.column("scopes", sa.Text),
                    sa.column("revoked_at", TS))
    now = datetime.now(timezone.utc)
    for key_id, scopes, revoked_at in bind.execute(sa.select(keys.c.key_id, keys.c.scopes, keys.c.revoked_at)).all():
        kept = [s for s in scopes.split() if s not in PLATFORM_ONLY]
        if len(kept) == len(scopes.split()):
            continue
        if kept:
            bind.execute(keys.update().where(keys.c.key_id == key_id).values(scopes=" ".join(kept)))
        elif revoked_at is None:
            bind.execute(keys.update().where(keys.c.key_id == key_id).values(revoked_at=now))


def _chain_existing_rows(dialect: str) -> tuple[int, str]:
    """Hash the rows written before the chain existed, in id order; returns (last id, last hash)."""
    bind = op.get_bind()
    rows = bind.execute(sa.select(*(audit_log.c[n] for n in HASHED_FIELDS)).order_by(audit_log.c.id)).all()
    if not rows:
        return 0, GENESIS
    prev, updates = GENESIS, []
    for r in rows:
        this = row_hash(prev, r._mapping)
        updates.append({"rid": r.id, "p": prev, "h": this})
        prev = this
    # the append-only triggers are lifted for this one backfill, inside the migration's transaction
    if dialect == "postgresql":
        op.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_no_update_delete")
    else:
        op.execute("DROP TRIGGER audit_log_no_update")
    bind.execute(sa.text("UPDATE audit_log SET prev_hash = :p, row_hash = :h WHERE id = :rid"), updates)
    if dialect == "postgresql":
        op.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_no_update_delete")
    else:
        op.execute(SQLITE_NO_UPDATE)
    return rows[-1].id, prev


def upgrade() -> None:
    dialect = op.get_context().dialect.name
    # raw SQL: SQLite accepts a CHECK in ADD COLUMN, and banks is referenced by keys and consents,
    # so rebuilding it is not an option with foreign keys on
    op.execute("ALTER TABLE banks ADD COLUMN kind VARCHAR(16) DEFAULT 'lender' NOT NULL "
               "CONSTRAINT ck_banks_kind CHECK (kind IN ('lender', 'platform'))")
    _strip_platform_scopes_from_lenders()  # every bank so far is a lender
    _consents_postgresql() if dialect == "postgresql" else _consents_sqlite()

    op.add_column("audit_log", sa.Column("client_request_id", sa.String(64), nullable=True))
    op.add_column("audit_log", sa.Column("prev_hash", sa.String(64), nullable=True))
    op.add_column("audit_log", sa.Column("row_hash", sa.String(64), nullable=True))
    if dialect == "postgresql":  # SQLite does not enforce VARCHAR lengths
        op.alter_column("audit_log", "key_id", type_=sa.String(64))
    last_id, last_hash = _chain_existing_rows(dialect)
    if dialect == "sqlite":
        op.execute(SQLITE_NO_REUSED_ID)

    head = op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("last_id", sa.BigInteger, nullable=False),
        sa.Column("last_hash", sa.String(64), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint("id = 1", name="ck_audit_chain_head_one_row"),
    )
    op.bulk_insert(head, [{"id": 1, "last_id": last_id, "last_hash": last_hash,
                           "updated_at": datetime.now(timezone.utc)}])

    op.create_table(
        "web_sessions",
        sa.Column("session_id", sa.String(32), primary_key=True),
        sa.Column("bank_id", sa.String(40), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("ended_at", TS, nullable=True),
    )
    op.create_table(
        "member_links",
        sa.Column("member_id", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("changed_at", TS, nullable=False),
    )


def downgrade() -> None:
    raise NotImplementedError(
        "0002 is not reversible: going back would drop the audit log's hash chain and who granted each "
        "consent. Restore a backup taken before the upgrade instead.")
