"""At most one open ticket per conversation, even under concurrent hand-offs.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    open_only = sa.text("status = 'open'")
    op.create_index(
        "assist_one_open_ticket",
        "assist_tickets",
        ["conversation_id"],
        unique=True,
        sqlite_where=open_only,
        postgresql_where=open_only,
    )


def downgrade() -> None:
    op.drop_index("assist_one_open_ticket", table_name="assist_tickets")
