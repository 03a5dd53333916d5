"""The service's own tables: who may ask (banks, API keys), on whose consent, and who asked.

Timestamps are stored in UTC and always come back timezone-aware, on SQLite as on PostgreSQL.
The migrations in `migrations/versions` create these tables; this module is how the code reads them.
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (BigInteger, CheckConstraint, Column, Date, DateTime, ForeignKey, Index, Integer, MetaData,
                        String, Table, Text, TypeDecorator)


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
    Column("source", String(8), nullable=False),  # 'cli' | 'api'
    CheckConstraint("source IN ('cli', 'api')", name="ck_consents_source"),
    CheckConstraint("subject_type IN ('member', 'cooperative')", name="ck_consents_subject_type"),
    Index("ix_consents_subject_bank", "subject_type", "subject_id", "bank_id"),
)

audit_log = Table(
    "audit_log", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("bank_id", String(40), nullable=False),  # no FK: the log outlives banks and keys
    Column("key_id", String(32), nullable=False),
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
    Index("ix_audit_subject_at", "subject_type", "subject_id", "at"),
)
