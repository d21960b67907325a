"""The audits table.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audits",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("dataset", sa.String(512), nullable=False),
        sa.Column("dataset_path", sa.Text(), nullable=True),
        sa.Column("splits_path", sa.Text(), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("options", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("verdict", sa.String(8), nullable=True),
        sa.Column("readiness_level", sa.String(16), nullable=True),
        sa.Column("errors", sa.Integer(), nullable=True),
        sa.Column("warnings", sa.Integer(), nullable=True),
        sa.Column("infos", sa.Integer(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
    )
    op.create_index("ix_audits_status_created", "audits", ["status", "created_at"])
    op.create_index("ix_audits_dataset_created", "audits", ["dataset", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_audits_dataset_created", table_name="audits")
    op.drop_index("ix_audits_status_created", table_name="audits")
    op.drop_table("audits")
