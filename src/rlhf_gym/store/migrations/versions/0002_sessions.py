"""Server-side sessions and expiring invites.

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("annotator_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("ended_at", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["annotator_id"], ["annotators.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_sessions_annotator_id"), "sessions", ["annotator_id"], unique=False)
    with op.batch_alter_table("annotators") as b:
        b.add_column(sa.Column("token_expires_at", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("annotators") as b:
        b.drop_column("token_expires_at")
    op.drop_index(op.f("ix_sessions_annotator_id"), table_name="sessions")
    op.drop_table("sessions")
