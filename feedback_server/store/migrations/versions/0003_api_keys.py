"""virtual API keys; feedback carries the key id

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("previous_key_hash", sa.String(64), unique=True),
        sa.Column("previous_valid_until", sa.DateTime(timezone=True)),
        sa.Column("hint", sa.String(32), nullable=False),
        sa.Column("alias", sa.String(128)),
        sa.Column("owner", sa.String(128)),
        sa.Column("models", sa.JSON()),
        sa.Column("rpm", sa.Integer()),
        sa.Column("tpm", sa.Integer()),
        sa.Column("max_parallel", sa.Integer()),
        sa.Column("budget_tokens", sa.BigInteger()),
        sa.Column("budget_period", sa.String(8)),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_api_keys_owner", "api_keys", ["owner"])
    with op.batch_alter_table("feedback") as batch:
        batch.add_column(sa.Column("key_id", sa.String(64)))
        batch.create_index("ix_feedback_key_id", ["key_id"])


def downgrade() -> None:
    with op.batch_alter_table("feedback") as batch:
        batch.drop_index("ix_feedback_key_id")
        batch.drop_column("key_id")
    op.drop_table("api_keys")
