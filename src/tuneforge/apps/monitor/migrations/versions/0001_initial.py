"""Initial schema: items, item_entities, alerts, ingested_files.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "items",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("polarity", sa.SmallInteger, nullable=False),
        sa.Column("p_neg", sa.Float, nullable=False),
        sa.Column("p_pos", sa.Float, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("topic", sa.String(64), nullable=False),
        sa.Column("ingested_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_items_ts", "items", ["ts"])
    op.create_index("ix_items_topic", "items", ["topic"])
    op.create_table(
        "item_entities",
        sa.Column(
            "item_id",
            sa.String(128),
            sa.ForeignKey("items.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("entity", sa.String(128), primary_key=True),
    )
    op.create_index("ix_item_entities_entity", "item_entities", ["entity"])
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("scope", sa.String(200), nullable=False),
        sa.Column("window_start", sa.BigInteger, nullable=False),
        sa.Column("window_seconds", sa.Integer, nullable=False),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("negatives", sa.Integer, nullable=False),
        sa.Column("share", sa.Float, nullable=False),
        sa.Column("baseline_share", sa.Float, nullable=False),
        sa.Column("z", sa.Float, nullable=False),
        sa.Column("p_value", sa.Float, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("scope", "window_start", name="uq_alert_scope_window"),
    )
    op.create_index("ix_alerts_window_start", "alerts", ["window_start"])
    op.create_table(
        "ingested_files",
        sa.Column("path", sa.String(1000), primary_key=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("mtime_ns", sa.BigInteger, nullable=False),
        sa.Column("items", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    for table in ("ingested_files", "alerts", "item_entities", "items"):
        op.drop_table(table)
