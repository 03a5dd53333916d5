"""Shadow scores (issue 16): what the `challenger` version would have answered, beside the champion.

One row per scored answer the shadow recorded: the request it shadowed, the application's amount and
term, and both versions' PD, score and grade. No personal data beyond the subject id the audit log
already holds; the rows are evidence for `coopscore shadow-report` and the promotion gates.

Revision ID: 0003
Revises: 0002
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "shadow_scores",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("subject_type", sa.String(16), nullable=False),
        sa.Column("subject_id", sa.String(64), nullable=False),
        sa.Column("as_of_date", sa.Date, nullable=False),
        sa.Column("amount_vnd", sa.BigInteger, nullable=False),
        sa.Column("term_months", sa.Integer, nullable=False),
        sa.Column("champion_version", sa.String(32), nullable=False),
        sa.Column("champion_pd", sa.Float, nullable=False),
        sa.Column("champion_score", sa.Float, nullable=False),
        sa.Column("champion_grade", sa.String(4), nullable=False),
        sa.Column("challenger_version", sa.String(32), nullable=False),
        sa.Column("challenger_pd", sa.Float, nullable=False),
        sa.Column("challenger_score", sa.Float, nullable=False),
        sa.Column("challenger_grade", sa.String(4), nullable=False),
    )
    op.create_index("ix_shadow_subject_version_at", "shadow_scores", ["subject_type", "challenger_version", "at"])


def downgrade() -> None:
    op.drop_index("ix_shadow_subject_version_at", "shadow_scores")
    op.drop_table("shadow_scores")
