"""The service's own tables: who may ask (banks, API keys), on whose consent, and who asked.

Timestamps are stored in UTC and always come back timezone-aware, on SQLite as on PostgreSQL.
The migrations in `migrations/versions` create these tables; this module is how the code reads them.
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (BigInteger, CheckConstraint, Column, Date, DateTime, Float, ForeignKey, Index, Integer,
                        MetaData, String, Table, Text, TypeDecorator)


class UtcDateTime(TypeDecorator):
    """Aware datetimes in, aware UTC datetimes out (SQLite has no time zones; naive means UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


metadata = MetaData()

banks = Table(
    "banks", metadata,
    Column("bank_id", String(40), primary_key=True),
    Column("name", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    # 'lender' (a partner bank or development fund) or 'platform' (the e-cooperative operator's service)
    Column("kind", String(16), nullable=False, server_default="lender"),
    CheckConstraint("kind IN ('lender', 'platform')", name="ck_banks_kind"),
)

api_keys = Table(
    "api_keys", metadata,
    Column("key_id", String(32), primary_key=True),
    Column("bank_id", String(40), ForeignKey("banks.bank_id"), nullable=False, index=True),
    Column("secret_sha256", String(64), nullable=False),
    Column("scopes", Text, nullable=False),  # space separated
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=True),
    Column("revoked_at", UtcDateTime, nullable=True),
)

consents = Table(
    "consents", metadata,
    Column("consent_id", String(32), primary_key=True),
    Column("subject_type", String(16), nullable=False),
    Column("subject_id", String(64), nullable=False),
    Column("bank_id", String(40), ForeignKey("banks.bank_id"), nullable=False),
    Column("purpose", String(64), nullable=False),
    Column("granted_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Column("source", String(16), nullable=False),
    # who recorded it: 'key:<key id>' of a platform key, or 'operator:<name>' (CLI on the server)
    Column("granted_by", String(64), nullable=False),
    Column("revoked_by", String(64), nullable=True),
    Column("revoke_source", String(16), nullable=True),
    CheckConstraint("source IN ('application_form', 'member_page', 'operator')", name="ck_consents_source"),
    CheckConstraint("revoke_source IS NULL OR revoke_source IN ('application_form', 'member_page', 'operator')",
                    name="ck_consents_revoke_source"),
    CheckConstraint("subject_type IN ('member', 'cooperative')", name="ck_consents_subject_type"),
    Index("ix_consents_subject_bank", "subject_type", "subject_id", "bank_id"),
)

audit_log = Table(
    "audit_log", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("bank_id", String(40), nullable=False),  # no FK: the log outlives banks and keys
    Column("key_id", String(64), nullable=False),  # a key id, or 'operator:<name>'
    Column("subject_type", String(16), nullable=False),
    Column("subject_id", String(64), nullable=False),
    Column("endpoint", Text, nullable=False),
    Column("http_status", Integer, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("model_name", Text, nullable=True),
    Column("model_version", Text, nullable=True),
    Column("as_of_date", Date, nullable=True),
    Column("features_sha256", String(64), nullable=True),
    Column("answer", Text, nullable=True),  # JSON
    Column("client_request_id", String(64), nullable=True),  # the client's own id, kept beside ours
    Column("prev_hash", String(64), nullable=True),  # see chain.py; filled on every append
    Column("row_hash", String(64), nullable=True),
    Index("ix_audit_subject_at", "subject_type", "subject_id", "at"),
)

# One row (id 1): updating it is the first statement of every append, so writers queue on it
# (SQLite's write lock, a PostgreSQL row lock) and the chain never forks. It also remembers the
# last row, so `verify` notices rows cut from the end of the log.
audit_chain_head = Table(
    "audit_chain_head", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("last_id", BigInteger, nullable=False),
    Column("last_hash", String(64), nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    CheckConstraint("id = 1", name="ck_audit_chain_head_one_row"),
)

web_sessions = Table(
    "web_sessions", metadata,
    Column("session_id", String(32), primary_key=True),
    Column("bank_id", String(40), nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("ended_at", UtcDateTime, nullable=True),
)

member_links = Table(
    "member_links", metadata,
    Column("member_id", String(64), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("changed_at", UtcDateTime, nullable=False),
)

# What the `challenger` version would have answered, beside the champion's answer (serving/shadow.py)
shadow_scores = Table(
    "shadow_scores", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("subject_type", String(16), nullable=False),
    Column("subject_id", String(64), nullable=False),
    Column("as_of_date", Date, nullable=False),
    Column("amount_vnd", BigInteger, nullable=False),
    Column("term_months", Integer, nullable=False),
    Column("champion_version", String(32), nullable=False),
    Column("champion_pd", Float, nullable=False),
    Column("champion_score", Float, nullable=False),
    Column("champion_grade", String(4), nullable=False),
    Column("challenger_version", String(32), nullable=False),
    Column("challenger_pd", Float, nullable=False),
    Column("challenger_score", Float, nullable=False),
    Column("challenger_grade", String(4), nullable=False),
    Index("ix_shadow_subject_version_at", "subject_type", "challenger_version", "at"),
)
SHADOW_FIELDS = tuple(c.name for c in shadow_scores.columns if c.name != "id")
